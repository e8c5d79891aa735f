package app

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// validateNamespaceName returns why name is not a namespace name, or "".
func validateNamespaceName(name string) string {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return "is not a valid namespace name: " + strings.Join(msgs, "; ")
	}
	return ""
}

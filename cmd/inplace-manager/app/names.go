package app

import (
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Names of the webhook's objects in manifests/base and its components.
const (
	// webhookServiceName is the webhook's Service: its certificate is for
	// inplace-webhook.<namespace>.svc.
	webhookServiceName = "inplace-webhook"
	// webhookCertName is the Secret that holds the webhook's certificate,
	// and cert-manager's Certificate that issues it.
	webhookCertName = "inplace-webhook-cert"
)

// validateNamespaceName returns why name is not a namespace name, or "".
func validateNamespaceName(name string) string {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return "is not a valid namespace name: " + strings.Join(msgs, "; ")
	}
	return ""
}

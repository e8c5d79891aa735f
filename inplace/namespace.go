package inplace

import (
	"fmt"
	"slices"
	"strings"
)

// Policy says which namespaces are managed when their label says nothing.
type Policy string

const (
	// PolicyNamespace manages only namespaces labelled inplace.dev/enabled=true.
	PolicyNamespace Policy = "namespace"
	// PolicyCluster manages every namespace but the excluded ones and those
	// labelled inplace.dev/enabled=false.
	PolicyCluster Policy = "cluster"
)

// Policies lists the valid values of Policy, for flags and errors.
var Policies = []Policy{PolicyNamespace, PolicyCluster}

// ParsePolicy parses the value of the --policy flag.
func ParsePolicy(s string) (Policy, error) {
	p := Policy(s)
	if !slices.Contains(Policies, p) {
		return "", fmt.Errorf("unknown policy %q: want one of %s", s, joinQuoted(Policies))
	}
	return p, nil
}

// AlwaysExcluded are the namespaces no webhook of inplace ever manages,
// whatever their labels say: the control plane's own. The manager's own
// namespace is added at run time.
var AlwaysExcluded = []string{"kube-system", "kube-public", "kube-node-lease"}

// Scope decides which namespaces are managed.
type Scope struct {
	Policy Policy
	// Excluded namespaces are never managed, whatever their labels say.
	Excluded map[string]bool
}

// NewScope returns the scope of a policy, excluding AlwaysExcluded, the
// manager's own namespace and the given extra namespaces.
func NewScope(policy Policy, ownNamespace string, exclude ...string) Scope {
	excluded := make(map[string]bool, len(AlwaysExcluded)+len(exclude)+1)
	for _, ns := range AlwaysExcluded {
		excluded[ns] = true
	}
	if ownNamespace != "" {
		excluded[ownNamespace] = true
	}
	for _, ns := range exclude {
		excluded[ns] = true
	}
	return Scope{Policy: policy, Excluded: excluded}
}

// Manages reports whether the namespace of that name and those labels is
// managed. Exclusions win over labels; the label wins over the policy.
func (s Scope) Manages(namespace string, labels map[string]string) bool {
	if namespace == "" || s.Excluded[namespace] {
		return false
	}
	switch labels[LabelEnabled] {
	case "true":
		return true
	case "false":
		return false
	}
	return s.Policy == PolicyCluster
}

// ExcludedNames returns the excluded namespaces, sorted.
func (s Scope) ExcludedNames() []string {
	names := make([]string, 0, len(s.Excluded))
	for ns := range s.Excluded {
		names = append(names, ns)
	}
	slices.Sort(names)
	return names
}

func joinQuoted[S ~string](values []S) string {
	quoted := make([]string, len(values))
	for i, v := range values {
		quoted[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(quoted, ", ")
}

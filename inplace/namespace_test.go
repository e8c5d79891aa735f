package inplace

import "testing"

func TestScopeManages(t *testing.T) {
	on := map[string]string{LabelEnabled: "true"}
	off := map[string]string{LabelEnabled: "false"}
	cases := map[string]struct {
		policy    Policy
		namespace string
		labels    map[string]string
		want      bool
	}{
		"namespace policy, labelled true":             {PolicyNamespace, "apps", on, true},
		"namespace policy, no label":                  {PolicyNamespace, "apps", nil, false},
		"namespace policy, labelled false":            {PolicyNamespace, "apps", off, false},
		"namespace policy, a value other than true":   {PolicyNamespace, "apps", map[string]string{LabelEnabled: "yes"}, false},
		"cluster policy, no label":                    {PolicyCluster, "apps", nil, true},
		"cluster policy, labelled false":              {PolicyCluster, "apps", off, false},
		"kube-system labelled true is still excluded": {PolicyNamespace, "kube-system", on, false},
		"kube-system under the cluster policy":        {PolicyCluster, "kube-system", nil, false},
		"kube-node-lease under the cluster policy":    {PolicyCluster, "kube-node-lease", nil, false},
		"kube-public labelled true":                   {PolicyCluster, "kube-public", on, false},
		"the manager's own namespace, labelled true":  {PolicyCluster, "inplace-system", on, false},
		"an excluded namespace from the flag":         {PolicyCluster, "legacy", on, false},
		"a cluster-scoped object has no namespace":    {PolicyCluster, "", nil, false},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s := NewScope(tc.policy, "inplace-system", "legacy")
			if got := s.Manages(tc.namespace, tc.labels); got != tc.want {
				t.Errorf("Manages(%q, %v) = %v, want %v", tc.namespace, tc.labels, got, tc.want)
			}
		})
	}
}

func TestParsePolicy(t *testing.T) {
	for _, ok := range []string{"namespace", "cluster"} {
		if p, err := ParsePolicy(ok); err != nil || string(p) != ok {
			t.Errorf("ParsePolicy(%q) = %q, %v", ok, p, err)
		}
	}
	_, err := ParsePolicy("Cluster")
	if err == nil || err.Error() != `unknown policy "Cluster": want one of "namespace", "cluster"` {
		t.Errorf("ParsePolicy(%q) error = %v", "Cluster", err)
	}
}

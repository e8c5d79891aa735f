package app

import (
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/inplace-dev/inplace/inplace"
)

func TestOptions(t *testing.T) {
	cases := map[string]struct {
		args    []string
		env     string
		wantErr string // a substring of the parse or Complete error
		check   func(t *testing.T, o Options)
	}{
		"defaults": {
			args: []string{"--namespace=inplace-system"},
			check: func(t *testing.T, o Options) {
				if o.Policy != inplace.PolicyNamespace || o.WebhookPort != 9443 || !o.LeaderElect {
					t.Errorf("defaults = %+v", o)
				}
			},
		},
		"the cluster policy, and exclusions on top of the fixed ones": {
			args: []string{"--policy=cluster", "--exclude-namespaces=legacy, batch", "--namespace=inplace-system"},
			check: func(t *testing.T, o Options) {
				want := []string{"batch", "inplace-system", "kube-node-lease", "kube-public", "kube-system", "legacy"}
				if diff := cmp.Diff(want, o.Scope().ExcludedNames()); diff != "" {
					t.Errorf("excluded (-want,+got):\n%s", diff)
				}
			},
		},
		"the namespace from POD_NAMESPACE": {
			env: "from-env",
			check: func(t *testing.T, o Options) {
				if o.Namespace != "from-env" {
					t.Errorf("namespace = %q", o.Namespace)
				}
			},
		},
		"an unknown policy names the flag and the values": {
			args:    []string{"--policy=all"},
			wantErr: `invalid value "all" for flag -policy: unknown policy "all": want one of "namespace", "cluster"`,
		},
		"a bad namespace in the exclusions": {
			args:    []string{"--exclude-namespaces=ok,Not_OK"},
			wantErr: `invalid value "ok,Not_OK" for flag -exclude-namespaces: "Not_OK" is not a valid namespace name`,
		},
		"a port out of range": {
			args:    []string{"--namespace=x", "--webhook-port=70000"},
			wantErr: "--webhook-port: 70000 is not a port number (1-65535)",
		},
		"no namespace outside a pod": {
			wantErr: "--namespace: required outside a pod",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.env)
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var o Options
			o.Bind(fs)
			err := fs.Parse(tc.args)
			if err == nil {
				err = o.Complete()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

package app

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/inplace-dev/inplace/certs"
	"github.com/inplace-dev/inplace/inplace"
)

func TestOptions(t *testing.T) {
	cases := map[string]struct {
		args      []string
		env       string
		memoryEnv string // $MEMORY_LIMIT
		wantErr   string // a substring of the parse or Complete error
		check     func(t *testing.T, o Options)
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
		"no memory limit by default": {
			args: []string{"--namespace=x"},
			check: func(t *testing.T, o Options) {
				if o.MemoryLimit != 0 || GoMemoryLimit(o.MemoryLimit) != 0 {
					t.Errorf("memory limit = %d", o.MemoryLimit)
				}
			},
		},
		"a memory limit, and the Go runtime's below it": {
			args: []string{"--namespace=x", "--memory-limit=256Mi"},
			check: func(t *testing.T, o Options) {
				if o.MemoryLimit != 256<<20 || GoMemoryLimit(o.MemoryLimit) != 256<<20/5*4 {
					t.Errorf("memory limit = %d, Go's %d", o.MemoryLimit, GoMemoryLimit(o.MemoryLimit))
				}
			},
		},
		"the memory limit from MEMORY_LIMIT, as a resourceFieldRef gives it": {
			args:      []string{"--namespace=x"},
			memoryEnv: "268435456",
			check: func(t *testing.T, o Options) {
				if o.MemoryLimit != 256<<20 {
					t.Errorf("memory limit = %d", o.MemoryLimit)
				}
			},
		},
		"a bad MEMORY_LIMIT names the flag and the variable": {
			args:      []string{"--namespace=x"},
			memoryEnv: "256 MiB",
			wantErr:   `--memory-limit: $MEMORY_LIMIT: "256 MiB" is not a quantity of bytes`,
		},
		"a memory limit that is not a quantity": {
			args:    []string{"--namespace=x", "--memory-limit=lots"},
			wantErr: `invalid value "lots" for flag -memory-limit: "lots" is not a quantity of bytes`,
		},
		"a fraction of a byte": {
			args:    []string{"--namespace=x", "--memory-limit=0.5"},
			wantErr: `"0.5" is not a whole number of bytes`,
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
		"the built-in certificate by default, for the webhook's Service in the manager's namespace": {
			args: []string{"--namespace=inplace-system"},
			check: func(t *testing.T, o Options) {
				want := certs.Config{
					Mode: certs.ModeBuiltin, Namespace: "inplace-system", CertDir: "/tmp/k8s-webhook-server/serving-certs",
					ServiceName: "inplace-webhook", SecretName: "inplace-webhook-cert", CertificateName: "inplace-webhook-cert",
					MutatingWebhook: "inplace-mutating", ValidatingWebhook: "inplace-validating",
					Rotation: certs.Rotation{Validity: 365 * 24 * time.Hour, RenewBefore: 90 * 24 * time.Hour, CheckInterval: 12 * time.Hour},
				}
				if diff := cmp.Diff(want, o.Certs()); diff != "" {
					t.Errorf("certs (-want,+got):\n%s", diff)
				}
				if got := o.Certs().DNSName(); got != "inplace-webhook.inplace-system.svc" {
					t.Errorf("DNS name = %q", got)
				}
			},
		},
		"cert-manager's certificate": {
			args: []string{"--namespace=x", "--cert-mode=cert-manager", "--cert-dir=/certs"},
			check: func(t *testing.T, o Options) {
				if c := o.Certs(); c.Mode != certs.ModeCertManager || c.CertDir != "/certs" {
					t.Errorf("certs = %+v", c)
				}
			},
		},
		"a certificate provided in a Secret": {
			args: []string{"--namespace=x", "--cert-mode=secret"},
			check: func(t *testing.T, o Options) {
				if c := o.Certs(); c.Mode != certs.ModeSecret {
					t.Errorf("certs = %+v", c)
				}
			},
		},
		"an unknown certificate mode names the flag and the values": {
			args:    []string{"--namespace=x", "--cert-mode=self-signed"},
			wantErr: `invalid value "self-signed" for flag -cert-mode: unknown certificate mode "self-signed": want one of "builtin", "cert-manager", "secret"`,
		},
		"the built-in certificate's lifetime": {
			args: []string{"--namespace=x", "--cert-validity=10m", "--cert-renew-before=4m", "--cert-check-interval=15s"},
			check: func(t *testing.T, o Options) {
				want := certs.Rotation{Validity: 10 * time.Minute, RenewBefore: 4 * time.Minute, CheckInterval: 15 * time.Second}
				if diff := cmp.Diff(want, o.Certs().Rotation); diff != "" {
					t.Errorf("rotation (-want,+got):\n%s", diff)
				}
			},
		},
		"a renewal always due": {
			args:    []string{"--namespace=x", "--cert-validity=1h", "--cert-check-interval=1m"},
			wantErr: "--cert-renew-before: 2160h0m0s is not shorter than --cert-validity 1h0m0s: the certificate would be renewed on every check",
		},
		"a check interval longer than the renewal window": {
			args:    []string{"--namespace=x", "--cert-validity=1h", "--cert-renew-before=10m"},
			wantErr: "--cert-check-interval: 12h0m0s is not shorter than --cert-renew-before 10m0s: the certificate could expire between two checks",
		},
		"a lifetime that is not a duration": {
			args:    []string{"--namespace=x", "--cert-validity=30d"},
			wantErr: `invalid value "30d" for flag -cert-validity`,
		},
		"a lifetime that is not positive": {
			args:    []string{"--namespace=x", "--cert-check-interval=0s"},
			wantErr: `invalid value "0s" for flag -cert-check-interval: 0s is not a positive duration`,
		},
		"a lifetime with cert-manager's certificate": {
			args:    []string{"--namespace=x", "--cert-mode=cert-manager", "--cert-validity=1h", "--cert-renew-before=10m", "--cert-check-interval=1m"},
			wantErr: `--cert-validity, --cert-renew-before, --cert-check-interval: only with --cert-mode=builtin (with "cert-manager" the certificate's lifetime is set where it is issued)`,
		},
		"no namespace outside a pod": {
			wantErr: "--namespace: required outside a pod",
		},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Setenv("POD_NAMESPACE", tc.env)
			t.Setenv("MEMORY_LIMIT", tc.memoryEnv)
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

// An Options built in code, not from flags, serves the certificate it is
// given and writes nothing: the zero mode is secret.
func TestOptionsInCodeProvideTheirCertificate(t *testing.T) {
	o := Options{Namespace: "inplace-system", CertDir: "/certs"}
	if got := o.Certs().Mode; got != certs.ModeSecret {
		t.Errorf("mode = %q, want %q", got, certs.ModeSecret)
	}
}

// Main refuses a bad --cert-mode with exit code 2, like every bad flag.
func TestMainRefusesABadCertMode(t *testing.T) {
	if code := Main([]string{"--namespace=x", "--cert-mode=acme"}); code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
}

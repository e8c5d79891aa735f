// Command rolloutstatus watches one workload and prints, for every version
// of it the API server shows, what two rollout tools a platform engineer
// relies on say about it: kstatus (sigs.k8s.io/cli-utils, behind Helm 4's
// --wait and Flux) and Argo CD's health check (gitops-engine). The e2e tests
// run it beside a rollout, with kubectl rollout status, to check that no
// tool calls the rollout done before it is, or broken while it runs.
//
//	rolloutstatus [--kubeconfig PATH] [--timeout DURATION] -n NAMESPACE KIND/NAME
//
// KIND is statefulset (sts), deployment (deploy) or daemonset (ds). The
// kubeconfig is --kubeconfig, else $KUBECONFIG, else the in-cluster config.
// Each observed version (the state when the watch starts included) is one
// JSON line on stdout:
//
//	{"time":"...","resourceVersion":"...","generation":2,"observedGeneration":2,
//	 "replicas":3,"statusReplicas":3,"readyReplicas":3,"updatedReplicas":1,"availableReplicas":3,
//	 "currentRevision":"web-a","updateRevision":"web-b",
//	 "kstatus":{"status":"InProgress","message":"..."},"argocd":{"status":"Progressing","message":"..."}}
//
// For a DaemonSet, replicas is status.desiredNumberScheduled and
// statusReplicas status.currentNumberScheduled; the revisions are a
// StatefulSet's only. A watch error prints {"time":"...","error":"..."} and
// the watch starts again; the object's deletion prints
// {"time":"...","deleted":true} and ends the command. It runs until then,
// SIGINT, SIGTERM or --timeout, and exits 0; 2 for a bad command line.
//
// It is a module of its own: gitops-engine imports autoscaling/v2beta1 and
// v2beta2, which k8s.io/api v0.37 (the product's) no longer has, so this
// go.mod pins every k8s.io staging module to v0.34.1 and the product's
// go.mod stays as it is.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/argoproj/gitops-engine/pkg/health"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	appsclient "k8s.io/client-go/kubernetes/typed/apps/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// retryDelay is the pause before a watch that failed or ended in an error
// is started again.
const retryDelay = time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Verdict is one tool's answer.
type Verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// Report is one observed version of the workload and what the tools say
// about it: one line of output.
type Report struct {
	Time               string  `json:"time"`
	ResourceVersion    string  `json:"resourceVersion"`
	Generation         int64   `json:"generation"`
	ObservedGeneration int64   `json:"observedGeneration"`
	Replicas           int32   `json:"replicas"`
	StatusReplicas     int32   `json:"statusReplicas"`
	ReadyReplicas      int32   `json:"readyReplicas"`
	UpdatedReplicas    int32   `json:"updatedReplicas"`
	AvailableReplicas  int32   `json:"availableReplicas"`
	CurrentRevision    string  `json:"currentRevision"`
	UpdateRevision     string  `json:"updateRevision"`
	Kstatus            Verdict `json:"kstatus"`
	ArgoCD             Verdict `json:"argocd"`
}

// event is a line that is not a report: a watch error or the deletion.
type event struct {
	Time    string `json:"time"`
	Error   string `json:"error,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

// watcher is the part of a typed client the command uses.
type watcher interface {
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// kinds maps each KIND the command line accepts to its client.
var kinds = map[string]func(c appsclient.AppsV1Interface, namespace string) watcher{
	"statefulset": func(c appsclient.AppsV1Interface, ns string) watcher { return c.StatefulSets(ns) },
	"deployment":  func(c appsclient.AppsV1Interface, ns string) watcher { return c.Deployments(ns) },
	"daemonset":   func(c appsclient.AppsV1Interface, ns string) watcher { return c.DaemonSets(ns) },
}

// kindAliases are the short names and plurals kubectl accepts too.
var kindAliases = map[string]string{
	"sts": "statefulset", "statefulsets": "statefulset",
	"deploy": "deployment", "deployments": "deployment",
	"ds": "daemonset", "daemonsets": "daemonset",
}

// parseTarget splits KIND/NAME and normalises KIND.
func parseTarget(s string) (kind, name string, err error) {
	kind, name, ok := strings.Cut(s, "/")
	if !ok || name == "" || strings.Contains(name, "/") {
		return "", "", fmt.Errorf("KIND/NAME: %q is not KIND/NAME", s)
	}
	kind = strings.ToLower(kind)
	if k, ok := kindAliases[kind]; ok {
		kind = k
	}
	if _, ok := kinds[kind]; !ok {
		return "", "", fmt.Errorf("KIND/NAME: unknown kind %q (statefulset, deployment or daemonset)", kind)
	}
	return kind, name, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rolloutstatus", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: rolloutstatus [--kubeconfig PATH] [--timeout DURATION] -n NAMESPACE KIND/NAME")
		fs.PrintDefaults()
	}
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig `path` (default $KUBECONFIG, else the in-cluster config)")
	var namespace string
	fs.StringVar(&namespace, "n", "", "the workload's `namespace` (required)")
	fs.StringVar(&namespace, "namespace", "", "same as -n")
	timeout := fs.Duration("timeout", 0, "stop after this `duration` (0: run until SIGINT or SIGTERM)")

	// Flags may come after KIND/NAME too, as with kubectl.
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	usageError := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "rolloutstatus: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	switch {
	case namespace == "":
		return usageError("-n NAMESPACE is required")
	case len(positional) != 1:
		return usageError("KIND/NAME: want one, got %d arguments", len(positional))
	case *timeout < 0:
		return usageError("--timeout %v is negative", *timeout)
	}
	kind, name, err := parseTarget(positional[0])
	if err != nil {
		return usageError("%v", err)
	}

	cfg, err := restConfig(*kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "rolloutstatus: %v\n", err)
		return 1
	}
	client, err := appsclient.NewForConfig(rest.AddUserAgent(cfg, "rolloutstatus"))
	if err != nil {
		fmt.Fprintf(stderr, "rolloutstatus: %v\n", err)
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	watchObject(ctx, kinds[kind](client, namespace), name, jsonEncoder(stdout))
	return 0
}

// restConfig loads the kubeconfig at path, else the ones $KUBECONFIG
// lists, else the in-cluster config.
func restConfig(path string) (*rest.Config, error) {
	rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
	if path == "" {
		env := os.Getenv(clientcmd.RecommendedConfigPathEnvVar)
		if env == "" {
			return rest.InClusterConfig()
		}
		rules = &clientcmd.ClientConfigLoadingRules{Precedence: filepath.SplitList(env)}
	}
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
}

// watchObject prints a line for every version of the object name it sees
// until ctx ends or the object is deleted. An os.Stdout encoder writes each
// line with one unbuffered write.
func watchObject(ctx context.Context, w watcher, name string, out *json.Encoder) {
	emit := func(v any) {
		if err := out.Encode(v); err != nil {
			fmt.Fprintf(os.Stderr, "rolloutstatus: %v\n", err)
		}
	}
	emitError := func(err error) { emit(event{Time: now(), Error: err.Error()}) }
	selector := fields.OneTermEqualSelector("metadata.name", name).String()
	// rv is where the next watch starts: "" (the current state, as a
	// synthetic ADDED event, then the changes) at first and after a 410
	// Gone; the last version seen otherwise. last is the last version
	// printed, not to print it twice when a new watch starts with it.
	var rv, last string
	for ctx.Err() == nil {
		wi, err := w.Watch(ctx, metav1.ListOptions{FieldSelector: selector, ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() == nil {
				emitError(fmt.Errorf("watch: %w", err))
				sleep(ctx, retryDelay)
			}
			continue
		}
		done := func() bool {
			defer wi.Stop()
			for {
				var ev watch.Event
				var ok bool
				select {
				case <-ctx.Done():
					return true
				case ev, ok = <-wi.ResultChan():
				}
				if !ok {
					return false // the server ended the watch: start another
				}
				if ev.Type == watch.Error {
					err := apierrors.FromObject(ev.Object)
					emitError(fmt.Errorf("watch: %w", err))
					if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
						rv = ""
					}
					sleep(ctx, retryDelay)
					return false
				}
				m, err := meta.Accessor(ev.Object)
				if err != nil {
					emitError(fmt.Errorf("watch: %s event: %w", ev.Type, err))
					continue
				}
				rv = m.GetResourceVersion()
				switch ev.Type {
				case watch.Added, watch.Modified:
					if rv == last {
						continue
					}
					last = rv
					r, err := Observe(ev.Object, time.Now())
					if err != nil {
						emitError(err)
						continue
					}
					emit(r)
				case watch.Deleted:
					emit(event{Time: now(), Deleted: true})
					return true
				}
			}
		}()
		if done {
			return
		}
	}
}

// jsonEncoder writes one JSON value a line, messages unescaped.
func jsonEncoder(w io.Writer) *json.Encoder {
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false)
	return e
}

func now() string { return time.Now().Format(time.RFC3339Nano) }

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// Observe is the report on one version of a StatefulSet, Deployment or
// DaemonSet, observed at t. The object needs no TypeMeta (a typed client's
// watch events have none): kstatus and Argo CD pick their rules by the
// GroupKind, so it is set here.
func Observe(obj runtime.Object, t time.Time) (Report, error) {
	r := Report{Time: t.Format(time.RFC3339Nano)}
	var kind string
	var om *metav1.ObjectMeta
	switch o := obj.(type) {
	case *appsv1.StatefulSet:
		kind, om = "StatefulSet", &o.ObjectMeta
		s := o.Status
		r.Replicas = specReplicas(o.Spec.Replicas)
		r.ObservedGeneration = s.ObservedGeneration
		r.StatusReplicas, r.ReadyReplicas, r.UpdatedReplicas, r.AvailableReplicas = s.Replicas, s.ReadyReplicas, s.UpdatedReplicas, s.AvailableReplicas
		r.CurrentRevision, r.UpdateRevision = s.CurrentRevision, s.UpdateRevision
	case *appsv1.Deployment:
		kind, om = "Deployment", &o.ObjectMeta
		s := o.Status
		r.Replicas = specReplicas(o.Spec.Replicas)
		r.ObservedGeneration = s.ObservedGeneration
		r.StatusReplicas, r.ReadyReplicas, r.UpdatedReplicas, r.AvailableReplicas = s.Replicas, s.ReadyReplicas, s.UpdatedReplicas, s.AvailableReplicas
	case *appsv1.DaemonSet:
		kind, om = "DaemonSet", &o.ObjectMeta
		s := o.Status
		r.Replicas = s.DesiredNumberScheduled
		r.ObservedGeneration = s.ObservedGeneration
		r.StatusReplicas, r.ReadyReplicas, r.UpdatedReplicas, r.AvailableReplicas = s.CurrentNumberScheduled, s.NumberReady, s.UpdatedNumberScheduled, s.NumberAvailable
	default:
		return Report{}, fmt.Errorf("observe: unsupported object %T", obj)
	}
	r.ResourceVersion, r.Generation = om.ResourceVersion, om.Generation

	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return Report{}, fmt.Errorf("observe: %s %s: %w", kind, om.Name, err)
	}
	u := &unstructured.Unstructured{Object: content}
	u.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind(kind))
	r.Kstatus = kstatusOf(u)
	r.ArgoCD = argoCDOf(u)
	return r, nil
}

// specReplicas is spec.replicas, 1 when unset as the API server defaults it.
func specReplicas(p *int32) int32 {
	if p == nil {
		return 1
	}
	return *p
}

func kstatusOf(u *unstructured.Unstructured) Verdict {
	res, err := status.Compute(u)
	if err != nil {
		return Verdict{Status: string(status.UnknownStatus), Message: err.Error()}
	}
	return Verdict{Status: string(res.Status), Message: res.Message}
}

func argoCDOf(u *unstructured.Unstructured) Verdict {
	h, err := health.GetResourceHealth(u, nil)
	switch {
	case err != nil && h == nil:
		return Verdict{Status: string(health.HealthStatusUnknown), Message: err.Error()}
	case h == nil: // no built-in health check for this GroupKind
		return Verdict{Status: string(health.HealthStatusUnknown), Message: "no health check for " + u.GroupVersionKind().String()}
	}
	return Verdict{Status: string(h.Status), Message: h.Message}
}

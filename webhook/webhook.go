package webhook

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// Paths the handlers are served at. manifests/base/webhooks.yaml names the
// same paths.
const (
	PathMutateDeployment          = "/mutate-apps-v1-deployment"
	PathMutateStatefulSet         = "/mutate-apps-v1-statefulset"
	PathMutateDaemonSet           = "/mutate-apps-v1-daemonset"
	PathMutateCloneSet            = "/mutate-apps-kruise-io-v1alpha1-cloneset"
	PathMutateCloneSetV1beta1     = "/mutate-apps-kruise-io-v1beta1-cloneset"
	PathMutateAdvancedStatefulSet = "/mutate-apps-kruise-io-v1beta1-statefulset"
	PathMutateAdvancedDaemonSet   = "/mutate-apps-kruise-io-v1alpha1-daemonset"
	PathMutatePod                 = "/mutate-v1-pod"
	PathValidatePod               = "/validate-v1-pod"

	PathValidateDeployment          = "/validate-apps-v1-deployment"
	PathValidateStatefulSet         = "/validate-apps-v1-statefulset"
	PathValidateDaemonSet           = "/validate-apps-v1-daemonset"
	PathValidateCloneSet            = "/validate-apps-kruise-io-v1alpha1-cloneset"
	PathValidateCloneSetV1beta1     = "/validate-apps-kruise-io-v1beta1-cloneset"
	PathValidateAdvancedStatefulSet = "/validate-apps-kruise-io-v1beta1-statefulset"
	PathValidateAdvancedDaemonSet   = "/validate-apps-kruise-io-v1alpha1-daemonset"
)

// Config is what the handlers need from the manager.
type Config struct {
	// Scope decides which namespaces are managed.
	Scope inplace.Scope
	// Reader reads namespaces and the metadata of pod owners, from the cache.
	Reader client.Reader
	// LiveReader reads from the API server, for an object the cache has not
	// seen yet (a namespace or a ReplicaSet created an instant ago).
	LiveReader client.Reader
	// ManagerUsername is the user the manager authenticates as; only it may
	// write the manager-owned annotations.
	ManagerUsername string
	// Scheme decodes the native kinds.
	Scheme *runtime.Scheme
	// Clock is the real clock when nil.
	Clock clock.PassiveClock
	// Nodes answers what the pod webhook asks about nodes; nil knows no
	// node (every kubelet's version unknown, no node lost).
	Nodes NodeInfo
	// WorkloadControllers are the users whose pod creates and deletes the
	// pod webhook may refuse: DefaultWorkloadControllerUsers when empty.
	WorkloadControllers []string
	// EngineRunning reports whether an elected manager replica runs the
	// rollout controllers now; the pod-delete webhook refuses nothing
	// otherwise. Always true when nil.
	EngineRunning func() bool
	// OnFallback counts a pod of a rollout that its native controller
	// recreates because it cannot be updated in place; nil to not count.
	OnFallback func(kind, reason string)
	// Recorder tells such a pod's recreation in an event; nil to not tell.
	Recorder events.EventRecorder
	// OnRefusal counts a delete the pod-delete webhook refused; nil to not
	// count.
	OnRefusal func(kind string)
	// Writer wakes the controllers whose refused replacements would now
	// pass (Waker).
	Writer client.Client
	// OnWake counts a controller woken; nil to not count.
	OnWake func(kind, reason string)
	// Closing retires the API server's connections to this replica when it
	// stops, and then its pod webhook's gates; nil leaves the connections
	// to the webhook server's shutdown.
	Closing *Closing
}

// Register serves every handler on the webhook server, and returns the
// Waker of the pod webhook's refusals, for the manager to run.
func Register(srv webhook.Server, cfg Config) *Waker {
	hooks, pods := handlers(cfg)
	for path, h := range hooks {
		srv.Register(path, cfg.Closing.wrap(h))
	}
	return &Waker{validator: pods, Client: cfg.Writer, OnWake: cfg.OnWake}
}

// LiveReadTimeout bounds each live read of a handler. The pod webhooks'
// timeoutSeconds (manifests/base/webhooks.yaml) is 2 s, and a pod's creation
// reads at most three objects live (its namespace, its ReplicaSet, that
// ReplicaSet's Deployment): a slow API server costs the read, never the
// answer, and the handler goes on with what it has.
const LiveReadTimeout = 500 * time.Millisecond

// deadlineReader reads through Reader, each read with its own deadline.
type deadlineReader struct {
	client.Reader
	timeout time.Duration
}

func (r deadlineReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r deadlineReader) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	return r.Reader.List(ctx, list, opts...)
}

// Handlers returns every handler by path.
func Handlers(cfg Config) map[string]*admission.Webhook {
	hooks, _ := handlers(cfg)
	return hooks
}

// handlers returns every handler by path, and the pod validator's.
func handlers(cfg Config) (map[string]*admission.Webhook, *podValidator) {
	if cfg.LiveReader != nil {
		cfg.LiveReader = deadlineReader{Reader: cfg.LiveReader, timeout: LiveReadTimeout}
	}
	ns := &namespaces{reader: cfg.Reader, live: cfg.LiveReader, scope: cfg.Scope}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	a := &admitter{
		namespaces:      ns,
		decoder:         admission.NewDecoder(cfg.Scheme),
		managerUsername: cfg.ManagerUsername,
	}
	v := &validator{namespaces: ns}
	users := cfg.WorkloadControllers
	if len(users) == 0 {
		users = DefaultWorkloadControllerUsers
	}
	controllers := make(map[string]bool, len(users))
	for _, u := range users {
		controllers[u] = true
	}
	running := cfg.EngineRunning
	if running == nil {
		running = func() bool { return true }
	}
	onFallback := cfg.OnFallback
	if onFallback == nil {
		onFallback = func(string, string) {}
	}
	onRefusal := cfg.OnRefusal
	if onRefusal == nil {
		onRefusal = func(string) {}
	}
	var nodes NodeInfo = noNodes{}
	if cfg.Nodes != nil {
		nodes = cfg.Nodes
	}
	pods := &podValidator{
		namespaces: ns, reader: cfg.Reader, live: cfg.LiveReader, decoder: admission.NewDecoder(cfg.Scheme),
		controllers: controllers, engineRunning: running, nodes: nodes, clock: cfg.Clock,
		promises: &promises{}, rooms: &rooms{}, refusals: &refusals{},
		onFallback: onFallback, onRefusal: onRefusal, recorder: cfg.Recorder,
	}
	hooks := map[string]*admission.Webhook{
		PathMutateDeployment:    withWarnings(admission.WithDefaulter(cfg.Scheme, newNativeDefaulter(a, deploymentKind))),
		PathMutateStatefulSet:   withWarnings(admission.WithDefaulter(cfg.Scheme, newNativeDefaulter(a, statefulSetKind))),
		PathMutateDaemonSet:     withWarnings(admission.WithDefaulter(cfg.Scheme, newNativeDefaulter(a, daemonSetKind))),
		PathMutatePod:           podWebhook(cfg.Scheme, &podDefaulter{namespaces: ns, owners: &owners{reader: cfg.Reader, live: cfg.LiveReader}, closing: cfg.Closing}, pods),
		PathValidatePod:         {Handler: pods},
		PathValidateDeployment:  admission.WithValidator(cfg.Scheme, newNativeValidator(v, deploymentKind)),
		PathValidateStatefulSet: admission.WithValidator(cfg.Scheme, newNativeValidator(v, statefulSetKind)),
		PathValidateDaemonSet:   admission.WithValidator(cfg.Scheme, newNativeValidator(v, daemonSetKind)),
	}
	for _, k := range []struct {
		kind             kruiseKind
		mutate, validate string
	}{
		{cloneSet, PathMutateCloneSet, PathValidateCloneSet},
		{cloneSetV1beta1, PathMutateCloneSetV1beta1, PathValidateCloneSetV1beta1},
		{advancedStatefulSet, PathMutateAdvancedStatefulSet, PathValidateAdvancedStatefulSet},
		{advancedDaemonSet, PathMutateAdvancedDaemonSet, PathValidateAdvancedDaemonSet},
	} {
		hooks[k.mutate] = withWarnings(admission.WithDefaulter(cfg.Scheme, &kruiseDefaulter{admitter: a, kind: k.kind}))
		hooks[k.validate] = admission.WithValidator(cfg.Scheme, &kruiseValidator{validator: v, kind: k.kind})
	}
	return hooks, pods
}

// podWebhook is the pod-creation webhook: the typed defaulter, its patch
// written directly, and the workload controllers' creates answered
// (podCreate).
func podWebhook(scheme *runtime.Scheme, d *podDefaulter, replacements *podValidator) *admission.Webhook {
	wh := admission.WithDefaulter(scheme, d)
	wh.Handler = &podCreate{defaulter: d, replacements: replacements, decoder: admission.NewDecoder(scheme), typed: wh.Handler}
	return wh
}

// noNodes knows no node.
type noNodes struct{}

func (noNodes) KubeletVersion(context.Context, string) string { return "" }
func (noNodes) Lost(context.Context, string) bool             { return false }

// namespaces answers whether a namespace is managed.
type namespaces struct {
	reader, live client.Reader
	scope        inplace.Scope
}

// managed reports whether objects in the namespace are managed. Excluded
// namespaces are refused before any read.
func (n *namespaces) managed(ctx context.Context, name string) (bool, error) {
	if name == "" || n.scope.Excluded[name] {
		return false, nil
	}
	ns := &corev1.Namespace{}
	err := n.reader.Get(ctx, types.NamespacedName{Name: name}, ns)
	if apierrors.IsNotFound(err) && n.live != nil {
		err = n.live.Get(ctx, types.NamespacedName{Name: name}, ns)
	}
	if err != nil {
		return false, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	return n.scope.Manages(name, ns.Labels), nil
}

// request returns the admission request a typed handler runs for.
func request(ctx context.Context) (admission.Request, error) {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return req, apierrors.NewInternalError(err)
	}
	return req, nil
}

// groupKind is the GroupKind of a request, for errors.
func groupKind(req admission.Request) schema.GroupKind {
	return schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}
}

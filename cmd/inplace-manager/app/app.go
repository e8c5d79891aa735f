// Package app runs inplace-manager: it parses the flags, builds the
// controller-runtime manager, and registers the webhook handlers and the
// controllers on it. cmd/inplace-manager only calls Main.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/inplace-dev/inplace/certs"
	"github.com/inplace-dev/inplace/controller"
	"github.com/inplace-dev/inplace/controller/daemonset"
	"github.com/inplace-dev/inplace/controller/deployment"
	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/controller/statefulset"
	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/nodes"
	"github.com/inplace-dev/inplace/internal/podcache"
	"github.com/inplace-dev/inplace/internal/workloadcache"
	inplacewebhook "github.com/inplace-dev/inplace/webhook"
)

// LeaderElectionID names the lease the replicas elect a leader with.
const LeaderElectionID = "inplace-manager.inplace.dev"

// Version is the release this binary was built from, set at build time:
//
//	go build -ldflags "-X github.com/inplace-dev/inplace/cmd/inplace-manager/app.Version=v0.1.0"
//
// The Makefile and the Dockerfile set it from the file VERSION.
var Version = "dev"

// Main runs the manager with the command-line arguments and returns the exit
// code: 2 for a bad flag, 1 when the manager fails. "release-holds" as the
// first argument runs the uninstall subcommand instead.
func Main(args []string) int {
	if len(args) > 0 && args[0] == "release-holds" {
		return releaseHolds(args[1:], os.Stdout, os.Stderr)
	}
	fs, cl := newCommandLine()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the error, naming the flag
	}
	o := &cl.options
	if cl.showVersion {
		fmt.Println("inplace-manager", Version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "inplace-manager: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := o.Complete(); err != nil {
		fmt.Fprintf(os.Stderr, "inplace-manager: %v\n", err)
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&cl.zap)))
	log := ctrl.Log.WithName("setup")
	log.Info("inplace-manager", "version", Version)
	if soft := GoMemoryLimit(o.MemoryLimit); soft > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(soft)
		log.Info("Go memory limit set below the container's", "limit", o.MemoryLimit, "goMemoryLimit", soft)
	}

	cfg, err := restConfig(cl.kubeconfig)
	if err != nil {
		log.Error(err, "Cannot load the cluster configuration")
		return 1
	}
	if err := Run(ctrl.SetupSignalHandler(), cfg, *o); err != nil {
		log.Error(err, "The manager stopped")
		return 1
	}
	return 0
}

// commandLine is what the flags of inplace-manager set.
type commandLine struct {
	options     Options
	kubeconfig  string
	showVersion bool
	zap         zap.Options
}

// newCommandLine returns the flags of inplace-manager, bound to what they
// set.
func newCommandLine() (*flag.FlagSet, *commandLine) {
	fs := flag.NewFlagSet("inplace-manager", flag.ContinueOnError)
	cl := &commandLine{}
	cl.options.Bind(fs)
	fs.StringVar(&cl.kubeconfig, "kubeconfig", "", "path to a kubeconfig; default: in-cluster, then $KUBECONFIG, then ~/.kube/config")
	fs.BoolVar(&cl.showVersion, "version", false, "print the version and exit")
	cl.zap.BindFlags(fs)
	return fs, cl
}

// FlagSet returns every flag of inplace-manager, with its default, as Main
// parses them (inplace-manager --help prints them): docs/reference.md is
// checked against it.
func FlagSet() *flag.FlagSet {
	fs, _ := newCommandLine()
	return fs
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		return clientcmd.BuildConfigFromFlags("", kubeconfig)
	}
	return ctrl.GetConfig()
}

// Scheme returns the scheme of the native kinds the manager decodes.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err) // only a programming error: the built-in types always register
	}
	return s
}

// Run builds the manager for cfg and o, and runs it until ctx ends.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	certificate, err := certs.New(o.Certs())
	if err != nil {
		return err
	}
	if err := certificate.Preflight(cfg); err != nil {
		return err
	}
	scheme := Scheme()
	if err := certificate.AddToScheme(scheme); err != nil {
		return err
	}
	username, err := whoAmI(ctx, cfg, scheme)
	if err != nil {
		return err
	}
	mgr, err := newManager(cfg, o, scheme, certificate)
	if err != nil {
		return err
	}
	if err := Setup(ctx, mgr, o, username); err != nil {
		return err
	}
	if err := certificate.SetupWithManager(ctx, mgr); err != nil {
		return err
	}
	ctrl.Log.WithName("setup").Info("Starting the manager", "policy", o.Policy,
		"excluded", o.Scope().ExcludedNames(), "namespace", o.Namespace, "user", username, "certMode", o.Certs().Mode)
	return mgr.Start(ctx)
}

// newManager builds the manager for cfg and o: what it caches, its webhook,
// metrics and probe servers, its leader election.
// A test's options may follow (a second manager in one process needs
// controller names it may repeat).
func newManager(cfg *rest.Config, o Options, scheme *runtime.Scheme, certificate *certs.Source, testOptions ...func(*ctrl.Options)) (manager.Manager, error) {
	// What the manager caches, and why so little:
	// docs/design/2026-11-26-managed-pods-only.md.
	byObject := map[client.Object]cache.ByObject{
		// Only the pods the webhook gated: the controllers act on
		// nothing else, and a cluster's other pods stay out of memory.
		// Of those, only what the manager reads: their volumes,
		// environment, probes and the like are most of their size.
		&corev1.Pod{}: {
			Label:     labels.SelectorFromSet(labels.Set{inplace.LabelManaged: "true"}),
			Transform: podcache.Transform,
		},
		// Only the leader election lease: whether the rollout engine
		// runs (the pod-delete webhook refuses nothing otherwise).
		&coordinationv1.Lease{}: {
			Namespaces: map[string]cache.Config{o.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", LeaderElectionID),
		},
		// Nodes, trimmed to their kubelet's version and Ready condition:
		// one source for the webhook and the controllers.
		&corev1.Node{}: {Transform: nodes.Transform},
	}
	// Every workload, ReplicaSet and revision, but those of namespaces not
	// managed without their templates: the cache follows the managed
	// workloads, not the cluster's.
	trimmer := workloadcache.New(o.Scope())
	maps.Copy(byObject, trimmer.ByObject())
	// Only the webhook certificate's Secret or Certificate, by name.
	maps.Copy(byObject, certificate.CacheByObject())
	metrics := metricsserver.Options{BindAddress: o.MetricsAddress}
	if o.MetricsSecure {
		// A self-signed certificate, made at start: Prometheus scrapes
		// with insecure_skip_verify and its service account's token.
		metrics.SecureServing = true
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
		metrics.TLSOpts = []func(*tls.Config){tlsHardening}
	}
	mgrOptions := ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{
			DefaultTransform: cache.TransformStripManagedFields(),
			ByObject:         byObject,
		},
		// Every read of the cache gives whole objects, trimmed or not.
		NewCache: func(config *rest.Config, opts cache.Options) (cache.Cache, error) {
			c, err := cache.New(config, opts)
			if err != nil {
				return nil, err
			}
			live, err := client.New(config, client.Options{HTTPClient: opts.HTTPClient, Scheme: opts.Scheme, Mapper: opts.Mapper})
			if err != nil {
				return nil, err
			}
			return trimmer.Wrap(c, live)
		},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host:    o.WebhookHost,
			Port:    o.WebhookPort,
			CertDir: o.CertDir,
			// The certificate of --cert-dir as certs loads it: the
			// server starts without one (builtin writes it a moment
			// later) and serves each new one at once.
			TLSOpts: []func(*tls.Config){tlsHardening, certificate.TLSOpt},
		}),
		Metrics:                       metrics,
		HealthProbeBindAddress:        o.HealthAddress,
		LeaderElection:                o.LeaderElect,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       o.Namespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &o.GracefulShutdownPeriod,
	}
	for _, f := range testOptions {
		f(&mgrOptions)
	}
	mgr, err := ctrl.NewManager(cfg, mgrOptions)
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	return mgr, nil
}

// Setup registers the webhook handlers, the controllers and the probes on
// mgr. username is the user the manager authenticates as.
func Setup(ctx context.Context, mgr manager.Manager, o Options, username string) error {
	// Start the informers the webhook reads before it serves, so that the
	// first pods are not slowed by a cold cache.
	informed := []client.Object{&corev1.Namespace{}}
	for _, gvk := range inplacewebhook.OwnerKinds {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(gvk)
		informed = append(informed, m)
	}
	for _, obj := range informed {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
	}

	// The pod webhook reads the workloads, their ReplicaSets and revisions,
	// and nodes, on every replica, elected or not.
	for _, obj := range []client.Object{&appsv1.StatefulSet{}, &appsv1.DaemonSet{}, &appsv1.Deployment{}, &appsv1.ReplicaSet{},
		&appsv1.ControllerRevision{}, &corev1.Node{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("informer for %T: %w", obj, err)
		}
	}
	// And the managed pods (a Deployment's, to check its ReplicaSets'
	// status): a standby would otherwise start their informer on its first
	// such request, and hold that request until it synced. The gates'
	// metrics count that informer's pods at each scrape.
	podInformer, err := mgr.GetCache().GetInformer(ctx, &corev1.Pod{})
	if err != nil {
		return fmt.Errorf("informer for %T: %w", &corev1.Pod{}, err)
	}
	if s, ok := podInformer.(interface{ GetStore() toolscache.Store }); ok {
		podcache.CountGates(s.GetStore())
	}
	nodeInfo := nodes.Nodes{Reader: mgr.GetCache()}
	engine := &engineWatch{clock: clock.RealClock{}, started: time.Now(), elected: o.LeaderElect}
	if o.LeaderElect {
		informer, err := mgr.GetCache().GetInformer(ctx, &coordinationv1.Lease{})
		if err != nil {
			return fmt.Errorf("informer for the leader election lease: %w", err)
		}
		if _, err := informer.AddEventHandler(engine); err != nil {
			return err
		}
	}

	// A stopping replica's answers retire the API server's connections to
	// it for a while before its webhook server shuts down, and its drain
	// waits for the last gate it gave to be stored: each within a quarter of
	// the shutdown's own bound.
	closing := inplacewebhook.NewClosing(min(inplacewebhook.ClosingGrace, o.GracefulShutdownPeriod/4))
	if err := mgr.Add(closing); err != nil {
		return err
	}
	waker := inplacewebhook.Register(mgr.GetWebhookServer(), inplacewebhook.Config{
		Scope:               o.Scope(),
		Reader:              mgr.GetCache(),
		LiveReader:          mgr.GetAPIReader(),
		ManagerUsername:     username,
		Scheme:              mgr.GetScheme(),
		WorkloadControllers: o.WorkloadControllers,
		EngineRunning:       engine.running,
		OnFallback:          rollout.CountFallback,
		OnRefusal:           rollout.CountRefusedDelete,
		Nodes:               nodeInfo,
		Recorder:            mgr.GetEventRecorder("inplace-manager"),
		Writer:              mgr.GetClient(),
		OnWake:              rollout.CountWake,
		Closing:             closing,
	})
	if err := mgr.Add(waker); err != nil {
		return err
	}
	guard := &guardWatch{reader: mgr.GetAPIReader()}
	if err := mgr.Add(guard); err != nil {
		return err
	}
	scope := o.Scope()
	prepulls, err := prepullCache(mgr)
	if err != nil {
		return err
	}
	// The reconcilers' passes: a hung one fails the liveness check, and a
	// stopping replica's drain waits for them to end.
	passes := rollout.NewPasses(nil)
	if err := (&controller.ReadinessGateKeeper{Client: mgr.GetClient(), Guard: guard, Scope: scope, Passes: passes, Elected: mgr.Elected()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the readiness-gate keeper: %w", err)
	}
	for _, kind := range []rollout.Kind{statefulset.Kind{}, daemonset.Kind{}, deployment.Kind{}} {
		if err := (&rollout.Reconciler{
			Kind:           kind,
			Client:         mgr.GetClient(),
			APIReader:      mgr.GetAPIReader(),
			Recorder:       mgr.GetEventRecorder("inplace-manager"),
			Scope:          scope,
			Guard:          guard,
			KubeletVersion: nodeInfo.KubeletVersion,
			UpdateDeadline: o.UpdateDeadline,
			Prepull:        &rollout.Prepull{Default: o.Prepull, Parallelism: o.PrepullParallelism, Pods: prepulls},
			Passes:         passes,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the %s rollout: %w", kind.Name(), err)
		}
	}

	if err := mgr.Add(&controller.ShutdownDrain{Reader: mgr.GetAPIReader(), Client: mgr.GetClient(), Guard: guard, Scope: scope, Elected: mgr.Elected(), Passes: passes,
		LastGate: closing.Retired(), Settle: min(controller.GateSettle, o.GracefulShutdownPeriod/4)}); err != nil {
		return err
	}

	synced := &cacheSynced{cache: mgr.GetCache()}
	if err := mgr.Add(synced); err != nil {
		return err
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	// A replica whose reconcilers hang (each pass is bounded; one past its
	// bound is stuck) fails its liveness probe and is restarted, and another
	// replica is elected: a wedged leader cannot hold a rollout forever.
	if err := mgr.AddHealthzCheck("reconcilers", passes.Check); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", mgr.GetWebhookServer().StartedChecker()); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("cache", synced.Check)
}

// prepullCache is a cache of the prepull pods alone (the manager's cache
// holds the gated pods only), added to mgr: the rollout engine reads them
// and watches their progress. It runs on every replica, elected or not: the
// engine's controllers warm their sources up before they are elected, and
// a source that never syncs stops the replica (controller-runtime runs a
// cache built with ByObject as needing election, unless told).
func prepullCache(mgr manager.Manager) (cache.Cache, error) {
	selector, err := labels.Parse(inplace.LabelPrepullFor)
	if err != nil {
		return nil, err
	}
	c, err := cache.New(mgr.GetConfig(), cache.Options{
		Scheme:           mgr.GetScheme(),
		Mapper:           mgr.GetRESTMapper(),
		HTTPClient:       mgr.GetHTTPClient(),
		DefaultTransform: cache.TransformStripManagedFields(),
		ByObject:         map[client.Object]cache.ByObject{&corev1.Pod{}: {Label: selector}},
	})
	if err != nil {
		return nil, fmt.Errorf("the prepull pods' cache: %w", err)
	}
	return c, mgr.Add(everyReplica{c})
}

// everyReplica runs a cache on every replica of the manager.
type everyReplica struct{ cache.Cache }

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (everyReplica) NeedLeaderElection() bool { return false }

// tlsHardening sets TLS 1.2 as the floor and turns HTTP/2 off on the
// webhook server (the API server speaks HTTP/1.1 to webhooks; HTTP/2 only
// widens the surface, as the 2023 rapid-reset attacks showed).
func tlsHardening(c *tls.Config) {
	c.MinVersion = tls.VersionTLS12
	c.NextProtos = []string{"http/1.1"}
}

// whoAmI returns the user the manager authenticates as: only that user may
// write the manager-owned annotations.
func whoAmI(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme) (string, error) {
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return "", fmt.Errorf("creating a client: %w", err)
	}
	review := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, review); err != nil {
		return "", fmt.Errorf("asking the API server who the manager is (SelfSubjectReview): %w", err)
	}
	if review.Status.UserInfo.Username == "" {
		return "", errors.New("the API server returned no username for the manager (SelfSubjectReview)")
	}
	return review.Status.UserInfo.Username, nil
}

// cacheSynced reports ready once the informers the webhook reads have
// synced: until then the webhook would answer from an empty cache. It runs
// on every replica, leader or not.
type cacheSynced struct {
	cache cache.Cache
	done  atomic.Bool
}

func (s *cacheSynced) Start(ctx context.Context) error {
	if s.cache.WaitForCacheSync(ctx) {
		s.done.Store(true)
	}
	return nil
}

// NeedLeaderElection implements manager.LeaderElectionRunnable.
func (s *cacheSynced) NeedLeaderElection() bool { return false }

// Check implements healthz.Checker.
func (s *cacheSynced) Check(*http.Request) error {
	if !s.done.Load() {
		return errors.New("informers not synced yet")
	}
	return nil
}

// engineLapse is how long after the last renewal of the leader election
// lease that this replica saw the rollout engine counts as running: the
// lease's duration (15 s, controller-runtime's default) and a margin for a
// new leader to be elected and take over.
const engineLapse = 30 * time.Second

// engineWatch tells whether an elected replica runs the rollout controllers:
// it has seen the leader election lease renewed in the last engineLapse, by
// its own clock (the leader's may be skewed from it). A replica that has
// just started counts the engine as running: it is a candidate itself.
// Without leader election, this replica is the engine. Why the refusals
// depend on it: docs/design/2026-11-30-manager-down.md.
type engineWatch struct {
	clock   clock.PassiveClock
	started time.Time
	elected bool

	mu       sync.Mutex
	renewal  time.Time // the lease's renewTime last seen
	observed time.Time // when it was seen
}

func (e *engineWatch) running() bool {
	if !e.elected {
		return true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.clock.Now()
	return now.Sub(e.started) < engineLapse || now.Sub(e.observed) < engineLapse
}

func (e *engineWatch) saw(obj any) {
	lease, ok := obj.(*coordinationv1.Lease)
	if !ok || lease.Spec.RenewTime == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if renewal := lease.Spec.RenewTime.Time; !renewal.Equal(e.renewal) {
		e.renewal, e.observed = renewal, e.clock.Now()
	}
}

// OnAdd, OnUpdate and OnDelete make engineWatch an informer event handler.
func (e *engineWatch) OnAdd(obj any, _ bool) { e.saw(obj) }
func (e *engineWatch) OnUpdate(_, obj any)   { e.saw(obj) }
func (e *engineWatch) OnDelete(any)          {}

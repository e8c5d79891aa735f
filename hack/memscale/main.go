// Command memscale measures inplace-manager's memory at a cluster's scale:
// the managed pods it caches, and the unmanaged ones beside them that it
// must not.
//
// In one run it:
//
//   - starts a real kube-apiserver and etcd (envtest, internal/testenv) and
//     writes into it nodes, and workloads with their pods, managed and not
//     (fixture.go says what they look like);
//   - at each scale (-managed, with -unmanaged pods beside), runs, one after
//     the other, a controller-runtime manager that caches nothing (the
//     floor: what any such process costs) and inplace-manager itself
//     (app.Main, as cmd/inplace-manager runs it), elected leader, so its
//     controllers start too; each as its own process, the manager told its
//     container's memory limit (-memory-limit, one for each scale) as the
//     manifests tell it;
//   - samples each process's resident set from its start: the time until
//     /readyz answers (the informers the webhook reads synced), the peak
//     (VmHWM, the cold start), and the resident set settled, -settle after
//     it is ready: an idle process collects garbage only when the runtime
//     forces it, every two minutes, so a shorter wait reads the cold
//     start's heap; then its live heap, after a collection it is told to
//     make (the figure that does not depend on when the runtime last
//     collected);
//   - prints them side by side; the report is also written to -out.
//
// make bench-memory runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // for serveLive
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/inplace-dev/inplace/cmd/inplace-manager/app"
	"github.com/inplace-dev/inplace/hack/internal/bench"
	"github.com/inplace-dev/inplace/internal/testenv"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve-manager":
			os.Exit(serveManager(os.Args[2:]))
		case "serve-floor":
			os.Exit(serveFloor(os.Args[2:]))
		}
	}
	os.Exit(run(os.Args[1:]))
}

type options struct {
	managed   []int
	unmanaged int
	// unmanagedPods, oldReplicaSets and oldRevisions shape the workloads
	// (fixture.go).
	unmanagedPods, oldReplicaSets, oldRevisions int
	// lastApplied: every workload carries the annotation kubectl apply
	// writes, its manifest.
	lastApplied bool
	settle      time.Duration
	memLimits   []string
	out         string
	workDir     string
}

func run(args []string) int {
	fs := flag.NewFlagSet("memscale", flag.ContinueOnError)
	var o options
	managed := fs.String("managed", "10000,30000", "comma-separated counts of managed pods, in increasing order: one measure at each")
	fs.IntVar(&o.unmanaged, "unmanaged", 20000, "pods of unmanaged workloads beside the managed ones")
	fs.IntVar(&o.unmanagedPods, "unmanaged-workload-pods", podsPerWorkload, "pods of each unmanaged workload (fewer: more workloads for the same -unmanaged)")
	fs.IntVar(&o.oldReplicaSets, "old-replicasets", 3, "old ReplicaSets, scaled to zero, each Deployment keeps (its revisionHistoryLimit; Kubernetes' default is 10)")
	fs.IntVar(&o.oldRevisions, "old-revisions", 1, "old ControllerRevisions each StatefulSet and DaemonSet keeps (as above)")
	fs.BoolVar(&o.lastApplied, "last-applied", false, "every workload carries kubectl.kubernetes.io/last-applied-configuration, its manifest, as kubectl apply (and Argo CD's default sync) leaves it")
	fs.DurationVar(&o.settle, "settle", 150*time.Second, "how long after it is ready a process's resident set is read as settled (past the Go runtime's forced collection, every two minutes, and the scavenger's return of what it freed)")
	memLimits := fs.String("memory-limit", "256Mi,512Mi", `the manager's --memory-limit at each -managed count (the last for the rest), as the manifests set it from the container's; "" for none`)
	fs.StringVar(&o.out, "out", filepath.Join(testenv.Root, ".cache", "bench-memory.txt"), "file the report is also written to")
	fs.StringVar(&o.workDir, "work-dir", filepath.Join(testenv.Root, ".cache", "memscale"), "directory of the processes' logs, certificates and kubeconfig")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, s := range strings.Split(*managed, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < podsPerWorkload || len(o.managed) > 0 && n <= o.managed[len(o.managed)-1] {
			fmt.Fprintf(os.Stderr, "memscale: -managed: %q is not a count of at least %d pods, greater than the one before\n", s, podsPerWorkload)
			return 2
		}
		o.managed = append(o.managed, n)
	}
	o.memLimits = strings.Split(*memLimits, ",")
	if o.unmanaged < 0 || o.settle < 5*time.Second {
		fmt.Fprintln(os.Stderr, "memscale: -unmanaged must be 0 or more, -settle 5s or more")
		return 2
	}
	if o.unmanagedPods < 1 || o.oldReplicaSets < 0 || o.oldRevisions < 0 {
		fmt.Fprintln(os.Stderr, "memscale: -unmanaged-workload-pods must be 1 or more, -old-replicasets and -old-revisions 0 or more")
		return 2
	}
	if err := measure(o); err != nil {
		fmt.Fprintln(os.Stderr, "memscale:", err)
		return 1
	}
	return 0
}

// sample is one process's measure at one scale.
type sample struct {
	// ready: until /readyz answered; synced: until the last controller
	// started its workers, its sources synced (the manager only; to the
	// second, its log's precision).
	ready, synced time.Duration
	// live: the live heap, after a collection forced once settled.
	peak, settled, live int64
}

// liveHeap asks a process measured for its live heap.
func liveHeap(url string) (int64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(b), 10, 64)
}

func measure(o options) error {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	// Interrupted, it still stops what it started.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	certDir := filepath.Join(o.workDir, "certs")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return err
	}
	if _, err := bench.TestCA(certDir, "inplace-webhook."+managerNS+".svc"); err != nil {
		return err
	}

	progress("starting kube-apiserver and etcd (envtest)")
	env, err := testenv.New(false)
	if err != nil {
		return err
	}
	cfg, err := env.Start()
	if err != nil {
		return fmt.Errorf("starting the API server: %w", err)
	}
	defer func() { _ = env.Stop() }()
	cfg.QPS, cfg.Burst = 5000, 5000
	c, err := client.New(cfg, client.Options{Scheme: app.Scheme()})
	if err != nil {
		return err
	}
	// The manager authenticates as its service account would.
	kubeconfigPath, err := bench.ManagerKubeconfig(env, managerNS, o.workDir)
	if err != nil {
		return err
	}

	f := &fixture{c: c, unmanagedPods: o.unmanagedPods, oldReplicaSets: o.oldReplicaSets, oldRevisions: o.oldRevisions, lastApplied: o.lastApplied}
	progress(fmt.Sprintf("writing %d nodes, and %d unmanaged pods with their workloads", nodeCount, o.unmanaged))
	if err := f.base(ctx); err != nil {
		return fmt.Errorf("writing the fixture: %w", err)
	}
	if err := f.grow(ctx, false, o.unmanaged); err != nil {
		return fmt.Errorf("writing the fixture: %w", err)
	}
	type row struct {
		managed      int
		limit        string
		floor, inplc sample
	}
	var rows []row
	for i, n := range o.managed {
		limit := o.memLimits[min(i, len(o.memLimits)-1)]
		progress(fmt.Sprintf("writing managed pods with their workloads, up to %d", n))
		if err := f.grow(ctx, true, n); err != nil {
			return fmt.Errorf("writing the fixture: %w", err)
		}
		r := row{managed: f.managed * podsPerWorkload, limit: limit}
		if r.floor, err = o.run(ctx, "floor", limit, kubeconfigPath, certDir); err != nil {
			return err
		}
		if r.inplc, err = o.run(ctx, "manager", limit, kubeconfigPath, certDir); err != nil {
			return err
		}
		rows = append(rows, r)
	}

	var report strings.Builder
	w := io.MultiWriter(os.Stdout, &report)
	fmt.Fprintf(w, "\nmemscale: %d unmanaged pods in %d workloads beside the managed; %d nodes; %d pods a managed workload; "+
		"%d old ReplicaSets a Deployment, %d old revisions a StatefulSet or DaemonSet; last-applied manifests: %v; settled %v after ready\n\n",
		f.unmanaged*f.unmanagedPods, f.unmanaged, nodeCount, podsPerWorkload, f.oldReplicaSets, f.oldRevisions, f.lastApplied, o.settle)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "managed pods\tmemory limit\tfloor settled\tfloor live heap\tmanager ready in\tcontrollers synced in\tmanager settled\tmanager peak\tmanager live heap\tpeak / settled\tsettled / floor\tlive heap a managed pod")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%.1f s\t%.0f s\t%s\t%s\t%s\t%.2fx\t%.2fx\t%.1f KiB\n", r.managed, r.limit, mib(r.floor.settled), mib(r.floor.live),
			r.inplc.ready.Seconds(), r.inplc.synced.Seconds(), mib(r.inplc.settled), mib(r.inplc.peak), mib(r.inplc.live),
			float64(r.inplc.peak)/float64(r.inplc.settled), float64(r.inplc.settled)/float64(r.floor.settled),
			float64(r.inplc.live-r.floor.live)/float64(r.managed)/1024)
	}
	_ = tw.Flush()
	if err := os.WriteFile(o.out, []byte(report.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten to %s; the processes' logs are in %s\n", o.out, o.workDir)
	return nil
}

// run starts the named process, waits for it to be ready and settled, and
// returns what its memory did.
func (o options) run(ctx context.Context, name, memLimit, kubeconfig, certDir string) (sample, error) {
	ports := make([]int, 4)
	for i := range ports {
		p, err := bench.FreePort()
		if err != nil {
			return sample{}, err
		}
		ports[i] = p
	}
	health := "127.0.0.1:" + strconv.Itoa(ports[2])
	live := "127.0.0.1:" + strconv.Itoa(ports[3])
	args := []string{"serve-floor", "--health-probe-bind-address=" + health}
	if name == "manager" {
		args = []string{"serve-manager", "--namespace=" + managerNS, "--cert-mode=secret", "--cert-dir=" + certDir,
			"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(ports[0]),
			"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(ports[1]), "--metrics-secure=false",
			"--health-probe-bind-address=" + health, "--graceful-shutdown-timeout=5s"}
	}
	env := []string{"KUBECONFIG=" + kubeconfig, "MEMORY_LIMIT=" + memLimit, "MEMSCALE_ADDR=" + live}
	progress(fmt.Sprintf("starting %s (its profiles at http://%s/debug/pprof/)", name, live))
	p, err := bench.Start(name, filepath.Join(o.workDir, name+".log"), env, args...)
	if err != nil {
		return sample{}, err
	}
	defer p.Stop()
	began := time.Now()
	readyz := bench.Readyz("http://" + health + "/readyz")
	err = p.WaitReady(10*time.Minute, func() error {
		if ctx.Err() != nil {
			return nil // told below
		}
		return readyz()
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return sample{}, err
	}
	s := sample{ready: time.Since(began)}
	// Settled: the median of the resident set over the last ten seconds.
	var last []int64
	for end := time.Now().Add(o.settle); time.Now().Before(end); {
		select {
		case exit := <-p.Exited:
			return sample{}, fmt.Errorf("%s exited: %v", name, exit)
		case <-ctx.Done():
			return sample{}, ctx.Err()
		case <-time.After(time.Second):
		}
		m, err := bench.MemoryOf(p.Pid())
		if err != nil {
			return sample{}, err
		}
		last = append(last, m.RSS)
		if len(last) > 10 {
			last = last[1:]
		}
		s.peak = m.Peak
	}
	slices.Sort(last)
	s.settled = last[len(last)/2]
	if s.live, err = liveHeap("http://" + live + "/live"); err != nil {
		return sample{}, fmt.Errorf("%s: %w", name, err)
	}
	if name == "manager" {
		if s.synced, err = workersStarted(filepath.Join(o.workDir, name+".log"), began); err != nil {
			return sample{}, err
		}
	}
	progress(fmt.Sprintf("%s: ready in %.1f s, controllers synced in %v, settled %s, peak %s, live heap %s", name, s.ready.Seconds(), s.synced, mib(s.settled), mib(s.peak), mib(s.live)))
	return s, nil
}

// workersStarted reads the manager's log for the last of its controllers
// to start its workers (controller-runtime does once the controller's
// sources have synced) and returns how long after began that was.
func workersStarted(log string, began time.Time) (time.Duration, error) {
	b, err := os.ReadFile(log)
	if err != nil {
		return 0, err
	}
	var last time.Time
	for _, line := range strings.Split(string(b), "\n") {
		var entry struct {
			Msg string `json:"msg"`
			TS  string `json:"ts"`
		}
		if !strings.Contains(line, `"Starting workers"`) || json.Unmarshal([]byte(line), &entry) != nil {
			continue
		}
		if ts, err := time.Parse(time.RFC3339, entry.TS); err == nil && ts.After(last) {
			last = ts
		}
	}
	if last.IsZero() {
		return 0, fmt.Errorf("%s: no controller started its workers", log)
	}
	return max(0, last.Sub(began.Truncate(time.Second))), nil
}

// serveManager runs inplace-manager itself, and the measure's own
// endpoint (serveLive).
func serveManager(args []string) int {
	go serveLive()
	return app.Main(args)
}

// serveLive serves, on $MEMSCALE_ADDR, /live: the live heap in bytes after
// a collection, and the Go runtime's profiles (go tool pprof
// http://<address>/debug/pprof/heap while the process runs).
func serveLive() {
	http.HandleFunc("/live", func(w http.ResponseWriter, _ *http.Request) {
		runtime.GC()
		m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		metrics.Read(m)
		fmt.Fprint(w, m[0].Value.Uint64())
	})
	if err := http.ListenAndServe(os.Getenv("MEMSCALE_ADDR"), nil); err != nil {
		fmt.Fprintln(os.Stderr, "memscale:", err)
	}
}

// serveFloor runs a controller-runtime manager that caches nothing and runs
// nothing but its probes: what any such process costs, client and runtime
// included.
func serveFloor(args []string) int {
	fs := flag.NewFlagSet("serve-floor", flag.ContinueOnError)
	health := fs.String("health-probe-bind-address", "", "address of /readyz")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctrl.SetLogger(zap.New())
	go serveLive()
	mgr, err := manager.New(ctrl.GetConfigOrDie(), manager.Options{
		Scheme: app.Scheme(), HealthProbeBindAddress: *health, Metrics: metricsserver.Options{BindAddress: "0"},
	})
	if err == nil {
		err = mgr.AddReadyzCheck("ping", healthz.Ping)
	}
	if err == nil {
		err = mgr.Start(ctrl.SetupSignalHandler())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

func progress(msg string) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), msg)
}

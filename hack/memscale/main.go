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
//     controllers start too; each as its own process, with the GOMEMLIMIT
//     of the chart's default memory limit;
//   - samples each process's resident set from its start: the time until
//     /readyz answers (the manager's caches synced), the peak (VmHWM, the
//     cold start), and the resident set settled, -settle after it is ready;
//   - prints them side by side; the report is also written to -out.
//
// make bench-memory runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	_ "net/http/pprof" // for serveManager
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
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
	settle    time.Duration
	memLimit  string
	out       string
	workDir   string
}

func run(args []string) int {
	fs := flag.NewFlagSet("memscale", flag.ContinueOnError)
	var o options
	managed := fs.String("managed", "10000,30000", "comma-separated counts of managed pods, in increasing order: one measure at each")
	fs.IntVar(&o.unmanaged, "unmanaged", 20000, "pods of unmanaged workloads beside the managed ones")
	fs.DurationVar(&o.settle, "settle", 60*time.Second, "how long after it is ready a process's resident set is read as settled")
	fs.StringVar(&o.memLimit, "gomemlimit", "256MiB", `GOMEMLIMIT of the processes measured (the chart sets it to the memory limit, 256Mi by default); "off" for none`)
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
	if o.unmanaged < 0 || o.settle < 5*time.Second {
		fmt.Fprintln(os.Stderr, "memscale: -unmanaged must be 0 or more, -settle 5s or more")
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
	ready         time.Duration
	peak, settled int64
}

func measure(o options) error {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard)))
	ctx, cancel := context.WithCancel(context.Background())
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
	user, err := env.AddUser(envtest.User{Name: "system:serviceaccount:" + managerNS + ":inplace-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(o.workDir, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return err
	}

	f := &fixture{c: c}
	progress(fmt.Sprintf("writing %d nodes, and %d unmanaged pods with their workloads", nodeCount, o.unmanaged))
	if err := f.base(ctx); err != nil {
		return fmt.Errorf("writing the fixture: %w", err)
	}
	if err := f.grow(ctx, false, o.unmanaged); err != nil {
		return fmt.Errorf("writing the fixture: %w", err)
	}
	type row struct {
		managed      int
		floor, inplc sample
	}
	var rows []row
	for _, n := range o.managed {
		progress(fmt.Sprintf("writing managed pods with their workloads, up to %d", n))
		if err := f.grow(ctx, true, n); err != nil {
			return fmt.Errorf("writing the fixture: %w", err)
		}
		r := row{managed: f.managed * podsPerWorkload}
		if r.floor, err = o.run("floor", kubeconfigPath, certDir); err != nil {
			return err
		}
		if r.inplc, err = o.run("manager", kubeconfigPath, certDir); err != nil {
			return err
		}
		rows = append(rows, r)
	}

	var report strings.Builder
	w := io.MultiWriter(os.Stdout, &report)
	fmt.Fprintf(w, "\nmemscale: %d unmanaged pods beside the managed; %d nodes; %d pods a workload; GOMEMLIMIT %s; settled %v after ready\n\n",
		f.unmanaged*podsPerWorkload, nodeCount, podsPerWorkload, o.memLimit, o.settle)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "managed pods\tfloor settled\tfloor peak\tmanager ready in\tmanager settled\tmanager peak\tpeak / settled\tsettled - floor")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%.1f s\t%s\t%s\t%.2fx\t%s\n", r.managed, mib(r.floor.settled), mib(r.floor.peak),
			r.inplc.ready.Seconds(), mib(r.inplc.settled), mib(r.inplc.peak), float64(r.inplc.peak)/float64(r.inplc.settled), mib(r.inplc.settled-r.floor.settled))
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
func (o options) run(name, kubeconfig, certDir string) (sample, error) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := bench.FreePort()
		if err != nil {
			return sample{}, err
		}
		ports[i] = p
	}
	health := "127.0.0.1:" + strconv.Itoa(ports[2])
	args := []string{"serve-floor", "--health-probe-bind-address=" + health}
	if name == "manager" {
		args = []string{"serve-manager", "--namespace=" + managerNS, "--cert-mode=secret", "--cert-dir=" + certDir,
			"--webhook-host=127.0.0.1", "--webhook-port=" + strconv.Itoa(ports[0]),
			"--metrics-bind-address=127.0.0.1:" + strconv.Itoa(ports[1]), "--metrics-secure=false",
			"--health-probe-bind-address=" + health, "--graceful-shutdown-timeout=5s"}
	}
	env := []string{"KUBECONFIG=" + kubeconfig}
	if o.memLimit != "off" {
		env = append(env, "GOMEMLIMIT="+o.memLimit)
	}
	progress("starting " + name)
	p, err := bench.Start(name, filepath.Join(o.workDir, name+".log"), env, args...)
	if err != nil {
		return sample{}, err
	}
	defer p.Stop()
	began := time.Now()
	err = p.WaitReady(10*time.Minute, func() error {
		resp, err := http.Get("http://" + health + "/readyz")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", body)
		}
		return nil
	})
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
	progress(fmt.Sprintf("%s: ready in %.1f s, settled %s, peak %s", name, s.ready.Seconds(), mib(s.settled), mib(s.peak)))
	return s, nil
}

// serveManager runs inplace-manager itself, and serves the Go runtime's
// profiles on $MEMSCALE_PPROF when set (an address: go tool pprof
// http://<address>/debug/pprof/heap while it runs).
func serveManager(args []string) int {
	if addr := os.Getenv("MEMSCALE_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
	return app.Main(args)
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

// Command admissionload measures what inplace's admission webhooks add to
// the API server's write path: it sends real AdmissionReviews over TLS, at
// fixed rates, to inplace-manager and, in the same run, to a webhook that
// does nothing (the floor), and prints their latencies side by side.
//
// In one run it:
//
//   - starts a real kube-apiserver and etcd (envtest, internal/testenv) and
//     writes into it the namespaces, workloads, ReplicaSets,
//     ControllerRevisions and pods the requests refer to;
//   - runs inplace-manager itself (app.Main, as cmd/inplace-manager does) as
//     a replica that is not elected: its webhook server, its real handlers,
//     its cache and informers as in production, its live reads; no
//     controller of it acts on the fixture (another holder of the leader
//     lease, renewed while the load runs, is the elected one);
//   - runs the floor: controller-runtime's webhook server with a typed
//     Defaulter or Validator that does nothing at each path, served the same
//     way (its own process, the same test CA, TLS 1.2+, HTTP/1.1);
//   - drives each at every rate, open loop, with the same mix of requests
//     (pod creates of managed and unmanaged pods, workload updates image
//     only and not, the StatefulSet controller's pod deletes), in rounds
//     that alternate the two so that both see the same noise;
//   - prints, per rate, p50, p99, p99.9, max and errors of each and their
//     ratio, the servers' CPU per request, and the API server requests the
//     manager made; the report is also written to -out.
//
// Latency runs from each request's scheduled send time to the end of its
// response, so that a server that falls behind pays for its queue.
//
// make bench-admission runs it. It lives in the main module (it runs the
// manager's own code and internal/testenv), under hack/ because it is a
// developer's tool: it needs no cluster, unlike e2e/.
package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

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
	rates    []int
	duration time.Duration
	rounds   int
	warmup   time.Duration
	timeout  time.Duration
	out      string
	profile  string
	workDir  string
	dump     string
}

func run(args []string) int {
	fs := flag.NewFlagSet("admissionload", flag.ContinueOnError)
	var o options
	rates := fs.String("rates", "100,500,1000", "comma-separated request rates, per second")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "how long each server is driven at each rate (split into -rounds)")
	fs.IntVar(&o.rounds, "rounds", 6, "alternated rounds per rate: the floor and the manager take turns, first one then the other")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "load sent to each server at each rate before the measure, not counted")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Second, "a request unanswered after this is an error (the pod webhooks' timeoutSeconds)")
	fs.StringVar(&o.out, "out", filepath.Join(testenv.Root, ".cache", "bench-admission.txt"), "file the report is also written to")
	fs.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the manager, over the whole run, to this file")
	fs.StringVar(&o.dump, "dump", "", "write each request's AdmissionReview, and the objects they refer to, into this directory, and stop")
	fs.StringVar(&o.workDir, "work-dir", filepath.Join(testenv.Root, ".cache", "admissionload"), "directory of the servers' logs, certificates and kubeconfig")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, r := range strings.Split(*rates, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(r))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "admissionload: -rates: %q is not a positive number\n", r)
			return 2
		}
		o.rates = append(o.rates, n)
	}
	if o.rounds < 1 || o.duration < time.Duration(o.rounds)*time.Second {
		fmt.Fprintln(os.Stderr, "admissionload: -duration must give each of the -rounds a second at least")
		return 2
	}
	if err := measure(o); err != nil {
		fmt.Fprintln(os.Stderr, "admissionload:", err)
		return 1
	}
	return 0
}

func measure(o options) error {
	logf.SetLogger(zap.New(zap.WriteTo(io.Discard))) // envtest's logs; the servers log to their files
	// The load's own garbage is short-lived; collect it less often, so
	// that the load takes less of the CPU the servers share.
	debug.SetGCPercent(400)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return err
	}
	certDir := filepath.Join(o.workDir, "certs")
	if err := os.MkdirAll(certDir, 0o755); err != nil {
		return err
	}
	pool, err := bench.TestCA(certDir, "inplace-webhook."+managerNS+".svc")
	if err != nil {
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
	c, err := client.New(cfg, client.Options{Scheme: app.Scheme()})
	if err != nil {
		return err
	}
	f, err := populate(ctx, c)
	if err != nil {
		return fmt.Errorf("writing the fixture: %w", err)
	}
	scens, err := scenarios(ctx, c, f)
	if err != nil {
		return fmt.Errorf("building the requests: %w", err)
	}
	if o.dump != "" {
		return dump(ctx, c, o.dump, scens)
	}
	go renewLease(ctx, c)

	// The manager authenticates as its service account would.
	kubeconfigPath, err := bench.ManagerKubeconfig(env, managerNS, o.workDir)
	if err != nil {
		return err
	}

	mgr, err := startManager(o, kubeconfigPath, certDir, pool)
	if err != nil {
		return err
	}
	defer mgr.Stop()
	floor, err := startFloor(o, certDir, pool)
	if err != nil {
		return err
	}
	defer floor.Stop()

	// Each server answers each request once as it should before the load.
	floorWant := func(scenario) answer { return answer{allowed: true} }
	mgrWant := func(s scenario) answer { return s.want }
	for _, sc := range scens {
		for _, t := range []struct {
			srv  *server
			want func(scenario) answer
		}{{mgr, mgrWant}, {floor, floorWant}} {
			got, body, err := once(ctx, t.srv, sc)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", t.srv.Name, sc.name, err)
			}
			if got != t.want(sc) {
				return fmt.Errorf("%s answers %s with %s, want %s: %s", t.srv.Name, sc.name, got, t.want(sc), body)
			}
		}
	}

	apiserver := bench.ChildNamed("kube-apiserver")
	var report strings.Builder
	w := io.MultiWriter(os.Stdout, &report)
	header(w, o, scens)
	var rows []summaryRow
	for _, rate := range o.rates {
		progress(fmt.Sprintf("%d/s: warming up", rate))
		if n := int(o.warmup.Seconds() * float64(rate)); n > 0 {
			drive(ctx, floor, scens, floorWant, mix(scens, n, uint64(rate)), rate)
			drive(ctx, mgr, scens, mgrWant, mix(scens, n, uint64(rate)), rate)
		}
		per := int(o.duration.Seconds() * float64(rate) / float64(o.rounds))
		var got [2]segment // floor, manager
		for round := range o.rounds {
			seq := mix(scens, per, uint64(rate)*1000+uint64(round)+1)
			order := []int{0, 1}
			if round%2 == 1 {
				order = []int{1, 0}
			}
			for _, i := range order {
				srv, want := floor, floorWant
				if i == 1 {
					srv, want = mgr, mgrWant
				}
				progress(fmt.Sprintf("%d/s: round %d of %d, %s", rate, round+1, o.rounds, srv.Name))
				seg, err := measured(ctx, srv, mgr, apiserver, func() segment { return drive(ctx, srv, scens, want, seq, rate) })
				if err != nil {
					return err
				}
				got[i].add(seg)
				time.Sleep(200 * time.Millisecond) // the tail of one segment stays out of the next
			}
		}
		rows = append(rows, table(w, rate, o, scens, got[0], got[1]))
	}
	summary(w, rows)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(o.out, []byte(report.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("\nwritten to %s; the servers' logs are in %s\n", o.out, o.workDir)
	return nil
}

// measured runs one segment and records around it the server's CPU, the
// API server's and the manager's requests to it.
func measured(ctx context.Context, srv, mgr *server, apiserver int, run func() segment) (segment, error) {
	cpu0, api0, load0 := bench.CPU(srv.Pid()), bench.CPU(apiserver), bench.CPU(os.Getpid())
	req0, err := apiRequests(mgr.metrics)
	if err != nil {
		return segment{}, fmt.Errorf("reading the manager's metrics: %w", err)
	}
	seg := run()
	seg.cpu, seg.apiserverCPU, seg.loadCPU = bench.CPU(srv.Pid())-cpu0, bench.CPU(apiserver)-api0, bench.CPU(os.Getpid())-load0
	req1, err := apiRequests(mgr.metrics)
	if err != nil {
		return segment{}, fmt.Errorf("reading the manager's metrics: %w", err)
	}
	seg.apiRequests = req1 - req0
	select {
	case err := <-srv.Exited:
		return segment{}, fmt.Errorf("%s exited under load: %v", srv.Name, err)
	default:
	}
	return seg, ctx.Err()
}

func (s *segment) add(o segment) {
	s.samples = append(s.samples, o.samples...)
	s.lag = max(s.lag, o.lag)
	s.cpu += o.cpu
	s.apiserverCPU += o.apiserverCPU
	s.loadCPU += o.loadCPU
	s.apiRequests += o.apiRequests
	s.elapsed += o.elapsed
}

func startManager(o options, kubeconfig, certDir string, pool *x509.CertPool) (*server, error) {
	ports := make([]int, 3)
	for i := range ports {
		p, err := bench.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	args := []string{"serve-manager"}
	if o.profile != "" {
		args = append(args, "-cpuprofile", o.profile)
	}
	args = append(args, "--",
		"--namespace="+managerNS,
		"--cert-mode=secret",
		"--cert-dir="+certDir,
		"--webhook-host=127.0.0.1",
		"--webhook-port="+strconv.Itoa(ports[0]),
		"--metrics-bind-address=127.0.0.1:"+strconv.Itoa(ports[1]),
		"--metrics-secure=false",
		"--health-probe-bind-address=127.0.0.1:"+strconv.Itoa(ports[2]),
		"--graceful-shutdown-timeout=5s",
	)
	progress("starting inplace-manager")
	// The kubeconfig by $KUBECONFIG, not --kubeconfig: the manager then
	// loads it as it loads its in-cluster configuration (ctrl.GetConfig),
	// with no client-side rate limit; --kubeconfig would give its live reads
	// client-go's default of 5 requests a second.
	p, err := bench.Start("manager", filepath.Join(o.workDir, "manager.log"), []string{"KUBECONFIG=" + kubeconfig}, args...)
	if err != nil {
		return nil, err
	}
	s := &server{Process: p}
	s.url = "https://127.0.0.1:" + strconv.Itoa(ports[0])
	s.metrics = "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/metrics"
	s.client = newClient(pool, o.timeout)
	readyz := "http://127.0.0.1:" + strconv.Itoa(ports[2]) + "/readyz"
	err = s.WaitReady(60*time.Second, bench.Readyz(readyz))
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func startFloor(o options, certDir string, pool *x509.CertPool) (*server, error) {
	port, err := bench.FreePort()
	if err != nil {
		return nil, err
	}
	progress("starting the floor")
	p, err := bench.Start("floor", filepath.Join(o.workDir, "floor.log"), nil, "serve-floor", "-cert-dir", certDir, "-port", strconv.Itoa(port))
	if err != nil {
		return nil, err
	}
	s := &server{Process: p}
	s.url = "https://127.0.0.1:" + strconv.Itoa(port)
	s.client = newClient(pool, o.timeout)
	err = s.WaitReady(30*time.Second, func() error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func progress(msg string) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), msg)
}

// header says what was measured, when and where.
func header(w io.Writer, o options, scens []scenario) {
	fmt.Fprintln(w, "inplace-manager's admission webhooks against the floor (a controller-runtime webhook that does nothing),")
	fmt.Fprintln(w, "each in its own process, over TLS (HTTP/1.1, connections reused), driven open loop in alternated rounds.")
	fmt.Fprintf(w, "date:    %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s\n", machine())
	fmt.Fprintf(w, "command: admissionload -rates %s -duration %v -rounds %d -warmup %v\n",
		joinInts(o.rates), o.duration, o.rounds, o.warmup)
	fmt.Fprintln(w, "mix, per 100 requests (the manager's answer, the AdmissionReview's size):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range scens {
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%.1f kB\n", s.weight, s.name, s.path, s.want, float64(len(s.body))/1000)
	}
	_ = tw.Flush()
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load average " + strings.Join(strings.Fields(string(b))[:3], " ") + " at start"
	}
	return fmt.Sprintf("%d CPUs (nproc), %s%s", runtime.NumCPU(), model, load)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

type summaryRow struct {
	rate         int
	floor, mgr   stats
	floorCPU     time.Duration
	managerCPU   time.Duration
	apiPerSecond float64
}

// table prints one rate's figures.
func table(w io.Writer, rate int, o options, scens []scenario, floor, mgr segment) summaryRow {
	fs, ms := statsOf(floor.samples, nil), statsOf(mgr.samples, nil)
	fmt.Fprintf(w, "\n%d/s: %d requests to each, %d rounds of %v; the load's latest send was %v late, its own CPU %s a request\n",
		rate, ms.n, o.rounds, o.duration/time.Duration(o.rounds), max(floor.lag, mgr.lag).Round(time.Microsecond),
		perRequest(floor.loadCPU+mgr.loadCPU, fs.n+ms.n))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\tp50\tp99\tp99.9\tmax\terrors\tCPU/request\t")
	row := func(name string, st stats, seg segment) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t\n", name, ms2(st.p50), ms2(st.p99), ms2(st.p999), ms2(st.max), st.errors, perRequest(seg.cpu, st.n))
	}
	row("floor", fs, floor)
	row("manager", ms, mgr)
	fmt.Fprintf(tw, "manager/floor\t%s\t%s\t%s\t%s\t\t%s\t\n", ratio(ms.p50, fs.p50), ratio(ms.p99, fs.p99), ratio(ms.p999, fs.p999), ratio(ms.max, fs.max),
		ratio(perRequestD(mgr.cpu, ms.n), perRequestD(floor.cpu, fs.n)))
	_ = tw.Flush()
	apiRate := mgr.apiRequests / mgr.elapsed.Seconds()
	idleRate := floor.apiRequests / floor.elapsed.Seconds()
	fmt.Fprintf(w, "API server: the manager sent it %.1f requests/s under this load (%.1f/s idle, during the floor's turns); its CPU %s (%s during the floor's turns)\n",
		apiRate, idleRate, cpuShare(mgr.apiserverCPU, mgr.elapsed), cpuShare(floor.apiserverCPU, floor.elapsed))
	fmt.Fprintln(w, "p50 / p99 by request, manager | floor:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, s := range scens {
		only := func(x sample) bool { return x.scenario == i }
		m, f := statsOf(mgr.samples, only), statsOf(floor.samples, only)
		fmt.Fprintf(tw, "  %s\t%s / %s\t| %s / %s\t\n", s.name, ms2(m.p50), ms2(m.p99), ms2(f.p50), ms2(f.p99))
	}
	_ = tw.Flush()
	errs := map[string]int{}
	for _, seg := range []segment{floor, mgr} {
		for _, s := range seg.samples {
			if s.err != "" {
				errs[s.err]++
			}
		}
	}
	for _, e := range slices.Sorted(maps.Keys(errs)) {
		fmt.Fprintf(w, "error: %dx %s\n", errs[e], e)
	}
	return summaryRow{rate: rate, floor: fs, mgr: ms, floorCPU: perRequestD(floor.cpu, fs.n), managerCPU: perRequestD(mgr.cpu, ms.n), apiPerSecond: apiRate - idleRate}
}

// summary prints every rate in one table, for the docs.
func summary(w io.Writer, rows []summaryRow) {
	fmt.Fprintln(w, "\nsummary (latency in ms; ratio = manager / floor):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate/s\tfloor p50\tmanager p50\tfloor p99\tmanager p99\tratio p99\tfloor p99.9\tmanager p99.9\tratio p99.9\terrors\tCPU/request floor\tmanager\t")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d / %d\t%s\t%s\t\n", r.rate,
			ms2(r.floor.p50), ms2(r.mgr.p50), ms2(r.floor.p99), ms2(r.mgr.p99), ratio(r.mgr.p99, r.floor.p99),
			ms2(r.floor.p999), ms2(r.mgr.p999), ratio(r.mgr.p999, r.floor.p999), r.floor.errors, r.mgr.errors,
			us(r.floorCPU), us(r.managerCPU))
	}
	_ = tw.Flush()
}

func ms2(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func ratio(a, b time.Duration) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}

func perRequestD(d time.Duration, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return d / time.Duration(n)
}

func perRequest(d time.Duration, n int) string { return us(perRequestD(d, n)) }

func us(d time.Duration) string { return fmt.Sprintf("%dµs", d.Microseconds()) }

func cpuShare(d, over time.Duration) string {
	return fmt.Sprintf("%.0f ms/s", float64(d.Milliseconds())/over.Seconds())
}

// Command benchapi measures what inplace costs the API server, as the API
// server's own metrics tell it, beside a baseline measured in the same run:
//
//   - Pod creates: a Deployment of -pods pods (300) that no node runs (a
//     node selector no node matches: the API server's work alone), in a
//     namespace inplace manages and in one it does not, alternately, -runs
//     times. From the API server's histograms: the latency of pod creates
//     (apiserver_request_duration_seconds, POST pods) and of each inplace
//     admission webhook called on them
//     (apiserver_admission_webhook_admission_duration_seconds): p50 and p99
//     interpolated within the buckets as Prometheus's histogram_quantile
//     does, the mean (sum over count), and how many were within 5 and
//     25 ms. A third mode, "called", is an unmanaged namespace whose pod
//     creates still call inplace's pod webhook, registered as the manifests
//     register it but for that namespace alone: the manager answers them
//     from its cache without a change, so the mode is what a webhook call
//     costs a create on this cluster, whatever the webhook decides.
//   - Rollouts, of each of -rollout-kinds: a StatefulSet of each of
//     -rollout-pods pods (10), Parallel (maxUnavailable 2) and OrderedReady
//     (maxUnavailable 1); a Deployment of as many, with the default
//     strategy (maxSurge and maxUnavailable 25%); a DaemonSet (a pod a
//     node, whatever the size; maxUnavailable 1, once). Each is rolled from
//     one image to another in place (a managed namespace) and natively (an
//     unmanaged one): the API server's writes by resource and verb
//     (apiserver_request_total), the replacements refused, the Warning
//     events in the namespace, and the latency of the kubelets' pod status
//     writes (PATCH pods/status, which the readiness guard policy checks for
//     managed pods).
//
// The API server's metrics are the whole server's: nothing else should run
// on the cluster meanwhile. It runs where the cluster's API server is
// reachable (make bench-apiserver enters the e2e cluster's network
// namespace), as an identity allowed to read /metrics.
package main

import (
	"bytes"
	"cmp"
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/inplace-dev/inplace/e2e/internal/e2ekit"
)

func main() {
	pods := flag.Int("pods", 300, "pods of each Deployment that no node runs")
	runs := flag.Int("runs", 2, "runs of each mode of the pod creates")
	rolloutPods := flag.String("rollout-pods", "10", "comma-separated sizes of the workloads rolled out (empty: none)")
	rolloutKinds := flag.String("rollout-kinds", "statefulset,deployment,daemonset", "comma-separated kinds rolled out: statefulset, deployment, daemonset")
	images := flag.String("images", "example.local/inplace-testapp:v1,example.local/inplace-testapp:v2", "the two images the rollouts go between (present on every node)")
	timeout := flag.Duration("timeout", 10*time.Minute, "how long one step may take")
	auditLog := flag.String("audit-log", "", "the API server's audit log of pod creates (e2e/cluster/up.sh writes one): each create's latency exactly, beside the histograms")
	idle := flag.Duration("idle", 0, "wait this long before each run of the pod creates: past 90s, the API server's webhook client and the webhook server have closed their idle connections, so that each managed run starts as a burst after quiet does, with none")
	flag.Parse()
	from, to, ok := strings.Cut(*images, ",")
	if *pods < 0 || *runs < 0 || *idle < 0 || !ok {
		fmt.Fprintln(os.Stderr, "benchapi: -pods, -runs and -idle must not be negative; -images names two images")
		os.Exit(2)
	}
	var sizes []int
	for s := range strings.SplitSeq(*rolloutPods, ",") {
		if s == "" {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "benchapi: -rollout-pods: %q is not a positive number\n", s)
			os.Exit(2)
		}
		sizes = append(sizes, n)
	}
	var kinds []string
	for k := range strings.SplitSeq(*rolloutKinds, ",") {
		if !slices.Contains([]string{"statefulset", "deployment", "daemonset"}, k) {
			fmt.Fprintf(os.Stderr, "benchapi: -rollout-kinds: %q is not statefulset, deployment or daemonset\n", k)
			os.Exit(2)
		}
		kinds = append(kinds, k)
	}
	c, err := e2ekit.Client()
	if err != nil {
		fail(err)
	}
	cfg, err := config.GetConfig()
	if err != nil {
		fail(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fail(err)
	}
	b := &bench{client: c, clientset: cs, from: from, to: to, timeout: *timeout, auditLog: *auditLog, idle: *idle}
	ctx := context.Background()
	if *pods > 0 && *runs > 0 {
		if err := b.creates(ctx, *pods, *runs); err != nil {
			fail(err)
		}
	}
	if len(sizes) > 0 {
		if err := b.rollouts(ctx, kinds, sizes); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "benchapi: %v\n", err)
	os.Exit(1)
}

type bench struct {
	client    client.WithWatch
	clientset kubernetes.Interface
	from, to  string
	timeout   time.Duration
	auditLog  string
	idle      time.Duration
}

// The inplace pod webhooks whose pod-create latency the table reports: the
// mutating one sees every create of a managed workload's pod; the
// validating one sees deletes only, and is listed so that the table shows
// it got no create.
var podWebhooks = []string{"pods.mutate.inplace.dev", "pods.validate.inplace.dev"}

// calledWebhook is the webhook the "called" mode registers: a copy of
// pods.mutate.inplace.dev that selects one namespace by its name.
const calledWebhook = "called.benchapi.inplace.dev"

// creates runs the pod-create part and prints its table.
func (b *bench) creates(ctx context.Context, pods, runs int) error {
	type sums struct {
		create   histogram
		audited  durations
		webhooks map[string]histogram
		took     []time.Duration
		ungated  int
		reads    float64 // the manager's GETs of the API server meanwhile
	}
	// The manager's own requests, from its metrics: the reads its webhook
	// makes live where the cache does not do.
	scraperNS, err := e2ekit.CreateNamespace(ctx, b.client, "benchapi-metrics", false)
	if err != nil {
		return err
	}
	defer e2ekit.DeleteNamespace(b.client, scraperNS)
	scraper, cleanup, err := e2ekit.NewMetricsScraper(ctx, b.client, scraperNS)
	if err != nil {
		return err
	}
	defer cleanup()
	managerReads := func() (float64, error) {
		return scraper.Sum(ctx, b.client, "rest_client_requests_total{", `method="GET"`)
	}
	modes := []string{"managed", "called", "unmanaged"}
	all := map[string]*sums{}
	for _, m := range modes {
		all[m] = &sums{webhooks: map[string]histogram{}}
	}
	for run := 1; run <= runs; run++ {
		// Each run starts with another mode: the first of a run finds the
		// webhook's connections as the last run left them.
		k := (run - 1) % len(modes)
		for _, mode := range slices.Concat(modes[k:], modes[:k]) {
			if b.idle > 0 {
				fmt.Printf("%-9s run %d: idle for %s first\n", mode, run, b.idle)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(b.idle):
				}
			}
			ns, err := e2ekit.CreateNamespace(ctx, b.client, "benchapi-creates", mode == "managed")
			if err != nil {
				return err
			}
			unregister := func() {}
			if mode == "called" {
				if unregister, err = b.callWebhook(ctx, ns); err != nil {
					e2ekit.DeleteNamespace(b.client, ns)
					return fmt.Errorf("%s, run %d: %w", mode, run, err)
				}
			}
			before, err := b.scrape(ctx)
			if err != nil {
				return err
			}
			readsBefore, err := managerReads()
			if err != nil {
				return err
			}
			start := time.Now()
			ungated, err := b.createPending(ctx, ns, pods)
			took := time.Since(start)
			after, scrapeErr := b.scrape(ctx)
			readsAfter, readsErr := managerReads()
			scrapeErr = cmp.Or(scrapeErr, readsErr)
			var audited durations
			if err == nil && scrapeErr == nil && b.auditLog != "" {
				audited, err = b.audited(ctx, ns, pods)
			}
			unregister()
			e2ekit.DeleteNamespace(b.client, ns)
			if err != nil {
				return fmt.Errorf("%s, run %d: %w", mode, run, err)
			}
			if scrapeErr != nil {
				return scrapeErr
			}
			s := all[mode]
			s.audited = append(s.audited, audited...)
			s.reads += readsAfter - readsBefore
			create := after.histogram(requestDuration, podCreate).minus(before.histogram(requestDuration, podCreate))
			s.create = s.create.plus(create)
			s.took = append(s.took, took)
			for _, w := range append(podWebhooks, calledWebhook) {
				l := map[string]string{"name": w, "operation": "CREATE"}
				s.webhooks[w] = s.webhooks[w].plus(after.histogram(webhookDuration, l).minus(before.histogram(webhookDuration, l)))
			}
			fmt.Printf("%-9s run %d: %d pods created in %.1fs, %d without the readiness gate, %.0f GETs by the manager; the API server's pod creates: %s",
				mode, run, pods, took.Seconds(), ungated, readsAfter-readsBefore, create)
			if len(audited) > 0 {
				fmt.Printf("; exact: p50 %s, p99 %s, max %s", ms(audited.quantile(0.5)), ms(audited.quantile(0.99)), ms(audited.quantile(1)))
			}
			fmt.Println()
			if mode == "managed" {
				s.ungated += ungated
			}
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "\npod creates (%d pods x %d runs a mode)\tcount\tp50\tp99\tmean\twithin 5 ms\twithin 25 ms\n", pods, runs)
	for _, mode := range modes {
		s := all[mode]
		fmt.Fprintf(w, "POST pods, %s\t%s\n", mode, s.create.row())
	}
	for _, wh := range podWebhooks {
		fmt.Fprintf(w, "webhook %s, managed\t%s\n", wh, all["managed"].webhooks[wh].row())
	}
	fmt.Fprintf(w, "webhook %s, called\t%s\n", calledWebhook, all["called"].webhooks[calledWebhook].row())
	fmt.Fprintf(w, "managed pods created without the gate (the mutating webhook failed open)\t%d\t\t\t\t\t\n", all["managed"].ungated)
	for _, mode := range modes {
		fmt.Fprintf(w, "the manager's GETs of the API server meanwhile, %s (leases and all)\t%.0f\t\t\t\t\t\n", mode, all[mode].reads)
	}
	for _, d := range differences {
		m, u := all[d.mode].create, all[d.minus].create
		fmt.Fprintf(w, "%s\t\t%s\t%s\t%s\t\t\n", d, ms(m.quantile(0.5)-u.quantile(0.5)), ms(m.quantile(0.99)-u.quantile(0.99)), ms(m.mean()-u.mean()))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if b.auditLog == "" {
		return nil
	}
	// The histograms' buckets are 5, 25 and 50 ms wide where these fall:
	// their quantiles are interpolated guesses. The audit log has each
	// create to the microsecond.
	fmt.Fprintf(w, "\npod creates, exact (the audit log)\tcount\tp50\tp90\tp99\tmax\tmean\twithin 5 ms\n")
	for _, mode := range modes {
		fmt.Fprintf(w, "POST pods, %s\t%s\n", mode, all[mode].audited.row())
	}
	for _, d := range differences {
		ma, ua := all[d.mode].audited, all[d.minus].audited
		fmt.Fprintf(w, "%s\t\t%s\t%s\t%s\t%s\t%s\t\n", d,
			ms(ma.quantile(0.5)-ua.quantile(0.5)), ms(ma.quantile(0.9)-ua.quantile(0.9)), ms(ma.quantile(0.99)-ua.quantile(0.99)),
			ms(ma.quantile(1)-ua.quantile(1)), ms(ma.mean()-ua.mean()))
	}
	return w.Flush()
}

// difference is a row of the tables: one mode's latencies less another's.
type difference struct{ mode, minus, what string }

// differences are the rows, in the tables' order.
var differences = []difference{
	{"managed", "unmanaged", "added by inplace"},
	{"called", "unmanaged", "added by a webhook call that changes nothing"},
	{"managed", "called", "added by inplace beyond that call"},
}

func (d difference) String() string { return fmt.Sprintf("%s (%s - %s)", d.what, d.mode, d.minus) }

// callWebhook registers calledWebhook for the namespace, and waits until
// the API server calls it; unregister removes it.
func (b *bench) callWebhook(ctx context.Context, ns string) (unregister func(), err error) {
	configs := b.clientset.AdmissionregistrationV1().MutatingWebhookConfigurations()
	list, err := configs.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var pods *admissionregistrationv1.MutatingWebhook
	for i := range list.Items {
		for j := range list.Items[i].Webhooks {
			if list.Items[i].Webhooks[j].Name == podWebhooks[0] {
				pods = list.Items[i].Webhooks[j].DeepCopy()
			}
		}
	}
	if pods == nil {
		return nil, fmt.Errorf("no mutating webhook %s is registered", podWebhooks[0])
	}
	pods.Name = calledWebhook
	pods.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	config := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "benchapi-called-" + ns},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{*pods},
	}
	if _, err := configs.Create(ctx, config, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	unregister = func() {
		if err := configs.Delete(context.Background(), config.Name, metav1.DeleteOptions{}); err != nil {
			fmt.Fprintf(os.Stderr, "benchapi: removing the webhook configuration %s: %v\n", config.Name, err)
		}
	}
	// A pod that the webhook's conditions let through (a ReplicaSet's),
	// created as a dry run until the API server's count of the webhook's
	// calls moves: it loads new configurations a moment after they are
	// written.
	probe := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Namespace: ns, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "probe", UID: "benchapi-probe", Controller: ptr.To(true),
		}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: b.from}}},
	}
	calls := func() (float64, error) {
		m, err := b.scrape(ctx)
		return m.histogram(webhookDuration, map[string]string{"name": calledWebhook}).count, err
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		before, err := calls()
		if err != nil {
			return false, err
		}
		if err := b.client.Create(ctx, probe.DeepCopy(), client.DryRunAll); err != nil {
			return false, err
		}
		after, err := calls()
		return after > before, err
	})
	if err != nil {
		unregister()
		return nil, fmt.Errorf("waiting for the API server to call %s: %w", calledWebhook, err)
	}
	return unregister, nil
}

// audited waits until the audit log holds the n pod creates of namespace
// (the API server writes it in batches), and returns how long each took.
func (b *bench) audited(ctx context.Context, namespace string, n int) (durations, error) {
	var took []time.Duration
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		var err error
		took, err = auditedCreates(b.auditLog, namespace)
		return len(took) >= n, err
	})
	if err != nil {
		return nil, fmt.Errorf("the audit log's creates of %s: %d of %d: %w", namespace, len(took), n, err)
	}
	return took, nil
}

// createPending creates a Deployment of n pods that no node runs, waits
// until its pods exist, and counts those without the readiness gate.
func (b *bench) createPending(ctx context.Context, ns string, n int) (ungated int, err error) {
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "pending", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(n)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pending"}},
			Template: b.template("pending", b.from),
		},
	}
	d.Spec.Template.Spec.NodeSelector = map[string]string{"benchapi.inplace.dev/no-such-node": "true"}
	if err := b.client.Create(ctx, d); err != nil {
		return 0, err
	}
	list := &corev1.PodList{}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, b.timeout, true, func(ctx context.Context) (bool, error) {
		if err := b.client.List(ctx, list, client.InNamespace(ns)); err != nil {
			return false, nil //nolint:nilerr // try again
		}
		return len(list.Items) >= n, nil
	})
	for _, p := range list.Items {
		if !slices.ContainsFunc(p.Spec.ReadinessGates, func(g corev1.PodReadinessGate) bool { return g.ConditionType == "InPlaceUpdateReady" }) {
			ungated++
		}
	}
	return ungated, err
}

func (b *bench) template(app, image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers: []corev1.Container{{
				Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent,
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// rollout is one workload rollout's cost.
type rollout struct {
	pods     int
	took     time.Duration
	writes   map[string]float64 // "VERB resource[/subresource] code", mutating requests
	warnings int
	status   histogram // PATCH pods/status
}

// variant is a workload rolled out: its kind and strategy.
type variant struct {
	name string
	// workload returns the workload of n pods in ns on image.
	workload func(ns string, n int, tpl corev1.PodTemplateSpec) client.Object
	// once: the size does not apply (a DaemonSet has a pod a node).
	once bool
}

func variants(kinds []string) []variant {
	selector := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	statefulSet := func(policy appsv1.PodManagementPolicyType, maxUnavailable int32) func(string, int, corev1.PodTemplateSpec) client.Object {
		return func(ns string, n int, tpl corev1.PodTemplateSpec) client.Object {
			mu := intstr.FromInt32(maxUnavailable)
			return &appsv1.StatefulSet{
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
				Spec: appsv1.StatefulSetSpec{
					Replicas: ptr.To(int32(n)), ServiceName: "web", PodManagementPolicy: policy, Selector: selector, Template: tpl,
					UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
						RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: &mu}},
				},
			}
		}
	}
	var out []variant
	for _, kind := range kinds {
		switch kind {
		case "statefulset":
			out = append(out,
				variant{name: "StatefulSet, Parallel", workload: statefulSet(appsv1.ParallelPodManagement, 2)},
				variant{name: "StatefulSet, OrderedReady", workload: statefulSet(appsv1.OrderedReadyPodManagement, 1)})
		case "deployment":
			out = append(out, variant{name: "Deployment", workload: func(ns string, n int, tpl corev1.PodTemplateSpec) client.Object {
				return &appsv1.Deployment{
					ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
					Spec:       appsv1.DeploymentSpec{Replicas: ptr.To(int32(n)), Selector: selector, Template: tpl},
				}
			}})
		case "daemonset":
			out = append(out, variant{name: "DaemonSet", once: true, workload: func(ns string, _ int, tpl corev1.PodTemplateSpec) client.Object {
				return &appsv1.DaemonSet{
					ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
					Spec:       appsv1.DaemonSetSpec{Selector: selector, Template: tpl},
				}
			}})
		}
	}
	return out
}

// rollouts runs the rollout part and prints its table.
func (b *bench) rollouts(ctx context.Context, kinds []string, sizes []int) error {
	modes := []string{"in place", "native"}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "\nrollout\ttook\tpod creates\tpod deletes\trefused\tpod writes\tstatus writes\tevent writes\tWarning events\tother writes\tall writes\tall per pod\tstatus write p50\tp99")
	for _, v := range variants(kinds) {
		for i, n := range sizes {
			if v.once && i > 0 {
				break
			}
			for _, mode := range modes {
				r, err := b.rollout(ctx, v, n, mode == "in place")
				if err != nil {
					return fmt.Errorf("%s of %d pods, %s: %w", v.name, n, mode, err)
				}
				creates := r.sum("POST pods 2")
				deletes := r.sum("DELETE pods 2")
				refused := r.sum("DELETE pods 4") + r.sum("POST pods 4")
				pods := r.sum("PATCH pods ") + r.sum("PUT pods ")
				status := r.sum("PATCH pods/status ") + r.sum("PUT pods/status ")
				events := r.sum("POST events ") + r.sum("PATCH events ")
				all := r.sum("")
				other := all - creates - deletes - refused - pods - status - events
				fmt.Fprintf(w, "%s, %d pods, %s\t%.1fs\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%d\t%.0f\t%.0f\t%.1f\t%s\t%s\n",
					v.name, r.pods, mode, r.took.Seconds(), creates, deletes, refused, pods, status, events, r.warnings, other, all, all/float64(r.pods),
					ms(r.status.quantile(0.5)), ms(r.status.quantile(0.99)))
				if err := w.Flush(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (r rollout) sum(prefix string) float64 {
	t := 0.0
	for k, v := range r.writes {
		if strings.HasPrefix(k, prefix) {
			t += v
		}
	}
	return t
}

// rollout creates the variant's workload of n pods on the first image,
// waits until it is Ready, then rolls it to the second and counts what
// that cost.
func (b *bench) rollout(ctx context.Context, v variant, n int, managed bool) (rollout, error) {
	var r rollout
	ns, err := e2ekit.CreateNamespace(ctx, b.client, "benchapi-rollout", managed)
	if err != nil {
		return r, err
	}
	defer e2ekit.DeleteNamespace(b.client, ns)
	obj := v.workload(ns, n, b.template("web", b.from))
	if err := b.client.Create(ctx, obj); err != nil {
		return r, err
	}
	if r.pods, err = b.waitRolledOut(ctx, obj, b.from); err != nil {
		return r, fmt.Errorf("the first revision: %w", err)
	}
	warningsBefore, err := b.warnings(ctx, ns)
	if err != nil {
		return r, err
	}
	before, err := b.scrape(ctx)
	if err != nil {
		return r, err
	}
	start := time.Now()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := b.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return err
		}
		e2ekit.PodTemplate(obj).Spec.Containers[0].Image = b.to
		return b.client.Update(ctx, obj)
	}); err != nil {
		return r, err
	}
	if _, err := b.waitRolledOut(ctx, obj, b.to); err != nil {
		return r, err
	}
	r.took = time.Since(start)
	// The last status writes and events of the rollout land a moment after
	// its controller reports it done.
	time.Sleep(3 * time.Second)
	after, err := b.scrape(ctx)
	if err != nil {
		return r, err
	}
	warnings, err := b.warnings(ctx, ns)
	if err != nil {
		return r, err
	}
	r.warnings = warnings - warningsBefore
	r.writes = after.writes(before)
	l := map[string]string{"verb": "PATCH", "resource": "pods", "subresource": "status"}
	r.status = after.histogram(requestDuration, l).minus(before.histogram(requestDuration, l))
	return r, nil
}

// rolledOut reports, from its status, whether the workload's controller
// has every pod it wants on its current template, Ready, and no other
// pod; and how many pods it wants.
func rolledOut(obj client.Object) (done bool, want int) {
	switch w := obj.(type) {
	case *appsv1.StatefulSet:
		s, n := w.Status, *w.Spec.Replicas
		return s.ObservedGeneration >= w.Generation && s.UpdatedReplicas == n && s.ReadyReplicas == n && s.CurrentRevision == s.UpdateRevision, int(n)
	case *appsv1.Deployment:
		s, n := w.Status, *w.Spec.Replicas
		return s.ObservedGeneration >= w.Generation && s.UpdatedReplicas == n && s.ReadyReplicas == n && s.Replicas == n && s.AvailableReplicas == n, int(n)
	case *appsv1.DaemonSet:
		s, n := w.Status, w.Status.DesiredNumberScheduled
		return n > 0 && s.ObservedGeneration >= w.Generation && s.UpdatedNumberScheduled == n && s.NumberReady == n && s.NumberAvailable == n, int(n)
	}
	return false, 0
}

// warnings counts the Warning events of the namespace, each as many times
// as it happened.
func (b *bench) warnings(ctx context.Context, ns string) (int, error) {
	list := &corev1.EventList{}
	if err := b.client.List(ctx, list, client.InNamespace(ns)); err != nil {
		return 0, err
	}
	n := 0
	for _, e := range list.Items {
		if e.Type == corev1.EventTypeWarning {
			n += int(max(e.Count, 1))
		}
	}
	return n, nil
}

// waitRolledOut waits until the workload has rolled out image to every
// pod it wants, each Ready, and returns how many.
func (b *bench) waitRolledOut(ctx context.Context, obj client.Object, image string) (int, error) {
	want := 0
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, b.timeout, true, func(ctx context.Context) (bool, error) {
		if err := b.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false, nil //nolint:nilerr // try again
		}
		var done bool
		if done, want = rolledOut(obj); !done {
			return false, nil
		}
		list := &corev1.PodList{}
		if err := b.client.List(ctx, list, client.InNamespace(obj.GetNamespace())); err != nil {
			return false, nil //nolint:nilerr // try again
		}
		ready := 0
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil || p.Spec.Containers[0].Image != image {
				return false, nil // an old pod still going
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == want && len(list.Items) == want, nil
	})
	return want, err
}

// The API server's metrics this reads.
const (
	requestDuration = "apiserver_request_duration_seconds"
	webhookDuration = "apiserver_admission_webhook_admission_duration_seconds"
	requestTotal    = "apiserver_request_total"
)

var podCreate = map[string]string{"verb": "POST", "resource": "pods", "subresource": ""}

// metrics is one scrape of the API server's /metrics.
type metrics map[string]*dto.MetricFamily

func (b *bench) scrape(ctx context.Context) (metrics, error) {
	raw, err := b.clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the API server's /metrics: %w", err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parsing the API server's /metrics: %w", err)
	}
	return families, nil
}

// matches reports whether the series has every label of want.
func matches(m *dto.Metric, want map[string]string) bool {
	have := map[string]string{}
	for _, l := range m.GetLabel() {
		have[l.GetName()] = l.GetValue()
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// histogram sums the series of a histogram family that match labels.
func (m metrics) histogram(name string, labels map[string]string) histogram {
	var h histogram
	f := m[name]
	if f == nil {
		return h
	}
	for _, s := range f.GetMetric() {
		if !matches(s, labels) {
			continue
		}
		hist := s.GetHistogram()
		h.count += float64(hist.GetSampleCount())
		h.sum += hist.GetSampleSum()
		if h.buckets == nil {
			h.buckets = map[float64]float64{}
		}
		for _, bk := range hist.GetBucket() {
			h.buckets[bk.GetUpperBound()] += float64(bk.GetCumulativeCount())
		}
	}
	return h
}

// writes is the mutating requests since before, by "VERB resource code"
// (leases, the nodes' heartbeats, are left out).
func (m metrics) writes(before metrics) map[string]float64 {
	key := func(s *dto.Metric) (string, bool) {
		l := map[string]string{}
		for _, p := range s.GetLabel() {
			l[p.GetName()] = p.GetValue()
		}
		switch l["verb"] {
		case "POST", "PUT", "PATCH", "DELETE":
		default:
			return "", false
		}
		if l["resource"] == "leases" || l["resource"] == "nodes" {
			return "", false
		}
		r := l["resource"]
		if l["subresource"] != "" {
			r += "/" + l["subresource"]
		}
		return l["verb"] + " " + r + " " + l["code"], true
	}
	out := map[string]float64{}
	add := func(ms metrics, sign float64) {
		if f := ms[requestTotal]; f != nil {
			for _, s := range f.GetMetric() {
				if k, ok := key(s); ok {
					out[k] += sign * s.GetCounter().GetValue()
				}
			}
		}
	}
	add(m, 1)
	add(before, -1)
	for k, v := range out {
		if v <= 0 {
			delete(out, k)
		}
	}
	return out
}

// histogram is a Prometheus histogram's cumulative buckets, by upper bound.
type histogram struct {
	count, sum float64
	buckets    map[float64]float64
}

func (h histogram) combine(o histogram, sign float64) histogram {
	r := histogram{count: h.count + sign*o.count, sum: h.sum + sign*o.sum, buckets: map[float64]float64{}}
	for le, c := range h.buckets {
		r.buckets[le] += c
	}
	for le, c := range o.buckets {
		r.buckets[le] += sign * c
	}
	return r
}

func (h histogram) plus(o histogram) histogram  { return h.combine(o, 1) }
func (h histogram) minus(o histogram) histogram { return h.combine(o, -1) }

func (h histogram) mean() float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.sum / h.count
}

// within is the share of samples at most le (a bucket's bound).
func (h histogram) within(le float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	return h.buckets[le] / h.count
}

// quantile interpolates linearly within the bucket the quantile falls in,
// as histogram_quantile does; in the +Inf bucket, the largest finite bound.
func (h histogram) quantile(q float64) float64 {
	if h.count == 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(h.buckets))
	for le := range h.buckets {
		bounds = append(bounds, le)
	}
	sort.Float64s(bounds)
	rank := q * h.count
	lower, below := 0.0, 0.0
	for _, le := range bounds {
		c := h.buckets[le]
		if c >= rank {
			if math.IsInf(le, 1) {
				return lower
			}
			if c == below {
				return le
			}
			return lower + (le-lower)*(rank-below)/(c-below)
		}
		lower, below = le, c
	}
	return slices.Max(bounds)
}

func (h histogram) row() string {
	return fmt.Sprintf("%.0f\t%s\t%s\t%s\t%s\t%s", h.count, ms(h.quantile(0.5)), ms(h.quantile(0.99)), ms(h.mean()),
		pct(h.within(0.005)), pct(h.within(0.025)))
}

func (h histogram) String() string {
	return fmt.Sprintf("%.0f, p50 %s, p99 %s, mean %s", h.count, ms(h.quantile(0.5)), ms(h.quantile(0.99)), ms(h.mean()))
}

func ms(s float64) string {
	if math.IsNaN(s) {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", s*1000)
}

func pct(f float64) string {
	if math.IsNaN(f) {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", f*100)
}

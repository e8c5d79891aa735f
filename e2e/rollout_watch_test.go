//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// What the tools a user relies on say during a rollout, checked against what
// the pods really are: the real kubectl rollout status (1.37, built with the
// cluster), and kstatus (Helm 4's --wait, Flux) and Argo CD's health, both
// computed on every version of the live object by e2e/rolloutstatus.

// statusSlack is how far apart two watchers' clocks of the same event may
// be: the test's pod watch and kubectl's or rolloutstatus's object watch.
const statusSlack = 500 * time.Millisecond

// rolloutWatch runs the tools and a pod watch from the moment an image
// changes until finish.
type rolloutWatch struct {
	target string // the image the rollout goes to
	start  time.Time

	kubectl     *exec.Cmd
	kubectlDone chan struct{}
	kubectlOut  []timedLine
	kubectlEnd  time.Time
	kubectlErr  error

	watcher    *exec.Cmd
	watcherOut []timedLine

	pods *podTimeline
	mu   sync.Mutex
}

type timedLine struct {
	at   time.Time
	text string
}

// observation is one line of rolloutstatus.
type observation struct {
	Time               time.Time `json:"time"`
	Generation         int64     `json:"generation"`
	ObservedGeneration int64     `json:"observedGeneration"`
	UpdatedReplicas    int32     `json:"updatedReplicas"`
	ReadyReplicas      int32     `json:"readyReplicas"`
	Kstatus            verdict   `json:"kstatus"`
	ArgoCD             verdict   `json:"argocd"`
	Error              string    `json:"error"`
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// watchRolloutTo starts, right after a change of a workload's image to
// target, kubectl rollout status, rolloutstatus and a watch of its pods (a
// StatefulSet, a Deployment or a DaemonSet: its pods' names begin with its
// name and a dash).
func watchRolloutTo(t *testing.T, obj client.Object, target string, before []podView) *rolloutWatch {
	t.Helper()
	w := &rolloutWatch{target: target, start: time.Now(), kubectlDone: make(chan struct{})}
	w.pods = watchPodTimeline(t, obj, target, before)
	ref := kindOf(t, obj) + "/" + obj.GetName()

	w.kubectl = exec.Command(tool(t, "E2E_KUBECTL", "kubectl"), "rollout", "status", ref,
		"-n", obj.GetNamespace(), "--timeout", podTimeout.String())
	out := w.pipe(t, w.kubectl, &w.kubectlOut)
	go func() {
		<-out
		w.kubectlErr = w.kubectl.Wait()
		w.mu.Lock()
		w.kubectlEnd = time.Now()
		w.mu.Unlock()
		close(w.kubectlDone)
	}()

	w.watcher = exec.Command(tool(t, "E2E_ROLLOUTSTATUS", "rolloutstatus"), "-n", obj.GetNamespace(), ref)
	w.pipe(t, w.watcher, &w.watcherOut)
	t.Cleanup(func() {
		if w.kubectl.Process != nil {
			_ = w.kubectl.Process.Kill()
		}
		if w.watcher.Process != nil {
			_ = w.watcher.Process.Kill()
		}
	})
	return w
}

// settleTimeout bounds the wait for the watcher's last verdicts once
// kubectl rollout status has returned.
const settleTimeout = 30 * time.Second

// waitSettled waits, up to timeout, until the watcher's last observation
// says Current and Healthy; finish then judges what was seen either way.
func (w *rolloutWatch) waitSettled(timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		w.mu.Lock()
		var last observation
		for i := len(w.watcherOut) - 1; i >= 0; i-- {
			var o observation
			if err := json.Unmarshal([]byte(w.watcherOut[i].text), &o); err == nil && o.Error == "" && !o.Time.IsZero() {
				last = o
				break
			}
		}
		w.mu.Unlock()
		if last.Kstatus.Status == "Current" && last.ArgoCD.Status == "Healthy" {
			return
		}
	}
}

// pipe starts cmd with its output read into lines, timed as they come; the
// channel closes when the output ends.
func (w *rolloutWatch) pipe(t *testing.T, cmd *exec.Cmd, lines *[]timedLine) <-chan struct{} {
	t.Helper()
	r, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", cmd.Path, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := bufio.NewScanner(r)
		for s.Scan() {
			w.mu.Lock()
			*lines = append(*lines, timedLine{at: time.Now(), text: s.Text()})
			w.mu.Unlock()
		}
	}()
	return done
}

// tool is the path of a tool run.sh built, named by an environment
// variable, or found on PATH.
func tool(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not set and %s is not on PATH (make e2e sets it)", env, name)
	}
	return p
}

// finish waits for kubectl rollout status to return, stops the watchers,
// and checks that every tool told the truth: kubectl returned, successfully,
// only once every pod ran the target image and was Ready; kstatus and Argo
// CD said neither Current nor Healthy until then, never Failed or Degraded,
// and Current and Healthy at the end.
func (w *rolloutWatch) finish(t *testing.T) {
	t.Helper()
	select {
	case <-w.kubectlDone:
	case <-time.After(podTimeout + 30*time.Second):
		t.Fatalf("kubectl rollout status did not return")
	}
	// The watcher sees the StatefulSet's last versions on a watch of its
	// own, an instant after kubectl or later on a busy machine: wait for
	// its verdicts to settle rather than a fixed time.
	w.waitSettled(settleTimeout)
	_ = w.watcher.Process.Signal(os.Interrupt)
	_, _ = w.watcher.Process.Wait()
	done := w.pods.stop()

	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range w.kubectlOut {
		t.Logf("kubectl rollout status, %5.2fs: %s", l.at.Sub(w.start).Seconds(), l.text)
	}
	t.Logf("every pod on %s and Ready %.2fs after the change; kubectl returned after %.2fs", w.target, done.Sub(w.start).Seconds(), w.kubectlEnd.Sub(w.start).Seconds())
	if done.IsZero() {
		t.Fatalf("the pods never all ran %s and were Ready", w.target)
	}
	if w.kubectlErr != nil {
		t.Errorf("kubectl rollout status failed: %v", w.kubectlErr)
	}
	if w.kubectlEnd.Before(done.Add(-statusSlack)) {
		t.Errorf("kubectl rollout status returned %v before every pod ran the new image and was Ready", done.Sub(w.kubectlEnd))
	}

	var last observation
	seen := 0
	for _, l := range w.watcherOut {
		var o observation
		if err := json.Unmarshal([]byte(l.text), &o); err != nil || o.Error != "" || o.Time.IsZero() {
			continue
		}
		seen++
		last = o
		// A rollout that goes well never looks broken to them.
		if o.Kstatus.Status == "Failed" || o.ArgoCD.Status == "Degraded" {
			t.Errorf("at %.2fs kstatus said %s (%q) and Argo CD %s (%q): the rollout looked broken", o.Time.Sub(w.start).Seconds(),
				o.Kstatus.Status, o.Kstatus.Message, o.ArgoCD.Status, o.ArgoCD.Message)
		}
		if o.Time.Before(done.Add(-statusSlack)) {
			if o.Kstatus.Status == "Current" {
				t.Errorf("kstatus said Current (%q) at %.2fs, before every pod ran the new image and was Ready", o.Kstatus.Message, o.Time.Sub(w.start).Seconds())
			}
			if o.ArgoCD.Status == "Healthy" {
				t.Errorf("Argo CD said Healthy (%q) at %.2fs, before every pod ran the new image and was Ready", o.ArgoCD.Message, o.Time.Sub(w.start).Seconds())
			}
		}
	}
	if seen == 0 {
		t.Fatalf("rolloutstatus printed no observation: %v", w.watcherOut)
	}
	t.Logf("%d versions of the workload seen; the last: kstatus %s %q, Argo CD %s %q", seen, last.Kstatus.Status, last.Kstatus.Message, last.ArgoCD.Status, last.ArgoCD.Message)
	if last.Kstatus.Status != "Current" || last.ArgoCD.Status != "Healthy" {
		t.Errorf("at the end kstatus says %s and Argo CD %s, want Current and Healthy", last.Kstatus.Status, last.ArgoCD.Status)
	}
}

// kindOf is the kubectl name of a workload's kind.
func kindOf(t *testing.T, obj client.Object) string {
	t.Helper()
	switch obj.(type) {
	case *appsv1.StatefulSet:
		return "statefulset"
	case *appsv1.Deployment:
		return "deployment"
	case *appsv1.DaemonSet:
		return "daemonset"
	}
	t.Fatalf("no rollout status for %T", obj)
	return ""
}

// podTimeline watches the pods of a workload and tells when every one
// of them ran the target image, restarted or recreated since before, and
// was Ready.
type podTimeline struct {
	stop func() time.Time
}

func watchPodTimeline(t *testing.T, obj client.Object, target string, before []podView) *podTimeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w, err := k8s.Watch(ctx, &corev1.PodList{}, client.InNamespace(obj.GetNamespace()))
	if err != nil {
		cancel()
		t.Fatalf("watching pods: %v", err)
	}
	initial := map[string]podView{}
	for _, v := range before {
		initial[v.Name] = v
	}
	doneAt := map[string]time.Time{}
	current := map[string]types.UID{}
	var mu sync.Mutex
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok || !strings.HasPrefix(pod.Name, obj.GetName()+"-") || isPrepull(pod) {
				continue
			}
			now := time.Now()
			mu.Lock()
			if ev.Type == watch.Deleted {
				delete(current, pod.Name)
				delete(doneAt, pod.Name)
				mu.Unlock()
				continue
			}
			current[pod.Name] = pod.UID
			b, known := initial[pod.Name]
			fresh := !known || pod.UID != b.UID
			var restarted bool
			for _, cs := range pod.Status.ContainerStatuses {
				if cs.Name == appContainer && cs.ContainerID != "" && (fresh || cs.ContainerID != b.ContainerID) && cs.State.Running != nil {
					restarted = true
				}
			}
			if pod.Spec.Containers[0].Image == target && restarted && podReady(pod) && pod.DeletionTimestamp == nil {
				if _, ok := doneAt[pod.Name]; !ok {
					doneAt[pod.Name] = now
				}
			} else {
				delete(doneAt, pod.Name)
			}
			mu.Unlock()
		}
	}()
	return &podTimeline{stop: func() time.Time {
		cancel()
		w.Stop()
		<-finished
		mu.Lock()
		defer mu.Unlock()
		var last time.Time
		for name := range current {
			at, ok := doneAt[name]
			if !ok {
				return time.Time{}
			}
			if at.After(last) {
				last = at
			}
		}
		return last
	}}
}

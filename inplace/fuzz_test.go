package inplace

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// The records the manager writes (a workload's rollout, a StatefulSet's
// hold of an earlier version, a pod's update state) and the
// ControllerRevisions it reads are read back from objects anyone with the
// rights can edit: whatever they hold, reading them never panics. The seed
// corpora are in testdata/fuzz/<Target>.

// encodable reports whether metav1.Time writes t in a form it reads back:
// RFC 3339 has four-digit years, and a time read with a zone offset can
// fall outside them in UTC (9999-12-31T23:59:59-23:59). What is written
// then cannot be read; the engine replaces an unreadable record.
func encodable(t *metav1.Time) bool {
	if t == nil {
		return true
	}
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

// FuzzRolloutOf checks that any value of the rollout annotation is read
// without a panic, and that a record read is written back by Encode in a
// form that reads the same.
func FuzzRolloutOf(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := RolloutOf(map[string]string{AnnotationRollout: raw})
		if err != nil {
			if r != nil {
				t.Fatalf("a record and an error: %+v, %v", r, err)
			}
			return
		}
		if r == nil {
			t.Fatalf("no record read from a present annotation %q", raw)
		}
		if !encodable(&r.Since) {
			return
		}
		written := r.Encode()
		back, err := RolloutOf(map[string]string{AnnotationRollout: written})
		if err != nil {
			t.Fatalf("Encode wrote %q, which RolloutOf cannot read: %v", written, err)
		}
		if again := back.Encode(); again != written {
			t.Fatalf("a round trip changed the record: %q, then %q", written, again)
		}
		if back.Revision != r.Revision || back.Failure != r.Failure {
			t.Fatalf("a round trip changed the revision or the failure: %+v, then %+v", r, back)
		}
	})
}

// FuzzHoldOf checks that any value of the hold annotation is read without
// a panic, that the partition it gives back to the user is one the API
// server accepts (not negative), and that a hold read round-trips.
func FuzzHoldOf(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		h, err := HoldOf(map[string]string{AnnotationHold: raw})
		if err != nil {
			if h != nil {
				t.Fatalf("a hold and an error: %+v, %v", h, err)
			}
			return
		}
		if h == nil {
			t.Fatalf("no hold read from a present annotation %q", raw)
		}
		if p := h.UserPartition(); p < 0 {
			t.Fatalf("UserPartition = %d: the API server refuses a negative partition, and the hold is never released", p)
		}
		if !encodable(&h.Since) {
			return
		}
		written := h.Encode()
		back, err := HoldOf(map[string]string{AnnotationHold: written})
		if err != nil {
			t.Fatalf("Encode wrote %q, which HoldOf cannot read: %v", written, err)
		}
		if again := back.Encode(); again != written {
			t.Fatalf("a round trip changed the hold: %q, then %q", written, again)
		}
	})
}

// FuzzStateOf checks that any value of a pod's update-state annotation is
// read without a panic, that a state read round-trips, and that judging
// the pod's progress by it never panics either, whatever the pod's status.
func FuzzStateOf(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string, status []byte) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "apps",
			Annotations: map[string]string{AnnotationUpdateState: raw}}}
		pod.Spec.Containers = []corev1.Container{{Name: "app", Image: "app:v2"}}
		if json.Unmarshal(status, &pod.Status) != nil {
			pod.Status = corev1.PodStatus{}
		}
		s, err := StateOf(pod)
		if err != nil {
			if s != nil {
				t.Fatalf("a state and an error: %+v, %v", s, err)
			}
			return
		}
		if s == nil {
			t.Fatalf("no state read from a present annotation %q", raw)
		}
		if !Updating(pod) {
			t.Fatalf("a pod with a state is not taken for one being updated")
		}
		p := CheckProgress(pod, s)
		if p.Done && (!p.Observed || !p.Replaced || p.Failure != "") {
			t.Fatalf("done but not observed, not replaced or failed: %+v", p)
		}
		times := []*metav1.Time{&s.Since, s.PatchedAt}
		for _, c := range s.Containers {
			times = append(times, c.StartedAt)
		}
		for _, tm := range times {
			if !encodable(tm) {
				return
			}
		}
		written := s.Encode()
		pod.Annotations[AnnotationUpdateState] = written
		back, err := StateOf(pod)
		if err != nil {
			t.Fatalf("Encode wrote %q, which StateOf cannot read: %v", written, err)
		}
		if again := back.Encode(); again != written {
			t.Fatalf("a round trip changed the state: %q, then %q", written, again)
		}
	})
}

// FuzzRevisionTemplate checks that any ControllerRevision data is read
// without a panic, and that a template read is one the rules recognise: it
// does not differ from itself, and a DaemonSet of that template has that
// revision as its current one.
func FuzzRevisionTemplate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		rev := &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "agent-h1", Namespace: "apps"},
			Data: runtime.RawExtension{Raw: data}, Revision: 1}
		tpl, err := RevisionTemplate(rev)
		if err != nil {
			if tpl != nil {
				t.Fatalf("a template and an error: %v", err)
			}
			return
		}
		if tpl == nil {
			t.Fatalf("no template and no error")
		}
		if d := DiffTemplates(templatePath, tpl, tpl); !d.Empty() {
			t.Fatalf("a revision's template differs from itself: %+v", d)
		}
		ds := &appsv1.DaemonSet{Spec: appsv1.DaemonSetSpec{Template: *tpl.DeepCopy()}}
		if got := CurrentDaemonSetRevision(ds, []*appsv1.ControllerRevision{rev}); got != rev {
			t.Fatalf("a DaemonSet of the revision's template does not find it current")
		}
	})
}

// FuzzReplacement checks Replacement on any pod, revisions and update
// state: it never panics, never both refuses and names a fallback, names
// only fallbacks that have words for their event, decides the same twice,
// leaves its arguments alone, and refuses the delete of a pod whose
// revision already is the target.
func FuzzReplacement(f *testing.F) {
	f.Fuzz(func(t *testing.T, podJSON, fromJSON, toJSON []byte, revision, state, kubelet string) {
		pod := &corev1.Pod{}
		if json.Unmarshal(podJSON, pod) != nil {
			return
		}
		if state != "" {
			metav1.SetMetaDataAnnotation(&pod.ObjectMeta, AnnotationUpdateState, state)
		}
		var from, to *corev1.PodTemplateSpec
		if len(fromJSON) > 0 {
			from = &corev1.PodTemplateSpec{}
			if json.Unmarshal(fromJSON, from) != nil {
				return
			}
		}
		to = &corev1.PodTemplateSpec{}
		if json.Unmarshal(toJSON, to) != nil {
			return
		}
		// The history: the pod's revision is from, "target" is to; every
		// other revision is gone.
		templateOf := func(r string) *corev1.PodTemplateSpec {
			switch r {
			case revision:
				return from
			case "target":
				return to
			}
			return nil
		}
		podBefore, fromBefore, toBefore := pod.DeepCopy(), from.DeepCopy(), to.DeepCopy()

		refuse, fallback := Replacement(pod, revision, templateOf, to, kubelet)
		if refuse && fallback != "" {
			t.Fatalf("refused and recreated (%s) at once", fallback)
		}
		if fallback != "" && FallbackWords[fallback] == "" {
			t.Fatalf("fallback %q has no words for its event", fallback)
		}
		if r2, f2 := Replacement(pod, revision, templateOf, to, kubelet); r2 != refuse || f2 != fallback {
			t.Fatalf("decided %v, %q, then %v, %q", refuse, fallback, r2, f2)
		}
		if from != nil && DiffTemplates(templatePath, from, to).Empty() && !refuse {
			t.Fatalf("a pod at the target's revision let go (%q): a delete decided on a stale view", fallback)
		}
		if !apiequality.Semantic.DeepEqual(podBefore, pod) {
			t.Fatalf("Replacement changed the pod: %s", cmp.Diff(podBefore, pod))
		}
		if !apiequality.Semantic.DeepEqual(fromBefore, from) || !apiequality.Semantic.DeepEqual(toBefore, to) {
			t.Fatalf("Replacement changed a template")
		}
	})
}

package rollout

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
)

// Kind is a native workload kind whose rollouts the engine makes in place.
// Its methods answer questions; the engine does the writing.
type Kind interface {
	// Name is the kind, as events, metrics and logs name it.
	Name() string
	// Object returns an empty workload of the kind.
	Object() client.Object
	// Watch adds to the rollout controller the watches that bring a
	// workload back when something other than itself changes: its pods,
	// and what else a pass reads (a Deployment's ReplicaSets).
	Watch(b *builder.Builder, mgr manager.Manager) *builder.Builder
	// Pending reports whether a workload, as an event shows it, may have a
	// rollout to make or a record to keep: the events worth a pass.
	Pending(obj client.Object) bool
	// Load reads, for one pass, what the workload's rollout needs.
	Load(ctx context.Context, r Readers, obj client.Object) (Workload, error)
}

// Readers are what a Kind reads with.
type Readers struct {
	// Cache reads the manager's cache: it holds only the pods the webhook
	// gated (inplace.dev/managed).
	Cache client.Reader
	// Live reads the API server.
	Live client.Reader
	// KubeletVersion returns the version of a node's kubelet, "" when
	// unknown.
	KubeletVersion func(ctx context.Context, node string) string
}

// Workload is one workload of a kind, as one pass sees it.
type Workload interface {
	// HandedBack says why the kind's controller alone rolls the workload
	// out (an OnDelete strategy, a surge), "" while its rollouts are in
	// place.
	HandedBack() string
	// Target is the revision the pods are updated to: nil while the kind's
	// controller has not computed it.
	Target() *Revision
	// Revision returns a revision of the workload by name, nil when it is
	// gone from the history.
	Revision(ctx context.Context, name string) (*Revision, error)
	// RevisionOf names the revision a pod runs, by its labels.
	RevisionOf(pod *corev1.Pod) string
	// Pods are the workload's pods.
	Pods() []*corev1.Pod
	// Plan says what the kind's controller replaces next.
	Plan(now time.Time) Plan
}

// Revision is one revision of a workload.
type Revision struct {
	// Name is the value of the pod label that names the revision.
	Name string
	// Template is the revision's pod template.
	Template *corev1.PodTemplateSpec
	// Mark sets on a pod what makes the kind's controller count it at this
	// revision: its revision labels, and for a Deployment its controller
	// reference.
	Mark func(pod *corev1.Pod)
}

// Plan is what a kind's controller does next in a rollout, in the engine's
// terms.
type Plan struct {
	// Candidates are the pods the rollout replaces and no update holds
	// yet, in the order the kind's controller takes them.
	Candidates []*corev1.Pod
	// Budget is how many more candidates may start now; with DownFirst,
	// how many more Ready ones.
	Budget int
	// DownFirst: a candidate that is not Ready starts whatever the budget,
	// as the kind's controller replaces an unavailable old pod at once (a
	// fix for a crash-looping revision must be able to roll out).
	DownFirst bool
	// Wait: no Ready candidate may start now (OrderedReady while a pod is
	// unavailable).
	Wait bool
	// Updating are the pods with an update in progress that the rollout
	// still wants.
	Updating []*corev1.Pod
	// Settling are pods with an update in progress that the rollout no
	// longer wants (out of its range): their update is settled.
	Settling []*corev1.Pod
	// Complete is true when every pod runs the target and is available, and
	// none is being updated.
	Complete bool
	// RecheckIn, when set, is when to look again with no event to say so (a
	// pod becoming available after minReadySeconds).
	RecheckIn time.Duration
	// Unstarted, set by a kind whose workload's generation follows its
	// annotations (a Deployment), counts the pods neither at the target nor
	// begun toward it. Once none is left, the rollout record goes before
	// the last pods turn Ready (Reconciler.endRecord): removed after, it
	// would bump the generation of a workload its controller has just
	// reported complete, and kubectl, kstatus and Argo CD would see it
	// progressing again.
	Unstarted *int
	// Counts says how the kind counted, for the debug log of the pass.
	Counts string
}

// Preparer is a Kind with something to do before a pass: the StatefulSet
// releases the partition hold an earlier version of inplace wrote. done is
// true when the pass ends there.
type Preparer interface {
	Prepare(ctx context.Context, c client.Client, obj client.Object) (done bool, message string, err error)
}

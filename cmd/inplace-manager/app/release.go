package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/controller/rollout"
	"github.com/inplace-dev/inplace/controller/statefulset"
	"github.com/inplace-dev/inplace/inplace"
)

// Names of the webhook configurations in manifests/base.
const (
	mutatingWebhookName   = "inplace-mutating"
	validatingWebhookName = "inplace-validating"
)

// releaseHoldsLine is what the flags of release-holds set.
type releaseHoldsLine struct {
	kubeconfig   string
	keepWebhooks bool
	namespace    string
	force        bool
	stop         bool
	wait         time.Duration
}

// newReleaseHoldsLine returns the flags of release-holds, bound to what they
// set.
func newReleaseHoldsLine() (*flag.FlagSet, *releaseHoldsLine) {
	fs := flag.NewFlagSet("inplace-manager release-holds", flag.ContinueOnError)
	l := &releaseHoldsLine{}
	fs.StringVar(&l.kubeconfig, "kubeconfig", "", "path to a kubeconfig; default: in-cluster, then $KUBECONFIG, then ~/.kube/config")
	fs.BoolVar(&l.keepWebhooks, "keep-webhooks", false, "do not delete the webhook configurations "+mutatingWebhookName+" and "+validatingWebhookName)
	fs.StringVar(&l.namespace, "namespace", "inplace-system", "the manager's namespace, where its leader election lease says whether it runs")
	fs.BoolVar(&l.force, "force", false, "release even though the manager seems to run (it may begin updates again)")
	fs.BoolVar(&l.stop, "stop-manager", false, "first scale the Deployment inplace-manager of --namespace to zero (as the uninstall Job does)")
	fs.DurationVar(&l.wait, "wait", 0, "how long to wait for the manager to stop (its lease released or lapsed, every pod of its Deployment gone) before refusing to run")
	return fs, l
}

// ReleaseHoldsFlagSet returns every flag of inplace-manager release-holds,
// with its default: docs/reference.md is checked against it.
func ReleaseHoldsFlagSet() *flag.FlagSet {
	fs, _ := newReleaseHoldsLine()
	return fs
}

// releaseHolds is the uninstall subcommand: it leaves every workload in a
// state its native controller can run. See ReleaseHolds.
func releaseHolds(args []string, stdout, stderr io.Writer) int {
	fs, l := newReleaseHoldsLine()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "inplace-manager release-holds: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := restConfig(l.kubeconfig)
	if err != nil {
		fmt.Fprintf(stderr, "inplace-manager release-holds: %v\n", err)
		return 1
	}
	c, err := client.New(cfg, client.Options{Scheme: Scheme()})
	if err != nil {
		fmt.Fprintf(stderr, "inplace-manager release-holds: %v\n", err)
		return 1
	}
	ctx := context.Background()
	if l.stop {
		if err := StopManager(ctx, c, l.namespace); err != nil {
			fmt.Fprintf(stderr, "inplace-manager release-holds: scaling the manager to zero: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "scaled deployment %s/%s to zero\n", l.namespace, managerDeploymentName)
	}
	if !l.force {
		began := time.Now()
		running, why := ManagerRunning(ctx, c, l.namespace, began)
		said := ""
		for deadline := began.Add(l.wait); running && time.Now().Before(deadline); {
			// Once per reason: ManagerRunning's words name no age.
			if why != said {
				fmt.Fprintf(stdout, "waiting for the manager to stop: %s\n", why)
				said = why
			}
			time.Sleep(time.Second)
			running, why = ManagerRunning(ctx, c, l.namespace, time.Now())
		}
		if !running && time.Since(began) >= time.Second {
			fmt.Fprintf(stdout, "the manager stopped after %v\n", time.Since(began).Round(time.Second))
		}
		if running {
			fmt.Fprintf(stderr, "inplace-manager release-holds: %s; it would begin updates again. Scale it to zero first:\n"+
				"  kubectl -n %s scale deployment inplace-manager --replicas=0\n(or pass --force)\n", why, l.namespace)
			return 1
		}
	}
	left, err := ReleaseHolds(ctx, c, !l.keepWebhooks, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "inplace-manager release-holds: %v\n", err)
	}
	if err != nil || left > 0 {
		return 1
	}
	return 0
}

// managerDeploymentName is the manager's Deployment in manifests/base.
const managerDeploymentName = "inplace-manager"

// StopManager scales the manager's Deployment to zero through its scale
// subresource (the only write on it the uninstall Job may make). A missing
// Deployment is already stopped.
func StopManager(ctx context.Context, c client.Client, namespace string) error {
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: managerDeploymentName}}
	patch := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"replicas":0}}`))
	err := c.SubResource("scale").Patch(ctx, deploy, patch, client.WithSubResourceBody(&autoscalingv1.Scale{}))
	return client.IgnoreNotFound(err)
}

// ManagerRunning reports whether a manager replica seems to run the rollout
// controllers, or may run them again: its leader election lease held and
// renewed in the last lease duration, or a pod of its Deployment not gone
// yet. A replica that is stopping too takes the lease the elected one
// releases as it stops, and resumes the rollouts for its last seconds: seen
// writing a rollout record back after release-holds had removed it. The
// reason names what the manager is waited for and no age: the same reason,
// the same words.
func ManagerRunning(ctx context.Context, c client.Client, namespace string, now time.Time) (bool, string) {
	lease := &coordinationv1.Lease{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: namespace, Name: LeaderElectionID}, lease); err == nil {
		s := lease.Spec
		if s.HolderIdentity != nil && *s.HolderIdentity != "" && s.RenewTime != nil && s.LeaseDurationSeconds != nil {
			if age := now.Sub(s.RenewTime.Time); age < time.Duration(*s.LeaseDurationSeconds)*time.Second {
				return true, fmt.Sprintf("inplace-manager runs: %s holds its lease (renewed within its %ds)", *s.HolderIdentity, *s.LeaseDurationSeconds)
			}
		}
	}
	return managerPodLeft(ctx, c, namespace)
}

// managerPodLeft reports whether a pod of the manager's Deployment has not
// stopped yet, terminating or not, found by the selector its scale
// subresource gives. A missing Deployment has none; one whose pods cannot
// be read is taken to have one.
func managerPodLeft(ctx context.Context, c client.Client, namespace string) (bool, string) {
	deploy := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: managerDeploymentName}}
	scale := &autoscalingv1.Scale{}
	cannotTell := func(err error) (bool, string) {
		return true, fmt.Sprintf("cannot tell whether a replica of deployment %s/%s still runs: %v", namespace, managerDeploymentName, err)
	}
	if err := c.SubResource("scale").Get(ctx, deploy, scale); err != nil {
		if apierrors.IsNotFound(err) {
			return false, ""
		}
		return cannotTell(err)
	}
	selector, err := labels.Parse(scale.Status.Selector)
	if err == nil && selector.Empty() {
		err = errors.New("its scale subresource gives no selector")
	}
	if err != nil {
		return cannotTell(err)
	}
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabelsSelector{Selector: selector}); err != nil {
		return cannotTell(err)
	}
	for _, pod := range pods.Items {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		state := "running"
		if pod.DeletionTimestamp != nil {
			state = "stopping"
		}
		return true, fmt.Sprintf("inplace-manager runs: its pod %s is still %s", pod.Name, state)
	}
	return false, ""
}

// ReleaseHolds leaves every workload to its native controller, saying what
// it did on out, and returns how many objects are still not released. It
// deletes inplace's webhook configurations (unless told not to), so that no
// delete is refused and no new gate appears; removes every rollout record
// and releases every partition hold an earlier version wrote; and opens the
// readiness gate of every managed pod, clearing any in-place update. It goes
// on past an object it cannot release, then reads everything again to
// verify, and prints a summary. An error is returned for what it could not
// even list.
func ReleaseHolds(ctx context.Context, c client.Client, deleteWebhooks bool, out io.Writer) (int, error) {
	r := &releaser{client: c, out: out}
	if deleteWebhooks {
		for _, obj := range []client.Object{
			&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mutatingWebhookName}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: validatingWebhookName}},
		} {
			if err := client.IgnoreNotFound(c.Delete(ctx, obj)); err != nil {
				r.failed("deleting webhook configuration %s: %v", obj.GetName(), err)
				continue
			}
			fmt.Fprintf(out, "deleted webhook configuration %s\n", obj.GetName())
		}
	}
	if err := r.workloads(ctx); err != nil {
		return 0, err
	}
	if err := r.pods(ctx); err != nil {
		return 0, err
	}

	// Verify: another writer (a manager still running) may have undone it.
	left, err := r.remaining(ctx)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(out, "summary: %d workload(s) released, %d pod(s) released, %d error(s), %d object(s) still held or gated\n",
		r.released, r.podsDone, r.errors, len(left))
	for _, l := range left {
		fmt.Fprintf(out, "  still %s\n", l)
	}
	return len(left) + r.errors, nil
}

type releaser struct {
	client             client.Client
	out                io.Writer
	released, podsDone int
	errors             int
}

func (r *releaser) failed(format string, args ...any) {
	r.errors++
	fmt.Fprintf(r.out, "error: "+format+"\n", args...)
}

// workloads removes every rollout record of the StatefulSets, Deployments
// and DaemonSets, and releases every partition hold an earlier version wrote
// on a StatefulSet.
func (r *releaser) workloads(ctx context.Context) error {
	objs, err := markedWorkloads(ctx, r.client)
	if err != nil {
		return err
	}
	for _, obj := range objs {
		err := r.withRetry(ctx, obj, func() error {
			if sts, ok := obj.(*appsv1.StatefulSet); ok {
				if _, held := sts.Annotations[inplace.AnnotationHold]; held {
					hold, _ := inplace.HoldOf(sts.Annotations) // unreadable: partition 0, the default
					delete(sts.Annotations, inplace.AnnotationRollout)
					return statefulset.Release(ctx, r.client, sts, hold)
				}
			}
			base := obj.DeepCopyObject().(client.Object)
			annotations := obj.GetAnnotations()
			delete(annotations, inplace.AnnotationRollout)
			obj.SetAnnotations(annotations)
			return r.client.Patch(ctx, obj, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
		})
		name := fmt.Sprintf("%s %s", kindName(obj), client.ObjectKeyFromObject(obj))
		if err != nil {
			r.failed("releasing %s: %v", name, err)
			continue
		}
		r.released++
		fmt.Fprintf(r.out, "released %s\n", name)
	}
	return nil
}

// markedWorkloads lists the StatefulSets, Deployments and DaemonSets that
// carry a rollout record or a hold.
func markedWorkloads(ctx context.Context, c client.Client) ([]client.Object, error) {
	var out []client.Object
	sets := &appsv1.StatefulSetList{}
	if err := c.List(ctx, sets); err != nil {
		return nil, fmt.Errorf("listing StatefulSets: %w", err)
	}
	for i := range sets.Items {
		out = append(out, &sets.Items[i])
	}
	deployments := &appsv1.DeploymentList{}
	if err := c.List(ctx, deployments); err != nil {
		return nil, fmt.Errorf("listing Deployments: %w", err)
	}
	for i := range deployments.Items {
		out = append(out, &deployments.Items[i])
	}
	daemonSets := &appsv1.DaemonSetList{}
	if err := c.List(ctx, daemonSets); err != nil {
		return nil, fmt.Errorf("listing DaemonSets: %w", err)
	}
	for i := range daemonSets.Items {
		out = append(out, &daemonSets.Items[i])
	}
	return slices.DeleteFunc(out, func(obj client.Object) bool { return !marked(obj.GetAnnotations()) }), nil
}

func kindName(obj client.Object) string {
	switch obj.(type) {
	case *appsv1.StatefulSet:
		return "StatefulSet"
	case *appsv1.Deployment:
		return "Deployment"
	case *appsv1.DaemonSet:
		return "DaemonSet"
	}
	return fmt.Sprintf("%T", obj)
}

// pods clears every in-place update and opens every closed gate.
func (r *releaser) pods(ctx context.Context) error {
	list := &corev1.PodList{}
	if err := r.client.List(ctx, list, client.MatchingLabels{inplace.LabelManaged: "true"}); err != nil {
		return fmt.Errorf("listing managed pods: %w", err)
	}
	for i := range list.Items {
		pod := &list.Items[i]
		if !podHeld(pod) {
			continue
		}
		err := r.withRetry(ctx, pod, func() error {
			if _, ok := pod.Annotations[inplace.AnnotationUpdateState]; ok {
				base := pod.DeepCopy()
				delete(pod.Annotations, inplace.AnnotationUpdateState)
				if err := r.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
					return err
				}
			}
			if gateClosed(pod) {
				return rollout.OpenGate(ctx, r.client, pod, metav1.Now())
			}
			return nil
		})
		if err != nil {
			r.failed("releasing pod %s: %v", client.ObjectKeyFromObject(pod), err)
			continue
		}
		r.podsDone++
		fmt.Fprintf(r.out, "opened the readiness gate of pod %s\n", client.ObjectKeyFromObject(pod))
	}
	return nil
}

// withRetry runs release on obj, and once more on a fresh read after a
// conflict.
func (r *releaser) withRetry(ctx context.Context, obj client.Object, release func() error) error {
	err := release()
	if !apierrors.IsConflict(err) {
		return client.IgnoreNotFound(err)
	}
	if err := r.client.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
		return client.IgnoreNotFound(err)
	}
	return client.IgnoreNotFound(release())
}

// remaining lists what is still held or gated.
func (r *releaser) remaining(ctx context.Context) ([]string, error) {
	var left []string
	objs, err := markedWorkloads(ctx, r.client)
	if err != nil {
		return nil, fmt.Errorf("verifying: %w", err)
	}
	for _, obj := range objs {
		left = append(left, fmt.Sprintf("held: %s %s", kindName(obj), client.ObjectKeyFromObject(obj)))
	}
	pods := &corev1.PodList{}
	if err := r.client.List(ctx, pods, client.MatchingLabels{inplace.LabelManaged: "true"}); err != nil {
		return nil, fmt.Errorf("verifying: listing managed pods: %w", err)
	}
	for i := range pods.Items {
		if podHeld(&pods.Items[i]) {
			left = append(left, fmt.Sprintf("gated: pod %s", client.ObjectKeyFromObject(&pods.Items[i])))
		}
	}
	return left, nil
}

// marked reports whether a workload carries a rollout record or a hold.
func marked(annotations map[string]string) bool {
	_, rollout := annotations[inplace.AnnotationRollout]
	_, hold := annotations[inplace.AnnotationHold]
	return rollout || hold
}

// podHeld reports whether a pod has an in-place update recorded or a gate
// not open. A pod another controller owns (Kruise's) is never ours to open.
func podHeld(pod *corev1.Pod) bool {
	if pod.DeletionTimestamp != nil || inplace.ControlledByOther(pod) {
		return false
	}
	_, updating := pod.Annotations[inplace.AnnotationUpdateState]
	return updating || gateClosed(pod)
}

func gateClosed(pod *corev1.Pod) bool {
	if !inplace.HasGate(pod) {
		return false
	}
	c := inplace.GateCondition(pod)
	return c == nil || c.Status != corev1.ConditionTrue
}

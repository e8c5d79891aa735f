package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/inplace-dev/inplace/controller"
	"github.com/inplace-dev/inplace/inplace"
)

// Names of the webhook configurations in manifests/base.
const (
	mutatingWebhookName   = "inplace-mutating"
	validatingWebhookName = "inplace-validating"
)

// releaseHolds is the uninstall subcommand: it leaves every workload in a
// state its native controller can run. It deletes inplace's webhook
// configurations (so that no new hold or gate appears), hands every held
// StatefulSet back to its controller with the user's partition, and opens
// the readiness gate of every gated pod, clearing any in-place update.
func releaseHolds(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("inplace-manager release-holds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kubeconfig := fs.String("kubeconfig", "", "path to a kubeconfig; default: in-cluster, then $KUBECONFIG, then ~/.kube/config")
	keepWebhooks := fs.Bool("keep-webhooks", false, "do not delete the webhook configurations "+mutatingWebhookName+" and "+validatingWebhookName)
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
	cfg, err := restConfig(*kubeconfig)
	if err == nil {
		var c client.Client
		if c, err = client.New(cfg, client.Options{Scheme: Scheme()}); err == nil {
			err = ReleaseHolds(context.Background(), c, !*keepWebhooks, stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "inplace-manager release-holds: %v\n", err)
		return 1
	}
	return 0
}

// ReleaseHolds leaves every workload to its native controller, saying what
// it did on out: it deletes inplace's webhook configurations (unless told
// not to), releases every held StatefulSet, and opens every readiness gate
// of a managed pod, clearing any in-place update.
func ReleaseHolds(ctx context.Context, c client.Client, deleteWebhooks bool, out io.Writer) error {
	r := &releaser{client: c, out: out}
	return r.run(ctx, deleteWebhooks)
}

type releaser struct {
	client client.Client
	out    io.Writer
}

func (r *releaser) run(ctx context.Context, deleteWebhooks bool) error {
	if deleteWebhooks {
		for _, obj := range []client.Object{
			&admissionregistrationv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: mutatingWebhookName}},
			&admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: validatingWebhookName}},
		} {
			if err := client.IgnoreNotFound(r.client.Delete(ctx, obj)); err != nil {
				return fmt.Errorf("deleting webhook configuration %s: %w", obj.GetName(), err)
			}
			fmt.Fprintf(r.out, "deleted webhook configuration %s\n", obj.GetName())
		}
	}
	statefulSets := &appsv1.StatefulSetList{}
	if err := r.client.List(ctx, statefulSets); err != nil {
		return fmt.Errorf("listing StatefulSets: %w", err)
	}
	for i := range statefulSets.Items {
		if err := r.release(ctx, client.ObjectKeyFromObject(&statefulSets.Items[i])); err != nil {
			return err
		}
	}
	pods := &corev1.PodList{}
	if err := r.client.List(ctx, pods, client.MatchingLabels{inplace.LabelManaged: "true"}); err != nil {
		return fmt.Errorf("listing managed pods: %w", err)
	}
	for i := range pods.Items {
		if err := r.openGate(ctx, client.ObjectKeyFromObject(&pods.Items[i])); err != nil {
			return err
		}
	}
	return nil
}

// release hands a held StatefulSet back to its native controller.
func (r *releaser) release(ctx context.Context, key client.ObjectKey) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sts := &appsv1.StatefulSet{}
		if err := r.client.Get(ctx, key, sts); err != nil {
			return err
		}
		if _, held := sts.Annotations[inplace.AnnotationHold]; !held {
			return nil
		}
		hold, _ := inplace.HoldOf(sts.Annotations) // unreadable: partition 0, the default
		if err := controller.ReleaseStatefulSet(ctx, r.client, sts, hold); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "released StatefulSet %s\n", key)
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing StatefulSet %s: %w", key, err)
	}
	return nil
}

// openGate clears a pod's in-place update and opens its readiness gate.
func (r *releaser) openGate(ctx context.Context, key client.ObjectKey) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		pod := &corev1.Pod{}
		if err := r.client.Get(ctx, key, pod); err != nil {
			return err
		}
		if inplace.Updating(pod) {
			base := pod.DeepCopy()
			delete(pod.Annotations, inplace.AnnotationUpdateState)
			if err := r.client.Patch(ctx, pod, client.StrategicMergeFrom(base, client.MergeFromWithOptimisticLock{})); err != nil {
				return err
			}
			fmt.Fprintf(r.out, "cleared the in-place update of pod %s\n", key)
		}
		// A gate closed for an update (reason InPlaceUpdate) opens too: no
		// manager will be there to finish it.
		if gate := inplace.GateCondition(pod); !inplace.HasGate(pod) || pod.DeletionTimestamp != nil ||
			gate != nil && gate.Status == corev1.ConditionTrue {
			return nil
		}
		if err := controller.OpenGate(ctx, r.client, pod, metav1.Now()); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "opened the readiness gate of pod %s\n", key)
		return nil
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("opening the readiness gate of pod %s: %w", key, err)
	}
	return nil
}

package webhook

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/inplace"
)

// podDefaulter injects the InPlaceUpdateReady readiness gate, and the label
// the controllers watch by, into each pod of a managed apps/v1 workload as it
// is created.
//
// The gate goes into the pod, never into the workload's template: with the
// manager down, pods are created without it and still become Ready, GitOps
// tools see no drift, and opting a namespace in starts no rollout.
type podDefaulter struct {
	namespaces *namespaces
	owners     *owners
	// closing, once retired, gates no pod: this replica's shutdown drain
	// reads the pods to open their gates then (Closing).
	closing *Closing
}

var _ admission.Defaulter[*corev1.Pod] = &podDefaulter{}

// Default implements admission.Defaulter.
func (d *podDefaulter) Default(ctx context.Context, pod *corev1.Pod) error {
	gated, err := d.gated(ctx, pod)
	if gated {
		injectPodGate(pod)
	}
	return err
}

// gated decides whether the pod gets the readiness gate: a pod of a managed
// apps/v1 workload whose policy is not Recreate.
func (d *podDefaulter) gated(ctx context.Context, pod *corev1.Pod) (bool, error) {
	owner := metav1.GetControllerOfNoCopy(pod)
	if owner == nil || !gatedOwnerKinds[schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind)] || d.closing.isRetired() {
		return false, nil
	}
	req, err := request(ctx)
	if err != nil {
		return false, err
	}
	log := logf.FromContext(ctx)
	if managed, err := d.namespaces.managed(ctx, req.Namespace); err != nil || !managed {
		if err != nil {
			log.Error(err, "Creating the pod without the readiness gate", "namespace", req.Namespace)
		}
		return false, nil
	}
	workload, err := d.owners.workload(ctx, req.Namespace, owner)
	if err != nil {
		log.Error(err, "Creating the pod without the readiness gate", "namespace", req.Namespace, "owner", owner.Name)
		return false, nil
	}
	if workload == nil {
		return false, nil
	}
	if policy, err := inplace.UpdatePolicyOf(workload.Annotations); err != nil || policy == inplace.Recreate {
		return false, nil
	}
	return true, nil
}

// injectPodGate adds the readiness gate and the managed label, once, and
// removes the manager's records a new pod cannot have (a template that
// carried one): the pod would be taken for a pod mid-update.
func injectPodGate(pod *corev1.Pod) {
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[inplace.LabelManaged] = "true"
	for k := range pod.Annotations {
		if inplace.IsManagerOwned(k) {
			delete(pod.Annotations, k)
		}
	}
	if inplace.HasGate(pod) {
		return
	}
	pod.Spec.ReadinessGates = append(pod.Spec.ReadinessGates, corev1.PodReadinessGate{ConditionType: inplace.ConditionInPlaceUpdateReady})
}

// podCreate serves the pod-creation webhook: podDefaulter's decision on the
// pod the framework decodes, answered with injectPodGate's patch written
// directly (podPatch) instead of the framework's marshal-and-diff.
//
// It departs from the typed Defaulter's flow for speed, here only: this is
// the webhook on the path of every pod a managed workload creates, and
// marshalling the pod and diffing the two JSON documents made 2,700 of the
// handler's 3,100 allocations for a pod as the API server sends it (7 kB
// with its managedFields), eight times what decoding it makes. The patch
// only adds (the label, the gate) and removes the manager's own
// annotations by name: it never removes a field our k8s.io/api does not
// know, as a hand-written patch could. A pod whose patch podPatch cannot
// write goes the framework's way. FuzzPodPatch holds the two to the same
// patched pod.
//
// It also answers the workload controllers' creates (replacements): a
// Deployment's pod that the ReplicaSet controller creates while the engine
// moves the old pods in place is refused here, not by the pod-validating
// webhook, to spare each pod create a second call (a mutating webhook may
// deny). The decision reads nothing the other mutating webhooks change:
// the pod's owner, its pod-template-hash label, its namespace.
type podCreate struct {
	defaulter *podDefaulter
	// replacements answers the workload controllers' creates.
	replacements *podValidator
	decoder      admission.Decoder
	// typed is the framework's handler over the same defaulter.
	typed admission.Handler
}

// Handle implements admission.Handler.
func (h *podCreate) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Delete {
		return h.typed.Handle(ctx, req)
	}
	pod := &corev1.Pod{}
	if err := h.decoder.Decode(req, pod); err != nil {
		return h.typed.Handle(ctx, req) // its answer to what it cannot decode
	}
	if pod.Namespace == "" {
		pod.Namespace = req.Namespace
	}
	gated, err := h.defaulter.gated(admission.NewContextWithRequest(ctx, req), pod)
	if err != nil {
		return h.typed.Handle(ctx, req) // unreachable: gated fails only without a request
	}
	if h.replacements != nil {
		if refused := h.replacements.create(ctx, req, pod, gated); refused != nil {
			return *refused
		}
	}
	if !gated {
		return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true}} // as the framework answers an unchanged object
	}
	patch, ok := podPatch(pod)
	if !ok {
		return h.typed.Handle(ctx, req)
	}
	resp := admission.Response{Patches: patch, AdmissionResponse: admissionv1.AdmissionResponse{Allowed: true}}
	if len(patch) > 0 {
		resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
	}
	return resp
}

// podPatch returns the JSON patch that makes pod what injectPodGate
// makes it, in the operations the framework's diff would produce; false
// when the pod's JSON may lack a member the patch adds into (no
// containers: the spec may be missing or null).
func podPatch(pod *corev1.Pod) ([]jsonpatch.JsonPatchOperation, bool) {
	if len(pod.Spec.Containers) == 0 {
		return nil, false
	}
	var ops []jsonpatch.JsonPatchOperation
	if v, ok := pod.Labels[inplace.LabelManaged]; pod.Labels == nil {
		ops = append(ops, jsonpatch.NewOperation("add", "/metadata/labels", map[string]any{inplace.LabelManaged: "true"}))
	} else if !ok {
		ops = append(ops, jsonpatch.NewOperation("add", "/metadata/labels/"+pointerEscape(inplace.LabelManaged), "true"))
	} else if v != "true" {
		ops = append(ops, jsonpatch.NewOperation("replace", "/metadata/labels/"+pointerEscape(inplace.LabelManaged), "true"))
	}
	var owned []string
	for k := range pod.Annotations {
		if inplace.IsManagerOwned(k) {
			owned = append(owned, k)
		}
	}
	if len(owned) > 0 && len(owned) == len(pod.Annotations) {
		// Empty, the map is left out of the JSON: the framework's diff
		// removes it whole.
		ops = append(ops, jsonpatch.NewOperation("remove", "/metadata/annotations", nil))
	} else {
		slices.Sort(owned)
		for _, k := range owned {
			ops = append(ops, jsonpatch.NewOperation("remove", "/metadata/annotations/"+pointerEscape(k), nil))
		}
	}
	if !inplace.HasGate(pod) {
		gate := map[string]any{"conditionType": inplace.ConditionInPlaceUpdateReady}
		if pod.Spec.ReadinessGates == nil {
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/readinessGates", []any{gate}))
		} else {
			ops = append(ops, jsonpatch.NewOperation("add", "/spec/readinessGates/"+strconv.Itoa(len(pod.Spec.ReadinessGates)), gate))
		}
	}
	return ops, true
}

// pointerEscape escapes a key for a JSON pointer (RFC 6901).
func pointerEscape(key string) string {
	return strings.ReplaceAll(strings.ReplaceAll(key, "~", "~0"), "/", "~1")
}

var (
	replicaSetKind  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "ReplicaSet"}
	deploymentGVK   = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}
	statefulSetGVK  = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"}
	daemonSetGVK    = schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "DaemonSet"}
	gatedOwnerKinds = map[schema.GroupVersionKind]bool{replicaSetKind: true, statefulSetGVK: true, daemonSetGVK: true}
)

// OwnerKinds are the kinds whose metadata the pod webhook reads; the manager
// starts their metadata informers before it serves.
var OwnerKinds = []schema.GroupVersionKind{replicaSetKind, deploymentGVK, statefulSetGVK, daemonSetGVK}

// owners finds the workload a pod belongs to, by metadata only.
type owners struct {
	reader, live client.Reader
}

// workload returns the metadata of the Deployment, StatefulSet or DaemonSet
// that controls a pod through owner, or nil when there is none (a
// ReplicaSet of its own, or an owner already gone).
func (o *owners) workload(ctx context.Context, namespace string, owner *metav1.OwnerReference) (*metav1.PartialObjectMetadata, error) {
	gvk := schema.FromAPIVersionAndKind(owner.APIVersion, owner.Kind)
	m, err := o.metadata(ctx, gvk, namespace, owner.Name, owner.UID)
	if err != nil || m == nil || gvk != replicaSetKind {
		return m, err
	}
	rsOwner := metav1.GetControllerOfNoCopy(m)
	if rsOwner == nil || schema.FromAPIVersionAndKind(rsOwner.APIVersion, rsOwner.Kind) != deploymentGVK {
		return nil, nil
	}
	return o.metadata(ctx, deploymentGVK, namespace, rsOwner.Name, rsOwner.UID)
}

// metadata reads an object's metadata from the cache, or live when the cache
// has not seen it yet (a ReplicaSet creates its pods an instant after it is
// created itself). It returns nil when the object is gone or was replaced.
func (o *owners) metadata(ctx context.Context, gvk schema.GroupVersionKind, namespace, name string, uid types.UID) (*metav1.PartialObjectMetadata, error) {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(gvk)
	key := types.NamespacedName{Namespace: namespace, Name: name}
	err := o.reader.Get(ctx, key, m)
	if (apierrors.IsNotFound(err) || err == nil && m.UID != uid) && o.live != nil {
		err = o.live.Get(ctx, key, m)
	}
	if apierrors.IsNotFound(err) || err == nil && m.UID != uid {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s %s/%s: %w", gvk.Kind, namespace, name, err)
	}
	return m, nil
}

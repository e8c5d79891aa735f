package inplace

// Prefix is the domain of every label, annotation and finalizer inplace owns.
const Prefix = "inplace.dev/"

// Names users write.
const (
	// LabelEnabled opts a namespace in ("true") or out ("false").
	LabelEnabled = Prefix + "enabled"

	// AnnotationUpdatePolicy chooses how a workload's pod template changes
	// reach its pods; see UpdatePolicy.
	AnnotationUpdatePolicy = Prefix + "update-policy"

	// AnnotationGracePeriod is the number of seconds between marking a pod
	// not ready and patching its images, so that endpoints drain first.
	AnnotationGracePeriod = Prefix + "grace-period-seconds"

	// AnnotationPrepull turns pulling ahead on ("true") or off ("false") for
	// a workload, whatever the manager's --prepull says.
	AnnotationPrepull = Prefix + "prepull"
)

// Names the manager writes. Users do not write them; the validating webhook
// refuses changes to them from anyone but the manager.
const (
	// LabelManaged marks a pod whose readiness gate the webhook injected: the
	// readiness-gate keeper and the rollout controllers watch only these pods.
	LabelManaged = Prefix + "managed"

	// AnnotationUpdateState records, on a pod, the in-place update in
	// progress: the target revision and what each changed container looked
	// like before, so that completion can be judged and a restarted manager
	// can resume.
	AnnotationUpdateState = Prefix + "update-state"

	// AnnotationRollout records, on a workload, the in-place rollout under
	// way: the target revision, since when, and why it halted if it did.
	AnnotationRollout = Prefix + "rollout"

	// AnnotationHold recorded, on a StatefulSet, that an earlier version of
	// inplace held its controller back by raising the partition, and the
	// user's partition. This version holds nothing back; it releases a hold
	// it finds (the user's partition restored) and never writes one.
	AnnotationHold = Prefix + "hold"

	// AnnotationWokenAt is written by the manager, with the time, on a
	// StatefulSet, DaemonSet or ReplicaSet whose controller it refused a
	// replacement and would now let it through: the write makes the
	// controller retry at once, not after its back-off (which reaches 16
	// minutes after repeated refusals).
	AnnotationWokenAt = Prefix + "woken-at"

	// LabelPrepullFor marks a prepull pod (see PrepullPod) with the UID of
	// the workload it pulls for.
	LabelPrepullFor = Prefix + "prepull-for"

	// AnnotationPrepullRevision names, on a prepull pod, the revision whose
	// images it pulls.
	AnnotationPrepullRevision = Prefix + "prepull-revision"
)

// ReadinessGuardName names the readiness guard: the ValidatingAdmissionPolicy
// and its binding of manifests/base/readiness-guard.yaml, which refuse a pod
// status that says Ready while its in-place update says it must not be.
const ReadinessGuardName = "inplace-readiness-guard"

// ConditionInPlaceUpdateReady is the pod readiness gate condition type: False
// while the pod is being updated in place, True otherwise. OpenKruise uses the
// same name, so one gate serves both.
const ConditionInPlaceUpdateReady = "InPlaceUpdateReady"

// userAnnotations are the inplace.dev annotations a user may write.
var userAnnotations = map[string]bool{
	AnnotationUpdatePolicy: true,
	AnnotationGracePeriod:  true,
	AnnotationPrepull:      true,
}

// IsManagerOwned reports whether an annotation or label key is in inplace's
// domain and reserved for the manager.
func IsManagerOwned(key string) bool {
	return len(key) > len(Prefix) && key[:len(Prefix)] == Prefix && !userAnnotations[key]
}

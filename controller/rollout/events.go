package rollout

// Event reasons, stable CamelCase words a user can filter on.
const (
	// ReasonInPlaceUpdateStarted: a pod's gate closed for an update.
	ReasonInPlaceUpdateStarted = "InPlaceUpdateStarted"
	// ReasonInPlaceUpdated: a pod's update completed.
	ReasonInPlaceUpdated = "InPlaceUpdated"
	// ReasonInPlaceUpdateFailed (Warning): a pod's update cannot complete
	// (a pull error, a crash loop, its new containers not Ready in time).
	ReasonInPlaceUpdateFailed = "InPlaceUpdateFailed"
	// ReasonRecreatedNotInPlace (Warning when the manager deletes the pod):
	// a pod of a rollout is recreated, and why.
	ReasonRecreatedNotInPlace = "RecreatedNotInPlace"
	// ReasonInPlaceRolloutStarted: a workload's rollout began in place.
	ReasonInPlaceRolloutStarted = "InPlaceRolloutStarted"
	// ReasonInPlaceRolloutCompleted: every pod of the rollout is updated.
	ReasonInPlaceRolloutCompleted = "InPlaceRolloutCompleted"
	// ReasonInPlaceRolloutHalted (Warning): pods of the rollout cannot
	// complete their update, or the manager cannot go on with it.
	ReasonInPlaceRolloutHalted = "InPlaceRolloutHalted"
	// ReasonHoldReleased: the rollout was left to the native controller,
	// or an earlier version's partition hold released.
	ReasonHoldReleased = "HoldReleased"
	// ReasonPrepullSkipped: a node goes without pulling the new images
	// ahead (its prepull pod refused or ended), its pods pull as they
	// update; Warning when an admission control refused the pod.
	ReasonPrepullSkipped = "PrepullSkipped"
)

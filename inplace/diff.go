package inplace

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ImageChange is a container whose image differs between two templates.
type ImageChange struct {
	// Container is the container's name.
	Container string
	// Init is true for an init container: a regular one (never run again on
	// a live pod, so its change is not in place) or a native sidecar.
	Init bool
	// Sidecar is true for a native sidecar (an init container that restarts
	// always): the kubelet restarts it on an image change only from 1.32 on.
	Sidecar bool
	// From and To are the image references as written.
	From, To string
	// Same is true when From and To name the same image once normalised
	// (a rewrite of the reference, not of the image). The pod spec still
	// changes, and the kubelet still restarts the container.
	Same bool
}

// ResourceChange is a container (or native sidecar) whose cpu or memory
// requests or limits differ between two templates: a live pod takes it
// through its resize subresource, the kubelet applying it to the running
// container, or restarting the container where its resizePolicy asks.
type ResourceChange struct {
	// Container is the container's name.
	Container string
	// Sidecar is true for a native sidecar.
	Sidecar bool
	// From and To are the container's resources in the two templates.
	From, To corev1.ResourceRequirements
	// Restart is true when the container's resizePolicy is
	// RestartContainer for a resource that changes: the kubelet restarts
	// it to apply the change.
	Restart bool
}

// Blocker is a field whose change a live pod cannot take.
type Blocker struct {
	// Path is the field, in the workload's terms (spec.template...).
	Path *field.Path
	// Reason says why it cannot change in place; "" for the general rule
	// that only images, labels and annotations can.
	Reason string
}

// TemplateDiff is what differs between a workload's current and target pod
// templates, sorted into what live pods can take and what they cannot.
type TemplateDiff struct {
	// Images are the containers whose image changes, in template order,
	// init containers first.
	Images []ImageChange
	// Resizes are the containers whose cpu or memory changes, in template
	// order, native sidecars first.
	Resizes []ResourceChange
	// Labels and Annotations are true when the template's labels or
	// annotations differ.
	Labels, Annotations bool
	// NotInPlaceable are the fields that differ and that a pod cannot take
	// without being recreated.
	NotInPlaceable []Blocker
}

// InPlaceable reports whether live pods can take the change in place (on a
// kubelet that restarts native sidecars, where one changes: see Sidecars).
func (d TemplateDiff) InPlaceable() bool { return len(d.NotInPlaceable) == 0 }

// Empty reports whether the templates are the same.
func (d TemplateDiff) Empty() bool {
	return len(d.Images) == 0 && len(d.Resizes) == 0 && !d.Labels && !d.Annotations && len(d.NotInPlaceable) == 0
}

// Restarts names the containers an in-place update restarts: those whose
// image changes (native sidecars included), and those whose resize the
// kubelet applies by a restart (resizePolicy RestartContainer).
func (d TemplateDiff) Restarts() []string {
	var names []string
	for _, c := range d.Images {
		if !c.Init || c.Sidecar {
			names = append(names, c.Container)
		}
	}
	for _, r := range d.Resizes {
		if r.Restart && !slices.Contains(names, r.Container) {
			names = append(names, r.Container)
		}
	}
	return names
}

// Resized names the containers whose cpu or memory changes.
func (d TemplateDiff) Resized() []string {
	names := make([]string, len(d.Resizes))
	for i, r := range d.Resizes {
		names[i] = r.Container
	}
	return names
}

// Sidecars reports whether a native sidecar's image changes: in place only
// on a kubelet that restarts sidecars (SidecarRestartsOnImageChange).
func (d TemplateDiff) Sidecars() bool {
	for _, c := range d.Images {
		if c.Sidecar {
			return true
		}
	}
	return false
}

// NotInPlaceablePaths returns the paths of the fields that block an
// in-place update, for logs and events.
func (d TemplateDiff) NotInPlaceablePaths() []string {
	paths := make([]string, len(d.NotInPlaceable))
	for i, b := range d.NotInPlaceable {
		paths[i] = b.Path.String()
	}
	return paths
}

// NotInPlaceableErrors returns one error per field that cannot change in
// place, for a 422 that names them.
func (d TemplateDiff) NotInPlaceableErrors() field.ErrorList {
	errs := make(field.ErrorList, 0, len(d.NotInPlaceable))
	for _, b := range d.NotInPlaceable {
		reason := b.Reason
		if reason == "" {
			reason = "only container images, their cpu and memory, pod labels and pod annotations can"
		}
		errs = append(errs, field.Forbidden(b.Path, "cannot change in place: "+reason+" (update policy "+string(InPlaceOnly)+")"))
	}
	return errs
}

// Reasons for the blockers that are not the general rule.
const (
	reasonInitContainer = "the kubelet does not run an init container again on a live pod"
	reasonInitResources = "the kubelet does not resize a regular init container on a live pod"
	reasonRemoved       = "a resource request or limit cannot be removed from a live pod, only changed"
	reasonQOS           = "the pod's QoS class would change from %s to %s, which a live pod's cannot"
	reasonRestartAll    = "a changed pod annotation restarts every container, as the native rollout does, and the image of container %q does not change"
	reasonEnvLabel      = "container %q reads this label in its environment, and its image does not change"
)

// DiffTemplates compares the pod template a workload runs (from) with the one
// it is asked to run (to). path is the path of the template in the workload,
// e.g. spec.template; the paths in the result extend it.
//
// In place, the kubelet restarts the containers whose image changed, and
// nothing else restarts; it resizes a running container through the pod's
// resize subresource. So the change is in place when every field that
// differs is:
//   - the image of a container, or of a native sidecar (on a kubelet that
//     restarts sidecars: TemplateDiff.Sidecars); not that of a regular init
//     container, which has already run and does not run again;
//   - the cpu or memory requests or limits of a container or native
//     sidecar, none removed, the pod's QoS class the same (the kubelet
//     resizes the running container, restarting it where its resizePolicy
//     says RestartContainer); not those of a regular init container;
//   - a pod label, unless a container whose image does not change reads it
//     in its environment (the downward API's metadata.labels['key']);
//   - a pod annotation, when every container restarts anyway: a changed
//     annotation restarts every pod natively, and annotations such as
//     kubectl.kubernetes.io/restartedAt (kubectl rollout restart) and
//     checksum/config exist to force exactly that.
//
// Images are compared after normalisation (ImageChange.Same); containers are
// matched by position and name, so that a renamed, added, removed or
// reordered container is not in-place-able.
func DiffTemplates(path *field.Path, from, to *corev1.PodTemplateSpec) TemplateDiff {
	var d TemplateDiff
	if from == nil || to == nil {
		if from != to {
			d.NotInPlaceable = append(d.NotInPlaceable, Blocker{Path: path})
		}
		return d
	}
	d.Labels = !mapsEqual(from.Labels, to.Labels)
	d.Annotations = !mapsEqual(from.Annotations, to.Annotations)

	// Compare what remains once the in-place-able fields are set aside:
	// copies with those fields blanked.
	a, b := blankable(from), blankable(to)
	a.Labels, b.Labels, a.Annotations, b.Annotations = nil, nil, nil, nil
	d.Images = append(d.Images, blankImages(a.Spec.InitContainers, b.Spec.InitContainers, true)...)
	d.Images = append(d.Images, blankImages(a.Spec.Containers, b.Spec.Containers, false)...)
	spec := path.Child("spec")
	resizes, resizeBlockers := blankResources(spec, a.Spec.InitContainers, b.Spec.InitContainers, true)
	d.Resizes = append(d.Resizes, resizes...)
	d.NotInPlaceable = append(d.NotInPlaceable, resizeBlockers...)
	resizes, resizeBlockers = blankResources(spec, a.Spec.Containers, b.Spec.Containers, false)
	d.Resizes = append(d.Resizes, resizes...)
	d.NotInPlaceable = append(d.NotInPlaceable, resizeBlockers...)
	if len(d.Resizes) > 0 {
		if qa, qb := podQOS(&from.Spec), podQOS(&to.Spec); qa != qb {
			d.NotInPlaceable = append(d.NotInPlaceable, Blocker{Path: spec, Reason: fmt.Sprintf(reasonQOS, qa, qb)})
		}
	}
	var walked []*field.Path
	if !semanticEqual(a, b) {
		walk(path, reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), &walked)
	}
	for _, p := range walked {
		d.NotInPlaceable = append(d.NotInPlaceable, Blocker{Path: p})
	}
	for _, c := range d.Images {
		if c.Init && !c.Sidecar {
			d.NotInPlaceable = append(d.NotInPlaceable, Blocker{
				Path: spec.Child("initContainers").Index(initIndex(to, c.Container)).Child("image"), Reason: reasonInitContainer,
			})
		}
	}
	if len(walked) == 0 {
		d.NotInPlaceable = append(d.NotInPlaceable, metadataBlockers(path, from, to, d.Restarts())...)
	}
	return d
}

// resizable are the resources the kubelet resizes on a live container.
var resizable = []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory}

// blankResources records the cpu and memory changes of containers matched
// by position and name, and blanks them in both lists so that the rest can
// be compared. A change of another resource is left for the walk. Init
// containers (init true) are resized only when native sidecars; a regular
// one's change, and a request or limit removed, block.
func blankResources(spec *field.Path, from, to []corev1.Container, init bool) ([]ResourceChange, []Blocker) {
	if len(from) != len(to) {
		return nil, nil
	}
	list := "containers"
	if init {
		list = "initContainers"
	}
	var changes []ResourceChange
	var blockers []Blocker
	for i := range from {
		a, b := &from[i], &to[i]
		if a.Name != b.Name || apiequality.Semantic.DeepEqual(a.Resources, b.Resources) || !onlyResizable(a.Resources, b.Resources) {
			continue
		}
		resources := spec.Child(list).Index(i).Child("resources")
		switch {
		case init && !(isSidecar(a) && isSidecar(b)):
			blockers = append(blockers, Blocker{Path: resources, Reason: reasonInitResources})
		case removed(a.Resources.Requests, b.Resources.Requests) || removed(a.Resources.Limits, b.Resources.Limits):
			blockers = append(blockers, Blocker{Path: resources, Reason: reasonRemoved})
		default:
			changes = append(changes, ResourceChange{
				Container: b.Name, Sidecar: init, From: *a.Resources.DeepCopy(), To: *b.Resources.DeepCopy(),
				Restart: restartsToResize(b, a.Resources, b.Resources),
			})
		}
		a.Resources = b.Resources
	}
	return changes, blockers
}

// onlyResizable reports whether a and b differ in cpu and memory only.
func onlyResizable(a, b corev1.ResourceRequirements) bool {
	strip := func(r corev1.ResourceRequirements) corev1.ResourceRequirements {
		r = *r.DeepCopy()
		for _, name := range resizable {
			delete(r.Requests, name)
			delete(r.Limits, name)
		}
		if len(r.Requests) == 0 {
			r.Requests = nil
		}
		if len(r.Limits) == 0 {
			r.Limits = nil
		}
		return r
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}

// removed reports whether a cpu or memory quantity of a is absent from b.
func removed(a, b corev1.ResourceList) bool {
	for _, name := range resizable {
		if _, had := a[name]; had {
			if _, has := b[name]; !has {
				return true
			}
		}
	}
	return false
}

// restartsToResize reports whether the kubelet restarts container c to
// apply the change from a to b: its resizePolicy says RestartContainer for
// a resource whose request or limit changes (NotRequired is the default).
func restartsToResize(c *corev1.Container, a, b corev1.ResourceRequirements) bool {
	for _, p := range c.ResizePolicy {
		if p.RestartPolicy != corev1.RestartContainer {
			continue
		}
		ra, rb := a.Requests[p.ResourceName], b.Requests[p.ResourceName]
		la, lb := a.Limits[p.ResourceName], b.Limits[p.ResourceName]
		if ra.Cmp(rb) != 0 || la.Cmp(lb) != 0 {
			return true
		}
	}
	return false
}

// podQOS computes the QoS class of a pod of that spec, as the API server
// does (pkg/apis/core/helper/qos): BestEffort when no container asks for
// or limits cpu or memory, Guaranteed when every container limits both and
// asks for what it limits, Burstable otherwise. Pod-level resources, when
// set, decide instead.
func podQOS(spec *corev1.PodSpec) corev1.PodQOSClass {
	if spec.Resources != nil && (len(spec.Resources.Requests) > 0 || len(spec.Resources.Limits) > 0) {
		return qosOf([]corev1.ResourceRequirements{*spec.Resources})
	}
	var all []corev1.ResourceRequirements
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for _, c := range list {
			all = append(all, c.Resources)
		}
	}
	return qosOf(all)
}

func qosOf(all []corev1.ResourceRequirements) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	for _, r := range all {
		for _, name := range resizable {
			if q, ok := r.Requests[name]; ok && !q.IsZero() {
				sum := requests[name]
				sum.Add(q)
				requests[name] = sum
			}
		}
		limited := 0
		for _, name := range resizable {
			if q, ok := r.Limits[name]; ok && !q.IsZero() {
				limited++
				sum := limits[name]
				sum.Add(q)
				limits[name] = sum
			}
		}
		if limited != len(resizable) {
			guaranteed = false
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

// blankable returns a shallow copy of t whose container lists are its own,
// for DiffTemplates to blank its metadata and its containers' images and
// resources: a deep copy cost most of a comparison. Everything else is
// shared with t and read only.
func blankable(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	c := *t
	c.Spec.InitContainers = slices.Clone(t.Spec.InitContainers)
	c.Spec.Containers = slices.Clone(t.Spec.Containers)
	return &c
}

// semanticEqual is apiequality.Semantic.DeepEqual, answered by
// reflect.DeepEqual first where that can: values equal field for field
// are equal semantically too, and reflect's comparison allocates nothing
// per field where the semantic one does.
func semanticEqual(a, b any) bool {
	return reflect.DeepEqual(a, b) || apiequality.Semantic.DeepEqual(a, b)
}

// metadataBlockers returns the label and annotation changes that would need
// a container to restart whose image does not change. Checked only when the
// rest of the template is in place: a container list that differs in shape
// is reported by the walk already.
func metadataBlockers(path *field.Path, from, to *corev1.PodTemplateSpec, restarted []string) []Blocker {
	restarts := make(map[string]bool, len(restarted))
	for _, name := range restarted {
		restarts[name] = true
	}
	var kept []string // the containers an in-place update leaves running
	for _, c := range to.Spec.InitContainers {
		if isSidecar(&c) && !restarts[c.Name] {
			kept = append(kept, c.Name)
		}
	}
	for _, c := range to.Spec.Containers {
		if !restarts[c.Name] {
			kept = append(kept, c.Name)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	meta := path.Child("metadata")
	var blockers []Blocker
	for _, k := range changedKeys(from.Annotations, to.Annotations) {
		blockers = append(blockers, Blocker{Path: meta.Child("annotations").Key(k), Reason: fmt.Sprintf(reasonRestartAll, kept[0])})
	}
	for _, k := range changedKeys(from.Labels, to.Labels) {
		if c := readsLabel(to, kept, k); c != "" {
			blockers = append(blockers, Blocker{Path: meta.Child("labels").Key(k), Reason: fmt.Sprintf(reasonEnvLabel, c)})
		}
	}
	return blockers
}

// readsLabel returns the first of the named containers whose environment
// reads the pod label key through the downward API, or "".
func readsLabel(t *corev1.PodTemplateSpec, names []string, key string) string {
	ref := "metadata.labels['" + key + "']"
	for _, list := range [][]corev1.Container{t.Spec.InitContainers, t.Spec.Containers} {
		for _, c := range list {
			if !slices.Contains(names, c.Name) {
				continue
			}
			for _, e := range c.Env {
				if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == ref {
					return c.Name
				}
			}
		}
	}
	return ""
}

// changedKeys returns the keys whose values differ between two maps, sorted.
func changedKeys(a, b map[string]string) []string {
	var keys []string
	for k, va := range a {
		if vb, ok := b[k]; !ok || va != vb {
			keys = append(keys, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func initIndex(t *corev1.PodTemplateSpec, name string) int {
	for i, c := range t.Spec.InitContainers {
		if c.Name == name {
			return i
		}
	}
	return 0
}

// blankImages records the image changes of containers matched by position and
// name, and blanks their images in both lists so that the rest can be
// compared. Lists of different lengths are left alone: the walk reports them.
func blankImages(from, to []corev1.Container, init bool) []ImageChange {
	if len(from) != len(to) {
		return nil
	}
	var changes []ImageChange
	for i := range from {
		if from[i].Name != to[i].Name {
			continue
		}
		if from[i].Image != to[i].Image {
			changes = append(changes, ImageChange{
				Container: to[i].Name,
				Init:      init,
				Sidecar:   init && isSidecar(&to[i]) && isSidecar(&from[i]),
				From:      from[i].Image,
				To:        to[i].Image,
				Same:      SameImage(from[i].Image, to[i].Image),
			})
		}
		from[i].Image, to[i].Image = "", ""
	}
	return changes
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		if vb, ok := b[k]; !ok || va != vb {
			return false
		}
	}
	return true
}

var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

// walk appends to out the path of every leaf where a and b differ, naming
// fields by their JSON names. A value that marshals itself (a quantity, a
// time, an int-or-string) is a leaf; so is a list whose length differs.
func walk(path *field.Path, a, b reflect.Value, out *[]*field.Path) {
	if semanticEqual(a.Interface(), b.Interface()) {
		return
	}
	if a.Type().Implements(jsonMarshaler) || reflect.PointerTo(a.Type()).Implements(jsonMarshaler) {
		*out = append(*out, path)
		return
	}
	switch a.Kind() {
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			*out = append(*out, path)
			return
		}
		walk(path, a.Elem(), b.Elem(), out)
	case reflect.Struct:
		for i := range a.NumField() {
			f := a.Type().Field(i)
			if !f.IsExported() {
				continue
			}
			name, inline := jsonName(f)
			child := path
			if !inline {
				child = path.Child(name)
			}
			walk(child, a.Field(i), b.Field(i), out)
		}
	case reflect.Slice:
		if a.Len() != b.Len() {
			*out = append(*out, path)
			return
		}
		for i := range a.Len() {
			walk(path.Index(i), a.Index(i), b.Index(i), out)
		}
	case reflect.Map:
		keys := map[string]reflect.Value{}
		for _, k := range a.MapKeys() {
			keys[k.String()] = k
		}
		for _, k := range b.MapKeys() {
			keys[k.String()] = k
		}
		names := make([]string, 0, len(keys))
		for name := range keys {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			va, vb := a.MapIndex(keys[name]), b.MapIndex(keys[name])
			if !va.IsValid() || !vb.IsValid() {
				*out = append(*out, path.Key(name))
				continue
			}
			walk(path.Key(name), va, vb, out)
		}
	default:
		*out = append(*out, path)
	}
}

// jsonName returns a struct field's JSON name, and whether it is inlined.
func jsonName(f reflect.StructField) (string, bool) {
	tag := f.Tag.Get("json")
	name, opts, _ := strings.Cut(tag, ",")
	if f.Anonymous || strings.Contains(","+opts+",", ",inline,") {
		return "", true
	}
	if name == "" {
		return f.Name, false
	}
	return name, false
}

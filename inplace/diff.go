package inplace

import (
	"encoding/json"
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
	// Init is true for an init container.
	Init bool
	// From and To are the image references as written.
	From, To string
	// Same is true when From and To name the same image once normalised
	// (a rewrite of the reference, not of the image). The pod spec still
	// changes, and the kubelet still restarts the container.
	Same bool
}

// TemplateDiff is what differs between a workload's current and target pod
// templates, sorted into what live pods can take and what they cannot.
type TemplateDiff struct {
	// Images are the containers whose image changes, in template order,
	// init containers first.
	Images []ImageChange
	// Labels and Annotations are true when the template's labels or
	// annotations differ.
	Labels, Annotations bool
	// NotInPlaceable are the paths of every other field that differs. A pod
	// cannot take these changes without being recreated.
	NotInPlaceable []*field.Path
}

// InPlaceable reports whether live pods can take the change in place.
func (d TemplateDiff) InPlaceable() bool { return len(d.NotInPlaceable) == 0 }

// Empty reports whether the templates are the same.
func (d TemplateDiff) Empty() bool {
	return len(d.Images) == 0 && !d.Labels && !d.Annotations && len(d.NotInPlaceable) == 0
}

// NotInPlaceableErrors returns one error per field that cannot change in
// place, for a 422 that names them.
func (d TemplateDiff) NotInPlaceableErrors() field.ErrorList {
	errs := make(field.ErrorList, 0, len(d.NotInPlaceable))
	for _, p := range d.NotInPlaceable {
		errs = append(errs, field.Forbidden(p,
			"cannot change in place: only container images, pod labels and pod annotations can (update policy "+string(InPlaceOnly)+")"))
	}
	return errs
}

// DiffTemplates compares the pod template a workload runs (from) with the one
// it is asked to run (to). path is the path of the template in the workload,
// e.g. spec.template; the paths in the result extend it.
//
// Container images, pod labels and pod annotations are in-place-able; every
// other field is not. Images are compared after normalisation; containers are
// matched by position and name, so that a renamed, added, removed or
// reordered container is not in-place-able.
func DiffTemplates(path *field.Path, from, to *corev1.PodTemplateSpec) TemplateDiff {
	var d TemplateDiff
	if from == nil || to == nil {
		if from != to {
			d.NotInPlaceable = append(d.NotInPlaceable, path)
		}
		return d
	}
	d.Labels = !mapsEqual(from.Labels, to.Labels)
	d.Annotations = !mapsEqual(from.Annotations, to.Annotations)

	// Compare what remains once the in-place-able fields are set aside:
	// copies with those fields blanked.
	a, b := from.DeepCopy(), to.DeepCopy()
	a.Labels, b.Labels, a.Annotations, b.Annotations = nil, nil, nil, nil
	d.Images = append(d.Images, blankImages(a.Spec.InitContainers, b.Spec.InitContainers, true)...)
	d.Images = append(d.Images, blankImages(a.Spec.Containers, b.Spec.Containers, false)...)
	if !apiequality.Semantic.DeepEqual(a, b) {
		walk(path, reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem(), &d.NotInPlaceable)
	}
	return d
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
	if apiequality.Semantic.DeepEqual(a.Interface(), b.Interface()) {
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

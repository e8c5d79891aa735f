package inplace

import (
	"fmt"

	"github.com/distribution/reference"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// NormalizeImage returns the canonical form of an image reference, the form
// two references that name the same image share: the registry and the
// library/ path made explicit ("nginx" is "docker.io/library/nginx"), the tag
// "latest" made explicit when neither tag nor digest is given, and the tag
// dropped when a digest pins the content ("nginx:1.27@sha256:..." is
// "docker.io/library/nginx@sha256:...").
func NormalizeImage(image string) (string, error) {
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", err
	}
	if digested, ok := named.(reference.Digested); ok {
		canonical, err := reference.WithDigest(reference.TrimNamed(named), digested.Digest())
		if err != nil {
			return "", err
		}
		return canonical.String(), nil
	}
	return reference.TagNameOnly(named).String(), nil
}

// SameImage reports whether two image references name the same image. A
// reference that does not parse equals only itself, verbatim.
func SameImage(a, b string) bool {
	if a == b {
		return true
	}
	na, errA := NormalizeImage(a)
	nb, errB := NormalizeImage(b)
	if errA != nil || errB != nil {
		return false
	}
	return na == nb
}

// ValidateImages returns, for each container of the template (init
// containers first, as the pod spec lists them) whose image reference does
// not parse, an error naming its field and why. The API server stores such a
// reference (it checks for whitespace only), but the kubelet parses it as
// NormalizeImage does and refuses it (InvalidImageName): no pod can run it,
// in place or recreated. path is the template's.
func ValidateImages(path *field.Path, t *corev1.PodTemplateSpec) field.ErrorList {
	if t == nil {
		return nil
	}
	var errs field.ErrorList
	check := func(list string, containers []corev1.Container) {
		for i, c := range containers {
			if _, err := NormalizeImage(c.Image); err != nil {
				errs = append(errs, field.Invalid(path.Child("spec", list).Index(i).Child("image"), Shorten(c.Image),
					fmt.Sprintf("not an image reference the kubelet can pull (%s)", shortenTo(err.Error(), 2*ShownValueBytes))))
			}
		}
	}
	check("initContainers", t.Spec.InitContainers)
	check("containers", t.Spec.Containers)
	return errs
}

package inplace

import (
	"github.com/distribution/reference"
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

package inplace

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// UpdatePolicy says how a managed workload's template changes reach its pods.
type UpdatePolicy string

const (
	// InPlaceIfPossible applies in-place-able changes in place and hands the
	// others to the native controller. The default for a managed workload.
	InPlaceIfPossible UpdatePolicy = "InPlaceIfPossible"
	// InPlaceOnly refuses template changes that cannot be applied in place.
	InPlaceOnly UpdatePolicy = "InPlaceOnly"
	// Recreate opts the workload out: the native controller does everything.
	Recreate UpdatePolicy = "Recreate"
)

// UpdatePolicies lists the valid values of UpdatePolicy.
var UpdatePolicies = []UpdatePolicy{InPlaceIfPossible, InPlaceOnly, Recreate}

// MaxGracePeriodSeconds bounds inplace.dev/grace-period-seconds: an hour is
// longer than any sane drain, and a typo of an extra digit should not stall a
// rollout for days.
const MaxGracePeriodSeconds = 3600

// UpdatePolicyOf returns the effective update policy of a managed workload
// from its annotations: InPlaceIfPossible when the annotation is absent.
func UpdatePolicyOf(annotations map[string]string) (UpdatePolicy, error) {
	v, ok := annotations[AnnotationUpdatePolicy]
	if !ok {
		return InPlaceIfPossible, nil
	}
	p := UpdatePolicy(v)
	for _, known := range UpdatePolicies {
		if p == known {
			return p, nil
		}
	}
	return "", fmt.Errorf("annotation %s: unknown value %q: want one of %s", AnnotationUpdatePolicy, v, joinQuoted(UpdatePolicies))
}

// GracePeriodOf returns the grace period of a workload in seconds from its
// annotations: 0 when the annotation is absent.
func GracePeriodOf(annotations map[string]string) (int, error) {
	v, ok := annotations[AnnotationGracePeriod]
	if !ok {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > MaxGracePeriodSeconds {
		return 0, fmt.Errorf("annotation %s: invalid value %q: want a whole number of seconds from 0 to %d", AnnotationGracePeriod, v, MaxGracePeriodSeconds)
	}
	return n, nil
}

// PrepullOf says whether a workload's new images are pulled ahead, from its
// annotations: def (the manager's --prepull) when the annotation is absent.
func PrepullOf(annotations map[string]string, def bool) (bool, error) {
	v, ok := annotations[AnnotationPrepull]
	if !ok {
		return def, nil
	}
	switch v {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return def, fmt.Errorf("annotation %s: invalid value %q: want \"true\" or \"false\"", AnnotationPrepull, v)
}

// ValidateUserAnnotations checks the values of the inplace.dev annotations a
// user may write. path is the path of the annotations map.
func ValidateUserAnnotations(annotations map[string]string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if v, ok := annotations[AnnotationUpdatePolicy]; ok {
		if _, err := UpdatePolicyOf(annotations); err != nil {
			errs = append(errs, field.NotSupported(path.Key(AnnotationUpdatePolicy), Shorten(v), policyStrings()))
		}
	}
	if v, ok := annotations[AnnotationGracePeriod]; ok {
		if _, err := GracePeriodOf(annotations); err != nil {
			errs = append(errs, field.Invalid(path.Key(AnnotationGracePeriod), Shorten(v),
				fmt.Sprintf("must be a whole number of seconds from 0 to %d", MaxGracePeriodSeconds)))
		}
	}
	if v, ok := annotations[AnnotationPrepull]; ok {
		if _, err := PrepullOf(annotations, false); err != nil {
			errs = append(errs, field.NotSupported(path.Key(AnnotationPrepull), Shorten(v), []string{"true", "false"}))
		}
	}
	return errs
}

// ShownValueBytes bounds a bad value quoted back in an error or a warning:
// longer than any valid value of ours, short enough that a 200 kB mistake
// does not come back as a 200 kB error.
const ShownValueBytes = 64

// Shorten returns v as an error quotes it back: whole when it is short,
// else its first ShownValueBytes bytes (cut at a character) and how long it
// was.
func Shorten(v string) string { return shortenTo(v, ShownValueBytes) }

// shortenTo returns v whole when it has at most n bytes, else its first n
// bytes (cut at a character) and how long it was.
func shortenTo(v string, n int) string {
	if len(v) <= n {
		return v
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return fmt.Sprintf("%s... (%d bytes)", v[:cut], len(v))
}

func policyStrings() []string {
	s := make([]string, len(UpdatePolicies))
	for i, p := range UpdatePolicies {
		s[i] = string(p)
	}
	return s
}

// ValidateManagerAnnotations refuses a change, by someone other than the
// manager, to the inplace.dev annotations the manager owns: adding, changing
// or removing one. from is nil on create. path is the path of the
// annotations map.
func ValidateManagerAnnotations(from, to map[string]string, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for k, v := range to {
		if IsManagerOwned(k) && (from == nil || from[k] != v) {
			if _, had := from[k]; !had && !knownManagerAnnotations[k] {
				errs = append(errs, field.Forbidden(path.Key(k), fmt.Sprintf(
					"unknown %s annotation: users may set only %s, %s and %s", Prefix, AnnotationUpdatePolicy, AnnotationGracePeriod, AnnotationPrepull)))
				continue
			}
			errs = append(errs, field.Forbidden(path.Key(k), "written by the inplace manager only"))
		}
	}
	for k := range from {
		if _, kept := to[k]; IsManagerOwned(k) && !kept {
			errs = append(errs, field.Forbidden(path.Key(k), "written by the inplace manager only: it cannot be removed"))
		}
	}
	sortErrors(errs)
	return errs
}

// knownManagerAnnotations are the manager-owned annotations of this version.
var knownManagerAnnotations = map[string]bool{
	AnnotationHold:            true,
	AnnotationRollout:         true,
	AnnotationUpdateState:     true,
	AnnotationWokenAt:         true,
	AnnotationPrepullRevision: true,
}

// IsKnownAnnotation reports whether key is an inplace.dev annotation of this
// version, a user's or the manager's; any other key in inplace's domain is a
// typo or a name of another version.
func IsKnownAnnotation(key string) bool {
	return userAnnotations[key] || knownManagerAnnotations[key]
}

func sortErrors(errs field.ErrorList) {
	slices.SortFunc(errs, func(a, b *field.Error) int { return strings.Compare(a.Field, b.Field) })
}

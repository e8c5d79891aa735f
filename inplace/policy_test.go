package inplace

import (
	"k8s.io/utils/ptr"

	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestUpdatePolicyOf(t *testing.T) {
	cases := map[string]struct {
		annotations map[string]string
		want        UpdatePolicy
		wantErr     string
	}{
		"absent means InPlaceIfPossible": {nil, InPlaceIfPossible, ""},
		"InPlaceOnly":                    {map[string]string{AnnotationUpdatePolicy: "InPlaceOnly"}, InPlaceOnly, ""},
		"Recreate":                       {map[string]string{AnnotationUpdatePolicy: "Recreate"}, Recreate, ""},
		"values are case-sensitive": {map[string]string{AnnotationUpdatePolicy: "inplaceonly"}, "",
			`annotation inplace.dev/update-policy: unknown value "inplaceonly": want one of "InPlaceIfPossible", "InPlaceOnly", "Recreate"`},
		"empty is not absent": {map[string]string{AnnotationUpdatePolicy: ""}, "",
			`annotation inplace.dev/update-policy: unknown value "": want one of "InPlaceIfPossible", "InPlaceOnly", "Recreate"`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := UpdatePolicyOf(tc.annotations)
			if got != tc.want {
				t.Errorf("policy = %q, want %q", got, tc.want)
			}
			if gotErr := errString(err); gotErr != tc.wantErr {
				t.Errorf("error = %q, want %q", gotErr, tc.wantErr)
			}
		})
	}
}

func TestGracePeriodOf(t *testing.T) {
	cases := map[string]struct {
		value   *string
		want    int
		wantErr bool
	}{
		"absent is zero":            {nil, 0, false},
		"zero":                      {strPtr("0"), 0, false},
		"thirty":                    {strPtr("30"), 30, false},
		"the maximum":               {strPtr("3600"), 3600, false},
		"above the maximum":         {strPtr("3601"), 0, true},
		"negative":                  {strPtr("-1"), 0, true},
		"a duration is not seconds": {strPtr("30s"), 0, true},
		"empty":                     {strPtr(""), 0, true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			a := map[string]string{}
			if tc.value != nil {
				a[AnnotationGracePeriod] = *tc.value
			}
			got, err := GracePeriodOf(a)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("GracePeriodOf(%v) = %d, %v; want %d, error %v", a, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestPrepullOf(t *testing.T) {
	for _, tc := range []struct {
		value     *string
		def, want bool
		wantErr   bool
	}{
		{nil, true, true, false},
		{nil, false, false, false},
		{ptr.To("false"), true, false, false},
		{ptr.To("true"), false, true, false},
		{ptr.To("True"), false, false, true},
		{ptr.To(""), true, true, true},
	} {
		a := map[string]string{}
		if tc.value != nil {
			a[AnnotationPrepull] = *tc.value
		}
		got, err := PrepullOf(a, tc.def)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("PrepullOf(%v, %t) = %t, %v; want %t, error %t", a, tc.def, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestValidateUserAnnotations(t *testing.T) {
	path := field.NewPath("metadata", "annotations")
	got := ValidateUserAnnotations(map[string]string{
		AnnotationUpdatePolicy: "Sometimes",
		AnnotationGracePeriod:  "soon",
		AnnotationPrepull:      "yes",
		"unrelated":            "x",
	}, path)
	want := []string{
		`metadata.annotations[inplace.dev/update-policy]: Unsupported value: "Sometimes": supported values: "InPlaceIfPossible", "InPlaceOnly", "Recreate"`,
		`metadata.annotations[inplace.dev/grace-period-seconds]: Invalid value: "soon": must be a whole number of seconds from 0 to 3600`,
		`metadata.annotations[inplace.dev/prepull]: Unsupported value: "yes": supported values: "true", "false"`,
	}
	if diff := cmp.Diff(want, errorStrings(got)); diff != "" {
		t.Errorf("errors (-want,+got):\n%s", diff)
	}
	if errs := ValidateUserAnnotations(map[string]string{AnnotationUpdatePolicy: "Recreate", AnnotationGracePeriod: "5", AnnotationPrepull: "false"}, path); len(errs) != 0 {
		t.Errorf("valid annotations gave %v", errs)
	}
}

func TestIsManagerOwned(t *testing.T) {
	cases := map[string]bool{
		AnnotationHold:         true,
		AnnotationUpdateState:  true,
		"inplace.dev/anything": true,
		AnnotationUpdatePolicy: false,
		AnnotationGracePeriod:  false,
		"inplace.dev/":         false,
		"example.com/hold":     false,
		"inplace.dev":          false,
	}
	for key, want := range cases {
		if got := IsManagerOwned(key); got != want {
			t.Errorf("IsManagerOwned(%q) = %v, want %v", key, got, want)
		}
	}
}

func strPtr(s string) *string { return &s }

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func errorStrings(errs field.ErrorList) []string {
	var s []string
	for _, e := range errs {
		s = append(s, e.Error())
	}
	return s
}

func TestValidateManagerAnnotations(t *testing.T) {
	path := field.NewPath("metadata", "annotations")
	hold := map[string]string{AnnotationHold: `{"since":"x"}`, "team": "a"}
	cases := map[string]struct {
		from, to map[string]string
		want     []string
	}{
		"create without manager annotations": {nil, map[string]string{AnnotationUpdatePolicy: "Recreate"}, nil},
		"create with the hold": {nil, hold, []string{
			"metadata.annotations[inplace.dev/hold]: Forbidden: written by the inplace manager only"}},
		"create with an unknown inplace.dev annotation": {nil, map[string]string{"inplace.dev/updatepolicy": "Recreate"}, []string{
			"metadata.annotations[inplace.dev/updatepolicy]: Forbidden: unknown inplace.dev/ annotation: users may set only inplace.dev/update-policy, inplace.dev/grace-period-seconds and inplace.dev/prepull"}},
		"update keeping the hold": {hold, map[string]string{AnnotationHold: hold[AnnotationHold], "team": "b"}, nil},
		"update changing the hold": {hold, map[string]string{AnnotationHold: "{}"}, []string{
			"metadata.annotations[inplace.dev/hold]: Forbidden: written by the inplace manager only"}},
		"update removing the hold": {hold, map[string]string{"team": "a"}, []string{
			"metadata.annotations[inplace.dev/hold]: Forbidden: written by the inplace manager only: it cannot be removed"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, errorStrings(ValidateManagerAnnotations(tc.from, tc.to, path))); diff != "" {
				t.Errorf("errors (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestShorten(t *testing.T) {
	cases := map[string]struct{ in, want string }{
		"short, whole":      {in: "InPlace", want: "InPlace"},
		"at the bound":      {in: strings.Repeat("x", ShownValueBytes), want: strings.Repeat("x", ShownValueBytes)},
		"long, cut":         {in: strings.Repeat("x", 200000), want: strings.Repeat("x", ShownValueBytes) + "... (200000 bytes)"},
		"cut at a rune":     {in: strings.Repeat("x", ShownValueBytes-1) + "é" + "y", want: strings.Repeat("x", ShownValueBytes-1) + "... (66 bytes)"},
		"empty stays empty": {in: "", want: ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Shorten(tc.in); got != tc.want {
				t.Errorf("Shorten = %q, want %q", got, tc.want)
			}
		})
	}
}

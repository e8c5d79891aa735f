package inplace

import "testing"

func TestHoldOf(t *testing.T) {
	cases := map[string]struct {
		annotations   map[string]string
		wantHold      bool
		wantErr       bool
		wantPartition int32
	}{
		"no hold":                  {annotations: map[string]string{"team": "a"}},
		"the user's partition 2":   {annotations: map[string]string{AnnotationHold: `{"reason":"InPlaceRollout","partition":2}`}, wantHold: true, wantPartition: 2},
		"no partition recorded: 0": {annotations: map[string]string{AnnotationHold: `{"reason":"InPlaceRollout"}`}, wantHold: true},
		"a negative partition (hand-edited): 0, one the API server accepts": {
			annotations: map[string]string{AnnotationHold: `{"partition":-1}`}, wantHold: true,
		},
		"a partition beyond int32: unreadable": {annotations: map[string]string{AnnotationHold: `{"partition":2147483648}`}, wantErr: true},
		"not JSON: unreadable":                 {annotations: map[string]string{AnnotationHold: `{`}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			h, err := HoldOf(tc.annotations)
			if (err != nil) != tc.wantErr || (h != nil) != tc.wantHold {
				t.Fatalf("HoldOf = %+v, %v; want a hold %v, an error %v", h, err, tc.wantHold, tc.wantErr)
			}
			if h != nil && h.UserPartition() != tc.wantPartition {
				t.Errorf("UserPartition = %d, want %d", h.UserPartition(), tc.wantPartition)
			}
		})
	}
}

package webhook

import (
	"strings"

	"github.com/google/go-cmp/cmp/cmpopts"
	gomodules "gomodules.xyz/jsonpatch/v2"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
)

// byPath compares patches as sets: the framework's patch order follows map
// iteration, and the API server applies them in any order it is given.
var byPath = cmpopts.SortSlices(func(a, b gomodules.JsonPatchOperation) bool {
	return strings.Compare(a.Path, b.Path) < 0
})

func decodePatch(p []byte) jsonpatch.Patch {
	patch, err := jsonpatch.DecodePatch(p)
	if err != nil {
		panic(err)
	}
	return patch
}

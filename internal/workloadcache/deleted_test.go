package workloadcache

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/inplace-dev/inplace/inplace"
)

// TestDeletedForgets: the copy kept for an object goes with it, whether
// the informer hands over the object or, after a watch outage, its
// tombstone; the copies of other objects stay.
func TestDeletedForgets(t *testing.T) {
	rs := func(uid types.UID) *appsv1.ReplicaSet {
		return &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-" + string(uid), UID: uid}}
	}
	trimmer := New(inplace.NewScope(inplace.PolicyNamespace, "inplace-system"))
	for _, uid := range []types.UID{"a", "b", "c"} {
		trimmer.whole[uid] = rs(uid)
	}
	trimmer.deleted(rs("a"))
	trimmer.deleted(toolscache.DeletedFinalStateUnknown{Key: "shop/web-b", Obj: rs("b")})
	trimmer.deleted(toolscache.DeletedFinalStateUnknown{Key: "shop/gone"}) // no object: nothing to forget
	if _, kept := trimmer.whole["c"]; len(trimmer.whole) != 1 || !kept {
		t.Errorf("kept after deleting a and b: %v, want c only", trimmer.whole)
	}
}

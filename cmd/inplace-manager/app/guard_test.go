package app

import (
	"context"
	"errors"
	"testing"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// TestGuardWatchKeepsItsModeWhenItCannotTell: a read that fails (the API
// server away) leaves the order of writes as it was and looks again soon;
// only the guard's absence, read, makes the manager unguarded.
func TestGuardWatchKeepsItsModeWhenItCannotTell(t *testing.T) {
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{ObjectMeta: metav1.ObjectMeta{Name: ReadinessGuardName}}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: ReadinessGuardName},
		Spec:       admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: ReadinessGuardName},
	}
	down := false
	c := fake.NewClientBuilder().WithScheme(clientgoscheme.Scheme).WithObjects(policy, binding).
		WithInterceptorFuncs(interceptor.Funcs{Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if down {
				return errors.New("connection refused")
			}
			return c.Get(ctx, key, obj, opts...)
		}}).Build()
	g := &guardWatch{reader: c}
	ctx, log := t.Context(), logr.Discard()

	down = true
	if next := g.refresh(ctx, log); next != guardRetryPeriod || g.Guarded() {
		t.Errorf("first check with the API server away: next %v, guarded %t; want a retry in %v, not guarded yet", next, g.Guarded(), guardRetryPeriod)
	}
	down = false
	if next := g.refresh(ctx, log); next != guardCheckPeriod || !g.Guarded() {
		t.Errorf("guard read: next %v, guarded %t; want %v, guarded", next, g.Guarded(), guardCheckPeriod)
	}
	down = true
	if next := g.refresh(ctx, log); next != guardRetryPeriod || !g.Guarded() {
		t.Errorf("API server away: next %v, guarded %t; want a retry in %v, still guarded", next, g.Guarded(), guardRetryPeriod)
	}
	down = false
	if err := c.Delete(ctx, binding); err != nil {
		t.Fatal(err)
	}
	if next := g.refresh(ctx, log); next != guardCheckPeriod || g.Guarded() {
		t.Errorf("binding deleted: next %v, guarded %t; want %v, not guarded", next, g.Guarded(), guardCheckPeriod)
	}
}

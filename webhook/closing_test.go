package webhook

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/inplace-dev/inplace/inplace"
	"github.com/inplace-dev/inplace/internal/builder"
)

// TestClosingRetiresConnections: before the manager stops, the API server's
// connection is kept for the next call; once it stops, every answer closes
// its connection, and the shutdown waits Grace for them to go.
func TestClosingRetiresConnections(t *testing.T) {
	c := NewClosing(200 * time.Millisecond)
	var opened atomic.Int32
	srv := httptest.NewUnstartedServer(c.wrap(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"response":{"allowed":true}}`)
	})))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	client := srv.Client()
	call := func() *http.Response {
		t.Helper()
		resp, err := client.Post(srv.URL, "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		return resp
	}

	for range 2 {
		if resp := call(); resp.Close {
			t.Fatalf("a running replica's answer closes its connection")
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("%d connections for two calls, want the first kept for the second", n)
	}

	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan time.Time, 1)
	begun := time.Now()
	go func() {
		_ = c.Start(ctx)
		stopped <- time.Now()
	}()
	cancel()
	for !c.stopping.Load() {
		time.Sleep(time.Millisecond)
	}
	for range 2 {
		if resp := call(); !resp.Close {
			t.Errorf("a stopping replica's answer keeps its connection")
		}
	}
	if n := opened.Load(); n != 2 {
		t.Errorf("%d connections for four calls, want 2: the kept one closed after the third, a new one for the fourth", n)
	}
	if c.isRetired() {
		t.Errorf("retired before its grace is over")
	}
	if took := (<-stopped).Sub(begun); took < c.grace {
		t.Errorf("the shutdown went on after %v, before the %v of grace", took, c.grace)
	}
	select {
	case <-c.Retired():
	default:
		t.Errorf("not retired once its grace is over")
	}
}

// TestClosingStopsGating: a stopping replica gates new pods through its
// grace, and none once its grace is over: its shutdown drain reads the pods
// whose gates it must open then, and a pod gated after that read would be
// left gated with every replica gone.
func TestClosingStopsGating(t *testing.T) {
	c := NewClosing(time.Second)
	objs := []client.Object{ownerStatefulSet(), namespace("apps", enabled)}
	cl := fake.NewClientBuilder().WithScheme(testScheme).WithObjects(objs...).Build()
	h := Handlers(Config{
		Scope: inplace.NewScope(inplace.PolicyNamespace, "inplace-system"), Reader: cl, LiveReader: cl,
		ManagerUsername: managerUser, Scheme: testScheme, Closing: c,
	})[PathMutatePod]
	gated := func() bool {
		t.Helper()
		pod := builder.Pod("p", "apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj()
		resp := h.Handle(t.Context(), review(t, admissionv1.Create, pod, nil))
		if !resp.Allowed {
			t.Fatalf("not allowed: %v", resp.Result)
		}
		return len(resp.Patches) > 0
	}

	if !gated() {
		t.Fatal("a running replica gives a managed pod no gate")
	}
	ctx, cancel := context.WithCancel(t.Context())
	stopped := make(chan struct{})
	go func() {
		_ = c.Start(ctx)
		close(stopped)
	}()
	cancel()
	for !c.stopping.Load() {
		time.Sleep(time.Millisecond)
	}
	// Retired only after the answer, it was in its grace when it gave it.
	if !gated() && !c.isRetired() {
		t.Error("a replica in its grace gives a managed pod no gate")
	}
	<-stopped
	if gated() {
		t.Error("a replica past its grace still gates new pods")
	}
}

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
)

// TestClosingRetiresConnections: before the manager stops, the API server's
// connection is kept for the next call; once it stops, every answer closes
// its connection, and the shutdown waits Grace for them to go.
func TestClosingRetiresConnections(t *testing.T) {
	c := &Closing{Grace: 200 * time.Millisecond}
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
	if took := (<-stopped).Sub(begun); took < c.Grace {
		t.Errorf("the shutdown went on after %v, before the %v of grace", took, c.Grace)
	}
}

//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"strings"
	"sync"
	"time"
)

// trackRequests, a rest.Config's WrapTransport, follows every request of
// the tests' clients to the API server until its answer has been read,
// with how far it got, and writes to stderr each that took slowRequest or
// more, or was given up after that long: a wait that ends in "context deadline exceeded" is then traced to
// the request that never came back and its last step (no connection yet,
// sent and not answered, answered and its body not read). Watches and
// followed logs are left out: they stay open by design.
func trackRequests(rt http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		if q := req.URL.Query(); q.Get("watch") == "true" || q.Get("follow") == "true" {
			return rt.RoundTrip(req)
		}
		r := &trackedRequest{what: req.Method + " " + req.URL.RequestURI(), started: time.Now()}
		trace := &httptrace.ClientTrace{
			GetConn: func(string) { r.step("waiting for a connection") },
			GotConn: func(info httptrace.GotConnInfo) {
				r.step("got connection %s->%s (reused %t, idle %v)", info.Conn.LocalAddr(), info.Conn.RemoteAddr(), info.Reused, info.IdleTime)
			},
			WroteRequest: func(info httptrace.WroteRequestInfo) {
				if info.Err != nil {
					r.step("writing the request failed: %v", info.Err)
					return
				}
				r.step("request sent")
			},
			GotFirstResponseByte: func() { r.step("first byte of the answer") },
		}
		resp, err := rt.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		if err != nil {
			r.end("failed: " + err.Error())
			return resp, err
		}
		r.step("answer %d, reading its body", resp.StatusCode)
		status := resp.StatusCode
		resp.Body = &trackedBody{ReadCloser: resp.Body, end: func(err error) {
			if err != nil && err != io.EOF {
				r.end(fmt.Sprintf("answered %d, reading the body failed: %v", status, err))
				return
			}
			r.end(fmt.Sprintf("answered %d", status))
		}}
		return resp, nil
	})
}

// slowRequest is the time from which a request is reported.
const slowRequest = 5 * time.Second

type trackedRequest struct {
	what    string
	started time.Time

	mu    sync.Mutex
	steps []string
}

func (r *trackedRequest) step(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.steps = append(r.steps, fmt.Sprintf("+%.3fs ", time.Since(r.started).Seconds())+fmt.Sprintf(format, args...))
}

// end reports r if it took slowRequest or more; outcome says how it ended.
func (r *trackedRequest) end(outcome string) {
	took := time.Since(r.started)
	if took < slowRequest {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(os.Stderr, "%s e2e client: %s sent at %s took %.1fs, %s: %s\n", time.Now().Format("15:04:05.000"),
		r.what, r.started.Format("15:04:05.000"), took.Seconds(), outcome, strings.Join(r.steps, "; "))
}

// trackedBody calls end once, at the first error reading it (io.EOF at
// its end) or when it is closed.
type trackedBody struct {
	io.ReadCloser
	once sync.Once
	end  func(error)
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.once.Do(func() { b.end(err) })
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.once.Do(func() { b.end(nil) })
	return b.ReadCloser.Close()
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

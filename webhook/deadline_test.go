package webhook

import (
	"context"
	"errors"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// hangingReader answers only when the caller gives up, as an API server
// that does not answer.
type hangingReader struct{ client.Reader }

func (hangingReader) Get(ctx context.Context, _ client.ObjectKey, _ client.Object, _ ...client.GetOption) error {
	<-ctx.Done()
	return ctx.Err()
}

func (hangingReader) List(ctx context.Context, _ client.ObjectList, _ ...client.ListOption) error {
	<-ctx.Done()
	return ctx.Err()
}

func TestDeadlineReaderBoundsEachRead(t *testing.T) {
	r := deadlineReader{Reader: hangingReader{}, timeout: 50 * time.Millisecond}
	for name, read := range map[string]func() error{
		"get":  func() error { return r.Get(t.Context(), client.ObjectKey{Name: "a"}, &corev1.Namespace{}) },
		"list": func() error { return r.List(t.Context(), &corev1.NamespaceList{}) },
	} {
		start := time.Now()
		err := read()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err = %v, want the read's own deadline exceeded", name, err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("%s took %v, want about 50ms", name, took)
		}
	}
}

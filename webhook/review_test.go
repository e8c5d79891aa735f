package webhook

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/inplace-dev/inplace/internal/builder"
)

// maxReviewBytes is controller-runtime's bound on an AdmissionReview body
// (webhook/admission's maxRequestSize): it reads no more, and refuses more
// with a 413.
const maxReviewBytes = 7 << 20

// TestBadAdmissionReviews sends each handler, over HTTP as the API server
// does, AdmissionReviews that no API server sends: garbage, the wrong
// envelope, the wrong kind or version of object, too big. Each gets an
// AdmissionReview back that refuses with a 4xx saying what is wrong; none
// panics (the handlers' panic recovery is off), and none reads more of a
// body than the bound.
func TestBadAdmissionReviews(t *testing.T) {
	handlers := testHandlers(t, ownerStatefulSet())
	for _, h := range handlers {
		h.WithRecoverPanic(false)
	}
	reviewRaw := func(apiVersion, raw string) string {
		return `{"apiVersion":"` + apiVersion + `","kind":"AdmissionReview","request":{"uid":"u1","kind":{"group":"apps","version":"v1","kind":"StatefulSet"},` +
			`"namespace":"apps","name":"web","operation":"CREATE","userInfo":{"username":"alice"},"object":` + raw + `}}`
	}
	review := func(apiVersion string, obj any) string {
		raw, err := json.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		return reviewRaw(apiVersion, string(raw))
	}
	sts := builder.StatefulSet("web", "apps").Obj()
	deployment := builder.Deployment("web", "apps").Obj()
	v1beta2 := builder.StatefulSet("web", "apps").Obj()
	v1beta2.APIVersion = "apps/v1beta2"
	cases := map[string]struct {
		body, contentType string
		// paths are the handlers sent the body; every handler when empty.
		paths []string
		// wantCode is the refusal's code, 0 for an answer that allows.
		wantCode int32
		// wantMessage is in the StatefulSet handlers' refusal; wantValidate
		// in the validating one's, when it says something else.
		wantMessage, wantValidate string
	}{
		"an empty body": {
			wantCode: http.StatusBadRequest, wantMessage: "request body is empty",
		},
		"not JSON": {
			body: "<html>", wantCode: http.StatusBadRequest, wantMessage: "couldn't get version/kind; json parse error",
		},
		"the wrong content type": {
			body: review("admission.k8s.io/v1", sts), contentType: "text/plain",
			wantCode: http.StatusBadRequest, wantMessage: "contentType=text/plain, expected application/json",
		},
		"an object that is not an AdmissionReview": {
			body:     `{"apiVersion":"apps/v1","kind":"StatefulSet"}`,
			wantCode: http.StatusBadRequest, wantMessage: "there is no content to decode", wantValidate: `unknown operation ""`,
		},
		// controller-runtime reads any version as v1 and answers in it;
		// an API server would refuse the answer of a version it did not
		// send.
		"an AdmissionReview of an unknown version is read as v1": {
			body:  strings.Replace(review("admission.k8s.io/v1", sts), "admission.k8s.io/v1", "admission.k8s.io/v2", 1),
			paths: []string{PathMutateStatefulSet, PathValidateStatefulSet},
		},
		"an AdmissionReview without a request": {
			body:     `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`,
			paths:    []string{PathMutateStatefulSet, PathValidateStatefulSet, PathMutateCloneSet, PathValidateCloneSet, PathMutatePod},
			wantCode: http.StatusBadRequest, wantMessage: "there is no content to decode", wantValidate: `unknown operation ""`,
		},
		"an object that is a string": {
			body:     review("admission.k8s.io/v1", "x"),
			paths:    []string{PathMutateStatefulSet, PathValidateStatefulSet, PathMutateCloneSet, PathValidateCloneSet, PathMutatePod},
			wantCode: http.StatusBadRequest, wantMessage: "cannot unmarshal string",
		},
		"a Deployment sent to the StatefulSet handlers": {
			body:     review("admission.k8s.io/v1", deployment),
			paths:    []string{PathMutateStatefulSet, PathValidateStatefulSet},
			wantCode: http.StatusBadRequest, wantMessage: "unable to decode apps/v1, Kind=Deployment into *v1.StatefulSet",
		},
		"a StatefulSet of apps v1beta2": {
			body:     review("admission.k8s.io/v1", v1beta2),
			paths:    []string{PathMutateStatefulSet, PathValidateStatefulSet},
			wantCode: http.StatusBadRequest, wantMessage: "unable to decode apps/v1beta2, Kind=StatefulSet into *v1.StatefulSet",
		},
		"an object nested 100,000 deep": {
			body:     reviewRaw("admission.k8s.io/v1", strings.Repeat("[", 100_000)+strings.Repeat("]", 100_000)),
			paths:    []string{PathMutateStatefulSet, PathValidateStatefulSet, PathMutatePod},
			wantCode: http.StatusBadRequest, wantMessage: "exceeded max depth",
		},
		"a v1beta1 AdmissionReview is answered": {
			body:  review("admission.k8s.io/v1beta1", sts),
			paths: []string{PathMutateStatefulSet, PathValidateStatefulSet},
		},
	}
	for name, tc := range cases {
		paths := tc.paths
		if len(paths) == 0 {
			for p := range handlers {
				paths = append(paths, p)
			}
		}
		for _, path := range paths {
			t.Run(name+path, func(t *testing.T) {
				req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(tc.body))
				if tc.body == "" {
					req.Body = http.NoBody
				}
				req.Header.Set("Content-Type", "application/json")
				if tc.contentType != "" {
					req.Header.Set("Content-Type", tc.contentType)
				}
				resp := serve(t, handlers[path], req)
				if tc.wantCode == 0 {
					if !resp.Allowed {
						t.Fatalf("refused: %+v", resp.Result)
					}
					return
				}
				if resp.Allowed && path == PathValidatePod {
					return // it fails open: it refuses only a workload controller's delete
				}
				if resp.Allowed || resp.Result == nil || resp.Result.Code < 400 || resp.Result.Code >= 500 || resp.Result.Message == "" {
					t.Fatalf("answer %+v, want a 4xx refusal saying why", resp.Result)
				}
				if path != PathMutateStatefulSet && path != PathValidateStatefulSet {
					return
				}
				want := tc.wantMessage
				if path == PathValidateStatefulSet && tc.wantValidate != "" {
					want = tc.wantValidate
				}
				if resp.Result.Code != tc.wantCode || !strings.Contains(resp.Result.Message, want) {
					t.Errorf("answer %d %q, want %d saying %q", resp.Result.Code, resp.Result.Message, tc.wantCode, want)
				}
			})
		}
	}

	t.Run("a body past the bound is refused with a 413, read no further", func(t *testing.T) {
		for path, h := range handlers {
			body := &countedBody{r: io.MultiReader(strings.NewReader(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"object":{"a":"`),
				io.LimitReader(zeros{}, 64<<20))}
			req := httptest.NewRequest(http.MethodPost, path, body)
			req.Header.Set("Content-Type", "application/json")
			resp := serve(t, h, req)
			if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("%s: answer %+v, want a 413", path, resp.Result)
			}
			if body.n > maxReviewBytes+64<<10 {
				t.Errorf("%s: read %d bytes of a 64 MiB body, want at most the bound (%d) and a buffer", path, body.n, maxReviewBytes)
			}
		}
	})
}

// serve runs the handler on the request and decodes its AdmissionReview.
func serve(t *testing.T, h http.Handler, req *http.Request) admissionv1.AdmissionResponse {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("HTTP %d: %s", rec.Code, rec.Body)
	}
	var out admissionv1.AdmissionReview
	if err := json.NewDecoder(bytes.NewReader(rec.Body.Bytes())).Decode(&out); err != nil || out.Response == nil {
		t.Fatalf("the answer is no AdmissionReview (%v): %s", err, rec.Body)
	}
	return *out.Response
}

// countedBody counts the bytes read through it.
type countedBody struct {
	r io.Reader
	n int
}

func (c *countedBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// zeros reads as an endless run of '0', without allocating it.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '0'
	}
	return len(p), nil
}

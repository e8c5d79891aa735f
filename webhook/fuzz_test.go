package webhook

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/inplace-dev/inplace/internal/builder"
)

var fuzzKinds = map[string]metav1.GroupVersionKind{
	PathMutateDeployment:            {Group: "apps", Version: "v1", Kind: "Deployment"},
	PathMutateStatefulSet:           {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	PathMutateDaemonSet:             {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	PathMutateCloneSet:              {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "CloneSet"},
	PathMutateCloneSetV1beta1:       {Group: "apps.kruise.io", Version: "v1beta1", Kind: "CloneSet"},
	PathMutateAdvancedStatefulSet:   {Group: "apps.kruise.io", Version: "v1beta1", Kind: "StatefulSet"},
	PathMutateAdvancedDaemonSet:     {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "DaemonSet"},
	PathMutatePod:                   {Version: "v1", Kind: "Pod"},
	PathValidatePod:                 {Version: "v1", Kind: "Pod"},
	PathValidateDeployment:          {Group: "apps", Version: "v1", Kind: "Deployment"},
	PathValidateStatefulSet:         {Group: "apps", Version: "v1", Kind: "StatefulSet"},
	PathValidateDaemonSet:           {Group: "apps", Version: "v1", Kind: "DaemonSet"},
	PathValidateCloneSet:            {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "CloneSet"},
	PathValidateCloneSetV1beta1:     {Group: "apps.kruise.io", Version: "v1beta1", Kind: "CloneSet"},
	PathValidateAdvancedStatefulSet: {Group: "apps.kruise.io", Version: "v1beta1", Kind: "StatefulSet"},
	PathValidateAdvancedDaemonSet:   {Group: "apps.kruise.io", Version: "v1alpha1", Kind: "DaemonSet"},
}

// fuzzUsers are who the fuzzed requests come from: a user, the manager,
// and the workload controllers whose pod replacements the pod webhook
// answers.
var fuzzUsers = []string{"alice", managerUser, statefulSetController, daemonSetController, replicaSetController}

// fuzzCluster is what the fuzzed handlers read: the workloads of the pod
// webhook's tests (a StatefulSet, a DaemonSet and a Deployment mid-rollout,
// with their revisions, ReplicaSets and pods), and a DaemonSet "broken" and
// a StatefulSet "broken" whose ControllerRevisions cannot be read.
func fuzzCluster() []client.Object {
	objs := statefulSetCluster(webStatefulSet())
	objs = append(objs, daemonSetCluster(agentDaemonSet())...)
	objs = append(objs, deploymentCluster(apiDeployment(), 3, 4, 1, 0)...)
	brokenDS := builder.DaemonSet("broken", "apps").UID("broken-ds").Obj()
	brokenSTS := builder.StatefulSet("broken", "apps").Replicas(3).Obj()
	brokenSTS.UID = "broken-sts"
	objs = append(objs, brokenDS, brokenSTS)
	// Valid JSON all (the API server stores no other), none a template.
	for i, data := range []string{`{"spec":{"template":"x"}}`, `[]`, `{"spec":{"template":{"spec":{"containers":{}}}}}`} {
		hash := fmt.Sprintf("b%d", i)
		rev := builder.ControllerRevision(brokenDS, "DaemonSet", hash, int64(i+1), builder.PodTemplate("broken", "nginx:1").Obj())
		rev.Data.Raw = []byte(data)
		srev := builder.ControllerRevision(brokenSTS, "StatefulSet", fmt.Sprint(i), int64(i+1), builder.PodTemplate("broken", "nginx:1").Obj())
		srev.Data.Raw = []byte(data)
		objs = append(objs, rev, srev)
	}
	return objs
}

// FuzzHandlers feeds every handler arbitrary objects from each user and
// checks that it never panics and always answers with a well-formed
// AdmissionResponse: the request's UID, a result code when it refuses, and
// a patch that applies to the object it was given. The pod webhook never
// answers with an error (an error is a refusal): it allows, or refuses
// with a 403 only a workload controller's delete or create.
//
// The seeds below reach each handler; testdata/fuzz/FuzzHandlers holds the
// pod webhook's, reaching each kind's rule, and workloads with malformed
// records of the manager (inplace.dev/rollout, inplace.dev/hold).
func FuzzHandlers(f *testing.F) {
	paths := make([]string, 0, len(fuzzKinds))
	for p := range fuzzKinds {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	handlers := testHandlers(f, fuzzCluster()...)
	for _, h := range handlers {
		h.WithRecoverPanic(false)
	}

	seed := func(o runtime.Object) []byte {
		b, _ := json.Marshal(o)
		return b
	}
	sts := seed(builder.StatefulSet("web", "apps").Obj())
	stsNew := seed(builder.StatefulSet("web", "apps").Template(func(t *builder.Template) { t.Image("app", "nginx:2").Env("A", "B") }).Annotation("inplace.dev/update-policy", "InPlaceOnly").Obj())
	pod := seed(builder.Pod("web-0", "apps").OwnedBy("apps/v1", "StatefulSet", "web", "sts-uid").Obj())
	clone := seed(kruiseObject(f, cloneSet, "apps", nil))
	for i := range paths {
		f.Add(uint8(i), uint8(0), uint8(0), sts, []byte(nil))
		f.Add(uint8(i), uint8(1), uint8(0), stsNew, sts)
		f.Add(uint8(i), uint8(0), uint8(0), pod, []byte(nil))
		f.Add(uint8(i), uint8(1), uint8(0), clone, clone)
	}
	f.Add(uint8(0), uint8(0), uint8(0), []byte(`{"metadata":{"namespace":"apps","annotations":{"inplace.dev/hold":"x"}}}`), []byte(`null`))
	f.Add(uint8(0), uint8(1), uint8(0), []byte(`{"spec":{"template":[]}}`), []byte(`{"spec":{"template":"x"}}`))

	ops := []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete}
	f.Fuzz(func(t *testing.T, which, op, who uint8, obj, old []byte) {
		path := paths[int(which)%len(paths)]
		req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID:       "fuzz",
			Kind:      fuzzKinds[path],
			Namespace: "apps",
			Name:      "web",
			Operation: ops[int(op)%len(ops)],
			UserInfo:  authenticationv1.UserInfo{Username: fuzzUsers[int(who)%len(fuzzUsers)]},
			Object:    runtime.RawExtension{Raw: obj},
			OldObject: runtime.RawExtension{Raw: old},
		}}
		resp := handlers[path].Handle(t.Context(), req)
		if resp.UID != req.UID {
			t.Fatalf("response UID %q, want %q", resp.UID, req.UID)
		}
		if path == PathValidatePod {
			checkPodAnswer(t, req, resp)
		}
		if !resp.Allowed {
			if resp.Result == nil || resp.Result.Code < http.StatusBadRequest {
				t.Fatalf("refused without an error code: %+v", resp.Result)
			}
			return
		}
		if len(resp.Patches) > 0 {
			if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
				t.Fatalf("patches without the JSONPatch type")
			}
			if _, err := decodePatch(resp.Patch).Apply(obj); err != nil {
				t.Fatalf("the patch does not apply to the object: %v\n%s", err, resp.Patch)
			}
		}
	})
}

// checkPodAnswer checks the pod webhook's answer: allowed with a 200, or a
// workload controller's delete or create refused with a 403 in inplace's
// words.
func checkPodAnswer(t *testing.T, req admission.Request, resp admission.Response) {
	t.Helper()
	if resp.Result == nil {
		t.Fatalf("no result")
	}
	if resp.Allowed {
		if resp.Result.Code != http.StatusOK {
			t.Fatalf("allowed with %d", resp.Result.Code)
		}
		return
	}
	if resp.Result.Code != http.StatusForbidden || !strings.HasPrefix(resp.Result.Message, "inplace: ") {
		t.Fatalf("refused with %d: %s; the pod webhook refuses only with a 403 of its own", resp.Result.Code, resp.Result.Message)
	}
	if !slices.Contains(DefaultWorkloadControllerUsers, req.UserInfo.Username) {
		t.Fatalf("refused %s's %s", req.UserInfo.Username, req.Operation)
	}
	if req.Operation != admissionv1.Delete && req.Operation != admissionv1.Create {
		t.Fatalf("refused an %s", req.Operation)
	}
}

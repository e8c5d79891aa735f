package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

// stsBuilder builds a StatefulSet as a typed client's watch event carries
// it: no TypeMeta. It starts as three pods, all ready and on revision
// web-a, generation 1 observed, updateStrategy as the API server defaults
// it (RollingUpdate, partition 0).
type stsBuilder struct{ appsv1.StatefulSet }

func makeSTS() *stsBuilder {
	return &stsBuilder{appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", Generation: 1, ResourceVersion: "100"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](3),
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{
				Type:          appsv1.RollingUpdateStatefulSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](0)},
			},
		},
		Status: appsv1.StatefulSetStatus{
			ObservedGeneration: 1,
			Replicas:           3, ReadyReplicas: 3, AvailableReplicas: 3, CurrentReplicas: 3, UpdatedReplicas: 3,
			CurrentRevision: "web-a", UpdateRevision: "web-a",
		},
	}}
}

// rollingTo is the StatefulSet at generation 2, observed, rolling from
// web-a to web-b with updated of its pods on web-b.
func (b *stsBuilder) rollingTo(updated int32) *stsBuilder {
	b.Generation, b.Status.ObservedGeneration = 2, 2
	b.Status.UpdateRevision = "web-b"
	b.Status.UpdatedReplicas = updated
	b.Status.CurrentReplicas = *b.Spec.Replicas - updated
	return b
}

// rolledTo is the end of a rollout: every pod on web-b, which the
// controller has made the current revision.
func (b *stsBuilder) rolledTo() *stsBuilder {
	b.rollingTo(*b.Spec.Replicas)
	b.Status.CurrentRevision, b.Status.CurrentReplicas = "web-b", *b.Spec.Replicas
	return b
}

func (b *stsBuilder) partition(p int32) *stsBuilder {
	b.Spec.UpdateStrategy.RollingUpdate.Partition = ptr.To(p)
	return b
}

// noRollingUpdate is `type: RollingUpdate` written without rollingUpdate,
// which the API server leaves nil (it defaults the partition only when it
// defaults the type).
func (b *stsBuilder) noRollingUpdate() *stsBuilder {
	b.Spec.UpdateStrategy.RollingUpdate = nil
	return b
}

func (b *stsBuilder) ready(n int32) *stsBuilder {
	b.Status.ReadyReplicas, b.Status.AvailableReplicas = n, n
	return b
}

func (b *stsBuilder) unobserved() *stsBuilder {
	b.Generation = b.Status.ObservedGeneration + 1
	return b
}

func (b *stsBuilder) deleting() *stsBuilder {
	b.DeletionTimestamp = &metav1.Time{Time: time.Unix(0, 0)}
	return b
}

func (b *stsBuilder) Obj() *appsv1.StatefulSet { return &b.StatefulSet }

// verdicts is what a test checks of a report: the two tools' answers.
type verdicts struct{ Kstatus, ArgoCD Verdict }

func TestObserveStatefulSet(t *testing.T) {
	for name, tc := range map[string]struct {
		sts  *appsv1.StatefulSet
		want verdicts
	}{
		"mid-rollout, partition 0 (the API server's default): one pod of three updated": {
			sts: makeSTS().rollingTo(1).Obj(),
			want: verdicts{
				Kstatus: Verdict{"InProgress", "updated: 1/3"},
				ArgoCD:  Verdict{"Progressing", "Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated..."},
			},
		},
		"mid-rollout, no rollingUpdate: one pod of three updated": {
			sts: makeSTS().noRollingUpdate().rollingTo(1).Obj(),
			want: verdicts{
				Kstatus: Verdict{"InProgress", "current: 2/3"},
				ArgoCD:  Verdict{"Progressing", "waiting for statefulset rolling update to complete 1 pods at revision web-b..."},
			},
		},
		"mid-rollout: an updated pod not ready yet": {
			sts: makeSTS().rollingTo(2).ready(2).Obj(),
			want: verdicts{
				Kstatus: Verdict{"InProgress", "Ready: 2/3"},
				ArgoCD:  Verdict{"Progressing", "Waiting for 1 pods to be ready..."},
			},
		},
		"a new generation the controller has not observed yet": {
			sts: makeSTS().unobserved().Obj(),
			want: verdicts{
				Kstatus: Verdict{"InProgress", "StatefulSet generation is 2, but latest observed generation is 1"},
				ArgoCD:  Verdict{"Progressing", "Waiting for statefulset spec update to be observed..."},
			},
		},
		"done, partition 0: every pod on the update revision, ready": {
			sts: makeSTS().rolledTo().Obj(),
			want: verdicts{
				Kstatus: Verdict{"Current", "Partition rollout complete. updated: 3"},
				ArgoCD:  Verdict{"Healthy", "partitioned roll out complete: 3 new pods have been updated..."},
			},
		},
		"done, no rollingUpdate": {
			sts: makeSTS().noRollingUpdate().rolledTo().Obj(),
			want: verdicts{
				Kstatus: Verdict{"Current", "All replicas scheduled as expected. Replicas: 3"},
				ArgoCD:  Verdict{"Healthy", "statefulset rolling update complete 3 pods at revision web-b..."},
			},
		},
		// Both libraries end a partitioned rollout at replicas-partition
		// updated pods and never compare the revisions then.
		"partition 2: the one pod above it updated, revisions still differ": {
			sts: makeSTS().partition(2).rollingTo(1).Obj(),
			want: verdicts{
				Kstatus: Verdict{"Current", "Partition rollout complete. updated: 1"},
				ArgoCD:  Verdict{"Healthy", "partitioned roll out complete: 1 new pods have been updated..."},
			},
		},
		"partition 2: no pod updated yet": {
			sts: makeSTS().partition(2).rollingTo(0).Obj(),
			want: verdicts{
				Kstatus: Verdict{"InProgress", "updated: 0/1"},
				ArgoCD:  Verdict{"Progressing", "Waiting for partitioned roll out to finish: 0 out of 1 new pods have been updated..."},
			},
		},
		"being deleted": {
			sts: makeSTS().deleting().Obj(),
			want: verdicts{
				Kstatus: Verdict{"Terminating", "Resource scheduled for deletion"},
				ArgoCD:  Verdict{"Progressing", "Pending deletion"},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Observe(tc.sts, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, verdicts{r.Kstatus, r.ArgoCD}); diff != "" {
				t.Errorf("verdicts (-want,+got):\n%s", diff)
			}
		})
	}
}

// TestObserveLine checks a whole line: the counts and the JSON names.
func TestObserveLine(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	for name, tc := range map[string]struct {
		obj  runtime.Object
		want string
	}{
		"a StatefulSet mid-rollout": {
			obj: makeSTS().rollingTo(1).Obj(),
			want: `{"time":"2026-01-02T03:04:05.000000006Z","resourceVersion":"100","generation":2,"observedGeneration":2,` +
				`"replicas":3,"statusReplicas":3,"readyReplicas":3,"updatedReplicas":1,"availableReplicas":3,` +
				`"currentRevision":"web-a","updateRevision":"web-b",` +
				`"kstatus":{"status":"InProgress","message":"updated: 1/3"},` +
				`"argocd":{"status":"Progressing","message":"Waiting for partitioned roll out to finish: 1 out of 3 new pods have been updated..."}}`,
		},
		"a Deployment with an old replica still to go": {
			obj: &appsv1.Deployment{
				ObjectMeta: metav1.ObjectMeta{Name: "api", Generation: 3, ResourceVersion: "7"},
				Spec:       appsv1.DeploymentSpec{Replicas: ptr.To[int32](2)},
				Status: appsv1.DeploymentStatus{ObservedGeneration: 3,
					Replicas: 3, ReadyReplicas: 3, UpdatedReplicas: 2, AvailableReplicas: 3},
			},
			want: `{"time":"2026-01-02T03:04:05.000000006Z","resourceVersion":"7","generation":3,"observedGeneration":3,` +
				`"replicas":2,"statusReplicas":3,"readyReplicas":3,"updatedReplicas":2,"availableReplicas":3,` +
				`"currentRevision":"","updateRevision":"",` +
				`"kstatus":{"status":"InProgress","message":"Pending termination: 1"},` +
				`"argocd":{"status":"Progressing","message":"Waiting for rollout to finish: 1 old replicas are pending termination..."}}`,
		},
		"a DaemonSet rolled out on two nodes": {
			obj: &appsv1.DaemonSet{
				ObjectMeta: metav1.ObjectMeta{Name: "agent", Generation: 1, ResourceVersion: "9"},
				Status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 2,
					CurrentNumberScheduled: 2, NumberReady: 2, UpdatedNumberScheduled: 2, NumberAvailable: 2},
			},
			want: `{"time":"2026-01-02T03:04:05.000000006Z","resourceVersion":"9","generation":1,"observedGeneration":1,` +
				`"replicas":2,"statusReplicas":2,"readyReplicas":2,"updatedReplicas":2,"availableReplicas":2,` +
				`"currentRevision":"","updateRevision":"",` +
				`"kstatus":{"status":"Current","message":"All replicas scheduled as expected. Replicas: 2"},` +
				`"argocd":{"status":"Healthy","message":""}}`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			r, err := Observe(tc.obj, at)
			if err != nil {
				t.Fatal(err)
			}
			var got bytes.Buffer
			if err := jsonEncoder(&got).Encode(r); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want+"\n", got.String()); diff != "" {
				t.Errorf("line (-want,+got):\n%s", diff)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string // in the message on stderr
	}{
		"no namespace":    {[]string{"sts/web"}, "-n NAMESPACE is required"},
		"no target":       {[]string{"-n", "ns"}, "KIND/NAME: want one, got 0"},
		"an unknown kind": {[]string{"-n", "ns", "pod/web"}, `unknown kind "pod"`},
		"no name":         {[]string{"-n", "ns", "sts/"}, `"sts/" is not KIND/NAME`},
		"a bad timeout":   {[]string{"-n", "ns", "--timeout", "soon", "sts/web"}, "-timeout"},
		"an unknown flag": {[]string{"-n", "ns", "--wait", "sts/web"}, "-wait"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != 2 {
				t.Errorf("exit status %d, want 2", code)
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr %q does not name %q", stderr.String(), tc.want)
			}
		})
	}
	for _, s := range []string{"sts/web", "StatefulSet/web", "statefulsets/web"} {
		if kind, name, err := parseTarget(s); kind != "statefulset" || name != "web" || err != nil {
			t.Errorf("parseTarget(%q) = %q, %q, %v; want statefulset, web", s, kind, name, err)
		}
	}
}

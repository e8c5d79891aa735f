//go:build e2e

package e2e

import (
	"testing"
)

// In-place rollouts of DaemonSets on a real kubelet, one pod per node: the
// DaemonSet controller's deletes of old pods are refused and the pods
// relabelled to the new revision in place, node by node within
// maxUnavailable.

// TestDaemonSetInPlace rolls a DaemonSet to v2 with maxUnavailable 1 and
// then 2, in place (same pods, restart count up by one, no pod created or
// deleted), with at most maxUnavailable pods out of Ready at once, watched
// by the real kubectl rollout status, kstatus and Argo CD.
func TestDaemonSetInPlace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		maxUnavailable string
		want           int
	}{
		{name: "maxUnavailable 1", maxUnavailable: "1", want: 1},
		{name: "maxUnavailable 2", maxUnavailable: "2", want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := newNamespace(t, optedIn)
			ds := newDaemonSet("agent", ns, images.V1, withDaemonSetRollingUpdate("0", tc.maxUnavailable))
			create(t, ds)
			waitForDaemonSetComplete(t, ds)
			before := observeWorkload(t, ds)
			logPods(t, "before", before)
			if nodes := readyNodes(t); len(before) != nodes {
				t.Fatalf("%d pods on %d Ready nodes", len(before), nodes)
			}

			c := watchChurn(t, ns)
			r := watchReadiness(t, ns)
			setTemplateImage(t, ds, appContainer, images.V2)
			w := watchRolloutTo(t, ds, images.V2, before)
			w.finish(t)
			waitForDaemonSetComplete(t, ds)
			after := observeWorkload(t, ds)
			logPods(t, "after", after)
			wantInPlaceByName(t, before, after, images.V2, 1)
			wantNoChurn(t, c)
			spans := r.stop()
			t.Logf("not-Ready spans: %v", spans)
			if most := mostAtOnce(spans); most > tc.want {
				t.Errorf("%d pods out of Ready at once, maxUnavailable is %d", most, tc.want)
			}
		})
	}
}

// TestDaemonSetSurgeRollsNatively: a DaemonSet that surges (maxSurge 1)
// asked for each node's new pod to start beside the old one: its rollout is
// native, every pod replaced.
func TestDaemonSetSurgeRollsNatively(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, optedIn)
	ds := newDaemonSet("surge", ns, images.V1, withDaemonSetRollingUpdate("1", "0"))
	create(t, ds)
	waitForDaemonSetComplete(t, ds)
	before := observeWorkload(t, ds)
	setTemplateImage(t, ds, appContainer, images.V2)
	waitForDaemonSetComplete(t, ds)
	for _, a := range observeWorkload(t, ds) {
		for _, b := range before {
			if a.UID == b.UID {
				t.Errorf("pod %s kept: a surging DaemonSet rolls out natively", a.Name)
			}
		}
	}
}

// mostAtOnce is the largest number of spans that overlap.
func mostAtOnce(spans []readinessSpan) int {
	most := 0
	for _, s := range spans {
		n := 0
		for _, o := range spans {
			if !o.from.After(s.from) && o.to.After(s.from) {
				n++
			}
		}
		most = max(most, n)
	}
	return most
}

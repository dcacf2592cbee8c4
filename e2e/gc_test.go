package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// gcChain builds, with kubectl, what a Deployment controller would make
// (none runs yet): Deployment web, ReplicaSet web-1 owned by it and three
// unscheduled pods owned by the ReplicaSet, every reference blocking its
// owner's deletion, as the controllers set them. extraPods are more pod
// names owned by the ReplicaSet, each held by the finalizer example.com/hold.
func gcChain(t *testing.T, k *kubectlRunner, ns string, extraPods ...string) {
	t.Helper()
	must := func(args ...string) string {
		t.Helper()
		out, errOut, code := k.run(t, args...)
		if code != 0 {
			t.Fatalf("kubectl %s: exit code %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	must("create", "namespace", ns)
	must("-n", ns, "create", "deployment", "web", "--image=busybox", "--replicas=3")
	uid := must("-n", ns, "get", "deployment", "web", "-o", "jsonpath={.metadata.uid}")
	dir := t.TempDir()
	rs := filepath.Join(dir, "rs.yaml")
	writeFile(t, rs, fmt.Sprintf(`apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-1
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: web, uid: %q, controller: true, blockOwnerDeletion: true}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: busybox}]}
`, uid))
	must("-n", ns, "create", "-f", rs)
	rsUID := must("-n", ns, "get", "replicaset", "web-1", "-o", "jsonpath={.metadata.uid}")
	var pods strings.Builder
	pod := func(name, finalizers string) {
		fmt.Fprintf(&pods, `---
apiVersion: v1
kind: Pod
metadata:
  name: %s
  labels: {app: web}
  finalizers: [%s]
  ownerReferences:
  - {apiVersion: apps/v1, kind: ReplicaSet, name: web-1, uid: %q, controller: true, blockOwnerDeletion: true}
spec: {containers: [{name: c, image: busybox}]}
`, name, finalizers, rsUID)
	}
	for i := range 3 {
		pod(fmt.Sprintf("web-1-%d", i), "")
	}
	for _, name := range extraPods {
		pod(name, "example.com/hold")
	}
	path := filepath.Join(dir, "pods.yaml")
	writeFile(t, path, pods.String())
	must("-n", ns, "create", "-f", path)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// gcLeft returns the deployments, replicasets and pods in ns, as kubectl's
// -o name lines, sorted.
func gcLeft(t *testing.T, k *kubectlRunner, ns string) ([]string, error) {
	out, errOut, code := k.run(t, "-n", ns, "get", "deployments,replicasets,pods", "-o", "name")
	if code != 0 {
		return nil, fmt.Errorf("kubectl get: exit code %d: %s", code, errOut)
	}
	lines := strings.Fields(out)
	slices.Sort(lines)
	return lines, nil
}

func waitLeft(t *testing.T, k *kubectlRunner, ns string, want ...string) {
	t.Helper()
	slices.Sort(want)
	waitUntil(t, 30*time.Second, fmt.Sprintf("%v left in %s", want, ns), func(context.Context) error {
		got, err := gcLeft(t, k, ns)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
}

var chainPods = []string{"pod/web-1-0", "pod/web-1-1", "pod/web-1-2"}

// TestGarbageCollectorKubectl deletes deployments with each of kubectl's
// cascade modes through a follower of three masters, the garbage collector
// running on the leader: background leaves nothing behind; foreground
// returns once everything is gone; orphan leaves the replicaset and pods,
// the replicaset without owner. Then the leader master is killed in the
// middle of a foreground delete, and the new leader finishes it.
func TestGarbageCollectorKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	follower := (leader + 1) % len(ms.nodes)
	k := newKubectlRunner(t, ms.waitAPI(t, follower))
	t.Logf("kubectl → %s (follower; %s leads)", ms.nodes[follower].name, ms.nodes[leader].name)
	for _, ns := range []string{"bg", "fg", "orphan", "lk"} {
		var extra []string
		if ns == "lk" {
			extra = []string{"stuck"}
		}
		gcChain(t, k, ns, extra...)
	}

	k.runScript(t, []kstep{
		{args: []string{"-n", "bg", "delete", "deploy", "web"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
		{do: func(t *testing.T) { waitLeft(t, k, "bg") }},

		// kubectl waits for the deployment to go, which it does after its dependents.
		{args: []string{"-n", "fg", "delete", "deploy", "web", "--cascade=foreground"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
		{args: []string{"-n", "fg", "get", "deployments,replicasets,pods", "-o", "name"}, out: []string{"^$"}}, // several kinds: nothing found prints nothing

		{args: []string{"-n", "orphan", "delete", "deploy", "web", "--cascade=orphan"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
		{args: []string{"-n", "orphan", "get", "deployments,replicasets,pods", "-o", "name"}, out: []string{"^replicaset.apps/web-1\n" + strings.Join(chainPods, "\n") + "\n$"}},
		{args: []string{"-n", "orphan", "get", "replicaset", "web-1", "-o", "jsonpath={.metadata.ownerReferences}"}, out: []string{"^$"}},
		{args: []string{"-n", "orphan", "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name} {end}"}, out: []string{"^web-1 web-1 web-1 $"}},
	})

	// A pod held by a finalizer holds up the foreground delete: the
	// collector on the leader deletes the other pods, then waits.
	k.runScript(t, []kstep{
		{args: []string{"-n", "lk", "delete", "deploy", "web", "--cascade=foreground", "--wait=false"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
	})
	waitLeft(t, k, "lk", "deployment.apps/web", "replicaset.apps/web-1", "pod/stuck")
	k.runScript(t, []kstep{
		{args: []string{"-n", "lk", "get", "replicaset", "web-1", "-o", "jsonpath={.metadata.finalizers}"}, out: []string{`^\["foregroundDeletion"\]$`}},
	})
	ms.kill(t, leader)
	t.Logf("killed %s, the leader, in the middle of the foreground delete", ms.nodes[leader].name)
	k.runScript(t, []kstep{
		{args: []string{"-n", "lk", "patch", "pod", "stuck", "--type=json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`}, out: []string{"^pod/stuck patched\n$"}},
		{args: []string{"-n", "lk", "wait", "--for=delete", "deployment/web", "--timeout=30s"}, out: []string{`^(deployment.apps/web condition met\n)?$`}},
		{args: []string{"-n", "lk", "get", "deployments,replicasets,pods", "-o", "name"}, out: []string{"^$"}}, // several kinds: nothing found prints nothing
	})
}

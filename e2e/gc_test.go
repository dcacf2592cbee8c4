package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// gcChain makes, with kubectl, a Deployment web of three replicas in a new
// namespace ns and waits for the leader's controllers to give it its
// ReplicaSet and three (unscheduled) pods, every reference blocking its
// owner's deletion. It returns the ReplicaSet's name and the pods'.
func gcChain(t *testing.T, k *kubectlRunner, ns string) (rs string, pods []string) {
	t.Helper()
	k.mustRun(t, "create", "namespace", ns)
	k.mustRun(t, "-n", ns, "create", "deployment", "web", "--image=busybox", "--replicas=3")
	waitUntil(t, 30*time.Second, "the deployment's replicaset and pods in "+ns, func(context.Context) error {
		rss := strings.Fields(k.mustRun(t, "-n", ns, "get", "replicasets", "-o", "jsonpath={.items[*].metadata.name}"))
		owners := strings.Fields(k.mustRun(t, "-n", ns, "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name} {end}"))
		if len(rss) != 1 || len(owners) != 3 || owners[0] != rss[0] || owners[1] != rss[0] || owners[2] != rss[0] {
			return fmt.Errorf("replicasets %v, pods owned by %v", rss, owners)
		}
		rs = rss[0]
		return nil
	})
	pods = strings.Fields(k.mustRun(t, "-n", ns, "get", "pods", "-o", "jsonpath={.items[*].metadata.name}"))
	return rs, pods
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
	chains := map[string][]string{} // namespace → the replicaset's and the pods' kubectl names
	for _, ns := range []string{"bg", "fg", "orphan", "lk"} {
		rs, pods := gcChain(t, k, ns)
		chains[ns] = []string{"replicaset.apps/" + rs}
		for _, p := range pods {
			chains[ns] = append(chains[ns], "pod/"+p)
		}
	}
	orphanRS := strings.TrimPrefix(chains["orphan"][0], "replicaset.apps/")
	lkRS := strings.TrimPrefix(chains["lk"][0], "replicaset.apps/")
	// A pod held by a finalizer will hold up lk's foreground delete.
	stuck := strings.TrimPrefix(chains["lk"][1], "pod/")
	k.mustRun(t, "-n", "lk", "patch", "pod", stuck, "--type=merge", "-p", `{"metadata":{"finalizers":["example.com/hold"]}}`)

	k.runScript(t, []kstep{
		{args: []string{"-n", "bg", "delete", "deploy", "web"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
		{do: func(t *testing.T) { waitLeft(t, k, "bg") }},

		// kubectl waits for the deployment to go, which it does after its dependents.
		{args: []string{"-n", "fg", "delete", "deploy", "web", "--cascade=foreground"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
		{args: []string{"-n", "fg", "get", "deployments,replicasets,pods", "-o", "name"}, out: []string{"^$"}}, // several kinds: nothing found prints nothing

		{args: []string{"-n", "orphan", "delete", "deploy", "web", "--cascade=orphan"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
		{do: func(t *testing.T) { waitLeft(t, k, "orphan", chains["orphan"]...) }},
		{args: []string{"-n", "orphan", "get", "replicaset", orphanRS, "-o", "jsonpath={.metadata.ownerReferences}"}, out: []string{"^$"}},
		{args: []string{"-n", "orphan", "get", "pods", "-o", "jsonpath={range .items[*]}{.metadata.ownerReferences[0].name} {end}"}, out: []string{"^" + strings.Repeat(orphanRS+" ", 3) + "$"}},
	})

	// A pod held by a finalizer holds up the foreground delete: the
	// collector on the leader deletes the other pods, then waits.
	k.runScript(t, []kstep{
		{args: []string{"-n", "lk", "delete", "deploy", "web", "--cascade=foreground", "--wait=false"}, out: []string{`^deployment.apps "web" deleted` + "\n$"}},
	})
	waitLeft(t, k, "lk", "deployment.apps/web", "replicaset.apps/"+lkRS, "pod/"+stuck)
	k.runScript(t, []kstep{
		{args: []string{"-n", "lk", "get", "replicaset", lkRS, "-o", "jsonpath={.metadata.finalizers}"}, out: []string{`^\["foregroundDeletion"\]$`}},
	})
	ms.kill(t, leader)
	t.Logf("killed %s, the leader, in the middle of the foreground delete", ms.nodes[leader].name)
	k.runScript(t, []kstep{
		{args: []string{"-n", "lk", "patch", "pod", stuck, "--type=json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`}, out: []string{"^pod/" + stuck + " patched\n$"}},
		{args: []string{"-n", "lk", "wait", "--for=delete", "deployment/web", "--timeout=30s"}, out: []string{`^(deployment.apps/web condition met\n)?$`}},
		{args: []string{"-n", "lk", "get", "deployments,replicasets,pods", "-o", "name"}, out: []string{"^$"}}, // several kinds: nothing found prints nothing
	})
}

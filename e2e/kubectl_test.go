package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kubectl runs the real kubectl against one master with its admin kubeconfig,
// with HOME and the discovery cache in temp dirs.
func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// adminKubeconfig waits until master i has written its admin kubeconfig.
func (ms *masters) adminKubeconfig(t *testing.T, i int) string {
	t.Helper()
	path := filepath.Join(ms.nodes[i].dataDir, "admin.kubeconfig")
	waitUntil(t, 30*time.Second, fmt.Sprintf("%s's admin kubeconfig", ms.nodes[i].name), func(context.Context) error {
		_, err := os.Stat(path)
		return err
	})
	return path
}

// waitAPI waits until master i's API answers through its admin kubeconfig
// (which a restart rewrites: the tests give the API an ephemeral port).
func (ms *masters) waitAPI(t *testing.T, i int) string {
	t.Helper()
	path := ms.adminKubeconfig(t, i)
	waitUntil(t, 30*time.Second, fmt.Sprintf("%s's API", ms.nodes[i].name), func(context.Context) error {
		if out, err := kubectl(t, path, "get", "--raw", "/readyz"); err != nil || out != "ok\n" {
			return fmt.Errorf("readyz: %q, %v", out, err)
		}
		return nil
	})
	return path
}

// TestKubectlAgainstEveryMaster drives three real masters with the real
// kubectl: every master serves the API with certificates of one shared
// cluster CA, a write through a follower is visible to the next read on every
// master, and a write through any master conflicts correctly.
func TestKubectlAgainstEveryMaster(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	var kcs []string
	for i := range ms.nodes {
		kcs = append(kcs, ms.adminKubeconfig(t, i))
	}
	defer func() {
		if t.Failed() {
			ms.dumpLogs(t, 40)
		}
	}()

	for i := range ms.nodes {
		ns := fmt.Sprintf("e2e-%d", i)
		role := "follower"
		if i == leader {
			role = "leader"
		}
		if out, err := kubectl(t, kcs[i], "create", "namespace", ns); err != nil {
			t.Fatalf("kubectl create namespace through %s (%s): %v\n%s", ms.nodes[i].name, role, err, out)
		}
		if out, err := kubectl(t, kcs[i], "-n", ns, "create", "configmap", "c", "--from-literal=from="+ms.nodes[i].name); err != nil {
			t.Fatalf("kubectl create configmap through %s (%s): %v\n%s", ms.nodes[i].name, role, err, out)
		}
		// The next default read on every master sees the write.
		for j := range ms.nodes {
			out, err := kubectl(t, kcs[j], "-n", ns, "get", "configmap", "c", "-o", "jsonpath={.data.from}")
			if err != nil || out != ms.nodes[i].name {
				t.Fatalf("configmap written through %s, read through %s = %q, %v; want %q", ms.nodes[i].name, ms.nodes[j].name, out, err, ms.nodes[i].name)
			}
		}
	}

	// One CA: the admin credentials of the first master work on the others.
	for i := 1; i < len(ms.nodes); i++ {
		server := readKubeconfigServer(t, kcs[i])
		out, err := kubectl(t, kcs[0], "--server", server, "get", "namespace", "e2e-0", "-o", "name")
		if err != nil || out != "namespace/e2e-0\n" {
			t.Fatalf("m1's kubeconfig against %s = %q, %v; want namespace/e2e-0", server, out, err)
		}
	}

	// A replace with a stale object is refused with 409 whichever master takes it.
	stale, err := kubectl(t, kcs[0], "-n", "e2e-0", "get", "configmap", "c", "-o", "yaml")
	if err != nil {
		t.Fatalf("kubectl get -o yaml: %v\n%s", err, stale)
	}
	if out, err := kubectl(t, kcs[1], "-n", "e2e-0", "label", "configmap", "c", "touched=yes"); err != nil {
		t.Fatalf("kubectl label: %v\n%s", err, out)
	}
	staleFile := filepath.Join(t.TempDir(), "stale.yaml")
	if err := os.WriteFile(staleFile, []byte(stale), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := kubectl(t, kcs[2], "replace", "-f", staleFile)
	if err == nil || !strings.Contains(out, "the object has been modified; please apply your changes to the latest version and try again") {
		t.Fatalf("kubectl replace of a stale object = %v:\n%s\nwant a 409 conflict", err, out)
	}

	// The leader's clusterrole-aggregation-controller gives an aggregated
	// cluster role, made through a follower, the rules of the roles
	// labeled for it.
	follower := kcs[(leader+1)%len(kcs)]
	for _, args := range [][]string{
		{"create", "clusterrole", "monitoring", "--aggregation-rule=rbac.example.com/aggregate-to-monitoring=true"},
		{"create", "clusterrole", "pods-reader", "--verb=get,list", "--resource=pods"},
		{"label", "clusterrole", "pods-reader", "rbac.example.com/aggregate-to-monitoring=true"},
	} {
		if out, err := kubectl(t, follower, args...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	waitUntil(t, 30*time.Second, "the aggregated cluster role's rules", func(context.Context) error {
		out, err := kubectl(t, follower, "get", "clusterrole", "monitoring", "-o", "jsonpath={.rules[*].resources} {.rules[*].verbs}")
		if err != nil || out != `["pods"] ["get","list"]` {
			return fmt.Errorf("rules %q, %v", out, err)
		}
		return nil
	})
}

// readKubeconfigServer returns the server URL of a kubeconfig.
func readKubeconfigServer(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "server: "); ok {
			return s
		}
	}
	t.Fatalf("no server in %s", path)
	return ""
}

// TestKubectlThroughLeaderKill points kubectl at a follower and keeps using
// it while the leader master is killed with SIGKILL and restarted: every
// command succeeds without a manual step (the follower forwards writes to
// whichever master leads, waiting for the election), and the restarted
// master serves the API again with everything written meanwhile.
func TestKubectlThroughLeaderKill(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	ms := startMasters(t, 3)
	defer func() {
		if t.Failed() {
			ms.dumpLogs(t, 40)
		}
	}()
	for round := 1; round <= 2; round++ {
		leader := ms.waitLeader(t)
		follower := (leader + 1) % len(ms.nodes)
		kc := ms.adminKubeconfig(t, follower)
		ns := fmt.Sprintf("kill-%d", round)
		if out, err := kubectl(t, kc, "create", "namespace", ns); err != nil {
			t.Fatalf("round %d: kubectl create namespace: %v\n%s", round, err, out)
		}

		ms.kill(t, leader)
		// Straight after the kill, before a new leader exists.
		for i := range 3 {
			if out, err := kubectl(t, kc, "-n", ns, "create", "configmap", fmt.Sprintf("c%d", i), "--from-literal=i="+fmt.Sprint(i)); err != nil {
				t.Fatalf("round %d: kubectl create configmap through %s after killing %s: %v\n%s", round, ms.nodes[follower].name, ms.nodes[leader].name, err, out)
			}
		}
		if out, err := kubectl(t, kc, "-n", ns, "get", "configmaps", "--field-selector", "metadata.name!=kube-root-ca.crt", "-o", "name"); err != nil || out != "configmap/c0\nconfigmap/c1\nconfigmap/c2\n" {
			t.Fatalf("round %d: kubectl get configmaps = %q, %v; want c0, c1, c2", round, out, err)
		}

		ms.restart(t, leader)
		ms.waitCaughtUp(t, leader)
		restarted := ms.waitAPI(t, leader)
		if out, err := kubectl(t, restarted, "-n", ns, "get", "configmap", "c2", "-o", "jsonpath={.data.i}"); err != nil || out != "2" {
			t.Fatalf("round %d: restarted %s serves c2 = %q, %v; want 2", round, ms.nodes[leader].name, out, err)
		}
	}
}

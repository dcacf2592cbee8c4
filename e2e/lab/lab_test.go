package lab

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/agent/imagebuild"
	"github.com/skiff-sh/skiff/agent/runctest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	RemoveSkiffBinary()
	os.Exit(code)
}

// TestLab brings up one master and two workers and checks each piece a
// scenario relies on: the API through the kubeconfig, every process in its
// host's namespace, each worker's containerd, connectivity between hosts
// and to the bridge, cutting a host off and back, the registry's images
// seen from a worker; then Down must leave nothing behind.
func TestLab(t *testing.T) {
	l := Start(t, Config{Masters: 1, Workers: 2, Logger: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	ctx := t.Context()

	out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", l.Kubeconfig(), "get", "--raw", "/readyz").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("kubectl get --raw /readyz: got %q (%v), want ok", out, err)
	}
	if kc, _ := os.ReadFile(l.Kubeconfig()); !bytes.Contains(kc, []byte("https://"+l.Master(0).APIAddr)) {
		t.Errorf("kubeconfig: got %s, want the server https://%s", kc, l.Master(0).APIAddr)
	}

	// Every process runs in its host's network namespace.
	for name, h := range map[string]*Host{"m0": l.Master(0), "w0-containerd": l.Worker(0), "w1-containerd": l.Worker(1)} {
		pid := l.procs[name].cmd.Process.Pid
		got, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(h.NetNSPath, &st); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("net:[%d]", st.Ino); got != want {
			t.Errorf("%s (pid %d): got network namespace %s, want %s of %s", name, pid, got, want, h.NetNS)
		}
	}
	for _, w := range l.Workers() {
		out, err := l.Exec(ctx, w, "ctr", "-a", w.ContainerdSocket, "version")
		if err != nil || !strings.Contains(out, "Server:") {
			t.Errorf("%s: ctr version: got %q (%v), want the server's version", w.Name, out, err)
		}
	}

	// Every host reaches every other host and the bridge.
	targets := []string{l.BridgeIP().String()}
	for _, h := range l.hosts() {
		targets = append(targets, h.IP.String())
	}
	for _, h := range l.hosts() {
		for _, ip := range targets {
			if _, err := l.Exec(ctx, h, "busybox", "ping", "-c1", "-W2", ip); err != nil {
				t.Errorf("%s: ping %s: %v", h.Name, ip, err)
			}
		}
	}

	// A cut host is unreachable until restored.
	w0, w1 := l.Worker(0), l.Worker(1)
	if err := l.CutLinks(w1); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Exec(ctx, w0, "busybox", "ping", "-c1", "-W1", w1.IP.String()); err == nil {
		t.Errorf("ping %s from %s with its links cut: got %q, want a failure", w1.Name, w0.Name, out)
	}
	if err := l.RestoreLinks(w1); err != nil {
		t.Fatal(err)
	}
	poll(t, 10*time.Second, "w1 reachable after RestoreLinks", func() error {
		_, err := l.Exec(ctx, w0, "busybox", "ping", "-c1", "-W1", w1.IP.String())
		return err
	})
	if err := l.Partition(w0, w1); err != nil {
		t.Fatal(err)
	}
	if out, err := l.Exec(ctx, w0, "busybox", "ping", "-c1", "-W1", w1.IP.String()); err == nil {
		t.Errorf("ping %s from %s partitioned: got %q, want a failure", w1.Name, w0.Name, out)
	}
	if _, err := l.Exec(ctx, w0, "busybox", "ping", "-c1", "-W2", l.Master(0).IP.String()); err != nil {
		t.Errorf("partition of w0 and w1 also cut w0 from m0: %v", err)
	}
	if err := l.Heal(w0, w1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Exec(ctx, w0, "busybox", "ping", "-c1", "-W2", w1.IP.String()); err != nil {
		t.Errorf("ping after Heal: %v", err)
	}

	// The registry serves the test images to the workers.
	imgs := l.Images()
	bb, err := imagebuild.Busybox(imgs.Busybox)
	if err != nil {
		t.Fatal(err)
	}
	wantBB, _ := imagebuild.ManifestDigest(bb)
	for _, img := range []struct{ repo, want string }{{"skiff/busybox", wantBB}, {"skiff/echoserver", ""}} {
		url := "http://" + l.Registry() + "/v2/" + img.repo + "/manifests/1"
		out, err := l.Exec(ctx, w1, "curl", "-fsSI", "-H", "Accept: application/vnd.oci.image.manifest.v1+json", url)
		if err != nil {
			t.Errorf("from %s: %v", w1.Name, err)
			continue
		}
		if !strings.Contains(out, "Docker-Content-Digest: "+img.want) {
			t.Errorf("HEAD %s from %s: got %q, want Docker-Content-Digest %s", url, w1.Name, out, img.want)
		}
	}
	if fi, err := os.Stat(imgs.Archive); err != nil || fi.Size() == 0 {
		t.Errorf("image archive %s: %v", imgs.Archive, err)
	}

	// A join token for the agents, and the agent's command line.
	tok, err := l.JoinToken(ctx)
	if err != nil {
		t.Fatal(err)
	}
	args, err := l.AgentCommand(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{l.cfg.SkiffBin, "agent", "--join", l.Master(0).IP.String() + ":7946", "--token", tok,
		"--node-name", "w1", "--node-ip", w1.IP.String(), "--data-dir", w1.AgentDataDir, "--run-dir", w1.AgentRunDir,
		"--containerd-socket", w1.ContainerdSocket, "--gossip-addr", w1.IP.String() + ":7946", "--listen", w1.IP.String() + ":10250", "--insecure-registries", l.Registry()}
	if strings.Join(args, " ") != strings.Join(want, " ") {
		t.Errorf("agent command:\ngot  %q\nwant %q", args, want)
	}

	// A killed master comes back on its data dir.
	if err := l.KillMaster(0); err != nil {
		t.Fatal(err)
	}
	if err := httpGet(ctx, http.DefaultClient, "http://"+l.Master(0).StatusAddr+"/readyz"); err == nil {
		t.Errorf("/readyz of a killed master: got 200, want an error")
	}
	if err := l.StartMaster(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.CommandContext(ctx, "kubectl", "--kubeconfig", l.Kubeconfig(), "get", "ns", "default", "-o", "name").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "namespace/default" {
		t.Errorf("kubectl after the master's restart: got %q (%v), want namespace/default", out, err)
	}

	// Down removes everything, and again is a no-op.
	if err := l.Down(); err != nil {
		t.Fatalf("down: %v", err)
	}
	assertGone(t, l.ID(), l.Dir(), nil)
	if err := l.Down(); err != nil {
		t.Errorf("second down: %v", err)
	}
}

// TestCleanupAfterCrash abandons a lab with a running container, as if the
// process that ran Up had crashed, and checks that Cleanup(dir) removes it
// all from the state file: the container and its shim, containerd, its
// mounts, namespaces, links and rules.
func TestCleanupAfterCrash(t *testing.T) {
	if why := Requirements(); why != "" {
		t.Skip(why)
	}
	dir, err := os.MkdirTemp("", "skl-")
	if err != nil {
		t.Fatal(err)
	}
	// Last: the ctr namespace's directories, shared by every containerd on
	// the host (runc's state root and the cgroup hierarchies).
	t.Cleanup(func() { os.RemoveAll(dir); runctest.RemoveNamespace("labtest") })
	l, err := Up(t.Context(), Config{Workers: 1, Dir: dir, NoImages: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Down() }) // in case the test fails before Cleanup
	w := l.Worker(0)

	bb, err := imagebuild.Busybox("skiff.test/lab/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "bb.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := imagebuild.WriteOCIArchive(f, bb); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctrErr := func(args ...string) (string, error) {
		return l.Exec(t.Context(), w, "ctr", append([]string{"-a", w.ContainerdSocket, "-n", "labtest"}, args...)...)
	}
	ctr := func(args ...string) string {
		t.Helper()
		out, err := ctrErr(args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ctr("images", "import", archive)
	// On a loaded machine containerd has been seen to start a task's shim
	// twice, the second failing with "container with given ID already
	// exists" (CI, while the e2e package ran beside this one): that is
	// not what this test is about, so another ID is tried.
	var id string
	for attempt := 1; ; attempt++ {
		id = fmt.Sprintf("sleeper-%d", attempt)
		// Its FIFOs in the lab's directory, which the cleanup removes, not
		// in ctr's default /run/containerd/fifo, where they would stay.
		_, err := ctrErr("run", "-d", "--fifo-dir", filepath.Join(l.Dir(), "fifo"), "skiff.test/lab/busybox:1", id, "sleep", "1000")
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("starting the container, attempt %d: %v", attempt, err)
	}
	var pid int
	for _, line := range strings.Split(ctr("tasks", "ls"), "\n") {
		if f := strings.Fields(line); len(f) >= 3 && f[0] == id && f[2] == "RUNNING" {
			pid, _ = strconv.Atoi(f[1])
		}
	}
	if pid == 0 {
		t.Fatalf("ctr tasks ls: no running sleeper")
	}
	if len(mountsUnder(l.Dir())) == 0 {
		t.Fatalf("no mounts under %s with a running container, want its rootfs", l.Dir())
	}

	if err := Cleanup(dir); err != nil {
		t.Fatalf("cleanup: %v", err)
	}
	start, err := startTime(pid)
	if err != nil {
		t.Fatalf("the container process %d: %v", pid, err)
	}
	// (taken before the cleanup: after it the pid may be another's)
	assertGone(t, l.ID(), l.Dir(), map[int]uint64{pid: start})
	// runc's record of the killed container, outside dir, goes too.
	if left := runctest.StatesUnder(dir); len(left) > 0 {
		t.Errorf("runc state of the containers left after cleanup: %v", left)
	}
	if err := Cleanup(dir); err != nil {
		t.Errorf("second cleanup: %v", err)
	}
}

// assertGone fails t if anything of lab id is left: namespaces, links,
// iptables rules, mounts or processes mentioning dir, the given processes
// (pid → start time), dir.
func assertGone(t *testing.T, id, dir string, pids map[int]uint64) {
	t.Helper()
	prefix := "sk" + id
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), prefix) {
		t.Errorf("ip netns list after down: got %q, want no %s namespace", out, prefix)
	}
	if out, _ := exec.Command("ip", "-o", "link").Output(); strings.Contains(string(out), prefix) {
		t.Errorf("ip link after down: got links named %s*:\n%s", prefix, out)
	}
	if out, _ := exec.Command("iptables", "-w", "-S", "FORWARD").Output(); strings.Contains(string(out), "skiff lab "+id) {
		t.Errorf("iptables -S FORWARD after down: got %q, want no rule of lab %s", out, id)
	}
	if m := mountsUnder(dir); len(m) > 0 {
		t.Errorf("mounts under %s after down: %v", dir, m)
	}
	for pid, p := range allProcs() {
		if strings.Contains(strings.Join(p.args, " "), dir) {
			t.Errorf("process %d still running after down: %q", pid, p.args)
		}
	}
	for pid, start := range pids {
		if !waitGone(pid, start, 0) {
			t.Errorf("container process %d still running after down", pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s after down: got %v, want it removed", dir, err)
	}
}

// poll calls cond until it returns nil or timeout passes.
func poll(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(100 * time.Millisecond) // polling, not before an assertion
	}
}

// tlog sends log lines to t.Log.
type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestCleanupStale checks that CleanupStale leaves a lab whose owner runs
// alone and removes it once its state file names an owner that is gone.
func TestCleanupStale(t *testing.T) {
	if why := Requirements(); why != "" {
		t.Skip(why)
	}
	dir, err := os.MkdirTemp("", "skl-stale-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, err := Up(t.Context(), Config{Workers: 1, Dir: dir, NoImages: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Down() })

	if err := CleanupStale(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(statePath(dir)); err != nil {
		t.Fatalf("CleanupStale removed a lab whose owner runs: %v", err)
	}

	// A process that has exited stands for the crashed owner.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	if err := l.record(func(s *state) { s.Owner = pstate{Pid: gone.Process.Pid, Start: 1} }); err != nil {
		t.Fatal(err)
	}
	if err := CleanupStale(dir); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l.ID(), l.Dir(), nil)
}

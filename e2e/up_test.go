package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/agent/runctest"
)

// TestUpDemo is `make run` and the README's quick start: `skiff up` on a
// fresh machine (here: a fresh network namespace and fresh directories),
// then `kubectl create deployment web --image=skiff.local/demo:1
// --replicas=3` and `kubectl expose`: three Running pods serving the demo
// page, `kubectl rollout status` succeeds; then a Job runs to completion
// (and one fails) in real containers, and a CronJob runs on its
// schedule.
// upNodeIP is the host's address in TestUpDemo's network namespace.
const upNodeIP = "192.0.2.50"

func TestUpDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace, containerd, CNI")
	}
	for _, bin := range []string{"/usr/bin/containerd", "/usr/lib/cni/bridge", "/bin/busybox", "/usr/sbin/ip"} {
		if _, err := os.Stat(bin); err != nil {
			t.Skipf("needs %s (make deps)", bin)
		}
	}
	bin := skiffBinary(t)
	dir, err := os.MkdirTemp("", "skup-")
	if err != nil {
		t.Fatal(err)
	}
	netns := fmt.Sprintf("skup%d", os.Getpid())
	// nsenter --net, not `ip netns exec`: that one also remounts /sys,
	// hiding the cgroup mounts runc needs.
	inNS := func(args ...string) *exec.Cmd {
		return exec.Command("nsenter", append([]string{"--net=/run/netns/" + netns, "--"}, args...)...)
	}
	if out, err := exec.Command("ip", "netns", "add", netns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	var up *exec.Cmd
	t.Cleanup(func() {
		if up != nil && up.Process != nil {
			syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
			up.Wait()
		}
		cleanupUnder(dir)
		if left := runctest.StatesUnder(dir); len(left) > 0 {
			t.Errorf("runc state of the containers left after cleanup: %v", left)
		}
		exec.Command("ip", "netns", "del", netns).Run()
		os.RemoveAll(dir)
	})
	if out, err := inNS("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	// The host's address, with the default route through it: the node's
	// InternalIP, which pods reach the API through.
	for _, args := range [][]string{
		{"ip", "link", "add", "host0", "type", "veth", "peer", "name", "host1"},
		{"ip", "addr", "add", upNodeIP + "/24", "dev", "host0"},
		{"ip", "link", "set", "host1", "up"},
		{"ip", "link", "set", "host0", "up"},
		{"ip", "route", "add", "default", "dev", "host0"},
	} {
		if out, err := inNS(args...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	dataDir, runDir := filepath.Join(dir, "data"), filepath.Join(dir, "run")
	// A file, not a buffer: the process writes it while the test reads it.
	outPath := filepath.Join(dir, "up.log")
	outFile, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer outFile.Close()
	output := logFile(outPath)
	up = inNS(bin, "up", "--data-dir", dataDir, "--run-dir", runDir)
	up.Stdout, up.Stderr = outFile, outFile
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(dataDir, "admin.kubeconfig")
	kubectlNS := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		home := t.TempDir()
		cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + netns, "--", "kubectl", "--kubeconfig", kc, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	waitFor := func(timeout time.Duration, what string, cond func() error) {
		t.Helper()
		deadline := time.Now().Add(timeout)
		var err error
		for time.Now().Before(deadline) {
			if err = cond(); err == nil {
				return
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Fatalf("%s: not within %v: %v\nskiff up output:\n%s", what, timeout, err, output.String())
	}
	waitFor(60*time.Second, "the node Ready", func() error {
		out, err := kubectlNS("get", "nodes", "-o", `jsonpath={.items[*].status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || out != "True" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	// A CronJob due every minute, created first: its first run is checked
	// last, so that the steps between pass the time.
	if out, err := kubectlNS("create", "cronjob", "tick", "--image=skiff.local/demo:1", "--schedule=* * * * *", "--", "sh", "-c", "echo tick"); err != nil {
		t.Fatalf("kubectl create cronjob: %v\n%s", err, out)
	}
	if !strings.Contains(output.String(), "kubectl create deployment web --image=skiff.local/demo:1") {
		t.Fatalf("skiff up did not print the quick start:\n%s", output.String())
	}
	for _, args := range [][]string{
		{"create", "deployment", "web", "--image=skiff.local/demo:1", "--replicas=3"},
		{"expose", "deployment", "web", "--port=80", "--target-port=8080"},
		{"rollout", "status", "deployment/web", "--timeout=90s"},
	} {
		if out, err := kubectlNS(args...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s\nskiff up output:\n%s", strings.Join(args, " "), err, out, output.String())
		}
	}
	out, err := kubectlNS("get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.status.phase} {.status.podIP}{"\n"}{end}`)
	if err != nil {
		t.Fatal(err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("pods: %q, want 3", out)
	}
	for _, l := range lines {
		phase, ip, _ := strings.Cut(l, " ")
		if phase != "Running" || ip == "" {
			t.Fatalf("pod %q, want Running with an IP", l)
		}
		page, err := inNS("busybox", "wget", "-q", "-O", "-", "http://"+ip+":8080/").CombinedOutput()
		if err != nil || !strings.Contains(string(page), "Hello from Skiff") {
			t.Fatalf("GET %s:8080: %q %v", ip, page, err)
		}
	}
	waitFor(30*time.Second, "the service's endpoints", func() error {
		out, err := kubectlNS("get", "endpoints", "web", "-o", "jsonpath={.subsets[*].addresses[*].ip}")
		if err != nil || len(strings.Fields(out)) != 3 {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	// The quick start's last steps: the Service by name, through cluster
	// DNS and the Service's virtual IP.
	waitFor(30*time.Second, "the demo page through the service's name", func() error {
		out, err := kubectlNS("exec", "deployment/web", "--", "wget", "-q", "-O", "-", "http://web/")
		if err != nil || !strings.Contains(out, "Hello from Skiff") {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})

	// In-cluster access: the kubernetes service leads to the node's
	// address, where the API listens too (busybox has no TLS client for
	// it: a connection is the proof; TestServicesInLab makes the calls).
	waitFor(30*time.Second, "the kubernetes service's endpoint", func() error {
		out, err := kubectlNS("-n", "default", "get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[*].addresses[*].ip}:{.subsets[*].ports[*].port}")
		if err != nil || out != upNodeIP+":6443" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	waitFor(30*time.Second, "a pod's connection to the API through 10.96.0.1:443", func() error {
		out, err := kubectlNS("exec", "deployment/web", "--", "sh", "-c", "nc -w 3 10.96.0.1 443 </dev/null")
		if err != nil {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	if out, err := kubectlNS("exec", "deployment/web", "--", "cat", "/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err != nil || out != "default" {
		t.Fatalf("the pod's mounted namespace: %q %v", out, err)
	}

	// Jobs, with real containers: one that succeeds, whose output kubectl
	// finds through the job, and one whose pod fails with no retry left.
	for _, args := range [][]string{
		{"create", "job", "hello", "--image=skiff.local/demo:1", "--", "sh", "-c", "echo hello from a job"},
		{"wait", "--for=condition=complete", "job/hello", "--timeout=90s"},
	} {
		if out, err := kubectlNS(args...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s\nskiff up output:\n%s", strings.Join(args, " "), err, out, output.String())
		}
	}
	if out, err := kubectlNS("logs", "job/hello"); err != nil || strings.TrimSpace(out) != "hello from a job" {
		t.Fatalf("kubectl logs job/hello: %q %v", out, err)
	}
	if out, err := kubectlNS("get", "job", "hello", "-o", "jsonpath={.status.succeeded} {.status.failed}"); err != nil || out != "1 " {
		t.Fatalf("job hello's succeeded and failed counts: %q %v", out, err)
	}
	failing := `{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"fails"},"spec":{"backoffLimit":0,"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"skiff.local/demo:1","command":["sh","-c","exit 3"]}]}}}}`
	jobFile := filepath.Join(dir, "fails.json")
	if err := os.WriteFile(jobFile, []byte(failing), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"apply", "-f", jobFile},
		{"wait", "--for=condition=failed", "job/fails", "--timeout=90s"},
	} {
		if out, err := kubectlNS(args...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := kubectlNS("get", "job", "fails", "-o", `jsonpath={.status.conditions[?(@.type=="Failed")].reason} {.status.failed}`); err != nil || out != "BackoffLimitExceeded 1" {
		t.Fatalf("job fails: %q %v", out, err)
	}
	// The CronJob: a job made from it by hand, then its own first run.
	for _, args := range [][]string{
		{"create", "job", "by-hand", "--from=cronjob/tick"},
		{"wait", "--for=condition=complete", "job/by-hand", "--timeout=90s"},
	} {
		if out, err := kubectlNS(args...); err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := kubectlNS("logs", "job/by-hand"); err != nil || strings.TrimSpace(out) != "tick" {
		t.Fatalf("kubectl logs job/by-hand: %q %v", out, err)
	}
	waitFor(90*time.Second, "the cronjob's first scheduled run to succeed", func() error {
		out, err := kubectlNS("get", "cronjob", "tick", "-o", "jsonpath={.status.lastScheduleTime} {.status.lastSuccessfulTime}")
		if f := strings.Fields(out); err != nil || len(f) != 2 {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	if out, err := kubectlNS("get", "cronjob", "tick"); err != nil || !regexp.MustCompile(`\ntick\s+\* \* \* \* \*\s+<none>\s+False\s+[01]\s+\d+s\s`).MatchString(out) {
		t.Fatalf("kubectl get cronjob tick: %q %v", out, err)
	}
	if out, err := kubectlNS("delete", "cronjob", "tick"); err != nil {
		t.Fatalf("kubectl delete cronjob: %v\n%s", err, out)
	}
	// Deleting the jobs deletes their pods (the tracking finalizer lets
	// go); the cronjob's jobs, by-hand's too, went with it.
	if out, err := kubectlNS("delete", "job", "hello", "fails"); err != nil {
		t.Fatalf("kubectl delete job: %v\n%s", err, out)
	}
	waitFor(30*time.Second, "the jobs and their pods gone", func() error {
		out, err := kubectlNS("get", "jobs,pods", "-l", "batch.kubernetes.io/job-name", "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
}

// cleanupUnder kills what a `skiff up` with its directories under dir
// left running — a managed containerd, its shims, the containers (found by
// the pod network namespaces pinned under dir), their log drivers — and
// unmounts everything mounted under dir, then removes runc's records of
// the containers.
func cleanupUnder(dir string) {
	// Last, once the killed processes are gone: runc's state and cgroups
	// of the containers, which live outside dir.
	defer runctest.RemoveUnder(dir)
	podNets := map[string]bool{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == "net" && filepath.Base(filepath.Dir(filepath.Dir(p))) == "sandboxes" {
			var st syscall.Stat_t
			if syscall.Stat(p, &st) == nil {
				podNets[fmt.Sprintf("net:[%d]", st.Ino)] = true
			}
		}
		return nil
	})
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if podNets[ns] || bytes.Contains(cmdline, []byte(dir)) || bytes.Contains(cmdline, []byte(url.QueryEscape(dir))) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for i := 0; i < 3; i++ {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			return
		}
		var points []string
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && strings.HasPrefix(f[4], dir) {
				points = append(points, f[4])
			}
		}
		if len(points) == 0 {
			return
		}
		for j := len(points) - 1; j >= 0; j-- {
			syscall.Unmount(points[j], syscall.MNT_DETACH)
		}
	}
}

// logFile reads a process's output file as it is now.
type logFile string

func (f logFile) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

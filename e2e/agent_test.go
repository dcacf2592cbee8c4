package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/skiff-sh/skiff/e2e/lab"
)

// agentLab is a lab of one master and two workers with their agents, and
// the namespace a test's pods go in.
type agentLab struct {
	*lab.Lab
	t  *testing.T
	kc string
	ns string
}

// startAgentLab brings up the lab the agent's acceptance tests run on:
// real skiff processes in network namespaces, a containerd per worker, the
// lab registry. Crashing containers back off from 1 s (not 10 s) so the
// test sees the back-off grow within seconds.
func startAgentLab(t *testing.T, serverArgs ...string) *agentLab {
	t.Helper()
	return startAgentLabWith(t, serverArgs, nil, nil)
}

// startAgentLabWith is startAgentLab with extra agent flags, and a hook
// that runs once the lab is up, before the agents start.
func startAgentLabWith(t *testing.T, serverArgs, agentArgs []string, beforeAgents func(*lab.Lab)) *agentLab {
	t.Helper()
	cfg := lab.DefaultConfig()
	cfg.SkiffBin = skiffBinary(t)
	cfg.StartAgents = beforeAgents == nil
	cfg.ServerArgs = serverArgs
	cfg.ExtraAgentArgs = append([]string{"--restart-backoff", "1s", "--max-restart-backoff", "8s"}, agentArgs...)
	l := lab.Start(t, cfg)
	if beforeAgents != nil {
		beforeAgents(l)
		for i := range l.Workers() {
			if err := l.StartAgent(t.Context(), i); err != nil {
				t.Fatal(err)
			}
		}
	}
	al := &agentLab{Lab: l, t: t, kc: l.Kubeconfig(), ns: "agent-e2e"}
	al.waitFor(90*time.Second, "both workers Ready", func() error {
		out, err := al.kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(out, "w0=True") || !strings.Contains(out, "w1=True") {
			return fmt.Errorf("nodes: %s", out)
		}
		return nil
	})
	al.mustKubectl("create", "namespace", al.ns)
	return al
}

// nodeKubeconfig writes a kubeconfig of worker i's agent credentials (its
// client certificate, system:node:NAME) for the lab's API, and returns its
// path.
func (al *agentLab) nodeKubeconfig(i int) string {
	al.t.Helper()
	server := al.mustKubectl("config", "view", "--raw", "-o", "jsonpath={.clusters[0].cluster.server}")
	pki := filepath.Join(al.Worker(i).AgentDataDir, "pki")
	path := filepath.Join(al.t.TempDir(), "node.kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: lab, cluster: {server: %q, certificate-authority: %q}}]
users: [{name: node, user: {client-certificate: %q, client-key: %q}}]
contexts: [{name: node, context: {cluster: lab, user: node}}]
current-context: node
`, server, filepath.Join(pki, "ca.crt"), filepath.Join(pki, "client.crt"), filepath.Join(pki, "client.key"))
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		al.t.Fatal(err)
	}
	return path
}

func (al *agentLab) kubectl(args ...string) (string, error) {
	al.t.Helper()
	return kubectl(al.t, al.kc, args...)
}

func (al *agentLab) mustKubectl(args ...string) string {
	al.t.Helper()
	out, err := al.kubectl(args...)
	if err != nil {
		al.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// apply applies a manifest in the test namespace.
func (al *agentLab) apply(manifest string) {
	al.t.Helper()
	path := filepath.Join(al.t.TempDir(), "m.yaml")
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		al.t.Fatal(err)
	}
	al.mustKubectl("apply", "-n", al.ns, "-f", path)
}

func (al *agentLab) waitFor(timeout time.Duration, what string, cond func() error) {
	al.t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	al.t.Fatalf("%s: not within %v: %v", what, timeout, err)
}

// podField reads a jsonpath of a pod in the test namespace.
func (al *agentLab) podField(pod, jsonpath string) (string, error) {
	out, err := al.kubectl("get", "pod", "-n", al.ns, pod, "-o", "jsonpath="+jsonpath)
	if err != nil {
		return "", fmt.Errorf("%v: %s", err, out)
	}
	return out, nil
}

func (al *agentLab) waitRunning(pod string, timeout time.Duration) {
	al.t.Helper()
	al.waitFor(timeout, "pod "+pod+" Running and Ready", func() error {
		out, err := al.podField(pod, `{.status.phase} {.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil {
			return err
		}
		if out != "Running True" {
			return fmt.Errorf("phase/ready %q", out)
		}
		return nil
	})
}

// TestAgentAcceptance is issue 4's acceptance on a lab of one master and
// two workers, with the real kubectl: pods through containerd, CNI across
// hosts, logs/exec/port-forward through the API server, restarts, probes,
// graceful deletion, an agent killed -9, images from the lab registry.
func TestAgentAcceptance(t *testing.T) {
	al := startAgentLab(t)
	img := al.Images()
	marks := t.TempDir()

	al.apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: duo}
spec:
  nodeName: w0
  terminationGracePeriodSeconds: 20
  volumes:
  - {name: shared, emptyDir: {}}
  - {name: marks, hostPath: {path: %[3]s, type: Directory}}
  containers:
  - name: server
    image: %[1]s
    env: [{name: PORT, value: "8080"}]
    volumeMounts: [{name: marks, mountPath: /marks}]
    lifecycle:
      preStop:
        exec: {command: [sh, -c, "echo prestop >> /marks/duo; sleep 1"]}
  - name: client
    image: %[2]s
    command: [sh, -c, "echo from-client > /shared/note; until wget -q -O - http://127.0.0.1:8080/; do sleep 0.2; done; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.3; done"]
    volumeMounts: [{name: shared, mountPath: /shared}]
  - name: reader
    image: %[2]s
    command: [sh, -c, "until cat /shared/note; do sleep 0.2; done; exec sleep 3600"]
    volumeMounts: [{name: shared, mountPath: /shared}]
---
apiVersion: v1
kind: Pod
metadata: {name: peer}
spec:
  nodeName: w1
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: %[1]s
---
apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  nodeName: w1
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: %[1]s
    env: [{name: PORT, value: "18080"}]
---
apiVersion: v1
kind: Pod
metadata: {name: never}
spec:
  nodeName: w1
  containers:
  - {name: c, image: %[4]s/skiff/not-there:1, imagePullPolicy: Never}
`, img.Echo, img.Busybox, marks, al.Registry()))

	// Pulled from the lab registry; two containers share localhost and an
	// emptyDir.
	al.waitRunning("duo", 2*time.Minute)
	al.waitRunning("peer", time.Minute)

	// w0's agent credentials, with kubectl: node restriction keeps it to
	// its own Node and pods.
	al.mustKubectl("-n", al.ns, "create", "secret", "generic", "unused", "--from-literal=k=v")
	w0 := al.nodeKubeconfig(0)
	if out, err := kubectl(t, w0, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "system:node:w0" {
		t.Fatalf("w0's credentials: %q %v", out, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"label", "node", "w1", "e2e=x"}, `node "w0" is not allowed to modify node "w1"`},
		{[]string{"-n", al.ns, "delete", "pod", "peer"}, `node "w0" can only delete pods with spec.nodeName set to itself`},
		{[]string{"-n", al.ns, "label", "pod", "duo", "e2e=x"}, `node "w0" can only create and delete mirror pods`},
		// The Node authorizer: only what its pods refer to, by name.
		{[]string{"-n", al.ns, "get", "secret", "unused"}, `no relationship found between node 'w0' and this object`},
		{[]string{"-n", al.ns, "get", "secrets"}, `can only get individual resources of this type`},
	} {
		if out, err := kubectl(t, w0, tc.args...); err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("kubectl %s as w0: got %q %v, want Forbidden: %s", strings.Join(tc.args, " "), out, err, tc.want)
		}
	}
	if out, err := kubectl(t, w0, "label", "node", "w0", "e2e=own"); err != nil {
		t.Errorf("w0 labels its own Node: %v\n%s", err, out)
	}
	// duo's service account volume projects kube-root-ca.crt (which w0's
	// agent read to start it).
	if out, err := kubectl(t, w0, "-n", al.ns, "get", "configmap", "kube-root-ca.crt", "-o", "name"); err != nil {
		t.Errorf("w0 reads the ConfigMap of its pod's volume: %v\n%s", err, out)
	}
	al.waitFor(30*time.Second, "client reached the server over localhost; reader saw the emptyDir", func() error {
		out, err := al.kubectl("logs", "-n", al.ns, "duo", "-c", "client")
		if err != nil || !strings.Contains(out, "hostname=duo") {
			return fmt.Errorf("client logs %q %v", out, err)
		}
		out, err = al.kubectl("logs", "-n", al.ns, "duo", "-c", "reader")
		if err != nil || !strings.Contains(out, "from-client") {
			return fmt.Errorf("reader logs %q %v", out, err)
		}
		return nil
	})
	imageID, _ := al.podField("duo", `{.status.containerStatuses[?(@.name=="server")].imageID}`)
	if !strings.Contains(imageID, "@sha256:") {
		t.Errorf("server imageID %q, want a repo digest", imageID)
	}

	t.Run("ErrImageNeverPull", func(t *testing.T) {
		al.waitFor(30*time.Second, "never's waiting reason", func() error {
			out, err := al.podField("never", `{.status.containerStatuses[0].state.waiting.reason}`)
			if err != nil || out != "ErrImageNeverPull" {
				return fmt.Errorf("reason %q %v", out, err)
			}
			return nil
		})
	})

	t.Run("pod to pod across workers, and to the host network", func(t *testing.T) {
		duoIP, _ := al.podField("duo", "{.status.podIP}")
		peerIP, _ := al.podField("peer", "{.status.podIP}")
		out, err := al.kubectl("exec", "-n", al.ns, "duo", "-c", "client", "--", "wget", "-q", "-O", "-", "http://"+peerIP+":8080/")
		if err != nil || strings.TrimSpace(out) != "hostname=peer" {
			t.Fatalf("duo → peer (%s): %q %v", peerIP, out, err)
		}
		// The master's status endpoint is on the host network.
		out, err = al.kubectl("exec", "-n", al.ns, "duo", "-c", "client", "--", "wget", "-q", "-O", "-", "http://"+al.Master(0).StatusAddr+"/readyz")
		if err != nil || !strings.Contains(out, "ok") {
			t.Fatalf("duo → master status endpoint: %q %v", out, err)
		}
		_ = duoIP
	})

	t.Run("hostNetwork: the node's address, ports, name and resolver; deleting the pod leaves the node's network", func(t *testing.T) {
		al.waitRunning("hostnet", time.Minute)
		w1 := al.Worker(1)
		if ip, _ := al.podField("hostnet", "{.status.podIP}"); ip != w1.IP.String() {
			t.Fatalf("podIP %q, want the node's %s", ip, w1.IP)
		}
		// The lab's hosts share this machine's hostname (only their
		// network is their own).
		name, err := os.Hostname()
		if err != nil {
			t.Fatal(err)
		}
		al.waitFor(30*time.Second, "hostnet answering on w1's address", func() error {
			out, err := al.Exec(t.Context(), al.Master(0), "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", "http://"+w1.IP.String()+":18080/")
			if err != nil || strings.TrimSpace(out) != "hostname="+name {
				return fmt.Errorf("%q %v", out, err)
			}
			return nil
		})
		// dnsPolicy ClusterFirst on the host network means the host's
		// resolver, as with the kubelet.
		if out, err := al.kubectl("exec", "-n", al.ns, "hostnet", "--", "cat", "/etc/resolv.conf"); err != nil || strings.Contains(out, "svc.cluster.local") {
			t.Fatalf("resolv.conf: %q %v", out, err)
		}
		al.mustKubectl("delete", "pod", "-n", al.ns, "hostnet", "--wait=true", "--timeout=60s")
		if out, err := al.Exec(t.Context(), w1, "ip", "-o", "addr", "show", "dev", "eth0"); err != nil || !strings.Contains(out, w1.IP.String()+"/") {
			t.Fatalf("w1's eth0 after the pod's deletion: %q %v", out, err)
		}
		peerIP, _ := al.podField("peer", "{.status.podIP}")
		if out, err := al.kubectl("exec", "-n", al.ns, "duo", "-c", "client", "--", "wget", "-q", "-O", "-", "http://"+peerIP+":8080/"); err != nil || strings.TrimSpace(out) != "hostname=peer" {
			t.Fatalf("duo → peer on w1 after the pod's deletion: %q %v", out, err)
		}
	})

	t.Run("exec exit codes", func(t *testing.T) {
		out, err := al.kubectl("exec", "-n", al.ns, "duo", "-c", "client", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
		var ee *exec.ExitError
		if !errorsAs(err, &ee) || ee.ExitCode() != 7 {
			t.Fatalf("exit code: %v, want 7 (output %q)", err, out)
		}
		if !strings.Contains(out, "out") || !strings.Contains(out, "err") {
			t.Fatalf("output %q, want out and err", out)
		}
	})

	t.Run("exec -it with a TTY", func(t *testing.T) {
		home := t.TempDir()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", al.kc, "exec", "-it", "-n", al.ns, "duo", "-c", "client", "--", "sh")
		cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
		f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 123})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		io.WriteString(f, "tty; stty size; exit 5\n")
		var out strings.Builder
		io.Copy(&out, f) // ends when kubectl exits (EIO)
		err = cmd.Wait()
		var ee *exec.ExitError
		if !errorsAs(err, &ee) || ee.ExitCode() != 5 {
			t.Fatalf("exit: %v, want 5; output %q", err, out.String())
		}
		if !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "40 123") {
			t.Fatalf("output %q, want a pts device and the terminal size 40 123", out.String())
		}
	})

	t.Run("logs -f", func(t *testing.T) {
		home := t.TempDir()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", al.kc, "logs", "-f", "--tail=1", "-n", al.ns, "duo", "-c", "client")
		cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`^tick (\d+)$`)
		var ticks []string
		for len(ticks) < 4 && sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				ticks = append(ticks, m[1])
			} else {
				t.Fatalf("unexpected line %q", sc.Text())
			}
		}
		if len(ticks) < 4 {
			t.Fatalf("followed %q before the stream ended: %v", ticks, sc.Err())
		}
		// Lines arrive as they are written, in order, without gaps.
		for i := 1; i < len(ticks); i++ {
			var a, b int
			fmt.Sscan(ticks[i-1], &a)
			fmt.Sscan(ticks[i], &b)
			if b != a+1 {
				t.Fatalf("ticks %v are not consecutive", ticks)
			}
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		home := t.TempDir()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", al.kc, "port-forward", "-n", al.ns, "pod/peer", ":8080")
		cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		sc := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 8080`)
		var port string
		for port == "" && sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				port = m[1]
			}
		}
		if port == "" {
			t.Fatalf("no forwarding line: %v", sc.Err())
		}
		go io.Copy(io.Discard, stdout)
		for i := 0; i < 3; i++ { // several connections over one forward
			resp, err := http.Get("http://127.0.0.1:" + port + "/echo?msg=through-the-forward")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "through-the-forward" {
				t.Fatalf("forwarded answer %q", body)
			}
		}
	})

	t.Run("crash loop, liveness and readiness", func(t *testing.T) {
		al.apply(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  nodeName: w1
  containers:
  - {name: c, image: %[1]s, command: [sh, -c, "echo crashing; exit 2"]}
---
apiVersion: v1
kind: Pod
metadata: {name: probed}
spec:
  nodeName: w0
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: %[1]s
    command: [sh, -c, "touch /tmp/ready /tmp/alive; exec sleep 3600"]
    readinessProbe:
      exec: {command: [test, -f, /tmp/ready]}
      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 1
    livenessProbe:
      exec: {command: [test, -f, /tmp/alive]}
      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 3
`, img.Busybox))
		var backoffs []string
		al.waitFor(60*time.Second, "crasher in CrashLoopBackOff with a growing back-off", func() error {
			out, err := al.podField("crasher", `{.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].state.waiting.message}|{.status.containerStatuses[0].restartCount}|{.status.containerStatuses[0].lastState.terminated.exitCode}`)
			if err != nil {
				return err
			}
			f := strings.Split(out, "|")
			if len(f) == 4 && f[0] == "CrashLoopBackOff" {
				if f[3] != "2" {
					return fmt.Errorf("lastState exit code %q, want 2", f[3])
				}
				b, _, _ := strings.Cut(f[1], " restarting")
				if len(backoffs) == 0 || backoffs[len(backoffs)-1] != b {
					backoffs = append(backoffs, b)
				}
			}
			if len(backoffs) < 3 {
				return fmt.Errorf("back-offs seen %q (status %q)", backoffs, out)
			}
			return nil
		})
		if backoffs[0] != "back-off 1s" || backoffs[1] != "back-off 2s" || backoffs[2] != "back-off 4s" {
			t.Fatalf("back-offs %q, want 1s, 2s, 4s", backoffs)
		}
		if out := al.mustKubectl("get", "pod", "-n", al.ns, "crasher"); !strings.Contains(out, "CrashLoopBackOff") {
			t.Fatalf("kubectl get shows %q, want CrashLoopBackOff", out)
		}
		if out, _ := al.kubectl("logs", "-n", al.ns, "crasher", "--previous"); !strings.Contains(out, "crashing") {
			t.Fatalf("logs --previous %q", out)
		}

		// Readiness gates Ready, both ways; the container is not restarted.
		al.waitRunning("probed", time.Minute)
		al.mustKubectl("exec", "-n", al.ns, "probed", "--", "rm", "/tmp/ready")
		al.waitFor(20*time.Second, "probed not Ready", func() error {
			out, err := al.podField("probed", `{.status.conditions[?(@.type=="Ready")].status} {.status.containerStatuses[0].restartCount}`)
			if err != nil || out != "False 0" {
				return fmt.Errorf("ready/restarts %q %v", out, err)
			}
			return nil
		})
		al.mustKubectl("exec", "-n", al.ns, "probed", "--", "touch", "/tmp/ready")
		al.waitRunning("probed", 20*time.Second)
		// A failing liveness probe restarts the container.
		al.mustKubectl("exec", "-n", al.ns, "probed", "--", "rm", "/tmp/alive")
		al.waitFor(30*time.Second, "probed restarted by its liveness probe", func() error {
			out, err := al.podField("probed", `{.status.containerStatuses[0].restartCount}`)
			if err != nil || out != "1" {
				return fmt.Errorf("restarts %q %v", out, err)
			}
			return nil
		})
		al.waitRunning("probed", 30*time.Second)
		if out := al.mustKubectl("get", "events", "-n", al.ns, "--field-selector", "involvedObject.name=probed"); !strings.Contains(out, "Liveness probe failed") || !strings.Contains(out, "Readiness probe failed") {
			t.Fatalf("events of probed:\n%s", out)
		}
	})

	t.Run("agent killed -9 and restarted", func(t *testing.T) {
		const status = `{.status.podIP} {.status.containerStatuses[*].containerID} {.status.containerStatuses[*].restartCount}`
		before, err := al.podField("duo", status)
		if err != nil {
			t.Fatal(err)
		}
		probedUID, _ := al.podField("probed", "{.metadata.uid}")
		if err := al.KillAgent(0); err != nil {
			t.Fatal(err)
		}
		// Deleted while the agent is down: cleaned up when it is back.
		al.mustKubectl("delete", "pod", "-n", al.ns, "probed", "--grace-period=0", "--force")
		if err := al.StartAgent(t.Context(), 0); err != nil {
			t.Fatal(err)
		}
		al.waitFor(60*time.Second, "probed's containers removed from w0", func() error {
			out, err := al.Exec(t.Context(), al.Worker(0), "ctr", "-a", al.Worker(0).ContainerdSocket, "-n", "skiff", "containers", "ls", "-q", "labels.\"skiff.pod.uid\"=="+probedUID)
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			if strings.TrimSpace(out) != "" {
				return fmt.Errorf("left: %s", out)
			}
			return nil
		})
		after, err := al.podField("duo", status)
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("duo after the agent's restart: %q, want unchanged %q", after, before)
		}
		al.waitRunning("duo", 10*time.Second)
	})

	t.Run("graceful deletion honours preStop and the grace period", func(t *testing.T) {
		start := time.Now()
		al.mustKubectl("delete", "pod", "-n", al.ns, "duo", "--wait=true", "--timeout=60s")
		took := time.Since(start)
		b, _ := os.ReadFile(filepath.Join(marks, "duo"))
		if string(b) != "prestop\n" {
			t.Fatalf("marks %q, want the preStop hook's line", b)
		}
		// The echo server exits on SIGTERM; sh containers ignore it and
		// are killed when the 20 s grace period ends.
		if took < 15*time.Second || took > 40*time.Second {
			t.Fatalf("deletion took %v, want about the 20 s grace period (sh ignores SIGTERM)", took)
		}
	})
}

func errorsAs(err error, target **exec.ExitError) bool {
	if err == nil {
		return false
	}
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

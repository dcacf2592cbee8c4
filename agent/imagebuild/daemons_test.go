package imagebuild

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/agent/runctest"
)

// This file starts the real daemons the tests load images into: a private
// containerd (its own root, state and socket in a temp dir) and a
// docker-registry on a free loopback port. Each is killed, and whatever it
// left (shims, mounts) removed, by t.Cleanup, also when the test fails.

// needRoot skips t unless it runs as root with the given binaries.
func needRoot(t *testing.T, bins ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (containerd, mounts)")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("needs %s: %v", b, err)
		}
	}
}

// testContainerd is a private containerd instance.
type testContainerd struct {
	dir, sock string
}

// startContainerd starts /usr/bin/containerd with its own directories and
// waits until `ctr version` answers.
func startContainerd(t *testing.T) *testContainerd {
	t.Helper()
	needRoot(t, "containerd", "ctr", "runc")
	// A short directory: the socket path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "ib-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &testContainerd{dir: dir, sock: filepath.Join(dir, "c.sock")}
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc")
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("containerd", "--config", filepath.Join(dir, "config.toml"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		killShims(t, c.sock)
		unmountUnder(t, dir)
		runctest.RemoveUnder(dir)
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "containerd.log")); err == nil {
				t.Logf("containerd log (last 3000 bytes):\n%s", tail(b, 3000))
			}
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("removing %s: %v", dir, err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.ctr(t.Context(), "", "version")
		if err == nil {
			return c
		}
		select {
		case <-exited:
			t.Fatalf("containerd exited: %v", cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not answering within 20s: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling for readiness, not before an assertion
	}
}

// ctr runs ctr against c in namespace ns and returns its stdout.
func (c *testContainerd) ctr(ctx context.Context, ns string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	full := []string{"-a", c.sock}
	if ns != "" {
		full = append(full, "-n", ns)
	}
	cmd := exec.CommandContext(ctx, "ctr", append(full, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.String(), nil
}

// killShims kills containerd shims serving the containerd at sock.
func killShims(t *testing.T, sock string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if !strings.Contains(args[0], "containerd-shim") {
			continue
		}
		for i := range len(args) - 1 {
			if args[i] == "-address" && args[i+1] == sock {
				t.Logf("killing shim %d left by the test", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) < 5 {
			continue
		}
		if mp := f[4]; strings.HasPrefix(mp, dir+"/") {
			if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
				t.Logf("unmount %s: %v", mp, err)
			}
		}
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// startRegistry starts docker-registry on a free loopback port with storage
// in a temp dir and returns its host:port once /v2/ answers.
func startRegistry(t *testing.T, htpasswd string) string {
	t.Helper()
	needRoot(t, "docker-registry")
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		auth := ""
		if htpasswd != "" {
			auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: test\n    path: %s\n", htpasswd)
		}
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n%s", filepath.Join(dir, "data"), addr, auth)
		cfgPath := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		cmd := exec.Command("docker-registry", "serve", cfgPath)
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		})
		deadline := time.Now().Add(15 * time.Second)
		for {
			resp, err := http.Get("http://" + addr + "/v2/")
			if err == nil {
				resp.Body.Close()
				return addr
			}
			select {
			case <-exited:
			default:
				if time.Now().Before(deadline) {
					time.Sleep(50 * time.Millisecond) // polling for readiness
					continue
				}
			}
			break
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
		if !strings.Contains(out.String(), "address already in use") || attempt == 5 {
			t.Fatalf("docker-registry on %s not serving: %s", addr, out.String())
		}
	}
}

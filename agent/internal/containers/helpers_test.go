package containers

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"golang.org/x/sys/unix"

	"github.com/skiff-sh/skiff/agent/runctest"
)

// The package's tests share one containerd started by TestMain (when the
// machine allows); each test uses its own containerd namespace and RunDir.
var testDaemon struct {
	once   sync.Once
	dir    string
	socket string
	pid    int
	err    error
}

func TestMain(m *testing.M) {
	// The shim runs the test binary as the log driver.
	if len(os.Args) > 1 && os.Args[1] == logDriverCommand {
		os.Exit(LogDriverMain(os.Args[2:]))
	}
	code := m.Run()
	stopTestDaemon()
	os.Exit(code)
}

// requireDaemon skips when the machine cannot run containers, else
// returns the socket of the shared test containerd.
func requireDaemon(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (containerd, namespaces, mounts)")
	}
	for _, b := range []string{DaemonBinary, "/bin/busybox"} {
		if _, err := os.Stat(b); err != nil {
			t.Skipf("needs %s", b)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("needs runc")
	}
	testDaemon.once.Do(func() {
		dir, err := os.MkdirTemp("", "skiff-ctr-")
		if err != nil {
			testDaemon.err = err
			return
		}
		testDaemon.dir = dir
		testDaemon.socket = filepath.Join(dir, "containerd.sock")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		testDaemon.pid, testDaemon.err = StartDaemon(ctx, DaemonConfig{
			Root: filepath.Join(dir, "root"), State: filepath.Join(dir, "state"), Socket: testDaemon.socket,
		})
	})
	if testDaemon.err != nil {
		t.Fatalf("start containerd: %v", testDaemon.err)
	}
	return testDaemon.socket
}

// stopTestDaemon kills what the tests started: every task in the daemon,
// the daemon, its shims, then unmounts and removes its directories.
func stopTestDaemon() {
	if testDaemon.dir == "" {
		return
	}
	if testDaemon.err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if c, err := containerd.New(testDaemon.socket); err == nil {
			nss, _ := c.NamespaceService().List(ctx)
			for _, ns := range nss {
				purgeNamespace(namespaces.WithNamespace(ctx, ns), c)
			}
			c.Close()
		}
		cancel()
	}
	if testDaemon.pid > 0 {
		syscall.Kill(testDaemon.pid, syscall.SIGTERM)
		deadline := time.Now().Add(5 * time.Second)
		for syscall.Kill(testDaemon.pid, 0) == nil && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		syscall.Kill(testDaemon.pid, syscall.SIGKILL)
	}
	// Shims of this daemon name its socket on their command line.
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmd, []byte(testDaemon.socket)) || bytes.Contains(cmd, []byte(testDaemon.dir)) {
			var pid int
			fmt.Sscan(p.Name(), &pid)
			if pid > 1 && pid != os.Getpid() {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	unmountUnder(testDaemon.dir)
	runctest.RemoveUnder(testDaemon.dir)
	os.RemoveAll(testDaemon.dir)
}

// purgeNamespace kills and deletes every task and container, then the images.
func purgeNamespace(ctx context.Context, c *containerd.Client) {
	cs, _ := c.Containers(ctx)
	for _, ctr := range cs {
		if task, err := ctr.Task(ctx, nil); err == nil {
			task.Delete(ctx, containerd.WithProcessKill)
		}
		ctr.Delete(ctx, containerd.WithSnapshotCleanup)
	}
	imgs, _ := c.ImageService().List(ctx)
	for _, i := range imgs {
		c.ImageService().Delete(ctx, i.Name)
	}
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var targets []string
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			targets = append(targets, f[4])
		}
	}
	slices.SortFunc(targets, func(a, b string) int { return len(b) - len(a) })
	for _, t := range targets {
		unix.Unmount(t, unix.MNT_DETACH)
	}
}

// newTestRuntime returns a Runtime in a fresh containerd namespace and
// RunDir; cleanup removes its containers, sandboxes and images.
func newTestRuntime(t *testing.T) (*Runtime, Config) {
	t.Helper()
	socket := requireDaemon(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	runDir, err := os.MkdirTemp("", "skiff-run-")
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("skifftest-%d-%s", os.Getpid(), strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())))
	if len(ns) > 76 {
		ns = ns[:76]
	}
	cfg := DefaultConfig()
	cfg.Address = socket
	cfg.Namespace = ns
	cfg.RunDir = runDir
	cfg.LogDriver = exe
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if c, err := containerd.New(socket); err == nil {
			purgeNamespace(namespaces.WithNamespace(ctx, ns), c)
			c.NamespaceService().Delete(namespaces.WithNamespace(ctx, ns), ns)
			c.Close()
		}
		// runc keeps the namespace's state directory and cgroups outside
		// the private containerd, shared by every containerd on the host.
		runctest.RemoveNamespace(ns)
		unmountUnder(runDir)
		os.RemoveAll(runDir)
	})
	return r, cfg
}

// testImage describes an image built from the host's static busybox.
type testImage struct {
	Name       string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	StopSignal string
}

var busyboxApplets = []string{"sh", "echo", "cat", "sleep", "true", "false", "id", "hostname", "env", "pwd", "ls",
	"touch", "grep", "seq", "head", "wc", "printf", "kill", "tty", "stty", "mkdir", "test", "date", "yes"}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// imageBlobs returns the layer, config and manifest of img.
func imageBlobs(t *testing.T, img testImage) (layer, config, manifest []byte) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	var lb bytes.Buffer
	tw := tar.NewWriter(&lb)
	mt := time.Unix(0, 0)
	for _, d := range []string{"bin/", "tmp/", "etc/", "work/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o1777, ModTime: mt})
	}
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1001::/tmp:/bin/sh\n")
	tw.WriteHeader(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd)), ModTime: mt})
	tw.Write(passwd)
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb)), ModTime: mt})
	tw.Write(bb)
	for _, a := range busyboxApplets {
		tw.WriteHeader(&tar.Header{Name: "bin/" + a, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777, ModTime: mt})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	layer = lb.Bytes()
	cfg := map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{
			"Entrypoint": img.Entrypoint, "Cmd": img.Cmd, "Env": append([]string{"PATH=/bin"}, img.Env...),
			"WorkingDir": img.WorkingDir, "StopSignal": img.StopSignal,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{digestOf(layer)}},
	}
	config, _ = json.Marshal(cfg)
	manifest, _ = json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digestOf(config), "size": len(config)},
		"layers":        []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digestOf(layer), "size": len(layer)}},
	})
	return layer, config, manifest
}

// ociArchive writes an OCI image layout tar holding img.
func ociArchive(t *testing.T, img testImage) []byte {
	t.Helper()
	layer, config, manifest := imageBlobs(t, img)
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	add := func(name string, data []byte) {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(data))})
		tw.Write(data)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	for _, blob := range [][]byte{layer, config, manifest} {
		add("blobs/sha256/"+strings.TrimPrefix(digestOf(blob), "sha256:"), blob)
	}
	_, tag, _ := strings.Cut(img.Name[strings.LastIndex(img.Name, "/")+1:], ":")
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digestOf(manifest), "size": len(manifest),
			"annotations": map[string]string{"io.containerd.image.name": img.Name, "org.opencontainers.image.ref.name": tag},
		}},
	})
	add("index.json", index)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// importImage imports img and returns it as EnsureImage describes it.
func importImage(t *testing.T, r *Runtime, img testImage) Image {
	t.Helper()
	names, err := r.ImportImages(t.Context(), bytes.NewReader(ociArchive(t, img)))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, img.Name) {
		t.Fatalf("imported %v, want %s", names, img.Name)
	}
	got, err := r.EnsureImage(t.Context(), img.Name, "Never", nil)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// startRegistry runs docker-registry on a free loopback port and returns its host:port.
func startRegistry(t *testing.T) string {
	t.Helper()
	const bin = "/usr/bin/docker-registry"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("needs " + bin)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)), 0o644)
	cmd := exec.Command(bin, "serve", conf)
	logf, _ := os.Create(filepath.Join(dir, "registry.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("registry on %s did not come up: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pushImage uploads img to the registry at base ("http://host:port")
// with the registry v2 API; repo and tag come from ref "host:port/repo:tag".
func pushImage(t *testing.T, base, repo, tag string, img testImage) {
	t.Helper()
	layer, config, manifest := imageBlobs(t, img)
	do := func(method, url, ctype string, body []byte) *http.Response {
		req, _ := http.NewRequest(method, url, bytes.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: %s", method, url, resp.Status)
		}
		return resp
	}
	for _, blob := range [][]byte{layer, config} {
		resp := do("POST", base+"/v2/"+repo+"/blobs/uploads/", "", nil)
		loc := resp.Header.Get("Location")
		if !strings.HasPrefix(loc, "http") {
			loc = base + loc
		}
		sep := "?"
		if strings.Contains(loc, "?") {
			sep = "&"
		}
		do("PUT", loc+sep+"digest="+digestOf(blob), "application/octet-stream", blob)
	}
	do("PUT", base+"/v2/"+repo+"/manifests/"+tag, "application/vnd.oci.image.manifest.v1+json", manifest)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (last error: %v)", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logContents returns the content of a log file's records.
func logContents(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rec := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if rec == "" {
			continue
		}
		parts := strings.SplitN(rec, " ", 4)
		if len(parts) < 3 {
			return nil, errors.New("bad record " + rec)
		}
		c := ""
		if len(parts) == 4 {
			c = parts[3]
		}
		out = append(out, parts[1]+":"+c)
	}
	return out, nil
}

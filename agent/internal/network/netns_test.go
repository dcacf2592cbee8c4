package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// These helpers build "hosts" and "pods" out of network namespaces so that
// the tests never touch the real host's network.

// requireNetAdmin skips the test when it cannot build network namespaces
// or the CNI plugins are missing.
func requireNetAdmin(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, bridges, iptables)")
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "loopback"} {
		if _, err := os.Stat(filepath.Join("/usr/lib/cni", p)); err != nil {
			t.Skipf("CNI plugin %s missing (Debian package containernetworking-plugins): %v", p, err)
		}
	}
	for _, bin := range []string{"ip", "iptables", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s missing: %v", bin, err)
		}
	}
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ns is a named network namespace (ip netns), removed at cleanup.
type ns struct{ name, path string }

func newNS(t *testing.T) ns {
	t.Helper()
	name := uniqueName("sknt")
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return ns{name: name, path: "/run/netns/" + name}
}

// do runs fn on an OS thread switched into the namespace; the thread is
// never unlocked, so the Go runtime discards it afterwards.
func (n ns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromPath(n.path)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

func (n ns) must(t *testing.T, fn func() error) {
	t.Helper()
	if err := n.do(fn); err != nil {
		t.Fatalf("in netns %s: %v", n.name, err)
	}
}

// exec runs a command inside the namespace.
func (n ns) exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

func (n ns) listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	n.must(t, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	t.Cleanup(func() { ln.Close() })
	return ln
}

func (n ns) dial(addr string) (net.Conn, error) {
	var c net.Conn
	err := n.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		return err
	})
	return c, err
}

// eventually polls fn until it succeeds or the deadline passes.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testConfig(t *testing.T, podCIDR, clusterCIDR, nodeIP string) Config {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.ConfDir = filepath.Join(dir, "net.d")
	cfg.CacheDir = filepath.Join(dir, "cache")
	cfg.IPAMDir = filepath.Join(dir, "ipam")
	cfg.Bridge = uniqueName("skbr")
	cfg.PodCIDR = netip.MustParsePrefix(podCIDR)
	cfg.ClusterCIDR = netip.MustParsePrefix(clusterCIDR)
	if nodeIP != "" {
		cfg.NodeIP = netip.MustParseAddr(nodeIP)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(tLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return cfg
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// allocated lists the IPs host-local has on disk for the network.
func allocated(t *testing.T, cfg Config) []netip.Addr {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(cfg.IPAMDir, NetworkName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var ips []netip.Addr
	for _, e := range entries {
		if ip, err := netip.ParseAddr(e.Name()); err == nil {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips
}

func ping(from ns, to netip.Addr) error {
	_, err := from.exec("busybox", "ping", "-c1", "-W1", to.String())
	return err
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

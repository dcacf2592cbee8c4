package dataplane

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
)

// These helpers build a "node" (where the dataplane runs), a "client" and
// a "server" out of network namespaces, so that nothing here ever touches
// the host's own network or iptables.

// requireRoot skips the test when it cannot build network namespaces or a
// tool it drives is missing.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces, iptables)")
	}
	for _, bin := range []string{"ip", "iptables", "iptables-save", "iptables-restore", "conntrack"} {
		if _, err := exec.LookPath(bin); err != nil {
			tb.Skipf("%s missing: %v", bin, err)
		}
	}
}

func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

func run(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ns is a named network namespace (ip netns), removed at cleanup.
type ns struct{ name, path string }

func newNS(tb testing.TB) ns {
	tb.Helper()
	name := uniqueName("skdp")
	run(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
			tb.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	n := ns{name: name, path: "/run/netns/" + name}
	n.ip(tb, "link", "set", "lo", "up")
	return n
}

// do runs fn on an OS thread switched into the namespace; commands fn
// starts (iptables, conntrack) inherit the thread's namespace. The thread
// is never unlocked, so the Go runtime discards it afterwards.
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

func (n ns) must(tb testing.TB, fn func() error) {
	tb.Helper()
	if err := n.do(fn); err != nil {
		tb.Fatalf("in netns %s: %v", n.name, err)
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

func (n ns) mustExec(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := n.exec(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func (n ns) ip(tb testing.TB, args ...string) {
	tb.Helper()
	run(tb, append([]string{"ip", "-n", n.name}, args...)...)
}

// lab is a node namespace routing between a client namespace
// (172.31.1.2, via the node's 172.31.1.1) and a server namespace
// (172.31.2.2 and 172.31.2.3, via 172.31.2.1). The node routes the
// Service range 10.96.0.0/12 to 172.31.2.9, which nobody answers ARP for:
// without the dataplane's rules a connection to a VIP hangs (for about 3
// s) instead of failing at once, so the tests can tell the difference.
type lab struct{ node, client, server ns }

func newLab(tb testing.TB) lab {
	tb.Helper()
	l := lab{node: newNS(tb), client: newNS(tb), server: newNS(tb)}
	// Interface names live in their namespace, so fixed names are unique.
	l.node.ip(tb, "link", "add", "tocl", "type", "veth", "peer", "name", "eth0", "netns", l.client.name)
	l.node.ip(tb, "link", "add", "tosv", "type", "veth", "peer", "name", "eth0", "netns", l.server.name)
	l.node.ip(tb, "addr", "add", "172.31.1.1/24", "dev", "tocl")
	l.node.ip(tb, "addr", "add", "172.31.2.1/24", "dev", "tosv")
	l.client.ip(tb, "addr", "add", "172.31.1.2/24", "dev", "eth0")
	l.server.ip(tb, "addr", "add", "172.31.2.2/24", "dev", "eth0")
	l.server.ip(tb, "addr", "add", "172.31.2.3/24", "dev", "eth0")
	for _, x := range []struct {
		n   ns
		dev string
	}{{l.node, "tocl"}, {l.node, "tosv"}, {l.client, "eth0"}, {l.server, "eth0"}} {
		x.n.ip(tb, "link", "set", x.dev, "up")
	}
	l.client.ip(tb, "route", "add", "default", "via", "172.31.1.1")
	l.server.ip(tb, "route", "add", "default", "via", "172.31.2.1")
	l.node.ip(tb, "route", "add", "10.96.0.0/12", "via", "172.31.2.9")
	l.node.mustExec(tb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return l
}

// serve answers every TCP connection to addr in the server namespace with
// the answer and closes it.
func (n ns) serve(tb testing.TB, addr, answer string) {
	tb.Helper()
	n.serveFunc(tb, addr, func(net.Conn) string { return answer })
}

// serveFunc answers every TCP connection to addr in the namespace with
// what answer returns for it, and closes it.
func (n ns) serveFunc(tb testing.TB, addr string, answer func(net.Conn) string) {
	tb.Helper()
	var ln net.Listener
	n.must(tb, func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = c.Write([]byte(answer(c)))
			}()
		}
	}()
}

// fetch connects from the namespace to addr and returns what it answers.
func (n ns) fetch(addr string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := n.do(func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	b := make([]byte, 64)
	k, err := c.Read(b)
	if err != nil {
		return "", fmt.Errorf("reading from %s: %w", addr, err)
	}
	return string(b[:k]), nil
}

type tLogWriter struct{ tb testing.TB }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// newDataplane builds a Dataplane logging to the test log.
func newDataplane(tb testing.TB) *Dataplane {
	tb.Helper()
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(tLogWriter{tb}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, ok := tb.(*testing.B); ok {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	d, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

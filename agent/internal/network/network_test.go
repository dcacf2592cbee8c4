package network

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPodsOnOneNode(t *testing.T) {
	requireNetAdmin(t)
	ctx := ctxT(t)
	host, podA, podB := newNS(t), newNS(t), newNS(t)
	cfg := testConfig(t, "10.250.1.0/24", "10.250.0.0/16", "")
	gw := netip.MustParseAddr("10.250.1.1")

	var n *Network
	var ipA, ipB netip.Addr
	host.must(t, func() (err error) {
		if n, err = New(cfg); err != nil {
			return err
		}
		if ipA, err = n.Setup(ctx, "uid-a", "default", "a", podA.path, nil); err != nil {
			return err
		}
		ipB, err = n.Setup(ctx, "uid-b", "default", "b", podB.path, nil)
		return err
	})
	t.Logf("pod a %v, pod b %v", ipA, ipB)
	for _, ip := range []netip.Addr{ipA, ipB} {
		if !cfg.PodCIDR.Contains(ip) || ip == gw {
			t.Fatalf("got pod IP %v, want an address of %v other than the gateway", ip, cfg.PodCIDR)
		}
	}
	if ipA == ipB {
		t.Fatalf("both pods got %v", ipA)
	}
	if got := allocated(t, cfg); !slices.Equal(got, sortedAddrs(ipA, ipB)) {
		t.Fatalf("host-local allocations: got %v, want %v and %v", got, ipA, ipB)
	}

	eventually(t, 10*time.Second, "pod a pings pod b", func() error { return ping(podA, ipB) })
	eventually(t, 10*time.Second, "pod b pings pod a", func() error { return ping(podB, ipA) })
	eventually(t, 10*time.Second, "pod a pings the gateway", func() error { return ping(podA, gw) })
	if _, err := podA.exec("busybox", "ping", "-c1", "-W1", "127.0.0.1"); err != nil {
		t.Errorf("loopback in the pod: %v", err)
	}

	// Setup again: same address, nothing new allocated.
	host.must(t, func() error {
		ip, err := n.Setup(ctx, "uid-a", "default", "a", podA.path, nil)
		if err == nil && ip != ipA {
			err = fmt.Errorf("second Setup: got %v, want %v", ip, ipA)
		}
		return err
	})
	if got := allocated(t, cfg); len(got) != 2 {
		t.Fatalf("after a repeated Setup, host-local holds %v, want only %v and %v", got, ipA, ipB)
	}

	// An agent restart: a new Network over the same directories.
	host.must(t, func() error {
		n2, err := New(cfg)
		if err != nil {
			return err
		}
		if ip, ok := n2.PodIP("uid-a"); !ok || ip != ipA {
			return fmt.Errorf("PodIP after restart: got %v %v, want %v", ip, ok, ipA)
		}
		if _, ok := n2.PodIP("uid-unknown"); ok {
			return fmt.Errorf("PodIP of an unknown pod reported an address")
		}
		pods, err := n2.AttachedPods()
		if err != nil || !slices.Equal(pods, []string{"uid-a", "uid-b"}) {
			return fmt.Errorf("AttachedPods: got %v %v, want [uid-a uid-b]", pods, err)
		}
		if ip, err := n2.Setup(ctx, "uid-a", "default", "a", podA.path, nil); err != nil || ip != ipA {
			return fmt.Errorf("Setup after restart: got %v %v, want %v", ip, err, ipA)
		}
		n = n2
		return nil
	})

	// Teardown frees the address and removes the interface; twice is fine.
	host.must(t, func() error {
		for range 2 {
			if err := n.Teardown(ctx, "uid-b", podB.path); err != nil {
				return err
			}
		}
		if ip, ok := n.PodIP("uid-b"); ok {
			return fmt.Errorf("PodIP after Teardown: got %v, want none", ip)
		}
		return nil
	})
	if got := allocated(t, cfg); !slices.Equal(got, []netip.Addr{ipA}) {
		t.Fatalf("after Teardown host-local holds %v, want only %v", got, ipA)
	}
	if out, err := podB.exec("ip", "link", "show", podInterface); err == nil {
		t.Fatalf("pod b still has %s after Teardown: %s", podInterface, out)
	}
	if err := ping(podA, ipB); err == nil {
		t.Fatalf("%v still answers after Teardown", ipB)
	}
}

func sortedAddrs(ips ...netip.Addr) []netip.Addr {
	slices.SortFunc(ips, netip.Addr.Compare)
	return ips
}

// TestFreedIPIsReused fills a /29 (five pod addresses), then frees one
// whose netns is already gone and gives it to a new pod.
func TestFreedIPIsReused(t *testing.T) {
	requireNetAdmin(t)
	ctx := ctxT(t)
	host := newNS(t)
	cfg := testConfig(t, "10.250.3.0/29", "10.250.0.0/16", "")
	pods := make([]ns, 6)
	for i := range pods {
		pods[i] = newNS(t)
	}
	var n *Network
	ips := make([]netip.Addr, 5)
	host.must(t, func() (err error) {
		if n, err = New(cfg); err != nil {
			return err
		}
		for i := range 5 {
			if ips[i], err = n.Setup(ctx, fmt.Sprintf("uid-%d", i), "default", fmt.Sprint(i), pods[i].path, nil); err != nil {
				return err
			}
		}
		return nil
	})
	host.must(t, func() error {
		ip, err := n.Setup(ctx, "uid-5", "default", "5", pods[5].path, nil)
		if err == nil {
			return fmt.Errorf("a sixth pod in a /29 got %v, want an error", ip)
		}
		t.Logf("sixth pod, as expected: %v", err)
		return nil
	})
	if out, err := pods[5].exec("ip", "link", "show", podInterface); err == nil {
		t.Fatalf("the failed Setup left %s behind: %s", podInterface, out)
	}

	// Pod 2's netns disappears before its network is torn down.
	run(t, "ip", "netns", "del", pods[2].name)
	host.must(t, func() error { return n.Teardown(ctx, "uid-2", pods[2].path) })
	if got := allocated(t, cfg); slices.Contains(got, ips[2]) {
		t.Fatalf("after Teardown without a netns host-local still holds %v: %v", ips[2], got)
	}
	host.must(t, func() error {
		ip, err := n.Setup(ctx, "uid-5", "default", "5", pods[5].path, nil)
		if err == nil && ip != ips[2] {
			err = fmt.Errorf("the new pod got %v, want the freed %v", ip, ips[2])
		}
		return err
	})
}

// TestTwoNodes builds two hosts joined by a veth pair, each with its own
// bridge and pod CIDR: pods reach each other without NAT, reach outside
// the cluster CIDR masqueraded, and a hostPort is reachable from the other
// host.
func TestTwoNodes(t *testing.T) {
	requireNetAdmin(t)
	ctx := ctxT(t)
	hostA, hostB, podA, podB := newNS(t), newNS(t), newNS(t), newNS(t)
	vA, vB := uniqueName("skva"), uniqueName("skvb")
	run(t, "ip", "link", "add", vA, "netns", hostA.name, "type", "veth", "peer", "name", vB, "netns", hostB.name)
	run(t, "ip", "-n", hostA.name, "addr", "add", "192.168.250.1/24", "dev", vA)
	run(t, "ip", "-n", hostB.name, "addr", "add", "192.168.250.2/24", "dev", vB)
	run(t, "ip", "-n", hostA.name, "link", "set", vA, "up")
	run(t, "ip", "-n", hostB.name, "link", "set", vB, "up")

	cfgA := testConfig(t, "10.250.1.0/24", "10.250.0.0/16", "192.168.250.1")
	cfgB := testConfig(t, "10.250.2.0/24", "10.250.0.0/16", "192.168.250.2")
	routes := []NodeRoute{
		{PodCIDR: cfgA.PodCIDR, NodeIP: cfgA.NodeIP},
		{PodCIDR: cfgB.PodCIDR, NodeIP: cfgB.NodeIP},
	}
	const hostPort, containerPort = 18080, 9000
	var ipA, ipB netip.Addr
	setup := func(host, pod ns, cfg Config, ip *netip.Addr, ports []HostPort) {
		host.must(t, func() error {
			n, err := New(cfg)
			if err != nil {
				return err
			}
			if err := n.EnsureMasquerade(); err != nil {
				return err
			}
			if err := n.SyncRoutes(routes); err != nil {
				return err
			}
			*ip, err = n.Setup(ctx, "uid-"+pod.name, "default", pod.name, pod.path, ports)
			return err
		})
	}
	setup(hostA, podA, cfgA, &ipA, []HostPort{{HostPort: hostPort, ContainerPort: containerPort, Protocol: "TCP"}})
	setup(hostB, podB, cfgB, &ipB, nil)

	if got := run(t, "ip", "-n", hostA.name, "route", "show", "proto", fmt.Sprint(int(RouteProtocol))); !strings.HasPrefix(got, "10.250.2.0/24 via 192.168.250.2 dev "+vA) {
		t.Fatalf("host a's Skiff routes: got %q, want only 10.250.2.0/24 via 192.168.250.2", got)
	}

	// Pod to pod across nodes keeps the pod's address.
	serverB := podB.listen(t, netip.AddrPortFrom(ipB, 0).String())
	if got := remoteOf(t, podA, serverB); got != ipA {
		t.Errorf("pod b saw pod a's connection from %v, want %v (not NATed)", got, ipA)
	}
	// Outside the cluster CIDR (host b's address): masqueraded to host a's.
	serverHostB := hostB.listen(t, "192.168.250.2:0")
	if got, want := remoteOf(t, podA, serverHostB), cfgA.NodeIP; got != want {
		t.Errorf("host b saw pod a's connection from %v, want %v (masqueraded)", got, want)
	}
	// The hostPort on host a, from host b, reaches pod a.
	serverA := podA.listen(t, fmt.Sprintf("0.0.0.0:%d", containerPort))
	if got, want := remoteOf(t, hostB, serverA, fmt.Sprintf("192.168.250.1:%d", hostPort)), cfgB.NodeIP; got != want {
		t.Errorf("pod a saw host b's hostPort connection from %v, want %v", got, want)
	}

	// Hairpin: pod a reaches itself through its own hostPort.
	remoteOf(t, podA, serverA, fmt.Sprintf("192.168.250.1:%d", hostPort))

	// After an agent restart, Teardown still removes the hostPort rules
	// (the port mappings come from libcni's cache).
	nat := func() string { return run(t, "ip", "netns", "exec", hostA.name, "iptables", "-t", "nat", "-S") }
	if !strings.Contains(nat(), fmt.Sprintf("--dport %d", hostPort)) {
		t.Fatalf("no hostPort rule for %d on host a:\n%s", hostPort, nat())
	}
	hostA.must(t, func() error {
		n, err := New(cfgA)
		if err != nil {
			return err
		}
		return n.Teardown(ctx, "uid-"+podA.name, podA.path)
	})
	if rules := nat(); strings.Contains(rules, fmt.Sprintf("--dport %d", hostPort)) {
		t.Errorf("the hostPort rule outlived Teardown:\n%s", rules)
	}
}

// TestSetupAfterNetnsRecreated: the cache says the pod is set up, but its
// netns was replaced (a reboot, a recreated sandbox); Setup gives the new
// netns an interface and does not leak the old address.
func TestSetupAfterNetnsRecreated(t *testing.T) {
	requireNetAdmin(t)
	ctx := ctxT(t)
	host, pod := newNS(t), newNS(t)
	cfg := testConfig(t, "10.250.5.0/24", "10.250.0.0/16", "")
	var n *Network
	host.must(t, func() (err error) {
		if n, err = New(cfg); err != nil {
			return err
		}
		_, err = n.Setup(ctx, "uid-a", "default", "a", pod.path, nil)
		return err
	})
	run(t, "ip", "netns", "del", pod.name)
	run(t, "ip", "netns", "add", pod.name)
	var ip netip.Addr
	host.must(t, func() (err error) {
		ip, err = n.Setup(ctx, "uid-a", "default", "a", pod.path, nil)
		return err
	})
	if !hasAddress(pod.path, ip) {
		t.Fatalf("the recreated netns has no %s with %v", podInterface, ip)
	}
	if got := allocated(t, cfg); !slices.Equal(got, []netip.Addr{ip}) {
		t.Fatalf("host-local holds %v, want only %v", got, ip)
	}
}

// TestConcurrentSetup sets up pods at once, as the agent does when many
// pods arrive together.
func TestConcurrentSetup(t *testing.T) {
	requireNetAdmin(t)
	ctx := ctxT(t)
	host := newNS(t)
	cfg := testConfig(t, "10.250.6.0/24", "10.250.0.0/16", "")
	const pods = 8
	nss := make([]ns, pods)
	for i := range nss {
		nss[i] = newNS(t)
	}
	var n *Network
	host.must(t, func() (err error) {
		n, err = New(cfg)
		return err
	})
	ips := make([]netip.Addr, pods)
	errs := make(chan error, pods)
	for i := range pods {
		go func() {
			errs <- host.do(func() (err error) {
				ips[i], err = n.Setup(ctx, fmt.Sprintf("uid-%d", i), "default", fmt.Sprint(i), nss[i].path, nil)
				return err
			})
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		return
	}
	if got := allocated(t, cfg); !slices.Equal(got, sortedAddrs(slices.Clone(ips)...)) || len(slices.Compact(got)) != pods {
		t.Fatalf("host-local holds %v, want the %d distinct pod IPs %v", got, pods, ips)
	}
	eventually(t, 10*time.Second, "first pod pings the last", func() error { return ping(nss[0], ips[pods-1]) })
}

// remoteOf connects from ns to ln (or to addr, when given) and returns the
// source address ln's side saw.
func remoteOf(t *testing.T, from ns, ln net.Listener, addr ...string) netip.Addr {
	t.Helper()
	target := ln.Addr().String()
	if len(addr) > 0 {
		target = addr[0]
	}
	var c net.Conn
	eventually(t, 10*time.Second, "connecting to "+target+" from "+from.name, func() (err error) {
		c, err = from.dial(target)
		return err
	})
	defer c.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accepting the connection from %s: %v", from.name, err)
	}
	defer s.Close()
	return s.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
}

// TestOwnNetNSRefused: the node's own network namespace (a hostNetwork
// pod's) is never attached, and a teardown given it runs without it.
// Only the guard is exercised: a broken one would act on this machine's
// network, which a test must not risk.
func TestOwnNetNSRefused(t *testing.T) {
	if !ownNetNS("/proc/self/ns/net") || !ownNetNS(fmt.Sprintf("/proc/%d/ns/net", os.Getpid())) {
		t.Fatal("this process's network namespace is not recognised as its own")
	}
	if ownNetNS("") || ownNetNS("/proc/self/ns/ipc") || ownNetNS(filepath.Join(t.TempDir(), "missing")) {
		t.Fatal("something else taken for this process's network namespace")
	}
	if os.Geteuid() == 0 {
		name := fmt.Sprintf("skown%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v %s", err, out)
		}
		t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
		if ownNetNS("/run/netns/" + name) {
			t.Fatal("another network namespace taken for this process's")
		}
	}
}

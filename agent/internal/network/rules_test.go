package network

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// TestEnsureMasquerade applies the chains in a fresh namespace and reads
// them back with iptables itself.
func TestEnsureMasquerade(t *testing.T) {
	requireNetAdmin(t)
	host := newNS(t)
	cfg := testConfig(t, "10.250.4.0/24", "10.250.0.0/16", "")
	var n *Network
	host.must(t, func() (err error) {
		n, err = New(cfg)
		return err
	})
	// Someone else's rule already in FORWARD: Skiff's jump goes before it.
	if _, err := host.exec("iptables", "-A", "FORWARD", "-j", "DROP"); err != nil {
		t.Fatal(err)
	}
	bridgeNF := fileExists(bridgeNFCallPath)
	if bridgeNF {
		if _, err := host.exec("busybox", "sh", "-c", "echo 0 > "+bridgeNFCallPath); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 { // the second run must change nothing
		host.must(t, n.EnsureMasquerade)
	}

	for _, c := range ruleSet(cfg.ClusterCIDR, cfg.PodCIDR) {
		out, err := host.exec("iptables", "-t", c.Table, "-S", c.Chain)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := out, strings.Join(c.listing(), "\n")+"\n"; got != want {
			t.Errorf("iptables -t %s -S %s:\ngot:\n%swant:\n%s", c.Table, c.Chain, got, want)
		}
		out, err = host.exec("iptables", "-t", c.Table, "-S", c.From)
		if err != nil {
			t.Fatal(err)
		}
		jumps := strings.Count(out, "-j "+c.Chain)
		if jumps != 1 {
			t.Errorf("%s/%s has %d jumps to %s, want 1:\n%s", c.Table, c.From, jumps, c.Chain, out)
		}
		if c.First && !strings.Contains(strings.Split(out, "\n")[1], "-j "+c.Chain) {
			t.Errorf("the jump to %s is not first in %s:\n%s", c.Chain, c.From, out)
		}
	}
	if got, err := host.exec("cat", ipForwardPath); err != nil || strings.TrimSpace(got) != "1" {
		t.Errorf("ip_forward: got %q %v, want 1", got, err)
	}
	if bridgeNF {
		if got, err := host.exec("cat", bridgeNFCallPath); err != nil || strings.TrimSpace(got) != "1" {
			t.Errorf("bridge-nf-call-iptables: got %q %v, want 1", got, err)
		}
	}

	// Changed CIDRs replace the chain's rules.
	cfg2 := cfg
	cfg2.ClusterCIDR = netip.MustParsePrefix("10.251.0.0/16")
	cfg2.PodCIDR = netip.MustParsePrefix("10.251.4.0/24")
	host.must(t, (&Network{cfg: cfg2}).EnsureMasquerade)
	out, err := host.exec("iptables", "-t", "nat", "-S", PostroutingChain)
	if err != nil || strings.Contains(out, "10.250.") || !strings.Contains(out, "10.251.0.0/16") {
		t.Errorf("after a CIDR change: got %q %v, want only 10.251.0.0/16 rules", out, err)
	}

	// Cleanup removes chains and jumps and leaves the other rule; twice is fine.
	host.must(t, func() error {
		if err := Cleanup(); err != nil {
			return err
		}
		return Cleanup()
	})
	for _, c := range ruleSet(cfg.ClusterCIDR, cfg.PodCIDR) {
		if out, err := host.exec("iptables", "-t", c.Table, "-S", c.Chain); err == nil {
			t.Errorf("%s/%s still exists after Cleanup:\n%s", c.Table, c.Chain, out)
		}
		if out, _ := host.exec("iptables", "-t", c.Table, "-S", c.From); strings.Contains(out, c.Chain) {
			t.Errorf("%s/%s still jumps to %s after Cleanup:\n%s", c.Table, c.From, c.Chain, out)
		}
	}
	if out, _ := host.exec("iptables", "-S", "FORWARD"); !strings.Contains(out, "-A FORWARD -j DROP") {
		t.Errorf("Cleanup removed a rule that is not Skiff's:\n%s", out)
	}
}

// TestSyncRoutes checks which routes SyncRoutes adds, changes and removes,
// and that it never touches a route it did not make.
func TestSyncRoutes(t *testing.T) {
	requireNetAdmin(t)
	host := newNS(t)
	cfg := testConfig(t, "10.250.1.0/24", "10.250.0.0/16", "192.168.251.1")
	// A veth pair inside the namespace makes 192.168.251.0/24 on-link.
	link, peer := uniqueName("skla"), uniqueName("sklb")
	run(t, "ip", "-n", host.name, "link", "add", link, "type", "veth", "peer", "name", peer)
	run(t, "ip", "-n", host.name, "addr", "add", "192.168.251.1/24", "dev", link)
	run(t, "ip", "-n", host.name, "link", "set", link, "up")
	run(t, "ip", "-n", host.name, "link", "set", peer, "up")
	// Not Skiff's: must survive every SyncRoutes and Cleanup.
	run(t, "ip", "-n", host.name, "route", "add", "10.250.9.0/24", "via", "192.168.251.9", "proto", "static")

	var n *Network
	host.must(t, func() (err error) {
		n, err = New(cfg)
		return err
	})
	route := func(cidr, ip string) NodeRoute {
		return NodeRoute{PodCIDR: netip.MustParsePrefix(cidr), NodeIP: netip.MustParseAddr(ip)}
	}
	skiffRoutes := func() string {
		return run(t, "ip", "-n", host.name, "route", "show", "proto", fmt.Sprint(int(RouteProtocol)))
	}
	tests := []struct {
		name   string
		routes []NodeRoute
		want   []string
	}{
		{"add", []NodeRoute{
			route("10.250.1.0/24", "192.168.251.1"), // this node: skipped
			route("10.250.2.0/24", "192.168.251.2"),
			route("10.250.3.0/24", "192.168.251.3"),
			route("10.250.9.0/24", "192.168.251.4"), // has a foreign route: skipped
		}, []string{"10.250.2.0/24 via 192.168.251.2", "10.250.3.0/24 via 192.168.251.3"}},
		{"node moved and one gone", []NodeRoute{
			route("10.250.2.0/24", "192.168.251.5"),
		}, []string{"10.250.2.0/24 via 192.168.251.5"}},
		{"same again", []NodeRoute{
			route("10.250.2.0/24", "192.168.251.5"),
		}, []string{"10.250.2.0/24 via 192.168.251.5"}},
		{"none", nil, nil},
	}
	for _, tt := range tests {
		host.must(t, func() error { return n.SyncRoutes(tt.routes) })
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(skiffRoutes()), "\n") {
			if l != "" {
				got = append(got, strings.Join(strings.Fields(l)[:3], " "))
			}
		}
		if strings.Join(got, "; ") != strings.Join(tt.want, "; ") {
			t.Errorf("%s: Skiff routes: got %q, want %q", tt.name, got, tt.want)
		}
	}

	host.must(t, func() error { return n.SyncRoutes([]NodeRoute{route("10.250.2.0/24", "192.168.251.2")}) })
	host.must(t, Cleanup)
	if got := skiffRoutes(); got != "" {
		t.Errorf("Skiff routes after Cleanup: %q", got)
	}
	if got := run(t, "ip", "-n", host.name, "route", "show", "10.250.9.0/24"); !strings.Contains(got, "via 192.168.251.9") {
		t.Errorf("the foreign route is gone: %q", got)
	}
	if _, err := os.Stat(cfg.ConfDir); err != nil {
		t.Error(err)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

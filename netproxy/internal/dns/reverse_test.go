package dns

import (
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestReverse(t *testing.T) {
	up := startUpstream(t)
	addr := startServer(t, testCluster(), func(c *Config) { c.Upstreams = []string{up.addr} })
	rev := func(ip string) string {
		n, err := dns.ReverseAddr(ip)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	tests := []struct {
		name   string
		qname  string
		rcode  int
		answer []string
		auth   bool
	}{
		{"ClusterIP", rev("10.96.0.20"), dns.RcodeSuccess, []string{rev("10.96.0.20") + " 5 IN PTR web.default.svc.cluster.local."}, true},
		{"IPv6 ClusterIP", rev("fd00::21"), dns.RcodeSuccess, []string{rev("fd00::21") + " 5 IN PTR web6.default.svc.cluster.local."}, true},
		{"headless endpoint with hostname", rev("10.244.1.10"), dns.RcodeSuccess, []string{rev("10.244.1.10") + " 5 IN PTR db-0.db.default.svc.cluster.local."}, true},
		{"endpoint of a ClusterIP service", rev("10.244.1.5"), dns.RcodeSuccess, []string{rev("10.244.1.5") + " 5 IN PTR 10-244-1-5.web.default.svc.cluster.local."}, true},
		{"not-ready endpoint: forwarded", rev("10.244.1.12"), dns.RcodeNameError, nil, false},
		{"unknown address: forwarded", rev("192.0.2.1"), dns.RcodeNameError, nil, false},
		{"partial name: forwarded", "96.10.in-addr.arpa.", dns.RcodeNameError, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := query(t, addr, tc.qname, dns.TypePTR, queryOpts{})
			if resp.Rcode != tc.rcode || resp.Authoritative != tc.auth {
				t.Fatalf("rcode %s AA %v, want %s AA %v", dns.RcodeToString[resp.Rcode], resp.Authoritative, dns.RcodeToString[tc.rcode], tc.auth)
			}
			if got := rrs(resp.Answer); !slices.Equal(got, tc.answer) {
				t.Errorf("answer %q, want %q", got, tc.answer)
			}
			_, asked := up.names.Load(tc.qname)
			if asked == tc.auth {
				t.Errorf("forwarded: %v, want %v", asked, !tc.auth)
			}
		})
	}
}

func TestParseReverse(t *testing.T) {
	for _, s := range []string{"10.96.0.1", "0.0.0.0", "255.255.255.255", "fd00::21", "2001:db8:1:2:3:4:5:6", "::1"} {
		ip := netip.MustParseAddr(s)
		name, err := dns.ReverseAddr(s)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := parseReverse(name)
		if !ok || got != ip {
			t.Errorf("parseReverse(%q) = %v, %v; want %v", name, got, ok, ip)
		}
	}
	for _, name := range []string{"1.0.96.in-addr.arpa.", "1.0.96.10.10.in-addr.arpa.", "256.0.96.10.in-addr.arpa.", "01.0.96.10.in-addr.arpa.", "x.0.96.10.in-addr.arpa.", "1.ip6.arpa.", "example.org."} {
		if ip, ok := parseReverse(name); ok {
			t.Errorf("parseReverse(%q) = %v, want false", name, ip)
		}
	}
}

// TestUpstreamIsSelf: an upstream that is the server itself is dropped,
// instead of forwarding in a loop.
func TestUpstreamIsSelf(t *testing.T) {
	pc, ln := listenPair(t)
	self := ln.Addr().String()
	pc.Close()
	ln.Close()
	addr := startServer(t, testCluster(), func(c *Config) { c.Listen = []string{self}; c.Upstreams = []string{self} })
	if addr != self {
		t.Fatalf("bound %s, want %s", addr, self)
	}
	resp := query(t, addr, "example.org.", dns.TypeA, queryOpts{})
	if resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("rcode %s, want SERVFAIL (no upstream left)", dns.RcodeToString[resp.Rcode])
	}
}

// TestMaxForwards: beyond MaxForwards queries in flight upstream, a
// forwarded query is refused at once.
func TestMaxForwards(t *testing.T) {
	hole := blackholeAddr(t)
	addr := startServer(t, testCluster(), func(c *Config) {
		c.Upstreams = []string{hole}
		c.MaxForwards = 1
		c.ForwardTimeout = time.Second
	})
	var wg sync.WaitGroup
	rcodes := make([]int, 2)
	for i := range rcodes {
		wg.Go(func() {
			m := new(dns.Msg)
			m.SetQuestion("example.org.", dns.TypeA)
			c := dns.Client{Timeout: 5 * time.Second}
			resp, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Errorf("query %d: %v", i, err)
				rcodes[i] = -1
				return
			}
			rcodes[i] = resp.Rcode
		})
	}
	wg.Wait()
	slices.Sort(rcodes)
	if want := []int{dns.RcodeServerFailure, dns.RcodeRefused}; !slices.Equal(rcodes, want) {
		t.Errorf("rcodes %v, want %v (one waits for the silent upstream, one is refused)", rcodes, want)
	}
	// The cluster domain is not limited.
	if resp := query(t, addr, "web.default.svc.cluster.local.", dns.TypeA, queryOpts{}); len(resp.Answer) != 1 {
		t.Errorf("cluster name: %v", resp.Answer)
	}
}

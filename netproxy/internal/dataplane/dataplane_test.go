package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/netproxy/internal/rules"
)

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

// saveAll returns `iptables-save` of nat and filter in the namespace,
// without its comment lines and counters.
func saveAll(tb testing.TB, n ns) string {
	tb.Helper()
	var b strings.Builder
	for _, table := range []string{"nat", "filter"} {
		for l := range strings.Lines(n.mustExec(tb, "iptables-save", "-t", table)) {
			if !strings.HasPrefix(l, "#") {
				b.WriteString(counters.ReplaceAllString(l, "[0:0]"))
			}
		}
	}
	return b.String()
}

// addForeign adds chains and rules that are not netproxy's.
func addForeign(tb testing.TB, n ns) {
	tb.Helper()
	for _, args := range [][]string{
		{"-t", "nat", "-N", "FOO"},
		{"-t", "nat", "-A", "FOO", "-p", "tcp", "-j", "RETURN"},
		{"-t", "nat", "-A", "PREROUTING", "-s", "192.0.2.1/32", "-j", "FOO"},
		{"-t", "nat", "-N", "SKIFF-POSTROUTING"},
		{"-t", "nat", "-A", "POSTROUTING", "-j", "SKIFF-POSTROUTING"},
		{"-t", "filter", "-N", "FOO"},
		{"-t", "filter", "-A", "FOO", "-j", "RETURN"},
		{"-t", "filter", "-A", "INPUT", "-s", "192.0.2.1/32", "-j", "FOO"},
		{"-t", "filter", "-A", "FORWARD", "-j", "FOO"},
	} {
		n.mustExec(tb, append([]string{"iptables"}, args...)...)
	}
}

// checkForeign fails unless addForeign's rules are all there.
func checkForeign(tb testing.TB, save string) {
	tb.Helper()
	for _, want := range []string{
		":FOO - [0:0]",
		"-A FOO -p tcp -j RETURN",
		"-A PREROUTING -s 192.0.2.1/32 -j FOO",
		"-A POSTROUTING -j SKIFF-POSTROUTING",
		"-A FOO -j RETURN",
		"-A INPUT -s 192.0.2.1/32 -j FOO",
		"-A FORWARD -j FOO",
	} {
		if !strings.Contains(save, want+"\n") {
			tb.Errorf("foreign line %q is gone; iptables-save:\n%s", want, save)
		}
	}
}

func testServices() []svc {
	return []svc{
		{name: "default/web:http", vip: netip.MustParseAddrPort("10.96.0.10:80"), eps: []netip.AddrPort{
			netip.MustParseAddrPort("172.31.2.2:8080"), netip.MustParseAddrPort("172.31.2.3:8080"), netip.MustParseAddrPort("172.31.2.4:8080"),
		}},
		{name: "default/dns:dns", vip: netip.MustParseAddrPort("10.96.0.53:53"), udp: true, eps: []netip.AddrPort{
			netip.MustParseAddrPort("172.31.2.2:5353"),
		}},
		{name: "default/empty:http", vip: netip.MustParseAddrPort("10.96.0.11:80")},
	}
}

func apply(tb testing.TB, n ns, d *Dataplane, rs ruleSet) {
	tb.Helper()
	nat, filter := rs.payloads()
	n.must(tb, func() error { return d.Apply(context.Background(), nat, filter, rs.natChains, rs.filterChains) })
}

func chainsIn(tb testing.TB, n ns, d *Dataplane, table string) []string {
	tb.Helper()
	var got []string
	n.must(tb, func() (err error) {
		got, err = d.Chains(table)
		return err
	})
	return got
}

// TestApplyIdempotent applies the same rules and jumps twice, and once
// more from a new Dataplane (a restart): iptables-save must not change,
// every jump must be there once and first, and foreign rules must stay.
func TestApplyIdempotent(t *testing.T) {
	requireRoot(t)
	node := newNS(t)
	addForeign(t, node)
	rs := genRules(testServices())
	d := newDataplane(t)

	apply(t, node, d, rs)
	node.must(t, d.EnsureJumps)
	first := saveAll(t, node)

	node.must(t, d.EnsureJumps)
	apply(t, node, d, rs)
	if second := saveAll(t, node); second != first {
		t.Errorf("second apply changed iptables-save:\nfirst:\n%s\nsecond:\n%s", first, second)
	}
	restarted := newDataplane(t)
	node.must(t, restarted.EnsureJumps)
	apply(t, node, restarted, rs)
	if third := saveAll(t, node); third != first {
		t.Errorf("apply after a restart changed iptables-save:\nfirst:\n%s\nthird:\n%s", first, third)
	}

	checkForeign(t, first)
	for _, j := range jumps {
		out := node.mustExec(t, "iptables", "-t", j.table, "-S", j.from)
		want := "-A " + j.from + " " + strings.Join(j.spec(), " ")
		want = strings.Replace(want, JumpComment, `"`+JumpComment+`"`, 1)
		if n := strings.Count(out, want+"\n"); n != 1 {
			t.Errorf("%s/%s: %d copies of %q, want 1:\n%s", j.table, j.from, n, want, out)
		}
		// Ours come before the foreign rules appended earlier.
		if i, k := strings.Index(out, want), strings.Index(out, "FOO"); k >= 0 && i > k {
			t.Errorf("%s/%s: the jump to %s comes after a foreign rule:\n%s", j.table, j.from, j.to, out)
		}
	}
	if got := chainsIn(t, node, d, "nat"); !slices.Equal(got, rs.natChains) {
		t.Errorf("nat chains: got %v, want %v", got, rs.natChains)
	}
	if got := chainsIn(t, node, d, "filter"); !slices.Equal(got, rs.filterChains) {
		t.Errorf("filter chains: got %v, want %v", got, rs.filterChains)
	}
	for _, want := range []string{
		"-A SKP-SERVICES -d 10.96.0.10/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/web:http cluster IP\" -j " + testServices()[0].svcChain(),
		"-A SKP-SERVICES -d 10.96.0.11/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/empty:http cluster IP\" -j REJECT --reject-with icmp-port-unreachable",
		"-m statistic --mode random --probability 0.33333333349 -j ",
		"-j DNAT --to-destination 172.31.2.4:8080",
	} {
		if !strings.Contains(first, want) {
			t.Errorf("iptables-save lacks %q:\n%s", want, first)
		}
	}
}

// TestApplyRemovesStaleChains shrinks the rule set, from the same
// Dataplane and from a new one, and after ApplyPartial.
func TestApplyRemovesStaleChains(t *testing.T) {
	requireRoot(t)
	all := testServices()
	small := genRules(all[1:2])
	tests := []struct {
		name string
		// before writes the big rule set; it returns the Dataplane that
		// then applies the small one.
		before func(t *testing.T, node ns) *Dataplane
	}{
		{"same dataplane", func(t *testing.T, node ns) *Dataplane {
			d := newDataplane(t)
			apply(t, node, d, genRules(all))
			return d
		}},
		{"after a restart", func(t *testing.T, node ns) *Dataplane {
			apply(t, node, newDataplane(t), genRules(all))
			return newDataplane(t)
		}},
		{"after ApplyPartial", func(t *testing.T, node ns) *Dataplane {
			d := newDataplane(t)
			apply(t, node, d, genRules(all[1:]))
			// A partial update adds web's chains without declaring the rest.
			before, _ := genRules(all[1:]).payloads()
			after, _ := genRules(all).payloads()
			partial, err := Changes(before, after)
			if err != nil {
				t.Fatal(err)
			}
			node.must(t, func() error { return d.ApplyPartial(context.Background(), partial, nil) })
			return d
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node := newNS(t)
			addForeign(t, node)
			d := tt.before(t, node)
			if got := chainsIn(t, node, d, "nat"); len(got) <= len(small.natChains) {
				t.Fatalf("the big rule set is not there: nat chains %v", got)
			}
			node.must(t, d.EnsureJumps)
			apply(t, node, d, small)
			if got := chainsIn(t, node, d, "nat"); !slices.Equal(got, small.natChains) {
				t.Errorf("nat chains: got %v, want %v", got, small.natChains)
			}
			if got := chainsIn(t, node, d, "filter"); !slices.Equal(got, small.filterChains) {
				t.Errorf("filter chains: got %v, want %v", got, small.filterChains)
			}
			save := saveAll(t, node)
			checkForeign(t, save)
			if strings.Contains(save, "10.96.0.10") || strings.Contains(save, "10.96.0.11") {
				t.Errorf("rules of removed services are left:\n%s", save)
			}
			// The jump targets survive a rule set that omits them.
			apply(t, node, d, genRules(nil))
			apply(t, node, d, ruleSet{})
			if got, want := chainsIn(t, node, d, "filter"), []string{"SKP-EXTERNAL", "SKP-FORWARD", "SKP-SERVICES"}; !slices.Equal(got, want) {
				t.Errorf("filter chains after an empty rule set: got %v, want %v", got, want)
			}
			if got, want := chainsIn(t, node, d, "nat"), []string{"SKP-POSTROUTING", "SKP-SERVICES"}; !slices.Equal(got, want) {
				t.Errorf("nat chains after an empty rule set: got %v, want %v", got, want)
			}
		})
	}
}

// TestApplyErrors: a payload iptables-restore refuses leaves the table as
// it was and names the line; a malformed one is refused before running.
func TestApplyErrors(t *testing.T) {
	requireRoot(t)
	node := newNS(t)
	d := newDataplane(t)
	rs := genRules(testServices())
	apply(t, node, d, rs)
	before := saveAll(t, node)

	nat, filter := genRules(testServices()[:1]).payloads()
	bad := strings.Replace(string(nat), "-j MASQUERADE", "-m tcp --no-such-option -j MASQUERADE", 1)
	badText := "-A SKP-POSTROUTING -m tcp --no-such-option -j MASQUERADE"
	badLine := slices.Index(strings.Split(bad, "\n"), badText) + 1
	var err error
	node.must(t, func() error {
		err = d.Apply(context.Background(), []byte(bad), filter, rs.natChains, rs.filterChains)
		return nil
	})
	var re *RestoreError
	if !errors.As(err, &re) || !errors.Is(err, ErrRestore) {
		t.Fatalf("got %v, want a RestoreError", err)
	}
	if re.Table != "nat" || re.Line != badLine || re.Text != badText || !strings.Contains(re.Stderr, "--no-such-option") {
		t.Errorf("got table %q line %d %q, want nat line %d: %v", re.Table, re.Line, re.Text, badLine, err)
	}
	if after := saveAll(t, node); after != before {
		t.Errorf("a failed restore changed the tables:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	// The Dataplane still works (and still knows what to delete).
	apply(t, node, d, genRules(nil))
	if got := chainsIn(t, node, d, "nat"); !slices.Equal(got, genRules(nil).natChains) {
		t.Errorf("nat chains: got %v, want %v", got, genRules(nil).natChains)
	}

	for _, tt := range []struct {
		name        string
		nat, filter []byte
		natChains   []string
	}{
		{"filter payload as nat", filter, filter, nil},
		{"no table line", []byte(":SKP-X - [0:0]\nCOMMIT\n"), nil, nil},
		{"foreign chain listed", nat, filter, []string{"FOO"}},
	} {
		err := d.Apply(context.Background(), tt.nat, tt.filter, tt.natChains, nil)
		if !errors.Is(err, ErrBadPayload) {
			t.Errorf("%s: got %v, want ErrBadPayload", tt.name, err)
		}
	}
}

// TestTraffic sends a connection from the client namespace through the
// node to a VIP and checks it reaches the server.
func TestTraffic(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	l.server.serve(t, "172.31.2.2:8080", "a")
	web := svc{name: "default/web:http", vip: netip.MustParseAddrPort("10.96.0.10:80"), eps: []netip.AddrPort{netip.MustParseAddrPort("172.31.2.2:8080")}}

	// Without rules the VIP is a black hole.
	if got, err := l.client.fetch("10.96.0.10:80", 300*time.Millisecond); err == nil {
		t.Fatalf("the VIP answers %q without rules", got)
	}
	d := newDataplane(t)
	apply(t, l.node, d, genRules([]svc{web}))
	l.node.must(t, d.EnsureJumps)
	got, err := l.client.fetch("10.96.0.10:80", 2*time.Second)
	if err != nil || got != "a" {
		t.Fatalf("through the VIP: got %q, %v, want a", got, err)
	}
	// The node itself reaches it too (nat OUTPUT).
	got, err = l.node.fetch("10.96.0.10:80", 2*time.Second)
	if err != nil || got != "a" {
		t.Fatalf("from the node: got %q, %v, want a", got, err)
	}
}

// TestRejectWithoutEndpoints: a service with no endpoints refuses a
// connection at once.
func TestRejectWithoutEndpoints(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	empty := svc{name: "default/empty:http", vip: netip.MustParseAddrPort("10.96.0.11:80")}

	dial := func() (time.Duration, error) {
		start := time.Now()
		err := l.client.do(func() error {
			c, err := net.DialTimeout("tcp4", "10.96.0.11:80", 300*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err
		})
		return time.Since(start), err
	}
	// Without the REJECT the connection hangs (so this test can fail).
	if took, err := dial(); err == nil || errors.Is(err, syscall.ECONNREFUSED) || took < 250*time.Millisecond {
		t.Fatalf("without rules: got %v after %v, want a timeout", err, took)
	}
	d := newDataplane(t)
	apply(t, l.node, d, genRules([]svc{empty}))
	l.node.must(t, d.EnsureJumps)
	for _, from := range []ns{l.client, l.node} { // forwarded, and local (OUTPUT)
		start := time.Now()
		err := from.do(func() error {
			c, err := net.DialTimeout("tcp4", "10.96.0.11:80", 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		took := time.Since(start)
		if !errors.Is(err, syscall.ECONNREFUSED) || took > 200*time.Millisecond {
			t.Errorf("from %s: got %v after %v, want ECONNREFUSED within 200ms", from.name, err, took)
		}
	}
}

// TestEndpointsChangeUnderLoad changes a service's endpoints over and over
// (Apply, Sync and ApplyPartial in turn) while a client connects to it
// without a pause: no connection may fail.
func TestEndpointsChangeUnderLoad(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	l.server.serve(t, "172.31.2.2:8080", "a")
	l.server.serve(t, "172.31.2.3:8080", "b")
	a, b := netip.MustParseAddrPort("172.31.2.2:8080"), netip.MustParseAddrPort("172.31.2.3:8080")
	other := bulk(50, 2) // unrelated services, so the payloads are not trivial
	web := func(eps ...netip.AddrPort) svc {
		return svc{name: "default/web:http", vip: netip.MustParseAddrPort("10.96.0.10:80"), eps: eps}
	}
	d := newDataplane(t)
	cur := web(a)
	apply(t, l.node, d, genRules(append([]svc{cur}, other...)))
	l.node.must(t, d.EnsureJumps)

	var (
		stop           atomic.Bool
		fetches, fails atomic.Int64
		mu             sync.Mutex
		seen           = map[string]int{}
		firstErr       error
		wg             sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			got, err := l.client.fetch("10.96.0.10:80", 2*time.Second)
			fetches.Add(1)
			mu.Lock()
			if err != nil {
				fails.Add(1)
				if firstErr == nil {
					firstErr = err
				}
			} else {
				seen[got]++
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() { stop.Store(true); wg.Wait() })

	sets := [][]netip.AddrPort{{a, b}, {b}, {a, b}, {a}}
	for i := range 40 {
		next := web(sets[i%len(sets)]...)
		rs := genRules(append([]svc{next}, other...))
		switch i % 3 {
		case 0:
			apply(t, l.node, d, rs)
		case 1:
			nat, filter := rs.payloads()
			l.node.must(t, func() error { return d.Sync(context.Background(), nat, filter, rs.natChains, rs.filterChains) })
		default:
			before, _ := genRules(append([]svc{cur}, other...)).payloads()
			after, _ := rs.payloads()
			partial, err := Changes(before, after)
			if err != nil {
				t.Fatal(err)
			}
			l.node.must(t, func() error { return d.ApplyPartial(context.Background(), partial, nil) })
		}
		cur = next
		// Let the client through at least once per rule set.
		for n := fetches.Load(); fetches.Load() < n+2; {
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if fails.Load() != 0 {
		t.Errorf("%d of %d connections failed; first: %v", fails.Load(), fetches.Load(), firstErr)
	}
	if seen["a"] == 0 || seen["b"] == 0 {
		t.Errorf("answers: %v, want both endpoints", seen)
	}
	t.Logf("%d connections during 40 updates: %v", fetches.Load(), seen)
	// Changes' -X lines removed the endpoint chains no longer used.
	rs := genRules(append([]svc{cur}, other...))
	if got := chainsIn(t, l.node, d, "nat"); !slices.Equal(got, rs.natChains) {
		t.Errorf("nat chains: got %d, want %d", len(got), len(rs.natChains))
	}
}

// TestFlushConntrackUDP checks that the conntrack entries of a UDP service
// go, by VIP and by endpoint, and that others stay.
func TestFlushConntrackUDP(t *testing.T) {
	requireRoot(t)
	l := newLab(t)
	for _, addr := range []string{"172.31.2.2:5353", "172.31.2.3:5353"} {
		var pc net.PacketConn
		l.server.must(t, func() (err error) {
			pc, err = net.ListenPacket("udp4", addr)
			return err
		})
		t.Cleanup(func() { pc.Close() })
		go func() {
			buf := make([]byte, 512)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
	}
	dns := svc{name: "default/dns:dns", vip: netip.MustParseAddrPort("10.96.0.53:53"), udp: true,
		eps: []netip.AddrPort{netip.MustParseAddrPort("172.31.2.2:5353")}}
	d := newDataplane(t)
	apply(t, l.node, d, genRules([]svc{dns}))
	l.node.must(t, d.EnsureJumps)

	exchange := func(addr string) {
		t.Helper()
		l.client.must(t, func() error {
			c, err := net.Dial("udp4", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write([]byte("ping")); err != nil {
				return err
			}
			buf := make([]byte, 16)
			if _, err := c.Read(buf); err != nil {
				return fmt.Errorf("udp %s: %w", addr, err)
			}
			return nil
		})
	}
	entries := func(args ...string) int {
		out := l.node.mustExec(t, append([]string{"conntrack", "-L", "-p", "udp"}, args...)...)
		n := 0
		for l := range strings.Lines(out) {
			if strings.HasPrefix(l, "udp") {
				n++
			}
		}
		return n
	}
	flush := func(ip string) {
		t.Helper()
		l.node.must(t, func() error { return FlushConntrackUDP([]netip.Addr{netip.MustParseAddr(ip)}) })
	}

	exchange("10.96.0.53:53")
	exchange("172.31.2.3:5353") // not a service: must survive
	if n := entries("--orig-dst", "10.96.0.53"); n != 1 {
		t.Fatalf("conntrack entries to the VIP: got %d, want 1", n)
	}
	flush("10.96.0.53")
	if n := entries("--orig-dst", "10.96.0.53"); n != 0 {
		t.Errorf("after flushing the VIP: %d entries to it, want 0", n)
	}
	exchange("10.96.0.53:53")
	flush("172.31.2.2") // the endpoint: its entries are found by reply source
	if n := entries("--orig-dst", "10.96.0.53"); n != 0 {
		t.Errorf("after flushing the endpoint: %d entries to the VIP, want 0", n)
	}
	if n := entries("--orig-dst", "172.31.2.3"); n != 1 {
		t.Errorf("the unrelated entry: got %d, want 1", n)
	}
	flush("10.96.0.99") // nothing to delete is fine
}

// TestCleanup removes everything netproxy made and nothing else.
func TestCleanup(t *testing.T) {
	requireRoot(t)
	node := newNS(t)
	addForeign(t, node)
	d := newDataplane(t)
	apply(t, node, d, genRules(testServices()))
	node.must(t, d.EnsureJumps)
	// A jump of an older version (other spelling) goes too.
	node.mustExec(t, "iptables", "-t", "nat", "-A", "OUTPUT", "-j", "SKP-SERVICES")

	node.must(t, Cleanup)
	save := saveAll(t, node)
	if strings.Contains(save, "SKP-") {
		t.Errorf("SKP- left after Cleanup:\n%s", save)
	}
	checkForeign(t, save)
	node.must(t, Cleanup)
	if again := saveAll(t, node); again != save {
		t.Errorf("a second Cleanup changed the tables:\n%s\n%s", save, again)
	}
	// A new start works on the cleaned tables.
	d = newDataplane(t)
	apply(t, node, d, genRules(testServices()))
	node.must(t, d.EnsureJumps)
}

func TestDeletionPayload(t *testing.T) {
	got := string(deletion("nat", []string{`-A OUTPUT -m comment --comment "skiff service proxy" -j SKP-SERVICES`}, []string{"SKP-A", "SKP-B"}))
	want := "*nat\n-D OUTPUT -m comment --comment \"skiff service proxy\" -j SKP-SERVICES\n-F SKP-A\n-F SKP-B\n-X SKP-A\n-X SKP-B\nCOMMIT\n"
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	declared, deleted := scanChains([]byte("*nat\n:PREROUTING ACCEPT [0:0]\n:SKP-A - [0:0]\n:FOO - [0:0]\n-A SKP-A -j SKP-B\n-X SKP-C\n-X FOO\nCOMMIT\n"))
	if !slices.Equal(declared, []string{"SKP-A"}) || !slices.Equal(deleted, []string{"SKP-C"}) {
		t.Errorf("scanChains: got %v %v, want [SKP-A] [SKP-C]", declared, deleted)
	}
	for _, tt := range []struct {
		n    int
		want string
	}{{1, "a"}, {2, "b"}, {3, ""}, {0, ""}} {
		if got := payloadLine([]byte("a\nb\n"), tt.n); got != tt.want {
			t.Errorf("payloadLine(%d): got %q, want %q", tt.n, got, tt.want)
		}
	}
}

// TestSync checks that Sync leaves the tables exactly as Apply does, over
// a series of rule sets, and that it writes nothing when nothing changed.
func TestSync(t *testing.T) {
	requireRoot(t)
	synced, applied, tabled := newNS(t), newNS(t), newNS(t)
	ds, da, dt := newDataplane(t), newDataplane(t), newDataplane(t)
	all := testServices()
	moved := slices.Clone(all)
	moved[0].eps = []netip.AddrPort{netip.MustParseAddrPort("172.31.2.2:8080"), netip.MustParseAddrPort("172.31.2.9:8080")}
	steps := []struct {
		name string
		svcs []svc
	}{
		{"first (full)", all},
		{"one endpoint moved", moved},
		{"same again", moved},
		{"service removed, one added", append(moved[:1:1], svc{name: "default/new:http", vip: netip.MustParseAddrPort("10.96.0.12:80"),
			eps: []netip.AddrPort{netip.MustParseAddrPort("172.31.2.7:80")}})},
		{"no services", nil},
		{"all back", all},
	}
	for i, st := range steps {
		rs := genRules(st.svcs)
		nat, filter := rs.payloads()
		synced.must(t, func() error { return ds.Sync(context.Background(), nat, filter, rs.natChains, rs.filterChains) })
		apply(t, applied, da, rs)
		// SyncTable, given the nat payload by chain (ApplyTable first).
		p, err := parseTable(nat)
		if err != nil {
			t.Fatal(err)
		}
		table := Table{Chains: p.order, Rules: p.rules}
		tabled.must(t, func() error {
			if i == 0 {
				return dt.ApplyTable(context.Background(), nat, table, filter, rs.natChains, rs.filterChains)
			}
			return dt.SyncTable(context.Background(), nat, table, filter, rs.natChains, rs.filterChains)
		})
		if i == 0 {
			synced.must(t, ds.EnsureJumps)
			applied.must(t, da.EnsureJumps)
			tabled.must(t, dt.EnsureJumps)
		}
		want := saveAll(t, applied)
		if got := saveAll(t, synced); got != want {
			t.Fatalf("%s: after Sync:\n%s\nafter Apply:\n%s", st.name, got, want)
		}
		if got := saveAll(t, tabled); got != want {
			t.Fatalf("%s: after SyncTable:\n%s\nafter Apply:\n%s", st.name, got, want)
		}
	}
	// A rule someone slipped into a chain survives a Sync that changes
	// nothing (nothing is written), and the next Apply repairs it.
	rs := genRules(all)
	nat, filter := rs.payloads()
	synced.mustExec(t, "iptables", "-t", "nat", "-A", "SKP-MARK-MASQ", "-j", "RETURN")
	synced.must(t, func() error { return ds.Sync(context.Background(), nat, filter, rs.natChains, rs.filterChains) })
	if out := synced.mustExec(t, "iptables", "-t", "nat", "-S", "SKP-MARK-MASQ"); !strings.Contains(out, "-j RETURN") {
		t.Errorf("an unchanged Sync rewrote SKP-MARK-MASQ:\n%s", out)
	}
	apply(t, synced, ds, rs)
	if got, want := saveAll(t, synced), saveAll(t, applied); got != want {
		t.Errorf("Apply did not repair the drift:\n%s\nwant:\n%s", got, want)
	}
}

// A table that does not fit its payload is not trusted: ApplyTable and
// SyncTable then read the payload, as Apply and Sync do.
func TestBadTablesAreIgnored(t *testing.T) {
	nat := []byte("*nat\n:SKP-A - [0:0]\n:SKP-B - [0:0]\n-A SKP-A -j RETURN\n-A SKP-B -j RETURN\nCOMMIT\n")
	ra, rb := [][]byte{[]byte("-A SKP-A -j RETURN")}, [][]byte{[]byte("-A SKP-B -j RETURN")}
	if p := (Table{Chains: []string{"SKP-A", "SKP-B"}, Rules: map[string][][]byte{"SKP-A": ra, "SKP-B": rb}}).parsed(nat); p == nil {
		t.Fatal("the table that fits was refused")
	}
	for name, table := range map[string]Table{
		"empty":                        {},
		"rules of an undeclared chain": {Chains: []string{"SKP-A", "SKP-A"}, Rules: map[string][][]byte{"SKP-A": ra, "SKP-C": rb}},
		"a declared chain missing":     {Chains: []string{"SKP-A", "SKP-B"}, Rules: map[string][][]byte{"SKP-A": ra}},
		"a chain declared twice":       {Chains: []string{"SKP-A", "SKP-A"}, Rules: map[string][][]byte{"SKP-A": ra, "SKP-B": rb}},
		"fewer rules than the payload": {Chains: []string{"SKP-A", "SKP-B"}, Rules: map[string][][]byte{"SKP-A": ra, "SKP-B": nil}},
		"not a Skiff chain":            {Chains: []string{"FOO", "SKP-B"}, Rules: map[string][][]byte{"FOO": ra, "SKP-B": rb}},
	} {
		if p := table.parsed(nat); p != nil {
			t.Errorf("%s: taken for the payload's table", name)
		}
	}

	requireRoot(t)
	n := newNS(t)
	d := newDataplane(t)
	n.must(t, func() error {
		return d.ApplyTable(context.Background(), nat, Table{}, nil, []string{"SKP-A", "SKP-B"}, nil)
	})
	if out := n.mustExec(t, "iptables", "-t", "nat", "-S"); !strings.Contains(out, "-A SKP-A -j RETURN") || !strings.Contains(out, "-A SKP-B -j RETURN") {
		t.Fatalf("ApplyTable with an empty table did not write the payload:\n%s", out)
	}
	moved := []byte(strings.Replace(string(nat), "-A SKP-B -j RETURN", "-A SKP-B -j ACCEPT", 1))
	n.must(t, func() error {
		return d.SyncTable(context.Background(), moved, Table{}, nil, []string{"SKP-A", "SKP-B"}, nil)
	})
	if out := n.mustExec(t, "iptables", "-t", "nat", "-S"); !strings.Contains(out, "-A SKP-A -j RETURN") || !strings.Contains(out, "-A SKP-B -j ACCEPT") {
		t.Fatalf("SyncTable with an empty table did not write the change:\n%s", out)
	}
}

// SyncTable driven by a rules.Cache, whose results share the lines of
// the services it did not render again, leaves the kernel as Apply of
// the same rule set does.
func TestSyncTableWithCache(t *testing.T) {
	requireRoot(t)
	tabled, applied := newNS(t), newNS(t)
	dt, da := newDataplane(t), newDataplane(t)
	var c rules.Cache
	in := bulkInput(40, 3, false, netip.AddrPort{})
	for step, change := range []string{"first", "one endpoint moved", "a service removed", "the service back", "nothing"} {
		switch step {
		case 1:
			sl := in.Slices[5].DeepCopy()
			sl.Endpoints[0].Addresses = []string{"10.192.0.9"}
			in.Slices = slices.Clone(in.Slices)
			in.Slices[5] = sl
		case 2:
			in.Services = slices.Delete(slices.Clone(in.Services), 7, 8)
		case 3:
			in.Services = bulkInput(40, 3, false, netip.AddrPort{}).Services
		}
		res := c.Compute(in)
		if Table(res.NATTable).parsed(res.NAT) == nil {
			t.Fatalf("%s: the cache's table does not fit its payload (SyncTable would read the payload)", change)
		}
		tabled.must(t, func() error {
			if step == 0 {
				return dt.ApplyTable(context.Background(), res.NAT, Table(res.NATTable), res.Filter, res.NATChains, res.FilterChains)
			}
			return dt.SyncTable(context.Background(), res.NAT, Table(res.NATTable), res.Filter, res.NATChains, res.FilterChains)
		})
		applied.must(t, func() error {
			return da.Apply(context.Background(), res.NAT, res.Filter, res.NATChains, res.FilterChains)
		})
		if got, want := saveAll(t, tabled), saveAll(t, applied); got != want {
			t.Fatalf("%s: after SyncTable:\n%s\nafter Apply:\n%s", change, got, want)
		}
	}
}

// serveRemote answers every TCP connection to addr in the namespace with
// the address the connection comes from.
func (n ns) serveRemote(tb testing.TB, addr string) {
	tb.Helper()
	n.serveFunc(tb, addr, func(c net.Conn) string {
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		return host
	})
}

// TestClusterIPMasquerade: with rules.Compute's rules on the node, a
// client outside the cluster CIDR reaches a cluster IP masqueraded (the
// endpoint sees the node's address), even with the node's FORWARD policy
// DROP, and a pod reaches it as itself (its forwarding is the pod
// network's business, ACCEPT here), whether the masquerading is decided
// per service (no service CIDR) or by one conntrack rule (service CIDR).
func TestClusterIPMasquerade(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name                     string
		clusterCIDR, serviceCIDR string
		want                     string
	}{
		{"outsider, per-service rule", "10.128.0.0/10", "", "172.31.2.1"},
		{"outsider, service CIDR", "10.128.0.0/10", "10.96.0.0/12", "172.31.2.1"},
		{"pod, per-service rule", "172.31.1.0/24", "", "172.31.1.2"},
		{"pod, service CIDR", "172.31.1.0/24", "10.96.0.0/12", "172.31.1.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			l.server.serveRemote(t, "172.31.2.2:8080")
			in := bulkInput(1, 1, false, netip.MustParseAddrPort("172.31.2.2:8080"))
			in.ClusterCIDR, in.ServiceCIDR = netip.MustParsePrefix(tc.clusterCIDR), netip.Prefix{}
			if tc.serviceCIDR != "" {
				in.ServiceCIDR = netip.MustParsePrefix(tc.serviceCIDR)
			}
			res := rules.Compute(in)
			d := newDataplane(t)
			l.node.must(t, func() error {
				return d.Apply(context.Background(), res.NAT, res.Filter, res.NATChains, res.FilterChains)
			})
			l.node.must(t, d.EnsureJumps)
			if tc.want == "172.31.2.1" {
				l.node.mustExec(t, "iptables", "-P", "FORWARD", "DROP")
			}
			got, err := l.client.fetch(in.Services[0].Spec.ClusterIP+":80", 2*time.Second)
			if err != nil || got != tc.want {
				t.Fatalf("the endpoint sees the client as %q (%v), want %s", got, err, tc.want)
			}
		})
	}
}

package rules

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The restore benchmarks load what Compute writes into the kernel, each
// run in a fresh network namespace of its own:
//
//	go test -run '^$' -bench Restore -benchtime 1x ./netproxy/internal/rules/
//
// The inputs are scale(n, 10): n services × 10 endpoints over 1,000 nodes,
// one in ten a NodePort, one in ten with ClientIP affinity. Each
// benchmark runs with iptables-restore (nf_tables on Debian 12) and, when
// installed, iptables-legacy-restore.

func restoreBins(b *testing.B) []string {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root (network namespaces, iptables)")
	}
	var bins []string
	for _, bin := range []string{"iptables-restore", "iptables-legacy-restore"} {
		if _, err := exec.LookPath(bin); err == nil {
			bins = append(bins, bin)
		}
	}
	if len(bins) == 0 {
		b.Skip("no iptables-restore")
	}
	return bins
}

// restoreIn runs `bin --noflush --wait` with payload in namespace ns.
func restoreIn(tb testing.TB, ns, bin string, payload []byte) {
	tb.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "--noflush", "--wait")
	cmd.Stdin = bytes.NewReader(payload)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("%s in %s: %v\n%s", bin, ns, err, out)
	}
}

// natRuleCount returns how many rules the nat table of ns holds in SKP-
// chains, as bin's iptables-save lists them.
func natRuleCount(tb testing.TB, ns, bin string) int {
	tb.Helper()
	save := strings.Replace(bin, "-restore", "-save", 1)
	out, err := exec.Command("ip", "netns", "exec", ns, save, "-t", "nat").Output()
	if err != nil {
		tb.Fatalf("%s: %v", save, err)
	}
	return strings.Count(string(out), "\n-A SKP-")
}

// noAffinity is in without ClientIP affinity: every -m recent rule costs
// the kernel a walk over all affinity lists (one per endpoint of an
// affinity service), which dominates a full sync of scale(10000, 10).
func noAffinity(in Input) Input {
	out := in
	out.Services = nil
	for _, s := range in.Services {
		c := s.DeepCopy()
		c.Spec.SessionAffinity = ""
		out.Services = append(out.Services, c)
	}
	return out
}

// BenchmarkRestore is a full sync into empty tables (a node's first sync).
func BenchmarkRestore(b *testing.B) {
	for _, bin := range restoreBins(b) {
		for _, tc := range []struct {
			name string
			in   Input
		}{
			{"services=1000", scale(1000, 10)},
			{"services=10000", scale(10000, 10)},
			{"services=10000/no-affinity", noAffinity(scale(10000, 10))},
		} {
			b.Run(bin+"/"+tc.name, func(b *testing.B) {
				res := Compute(tc.in)
				want := strings.Count(string(res.NAT), "\n-A ")
				for range b.N {
					b.StopTimer()
					ns := newNetns(b)
					b.StartTimer()
					restoreIn(b, ns, bin, res.NAT)
					restoreIn(b, ns, bin, res.Filter)
					b.StopTimer()
					if got := natRuleCount(b, ns, bin); got != want {
						b.Fatalf("nat rules in the kernel: %d, want %d", got, want)
					}
					b.StartTimer()
				}
				b.ReportMetric(float64(len(res.NATChains)), "nat-chains")
				b.ReportMetric(float64(want), "nat-rules")
				b.ReportMetric(float64(len(res.NAT)), "nat-bytes")
			})
		}
	}
}

// BenchmarkRestoreResync re-applies the full 10,000-service payload over
// itself (what a resync of an unchanged rule set costs).
func BenchmarkRestoreResync(b *testing.B) {
	for _, bin := range restoreBins(b) {
		b.Run(bin+"/services=10000", func(b *testing.B) {
			res := Compute(scale(10000, 10))
			ns := newNetns(b)
			restoreIn(b, ns, bin, res.NAT)
			b.ResetTimer()
			for range b.N {
				restoreIn(b, ns, bin, res.NAT)
			}
		})
	}
}

// BenchmarkRestoreSingleChange installs 10,000 services, then applies
// only what changed (partialPayload: the changed chains declared, thus
// flushed, and refilled; gone chains deleted):
//
//   - endpoint: one endpoint of one service moves to another address:
//     its SVC chain alone;
//   - service-add: a new ClusterIP service (with affinity): its SVC chain
//     and the SKP-DST shard of its VIP (~40 rules); every other iteration
//     removes it again;
//   - dispatch-rewrite: SKP-SERVICES and every SKP-DST chain rewritten
//     (10,256 rules): what adding a service cost before SKP-SERVICES was
//     sharded.
//
// Each iteration alternates between the two states, so every apply is a
// real change.
func BenchmarkRestoreSingleChange(b *testing.B) {
	const n = 10000
	base := scale(n, 10)
	moved := scale(n, 10)
	moved.Slices = slices.Clone(moved.Slices)
	s := moved.Slices[5].DeepCopy()
	s.Endpoints[0].Addresses = []string{"10.99.0.1"}
	moved.Slices[5] = s
	// scale(n+2) without service n (a NodePort): base plus one ClusterIP
	// service with affinity.
	more := scale(n+2, 10)
	added := base
	added.Services = append(slices.Clone(base.Services), more.Services[n+1])
	added.Slices = append(slices.Clone(base.Slices), more.Slices[n+1])

	baseRes := Compute(base)
	var dispatch []string
	for _, c := range baseRes.NATChains {
		if c == ServicesChain || strings.HasPrefix(c, dstPrefix) {
			dispatch = append(dispatch, c)
		}
	}
	dispatchOnly := chainsOnly(b, baseRes.NAT, dispatch)
	for _, bin := range restoreBins(b) {
		for _, tc := range []struct {
			name string
			to   []byte
		}{
			{"endpoint", Compute(moved).NAT},
			{"service-add", Compute(added).NAT},
		} {
			b.Run(bin+"/"+tc.name, func(b *testing.B) {
				forward, back := partialPayload(b, baseRes.NAT, tc.to), partialPayload(b, tc.to, baseRes.NAT)
				ns := newNetns(b)
				restoreIn(b, ns, bin, baseRes.NAT)
				b.ResetTimer()
				for i := range b.N {
					if i%2 == 0 {
						restoreIn(b, ns, bin, forward)
					} else {
						restoreIn(b, ns, bin, back)
					}
				}
				b.StopTimer()
				b.ReportMetric(float64(strings.Count(string(forward), "\n:")), "chains")
				b.ReportMetric(float64(strings.Count(string(forward), "\n-A ")), "rules")
				state := baseRes.NAT
				if b.N%2 == 1 {
					state = tc.to
				}
				if got, want := natRuleCount(b, ns, bin), strings.Count(string(state), "\n-A "); got != want {
					b.Fatalf("nat rules in the kernel after the partial applies: %d, want %d", got, want)
				}
			})
		}
		b.Run(bin+"/dispatch-rewrite", func(b *testing.B) {
			ns := newNetns(b)
			restoreIn(b, ns, bin, baseRes.NAT)
			b.ResetTimer()
			for range b.N {
				restoreIn(b, ns, bin, dispatchOnly)
			}
			b.StopTimer()
			b.ReportMetric(float64(strings.Count(string(dispatchOnly), "\n-A ")), "rules")
		})
	}
}

// chains splits a payload into its declared chains (in order) and each
// chain's rules.
func chains(tb testing.TB, payload []byte) (table string, order []string, rules map[string][]string) {
	tb.Helper()
	rules = map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(payload))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			order = append(order, name)
			rules[name] = []string{}
		case strings.HasPrefix(l, "-A "):
			c := strings.Fields(l)[1]
			rules[c] = append(rules[c], l)
		}
	}
	return table, order, rules
}

// partialPayload turns a table holding from into one holding to: it
// declares and refills the chains that are new or differ, and flushes and
// deletes the chains that are gone (their referrers differ too, so they
// are rewritten in the same commit).
func partialPayload(tb testing.TB, from, to []byte) []byte {
	tb.Helper()
	table, _, old := chains(tb, from)
	_, order, rules := chains(tb, to)
	var changed, gone []string
	for _, c := range order {
		if or, ok := old[c]; !ok || !slices.Equal(or, rules[c]) {
			changed = append(changed, c)
		}
	}
	for c := range old {
		if _, ok := rules[c]; !ok {
			gone = append(gone, c)
		}
	}
	slices.Sort(gone)
	var b bytes.Buffer
	b.WriteString("*" + table + "\n")
	for _, c := range slices.Concat(changed, gone) {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, c := range changed {
		for _, r := range rules[c] {
			b.WriteString(r + "\n")
		}
	}
	for _, c := range gone {
		b.WriteString("-X " + c + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// chainsOnly is a payload that rewrites the given chains of payload alone.
func chainsOnly(tb testing.TB, payload []byte, names []string) []byte {
	tb.Helper()
	table, _, rules := chains(tb, payload)
	var b bytes.Buffer
	b.WriteString("*" + table + "\n")
	for _, c := range names {
		b.WriteString(":" + c + " - [0:0]\n")
	}
	for _, c := range names {
		for _, r := range rules[c] {
			b.WriteString(r + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

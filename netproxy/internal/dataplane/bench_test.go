package dataplane

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-iptables/iptables"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/skiff-sh/skiff/netproxy/internal/rules"
)

// The benchmarks write what netproxy/internal/rules computes for n
// ClusterIP services × eps ready endpoints, into a fresh network
// namespace:
//
//	go test -run '^$' -bench . ./netproxy/internal/dataplane/
//
// BenchmarkFullSyncPerRule/services=10000 (one iptables process per rule)
// alone takes about 4 minutes.

// benchNodes is how many nodes the endpoints of bulkInput are spread
// over, round robin; the benchmarks' node is node1. 10,000 services × 10
// endpoints put 100 on it, about what one node runs (110 pods at most).
const benchNodes = 1000

// bulkInput returns n services ns/svcNNNNN (VIP 10.96.0.0+i+1, port 80,
// in the service CIDR 10.96.0.0/12 as the proxy is configured)
// with eps endpoints each in 10.128.0.0/10 port 8080, on benchNodes nodes. moved replaces the
// first endpoint of the first service by another address; last, when
// valid, is the only endpoint of the last service (the last rule of
// SKP-SERVICES).
func bulkInput(n, eps int, moved bool, last netip.AddrPort) rules.Input {
	in := rules.Input{ClusterCIDR: netip.MustParsePrefix("10.128.0.0/10"), ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), NodeName: "node1"}
	ready := true
	for i := range n {
		name := fmt.Sprintf("svc%05d", i)
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.ServiceSpec{
				Type:      corev1.ServiceTypeClusterIP,
				ClusterIP: addrAt("10.96.0.0", i+1).String(),
				Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80,
					TargetPort: intstr.FromInt32(8080)}},
			},
		})
		port, proto := int32(8080), corev1.ProtocolTCP
		portName := "http"
		slice := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name + "-1",
				Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: &portName, Port: &port, Protocol: &proto}},
		}
		for j := range eps {
			ip := addrAt("10.128.0.0", i*eps+j+1)
			if moved && i == 0 && j == 0 {
				ip = addrAt("10.192.0.0", 1)
			}
			if i == n-1 && last.IsValid() {
				if j > 0 {
					break
				}
				ip = last.Addr()
				port = int32(last.Port())
			}
			node := fmt.Sprintf("node%d", (i*eps+j)%benchNodes+1)
			slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{ip.String()},
				Conditions: discoveryv1.EndpointConditions{Ready: &ready},
				NodeName:   &node,
			})
		}
		in.Slices = append(in.Slices, slice)
	}
	return in
}

func countRules(r rules.Result) int {
	return strings.Count(string(r.NAT), "\n-A ") + strings.Count(string(r.Filter), "\n-A ")
}

func applyResult(tb testing.TB, n ns, d *Dataplane, r rules.Result) {
	tb.Helper()
	n.must(tb, func() error { return d.Apply(context.Background(), r.NAT, r.Filter, r.NATChains, r.FilterChains) })
}

// BenchmarkFullSync writes n services × 10 endpoints into empty tables
// (the first sync of a node) with Apply.
func BenchmarkFullSync(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			res := rules.Compute(bulkInput(n, 10, false, netip.AddrPort{}))
			node := newNS(b)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				node.must(b, Cleanup)
				d := newDataplane(b)
				b.StartTimer()
				applyResult(b, node, d, res)
			}
			b.StopTimer()
			b.ReportMetric(float64(countRules(res)), "rules")
			b.ReportMetric(float64(len(res.NATChains)+len(res.FilterChains)), "chains")
			if got := chainsIn(b, node, newDataplane(b), "nat"); len(got) != len(res.NATChains) {
				b.Fatalf("nat chains: got %d, want %d", len(got), len(res.NATChains))
			}
		})
	}
}

// BenchmarkFullSyncPerRule writes the same rules as BenchmarkFullSync
// with one go-iptables call (one iptables process) per chain and rule:
// about 130,000 calls at 10,000 services, 4 minutes.
func BenchmarkFullSyncPerRule(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			ops := perRuleOps(rules.Compute(bulkInput(n, 10, false, netip.AddrPort{})))
			node := newNS(b)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				node.must(b, Cleanup)
				b.StartTimer()
				node.must(b, func() error { return runOps(ops) })
			}
			b.StopTimer()
			b.ReportMetric(float64(len(ops)), "calls")
		})
	}
}

// perRuleOp is one go-iptables call of BenchmarkFullSyncPerRule.
type perRuleOp struct {
	table, chain string
	args         []string // nil: create the chain
}

// perRuleOps turns a rule set into one call per chain and rule, in
// payload order.
func perRuleOps(res rules.Result) []perRuleOp {
	var ops []perRuleOp
	for _, p := range [][]byte{res.NAT, res.Filter} {
		table := ""
		for line := range strings.Lines(string(p)) {
			line = strings.TrimSuffix(line, "\n")
			switch {
			case strings.HasPrefix(line, "*"):
				table = line[1:]
			case strings.HasPrefix(line, ":"):
				ops = append(ops, perRuleOp{table, strings.Fields(line[1:])[0], nil})
			case strings.HasPrefix(line, "-A "):
				args := splitArgs(line)
				ops = append(ops, perRuleOp{table, args[1], args[2:]})
			}
		}
	}
	return ops
}

// runOps makes the calls, one iptables process each.
func runOps(ops []perRuleOp) error {
	ipt, err := iptables.New()
	if err != nil {
		return err
	}
	for _, o := range ops {
		if o.args == nil {
			err = ipt.NewChain(o.table, o.chain)
		} else {
			err = ipt.Append(o.table, o.chain, o.args...)
		}
		if err != nil {
			return fmt.Errorf("%s %s %v: %w", o.table, o.chain, o.args, err)
		}
	}
	return nil
}

// splitArgs splits an iptables-save line into arguments, honouring
// double quotes (comments).
func splitArgs(line string) []string {
	var args []string
	var cur strings.Builder
	quoted, inArg := false, false
	for _, r := range line {
		switch {
		case r == '"':
			quoted, inArg = !quoted, true
		case r == ' ' && !quoted:
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}

// BenchmarkSingleChange has 1,000 or 10,000 services × 10 endpoints installed and
// moves one endpoint of one service back and forth: "full" re-applies
// everything with Apply (what a plain resync does); "partial" writes only
// Changes(old, new) with ApplyPartial; "sync" is Sync with the whole new
// rule set (diffing against the last one it wrote, then one small
// restore: what the proxy should call); "changes" and "compute" time the
// pure steps the proxy does before writing (Changes on the nat payloads,
// rules.Compute of the whole input).
func BenchmarkSingleChange(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) { benchSingleChange(b, n) })
	}
}

func benchSingleChange(b *testing.B, n int) {
	inA, inB := bulkInput(n, 10, false, netip.AddrPort{}), bulkInput(n, 10, true, netip.AddrPort{})
	results := [2]rules.Result{rules.Compute(inA), rules.Compute(inB)}
	var partial [2][2][]byte // [to][table]: from the other result to this one
	for to := range 2 {
		for t, pick := range []func(rules.Result) []byte{
			func(r rules.Result) []byte { return r.NAT },
			func(r rules.Result) []byte { return r.Filter },
		} {
			p, err := Changes(pick(results[1-to]), pick(results[to]))
			if err != nil {
				b.Fatal(err)
			}
			partial[to][t] = p
		}
	}
	if partial[1][1] != nil || partial[1][0] == nil {
		b.Fatalf("moving one endpoint: nat changes %d bytes, filter %d; want nat only", len(partial[1][0]), len(partial[1][1]))
	}
	node := newNS(b)
	d := newDataplane(b)
	applyResult(b, node, d, results[0])
	node.must(b, d.EnsureJumps)
	cur := 0

	b.Run("full", func(b *testing.B) {
		for range b.N {
			cur = 1 - cur
			applyResult(b, node, d, results[cur])
		}
	})
	b.Run("partial", func(b *testing.B) {
		took := make([]time.Duration, 0, b.N)
		for range b.N {
			cur = 1 - cur
			p := partial[cur]
			start := time.Now()
			node.must(b, func() error { return d.ApplyPartial(context.Background(), p[0], p[1]) })
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		b.ReportMetric(float64(len(partial[1][0])), "payload-bytes")
		b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(took[len(took)-1].Microseconds())/1000, "max-ms")
	})
	b.Run("sync", func(b *testing.B) {
		// After ApplyPartial, Sync has no rule set to compare with: give
		// it one, untimed.
		b.StopTimer()
		r := results[cur]
		node.must(b, func() error { return d.Sync(context.Background(), r.NAT, r.Filter, r.NATChains, r.FilterChains) })
		b.StartTimer()
		for range b.N {
			cur = 1 - cur
			r := results[cur]
			node.must(b, func() error { return d.Sync(context.Background(), r.NAT, r.Filter, r.NATChains, r.FilterChains) })
		}
	})
	b.Run("changes", func(b *testing.B) {
		if _, err := Changes(results[0].NAT, results[1].NAT); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := range b.N {
			if _, err := Changes(results[i%2].NAT, results[1-i%2].NAT); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compute", func(b *testing.B) {
		for range b.N {
			rules.Compute(inB)
		}
	})
	b.StopTimer()
	// The partial updates left the kernel exactly where a full apply would.
	want := results[cur]
	if got := chainsIn(b, node, d, "nat"); !slices.Equal(got, sorted(want.NATChains)) {
		b.Fatalf("nat chains after the updates: got %d, want %d", len(got), len(want.NATChains))
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// BenchmarkFirstPacket connects over TCP from a client namespace to the
// VIP of the last service (the last rule of SKP-SERVICES, the longest
// walk), routed by the node namespace to a server namespace, with 1 and
// 10,000 services × 10 endpoints installed. One op is one connect (SYN,
// SYN-ACK: the NAT decision happens on the SYN); p50 and p99 of the
// connect times are reported.
func BenchmarkFirstPacket(b *testing.B) {
	requireRoot(b)
	for _, n := range []int{1, 10000} {
		l := newLab(b)
		l.server.serve(b, "172.31.2.2:8080", "a")
		res := rules.Compute(bulkInput(n, 10, false, netip.MustParseAddrPort("172.31.2.2:8080")))
		d := newDataplane(b)
		applyResult(b, l.node, d, res)
		l.node.must(b, d.EnsureJumps)
		vip := addrAt("10.96.0.0", n).String() + ":80"
		if got, err := l.client.fetch(vip, 2*time.Second); err != nil || got != "a" {
			b.Fatalf("through %s: got %q %v, want a", vip, got, err)
		}
		b.Run(fmt.Sprintf("services=%d", n), func(b *testing.B) {
			samples := make([]time.Duration, 0, b.N)
			l.client.must(b, func() error {
				for range b.N {
					start := time.Now()
					c, err := net.DialTimeout("tcp4", vip, 2*time.Second)
					if err != nil {
						return err
					}
					samples = append(samples, time.Since(start))
					// A reset leaves no TIME_WAIT: thousands of connects
					// must not run out of ports.
					_ = c.(*net.TCPConn).SetLinger(0)
					c.Close()
				}
				return nil
			})
			slices.Sort(samples)
			pct := func(p float64) float64 {
				return float64(samples[int(p*float64(len(samples)-1))].Microseconds())
			}
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
		})
	}
}

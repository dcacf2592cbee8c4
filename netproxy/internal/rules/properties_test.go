package rules

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// payload is a parsed iptables-restore payload.
type payload struct {
	table    string
	declared []string
	rules    []rule
}

type rule struct {
	chain, target, text string
	recentName          string // the -m recent --name, if any
	dnatTo              string // the DNAT --to-destination, if any
	source              string // the -s address, if any (not negated)
}

// parsePayload reads what Compute writes: "*table", ":CHAIN - [0:0]"
// lines, "-A" lines, "COMMIT". Anything else is an error, and so is a rule
// that appends to or jumps to a chain not declared on an earlier line.
func parsePayload(t *testing.T, b []byte) payload {
	t.Helper()
	var p payload
	if !bytes.HasSuffix(b, []byte("COMMIT\n")) {
		t.Fatalf("payload does not end with COMMIT:\n%s", b)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	first := true
	for sc.Scan() {
		l := sc.Text()
		switch {
		case first:
			if !strings.HasPrefix(l, "*") {
				t.Fatalf("first line %q is not a table", l)
			}
			p.table = l[1:]
			first = false
		case strings.HasPrefix(l, ":"):
			name, rest, _ := strings.Cut(l[1:], " ")
			if rest != "- [0:0]" {
				t.Errorf("chain declaration %q", l)
			}
			p.declared = append(p.declared, name)
		case strings.HasPrefix(l, "-A "):
			f := strings.Fields(l)
			r := rule{chain: f[1], text: l}
			for i := range f {
				if f[i] == "-j" && i+1 < len(f) {
					r.target = f[i+1]
				}
				if f[i] == "--name" && i+1 < len(f) {
					r.recentName = f[i+1]
				}
				if f[i] == "--to-destination" && i+1 < len(f) {
					r.dnatTo = f[i+1]
				}
				if f[i] == "-s" && i+1 < len(f) && f[i-1] != "!" {
					r.source = f[i+1]
				}
			}
			if r.target == "" {
				t.Errorf("rule without a target: %q", l)
			}
			for _, c := range []string{r.chain, r.target} {
				if strings.HasPrefix(c, ChainPrefix) && !slices.Contains(p.declared, c) {
					t.Errorf("%s used before it is declared: %q", c, l)
				}
			}
			if strings.Count(l, `"`)%2 != 0 {
				t.Errorf("unbalanced quotes: %q", l)
			}
			p.rules = append(p.rules, r)
		case l == "COMMIT":
		default:
			t.Errorf("unexpected line %q", l)
		}
	}
	return p
}

var builtinTargets = map[string]bool{"RETURN": true, "MARK": true, "MASQUERADE": true, "DNAT": true, "REJECT": true, "DROP": true, "ACCEPT": true}

var fixedChains = map[string]bool{ServicesChain: true, NodePortsChain: true, PostroutingChain: true, HairpinChain: true, ExternalChain: true, ForwardChain: true}

// checkNATTable checks that res.NATTable is res.NAT grouped by chain:
// every declared chain, in order, with its rules in payload order.
func checkNATTable(t *testing.T, res Result) {
	t.Helper()
	p := parsePayload(t, res.NAT)
	want := map[string][]string{}
	for _, c := range p.declared {
		want[c] = nil
	}
	for _, r := range p.rules {
		want[r.chain] = append(want[r.chain], r.text)
	}
	got := tableText(res.NATTable)
	if !slices.Equal(res.NATTable.Chains, p.declared) {
		t.Errorf("NATTable.Chains %v, the payload declares %v", res.NATTable.Chains, p.declared)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("NATTable.Rules differ from the payload's rules by chain:\n got %v\nwant %v", got, want)
	}
}

// checkInvariants checks what must hold for any input: every chain a rule
// jumps to or appends to is declared; every declared chain is in the
// result's list and vice versa; names are SKP- and at most 28 chars; no
// per-service chain is empty or unreachable; the SVC and SVL chains have
// the shape spread writes (see checkSpreadChain); every affinity list
// belongs to one endpoint.
func checkInvariants(t *testing.T, res Result) {
	t.Helper()
	checkNATTable(t, res)
	for _, tc := range []struct {
		table  string
		data   []byte
		chains []string
	}{{"nat", res.NAT, res.NATChains}, {"filter", res.Filter, res.FilterChains}} {
		p := parsePayload(t, tc.data)
		if p.table != tc.table {
			t.Errorf("table: got %q, want %q", p.table, tc.table)
		}
		if !slices.Equal(p.declared, tc.chains) {
			t.Errorf("%s: declared chains %v, result lists %v", tc.table, p.declared, tc.chains)
		}
		declared := map[string]bool{}
		for _, c := range p.declared {
			if declared[c] {
				t.Errorf("%s: chain %s declared twice", tc.table, c)
			}
			declared[c] = true
			if !strings.HasPrefix(c, ChainPrefix) || len(c) > 28 {
				t.Errorf("%s: bad chain name %q (%d chars)", tc.table, c, len(c))
			}
		}
		filled, jumped := map[string]int{}, map[string]bool{}
		for _, r := range p.rules {
			if !declared[r.chain] {
				t.Errorf("%s: rule appends to undeclared chain: %s", tc.table, r.text)
			}
			filled[r.chain]++
			switch {
			case strings.HasPrefix(r.target, ChainPrefix):
				if !declared[r.target] {
					t.Errorf("%s: jump to undeclared chain: %s", tc.table, r.text)
				}
				jumped[r.target] = true
			case !builtinTargets[r.target]:
				t.Errorf("%s: unknown target %q: %s", tc.table, r.target, r.text)
			}
			if r.recentName != "" && (declared[r.recentName] || !strings.HasPrefix(r.recentName, affPrefix)) {
				t.Errorf("%s: recent list %s is not named %s<hash> or is a chain", tc.table, r.recentName, affPrefix)
			}
		}
		if tc.table == "nat" {
			checkNATShape(t, p)
		}
		for _, c := range p.declared {
			if fixedChains[c] {
				continue
			}
			if filled[c] == 0 {
				t.Errorf("%s: chain %s is empty", tc.table, c)
			}
			if !jumped[c] {
				t.Errorf("%s: nothing jumps to chain %s", tc.table, c)
			}
		}
	}
	// Endpoints: the distinct DNAT destinations of each service port
	// (its SVC and SVL chains together).
	dests := map[string]bool{}
	for _, r := range parsePayload(t, res.NAT).rules {
		if h, ok := serviceChainHash(r.chain); ok && r.dnatTo != "" {
			dests[h+" "+r.dnatTo] = true
		}
	}
	if len(dests) != res.Endpoints {
		t.Errorf("Endpoints = %d, but %d distinct endpoints are DNATed to", res.Endpoints, len(dests))
	}
}

// serviceChainHash returns the hash of an SVC or SVL chain.
func serviceChainHash(chain string) (string, bool) {
	for _, p := range []string{svcPrefix, svlPrefix} {
		if h, ok := strings.CutPrefix(chain, p); ok {
			return h, true
		}
	}
	return "", false
}

// checkNATShape checks the nat payload beyond loadability:
//   - MARK is only ever --or-mark 0x4000 (the masquerade bit);
//   - each SVC/SVL chain is: MARK rules, then DNAT rules; the affinity
//     (--update) rules before the split; the split has one rule per
//     affinity rule's endpoint, in the same order; its last rule is an
//     unconditional DNAT; --set comes after --probability, so only the
//     picked endpoint records the client;
//   - an affinity list names one endpoint: the same list always DNATs
//     to the same address, and two endpoints never share a list.
func checkNATShape(t *testing.T, p payload) {
	t.Helper()
	byChain := map[string][]rule{}
	listDest, destList := map[string]string{}, map[string]string{}
	for _, r := range p.rules {
		byChain[r.chain] = append(byChain[r.chain], r)
		if r.target == "MARK" && !strings.HasSuffix(r.text, "-j MARK --or-mark "+masqBit) && !strings.HasSuffix(r.text, "-j MARK --xor-mark "+masqBit) {
			t.Errorf("MARK rule with another mark: %s", r.text)
		}
		if r.recentName != "" {
			h, _ := serviceChainHash(r.chain)
			key := h + " " + r.dnatTo
			if d, ok := listDest[r.recentName]; ok && d != key {
				t.Errorf("affinity list %s DNATs to %s and %s", r.recentName, d, key)
			}
			if l, ok := destList[key]; ok && l != r.recentName {
				t.Errorf("endpoint %s has affinity lists %s and %s", key, l, r.recentName)
			}
			listDest[r.recentName], destList[key] = key, r.recentName
		}
	}
	for chain, rules := range byChain {
		if _, ok := serviceChainHash(chain); !ok {
			continue
		}
		var updates, splits []rule
		for _, r := range rules {
			switch {
			case r.target == "MARK":
				if len(updates)+len(splits) > 0 {
					t.Errorf("%s: MARK after a DNAT: %s", chain, r.text)
				}
			case r.target == "DNAT" && strings.Contains(r.text, " --update "):
				if len(splits) > 0 {
					t.Errorf("%s: affinity rule after the split: %s", chain, r.text)
				}
				if !strings.Contains(r.text, " --seconds ") || !strings.Contains(r.text, " --reap ") {
					t.Errorf("%s: affinity rule without --seconds/--reap: %s", chain, r.text)
				}
				updates = append(updates, r)
			case r.target == "DNAT":
				splits = append(splits, r)
			default:
				t.Errorf("%s: unexpected rule: %s", chain, r.text)
			}
		}
		if len(splits) == 0 {
			t.Errorf("%s: no DNAT rule", chain)
			continue
		}
		if last := splits[len(splits)-1]; strings.Contains(last.text, "--probability") {
			t.Errorf("%s: last rule is not unconditional: %s", chain, last.text)
		}
		if len(updates) > 0 && len(updates) != len(splits) {
			t.Errorf("%s: %d affinity rules for %d endpoints", chain, len(updates), len(splits))
		}
		for i, r := range splits {
			if len(updates) > 0 {
				if updates[i].dnatTo != r.dnatTo || updates[i].recentName != r.recentName || !strings.Contains(r.text, " --set ") {
					t.Errorf("%s: split rule %d does not record the client in its endpoint's list:\n%s\n%s", chain, i, updates[i].text, r.text)
				}
				if pr, set := strings.Index(r.text, "--probability"), strings.Index(r.text, "--set"); pr > set {
					t.Errorf("%s: --set before --probability: %s", chain, r.text)
				}
			} else if r.recentName != "" {
				t.Errorf("%s: --set without affinity rules: %s", chain, r.text)
			}
		}
	}
}

// randomInput builds a messy input: every service type, policy and
// affinity, named and unnamed ports of every protocol, endpoints ready or
// not, local or not, duplicated across slices, and stray slices.
func randomInput(r *rand.Rand) Input {
	in := baseInput()
	if r.IntN(2) == 0 {
		in.NodeIPs = []netip.Addr{netip.MustParseAddr("192.168.1.11"), netip.MustParseAddr("10.244.1.1")}
	}
	if r.IntN(3) == 0 {
		in.LocalDNS = &LocalDNS{VIP: netip.MustParseAddr("10.96.0.10"), Target: netip.MustParseAddrPort("10.244.1.1:53")}
	}
	in.MasqueradeRandomFully = r.IntN(2) == 0
	if r.IntN(2) == 0 {
		in.PodCIDR = netip.MustParsePrefix("10.244.1.0/24")
	}
	if r.IntN(2) == 0 {
		// Holds most of the cluster IPs below (10.96.1.x), not all.
		in.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
	}
	protos := []corev1.Protocol{tcp, udp, sctp, ""}
	names := []string{"", "http", "dns", "metrics"}
	nodes := []string{thisNode, "node-b", "node-c", ""}
	for i := range 5 + r.IntN(20) {
		ns := []string{"default", "prod", "kube-system"}[r.IntN(3)]
		name := fmt.Sprintf("svc%d", i)
		var opts []svcOpt
		switch r.IntN(6) {
		case 0:
			opts = append(opts, withType(corev1.ServiceTypeNodePort))
		case 1:
			opts = append(opts, withType(corev1.ServiceTypeLoadBalancer))
		case 2:
			opts = append(opts, withExternalIPs(fmt.Sprintf("203.0.113.%d", i+1)))
		}
		if r.IntN(3) == 0 {
			opts = append(opts, withLocalPolicy())
		}
		if r.IntN(3) == 0 {
			opts = append(opts, withInternalLocal())
		}
		if r.IntN(4) == 0 {
			opts = append(opts, withAffinity(int32(r.IntN(2)*600)))
		}
		clusterIP := fmt.Sprintf("10.96.1.%d", i+1)
		switch r.IntN(12) {
		case 0:
			clusterIP = corev1.ClusterIPNone
		case 1:
			opts = append(opts, withType(corev1.ServiceTypeExternalName))
			clusterIP = ""
		case 2:
			clusterIP = fmt.Sprintf("172.30.0.%d", i+1) // outside any service CIDR
		}
		var ports []corev1.ServicePort
		var slicePorts []discoveryv1.EndpointPort
		used := map[string]bool{}
		for j := range 1 + r.IntN(3) {
			pn, proto := names[r.IntN(len(names))], protos[r.IntN(len(protos))]
			if used[pn] {
				continue
			}
			used[pn] = true
			sp := nodePort(pn, proto, int32(80+j), int32(8080+j), int32(30000+i*4+j))
			ports = append(ports, sp)
			slicePorts = append(slicePorts, slicePort(pn, proto, int32(8080+j)))
		}
		in.Services = append(in.Services, service(ns, name, clusterIP, ports, opts...))
		for k := range r.IntN(3) {
			var eps []discoveryv1.Endpoint
			for range r.IntN(5) {
				var eo []epOpt
				switch r.IntN(5) {
				case 0:
					eo = append(eo, notReady())
				case 1:
					eo = append(eo, terminating())
				case 2:
					eo = append(eo, readyUnknown())
				}
				eps = append(eps, ep(fmt.Sprintf("10.244.%d.%d", r.IntN(3), r.IntN(6)+1), nodes[r.IntN(len(nodes))], eo...))
			}
			svcName := name
			if r.IntN(8) == 0 {
				svcName = "nobody" // a slice for a service that does not exist
			}
			in.Slices = append(in.Slices, endpointSlice(ns, svcName, fmt.Sprintf("%s-%d", name, k), slicePorts, eps...))
		}
	}
	return in
}

// permute returns a deep copy of in with every list shuffled.
func permute(r *rand.Rand, in Input) Input {
	out := in
	out.Services = nil
	for _, s := range in.Services {
		c := s.DeepCopy()
		r.Shuffle(len(c.Spec.Ports), func(i, j int) { c.Spec.Ports[i], c.Spec.Ports[j] = c.Spec.Ports[j], c.Spec.Ports[i] })
		r.Shuffle(len(c.Spec.ExternalIPs), func(i, j int) {
			c.Spec.ExternalIPs[i], c.Spec.ExternalIPs[j] = c.Spec.ExternalIPs[j], c.Spec.ExternalIPs[i]
		})
		out.Services = append(out.Services, c)
	}
	out.Slices = nil
	for _, s := range in.Slices {
		c := s.DeepCopy()
		r.Shuffle(len(c.Ports), func(i, j int) { c.Ports[i], c.Ports[j] = c.Ports[j], c.Ports[i] })
		r.Shuffle(len(c.Endpoints), func(i, j int) { c.Endpoints[i], c.Endpoints[j] = c.Endpoints[j], c.Endpoints[i] })
		out.Slices = append(out.Slices, c)
	}
	out.NodeIPs = slices.Clone(in.NodeIPs)
	for _, l := range []any{out.Services, out.Slices, out.NodeIPs} {
		v := reflect.ValueOf(l)
		r.Shuffle(v.Len(), reflect.Swapper(l))
	}
	return out
}

func propertyInputs() map[string]Input {
	ins := map[string]Input{}
	for _, tc := range goldenCases() {
		ins["golden/"+tc.name] = tc.in
	}
	r := rand.New(rand.NewPCG(6, 1))
	for i := range 200 {
		ins[fmt.Sprintf("random/%d", i)] = randomInput(r)
	}
	ins["scale"] = scale(300, 10)
	return ins
}

func TestInvariants(t *testing.T) {
	for name, in := range propertyInputs() {
		t.Run(name, func(t *testing.T) { checkInvariants(t, Compute(in)) })
	}
}

// TestServiceCIDRMasquerade: with a service CIDR that may stand in for
// them (conntrackMasq), the cluster IPs in it have no masquerade rule of
// their own and one conntrack rule in each of SKP-POSTROUTING and
// SKP-FORWARD stands for them, leaving the node-local DNS redirect out;
// every other cluster IP that leads to a chain keeps its own rule there.
func TestServiceCIDRMasquerade(t *testing.T) {
	own := regexp.MustCompile(`^-A (\S+) ! -s \S+ -d (\S+)/32 .* -j MARK`)
	dispatch := regexp.MustCompile(`^-A SKP-DST-\d+ -d (\S+)/32 .*cluster IP" .* -j (SKP-SV[CL]-\S+)$`)
	for name, in := range propertyInputs() {
		cidr := conntrackMasq(in)
		res := Compute(in)
		for _, tb := range []struct {
			payload []byte
			chain   string
		}{{res.NAT, PostroutingChain}, {res.Filter, ForwardChain}} {
			n := 0
			for _, r := range parsePayload(t, tb.payload).rules {
				if !strings.Contains(r.text, "--ctorigdst") {
					continue
				}
				n++
				if r.chain != tb.chain {
					t.Errorf("%s: conntrack rule in %s: %s", name, r.chain, r.text)
				}
				dns := in.LocalDNS != nil && cidr.Contains(in.LocalDNS.VIP)
				if got := strings.Contains(r.text, "! --ctreplsrc "+func() string {
					if in.LocalDNS == nil {
						return "-"
					}
					return in.LocalDNS.Target.Addr().String()
				}()); got != dns {
					t.Errorf("%s: the node-local DNS redirect left out: %v, want %v: %s", name, got, dns, r.text)
				}
			}
			if want := map[bool]int{true: 1, false: 0}[cidr.IsValid()]; n != want {
				t.Errorf("%s: %d conntrack rules in %s, want %d", name, n, tb.chain, want)
			}
		}
		ownRule := map[string]bool{} // chain + " " + cluster IP
		p := parsePayload(t, res.NAT)
		for _, r := range p.rules {
			if m := own.FindStringSubmatch(r.text); m != nil {
				ownRule[m[1]+" "+m[2]] = true
				if cidr.IsValid() && cidr.Contains(netip.MustParseAddr(m[2])) {
					t.Errorf("%s: a masquerade rule of its own for %s, in the service CIDR: %s", name, m[2], r.text)
				}
			}
		}
		for _, r := range p.rules {
			m := dispatch.FindStringSubmatch(r.text)
			if m == nil || !in.ClusterCIDR.IsValid() || cidr.IsValid() && cidr.Contains(netip.MustParseAddr(m[1])) {
				continue
			}
			if !ownRule[m[2]+" "+m[1]] {
				t.Errorf("%s: cluster IP %s (outside the service CIDR %v) has no masquerade rule in %s", name, m[1], cidr, m[2])
			}
		}
	}
}

func TestDeterministicUnderPermutation(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 2))
	for name, in := range propertyInputs() {
		t.Run(name, func(t *testing.T) {
			want := Compute(in)
			for range 5 {
				got := Compute(permute(r, in))
				if !bytes.Equal(got.NAT, want.NAT) || !bytes.Equal(got.Filter, want.Filter) {
					t.Fatalf("a permuted input gives other rules:\ngot:\n%s%s\nwant:\n%s%s", got.NAT, got.Filter, want.NAT, want.Filter)
				}
				if !slices.Equal(got.NATChains, want.NATChains) || !slices.Equal(got.FilterChains, want.FilterChains) ||
					got.Services != want.Services || got.Endpoints != want.Endpoints {
					t.Fatalf("a permuted input gives another result: got %d/%d %v, want %d/%d %v",
						got.Services, got.Endpoints, got.NATChains, want.Services, want.Endpoints, want.NATChains)
				}
			}
		})
	}
}

func TestComputeDoesNotModifyInput(t *testing.T) {
	in := randomInput(rand.New(rand.NewPCG(6, 3)))
	var svcs []*corev1.Service
	var sls []*discoveryv1.EndpointSlice
	for _, s := range in.Services {
		svcs = append(svcs, s.DeepCopy())
	}
	for _, s := range in.Slices {
		sls = append(sls, s.DeepCopy())
	}
	Compute(in)
	if !reflect.DeepEqual(svcs, in.Services) || !reflect.DeepEqual(sls, in.Slices) {
		t.Fatal("Compute modified its input")
	}
}

// TestSpread checks the probabilities: rule i of n picks with 1/(n-i), so
// each endpoint gets 1/n overall, and the last rule is unconditional.
func TestSpread(t *testing.T) {
	for _, n := range []int{1, 2, 3, 7, 10} {
		var eps []discoveryv1.Endpoint
		for i := range n {
			eps = append(eps, ep(fmt.Sprintf("10.244.1.%d", i+1), "node-b"))
		}
		in := baseInput()
		in.Services = []*corev1.Service{service("default", "web", "10.96.0.20", []corev1.ServicePort{port("", tcp, 80, 80)})}
		in.Slices = []*discoveryv1.EndpointSlice{endpointSlice("default", "web", "web-1", []discoveryv1.EndpointPort{slicePort("", tcp, 80)}, eps...)}
		p := parsePayload(t, Compute(in).NAT)
		var probs []float64
		for _, r := range p.rules {
			if !strings.HasPrefix(r.chain, svcPrefix) || r.target != "DNAT" {
				continue
			}
			var pr float64 = 1
			if _, after, ok := strings.Cut(r.text, "--probability "); ok {
				if _, err := fmt.Sscanf(after, "%g", &pr); err != nil {
					t.Fatal(err)
				}
				if f := strings.Fields(after)[0]; len(f) != 12 {
					t.Errorf("probability %q: want 10 decimals", f)
				}
			}
			probs = append(probs, pr)
		}
		if len(probs) != n || probs[n-1] != 1 {
			t.Fatalf("n=%d: got probabilities %v, want %d rules, the last unconditional", n, probs, n)
		}
		left := 1.0
		for i, pr := range probs {
			share := left * pr
			left -= share
			if share < 1/float64(n)-1e-9 || share > 1/float64(n)+1e-9 {
				t.Errorf("n=%d: endpoint %d gets %v, want %v", n, i, share, 1/float64(n))
			}
		}
	}
}

func TestChainNamesStable(t *testing.T) {
	// The hash is part of the contract (sha256 of ns/name:port:proto[:ip:port],
	// 16 upper-case hex digits): a restart must produce the same names.
	g := newGen(Input{})
	if got, want := g.hash("default/web", ":", "http", ":", "TCP"), strings.ToUpper(fmt.Sprintf("%x", sha256Sum("default/web:http:TCP"))[:16]); got != want {
		t.Errorf("hash: got %s, want %s", got, want)
	}
}

func sha256Sum(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// TestOddInputs feeds input the API server would not produce, or only
// rarely: the rules must stay loadable (declared once, every jump
// resolved) and the odd parts must be ignored.
func TestOddInputs(t *testing.T) {
	httpSlice := []discoveryv1.EndpointPort{slicePort("http", tcp, 8080)}
	web := service("default", "web", "10.96.0.20", []corev1.ServicePort{port("http", tcp, 80, 8080), port("http", tcp, 81, 8081)})
	dual := service("default", "dual", "fd00::20", []corev1.ServicePort{port("http", tcp, 80, 8080)})
	dual.Spec.ClusterIPs = []string{"fd00::20", "10.96.0.21"}
	v6 := service("default", "v6", "fd00::22", []corev1.ServicePort{port("http", tcp, 80, 8080)})
	fqdn := endpointSlice("default", "web", "web-fqdn", httpSlice, ep("example.com", "node-a"))
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	noPort := endpointSlice("default", "web", "web-noport", []discoveryv1.EndpointPort{{Name: ptr("http")}}, ep("10.244.1.9", "node-a"))
	noAddr := endpointSlice("default", "web", "web-noaddr", httpSlice, discoveryv1.Endpoint{})
	unlabeled := endpointSlice("default", "web", "web-unlabeled", httpSlice, ep("10.244.1.8", "node-a"))
	unlabeled.Labels = nil
	in := baseInput()
	in.Services = []*corev1.Service{web, web.DeepCopy(), dual, v6, nil}
	in.Slices = []*discoveryv1.EndpointSlice{
		endpointSlice("default", "web", "web-1", httpSlice, ep("10.244.1.5", "node-a")),
		endpointSlice("default", "dual", "dual-1", httpSlice, ep("10.244.1.6", "node-a")),
		fqdn, noPort, noAddr, unlabeled, nil,
	}
	in.LocalDNS = &LocalDNS{VIP: netip.MustParseAddr("10.96.0.10"), Target: netip.MustParseAddrPort("[fd00::1]:53")}
	res := Compute(in)
	checkInvariants(t, res)
	nat := string(res.NAT)
	for _, want := range []string{"-d 10.96.0.20/32", "-d 10.96.0.21/32", "--to-destination 10.244.1.5:8080", "--to-destination 10.244.1.6:8080"} {
		if !strings.Contains(nat, want) {
			t.Errorf("nat payload lacks %q:\n%s", want, nat)
		}
	}
	for _, unwanted := range []string{"fd00", "10.244.1.8", "10.244.1.9", "example.com", "node-local dns"} {
		if strings.Contains(nat, unwanted) {
			t.Errorf("nat payload has %q:\n%s", unwanted, nat)
		}
	}
	if res.Services != 2 || res.Endpoints != 2 {
		t.Errorf("counts: got %d services, %d endpoints; want 2, 2", res.Services, res.Endpoints)
	}
}

// TestHairpinMarks checks SKP-HAIRPIN: it marks, source and destination
// alike, exactly the addresses traffic is DNATed to that may be pods of
// this node (an entry naming this node, or no node and in the node's pod
// range when that is known), so a pod reaching itself through a service
// sees the reply come from the VIP; an address only ever on other nodes,
// which can never be both ends of a packet this node DNATs, gets no rule.
// SKP-POSTROUTING sends DNATed packets there before its mark test.
func TestHairpinMarks(t *testing.T) {
	for name, in := range propertyInputs() {
		t.Run(name, func(t *testing.T) {
			mayBeLocal := map[string]bool{}
			for _, s := range in.Slices {
				if s == nil || s.Labels[discoveryv1.LabelServiceName] == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
					continue
				}
				for _, e := range s.Endpoints {
					if len(e.Addresses) == 0 {
						continue
					}
					ip, err := netip.ParseAddr(e.Addresses[0])
					if err != nil {
						continue
					}
					unknown := e.NodeName == nil || *e.NodeName == "" || in.NodeName == ""
					if unknown && (!in.PodCIDR.IsValid() || in.PodCIDR.Contains(ip)) || !unknown && *e.NodeName == in.NodeName {
						mayBeLocal[ip.String()] = true
					}
				}
			}
			p := parsePayload(t, Compute(in).NAT)
			want := map[string]bool{}
			for _, r := range p.rules {
				if _, ok := serviceChainHash(r.chain); ok && r.target == "DNAT" {
					ip, _, _ := strings.Cut(r.dnatTo, ":")
					if mayBeLocal[ip] {
						want[ip] = true
					}
				}
			}
			got := map[string]bool{}
			var post []string
			for _, r := range p.rules {
				switch r.chain {
				case PostroutingChain:
					post = append(post, r.target)
				case HairpinChain:
					src, _ := strings.CutSuffix(r.source, "/32")
					if r.target != "MARK" || !strings.Contains(r.text, " -d "+r.source+" ") || !strings.HasSuffix(r.text, "--or-mark "+masqBit) {
						t.Errorf("hairpin rule %q: want -s IP/32 -d IP/32 -j MARK --or-mark %s", r.text, masqBit)
					}
					if got[src] {
						t.Errorf("hairpin rule for %s twice", src)
					}
					got[src] = true
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("hairpin addresses %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
			}
			if len(post) == 0 || post[0] != HairpinChain {
				t.Errorf("SKP-POSTROUTING targets %v: the hairpin chain must come first", post)
			}
		})
	}
}

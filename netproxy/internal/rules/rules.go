// Package rules owns the translation of Services and EndpointSlices into
// the iptables rules of one node: a pure function from (Services,
// EndpointSlices, node) to two iptables-restore payloads, one for the nat
// table and one for the filter table. It does no I/O and keeps no state.
//
// Call sequence (the proxy's sync loop):
//
//	res := rules.Compute(rules.Input{Services: ..., Slices: ..., NodeName: ..., ClusterCIDR: ...})
//	dataplane.Apply(ctx, res.NAT, res.Filter, res.NATChains, res.FilterChains)
//
// Every chain the payloads use starts with "SKP-" and is declared (thus
// flushed) by the payload before it is filled, so applying a payload with
// `iptables-restore --noflush` replaces the previous rule set in one atomic
// commit per table. The chains the result no longer uses are listed by
// their absence from NATChains/FilterChains; deleting them is the
// dataplane's job.
//
// The semantics follow kube-proxy's iptables mode (written here from its
// observable behaviour): ClusterIP, NodePort, externalIPs, the Local
// external and internal traffic policies, ClientIP session affinity,
// masquerading of traffic from outside the cluster CIDR, of NodePort
// traffic and of hairpin traffic, and REJECT/DROP in the filter table for
// service ports that have no (local) endpoints. Only IPv4 is programmed.
//
// Layout (nat), built for few chains and few jumps, which is what costs
// time in iptables-restore (nf_tables backend):
//
//	SKP-SERVICES   the node-local DNS DNATs; then one rule per used shard:
//	               -d 0.0.0.B/0.0.0.255 -j SKP-DST-<B>; last: -j SKP-NODEPORTS
//	SKP-DST-<B>    (B = 000…255, the destination's last byte) per service port
//	               with that VIP: -d VIP --dport P -j SKP-SVC-<h> (internal
//	               traffic policy Local: -j SKP-SVL-<h>); per external
//	               IP (policy Cluster) a MARK rule then -j SKP-SVC-<h> (policy
//	               Local: -j SKP-EXT-<h>). Adding or removing a service
//	               rewrites one shard (~40 rules at 10,000 services), not a
//	               10,000-rule chain, and a first packet scans ≤ 256 + ~40 rules
//	SKP-NODEPORTS  per NodePort the same: MARK then -j SKP-SVC-<h>
//	               (policy Local: -j SKP-EXT-<h>)
//	SKP-SVC-<h>    MARK for traffic from outside the cluster CIDR (only for
//	               a cluster IP outside Input.ServiceCIDR); affinity
//	               DNATs; the random split of DNATs to the endpoints
//	SKP-EXT-<h>    only for policy Local: pods and the node → SKP-SVC-<h>
//	               (the node masqueraded), the rest → SKP-SVL-<h>
//	SKP-SVL-<h>    as SKP-SVC-<h> over this node's endpoints, for whichever
//	               traffic policy (external, internal) is Local
//	SKP-POSTROUTING sends DNATed packets through SKP-HAIRPIN, marks the
//	               connections from outside the cluster CIDR to a cluster
//	               IP in Input.ServiceCIDR (one conntrack rule), then
//	               masquerades what carries the mark 0x4000
//	SKP-HAIRPIN    per endpoint address that may be a pod of this node:
//	               -s IP -d IP (a pod that reached itself through a
//	               service) MARK
//
// There is no chain per endpoint. kube-proxy marks hairpin traffic in
// each endpoint's chain; here the test is made once the endpoint has been
// picked, in POSTROUTING, with one rule per local pod address whatever
// the number of services, so only a packet going back to its sender is
// masqueraded, as with kube-proxy.
package rules

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"fmt"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// Chains with fixed names. Per-service chains are named by prefix plus the
// hash of the service port, see gen.hash.
const (
	// ServicesChain exists in both tables. In nat it is jumped to from
	// PREROUTING and OUTPUT and dispatches VIPs; in filter it is jumped to
	// from INPUT, FORWARD and OUTPUT and rejects service ports without
	// endpoints.
	ServicesChain = "SKP-SERVICES"
	// NodePortsChain (nat) holds one rule per NodePort; SKP-SERVICES jumps
	// to it last, for packets addressed to the node.
	NodePortsChain = "SKP-NODEPORTS"
	// PostroutingChain (nat), jumped to from POSTROUTING, masquerades the
	// marked packets.
	PostroutingChain = "SKP-POSTROUTING"
	// HairpinChain (nat), jumped to from SKP-POSTROUTING for DNATed
	// packets, marks those a pod of this node sent to itself.
	HairpinChain = "SKP-HAIRPIN"
	// ExternalChain (filter), jumped to from INPUT, rejects or drops
	// NodePort traffic that has no (local) endpoint.
	ExternalChain = "SKP-EXTERNAL"
	// ForwardChain (filter), jumped to from FORWARD, accepts marked and
	// established service traffic whatever FORWARD's policy.
	ForwardChain = "SKP-FORWARD"

	// ChainPrefix starts the name of every chain this package produces.
	ChainPrefix = "SKP-"

	svcPrefix = "SKP-SVC-"
	// affPrefix starts the name of an endpoint's ClientIP affinity list
	// (-m recent --name); it names no chain.
	affPrefix = "SKP-AFF-"
	extPrefix = "SKP-EXT-"
	svlPrefix = "SKP-SVL-"
	// dstPrefix starts the 256 dispatch shards of SKP-SERVICES, one per
	// last byte of a destination address: SKP-DST-000 … SKP-DST-255. It
	// sorts before every other SKP- prefix (see Compute).
	dstPrefix = "SKP-DST-"

	// MasqMark is the packet mark (value and mask) that asks SKP-POSTROUTING
	// to masquerade.
	MasqMark = "0x4000/0x4000"
	masqBit  = "0x4000"

	// defaultAffinitySeconds is the ClientIP affinity timeout when the
	// service does not set one (Kubernetes' default, 3 hours).
	defaultAffinitySeconds = 10800
)

// Input is everything Compute looks at. Compute does not modify it.
type Input struct {
	Services []*corev1.Service
	// Slices are all EndpointSlices; a slice belongs to the service named
	// by its label kubernetes.io/service-name in its own namespace.
	Slices []*discoveryv1.EndpointSlice
	// NodeName decides which endpoints are local (endpoint.nodeName), for
	// externalTrafficPolicy Local and hairpin traffic.
	NodeName string
	// PodCIDR, if valid, is this node's pod range: an endpoint that names
	// no node is taken for one of this node's pods (for hairpin traffic)
	// only when its address is in it. Without it, every such endpoint is.
	PodCIDR netip.Prefix
	// NodeIPs are the addresses NodePorts answer on. Empty means every
	// local address except 127.0.0.0/8 (-m addrtype --dst-type LOCAL).
	NodeIPs []netip.Addr
	// ClusterCIDR holds the pods. Traffic to a ClusterIP from outside it is
	// masqueraded; pod traffic to a Local-policy NodePort or external IP
	// is sent to all endpoints. The zero prefix disables both.
	ClusterCIDR netip.Prefix
	// ServiceCIDR, when valid (with ClusterCIDR), holds the cluster IPs:
	// traffic to a cluster IP in it from outside ClusterCIDR is then
	// masqueraded by one rule in SKP-POSTROUTING, on the connection's
	// original addresses (and forwarded by one rule in SKP-FORWARD),
	// instead of one rule per service port, which was a fifth of a full
	// sync's time at 10,000 services. A cluster IP outside it keeps its
	// own rule, and so do all when a node address or an external IP lies
	// in it (see conntrackMasq).
	ServiceCIDR netip.Prefix
	// LocalDNS, when set, sends DNS to VIP to this node's DNS listener,
	// ahead of every service rule.
	LocalDNS *LocalDNS
	// MasqueradeRandomFully adds --random-fully to the MASQUERADE rule;
	// set it when the installed iptables supports it (see
	// RandomFullySupported).
	MasqueradeRandomFully bool
}

// LocalDNS is the node-local cluster DNS redirect.
type LocalDNS struct {
	VIP    netip.Addr     // the cluster DNS service IP, e.g. 10.96.0.10
	Target netip.AddrPort // this node's DNS listener, e.g. 10.244.1.1:53
}

// Result is the rule set for one node.
type Result struct {
	// NAT and Filter are complete input for `iptables-restore --noflush`,
	// each "*<table>\n", the chain declarations, the rules, "COMMIT\n".
	NAT, Filter []byte
	// NATChains and FilterChains are the SKP- chains each payload declares,
	// in declaration order (fixed chains first). Any other SKP- chain in
	// the table is stale.
	NATChains, FilterChains []string
	// NATTable is NAT grouped by chain, as a caller that compares rule
	// sets chain by chain reads it; see Table.
	NATTable Table
	// Services counts the service ports that got rules (including REJECT
	// and DROP rules); Endpoints counts the endpoints that get traffic
	// (each distinct endpoint of a service port once).
	Services, Endpoints int
}

// Table is a payload grouped by chain: the chains it declares, in order,
// and each declared chain's "-A" lines, in payload order, without their
// newline (every declared chain has an entry, nil without rules). The lines are sub-slices of
// the payload's pieces: a service whose rules Cache.Compute reused has
// the very same line slices (same backing arrays) in both results, so
// comparing two tables line by line costs little for what did not change.
type Table struct {
	Chains []string
	Rules  map[string][][]byte
}

// add appends the "-A" lines of payload piece b to t.Rules.
func (t *Table) add(b []byte) {
	for chain, l := range rulesOf(b) {
		t.Rules[chain] = append(t.Rules[chain], l)
	}
}

// rulesOf yields the "-A" lines of payload piece b (without their
// newline) with the chain each appends to.
func rulesOf(b []byte) iter.Seq2[string, []byte] {
	return func(yield func(string, []byte) bool) {
		for len(b) > 0 {
			var l []byte
			l, b, _ = bytes.Cut(b, []byte("\n"))
			if !bytes.HasPrefix(l, []byte("-A ")) {
				continue
			}
			chain, _, _ := bytes.Cut(l[3:], []byte(" "))
			if !yield(string(chain), l) {
				return
			}
		}
	}
}

// fixedNATChains are declared first in every nat payload.
var fixedNATChains = []string{ServicesChain, NodePortsChain, PostroutingChain, HairpinChain}

// endpoint is one ip:port of a service port, merged over all slices.
type endpoint struct {
	addr                        netip.AddrPort
	ready, serving, terminating bool
	local                       bool
	// affinity is the name of its ClientIP affinity list (-m recent).
	affinity string
	// used: an SVC or SVL chain sends traffic to it.
	used bool
}

// svcPort is one port of one service with its endpoints, ready to render.
type svcPort struct {
	svc         *corev1.Service
	port        corev1.ServicePort
	name        string // "ns/svc:port" or "ns/svc" for an unnamed port
	clusterIP   string // "a.b.c.d/32"
	clusterAddr netip.Addr
	hash        string
	// all are the service port's endpoints; cluster are the ones for
	// cluster-wide traffic, local the ones on this node; all sorted by
	// address.
	all, cluster, local []*endpoint

	// Set by filterRules for natRules.
	proto, portNum  string // "tcp", "80"
	nodePort        int
	externalIPs     []netip.Addr
	localPolicy     bool // external traffic policy Local (and external)
	hasExtEndpoints bool
	// internalLocal: internal traffic policy Local, cluster IP traffic
	// goes to this node's endpoints only; hasIntEndpoints: there are
	// endpoints for cluster IP traffic.
	internalLocal, hasIntEndpoints bool
}

// Compute returns the nat and filter rules for in. It is pure and
// deterministic: the same input in any order gives byte-identical output
// (services sorted by namespace/name, ports by name, protocol and port,
// endpoints by address).
func Compute(in Input) Result { return new(Cache).Compute(in) }

// Cache makes Compute cheap when few services changed: Cache.Compute
// renders again only the services whose Service or EndpointSlices are not
// the very objects (pointers) of the previous call, and returns what
// Compute would. Objects must therefore be replaced, never modified in
// place, between calls, as informers' are. The zero Cache is ready; it is
// not safe for concurrent use.
type Cache struct {
	key      cacheKey
	services map[string]*rendered // by namespace/name
	renders  int                  // services rendered, for tests
}

// cacheKey is what of Input, besides the objects, a rendering depends on.
type cacheKey struct {
	node                     string
	nodeDsts                 string
	clusterCIDR, serviceCIDR netip.Prefix
}

// rendered is one service's rendering and the objects it was made from.
type rendered struct {
	svc    *corev1.Service
	slices []*discoveryv1.EndpointSlice
	ports  []*portRules
}

// portRules are the rules of one service port.
type portRules struct {
	hash string
	// filterServices and filterExternal are its lines of SKP-SERVICES
	// and SKP-EXTERNAL (filter); nat its nat chains, declared and filled,
	// and its dispatch rules (empty without endpoints).
	filterServices, filterExternal, nat []byte
	chains                              []string // the nat chains it declares
	// lines are nat's "-A" lines by chain, in order (Table's pieces).
	lines     []chainLines
	shards    []byte // the SKP-DST shards it uses
	dnat      []netip.Addr
	endpoints int // distinct endpoints used
}

// chainLines are the "-A" lines of one chain in a piece of payload.
type chainLines struct {
	chain string
	lines [][]byte
}

// groupLines groups the "-A" lines of payload piece b by chain, chains
// in order of first appearance.
func groupLines(b []byte) []chainLines {
	var out []chainLines
	for chain, l := range rulesOf(b) {
		i := slices.IndexFunc(out, func(c chainLines) bool { return c.chain == chain })
		if i < 0 {
			out = append(out, chainLines{chain: chain})
			i = len(out) - 1
		}
		out[i].lines = append(out[i].lines, l)
	}
	return out
}

// Compute is the package's Compute, reusing the renderings of unchanged
// services.
func (c *Cache) Compute(in Input) Result {
	g := newGen(in)
	key := cacheKey{node: in.NodeName, nodeDsts: fmt.Sprint(g.nodeDsts), clusterCIDR: in.ClusterCIDR, serviceCIDR: g.svcCIDR}
	if c.services == nil || c.key != key {
		c.key, c.services = key, map[string]*rendered{}
	}
	next := make(map[string]*rendered, len(c.services))
	var ports []*portRules
	for _, svc := range sortedServices(in.Services) {
		name := svc.Namespace + "/" + svc.Name
		sl := g.slices[name]
		r := c.services[name]
		if r == nil || r.svc != svc || !slices.Equal(r.slices, sl) {
			r = &rendered{svc: svc, slices: sl, ports: g.render(svc)}
			c.renders++
		}
		next[name] = r
		ports = append(ports, r.ports...)
	}
	c.services = next
	return g.finish(ports)
}

// render renders the rules of svc's ports.
func (g *gen) render(svc *corev1.Service) []*portRules {
	var out []*portRules
	for _, sp := range g.servicePorts(svc) {
		g.svcRules.Reset()
		g.filterServices.Reset()
		g.filterExternal.Reset()
		g.natChains, g.shards, g.dnat, g.endpoints = g.natChains[:0], g.shards[:0], g.dnat[:0], 0
		if g.filterRules(sp) {
			g.natRules(sp)
		}
		p := &portRules{
			hash: sp.hash, filterServices: bytes.Clone(g.filterServices.Bytes()), filterExternal: bytes.Clone(g.filterExternal.Bytes()),
			nat: bytes.Clone(g.svcRules.Bytes()), chains: slices.Clone(g.natChains), shards: slices.Clone(g.shards),
			dnat: slices.Clone(g.dnat), endpoints: g.endpoints,
		}
		p.lines = groupLines(p.nat)
		out = append(out, p)
	}
	return out
}

func sortedServices(in []*corev1.Service) []*corev1.Service {
	out := make([]*corev1.Service, 0, len(in))
	for _, s := range in {
		if s != nil {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b *corev1.Service) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	// Two objects with one name would declare the same chains twice and
	// fail the whole restore; an informer never lists them, so keeping
	// either is fine.
	return slices.CompactFunc(out, func(a, b *corev1.Service) bool {
		return a.Namespace == b.Namespace && a.Name == b.Name
	})
}

// gen accumulates the payloads. Shared chains get their own buffers; the
// per-service chains are written contiguously into svcRules as each
// service port is rendered.
type gen struct {
	in       Input
	slices   map[string][]*discoveryv1.EndpointSlice // by "ns/service"
	nodeDsts []nodeDst                               // "addressed to this node"

	natServices bytes.Buffer // the node-local DNS rules, first in SKP-SERVICES
	// svcCIDR is Input.ServiceCIDR when SKP-POSTROUTING's conntrack rule
	// stands in for the cluster IPs' masquerade rules (see
	// conntrackMasq), else invalid.
	svcCIDR netip.Prefix
	// mayBeLocal are the endpoint addresses that may be pods of this
	// node (by any slice's word).
	mayBeLocal map[netip.Addr]bool

	// The service port being rendered (see render).
	svcRules, filterServices, filterExternal bytes.Buffer
	natChains                                []string
	shards                                   []byte
	dnat                                     []netip.Addr
	endpoints                                int

	hasher  [sha256.Size]byte
	hashBuf []byte
}

// nodeDst matches packets addressed to this node, split as iptables-save
// orders a rule: addresses first, then modules.
type nodeDst struct{ addr, match []string }

func newGen(in Input) *gen {
	g := &gen{in: in, slices: make(map[string][]*discoveryv1.EndpointSlice, len(in.Slices)), mayBeLocal: map[netip.Addr]bool{}, svcCIDR: conntrackMasq(in)}
	for _, s := range in.Slices {
		if s == nil {
			continue
		}
		name := s.Labels[discoveryv1.LabelServiceName]
		if name == "" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		key := s.Namespace + "/" + name
		g.slices[key] = append(g.slices[key], s)
		for i := range s.Endpoints {
			if ip, ok := g.mayBeLocalEndpoint(&s.Endpoints[i]); ok {
				g.mayBeLocal[ip] = true
			}
		}
	}
	for _, sl := range g.slices {
		// By name: a rendering is reused for the same slices in any order.
		slices.SortFunc(sl, func(a, b *discoveryv1.EndpointSlice) int { return strings.Compare(a.Name, b.Name) })
	}
	if len(in.NodeIPs) == 0 {
		g.nodeDsts = []nodeDst{{addr: []string{"!", "-d", "127.0.0.0/8"}, match: []string{"-m", "addrtype", "--dst-type", "LOCAL"}}}
	} else {
		ips := slices.Clone(in.NodeIPs)
		slices.SortFunc(ips, netip.Addr.Compare)
		ips = slices.Compact(ips)
		for _, ip := range ips {
			if ip.Is4() {
				g.nodeDsts = append(g.nodeDsts, nodeDst{addr: []string{"-d", ip.String() + "/32"}})
			}
		}
	}
	if d := in.LocalDNS; d != nil && d.VIP.Is4() && d.Target.Addr().Is4() {
		for _, proto := range []string{"udp", "tcp"} {
			line(&g.natServices, "-A", ServicesChain, "-d", d.VIP.String()+"/32", "-p", proto,
				"-m", "comment", "--comment", quote("skiff node-local dns "+proto),
				"-m", proto, "--dport", "53", "-j", "DNAT", "--to-destination", d.Target.String())
		}
	}
	return g
}

// mayBeLocalEndpoint returns e's IPv4 address if e may be a pod of this
// node: its node is this one, or it names none and its address is in this
// node's pod range (any address when that is unknown). The address of an
// endpoint on another node is not even parsed.
func (g *gen) mayBeLocalEndpoint(e *discoveryv1.Endpoint) (netip.Addr, bool) {
	named := e.NodeName != nil && *e.NodeName != "" && g.in.NodeName != ""
	if len(e.Addresses) == 0 || named && *e.NodeName != g.in.NodeName {
		return netip.Addr{}, false
	}
	ip, err := netip.ParseAddr(e.Addresses[0])
	if err != nil || !ip.Is4() {
		return netip.Addr{}, false
	}
	return ip, named || !g.in.PodCIDR.IsValid() || g.in.PodCIDR.Contains(ip)
}

// servicePorts returns svc's ports with their endpoints, or nil for
// services that get no rules (headless, ExternalName, no IPv4 address).
func (g *gen) servicePorts(svc *corev1.Service) []*svcPort {
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil
	}
	clusterIP := clusterIPv4(svc)
	if !clusterIP.IsValid() {
		return nil
	}
	ports := slices.Clone(svc.Spec.Ports)
	slices.SortFunc(ports, func(a, b corev1.ServicePort) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(string(protocolOf(a.Protocol)), string(protocolOf(b.Protocol))), cmp.Compare(a.Port, b.Port))
	})
	svcName := svc.Namespace + "/" + svc.Name
	out := make([]*svcPort, 0, len(ports))
	for i, p := range ports {
		proto := protocolOf(p.Protocol)
		if proto != corev1.ProtocolTCP && proto != corev1.ProtocolUDP && proto != corev1.ProtocolSCTP {
			continue
		}
		if i > 0 && ports[i-1].Name == p.Name && protocolOf(ports[i-1].Protocol) == proto {
			continue // a repeated name and protocol (invalid): same chain names
		}
		p.Protocol = proto
		sp := &svcPort{svc: svc, port: p, name: svcName, clusterIP: clusterIP.String() + "/32", clusterAddr: clusterIP}
		if p.Name != "" {
			sp.name += ":" + p.Name
		}
		sp.hash = g.hash(svcName, ":", p.Name, ":", string(proto))
		g.collectEndpoints(sp)
		out = append(out, sp)
	}
	return out
}

// clusterIPv4 returns svc's IPv4 cluster IP (the primary one, or the
// IPv4 one of a dual-stack service), or the zero Addr.
func clusterIPv4(svc *corev1.Service) netip.Addr {
	for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
			return ip
		}
	}
	return netip.Addr{}
}

func protocolOf(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

// collectEndpoints fills sp.cluster and sp.local from the slices of sp's
// service, matching the slice port by name and protocol.
func (g *gen) collectEndpoints(sp *svcPort) {
	byAddr := map[netip.AddrPort]*endpoint{}
	for _, s := range g.slices[sp.svc.Namespace+"/"+sp.svc.Name] {
		var port int32
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			proto := corev1.ProtocolTCP
			if p.Protocol != nil {
				proto = protocolOf(*p.Protocol)
			}
			if name == sp.port.Name && proto == sp.port.Protocol && p.Port != nil {
				port = *p.Port
				break
			}
		}
		if port <= 0 || port > 65535 {
			continue
		}
		for _, e := range s.Endpoints {
			if len(e.Addresses) == 0 {
				continue
			}
			ip, err := netip.ParseAddr(e.Addresses[0])
			if err != nil || !ip.Is4() {
				continue
			}
			ready := e.Conditions.Ready == nil || *e.Conditions.Ready
			serving := ready
			if e.Conditions.Serving != nil {
				serving = *e.Conditions.Serving
			}
			terminating := e.Conditions.Terminating != nil && *e.Conditions.Terminating
			local := e.NodeName != nil && *e.NodeName == g.in.NodeName && g.in.NodeName != ""
			ap := netip.AddrPortFrom(ip, uint16(port))
			if ep := byAddr[ap]; ep != nil {
				// The same endpoint in two slices (a slice being replaced):
				// usable if either copy says so.
				ep.ready = ep.ready || ready
				ep.serving = ep.serving || serving
				ep.terminating = ep.terminating && terminating
				ep.local = ep.local || local
				continue
			}
			byAddr[ap] = &endpoint{addr: ap, ready: ready, serving: serving, terminating: terminating, local: local}
		}
	}
	all := make([]*endpoint, 0, len(byAddr))
	for _, ep := range byAddr {
		all = append(all, ep)
	}
	slices.SortFunc(all, func(a, b *endpoint) int { return a.addr.Compare(b.addr) })
	sp.all = all
	sp.cluster = usable(all, false)
	sp.local = usable(all, true)
}

// usable picks the ready endpoints (only the local ones if local is set);
// when there are none, the serving terminating ones, so that a service
// whose every pod is shutting down keeps answering until they are gone.
func usable(all []*endpoint, local bool) []*endpoint {
	var ready, terminating []*endpoint
	for _, ep := range all {
		if local && !ep.local {
			continue
		}
		if ep.ready {
			ready = append(ready, ep)
		} else if ep.serving && ep.terminating {
			terminating = append(terminating, ep)
		}
	}
	if len(ready) > 0 {
		return ready
	}
	return terminating
}

// filterRules renders the filter rules of one service port and reports
// whether it has endpoints (thus nat rules).
func (g *gen) filterRules(sp *svcPort) bool {
	svc, p := sp.svc, sp.port
	proto := strings.ToLower(string(p.Protocol))
	port := strconv.Itoa(int(p.Port))
	clusterIP := sp.clusterIP

	hasEndpoints := len(sp.cluster) > 0
	nodePort := 0
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		nodePort = int(p.NodePort)
	}
	externalIPs := externalIPs(svc)
	localPolicy := (nodePort != 0 || len(externalIPs) > 0) && svc.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal
	// Endpoints for external traffic: the local ones under policy Local;
	// for cluster IP traffic, the same under internal policy Local.
	hasExtEndpoints := hasEndpoints
	if localPolicy {
		hasExtEndpoints = len(sp.local) > 0
	}
	internalLocal := svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal
	hasIntEndpoints := hasEndpoints
	if internalLocal {
		hasIntEndpoints = len(sp.local) > 0
	}

	// Filter: refuse at once what has nowhere to go. No endpoints at all:
	// REJECT; endpoints, but none on this node under a Local policy: DROP,
	// as kube-proxy does (the client's traffic belongs to another node).
	target, why := []string{"REJECT", "--reject-with", "icmp-port-unreachable"}, " has no endpoints"
	if hasEndpoints {
		target, why = []string{"DROP"}, " has no local endpoints"
	}
	refuse := func(dst string) {
		line(&g.filterServices, append([]string{"-A", ServicesChain, "-d", dst, "-p", proto,
			"-m", "comment", "--comment", quote(sp.name + why),
			"-m", proto, "--dport", port, "-m", "conntrack", "--ctstate", "NEW", "-j"}, target...)...)
	}
	if !hasIntEndpoints { // also when there are no endpoints at all
		refuse(clusterIP)
	}
	if !hasExtEndpoints {
		for _, ip := range externalIPs {
			refuse(ip.String() + "/32")
		}
		if nodePort != 0 {
			np := strconv.Itoa(nodePort)
			for _, dst := range g.nodeDsts {
				args := append([]string{"-A", ExternalChain}, dst.addr...)
				args = append(append(args, "-p", proto), dst.match...)
				args = append(args, "-m", "comment", "--comment", quote(sp.name+why),
					"-m", proto, "--dport", np, "-m", "conntrack", "--ctstate", "NEW", "-j")
				line(&g.filterExternal, append(args, target...)...)
			}
		}
	}
	sp.proto, sp.portNum, sp.nodePort, sp.externalIPs = proto, port, nodePort, externalIPs
	sp.localPolicy, sp.hasExtEndpoints = localPolicy, hasExtEndpoints
	sp.internalLocal, sp.hasIntEndpoints = internalLocal, hasIntEndpoints
	return hasEndpoints
}

// natRules renders the nat chains of one service port that has
// endpoints, each chain declared right before its rules, then its
// dispatch rules in SKP-SERVICES and SKP-NODEPORTS.
func (g *gen) natRules(sp *svcPort) {
	proto, port, clusterIP := sp.proto, sp.portNum, sp.clusterIP
	nodePort, externalIPs, localPolicy, hasExtEndpoints := sp.nodePort, sp.externalIPs, sp.localPolicy, sp.hasExtEndpoints
	svcChain := svcPrefix + sp.hash
	extChain := extPrefix + sp.hash
	svlChain := svlPrefix + sp.hash
	comment := quote(sp.name)
	// The SVC chain (all endpoints) serves cluster IP traffic unless the
	// internal policy is Local, and external traffic; the SVL chain (this
	// node's endpoints) serves whichever policy is Local.
	usesSVC := !sp.internalLocal || nodePort != 0 || len(externalIPs) > 0
	usesSVL := sp.internalLocal && sp.hasIntEndpoints || localPolicy && hasExtEndpoints
	internalChain := svcChain
	if sp.internalLocal {
		internalChain = svlChain
	}

	// Declarations, in descending name order (see Compute).
	if usesSVL {
		g.declare(svlChain)
	}
	if usesSVC {
		g.declare(svcChain)
	}
	if localPolicy {
		g.declare(extChain)
	}

	// nat: dispatch from SKP-SERVICES and SKP-NODEPORTS. Under policy
	// Cluster, external traffic (external IPs, NodePorts) is marked for
	// masquerading right there and sent to the SVC chain; policy Local
	// needs its own SKP-EXT chain to tell external clients from pods and
	// the node itself.
	if sp.hasIntEndpoints {
		line(&g.svcRules, "-A", g.shard(sp.clusterAddr), "-d", clusterIP, "-p", proto,
			"-m", "comment", "--comment", quote(sp.name+" cluster IP"),
			"-m", proto, "--dport", port, "-j", internalChain)
	}
	entry := svcChain
	if localPolicy {
		entry = extChain
	}
	for _, ip := range externalIPs {
		c := quote(sp.name + " external IP")
		shard := g.shard(ip)
		if !localPolicy {
			line(&g.svcRules, "-A", shard, "-d", ip.String()+"/32", "-p", proto, "-m", "comment", "--comment", c,
				"-m", proto, "--dport", port, "-j", "MARK", "--or-mark", masqBit)
		}
		line(&g.svcRules, "-A", shard, "-d", ip.String()+"/32", "-p", proto, "-m", "comment", "--comment", c,
			"-m", proto, "--dport", port, "-j", entry)
	}
	if nodePort != 0 {
		np := strconv.Itoa(nodePort)
		if !localPolicy {
			line(&g.svcRules, "-A", NodePortsChain, "-p", proto, "-m", "comment", "--comment", comment,
				"-m", proto, "--dport", np, "-j", "MARK", "--or-mark", masqBit)
		}
		line(&g.svcRules, "-A", NodePortsChain, "-p", proto, "-m", "comment", "--comment", comment,
			"-m", proto, "--dport", np, "-j", entry)
	}

	// SKP-SVC: all endpoints; cluster IP traffic from outside the pods is
	// masqueraded so replies come back through this node (in SKP-SVL
	// instead when that is where the cluster IP leads).
	masqOutsiders := func(chain string) {
		// Not for a cluster IP that SKP-POSTROUTING's conntrack rule covers.
		if g.in.ClusterCIDR.IsValid() && !g.svcCIDR.Contains(sp.clusterAddr) {
			line(&g.svcRules, "-A", chain, "!", "-s", g.in.ClusterCIDR.Masked().String(), "-d", clusterIP, "-p", proto,
				"-m", "comment", "--comment", quote(sp.name+" cluster IP"),
				"-m", proto, "--dport", port, "-j", "MARK", "--or-mark", masqBit)
		}
	}
	if usesSVC {
		if !sp.internalLocal {
			masqOutsiders(svcChain)
		}
		g.spread(sp, svcChain, proto, sp.cluster)
	}

	if localPolicy {
		// Policy Local keeps the client's address and only uses this
		// node's endpoints — except for traffic from pods and from the
		// node itself, which has no outside client to preserve.
		if g.in.ClusterCIDR.IsValid() {
			line(&g.svcRules, "-A", extChain, "-s", g.in.ClusterCIDR.Masked().String(),
				"-m", "comment", "--comment", quote("pod traffic for "+sp.name+" external destinations"), "-j", svcChain)
		}
		line(&g.svcRules, "-A", extChain, "-m", "comment", "--comment", quote("masquerade LOCAL traffic for "+sp.name+" external destinations"),
			"-m", "addrtype", "--src-type", "LOCAL", "-j", "MARK", "--or-mark", masqBit)
		line(&g.svcRules, "-A", extChain, "-m", "comment", "--comment", quote("route LOCAL traffic for "+sp.name+" external destinations"),
			"-m", "addrtype", "--src-type", "LOCAL", "-j", svcChain)
		if hasExtEndpoints {
			line(&g.svcRules, "-A", extChain, "-j", svlChain)
		}
		// Without local endpoints the packet falls through undNATed
		// and the filter table drops it (SKP-EXTERNAL / SKP-SERVICES).
	}
	if usesSVL {
		if sp.internalLocal {
			masqOutsiders(svlChain)
		}
		g.spread(sp, svlChain, proto, sp.local)
	}
}

// conntrackMasq returns in.ServiceCIDR if one conntrack rule can stand in
// for the masquerade rules of the cluster IPs in it: it is an IPv4
// prefix, the cluster CIDR is known, and no node address or external IP
// lies in it, since a connection to those must keep its client's address
// under policy Local. Otherwise it returns the zero prefix.
func conntrackMasq(in Input) netip.Prefix {
	cidr := in.ServiceCIDR
	if !cidr.IsValid() || !cidr.Addr().Is4() || !in.ClusterCIDR.IsValid() {
		return netip.Prefix{}
	}
	for _, ip := range in.NodeIPs {
		if cidr.Contains(ip) {
			return netip.Prefix{}
		}
	}
	for _, svc := range in.Services {
		if svc == nil {
			continue
		}
		for _, e := range svc.Spec.ExternalIPs {
			if ip, err := netip.ParseAddr(e); err == nil && cidr.Contains(ip) {
				return netip.Prefix{}
			}
		}
	}
	return cidr.Masked()
}

// outsidersToClusterIPs matches the connections from outside the cluster
// CIDR to a cluster IP in the service CIDR that a DNAT rule sent on, by
// their original addresses.
//
// The node-local DNS redirect is left out: before, it went through no
// service chain and was never masqueraded.
func (g *gen) outsidersToClusterIPs() []string {
	m := []string{"-m", "conntrack", "--ctstate", "DNAT", "!", "--ctorigsrc", g.in.ClusterCIDR.Masked().String(),
		"--ctorigdst", g.svcCIDR.String()} // in iptables-save's order
	if d := g.in.LocalDNS; d != nil && d.VIP.Is4() && d.Target.Addr().Is4() && g.svcCIDR.Contains(d.VIP) {
		m = append(m, "!", "--ctreplsrc", d.Target.Addr().String()) // iptables-save prints no /32 here
	}
	return m
}

// spread writes the body of an SVC or SVL chain, which DNATs straight to
// the endpoints (there are no per-endpoint chains). Its rules carry no
// comment (the chain's first rule and the rules jumping to it name the
// service): a comment is one more match for the kernel to set up, about
// a tenth of the restore time at 10,000 services.
//
//  1. with ClientIP affinity, one rule per endpoint that sends a client
//     seen within the timeout back to the endpoint it was given (and
//     refreshes its entry, --update);
//  2. the even random split: rule i of n matches with probability
//     1/(n-i), the last rule unconditionally; with affinity each rule
//     also records the client in the endpoint's list (-m recent --set
//     after -m statistic, so only the picked endpoint records it).
//
// The endpoints' addresses are noted for SKP-HAIRPIN.
func (g *gen) spread(sp *svcPort, chain, proto string, eps []*endpoint) {
	secs, hasAffinity := affinity(sp.svc)
	for _, ep := range eps {
		if !ep.used {
			ep.used = true
			g.endpoints++
			g.dnat = append(g.dnat, ep.addr.Addr())
		}
		if hasAffinity && ep.affinity == "" {
			ep.affinity = affPrefix + g.hash(sp.svc.Namespace, "/", sp.svc.Name, ":", sp.port.Name, ":", string(sp.port.Protocol), ":", ep.addr.String())
		}
	}
	if hasAffinity {
		for _, ep := range eps {
			line(&g.svcRules, "-A", chain, "-p", proto, "-m", "recent", "--update", "--seconds", secs, "--reap", "--name", ep.affinity, "--mask", "255.255.255.255", "--rsource",
				"-j", "DNAT", "--to-destination", ep.addr.String())
		}
	}
	n := len(eps)
	args := make([]string, 0, 24)
	for i, ep := range eps {
		args = append(args[:0], "-A", chain, "-p", proto)
		if i < n-1 {
			args = append(args, "-m", "statistic", "--mode", "random", "--probability", probability(n-i))
		}
		if hasAffinity {
			args = append(args, "-m", "recent", "--set", "--name", ep.affinity, "--mask", "255.255.255.255", "--rsource")
		}
		line(&g.svcRules, append(args, "-j", "DNAT", "--to-destination", ep.addr.String())...)
	}
}

// affinity returns the ClientIP affinity timeout in seconds, if any.
func affinity(svc *corev1.Service) (string, bool) {
	if svc.Spec.SessionAffinity != corev1.ServiceAffinityClientIP {
		return "", false
	}
	secs := int32(defaultAffinitySeconds)
	if c := svc.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
		secs = *c.ClientIP.TimeoutSeconds
	}
	return strconv.Itoa(int(secs)), true
}

// externalIPs returns svc's valid IPv4 external IPs, sorted, without
// duplicates.
func externalIPs(svc *corev1.Service) []netip.Addr {
	if len(svc.Spec.ExternalIPs) == 0 {
		return nil
	}
	var ips []netip.Addr
	for _, s := range svc.Spec.ExternalIPs {
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
			ips = append(ips, ip)
		}
	}
	slices.SortFunc(ips, netip.Addr.Compare)
	return slices.Compact(ips)
}

// probability is the chance, formatted as iptables-save prints it (10
// decimals), that a rule picks one of the n endpoints still left.
func probability(n int) string {
	return strconv.FormatFloat(1/float64(n), 'f', 10, 64)
}

// hash returns the first 16 hex digits, upper case, of the SHA-256 of the
// concatenated parts.
func (g *gen) hash(parts ...string) string {
	g.hashBuf = g.hashBuf[:0]
	for _, p := range parts {
		g.hashBuf = append(g.hashBuf, p...)
	}
	g.hasher = sha256.Sum256(g.hashBuf)
	const digits = "0123456789ABCDEF"
	var out [16]byte
	for i := range 8 {
		out[2*i] = digits[g.hasher[i]>>4]
		out[2*i+1] = digits[g.hasher[i]&0xf]
	}
	return string(out[:])
}

func quote(s string) string { return `"` + s + `"` }

func line(b *bytes.Buffer, args ...string) {
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a)
	}
	b.WriteByte('\n')
}

// shard returns the SKP-DST chain of destination ip (by its last byte),
// noting that it is used.
func (g *gen) shard(ip netip.Addr) string {
	b := ip.As4()[3]
	if !slices.Contains(g.shards, b) {
		g.shards = append(g.shards, b)
	}
	return shardName(b)
}

func shardName(b byte) string {
	return dstPrefix + string([]byte{'0' + b/100, '0' + b/10%10, '0' + b%10})
}

// declare starts a per-service chain in the nat payload.
func (g *gen) declare(chain string) {
	g.natChains = append(g.natChains, chain)
	g.svcRules.WriteByte(':')
	g.svcRules.WriteString(chain)
	g.svcRules.WriteString(" - [0:0]\n")
}

// finish assembles the payloads from the service ports' rules, given in
// service order.
func (g *gen) finish(ports []*portRules) Result {
	res := Result{Services: len(ports)}
	var used [256]bool
	var natOrder []*portRules
	natLen, natChains := 0, 0
	hairpin := map[netip.Addr]bool{}
	for _, p := range ports {
		res.Endpoints += p.endpoints
		for _, b := range p.shards {
			used[b] = true
		}
		for _, ip := range p.dnat {
			if g.mayBeLocal[ip] {
				hairpin[ip] = true
			}
		}
		if len(p.nat) > 0 {
			natOrder = append(natOrder, p)
			natLen += len(p.nat)
			natChains += len(p.chains)
		}
	}
	// The nat payload is written service port by service port, each
	// one's chains declared just before their rules, in descending order
	// of chain name. iptables-nft (1.8.x) keeps every chain name a restore
	// mentions in a sorted linked list, walked from its head for every
	// line; declared in this order, a service's chains sit at the head of
	// their prefix's run when its rules are read, which turns a walk over
	// all chains (seconds at 10,000 services) into a few steps.
	slices.SortFunc(natOrder, func(a, b *portRules) int { return strings.Compare(b.hash, a.hash) })

	var shards []byte
	for b, u := range used {
		if u {
			shards = append(shards, byte(b))
		}
	}
	var nat bytes.Buffer
	nat.Grow(g.natServices.Len() + natLen + 1024 + 80*len(shards) + 100*len(hairpin))
	nat.WriteString("*nat\n")
	res.NATChains = make([]string, 0, len(fixedNATChains)+len(shards)+natChains)
	res.NATChains = append(res.NATChains, fixedNATChains...)
	for _, b := range shards {
		res.NATChains = append(res.NATChains, shardName(b))
	}
	for _, c := range res.NATChains {
		nat.WriteByte(':')
		nat.WriteString(c)
		nat.WriteString(" - [0:0]\n")
	}
	for _, p := range natOrder {
		res.NATChains = append(res.NATChains, p.chains...)
	}
	// Hairpin: a DNATed packet going back to its sender, a pod of this
	// node, is masqueraded, or the pod would get its own reply from
	// itself rather than from the service.
	fixedStart := nat.Len()
	line(&nat, "-A", PostroutingChain, "-m", "conntrack", "--ctstate", "DNAT", "-j", HairpinChain)
	if g.svcCIDR.IsValid() {
		// Cluster IP traffic from outside the pods: replies must come
		// back through this node.
		line(&nat, append(append([]string{"-A", PostroutingChain}, g.outsidersToClusterIPs()...), "-j", "MARK", "--or-mark", masqBit)...)
	}
	line(&nat, "-A", PostroutingChain, "-m", "mark", "!", "--mark", MasqMark, "-j", "RETURN")
	// Clear the mark so a packet re-entering the stack (e.g. over a
	// tunnel) is not masqueraded twice.
	line(&nat, "-A", PostroutingChain, "-j", "MARK", "--xor-mark", masqBit)
	masq := []string{"-A", PostroutingChain, "-m", "comment", "--comment", quote("skiff service traffic requiring SNAT"), "-j", "MASQUERADE"}
	if g.in.MasqueradeRandomFully {
		masq = append(masq, "--random-fully")
	}
	line(&nat, masq...)
	for _, ip := range slices.SortedFunc(maps.Keys(hairpin), netip.Addr.Compare) {
		a := ip.String() + "/32"
		line(&nat, "-A", HairpinChain, "-s", a, "-d", a, "-j", "MARK", "--or-mark", masqBit)
	}
	nat.Write(g.natServices.Bytes())
	for _, b := range shards {
		// -d 0.0.0.B/0.0.0.255: the destination's last byte is B.
		line(&nat, "-A", ServicesChain, "-d", "0.0.0."+strconv.Itoa(int(b))+"/0.0.0.255", "-j", shardName(b))
	}
	fixedEnd := nat.Len()
	for _, p := range natOrder {
		nat.Write(p.nat)
	}
	tailStart := nat.Len()
	// The NodePorts dispatch must be the last rule of SKP-SERVICES: a VIP
	// that happens to be a local address still goes to its service.
	for _, dst := range g.nodeDsts {
		args := append(append([]string{"-A", ServicesChain}, dst.addr...), dst.match...)
		line(&nat, append(args, "-m", "comment", "--comment", quote("skiff service nodeports; must be the last rule in this chain"), "-j", NodePortsChain)...)
	}
	tailEnd := nat.Len()
	nat.WriteString("COMMIT\n")

	// The same lines by chain: the fixed ones read from the payload, the
	// services' from their renderings (shared with the last call's).
	all := nat.Bytes()
	res.NATTable = Table{Chains: res.NATChains, Rules: make(map[string][][]byte, len(res.NATChains))}
	for _, c := range res.NATChains {
		res.NATTable.Rules[c] = nil
	}
	res.NATTable.add(all[fixedStart:fixedEnd])
	for _, p := range natOrder {
		for _, cl := range p.lines {
			if cur := res.NATTable.Rules[cl.chain]; cur != nil {
				res.NATTable.Rules[cl.chain] = append(cur, cl.lines...)
			} else {
				res.NATTable.Rules[cl.chain] = cl.lines[:len(cl.lines):len(cl.lines)]
			}
		}
	}
	res.NATTable.add(all[tailStart:tailEnd])

	res.FilterChains = []string{ServicesChain, ExternalChain, ForwardChain}
	var filter bytes.Buffer
	filter.WriteString("*filter\n")
	for _, c := range res.FilterChains {
		filter.WriteString(":" + c + " - [0:0]\n")
	}
	for _, p := range ports {
		filter.Write(p.filterServices)
	}
	for _, p := range ports {
		filter.Write(p.filterExternal)
	}
	line(&filter, "-A", ForwardChain, "-m", "comment", "--comment", quote("skiff forwarding rules"), "-m", "mark", "--mark", MasqMark, "-j", "ACCEPT")
	if g.svcCIDR.IsValid() {
		// What the mark accepted above (the first packet only) for cluster
		// IP traffic from outside the pods, which is marked only after
		// forwarding now; this accepts every packet of such a
		// connection (conntrack's DNAT state), as RELATED,ESTABLISHED
		// below does once there is a reply.
		line(&filter, append(append([]string{"-A", ForwardChain, "-m", "comment", "--comment", quote("skiff forwarding rules for cluster IPs")},
			g.outsidersToClusterIPs()...), "-j", "ACCEPT")...)
	}
	line(&filter, "-A", ForwardChain, "-m", "comment", "--comment", quote("skiff forwarding conntrack rule"), "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
	filter.WriteString("COMMIT\n")

	res.NAT, res.Filter = nat.Bytes(), filter.Bytes()
	return res
}

package dns

import (
	"context"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// maxCNAMEChain bounds the ExternalName targets followed inside the cluster
// domain (an ExternalName pointing at another one, or at itself).
const maxCNAMEChain = 8

// answer is what a lookup in the cluster domain produced.
type answer struct {
	rcode  int // RcodeSuccess (NODATA when answer is empty) or RcodeNameError
	answer []dns.RR
	extra  []dns.RR
}

// local answers a query for a name in the cluster domain.
func (s *Server) local(ctx context.Context, r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		m.Rcode = dns.RcodeRefused
		return m
	}
	a := s.lookup(ctx, q.Name, q.Qtype, 0)
	m.Rcode = a.rcode
	m.Answer = a.answer
	m.Extra = a.extra
	if len(m.Answer) == 0 || m.Rcode == dns.RcodeNameError {
		m.Ns = []dns.RR{s.soa()}
	}
	return m
}

// lookup resolves name (any case, in the cluster domain) for qtype; owner
// names of the direct answers keep name's case.
func (s *Server) lookup(ctx context.Context, name string, qtype uint16, depth int) answer {
	owner := dns.Fqdn(name)
	lname := strings.ToLower(owner)
	nx := answer{rcode: dns.RcodeNameError}
	// Labels below the zone, in query order: "web.default.svc." → [web default svc].
	rest := strings.TrimSuffix(strings.TrimSuffix(lname, s.zone), ".")
	var labels []string
	if rest != "" {
		labels = strings.Split(rest, ".")
	}
	n := len(labels)
	switch {
	case n == 0:
		return s.apex(owner, qtype)
	case n == 1 && labels[0] == "dns-version":
		if qtype == dns.TypeTXT || qtype == dns.TypeANY {
			return answer{answer: []dns.RR{&dns.TXT{Hdr: s.hdr(owner, dns.TypeTXT), Txt: []string{"1.1.0"}}}}
		}
		return answer{}
	case labels[n-1] == "pod":
		return s.pod(owner, labels[:n-1], qtype)
	case labels[n-1] != "svc":
		return nx
	case n == 1: // svc.<domain>: an empty non-terminal
		return answer{}
	case n == 2: // <ns>.svc.<domain>: exists while the namespace has services
		if s.namespaceHasServices(labels[0]) {
			return answer{}
		}
		return nx
	case n > 5:
		return nx
	}
	svc := s.service(labels[n-2], labels[n-3])
	if svc == nil {
		return nx
	}
	svcName := labels[n-3] + "." + labels[n-2] + ".svc." + s.zone
	switch n {
	case 3:
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			return s.externalName(ctx, owner, svc, qtype, depth)
		}
		return s.serviceRecords(owner, svcName, svc, qtype, "", "", "")
	case 4:
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			return nx
		}
		return s.serviceRecords(owner, svcName, svc, qtype, labels[0], "", "")
	default: // 5: _port._proto.svc.ns.svc
		if svc.Spec.Type == corev1.ServiceTypeExternalName {
			return nx
		}
		port, proto := strings.TrimPrefix(labels[0], "_"), strings.TrimPrefix(labels[1], "_")
		if port == "" || proto == "" {
			return nx
		}
		return s.serviceRecords(owner, svcName, svc, qtype, "", port, proto)
	}
}

// target is one (address, port) a service name stands for: the ClusterIP
// with each service port, or for a headless service (and for endpoint
// names) each endpoint with each of its ports.
type target struct {
	name string     // FQDN the SRV record points at
	ip   netip.Addr //
	port int32      // -1: none (an EndpointSlice without ports)
}

// serviceRecords answers for a ClusterIP or headless service name, an
// endpoint name under it (endpoint != ""), or a port name (port != "").
func (s *Server) serviceRecords(owner, svcName string, svc *corev1.Service, qtype uint16, endpoint, port, proto string) answer {
	var targets []target
	if endpoint == "" && svc.Spec.ClusterIP != corev1.ClusterIPNone {
		ips := clusterIPs(svc)
		if port == "" && len(svc.Spec.Ports) == 0 {
			// Not valid in the API, but the address is known: answer it.
			for _, ip := range ips {
				targets = append(targets, target{name: svcName, ip: ip, port: -1})
			}
		}
		for _, p := range svc.Spec.Ports {
			if port != "" && !portMatches(port, proto, p.Name, p.Protocol) {
				continue
			}
			for _, ip := range ips {
				targets = append(targets, target{name: svcName, ip: ip, port: p.Port})
			}
		}
	} else {
		targets = s.endpointTargets(svcName, svc, endpoint, port, proto)
	}
	if len(targets) == 0 {
		// As CoreDNS: a headless service without ready endpoints, an
		// unknown endpoint or port name do not exist.
		return answer{rcode: dns.RcodeNameError}
	}

	var a answer
	switch qtype {
	case dns.TypeA, dns.TypeAAAA, dns.TypeANY:
		seen := make(map[netip.Addr]bool, len(targets))
		for _, t := range targets {
			if seen[t.ip] {
				continue
			}
			seen[t.ip] = true
			if rr := s.addrRR(owner, t.ip, qtype); rr != nil {
				a.answer = append(a.answer, rr)
			}
		}
	case dns.TypeSRV:
		type key struct {
			name string
			port int32
		}
		seen := make(map[key]bool, len(targets))
		var srvs []target
		for _, t := range targets {
			k := key{t.name, t.port}
			if t.port < 0 || seen[k] {
				continue
			}
			seen[k] = true
			srvs = append(srvs, t)
		}
		// As CoreDNS: equal priority, the weights share 100.
		weight := uint16(0)
		if len(srvs) > 0 {
			weight = uint16(100 / len(srvs))
		}
		for _, t := range srvs {
			a.answer = append(a.answer, &dns.SRV{Hdr: s.hdr(owner, dns.TypeSRV), Priority: 0, Weight: weight, Port: uint16(t.port), Target: t.name})
		}
		type extraKey struct {
			name string
			ip   netip.Addr
		}
		seenExtra := make(map[extraKey]bool, len(targets))
		for _, t := range targets {
			k := extraKey{t.name, t.ip}
			if t.port < 0 || seenExtra[k] {
				continue
			}
			seenExtra[k] = true
			a.extra = append(a.extra, s.addrRR(t.name, t.ip, dns.TypeANY))
		}
	}
	return a
}

// endpointTargets lists the endpoints of svc that serve DNS (ready ones,
// all with publishNotReadyAddresses), filtered by endpoint name and port.
func (s *Server) endpointTargets(svcName string, svc *corev1.Service, endpoint, port, proto string) []target {
	var targets []target
	for _, slice := range s.cfg.Slices(svc.Namespace, svc.Name) {
		if slice == nil || (slice.AddressType != discoveryv1.AddressTypeIPv4 && slice.AddressType != discoveryv1.AddressTypeIPv6) {
			continue
		}
		var ports []int32
		for _, p := range slice.Ports {
			name, pr := "", corev1.ProtocolTCP
			if p.Name != nil {
				name = *p.Name
			}
			if p.Protocol != nil {
				pr = *p.Protocol
			}
			if p.Port == nil || (port != "" && !portMatches(port, proto, name, pr)) {
				continue
			}
			ports = append(ports, *p.Port)
		}
		if len(ports) == 0 {
			if port != "" {
				continue
			}
			ports = []int32{-1}
		}
		for i := range slice.Endpoints {
			ep := &slice.Endpoints[i]
			if !svc.Spec.PublishNotReadyAddresses && ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, addr := range ep.Addresses {
				ip, err := netip.ParseAddr(addr)
				if err != nil {
					continue
				}
				host := endpointHostname(ep, ip)
				if endpoint != "" && endpoint != host {
					continue
				}
				for _, p := range ports {
					targets = append(targets, target{name: host + "." + svcName, ip: ip.Unmap(), port: p})
				}
			}
		}
	}
	return targets
}

// endpointHostname is an endpoint's name under its service: its hostname,
// else its address with dashes.
func endpointHostname(ep *discoveryv1.Endpoint, ip netip.Addr) string {
	if ep.Hostname != nil && *ep.Hostname != "" {
		return strings.ToLower(*ep.Hostname)
	}
	return dashed(ip)
}

// dashed writes an address with dashes for dots or colons: 10-0-0-1, fd00--1.
func dashed(ip netip.Addr) string {
	r := strings.NewReplacer(".", "-", ":", "-")
	return r.Replace(ip.Unmap().String())
}

// portMatches reports whether a service or EndpointSlice port matches the
// lower-case port and protocol labels of a query.
func portMatches(port, proto, name string, protocol corev1.Protocol) bool {
	if protocol == "" {
		protocol = corev1.ProtocolTCP
	}
	return strings.EqualFold(port, name) && strings.EqualFold(proto, string(protocol))
}

// clusterIPs returns a non-headless service's ClusterIPs.
func clusterIPs(svc *corev1.Service) []netip.Addr {
	raw := svc.Spec.ClusterIPs
	if len(raw) == 0 && svc.Spec.ClusterIP != "" {
		raw = []string{svc.Spec.ClusterIP}
	}
	var ips []netip.Addr
	for _, s := range raw {
		if ip, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	return ips
}

// externalName answers for an ExternalName service: a CNAME to the
// external name, followed for other types (as CoreDNS does, resolving the
// target itself: in the cluster domain locally, elsewhere upstream).
func (s *Server) externalName(ctx context.Context, owner string, svc *corev1.Service, qtype uint16, depth int) answer {
	ext := strings.TrimSpace(svc.Spec.ExternalName)
	if ext == "" {
		return answer{rcode: dns.RcodeNameError}
	}
	targetName := dns.Fqdn(ext)
	a := answer{answer: []dns.RR{&dns.CNAME{Hdr: s.hdr(owner, dns.TypeCNAME), Target: targetName}}}
	if qtype == dns.TypeCNAME {
		return a
	}
	if s.inZone(strings.ToLower(targetName)) {
		if depth >= maxCNAMEChain {
			return a
		}
		sub := s.lookup(ctx, targetName, qtype, depth+1)
		a.rcode = sub.rcode
		a.answer = append(a.answer, sub.answer...)
		a.extra = append(a.extra, sub.extra...)
		return a
	}
	req := new(dns.Msg)
	req.SetQuestion(targetName, qtype)
	req.SetEdns0(dns.DefaultMsgSize, false)
	resp := s.exchange(ctx, req, "udp")
	if resp == nil || (resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError) {
		return a // the client resolves the target itself
	}
	a.rcode = resp.Rcode
	a.answer = append(a.answer, resp.Answer...)
	return a
}

// pod answers <a-b-c-d>.<ns>.pod.<domain> ("pods insecure": any
// well-formed address, without checking that such a pod exists).
func (s *Server) pod(owner string, labels []string, qtype uint16) answer {
	switch len(labels) {
	case 0: // pod.<domain>
		return answer{}
	case 1: // <ns>.pod.<domain>
		if s.namespaceHasServices(labels[0]) {
			return answer{}
		}
		return answer{rcode: dns.RcodeNameError}
	case 2:
	default:
		return answer{rcode: dns.RcodeNameError}
	}
	ip, ok := parseDashed(labels[0])
	if !ok {
		return answer{rcode: dns.RcodeNameError}
	}
	var a answer
	if rr := s.addrRR(owner, ip, qtype); rr != nil {
		a.answer = []dns.RR{rr}
	}
	return a
}

// parseDashed parses 10-0-0-1 and fd00--1.
func parseDashed(label string) (netip.Addr, bool) {
	if strings.Count(label, "-") == 3 {
		if ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ".")); err == nil && ip.Is4() {
			return ip, true
		}
	}
	ip, err := netip.ParseAddr(strings.ReplaceAll(label, "-", ":"))
	if err != nil || !ip.Is6() || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

// apex answers for the zone itself: SOA, NS, otherwise NODATA.
func (s *Server) apex(owner string, qtype uint16) answer {
	var a answer
	if qtype == dns.TypeSOA || qtype == dns.TypeANY {
		soa := s.soa()
		soa.Hdr.Name = owner
		a.answer = append(a.answer, soa)
	}
	if qtype == dns.TypeNS || qtype == dns.TypeANY {
		a.answer = append(a.answer, &dns.NS{Hdr: s.hdr(owner, dns.TypeNS), Ns: "ns.dns." + s.zone})
	}
	return a
}

// soa is the cluster domain's SOA (as CoreDNS: ns.dns.<zone>,
// hostmaster.<zone>, refresh 2 h, retry 30 min, expire 1 d, minimum the TTL).
func (s *Server) soa() *dns.SOA {
	return &dns.SOA{
		Hdr:     s.hdr(s.zone, dns.TypeSOA),
		Ns:      "ns.dns." + s.zone,
		Mbox:    "hostmaster." + s.zone,
		Serial:  s.serial,
		Refresh: 7200,
		Retry:   1800,
		Expire:  86400,
		Minttl:  s.cfg.TTL,
	}
}

// addrRR returns an A or AAAA record for ip when qtype asks for its family
// (TypeANY: either), else nil.
func (s *Server) addrRR(owner string, ip netip.Addr, qtype uint16) dns.RR {
	if ip.Is4() && (qtype == dns.TypeA || qtype == dns.TypeANY) {
		return &dns.A{Hdr: s.hdr(owner, dns.TypeA), A: ip.AsSlice()}
	}
	if ip.Is6() && (qtype == dns.TypeAAAA || qtype == dns.TypeANY) {
		return &dns.AAAA{Hdr: s.hdr(owner, dns.TypeAAAA), AAAA: ip.AsSlice()}
	}
	return nil
}

func (s *Server) hdr(owner string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: s.cfg.TTL}
}

// service finds a service by its lower-case namespace and name.
func (s *Server) service(namespace, name string) *corev1.Service {
	if s.cfg.Service != nil {
		return s.cfg.Service(namespace, name)
	}
	for _, svc := range s.cfg.Services() {
		if svc != nil && svc.Namespace == namespace && svc.Name == name {
			return svc
		}
	}
	return nil
}

// namespaceHasServices stands in for "the namespace exists" (CoreDNS asks
// the API; Skiff's DNS only sees Services): <ns>.svc.<domain> is an empty
// non-terminal while it holds a service.
func (s *Server) namespaceHasServices(namespace string) bool {
	for _, svc := range s.cfg.Services() {
		if svc != nil && svc.Namespace == namespace {
			return true
		}
	}
	return false
}

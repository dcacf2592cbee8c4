package dns

import (
	"context"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// reverse answers a PTR query for a service's ClusterIP or a ready
// endpoint's address (as CoreDNS with the in-addr.arpa and ip6.arpa zones
// and fallthrough, kubeadm's default): nil when the address is not the
// cluster's, and the query is forwarded like any other. It scans every
// service and its slices: reverse queries are rare.
func (s *Server) reverse(ctx context.Context, r *dns.Msg) *dns.Msg {
	q := r.Question[0]
	ip, ok := parseReverse(strings.ToLower(q.Name))
	if !ok {
		return nil
	}
	var names []string
	seen := map[string]bool{}
	add := func(name string) {
		if !seen[name] {
			seen[name] = true
			names = append(names, name)
		}
	}
	services := s.cfg.Services()
	for _, svc := range services {
		if svc == nil || svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		for _, cip := range clusterIPs(svc) {
			if cip == ip {
				add(svc.Name + "." + svc.Namespace + ".svc." + s.zone)
			}
		}
	}
	if len(names) == 0 {
		for _, svc := range services {
			if svc == nil || svc.Spec.Type == corev1.ServiceTypeExternalName || ctx.Err() != nil {
				continue
			}
			for _, slice := range s.cfg.Slices(svc.Namespace, svc.Name) {
				if slice == nil || slice.AddressType == discoveryv1.AddressTypeFQDN {
					continue
				}
				for i := range slice.Endpoints {
					ep := &slice.Endpoints[i]
					if !svc.Spec.PublishNotReadyAddresses && ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
						continue
					}
					for _, a := range ep.Addresses {
						if epIP, err := netip.ParseAddr(a); err == nil && epIP.Unmap() == ip {
							add(endpointHostname(ep, ip) + "." + svc.Name + "." + svc.Namespace + ".svc." + s.zone)
						}
					}
				}
			}
		}
	}
	if len(names) == 0 {
		return nil
	}
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	for _, n := range names {
		m.Answer = append(m.Answer, &dns.PTR{Hdr: s.hdr(q.Name, dns.TypePTR), Ptr: n})
	}
	return m
}

// parseReverse parses 4.3.2.1.in-addr.arpa. and the 32-nibble ip6.arpa
// names; false for anything else (partial names included).
func parseReverse(name string) (netip.Addr, bool) {
	switch {
	case strings.HasSuffix(name, ".in-addr.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".in-addr.arpa."), ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		var b [4]byte
		for i, l := range labels {
			n, err := strconv.ParseUint(l, 10, 8)
			if err != nil || (len(l) > 1 && l[0] == '0') {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	case strings.HasSuffix(name, ".ip6.arpa."):
		labels := strings.Split(strings.TrimSuffix(name, ".ip6.arpa."), ".")
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels {
			n, err := strconv.ParseUint(l, 16, 4)
			if err != nil || len(l) != 1 {
				return netip.Addr{}, false
			}
			nib := 31 - i // labels run from the last nibble to the first
			if nib%2 == 0 {
				b[nib/2] |= byte(n) << 4
			} else {
				b[nib/2] |= byte(n)
			}
		}
		return netip.AddrFrom16(b).Unmap(), true
	}
	return netip.Addr{}, false
}

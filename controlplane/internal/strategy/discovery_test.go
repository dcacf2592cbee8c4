package strategy

import (
	"fmt"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

func TestValidateEndpointSlice(t *testing.T) {
	many := make([]string, maxSliceAddresses+1)
	for i := range many {
		many[i] = fmt.Sprintf("10.244.1.%d", i+1)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*discoveryv1.EndpointSlice)
		want   []string
	}{
		{"valid", func(*discoveryv1.EndpointSlice) {}, nil},
		{"no addressType", func(s *discoveryv1.EndpointSlice) { s.AddressType = "" }, []string{"addressType: Required value"}},
		{"addressType", func(s *discoveryv1.EndpointSlice) { s.AddressType = "IP" }, []string{"addressType: Unsupported value"}},
		{"no addresses", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = nil }, []string{"endpoints[0].addresses: Required value"}},
		{"too many addresses", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = many }, []string{"endpoints[0].addresses: Too many"}},
		{"IPv6 in an IPv4 slice", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"fd00::5"} },
			[]string{"endpoints[0].addresses[0]: Invalid value"}},
		{"not an IP", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"web-1"} },
			[]string{"endpoints[0].addresses[0]: Invalid value"}},
		{"loopback", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Addresses = []string{"127.0.0.1"} },
			[]string{"endpoints[0].addresses[0]: Invalid value"}},
		{"IPv6 slice", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeIPv6
			s.Endpoints[0].Addresses = []string{"fd00::5"}
		}, nil},
		{"FQDN slice", func(s *discoveryv1.EndpointSlice) {
			s.AddressType = discoveryv1.AddressTypeFQDN
			s.Endpoints[0].Addresses = []string{"db.example.com"}
		}, nil},
		{"hostname", func(s *discoveryv1.EndpointSlice) { s.Endpoints[0].Hostname = ptrTo("Web_1") }, []string{"endpoints[0].hostname: Invalid value"}},
		{"port name", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Name = ptrTo("HTTP") }, []string{"ports[0].name: Invalid value"}},
		{"duplicate port name", func(s *discoveryv1.EndpointSlice) {
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptrTo("http"), Port: ptrTo(int32(8080)), Protocol: ptrTo(corev1.ProtocolTCP)})
		}, []string{"ports[1].name: Duplicate value"}},
		{"port protocol", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Protocol = ptrTo(corev1.Protocol("ICMP")) }, []string{"ports[0].protocol: Unsupported value"}},
		{"port number", func(s *discoveryv1.EndpointSlice) { s.Ports[0].Port = ptrTo(int32(0)) }, []string{"ports[0].port: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaulted(newEndpointSlice())
			tc.mutate(s)
			checkErrs(t, Validate(s), tc.want...)
		})
	}

	old := defaulted(newEndpointSlice())
	s := old.DeepCopy()
	s.Endpoints[0].Addresses = []string{"10.244.2.9"}
	checkErrs(t, ValidateUpdate(s, old))
	s.AddressType = discoveryv1.AddressTypeFQDN
	s.Endpoints[0].Addresses = []string{"db.example.com"}
	checkErrs(t, ValidateUpdate(s, old), "addressType: Invalid value")
}

func TestValidateLease(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*coordinationv1.Lease)
		want   []string
	}{
		{"valid", func(*coordinationv1.Lease) {}, nil},
		{"zero duration", func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = ptrTo(int32(0)) }, []string{"spec.leaseDurationSeconds: Invalid value"}},
		{"no duration", func(l *coordinationv1.Lease) { l.Spec.LeaseDurationSeconds = nil }, nil},
		{"negative transitions", func(l *coordinationv1.Lease) { l.Spec.LeaseTransitions = ptrTo(int32(-1)) }, []string{"spec.leaseTransitions: Invalid value"}},
		{"strategy", func(l *coordinationv1.Lease) {
			l.Spec.Strategy = ptrTo(coordinationv1.CoordinatedLeaseStrategy("Newest"))
		},
			[]string{"spec.strategy.strategy: Unsupported value"}},
		{"custom strategy", func(l *coordinationv1.Lease) {
			l.Spec.Strategy = ptrTo(coordinationv1.CoordinatedLeaseStrategy("example.com/newest"))
		}, nil},
		{"preferredHolder without strategy", func(l *coordinationv1.Lease) { l.Spec.PreferredHolder = ptrTo("node-2") },
			[]string{"spec.preferredHolder: Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := defaulted(newLease())
			tc.mutate(l)
			checkErrs(t, Validate(l), tc.want...)
			checkErrs(t, ValidateUpdate(l, defaulted(newLease())), tc.want...)
		})
	}
}

package netproxy

import (
	"net/netip"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestUDPTargets: the addresses whose conntrack entries a removal
// flushes are the UDP services' cluster IPs and their ready endpoints
// only.
func TestUDPTargets(t *testing.T) {
	no := false
	svc := func(name, ip string, proto corev1.Protocol) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
			Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{{Port: 53, Protocol: proto}}}}
	}
	slice := func(svc string, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: svc + "-x",
			Labels: map[string]string{discoveryv1.LabelServiceName: svc}}, Endpoints: eps}
	}
	got := udpTargets(
		[]*corev1.Service{svc("dns", "10.96.0.53", corev1.ProtocolUDP), svc("web", "10.96.0.80", corev1.ProtocolTCP)},
		[]*discoveryv1.EndpointSlice{
			slice("dns", discoveryv1.Endpoint{Addresses: []string{"10.244.1.2"}},
				discoveryv1.Endpoint{Addresses: []string{"10.244.1.3"}, Conditions: discoveryv1.EndpointConditions{Ready: &no}}),
			slice("web", discoveryv1.Endpoint{Addresses: []string{"10.244.1.9"}}),
		})
	var ips []string
	for ip := range got {
		ips = append(ips, ip.String())
	}
	sort.Strings(ips)
	want := []string{"10.244.1.2", "10.96.0.53"}
	if len(ips) != len(want) || ips[0] != want[0] || ips[1] != want[1] {
		t.Fatalf("got %v, want %v", ips, want)
	}
	if !got[netip.MustParseAddr("10.96.0.53")] {
		t.Fatal("the UDP service's cluster IP is missing")
	}
}

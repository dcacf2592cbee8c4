package netproxy

import (
	"net/netip"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
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

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Client, good.NodeName, good.NodeIPs = fake.NewClientset(), "n", []netip.Addr{netip.MustParseAddr("192.0.2.1")}
	if err := good.Validate(); err != nil {
		t.Fatalf("the default config with a client and a node: %v", err)
	}
	for name, mod := range map[string]func(*Config){
		"no client":            func(c *Config) { c.Client = nil },
		"no node name":         func(c *Config) { c.NodeName = "" },
		"no cluster CIDR":      func(c *Config) { c.ClusterCIDR = netip.Prefix{} },
		"an IPv6 service CIDR": func(c *Config) { c.ServiceCIDR = netip.MustParsePrefix("fd00::/108") },
		"a negative debounce":  func(c *Config) { c.MinSyncInterval = -1 },
	} {
		c := good
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	c := good
	c.ServiceCIDR = netip.Prefix{}
	if err := c.Validate(); err != nil {
		t.Errorf("no service CIDR (one rule per service port): %v", err)
	}
}

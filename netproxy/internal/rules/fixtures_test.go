package rules

import (
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Builders for test fixtures. They fill only what Compute reads.

const thisNode = "node-a"

func baseInput() Input {
	return Input{
		NodeName:    thisNode,
		ClusterCIDR: netip.MustParsePrefix("10.244.0.0/16"),
	}
}

type svcOpt func(*corev1.Service)

func service(ns, name, clusterIP string, ports []corev1.ServicePort, opts ...svcOpt) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: clusterIP,
			Ports:     ports,
			Selector:  map[string]string{"app": name},
		},
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

func port(name string, proto corev1.Protocol, p, target int32) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Protocol: proto, Port: p, TargetPort: intstr.FromInt32(target)}
}

func nodePort(name string, proto corev1.Protocol, p, target, np int32) corev1.ServicePort {
	sp := port(name, proto, p, target)
	sp.NodePort = np
	return sp
}

func withType(t corev1.ServiceType) svcOpt { return func(s *corev1.Service) { s.Spec.Type = t } }

func withLocalPolicy() svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal }
}

func withInternalLocal() svcOpt {
	return func(s *corev1.Service) {
		s.Spec.InternalTrafficPolicy = ptr(corev1.ServiceInternalTrafficPolicyLocal)
	}
}

func withExternalIPs(ips ...string) svcOpt {
	return func(s *corev1.Service) { s.Spec.ExternalIPs = ips }
}

func withAffinity(seconds int32) svcOpt {
	return func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		if seconds > 0 {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &seconds}}
		}
	}
}

func withoutSelector() svcOpt { return func(s *corev1.Service) { s.Spec.Selector = nil } }

func slicePort(name string, proto corev1.Protocol, p int32) discoveryv1.EndpointPort {
	ep := discoveryv1.EndpointPort{Port: &p, Protocol: &proto}
	if name != "" {
		ep.Name = &name
	}
	return ep
}

type epOpt func(*discoveryv1.Endpoint)

func ep(ip, node string, opts ...epOpt) discoveryv1.Endpoint {
	e := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}
	if node != "" {
		e.NodeName = &node
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func notReady() epOpt { return func(e *discoveryv1.Endpoint) { e.Conditions.Ready = ptr(false) } }

func readyUnknown() epOpt { return func(e *discoveryv1.Endpoint) { e.Conditions.Ready = nil } }

// terminating is a pod shutting down that still passes its readiness probe.
func terminating() epOpt {
	return func(e *discoveryv1.Endpoint) {
		e.Conditions.Ready = ptr(false)
		e.Conditions.Serving = ptr(true)
		e.Conditions.Terminating = ptr(true)
	}
}

func endpointSlice(ns, svc, name string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: name,
			Labels: map[string]string{discoveryv1.LabelServiceName: svc},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       ports,
		Endpoints:   eps,
	}
}

func ptr[T any](v T) *T { return &v }

// scale builds n services with k endpoints each, spread over 1,000 nodes
// (thisNode holds one endpoint in 1,000, like one node of 1,000), one
// in ten a NodePort and one in ten with ClientIP affinity.
func scale(n, k int) Input {
	in := baseInput()
	in.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12") // as the proxy is configured
	tcp := corev1.ProtocolTCP
	for i := range n {
		ns := fmt.Sprintf("ns%d", i%50)
		name := fmt.Sprintf("svc-%05d", i)
		ip := fmt.Sprintf("10.96.%d.%d", i/250, i%250+1)
		var opts []svcOpt
		p := port("http", tcp, 80, 8080)
		if i%10 == 0 {
			opts = append(opts, withType(corev1.ServiceTypeNodePort))
			p.NodePort = int32(30000 + i%2700)
		}
		if i%10 == 1 {
			opts = append(opts, withAffinity(0))
		}
		in.Services = append(in.Services, service(ns, name, ip, []corev1.ServicePort{p}, opts...))
		var eps []discoveryv1.Endpoint
		for j := range k {
			node := thisNode // one endpoint in 1,000: ~100 pods of this node at 10,000 services
			if (i*k+j)%1000 != 0 {
				node = fmt.Sprintf("node-%d", (i*k+j)%1000)
			}
			eps = append(eps, ep(fmt.Sprintf("10.%d.%d.%d", 100+j, i/250, i%250+1), node))
		}
		in.Slices = append(in.Slices, endpointSlice(ns, name, name+"-abcde", []discoveryv1.EndpointPort{slicePort("http", tcp, 8080)}, eps...))
	}
	return in
}

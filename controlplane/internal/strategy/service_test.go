package strategy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// allocated returns a defaulted service as the allocator leaves it: with a
// cluster IP and, for node port types, node ports.
func allocated(svc *corev1.Service) *corev1.Service {
	Default(svc)
	if svc.Spec.Type != corev1.ServiceTypeExternalName && svc.Spec.ClusterIP == "" {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = "10.96.0.20", []string{"10.96.0.20"}
		svc.Spec.IPFamilyPolicy = ptrTo(corev1.IPFamilyPolicySingleStack)
		svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for i := range svc.Spec.Ports {
			svc.Spec.Ports[i].NodePort = int32(30080 + i)
		}
	}
	return svc
}

func TestValidateService(t *testing.T) {
	for _, tc := range []struct {
		name   string
		svc    func() *corev1.Service // before defaulting; newService if nil
		mutate func(*corev1.Service)  // after defaulting and allocation
		want   []string
	}{
		{name: "valid", mutate: func(*corev1.Service) {}},
		{name: "valid before allocation", svc: newService, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = "", nil, nil, nil
		}},
		{name: "NodePort", svc: func() *corev1.Service { s := newService(); s.Spec.Type = corev1.ServiceTypeNodePort; return s }, mutate: func(*corev1.Service) {}},
		{name: "LoadBalancer", svc: func() *corev1.Service { s := newService(); s.Spec.Type = corev1.ServiceTypeLoadBalancer; return s }, mutate: func(*corev1.Service) {}},
		{name: "headless without ports", svc: func() *corev1.Service {
			s := newService()
			s.Spec.ClusterIP, s.Spec.Ports = corev1.ClusterIPNone, nil
			return s
		}, mutate: func(*corev1.Service) {}},
		{name: "ExternalName", svc: func() *corev1.Service {
			return &corev1.Service{ObjectMeta: objectMeta("db"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com."}}
		}, mutate: func(*corev1.Service) {}},
		{name: "ExternalName without name", svc: func() *corev1.Service {
			return &corev1.Service{ObjectMeta: objectMeta("db"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName}}
		}, mutate: func(*corev1.Service) {}, want: []string{"spec.externalName: Required value"}},
		{name: "ExternalName not a DNS name", svc: func() *corev1.Service {
			return &corev1.Service{ObjectMeta: objectMeta("db"), Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db_1"}}
		}, mutate: func(*corev1.Service) {}, want: []string{"spec.externalName: Invalid value"}},
		{name: "no ports", mutate: func(s *corev1.Service) { s.Spec.Ports = nil }, want: []string{"spec.ports: Required value"}},
		{name: "port 0", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Port = 0 }, want: []string{"spec.ports[0].port: Invalid value"}},
		{name: "port too high", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Port = 65536 }, want: []string{"spec.ports[0].port: Invalid value"}},
		{name: "unnamed second port", mutate: func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(443)})
		}, want: []string{"spec.ports[1].name: Required value"}},
		{name: "duplicate port names", mutate: func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "http", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(443)})
		}, want: []string{"spec.ports[1].name: Duplicate value"}},
		{name: "duplicate port and protocol", mutate: func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(80)})
		}, want: []string{"spec.ports[1]: Duplicate value"}},
		{name: "same port, other protocol", mutate: func(s *corev1.Service) {
			s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "quic", Port: 80, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(80)})
		}},
		{name: "bad protocol", mutate: func(s *corev1.Service) { s.Spec.Ports[0].Protocol = "HTTP" }, want: []string{"spec.ports[0].protocol: Unsupported value"}},
		{name: "targetPort number", mutate: func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromInt32(70000) }, want: []string{"spec.ports[0].targetPort: Invalid value"}},
		{name: "targetPort name", mutate: func(s *corev1.Service) { s.Spec.Ports[0].TargetPort = intstr.FromString("not_a_name") }, want: []string{"spec.ports[0].targetPort: Invalid value"}},
		{name: "nodePort on ClusterIP", mutate: func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 30080 }, want: []string{"spec.ports[0].nodePort: Forbidden"}},
		{name: "type", mutate: func(s *corev1.Service) { s.Spec.Type = "Internal" }, want: []string{"spec.type: Unsupported value"}},
		{name: "no internalTrafficPolicy", mutate: func(s *corev1.Service) { s.Spec.InternalTrafficPolicy = nil }, want: []string{"spec.internalTrafficPolicy: Required value"}},
		{name: "selector", mutate: func(s *corev1.Service) { s.Spec.Selector = map[string]string{"app": "web server"} }, want: []string{"spec.selector: Invalid value"}},
		{name: "clusterIP not an IP", mutate: func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.0", []string{"10.96.0"} }, want: []string{"spec.clusterIPs[0]: Invalid value"}},
		{name: "clusterIP not an IP before allocation", mutate: func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.0", nil }, want: []string{"spec.clusterIP: Invalid value"}},
		{name: "clusterIP and clusterIPs differ", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.21" }, want: []string{"spec.clusterIPs: Invalid value"}},
		{name: "headless NodePort", svc: func() *corev1.Service {
			s := newService()
			s.Spec.Type, s.Spec.ClusterIP = corev1.ServiceTypeNodePort, corev1.ClusterIPNone
			return s
		}, mutate: func(*corev1.Service) {}, want: []string{"spec.clusterIPs[0]: Invalid value"}},
		{name: "sessionAffinity", mutate: func(s *corev1.Service) { s.Spec.SessionAffinity = "Sticky" }, want: []string{"spec.sessionAffinity: Unsupported value"}},
		{name: "externalTrafficPolicy on ClusterIP", mutate: func(s *corev1.Service) {
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, want: []string{"spec.externalTrafficPolicy: Invalid value"}},
		{name: "externalIPs loopback", mutate: func(s *corev1.Service) {
			s.Spec.ExternalIPs = []string{"127.0.0.1"}
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
		}, want: []string{"spec.externalIPs[0]: Invalid value"}},
		{name: "externalIPs need a traffic policy", mutate: func(s *corev1.Service) { s.Spec.ExternalIPs = []string{"192.0.2.10"} },
			want: []string{"spec.externalTrafficPolicy: Required value"}},
		{name: "ipFamilies", mutate: func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{"IPv5"} }, want: []string{"spec.ipFamilies[0]: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := tc.svc
			if mk == nil {
				mk = newService
			}
			svc := allocated(mk())
			tc.mutate(svc)
			checkErrs(t, Validate(svc), tc.want...)
		})
	}
}

func TestValidateServiceMessages(t *testing.T) {
	svc := allocated(newService())
	svc.Spec.Ports = nil
	checkMessage(t, Validate(svc), "spec.ports: Required value")

	svc = allocated(newService())
	svc.Spec.Ports[0].NodePort = 30080
	checkMessage(t, Validate(svc), "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'")
}

func TestValidateServiceUpdate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		old    func() *corev1.Service // before defaulting; NodePort service if nil
		mutate func(*corev1.Service)
		want   []string
	}{
		{name: "unchanged", mutate: func(*corev1.Service) {}},
		{name: "selector and ports", mutate: func(s *corev1.Service) {
			s.Spec.Selector = map[string]string{"app": "web2"}
			s.Spec.Ports[0].Port = 8080
		}},
		{name: "nodePort", mutate: func(s *corev1.Service) { s.Spec.Ports[0].NodePort = 31000 }},
		{name: "clusterIP", mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "10.96.0.30", []string{"10.96.0.30"}
		}, want: []string{"spec.clusterIPs[0]: Invalid value"}},
		{name: "clusterIP unset", mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = "", nil
		}, want: []string{"spec.clusterIPs[0]: Invalid value"}},
		{name: "clusterIP changed alone", mutate: func(s *corev1.Service) { s.Spec.ClusterIP = "10.96.0.30" },
			want: []string{"spec.clusterIPs: Invalid value"}},
		{name: "to ExternalName", mutate: func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalName = corev1.ServiceTypeExternalName, "db.example.com"
			s.Spec.ClusterIP, s.Spec.ClusterIPs, s.Spec.IPFamilies, s.Spec.IPFamilyPolicy = "", nil, nil, nil
			s.Spec.ExternalTrafficPolicy, s.Spec.InternalTrafficPolicy = "", nil
			for i := range s.Spec.Ports {
				s.Spec.Ports[i].NodePort = 0
			}
		}},
		{name: "ipFamilies", mutate: func(s *corev1.Service) { s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} },
			want: []string{"spec.ipFamilies[0]: Invalid value", "spec.clusterIPs[0]: Invalid value"}},
		{name: "legacy allocator without clusterIPs", old: func() *corev1.Service { return newService() }, mutate: func(s *corev1.Service) {
			s.Spec.ClusterIP = "10.96.0.30"
		}, want: []string{"spec.clusterIP: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var old *corev1.Service
			if tc.old != nil {
				old = tc.old()
				Default(old)
				old.Spec.ClusterIP = "10.96.0.20" // an allocator that sets clusterIP only
			} else {
				old = newService()
				old.Spec.Type = corev1.ServiceTypeNodePort
				old = allocated(old)
			}
			svc := old.DeepCopy()
			tc.mutate(svc)
			checkErrs(t, ValidateUpdate(svc, old), tc.want...)
		})
	}
}

// TestPrepareServiceUpdate replays `kubectl apply` of a type change: the
// patched object still carries what the server filled in for the old type.
func TestPrepareServiceUpdate(t *testing.T) {
	old := newService()
	old.Spec.Type = corev1.ServiceTypeNodePort
	old = allocated(old)

	toClusterIP := old.DeepCopy()
	toClusterIP.Spec.Type = "" // removed from the manifest
	Default(toClusterIP)
	if errs := ValidateUpdate(toClusterIP, old); len(errs) == 0 {
		t.Errorf("without PrepareServiceUpdate: got no errors, want the stale node ports and traffic policy refused")
	}
	PrepareServiceUpdate(toClusterIP, old)
	checkErrs(t, ValidateUpdate(toClusterIP, old))
	check(t, "nodePort dropped", toClusterIP.Spec.Ports[0].NodePort, 0)
	check(t, "externalTrafficPolicy dropped", toClusterIP.Spec.ExternalTrafficPolicy, "")
	check(t, "clusterIP kept", toClusterIP.Spec.ClusterIP, old.Spec.ClusterIP)

	toExternal := old.DeepCopy()
	toExternal.Spec.Type, toExternal.Spec.ExternalName = corev1.ServiceTypeExternalName, "db.example.com"
	Default(toExternal)
	PrepareServiceUpdate(toExternal, old)
	checkErrs(t, ValidateUpdate(toExternal, old))
	check(t, "clusterIP dropped", toExternal.Spec.ClusterIP, "")
	check(t, "ipFamilies dropped", len(toExternal.Spec.IPFamilies), 0)

	// A node port the client changed is its own: it stays, and is refused.
	changed := old.DeepCopy()
	changed.Spec.Type = corev1.ServiceTypeClusterIP
	changed.Spec.Ports[0].NodePort = 31999
	PrepareServiceUpdate(changed, old)
	check(t, "changed nodePort kept", changed.Spec.Ports[0].NodePort, 31999)
	checkErrs(t, ValidateUpdate(changed, old), "spec.ports[0].nodePort: Forbidden")

	same := old.DeepCopy()
	PrepareServiceUpdate(same, old)
	if !reflect.DeepEqual(same, old) {
		t.Errorf("PrepareServiceUpdate changed an unchanged service: got %+v, want %+v", same, old)
	}
}

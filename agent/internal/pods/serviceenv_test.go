package pods

import (
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAddServiceVars(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web-api"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Ports: []corev1.ServicePort{
			{Name: "http", Port: 80},
			{Name: "dns-udp", Port: 53, Protocol: corev1.ProtocolUDP},
		}},
	}
	got := map[string]string{}
	addServiceVars(got, svc)
	want := map[string]string{
		"WEB_API_SERVICE_HOST":         "10.96.0.20",
		"WEB_API_SERVICE_PORT":         "80",
		"WEB_API_SERVICE_PORT_HTTP":    "80",
		"WEB_API_SERVICE_PORT_DNS_UDP": "53",
		"WEB_API_PORT":                 "tcp://10.96.0.20:80",
		"WEB_API_PORT_80_TCP":          "tcp://10.96.0.20:80",
		"WEB_API_PORT_80_TCP_PROTO":    "tcp",
		"WEB_API_PORT_80_TCP_PORT":     "80",
		"WEB_API_PORT_80_TCP_ADDR":     "10.96.0.20",
		"WEB_API_PORT_53_UDP":          "udp://10.96.0.20:53",
		"WEB_API_PORT_53_UDP_PROTO":    "udp",
		"WEB_API_PORT_53_UDP_PORT":     "53",
		"WEB_API_PORT_53_UDP_ADDR":     "10.96.0.20",
	}
	if !maps.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
	for _, ip := range []string{"", corev1.ClusterIPNone} {
		none := map[string]string{}
		s := svc.DeepCopy()
		s.Spec.ClusterIP = ip
		addServiceVars(none, s)
		if len(none) != 0 {
			t.Errorf("cluster IP %q: variables %v, want none", ip, none)
		}
	}
}

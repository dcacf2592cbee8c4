package pods

import (
	"errors"
	"net"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// errServicesNotSynced fails a container's environment until the services
// have been listed once, as the kubelet does: a pod started meanwhile
// would miss its service variables for good.
var errServicesNotSynced = errors.New("services have not yet been read at least once, cannot construct envvars")

// serviceEnv returns the variables the kubelet gives every container for
// services: those of the API's own service (default/kubernetes) always,
// and, unless the pod sets enableServiceLinks to false, those of every
// service of its namespace that has a cluster IP (docker-link style,
// <NAME>_SERVICE_HOST, <NAME>_PORT_<port>_<PROTO>_ADDR, ...).
func (m *Manager) serviceEnv(pod *corev1.Pod) (map[string]string, error) {
	if m.services == nil || !m.servicesSynced() {
		return nil, errServicesNotSynced
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	chosen := map[string]*corev1.Service{}
	if links {
		svcs, err := m.services.Services(pod.Namespace).List(labels.Everything())
		if err != nil {
			return nil, err
		}
		for _, s := range svcs {
			chosen[s.Name] = s
		}
	}
	// The pod's namespace may have its own "kubernetes" service; the API's
	// fills the name only when it does not.
	if _, ok := chosen["kubernetes"]; !ok {
		if s, err := m.services.Services(metav1.NamespaceDefault).Get("kubernetes"); err == nil {
			chosen["kubernetes"] = s
		}
	}
	out := map[string]string{}
	for _, s := range chosen {
		addServiceVars(out, s)
	}
	return out, nil
}

// addServiceVars adds the variables of one service, if it has a cluster IP
// and ports.
func addServiceVars(out map[string]string, s *corev1.Service) {
	ip := s.Spec.ClusterIP
	if ip == "" || ip == corev1.ClusterIPNone || len(s.Spec.Ports) == 0 {
		return
	}
	name := envName(s.Name)
	out[name+"_SERVICE_HOST"] = ip
	out[name+"_SERVICE_PORT"] = strconv.Itoa(int(s.Spec.Ports[0].Port))
	for i, p := range s.Spec.Ports {
		port := strconv.Itoa(int(p.Port))
		if p.Name != "" {
			out[name+"_SERVICE_PORT_"+envName(p.Name)] = port
		}
		proto := string(p.Protocol)
		if proto == "" {
			proto = string(corev1.ProtocolTCP)
		}
		url := strings.ToLower(proto) + "://" + net.JoinHostPort(ip, port)
		if i == 0 {
			out[name+"_PORT"] = url
		}
		prefix := name + "_PORT_" + port + "_" + strings.ToUpper(proto)
		out[prefix] = url
		out[prefix+"_PROTO"] = strings.ToLower(proto)
		out[prefix+"_PORT"] = port
		out[prefix+"_ADDR"] = ip
	}
}

// envName is a service or port name as a variable name: upper case, "-"
// as "_".
func envName(s string) string { return strings.ToUpper(strings.ReplaceAll(s, "-", "_")) }

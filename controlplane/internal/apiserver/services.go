package apiserver

// Service cluster IPs and node ports: chosen by the API server before the
// write is proposed, and held as keys written in the same Raft entry as the
// service (registry.Reservations), so that two services never get the same
// IP or node port, even when created at the same time on different masters.

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
)

// Service address defaults, as DESIGN.md fixes them.
var (
	DefaultServiceCIDR   = netip.MustParsePrefix("10.96.0.0/12")
	DefaultNodePortRange = PortRange{Base: 30000, Size: 2768}
)

// DefaultTolerationSeconds is Skiff's default for Config's: pods on a
// failed node are replaced within seconds, not Kubernetes' five minutes.
const DefaultTolerationSeconds = 30

// PortRange is the node port range: Base to Base+Size-1.
type PortRange struct{ Base, Size int }

func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Base, r.Base+r.Size-1) }

func (r PortRange) contains(p int) bool { return p >= r.Base && p < r.Base+r.Size }

// Keys of held service IPs and node ports.
const (
	serviceIPPrefix = "/skiff/ranges/serviceips/"
	nodePortPrefix  = "/skiff/ranges/nodeports/"
)

// serviceAllocator assigns cluster IPs from cidr and node ports from ports.
type serviceAllocator struct {
	cidr  netip.Prefix
	ports PortRange
}

func (a *serviceAllocator) reservations() *registry.Reservations {
	return &registry.Reservations{Prefixes: []string{serviceIPPrefix, nodePortPrefix}, Assign: a.assign, Keys: serviceKeys}
}

// serviceKeys returns the keys a service holds: its cluster IP and node ports.
func serviceKeys(obj runtime.Object) []string {
	svc := obj.(*corev1.Service)
	var keys []string
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		keys = append(keys, serviceIPPrefix+ip)
	}
	for _, p := range svc.Spec.Ports {
		if p.NodePort != 0 {
			// One node port may serve both TCP and UDP.
			if k := nodePortPrefix + strconv.Itoa(int(p.NodePort)); !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// assign is the services' registry.Reservations.Assign: it allocates an
// unset cluster IP and unset node ports (NodePort and LoadBalancer
// services), and checks those the service asks for, with kube-apiserver's
// messages. The stored service's own IP and ports count as free.
func (a *serviceAllocator) assign(obj, old runtime.Object, held func(string) bool) error {
	svc := obj.(*corev1.Service)
	spec := &svc.Spec
	var errs field.ErrorList
	ipsPath := field.NewPath("spec", "clusterIPs")
	switch {
	case spec.Type == corev1.ServiceTypeExternalName:
		spec.ClusterIPs, spec.IPFamilies, spec.IPFamilyPolicy = nil, nil, nil
	case spec.ClusterIP == corev1.ClusterIPNone:
		spec.ClusterIPs = []string{corev1.ClusterIPNone}
	case spec.ClusterIP == "":
		ip, ok := a.freeIP(held)
		if !ok {
			return apierrors.NewInternalError(fmt.Errorf("failed to allocate a serviceIP: range is full"))
		}
		spec.ClusterIP, spec.ClusterIPs = ip, []string{ip}
	default:
		ip, err := netip.ParseAddr(spec.ClusterIP)
		switch {
		case err != nil:
			errs = append(errs, field.Invalid(ipsPath.Index(0), spec.ClusterIP, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"))
		case !a.cidr.Contains(ip):
			errs = append(errs, field.Invalid(ipsPath, []string{spec.ClusterIP}, fmt.Sprintf(
				"failed to allocate IP %s: the provided IP (%s) is not in the valid range. The range of valid IPs is %s", spec.ClusterIP, spec.ClusterIP, a.cidr)))
		case held(serviceIPPrefix + ip.String()):
			errs = append(errs, field.Invalid(ipsPath, []string{spec.ClusterIP}, fmt.Sprintf("failed to allocate IP %s: provided IP is already allocated", spec.ClusterIP)))
		}
		spec.ClusterIPs = []string{spec.ClusterIP}
	}
	if spec.Type != corev1.ServiceTypeExternalName {
		single := corev1.IPFamilyPolicySingleStack
		if spec.IPFamilyPolicy == nil {
			spec.IPFamilyPolicy = &single
		}
		if len(spec.IPFamilies) == 0 {
			spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
		}
	}

	needPorts := spec.Type == corev1.ServiceTypeNodePort || spec.Type == corev1.ServiceTypeLoadBalancer
	mine := map[int]bool{} // ports this service already uses (TCP and UDP may share one)
	for i := range spec.Ports {
		p := &spec.Ports[i]
		path := field.NewPath("spec", "ports").Index(i).Child("nodePort")
		switch n := int(p.NodePort); {
		case !needPorts:
			p.NodePort = 0
		case n == 0:
			port, ok := a.freePort(held, mine)
			if !ok {
				return apierrors.NewInternalError(fmt.Errorf("failed to allocate a nodePort: range is full"))
			}
			p.NodePort = int32(port)
			mine[port] = true
		case !a.ports.contains(n):
			errs = append(errs, field.Invalid(path, n, fmt.Sprintf("provided port is not in the valid range. The range of valid ports is %s", a.ports)))
		case held(nodePortPrefix+strconv.Itoa(n)) && !mine[n]:
			errs = append(errs, field.Invalid(path, n, "provided port is already allocated"))
		default:
			mine[n] = true
		}
	}
	if len(errs) > 0 {
		return apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Service").GroupKind(), svc.Name, errs)
	}
	return nil
}

// freeIP picks a free IP of the range: at random from its upper part
// (kube-apiserver keeps the first addresses for IPs users choose; the very
// first is the kubernetes service's), else the first free one.
func (a *serviceAllocator) freeIP(held func(string) bool) (string, bool) {
	base := a.cidr.Masked().Addr()
	size := uint64(1) << (32 - a.cidr.Bits())
	if size < 4 {
		return "", false
	}
	nth := func(n uint64) netip.Addr {
		b := base.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		v += uint32(n)
		return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	// Offsets 1 .. size-2: not the network or the broadcast address.
	static := min(max(16, size/16), 256)
	if static >= size-2 {
		static = 1
	}
	for range 64 {
		ip := nth(static + rand.Uint64N(size-1-static)).String()
		if !held(serviceIPPrefix + ip) {
			return ip, true
		}
	}
	for n := uint64(1); n < size-1; n++ {
		if ip := nth(n).String(); !held(serviceIPPrefix + ip) {
			return ip, true
		}
	}
	return "", false
}

// freePort picks a free node port at random, else the first free one.
func (a *serviceAllocator) freePort(held func(string) bool, mine map[int]bool) (int, bool) {
	free := func(p int) bool { return !mine[p] && !held(nodePortPrefix+strconv.Itoa(p)) }
	for range 64 {
		if p := a.ports.Base + rand.IntN(a.ports.Size); free(p) {
			return p, true
		}
	}
	for p := a.ports.Base; p < a.ports.Base+a.ports.Size; p++ {
		if free(p) {
			return p, true
		}
	}
	return 0, false
}

// keepAllocated is part of the services' PrepareForUpdate, after
// strategy.PrepareServiceUpdate dropped what only the old type needed: an
// update that leaves the cluster IP or a node port unset keeps the stored
// one, as kube-apiserver does (kubectl apply and replace send services
// without them).
func keepAllocated(obj, old runtime.Object) {
	svc, prev := obj.(*corev1.Service), old.(*corev1.Service)
	if svc.Spec.ClusterIP == "" && svc.Spec.Type != corev1.ServiceTypeExternalName && prev.Spec.Type != corev1.ServiceTypeExternalName {
		svc.Spec.ClusterIP, svc.Spec.ClusterIPs = prev.Spec.ClusterIP, prev.Spec.ClusterIPs
		if svc.Spec.IPFamilyPolicy == nil {
			svc.Spec.IPFamilyPolicy = prev.Spec.IPFamilyPolicy
		}
		if len(svc.Spec.IPFamilies) == 0 {
			svc.Spec.IPFamilies = prev.Spec.IPFamilies
		}
	}
	if len(svc.Spec.ClusterIPs) == 0 && svc.Spec.ClusterIP != "" {
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
	}
	if !externallyAccessible(svc) {
		return
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if p.NodePort != 0 {
			continue
		}
		for _, q := range prev.Spec.Ports {
			if q.NodePort != 0 && q.Port == p.Port && q.Protocol == p.Protocol {
				p.NodePort = q.NodePort
			}
		}
	}
}

func externallyAccessible(svc *corev1.Service) bool {
	return svc.Spec.Type == corev1.ServiceTypeNodePort || svc.Spec.Type == corev1.ServiceTypeLoadBalancer
}

// KubernetesServiceIP is the cluster IP of the Service default/kubernetes:
// the first address of the service range (10.96.0.1 by default), which
// every API serving certificate names.
func KubernetesServiceIP(cidr netip.Prefix) netip.Addr { return cidr.Masked().Addr().Next() }

package endpoints

//lint:file-ignore SA1019 this controller owns core/v1 Endpoints, which Kubernetes still serves and kubectl reads

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Include reports whether a pod belongs in a Service's endpoints at all:
// it is not terminal (Succeeded or Failed), has an IP, and is not
// terminating unless includeTerminating (the Endpoints controller passes
// publishNotReadyAddresses; the EndpointSlice controller passes true and
// marks such endpoints terminating).
func Include(pod *corev1.Pod, includeTerminating bool) bool {
	switch {
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return false
	case pod.Status.PodIP == "" && len(pod.Status.PodIPs) == 0:
		return false
	case pod.DeletionTimestamp != nil && !includeTerminating:
		return false
	}
	return true
}

// Ready reports whether the pod's Ready condition is True.
func Ready(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Family returns the IP family a Service's endpoints are taken from: its
// first ipFamilies entry, else that of its cluster IP, else IPv4.
func Family(svc *corev1.Service) corev1.IPFamily {
	if len(svc.Spec.IPFamilies) > 0 {
		return svc.Spec.IPFamilies[0]
	}
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil && ip.Is6() && !ip.Is4In6() {
		return corev1.IPv6Protocol
	}
	return corev1.IPv4Protocol
}

// PodIP returns the pod's IP of the given family, or "".
func PodIP(pod *corev1.Pod, family corev1.IPFamily) string {
	ips := make([]string, 0, len(pod.Status.PodIPs)+1)
	for _, ip := range pod.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 {
		ips = append(ips, pod.Status.PodIP)
	}
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			continue
		}
		if (family == corev1.IPv6Protocol) == (ip.Is6() && !ip.Is4In6()) {
			return s
		}
	}
	return ""
}

// FindPort resolves a Service port's targetPort for one pod: a number as
// is, a name against the ports of the pod's containers (and of its sidecar
// init containers) with the same protocol.
func FindPort(pod *corev1.Pod, sp *corev1.ServicePort) (int32, error) {
	tp := sp.TargetPort
	if tp.Type == intstr.Int {
		if tp.IntVal == 0 {
			return sp.Port, nil
		}
		return tp.IntVal, nil
	}
	proto := cmp.Or(sp.Protocol, corev1.ProtocolTCP)
	find := func(cs []corev1.Container, sidecarsOnly bool) (int32, bool) {
		for _, c := range cs {
			if sidecarsOnly && (c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways) {
				continue
			}
			for _, p := range c.Ports {
				if p.Name == tp.StrVal && cmp.Or(p.Protocol, corev1.ProtocolTCP) == proto {
					return p.ContainerPort, true
				}
			}
		}
		return 0, false
	}
	if n, ok := find(pod.Spec.Containers, false); ok {
		return n, nil
	}
	if n, ok := find(pod.Spec.InitContainers, true); ok {
		return n, nil
	}
	return 0, fmt.Errorf("endpoints: pod %s/%s has no container port named %q (%s)", pod.Namespace, pod.Name, tp.StrVal, proto)
}

// SetsHostname reports whether the pod's endpoint carries its hostname:
// it has one and its subdomain is the Service's name.
func SetsHostname(pod *corev1.Pod, svc *corev1.Service) bool {
	return pod.Spec.Hostname != "" && pod.Spec.Subdomain == svc.Name && pod.Namespace == svc.Namespace
}

// Subsets computes a Service's endpoint subsets from the pods its selector
// matches, in canonical form.
func Subsets(svc *corev1.Service, pods []*corev1.Pod) []corev1.EndpointSubset {
	tolerate := svc.Spec.PublishNotReadyAddresses
	family := Family(svc)
	var subsets []corev1.EndpointSubset
	for _, pod := range pods {
		if !Include(pod, tolerate) {
			continue
		}
		ip := PodIP(pod, family)
		if ip == "" {
			continue
		}
		addr := corev1.EndpointAddress{
			IP:        ip,
			TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		}
		if n := pod.Spec.NodeName; n != "" {
			addr.NodeName = &n
		}
		if SetsHostname(pod, svc) {
			addr.Hostname = pod.Spec.Hostname
		}
		ready := tolerate || Ready(pod)
		add := func(ports []corev1.EndpointPort) {
			s := corev1.EndpointSubset{Ports: ports}
			if ready {
				s.Addresses = []corev1.EndpointAddress{addr}
			} else {
				s.NotReadyAddresses = []corev1.EndpointAddress{addr}
			}
			subsets = append(subsets, s)
		}
		if len(svc.Spec.Ports) == 0 {
			if svc.Spec.ClusterIP == corev1.ClusterIPNone {
				add(nil) // a headless Service may have no ports
			}
			continue
		}
		for i := range svc.Spec.Ports {
			sp := &svc.Spec.Ports[i]
			n, err := FindPort(pod, sp)
			if err != nil {
				continue
			}
			add([]corev1.EndpointPort{{Name: sp.Name, Port: n, Protocol: sp.Protocol, AppProtocol: sp.AppProtocol}})
		}
	}
	return Repack(subsets)
}

// Repack returns subsets in canonical form: every address is listed once
// per distinct set of ports it serves (ready if any input lists it ready),
// addresses with the same port set share one subset, and addresses, ports
// and subsets are sorted. Equal endpoint sets give equal (DeepEqual)
// results whatever the input order.
func Repack(subsets []corev1.EndpointSubset) []corev1.EndpointSubset {
	type addrKey struct {
		ip  string
		uid string
	}
	type entry struct {
		addr  corev1.EndpointAddress
		ready bool
	}
	none := corev1.EndpointPort{Port: -1} // stands for "no ports"
	byPort := map[corev1.EndpointPort]map[addrKey]*entry{}
	var portOrder []corev1.EndpointPort
	note := func(p corev1.EndpointPort, a corev1.EndpointAddress, ready bool) {
		set, ok := byPort[p]
		if !ok {
			set = map[addrKey]*entry{}
			byPort[p] = set
			portOrder = append(portOrder, p)
		}
		k := addrKey{ip: a.IP}
		if a.TargetRef != nil {
			k.uid = string(a.TargetRef.UID)
		}
		if e, ok := set[k]; ok {
			e.ready = e.ready || ready
			return
		}
		set[k] = &entry{addr: a, ready: ready}
	}
	for _, s := range subsets {
		ports := s.Ports
		if len(ports) == 0 {
			ports = []corev1.EndpointPort{none}
		}
		for _, p := range ports {
			for _, a := range s.Addresses {
				note(p, a, true)
			}
			for _, a := range s.NotReadyAddresses {
				note(p, a, false)
			}
		}
	}
	// Group ports by the exact set of addresses (with readiness) serving
	// them.
	type group struct {
		sig     string
		entries []*entry
		ports   []corev1.EndpointPort
	}
	groups := map[string]*group{}
	for _, p := range portOrder {
		set := byPort[p]
		entries := make([]*entry, 0, len(set))
		for _, e := range set {
			entries = append(entries, e)
		}
		slices.SortFunc(entries, func(a, b *entry) int { return compareAddress(&a.addr, &b.addr) })
		var sig strings.Builder
		for _, e := range entries {
			uid := ""
			if e.addr.TargetRef != nil {
				uid = string(e.addr.TargetRef.UID)
			}
			fmt.Fprintf(&sig, "%s/%s/%t,", e.addr.IP, uid, e.ready)
		}
		g, ok := groups[sig.String()]
		if !ok {
			g = &group{sig: sig.String(), entries: entries}
			groups[g.sig] = g
		}
		if p != none {
			g.ports = append(g.ports, p)
		}
	}
	out := make([]corev1.EndpointSubset, 0, len(groups))
	for _, g := range groups {
		var s corev1.EndpointSubset
		for _, e := range g.entries {
			if e.ready {
				s.Addresses = append(s.Addresses, e.addr)
			} else {
				s.NotReadyAddresses = append(s.NotReadyAddresses, e.addr)
			}
		}
		slices.SortFunc(g.ports, comparePort)
		s.Ports = g.ports
		out = append(out, s)
	}
	slices.SortFunc(out, compareSubset)
	return out
}

func compareAddress(a, b *corev1.EndpointAddress) int {
	if c := cmp.Compare(a.IP, b.IP); c != 0 {
		return c
	}
	var ua, ub string
	if a.TargetRef != nil {
		ua = string(a.TargetRef.UID)
	}
	if b.TargetRef != nil {
		ub = string(b.TargetRef.UID)
	}
	return cmp.Compare(ua, ub)
}

func comparePort(a, b corev1.EndpointPort) int {
	return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(ptrString(a.AppProtocol), ptrString(b.AppProtocol)))
}

func compareSubset(a, b corev1.EndpointSubset) int {
	first := func(s corev1.EndpointSubset) *corev1.EndpointAddress {
		if len(s.Addresses) > 0 {
			return &s.Addresses[0]
		}
		if len(s.NotReadyAddresses) > 0 {
			return &s.NotReadyAddresses[0]
		}
		return &corev1.EndpointAddress{}
	}
	if c := compareAddress(first(a), first(b)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(a.Ports), len(b.Ports)); c != 0 {
		return c
	}
	for i := range a.Ports {
		if c := comparePort(a.Ports[i], b.Ports[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a.Addresses), len(b.Addresses))
}

func ptrString(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// Truncate limits subsets to max addresses, keeping ready addresses before
// not-ready ones and cutting each subset in proportion to its size, as
// Kubernetes does for an over-capacity Endpoints. It reports whether it
// cut anything; the input is not modified.
func Truncate(subsets []corev1.EndpointSubset, maxAddrs int) ([]corev1.EndpointSubset, bool) {
	ready, notReady := 0, 0
	for _, s := range subsets {
		ready += len(s.Addresses)
		notReady += len(s.NotReadyAddresses)
	}
	if ready+notReady <= maxAddrs {
		return subsets, false
	}
	out := make([]corev1.EndpointSubset, len(subsets))
	cutReady := ready > maxAddrs
	budget, total := maxAddrs-ready, notReady
	if cutReady {
		budget, total = maxAddrs, ready
	}
	left := budget
	for i, s := range subsets {
		s.Addresses = slices.Clone(s.Addresses)
		s.NotReadyAddresses = slices.Clone(s.NotReadyAddresses)
		n := len(s.NotReadyAddresses)
		if cutReady {
			n = len(s.Addresses)
		}
		keep := min((n*budget+total-1)/total, left, n) // rounded up, as upstream
		if cutReady {
			s.Addresses, s.NotReadyAddresses = s.Addresses[:keep], nil
		} else {
			s.NotReadyAddresses = s.NotReadyAddresses[:keep]
		}
		left -= keep
		out[i] = s
	}
	return out, true
}

// TriggerTimes computes the endpoints.kubernetes.io/last-change-trigger-time
// annotation: the earliest time, among the changes since the previous
// sync of a Service, at which something that changed its endpoints
// happened — a pod's Ready condition transition (else its creation), or
// the Service's creation when it is new. It is safe for concurrent use.
type TriggerTimes struct {
	mu    sync.Mutex
	state map[string]triggerState
}

type triggerState struct {
	service time.Time
	pods    map[string]time.Time
}

// NewTriggerTimes returns an empty tracker.
func NewTriggerTimes() *TriggerTimes {
	return &TriggerTimes{state: map[string]triggerState{}}
}

// Compute records the current trigger times of the Service's pods and
// returns the earliest one that changed since the last call for the
// Service (zero when none did).
func (t *TriggerTimes) Compute(svc *corev1.Service, pods []*corev1.Pod) time.Time {
	key := svc.Namespace + "/" + svc.Name
	t.mu.Lock()
	defer t.mu.Unlock()
	old, seen := t.state[key]
	next := triggerState{service: svc.CreationTimestamp.Time, pods: make(map[string]time.Time, len(pods))}
	var earliest time.Time
	consider := func(tm time.Time) {
		if !tm.IsZero() && (earliest.IsZero() || tm.Before(earliest)) {
			earliest = tm
		}
	}
	if !seen || !old.service.Equal(next.service) {
		consider(next.service)
	}
	for _, pod := range pods {
		tm := podTriggerTime(pod)
		next.pods[pod.Name] = tm
		if prev, ok := old.pods[pod.Name]; !ok || !prev.Equal(tm) {
			consider(tm)
		}
	}
	t.state[key] = next
	return earliest
}

// Forget drops what is remembered about a Service.
func (t *TriggerTimes) Forget(namespace, name string) {
	t.mu.Lock()
	delete(t.state, namespace+"/"+name)
	t.mu.Unlock()
}

func podTriggerTime(pod *corev1.Pod) time.Time {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time
		}
	}
	return pod.CreationTimestamp.Time
}

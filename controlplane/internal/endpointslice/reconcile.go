package endpointslice

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/controlplane/internal/endpoints"
)

var (
	metaCreate = metav1.CreateOptions{}
	metaUpdate = metav1.UpdateOptions{}
)

func metaDeleteUID(uid types.UID) metav1.DeleteOptions {
	return metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
}

// plan is what one sync writes.
type plan struct {
	create, update, delete []*discoveryv1.EndpointSlice
}

// group is the desired endpoints that share one resolved port set.
type group struct {
	ports []discoveryv1.EndpointPort
	eps   map[string]discoveryv1.Endpoint
	order []string // keys of eps, in pod name order
}

// Endpoint returns the slice endpoint of a pod at address ip for svc:
// serving is the pod's readiness, terminating its deletionTimestamp, and
// ready is serving and not terminating, or true when the Service
// publishes not-ready addresses.
func Endpoint(svc *corev1.Service, pod *corev1.Pod, ip, zone string) discoveryv1.Endpoint {
	serving := endpoints.Ready(pod)
	terminating := pod.DeletionTimestamp != nil
	ready := svc.Spec.PublishNotReadyAddresses || (serving && !terminating)
	ep := discoveryv1.Endpoint{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready, Serving: &serving, Terminating: &terminating},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
	}
	if n := pod.Spec.NodeName; n != "" {
		ep.NodeName = &n
	}
	if zone != "" {
		ep.Zone = &zone
	}
	if endpoints.SetsHostname(pod, svc) {
		h := pod.Spec.Hostname
		ep.Hostname = &h
	}
	return ep
}

// Ports resolves the Service's ports for one pod, in the Service's order;
// a port whose named target the pod lacks is left out.
func Ports(svc *corev1.Service, pod *corev1.Pod) []discoveryv1.EndpointPort {
	out := []discoveryv1.EndpointPort{}
	for i := range svc.Spec.Ports {
		sp := &svc.Spec.Ports[i]
		n, err := endpoints.FindPort(pod, sp)
		if err != nil || n == 0 {
			continue
		}
		name, proto := sp.Name, sp.Protocol
		out = append(out, discoveryv1.EndpointPort{Name: &name, Protocol: &proto, Port: &n, AppProtocol: sp.AppProtocol})
	}
	return out
}

func portsKey(ports []discoveryv1.EndpointPort) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = fmt.Sprintf("%s/%s/%d/%s", deref(p.Name), deref(p.Protocol), deref(p.Port), deref(p.AppProtocol))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func endpointKey(ep discoveryv1.Endpoint) string {
	k := ""
	if len(ep.Addresses) > 0 {
		k = ep.Addresses[0]
	}
	if ep.TargetRef != nil {
		k += "/" + string(ep.TargetRef.UID)
	}
	return k
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// addressType maps an IP family to a slice address type.
func addressType(f corev1.IPFamily) discoveryv1.AddressType {
	if f == corev1.IPv6Protocol {
		return discoveryv1.AddressTypeIPv6
	}
	return discoveryv1.AddressTypeIPv4
}

// desired computes, per address type, the endpoint groups of a Service.
func desired(svc *corev1.Service, pods []*corev1.Pod, zone func(string) string) (types []discoveryv1.AddressType, groups map[discoveryv1.AddressType]map[string]*group) {
	families := svc.Spec.IPFamilies
	if len(families) == 0 {
		families = []corev1.IPFamily{endpoints.Family(svc)}
	}
	pods = slices.Clone(pods)
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
	groups = map[discoveryv1.AddressType]map[string]*group{}
	for _, f := range families {
		at := addressType(f)
		types = append(types, at)
		gs := map[string]*group{}
		groups[at] = gs
		for _, pod := range pods {
			if !endpoints.Include(pod, true) {
				continue
			}
			ip := endpoints.PodIP(pod, f)
			if ip == "" {
				continue
			}
			ports := Ports(svc, pod)
			k := portsKey(ports)
			g := gs[k]
			if g == nil {
				g = &group{ports: ports, eps: map[string]discoveryv1.Endpoint{}}
				gs[k] = g
			}
			z := ""
			if pod.Spec.NodeName != "" {
				z = zone(pod.Spec.NodeName)
			}
			ep := Endpoint(svc, pod, ip, z)
			ek := endpointKey(ep)
			if _, dup := g.eps[ek]; !dup {
				g.eps[ek] = ep
				g.order = append(g.order, ek)
			}
		}
	}
	return types, groups
}

// sliceMeta is what every slice of a Service carries.
type sliceMeta struct {
	labels  map[string]string
	owner   metav1.OwnerReference
	trigger time.Time
}

func metaFor(svc *corev1.Service, trigger time.Time) sliceMeta {
	l := map[string]string{}
	for k, v := range svc.Labels {
		if k != discoveryv1.LabelServiceName && k != discoveryv1.LabelManagedBy && k != corev1.IsHeadlessService {
			l[k] = v
		}
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		l[corev1.IsHeadlessService] = ""
	}
	l[discoveryv1.LabelServiceName] = svc.Name
	l[discoveryv1.LabelManagedBy] = ControllerName
	yes := true
	return sliceMeta{
		labels: l,
		owner: metav1.OwnerReference{
			APIVersion: "v1", Kind: "Service", Name: svc.Name, UID: svc.UID, Controller: &yes, BlockOwnerDeletion: &yes,
		},
		trigger: trigger,
	}
}

// stale reports whether a slice's labels or owner differ from m.
func (m sliceMeta) stale(s *discoveryv1.EndpointSlice) bool {
	if !maps.Equal(s.Labels, m.labels) {
		return true
	}
	for _, o := range s.OwnerReferences {
		if o.UID == m.owner.UID && o.Controller != nil && *o.Controller {
			return false
		}
	}
	return true
}

// stamp sets m on a slice about to be written.
func (m sliceMeta) stamp(s *discoveryv1.EndpointSlice) {
	s.Labels = maps.Clone(m.labels)
	owners := []metav1.OwnerReference{m.owner}
	for _, o := range s.OwnerReferences {
		if o.UID != m.owner.UID && (o.Controller == nil || !*o.Controller) {
			owners = append(owners, o)
		}
	}
	s.OwnerReferences = owners
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	if m.trigger.IsZero() {
		delete(s.Annotations, corev1.EndpointsLastChangeTriggerTime)
	} else {
		s.Annotations[corev1.EndpointsLastChangeTriggerTime] = m.trigger.UTC().Format(time.RFC3339Nano)
	}
}

// reconcile computes the writes that turn a Service's existing slices
// (those this controller manages) into the desired ones with as few
// writes as it can. It is a pure function.
func reconcile(svc *corev1.Service, pods []*corev1.Pod, zone func(string) string, existing []*discoveryv1.EndpointSlice, maxPerSlice int, trigger time.Time) plan {
	types, groups := desired(svc, pods, zone)
	meta := metaFor(svc, trigger)
	existing = slices.Clone(existing)
	slices.SortFunc(existing, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	byType := map[discoveryv1.AddressType][]*discoveryv1.EndpointSlice{}
	var p plan
	for _, s := range existing {
		if _, ok := groups[s.AddressType]; !ok {
			p.delete = append(p.delete, s) // a family the Service no longer has
			continue
		}
		byType[s.AddressType] = append(byType[s.AddressType], s)
	}
	for _, at := range types {
		reconcileType(svc, at, groups[at], byType[at], maxPerSlice, meta, &p)
	}
	return p
}

// reconcileType plans one address type's slices. A type that would be
// left without a slice keeps (or gets) an empty placeholder, as upstream.
func reconcileType(svc *corev1.Service, at discoveryv1.AddressType, groups map[string]*group, existing []*discoveryv1.EndpointSlice, maxPerSlice int, meta sliceMeta, p *plan) {
	type state struct {
		s   *discoveryv1.EndpointSlice
		key string
	}
	var touched, unchanged []*state
	var spare []*discoveryv1.EndpointSlice // to delete unless reused
	placed := map[string]map[string]bool{}
	for _, s := range existing {
		k := portsKey(s.Ports)
		g := groups[k]
		if g == nil {
			spare = append(spare, s)
			continue
		}
		if placed[k] == nil {
			placed[k] = map[string]bool{}
		}
		next := s.DeepCopy()
		next.Endpoints = next.Endpoints[:0]
		changed := false
		for _, ep := range s.Endpoints {
			ek := endpointKey(ep)
			want, ok := g.eps[ek]
			if !ok || placed[k][ek] {
				changed = true
				continue
			}
			placed[k][ek] = true
			if !apiequality.Semantic.DeepEqual(ep, want) {
				changed = true
			}
			next.Endpoints = append(next.Endpoints, want)
		}
		if len(next.Endpoints) == 0 {
			spare = append(spare, s)
			continue
		}
		if changed || meta.stale(s) {
			touched = append(touched, &state{next, k})
		} else {
			unchanged = append(unchanged, &state{next, k})
		}
	}
	keys := slices.Sorted(maps.Keys(groups))
	var fresh []*discoveryv1.EndpointSlice
	for _, k := range keys {
		g := groups[k]
		var left []discoveryv1.Endpoint
		for _, ek := range g.order {
			if !placed[k][ek] {
				left = append(left, g.eps[ek])
			}
		}
		// First into slices written anyway, then into the fullest
		// unchanged slice that takes them all, then new slices.
		for _, st := range touched {
			if len(left) == 0 {
				break
			}
			if st.key != k {
				continue
			}
			n := min(maxPerSlice-len(st.s.Endpoints), len(left))
			if n > 0 {
				st.s.Endpoints = append(st.s.Endpoints, left[:n]...)
				left = left[n:]
			}
		}
		if len(left) > 0 {
			best := -1
			for i, st := range unchanged {
				if st.key == k && maxPerSlice-len(st.s.Endpoints) >= len(left) && (best < 0 || len(st.s.Endpoints) > len(unchanged[best].s.Endpoints)) {
					best = i
				}
			}
			if best >= 0 {
				st := unchanged[best]
				st.s.Endpoints = append(st.s.Endpoints, left...)
				left = nil
				touched = append(touched, st)
				unchanged = slices.Delete(unchanged, best, best+1)
			}
		}
		for len(left) > 0 {
			n := min(maxPerSlice, len(left))
			fresh = append(fresh, &discoveryv1.EndpointSlice{AddressType: at, Ports: g.ports, Endpoints: slices.Clone(left[:n])})
			left = left[n:]
		}
	}
	placeholder := len(fresh) == 0 && len(touched) == 0 && len(unchanged) == 0
	if placeholder {
		fresh = append(fresh, &discoveryv1.EndpointSlice{AddressType: at, Ports: []discoveryv1.EndpointPort{}, Endpoints: []discoveryv1.Endpoint{}})
	}
	// A new slice reuses one that would be deleted: one update instead of
	// a create and a delete.
	for _, f := range fresh {
		if len(spare) > 0 {
			s := spare[0]
			spare = spare[1:]
			if placeholder && len(s.Endpoints) == 0 && len(s.Ports) == 0 && !meta.stale(s) {
				continue // already the placeholder
			}
			next := s.DeepCopy()
			next.Ports, next.Endpoints = f.Ports, f.Endpoints
			meta.stamp(next)
			p.update = append(p.update, next)
			continue
		}
		f.GenerateName = svc.Name + "-"
		f.Namespace = svc.Namespace
		meta.stamp(f)
		p.create = append(p.create, f)
	}
	for _, st := range touched {
		meta.stamp(st.s)
		p.update = append(p.update, st.s)
	}
	p.delete = append(p.delete, spare...)
}

package endpointslice

import (
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func testService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "ns", UID: "svc-uid", Labels: map[string]string{"tier": "front"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.20", IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Selector: map[string]string{"app": "web"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		},
	}
}

func testPod(i int, httpPort int32, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	ip := fmt.Sprintf("10.244.%d.%d", i/250, i%250+1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%04d", i), Namespace: "ns", UID: types.UID(fmt.Sprint("uid-", i)), Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{
			Name: "c", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort, Protocol: corev1.ProtocolTCP}},
		}}},
		Status: corev1.PodStatus{
			Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}},
		},
	}
}

func pods(from, to int) []*corev1.Pod {
	var out []*corev1.Pod
	for i := from; i < to; i++ {
		out = append(out, testPod(i, 8080, true))
	}
	return out
}

func noZone(string) string { return "" }

// materialize turns a plan's writes into the slices the API would then
// hold.
func materialize(t *testing.T, existing []*discoveryv1.EndpointSlice, p plan) []*discoveryv1.EndpointSlice {
	t.Helper()
	byName := map[string]*discoveryv1.EndpointSlice{}
	var order []string
	for _, s := range existing {
		byName[s.Name] = s
		order = append(order, s.Name)
	}
	for _, s := range p.update {
		if byName[s.Name] == nil {
			t.Fatalf("update of unknown slice %q", s.Name)
		}
		byName[s.Name] = s
	}
	for _, s := range p.delete {
		delete(byName, s.Name)
	}
	for i, s := range p.create {
		s = s.DeepCopy()
		s.Name = fmt.Sprintf("%snew%d-%d", s.GenerateName, len(order), i)
		byName[s.Name] = s
		order = append(order, s.Name)
	}
	var out []*discoveryv1.EndpointSlice
	for _, n := range order {
		if s := byName[n]; s != nil {
			out = append(out, s)
		}
	}
	return out
}

func sizes(ss []*discoveryv1.EndpointSlice) []int {
	var out []int
	for _, s := range ss {
		out = append(out, len(s.Endpoints))
	}
	return out
}

func TestReconcileChurn(t *testing.T) {
	svc := testService()
	now := time.Now()
	var state []*discoveryv1.EndpointSlice
	for _, step := range []struct {
		name                    string
		pods                    []*corev1.Pod
		creates, updates, drops int
		wantSizes               []int
	}{
		{"nothing yet: a placeholder", nil, 1, 0, 0, []int{0}},
		{"placeholder kept", nil, 0, 0, 0, []int{0}},
		{"250 pods fill the placeholder and two new slices", pods(0, 250), 2, 1, 0, []int{100, 100, 50}},
		{"no change writes nothing", pods(0, 250), 0, 0, 0, []int{100, 100, 50}},
		{"one pod replaced: one slice updated", append(pods(1, 250), testPod(900, 8080, true)), 0, 1, 0, []int{100, 100, 50}},
		{"ten more go to the slice with room", append(append(pods(1, 250), testPod(900, 8080, true)), pods(1000, 1010)...), 0, 1, 0, []int{100, 100, 60}},
		{"all gone: one slice stays as the placeholder", nil, 0, 1, 2, []int{0}},
	} {
		p := reconcile(svc, step.pods, noZone, state, 100, now)
		if len(p.create) != step.creates || len(p.update) != step.updates || len(p.delete) != step.drops {
			t.Fatalf("%s: got %d creates %d updates %d deletes, want %d %d %d", step.name, len(p.create), len(p.update), len(p.delete), step.creates, step.updates, step.drops)
		}
		state = materialize(t, state, p)
		if got := sizes(state); fmt.Sprint(got) != fmt.Sprint(step.wantSizes) {
			t.Fatalf("%s: slice sizes %v, want %v", step.name, got, step.wantSizes)
		}
		for _, s := range state {
			if s.Labels[discoveryv1.LabelServiceName] != "web" || s.Labels[discoveryv1.LabelManagedBy] != ControllerName || s.Labels["tier"] != "front" {
				t.Fatalf("%s: labels %v", step.name, s.Labels)
			}
			if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != svc.UID || !*s.OwnerReferences[0].Controller {
				t.Fatalf("%s: owners %+v", step.name, s.OwnerReferences)
			}
			if s.AddressType != discoveryv1.AddressTypeIPv4 {
				t.Fatalf("%s: address type %q", step.name, s.AddressType)
			}
		}
	}
}

func TestReconcileEndpoints(t *testing.T) {
	svc := testService()
	terminating := testPod(2, 8080, true)
	terminating.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	terminatingUnready := testPod(3, 8080, false)
	terminatingUnready.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	failed := testPod(4, 8080, true)
	failed.Status.Phase = corev1.PodFailed
	noIP := testPod(5, 8080, true)
	noIP.Status.PodIP, noIP.Status.PodIPs = "", nil
	named := testPod(6, 8080, true)
	named.Spec.Hostname, named.Spec.Subdomain = "h6", "web"
	in := []*corev1.Pod{testPod(0, 8080, true), testPod(1, 8080, false), terminating, terminatingUnready, failed, noIP, named, testPod(7, 9090, true)}
	zone := func(n string) string {
		if n == "node-a" {
			return "zone-1"
		}
		return ""
	}
	p := reconcile(svc, in, zone, nil, 100, time.Time{})
	if len(p.create) != 2 {
		t.Fatalf("got %d slices, want 2 (http on 8080 and on 9090)", len(p.create))
	}
	type cond struct{ ready, serving, terminating bool }
	want := map[string]cond{
		"pod-0000": {true, true, false}, "pod-0001": {false, false, false},
		"pod-0002": {false, true, true}, "pod-0003": {false, false, true},
		"pod-0006": {true, true, false}, "pod-0007": {true, true, false},
	}
	got := map[string]cond{}
	for _, s := range p.create {
		if s.GenerateName != "web-" || s.Namespace != "ns" {
			t.Errorf("generateName %q namespace %q, want web- in ns", s.GenerateName, s.Namespace)
		}
		if len(s.Ports) != 1 || *s.Ports[0].Name != "http" || *s.Ports[0].Protocol != corev1.ProtocolTCP {
			t.Fatalf("ports %+v", s.Ports)
		}
		for _, ep := range s.Endpoints {
			c := ep.Conditions
			got[ep.TargetRef.Name] = cond{*c.Ready, *c.Serving, *c.Terminating}
			if ep.TargetRef.Kind != "Pod" || ep.TargetRef.Namespace != "ns" || *ep.NodeName != "node-a" || *ep.Zone != "zone-1" {
				t.Errorf("endpoint %+v: want a Pod ref, node-a, zone-1", ep)
			}
			wantPort := int32(8080)
			if ep.TargetRef.Name == "pod-0007" {
				wantPort = 9090
			}
			if *s.Ports[0].Port != wantPort {
				t.Errorf("%s in a slice of port %d, want %d", ep.TargetRef.Name, *s.Ports[0].Port, wantPort)
			}
			if (ep.Hostname != nil) != (ep.TargetRef.Name == "pod-0006") || (ep.Hostname != nil && *ep.Hostname != "h6") {
				t.Errorf("%s: hostname %v", ep.TargetRef.Name, ep.Hostname)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("conditions:\ngot  %v\nwant %v", got, want)
	}

	// publishNotReadyAddresses: everything ready.
	svc.Spec.PublishNotReadyAddresses = true
	p = reconcile(svc, []*corev1.Pod{testPod(1, 8080, false)}, zone, nil, 100, time.Time{})
	if ep := p.create[0].Endpoints[0]; !*ep.Conditions.Ready || *ep.Conditions.Serving {
		t.Errorf("publishNotReadyAddresses: conditions ready %v serving %v, want true false", *ep.Conditions.Ready, *ep.Conditions.Serving)
	}
}

func TestExpectations(t *testing.T) {
	e := newExpectations()
	slice := func(name, rv string) *discoveryv1.EndpointSlice {
		return &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv}}
	}
	e.wrote("ns/web", "web-a", "10")
	e.deleted("ns/web", "web-b")
	for _, step := range []struct {
		name   string
		cached []*discoveryv1.EndpointSlice
		want   bool
	}{
		{"created slice not cached yet", []*discoveryv1.EndpointSlice{slice("web-b", "5")}, false},
		{"older version cached", []*discoveryv1.EndpointSlice{slice("web-a", "9"), slice("web-b", "5")}, false},
		{"deleted slice still cached", []*discoveryv1.EndpointSlice{slice("web-a", "10"), slice("web-b", "5")}, false},
		{"cache caught up", []*discoveryv1.EndpointSlice{slice("web-a", "12")}, true},
		{"nothing expected any more", nil, true},
	} {
		if got := e.satisfied("ns/web", step.cached); got != step.want {
			t.Errorf("%s: satisfied = %v, want %v", step.name, got, step.want)
		}
	}
}

func TestReconcileDualStack(t *testing.T) {
	svc := testService()
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	p := reconcile(svc, pods(0, 3), noZone, nil, 100, time.Time{})
	got := map[discoveryv1.AddressType]int{}
	for _, s := range p.create {
		got[s.AddressType] += len(s.Endpoints) + 1000
	}
	// IPv4: one slice of three; IPv6: the pods have no IPv6 address, so
	// a placeholder.
	if got[discoveryv1.AddressTypeIPv4] != 1003 || got[discoveryv1.AddressTypeIPv6] != 1000 || len(p.create) != 2 {
		t.Errorf("got slices %v (1000 per slice plus endpoints), want IPv4 1003 and IPv6 1000", got)
	}
}

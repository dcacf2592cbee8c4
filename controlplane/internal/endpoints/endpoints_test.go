package endpoints

//lint:file-ignore SA1019 this controller owns core/v1 Endpoints, which Kubernetes still serves and kubectl reads

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

func addr(ip, uid string) corev1.EndpointAddress {
	return corev1.EndpointAddress{IP: ip, TargetRef: &corev1.ObjectReference{Kind: "Pod", UID: types.UID(uid)}}
}

func port(name string, n int32) corev1.EndpointPort {
	return corev1.EndpointPort{Name: name, Port: n, Protocol: corev1.ProtocolTCP}
}

func TestRepack(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []corev1.EndpointSubset
		want []corev1.EndpointSubset
	}{
		{"empty", nil, []corev1.EndpointSubset{}},
		{
			"one address per port merges",
			[]corev1.EndpointSubset{
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.2", "b")}, Ports: []corev1.EndpointPort{port("http", 80)}},
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.1", "a")}, Ports: []corev1.EndpointPort{port("http", 80)}},
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.1", "a")}, Ports: []corev1.EndpointPort{port("dns", 53)}},
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.2", "b")}, Ports: []corev1.EndpointPort{port("dns", 53)}},
			},
			[]corev1.EndpointSubset{{
				Addresses: []corev1.EndpointAddress{addr("10.0.0.1", "a"), addr("10.0.0.2", "b")},
				Ports:     []corev1.EndpointPort{port("dns", 53), port("http", 80)},
			}},
		},
		{
			"different port numbers split",
			[]corev1.EndpointSubset{
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.2", "b")}, Ports: []corev1.EndpointPort{port("http", 8081)}},
				{NotReadyAddresses: []corev1.EndpointAddress{addr("10.0.0.3", "c")}, Ports: []corev1.EndpointPort{port("http", 8080)}},
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.1", "a")}, Ports: []corev1.EndpointPort{port("http", 8080)}},
			},
			[]corev1.EndpointSubset{
				{
					Addresses:         []corev1.EndpointAddress{addr("10.0.0.1", "a")},
					NotReadyAddresses: []corev1.EndpointAddress{addr("10.0.0.3", "c")},
					Ports:             []corev1.EndpointPort{port("http", 8080)},
				},
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.2", "b")}, Ports: []corev1.EndpointPort{port("http", 8081)}},
			},
		},
		{
			"ready wins over not ready; no ports kept",
			[]corev1.EndpointSubset{
				{NotReadyAddresses: []corev1.EndpointAddress{addr("10.0.0.1", "a")}},
				{Addresses: []corev1.EndpointAddress{addr("10.0.0.1", "a")}},
			},
			[]corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{addr("10.0.0.1", "a")}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Repack(tc.in); !apiequality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("Repack:\ngot  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	many := func(prefix string, n int) []corev1.EndpointAddress {
		out := make([]corev1.EndpointAddress, n)
		for i := range out {
			out[i] = addr(fmt.Sprintf("%s.%d", prefix, i), fmt.Sprint(prefix, i))
		}
		return out
	}
	for _, tc := range []struct {
		name                    string
		in                      []corev1.EndpointSubset
		max                     int
		wantCut                 bool
		wantReady, wantNotReady []int // per subset: ready, not ready
	}{
		{"under", []corev1.EndpointSubset{{Addresses: many("a", 3)}}, 5, false, []int{3}, []int{0}},
		{"not ready cut first", []corev1.EndpointSubset{{Addresses: many("a", 3), NotReadyAddresses: many("b", 4)}}, 5, true, []int{3}, []int{2}},
		{"ready cut in proportion", []corev1.EndpointSubset{{Addresses: many("a", 6), NotReadyAddresses: many("b", 2)}, {Addresses: many("c", 2)}}, 4, true, []int{3, 1}, []int{0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, cut := Truncate(tc.in, tc.max)
			if cut != tc.wantCut {
				t.Fatalf("cut = %v, want %v", cut, tc.wantCut)
			}
			for i, s := range got {
				if len(s.Addresses) != tc.wantReady[i] || len(s.NotReadyAddresses) != tc.wantNotReady[i] {
					t.Errorf("subset %d: got %d ready %d not ready, want %d and %d", i, len(s.Addresses), len(s.NotReadyAddresses), tc.wantReady[i], tc.wantNotReady[i])
				}
			}
		})
	}
}

// fixture creates objects through the API the way users and the kubelet
// would.
type fixture struct {
	t  *testing.T
	cs kubernetes.Interface
	ns string
}

func (f fixture) pod(name string, lbls map[string]string, httpPort int32, mutate func(*corev1.Pod)) *corev1.Pod {
	f.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: f.ns, Labels: lbls},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{
			Name: "c", Image: "busybox",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: httpPort}},
		}}},
	}
	if mutate != nil {
		mutate(p)
	}
	p, err := f.cs.CoreV1().Pods(f.ns).Create(f.t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

// status sets what a kubelet would: phase, IP, Ready.
func (f fixture) status(p *corev1.Pod, phase corev1.PodPhase, ip string, ready bool) *corev1.Pod {
	f.t.Helper()
	p, err := f.cs.CoreV1().Pods(f.ns).Get(f.t.Context(), p.Name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	p.Status.Phase = phase
	p.Status.PodIP = ip
	p.Status.PodIPs = nil
	if ip != "" {
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	p, err = f.cs.CoreV1().Pods(f.ns).UpdateStatus(f.t.Context(), p, metav1.UpdateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return p
}

func startController(t *testing.T, cs kubernetes.Interface, workers int) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger, cfg.Workers = cs, slog.New(slog.DiscardHandler), workers
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestEndpoints(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	f := fixture{t: t, cs: cs, ns: metav1.NamespaceDefault}
	web := map[string]string{"app": "web"}

	// Pods before the controller starts, others after.
	ready := f.status(f.pod("ready", web, 8080, nil), corev1.PodRunning, "10.244.0.10", true)
	unready := f.status(f.pod("unready", web, 8080, nil), corev1.PodRunning, "10.244.0.11", false)
	other := f.status(f.pod("other-port", web, 8081, nil), corev1.PodRunning, "10.244.0.12", true)
	f.pod("no-ip", web, 8080, nil)
	f.status(f.pod("done", web, 8080, nil), corev1.PodSucceeded, "10.244.0.13", false)
	f.status(f.pod("unrelated", map[string]string{"app": "db"}, 8080, nil), corev1.PodRunning, "10.244.0.14", true)

	svc, err := cs.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Labels: map[string]string{"tier": "front"}},
		Spec: corev1.ServiceSpec{Selector: web, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(9091)},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A Service without a selector and its user-managed Endpoints.
	if _, err := cs.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "manual"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	manual := &corev1.Endpoints{
		ObjectMeta: metav1.ObjectMeta{Name: "manual"},
		Subsets:    []corev1.EndpointSubset{{Addresses: []corev1.EndpointAddress{{IP: "192.0.2.1"}}, Ports: []corev1.EndpointPort{{Port: 80}}}},
	}
	manual, err = cs.CoreV1().Endpoints(f.ns).Create(ctx, manual, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Endpoints left over from a Service deleted while no controller ran.
	if _, err := cs.CoreV1().Endpoints(f.ns).Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "leftover"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	startController(t, cs, 1)

	ref := func(p *corev1.Pod) corev1.EndpointAddress {
		n := "node-1"
		return corev1.EndpointAddress{IP: p.Status.PodIP, NodeName: &n, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID}}
	}
	tcp := corev1.ProtocolTCP
	// Every pod serves metrics on 9091, but http on 8080 or 8081: three
	// subsets.
	want := []corev1.EndpointSubset{
		{
			Addresses:         []corev1.EndpointAddress{ref(ready)},
			NotReadyAddresses: []corev1.EndpointAddress{ref(unready)},
			Ports:             []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: tcp}},
		},
		{
			Addresses:         []corev1.EndpointAddress{ref(ready), ref(other)},
			NotReadyAddresses: []corev1.EndpointAddress{ref(unready)},
			Ports:             []corev1.EndpointPort{{Name: "metrics", Port: 9091, Protocol: tcp}},
		},
		{
			Addresses: []corev1.EndpointAddress{ref(other)},
			Ports:     []corev1.EndpointPort{{Name: "http", Port: 8081, Protocol: tcp}},
		},
	}
	subsetsAre := func(name string, want []corev1.EndpointSubset) func() error {
		return func() error {
			ep, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !apiequality.Semantic.DeepEqual(ep.Subsets, want) {
				return fmt.Errorf("got subsets %+v, want %+v", ep.Subsets, want)
			}
			return nil
		}
	}
	apitest.WaitFor(t, 20*time.Second, "the endpoints of web", subsetsAre("web", want))
	ep, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ep.Labels["tier"] != "front" {
		t.Errorf("labels %v, want the service's tier=front", ep.Labels)
	}
	if _, headless := ep.Labels[corev1.IsHeadlessService]; headless {
		t.Errorf("labels %v: a service with a cluster IP is not headless", ep.Labels)
	}
	if tm, err := time.Parse(time.RFC3339Nano, ep.Annotations[corev1.EndpointsLastChangeTriggerTime]); err != nil || tm.After(time.Now()) {
		t.Errorf("annotation %s = %q (%v), want a past time", corev1.EndpointsLastChangeTriggerTime, ep.Annotations[corev1.EndpointsLastChangeTriggerTime], err)
	}
	apitest.WaitFor(t, 20*time.Second, "the leftover endpoints to go", func() error {
		_, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "leftover", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("leftover endpoints still there (err %v)", err)
	})

	// Readiness flips, a pod goes, a pod arrives with a hostname.
	f.status(unready, corev1.PodRunning, "10.244.0.11", true)
	if err := cs.CoreV1().Pods(f.ns).Delete(ctx, other.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	named := f.status(f.pod("named", web, 8080, func(p *corev1.Pod) { p.Spec.Hostname, p.Spec.Subdomain = "h0", "web" }), corev1.PodRunning, "10.244.0.9", true)
	namedAddr := ref(named)
	namedAddr.Hostname = "h0"
	want = []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{ref(ready), ref(unready), namedAddr},
		Ports:     []corev1.EndpointPort{{Name: "http", Port: 8080, Protocol: tcp}, {Name: "metrics", Port: 9091, Protocol: tcp}},
	}}
	// Sorted by IP: 10.244.0.10, 10.244.0.11, 10.244.0.9.
	apitest.WaitFor(t, 20*time.Second, "the endpoints after changes", subsetsAre("web", want))

	// A terminating pod is out (no publishNotReadyAddresses). A finalizer
	// keeps it terminating.
	term := f.status(f.pod("terminating", web, 8080, func(p *corev1.Pod) { p.Finalizers = []string{"skiff.test/hold"} }), corev1.PodRunning, "10.244.0.20", true)
	withTerm := []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{ref(ready), ref(unready), ref(term), namedAddr},
		Ports:     want[0].Ports,
	}}
	apitest.WaitFor(t, 20*time.Second, "the pod to be an endpoint", subsetsAre("web", withTerm))
	if err := cs.CoreV1().Pods(f.ns).Delete(ctx, term.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the terminating pod to leave the endpoints", subsetsAre("web", want))
	t.Cleanup(func() {
		p, err := cs.CoreV1().Pods(f.ns).Get(context.Background(), term.Name, metav1.GetOptions{})
		if err == nil {
			p.Finalizers = nil
			_, _ = cs.CoreV1().Pods(f.ns).Update(context.Background(), p, metav1.UpdateOptions{})
		}
	})

	// No write when nothing that matters changed: an annotation on a pod,
	// then a sync point (a new service's endpoints; one worker handles
	// the queue in order).
	before, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := cs.CoreV1().Pods(f.ns).Get(ctx, ready.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Annotations = map[string]string{"touched": "yes"}
	if _, err := cs.CoreV1().Pods(f.ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "db"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "db"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the endpoints of the headless db (no ports)", func() error {
		ep, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := ep.Labels[corev1.IsHeadlessService]; !ok || len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || len(ep.Subsets[0].Ports) != 0 {
			return fmt.Errorf("got labels %v subsets %+v, want the headless label and one address without ports", ep.Labels, ep.Subsets)
		}
		return nil
	})
	after, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != before.ResourceVersion {
		t.Errorf("endpoints rewritten (rv %s -> %s) though nothing changed", before.ResourceVersion, after.ResourceVersion)
	}

	// The user's Endpoints are untouched; a deleted Service's go.
	got, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "manual", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !apiequality.Semantic.DeepEqual(got.Subsets, manual.Subsets) {
		t.Errorf("manual endpoints changed: got %+v, want %+v", got.Subsets, manual.Subsets)
	}
	if err := cs.CoreV1().Services(f.ns).Delete(ctx, svc.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the endpoints of a deleted service to go", func() error {
		_, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "web", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (err %v)", err)
	})
}

func TestPublishNotReadyAddresses(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	f := fixture{t: t, cs: cs, ns: metav1.NamespaceDefault}
	sel := map[string]string{"app": "peers"}
	p := f.status(f.pod("peer-0", sel, 7000, nil), corev1.PodRunning, "10.244.1.5", false)
	if _, err := cs.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "peers"},
		Spec: corev1.ServiceSpec{Selector: sel, PublishNotReadyAddresses: true, ClusterIP: corev1.ClusterIPNone,
			Ports: []corev1.ServicePort{{Name: "peer", Port: 7000}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	startController(t, cs, 2)
	apitest.WaitFor(t, 20*time.Second, "the not-ready pod among ready addresses", func() error {
		ep, err := cs.CoreV1().Endpoints(f.ns).Get(ctx, "peers", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(ep.Subsets) != 1 || len(ep.Subsets[0].Addresses) != 1 || ep.Subsets[0].Addresses[0].TargetRef.UID != p.UID ||
			len(ep.Subsets[0].NotReadyAddresses) != 0 || ep.Subsets[0].Ports[0].Port != 7000 {
			return fmt.Errorf("got %+v, want peer-0 ready on 7000", ep.Subsets)
		}
		return nil
	})
}

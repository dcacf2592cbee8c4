package endpointslice

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// createPod creates a pod through the API and sets the status a kubelet
// would.
func createPod(t *testing.T, cs kubernetes.Interface, name string, ip string, ready bool, finalizer bool) *corev1.Pod {
	t.Helper()
	ctx := t.Context()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "api"}},
		Spec: corev1.PodSpec{NodeName: "node-1", Containers: []corev1.Container{{
			Name: "c", Image: "busybox", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
		}}},
	}
	if finalizer {
		p.Finalizers = []string{"skiff.test/hold"}
	}
	p, err := cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, ip, []corev1.PodIP{{IP: ip}}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()}}
	p, err = cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if finalizer {
		t.Cleanup(func() {
			if p, err := cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{}); err == nil {
				p.Finalizers = nil
				_, _ = cs.CoreV1().Pods("default").Update(context.Background(), p, metav1.UpdateOptions{})
			}
		})
	}
	return p
}

func TestEndpointSlices(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: map[string]string{corev1.LabelTopologyZone: "z1"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "api", Labels: map[string]string{"team": "a"}},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, Ports: []corev1.ServicePort{
			{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cfg := DefaultConfig()
	cfg.Client, cfg.Logger, cfg.MaxEndpointsPerSlice = cs, slog.New(slog.DiscardHandler), 3
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	list := func() []discoveryv1.EndpointSlice {
		l, err := cs.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: labels.Set{discoveryv1.LabelServiceName: "api"}.String()})
		if err != nil {
			t.Fatal(err)
		}
		return l.Items
	}
	type cond struct{ ready, serving, terminating bool }
	endpointsAre := func(want map[string]cond, wantSlices int) func() error {
		return func() error {
			got := map[string]cond{}
			slices := list()
			for _, s := range slices {
				for _, ep := range s.Endpoints {
					got[ep.Addresses[0]] = cond{*ep.Conditions.Ready, *ep.Conditions.Serving, *ep.Conditions.Terminating}
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || len(slices) != wantSlices {
				return fmt.Errorf("got %d slices with %v, want %d with %v", len(slices), got, wantSlices, want)
			}
			return nil
		}
	}
	apitest.WaitFor(t, 20*time.Second, "the placeholder slice", endpointsAre(map[string]cond{}, 1))

	createPod(t, cs, "a", "10.244.0.2", true, false)
	createPod(t, cs, "b", "10.244.0.3", false, false)
	createPod(t, cs, "c", "10.244.0.4", true, true)
	createPod(t, cs, "d", "10.244.0.5", true, false)
	apitest.WaitFor(t, 20*time.Second, "four endpoints in two slices", endpointsAre(map[string]cond{
		"10.244.0.2": {true, true, false}, "10.244.0.3": {false, false, false},
		"10.244.0.4": {true, true, false}, "10.244.0.5": {true, true, false},
	}, 2))

	for _, s := range list() {
		if s.GenerateName != "api-" || s.Labels[discoveryv1.LabelManagedBy] != ControllerName || s.Labels["team"] != "a" || s.AddressType != discoveryv1.AddressTypeIPv4 {
			t.Errorf("slice %s: generateName %q labels %v type %s", s.Name, s.GenerateName, s.Labels, s.AddressType)
		}
		if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].UID != svc.UID || s.OwnerReferences[0].Kind != "Service" {
			t.Errorf("slice %s: owners %+v, want the service", s.Name, s.OwnerReferences)
		}
		if len(s.Ports) != 1 || *s.Ports[0].Port != 8080 || *s.Ports[0].Name != "http" {
			t.Errorf("slice %s: ports %+v, want http 8080", s.Name, s.Ports)
		}
		for _, ep := range s.Endpoints {
			if ep.NodeName == nil || *ep.NodeName != "node-1" || ep.Zone == nil || *ep.Zone != "z1" || ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				t.Errorf("endpoint %+v: want node-1, zone z1 and a pod reference", ep)
			}
		}
	}

	// A terminating pod stays, not ready but serving; slices are updated
	// in place.
	names := map[string]bool{}
	for _, s := range list() {
		names[s.Name] = true
	}
	if err := cs.CoreV1().Pods("default").Delete(ctx, "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the terminating endpoint", endpointsAre(map[string]cond{
		"10.244.0.2": {true, true, false}, "10.244.0.3": {false, false, false},
		"10.244.0.4": {false, true, true}, "10.244.0.5": {true, true, false},
	}, 2))
	for _, s := range list() {
		if !names[s.Name] {
			t.Errorf("slice %s is new; a change of conditions must update slices in place (had %v)", s.Name, names)
		}
	}

	// A pod gone leaves no endpoint behind.
	if err := cs.CoreV1().Pods("default").Delete(ctx, "d", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "d to go", endpointsAre(map[string]cond{
		"10.244.0.2": {true, true, false}, "10.244.0.3": {false, false, false}, "10.244.0.4": {false, true, true},
	}, 1))
}

package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/agent/hollow"
)

// TestHollowNodes runs hollow nodes against a real master: they register
// and heartbeat, pods bound to them run, and a deleted pod goes.
func TestHollowNodes(t *testing.T) {
	ms := startMasters(t, 1)
	cs := clientset(t, ms.apiConfig(t, 0))
	const nodes, pods = 4, 24
	cfg := hollow.DefaultConfig()
	cfg.Client, cfg.Count, cfg.Prefix = cs, nodes, "hollow-e2e-"
	cfg.LeaseInterval, cfg.StatusInterval = 300*time.Millisecond, 2*time.Second
	cfg.Logger = slog.New(slog.DiscardHandler)
	h, err := hollow.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("hollow Run: %v", err)
			}
		}
	}
	t.Cleanup(stop)

	nodeIPs, podCIDRs := map[string]string{}, map[string]netip.Prefix{}
	waitUntil(t, 15*time.Second, "the hollow nodes to be Ready with a pod CIDR (the master's node IPAM)", func(ctx context.Context) error {
		for _, name := range h.NodeNames() {
			n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			ready := false
			for _, c := range n.Status.Conditions {
				ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
			}
			if !ready || n.Labels[corev1.LabelHostname] != name || n.Status.Capacity.Pods().Value() != 110 || len(n.Status.Addresses) == 0 {
				return fmt.Errorf("node %s: conditions %v labels %v capacity %v", name, n.Status.Conditions, n.Labels, n.Status.Capacity)
			}
			nodeIPs[name] = n.Status.Addresses[0].Address
			cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
			if err != nil {
				return fmt.Errorf("node %s: pod CIDR %q", name, n.Spec.PodCIDR)
			}
			podCIDRs[name] = cidr
		}
		return nil
	})

	// Pods no scheduler picks up, bound by the test as a scheduler would.
	tctx := t.Context()
	for i := range pods {
		name := fmt.Sprintf("hollow-pod-%d", i)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PodSpec{SchedulerName: "hollow-e2e-none", Containers: []corev1.Container{
				{Name: "app", Image: "registry.local/app:v1"}, {Name: "sidecar", Image: "busybox"},
			}},
		}
		waitUntil(t, 15*time.Second, "creating "+name, func(ctx context.Context) error {
			_, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return nil
			}
			return err // the default service account may not exist yet
		})
		node := h.NodeNames()[i%nodes]
		if err := cs.CoreV1().Pods("default").Bind(tctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Target:     corev1.ObjectReference{Kind: "Node", Name: node},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("binding %s to %s: %v", name, node, err)
		}
	}
	waitUntil(t, 15*time.Second, "every pod Running", func(ctx context.Context) error {
		list, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ips := map[string]string{}
		running := 0
		for _, p := range list.Items {
			st := p.Status
			if st.Phase != corev1.PodRunning {
				continue
			}
			if st.HostIP != nodeIPs[p.Spec.NodeName] || st.StartTime == nil || len(st.ContainerStatuses) != 2 || !st.ContainerStatuses[0].Ready {
				return fmt.Errorf("pod %s on %s: status %+v", p.Name, p.Spec.NodeName, st)
			}
			ip, err := netip.ParseAddr(st.PodIP)
			if err != nil || !podCIDRs[p.Spec.NodeName].Contains(ip) {
				return fmt.Errorf("pod %s: podIP %q, want one of its node's %v", p.Name, st.PodIP, podCIDRs[p.Spec.NodeName])
			}
			if other, dup := ips[st.PodIP]; dup {
				return fmt.Errorf("pods %s and %s share IP %s", other, p.Name, ip)
			}
			ips[st.PodIP] = p.Name
			ready := false
			for _, c := range st.Conditions {
				ready = ready || (c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue)
			}
			if ready {
				running++
			}
		}
		if running != pods {
			return fmt.Errorf("%d of %d pods Running and Ready", running, pods)
		}
		return nil
	})

	// A deleted pod is confirmed gone by its node.
	if err := cs.CoreV1().Pods("default").Delete(tctx, "hollow-pod-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 15*time.Second, "the deleted pod to go", func(ctx context.Context) error {
		_, err := cs.CoreV1().Pods("default").Get(ctx, "hollow-pod-0", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})

	// Leases are renewed.
	lease := h.NodeNames()[1]
	var first time.Time
	waitUntil(t, 10*time.Second, "a lease", func(ctx context.Context) error {
		l, err := cs.CoordinationV1().Leases(hollow.LeaseNamespace).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		first = l.Spec.RenewTime.Time
		return nil
	})
	waitUntil(t, 10*time.Second, "the lease renewed", func(ctx context.Context) error {
		l, err := cs.CoordinationV1().Leases(hollow.LeaseNamespace).Get(ctx, lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !l.Spec.RenewTime.After(first) {
			return fmt.Errorf("renewTime %v, want after %v", l.Spec.RenewTime, first)
		}
		return nil
	})

	// Stopped, the nodes stay registered, as a dead machine's would.
	stop()
	for _, name := range h.NodeNames() {
		if _, err := cs.CoreV1().Nodes().Get(tctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("node %s after stop: %v", name, err)
		}
	}
}

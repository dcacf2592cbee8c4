package nodestatus

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-sh/skiff/controlplane/testapi"
)

// TestRegisterHeartbeatAndPodCIDR: the Node appears with the host's
// capacity, addresses and Ready condition, its Lease is renewed, and the
// pod CIDR the control plane sets reaches OnPodCIDR.
func TestRegisterHeartbeatAndPodCIDR(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(testapi.Start(t))
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: LeaseNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Log(err) // may exist already
	}
	cidrs := make(chan netip.Prefix, 1)
	cfg := DefaultConfig()
	cfg.Client, cfg.NodeName, cfg.NodeIP = cs, "ns-node-1", netip.MustParseAddr("10.9.8.7")
	cfg.RuntimeVersion = "containerd://test"
	cfg.LeaseInterval, cfg.StatusInterval = 50*time.Millisecond, 100*time.Millisecond
	cfg.OnPodCIDR = func(p netip.Prefix) { cidrs <- p }
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	var first *metav1.MicroTime
	testapi.WaitFor(t, 10*time.Second, "node registered with a renewed lease", func() error {
		n, err := cs.CoreV1().Nodes().Get(t.Context(), "ns-node-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Status.Capacity.Cpu().IsZero() || n.Status.Capacity.Memory().IsZero() || n.Status.Capacity.Pods().Value() != 110 {
			return fmt.Errorf("capacity %v", n.Status.Capacity)
		}
		if len(n.Status.Addresses) == 0 || n.Status.Addresses[0].Address != "10.9.8.7" {
			return fmt.Errorf("addresses %v", n.Status.Addresses)
		}
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		if !ready || n.Status.NodeInfo.ContainerRuntimeVersion != "containerd://test" || n.Labels[corev1.LabelHostname] != "ns-node-1" {
			return fmt.Errorf("not ready or incomplete: %+v %v", n.Status.NodeInfo, n.Labels)
		}
		l, err := cs.CoordinationV1().Leases(LeaseNamespace).Get(t.Context(), "ns-node-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if first == nil {
			first = l.Spec.RenewTime
			return fmt.Errorf("lease seen once")
		}
		if !l.Spec.RenewTime.After(first.Time) {
			return fmt.Errorf("lease not renewed since %v", first)
		}
		return nil
	})
	select {
	case p := <-cidrs:
		t.Fatalf("OnPodCIDR(%v) before any pod CIDR was set", p)
	default:
	}
	// The runner writes the node's status every 100 ms: a write between
	// this Get and Update is a conflict, and the control plane (here the
	// test) reads the node again and retries.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		n, err := cs.CoreV1().Nodes().Get(t.Context(), "ns-node-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.7.0/24", []string{"10.244.7.0/24"}
		_, err = cs.CoreV1().Nodes().Update(t.Context(), n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-cidrs:
		if p != netip.MustParsePrefix("10.244.7.0/24") {
			t.Fatalf("OnPodCIDR got %v, want 10.244.7.0/24", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnPodCIDR not called within 10s of the pod CIDR being set")
	}
}

package nodestatus

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
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

// TestLeaseRenewsWithoutReading: as the kubelet, a renewal updates the
// Lease the previous one stored; it reads only the first time and after a
// failed update.
func TestLeaseRenewsWithoutReading(t *testing.T) {
	cs := fake.NewClientset(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: LeaseNamespace}})
	l := Lease{Client: cs, Node: "n1"}
	verbs := func() []string {
		var out []string
		for _, a := range cs.Actions() {
			if a.GetResource().Resource == "leases" {
				out = append(out, a.GetVerb())
			}
		}
		cs.ClearActions()
		return out
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, want := range [][]string{{"get", "create"}, {"update"}, {"update"}} {
		if err := l.Renew(t.Context(), "uid-1", now.Add(time.Duration(i)*10*time.Second)); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
		if got := verbs(); !slices.Equal(got, want) {
			t.Errorf("renewal %d: lease requests %v, want %v", i, got, want)
		}
	}
	got, err := cs.CoordinationV1().Leases(LeaseNamespace).Get(t.Context(), "n1", metav1.GetOptions{})
	if err != nil || !got.Spec.RenewTime.Time.Equal(now.Add(20*time.Second)) || got.OwnerReferences[0].UID != "uid-1" {
		t.Fatalf("lease = %+v, %v; want renewed at +20s, owned by uid-1", got, err)
	}
	// Someone else wrote it: the update fails once, and the next renewal reads it again.
	conflicts := 1
	cs.PrependReactor("update", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			conflicts--
			return true, nil, apierrors.NewConflict(coordinationv1.Resource("leases"), "n1", errors.New("changed"))
		}
		return false, nil, nil
	})
	if err := l.Renew(t.Context(), "uid-1", now.Add(30*time.Second)); !apierrors.IsConflict(err) {
		t.Fatalf("renewal after a write by someone else = %v, want a conflict", err)
	}
	verbs()
	if err := l.Renew(t.Context(), "uid-1", now.Add(40*time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := verbs(); !slices.Equal(got, []string{"get", "update"}) {
		t.Errorf("renewal after a conflict: lease requests %v, want [get update]", got)
	}
}

package nodelifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

// fakeGossip is a gossip view the test sets.
type fakeGossip struct {
	mu      sync.Mutex
	alive   map[string]bool
	changed chan struct{}
}

func (g *fakeGossip) Alive(node string) (bool, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.alive[node]
	return a, ok
}

func (g *fakeGossip) Changed() <-chan struct{} { return g.changed }

func (g *fakeGossip) set(node string, alive bool) {
	g.mu.Lock()
	g.alive[node] = alive
	g.mu.Unlock()
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// start runs a controller with cfg's knobs against a fresh API until the
// test ends.
func start(t *testing.T, grace time.Duration, gossip Gossip) kubernetes.Interface {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: LeaseNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger, cfg.GracePeriod, cfg.MonitorPeriod, cfg.Gossip = cs, slog.New(slog.DiscardHandler), grace, 100*time.Millisecond, gossip
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
	return cs
}

// readyNode registers a node whose kubelet just posted Ready=True.
func readyNode(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	postReady(t, cs, n)
}

// postReady does what a returning kubelet does: Ready=True, fresh heartbeat.
func postReady(t *testing.T, cs kubernetes.Interface, n *corev1.Node) {
	t.Helper()
	now := metav1.Now()
	n.Status.Conditions = slices.DeleteFunc(n.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type == corev1.NodeReady })
	n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", LastHeartbeatTime: now, LastTransitionTime: now})
	if _, err := cs.CoreV1().Nodes().UpdateStatus(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// renewLease keeps node's lease fresh every period until the test ends or
// stop is closed.
func renewLease(t *testing.T, cs kubernetes.Interface, node string, period time.Duration, stop <-chan struct{}) {
	t.Helper()
	leases := cs.CoordinationV1().Leases(LeaseNamespace)
	holder := node
	l, err := leases.Create(t.Context(), &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: node}, Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	go func() {
		for {
			now := metav1.NewMicroTime(time.Now())
			l.Spec.RenewTime = &now
			if upd, err := leases.Update(ctx, l, metav1.UpdateOptions{}); err == nil {
				l = upd
			}
			select {
			case <-ctx.Done():
				return
			case <-stop:
				return
			case <-time.After(period):
			}
		}
	}()
}

// runningPod creates a Ready pod on node with tolerations.
func runningPod(t *testing.T, cs kubernetes.Interface, name, node string, tolerations ...corev1.Toleration) {
	t.Helper()
	p, err := cs.CoreV1().Pods("default").Create(t.Context(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Tolerations: tolerations, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := cs.CoreV1().Pods("default").UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func seconds(s int64) *int64 { return &s }

// nodeState describes a node's Ready status and the controller's taints.
func nodeState(cs kubernetes.Interface, ctx context.Context, name string) (string, error) {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	s := "Ready=none"
	if c := readyCondition(n); c != nil {
		s = "Ready=" + string(c.Status)
	}
	for _, t := range n.Spec.Taints {
		if owned(t) {
			s += " " + t.Key + ":" + string(t.Effect)
		}
	}
	return s, nil
}

func waitNode(t *testing.T, cs kubernetes.Interface, name, want string, timeout time.Duration) {
	t.Helper()
	apitest.WaitFor(t, timeout, "node "+name+" to be "+want, func() error {
		got, err := nodeState(cs, t.Context(), name)
		if err != nil {
			return err
		}
		if got != want {
			return fmt.Errorf("got %q", got)
		}
		return nil
	})
}

// TestSilentNodeLosesItsPods: of two nodes, the one whose lease stops is
// unreachable after the grace period, tainted, its pods not Ready, and its
// pods evicted as their tolerations say; the live node is left alone. When
// its kubelet posts Ready again, the taints go.
func TestSilentNodeLosesItsPods(t *testing.T) {
	cs := start(t, 1500*time.Millisecond, nil)
	silent := make(chan struct{})
	for _, n := range []string{"live", "lost"} {
		readyNode(t, cs, n)
	}
	renewLease(t, cs, "live", 200*time.Millisecond, nil)
	renewLease(t, cs, "lost", 200*time.Millisecond, silent)
	unreachable := func(secs *int64) corev1.Toleration {
		return corev1.Toleration{Key: UnreachableTaint, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
	}
	runningPod(t, cs, "on-live", "live", unreachable(seconds(0)))
	runningPod(t, cs, "now", "lost", unreachable(seconds(0)))
	runningPod(t, cs, "soon", "lost", unreachable(seconds(2)))
	runningPod(t, cs, "later", "lost", unreachable(seconds(3600)))
	runningPod(t, cs, "forever", "lost", unreachable(nil))

	close(silent)
	lostAt := time.Now()
	waitNode(t, cs, "lost", "Ready=Unknown "+UnreachableTaint+":NoSchedule "+UnreachableTaint+":NoExecute", 10*time.Second)
	if d := time.Since(lostAt); d < time.Second {
		t.Errorf("node unreachable %v after its last lease renewal, before the 1.5 s grace period", d)
	}
	n, err := cs.CoreV1().Nodes().Get(t.Context(), "lost", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c := readyCondition(n); c.Reason != "NodeStatusUnknown" || c.Message != "Kubelet stopped posting node status." {
		t.Errorf("Ready condition: got %q %q", c.Reason, c.Message)
	}
	gone := func(name string) error {
		p, err := cs.CoreV1().Pods("default").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.DeletionTimestamp == nil {
			return fmt.Errorf("pod %s not being deleted", name)
		}
		if !slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
			return c.Type == corev1.DisruptionTarget && c.Reason == "DeletionByTaintManager"
		}) {
			return fmt.Errorf("pod %s has no DisruptionTarget condition: %+v", name, p.Status.Conditions)
		}
		return nil
	}
	apitest.WaitFor(t, 10*time.Second, "pod now to be evicted", func() error { return gone("now") })
	if err := gone("soon"); err == nil {
		t.Errorf("pod soon evicted at once, want after its 2 s toleration")
	}
	apitest.WaitFor(t, 10*time.Second, "pod soon to be evicted", func() error { return gone("soon") })
	for _, name := range []string{"later", "forever", "on-live"} {
		p, err := cs.CoreV1().Pods("default").Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if p.DeletionTimestamp != nil {
			t.Errorf("pod %s evicted, want it kept", name)
		}
		ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue })
		if want := name == "on-live"; ready != want {
			t.Errorf("pod %s Ready: got %v, want %v", name, ready, want)
		}
	}
	if got, err := nodeState(cs, t.Context(), "live"); err != nil || got != "Ready=True" {
		t.Errorf("live node: got %q (%v), want Ready=True and no taints", got, err)
	}
	apitest.WaitFor(t, 10*time.Second, "a NodeNotReady event", func() error {
		evs, err := cs.CoreV1().Events("").List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=Node,involvedObject.name=lost,reason=NodeNotReady"})
		if err != nil {
			return err
		}
		if len(evs.Items) == 0 {
			return fmt.Errorf("none yet")
		}
		return nil
	})

	// The kubelet comes back.
	renewLease2 := func() {
		l, err := cs.CoordinationV1().Leases(LeaseNamespace).Get(t.Context(), "lost", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec.RenewTime = &now
		if _, err := cs.CoordinationV1().Leases(LeaseNamespace).Update(t.Context(), l, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	renewLease2()
	postReady(t, cs, n)
	waitNode(t, cs, "lost", "Ready=True", 10*time.Second)
}

// TestGossipDeathIsImmediate: a worker the gossip pool reports dead is
// unreachable at once, long before its grace period, and cordoning a node
// taints it unschedulable.
func TestGossipDeathIsImmediate(t *testing.T) {
	g := &fakeGossip{alive: map[string]bool{}, changed: make(chan struct{}, 1)}
	cs := start(t, time.Hour, g)
	readyNode(t, cs, "w1")
	g.set("w1", true)
	readyNode(t, cs, "w2")
	g.set("w2", true)
	n, err := cs.CoreV1().Nodes().Get(t.Context(), "w2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Spec.Unschedulable = true
	if _, err := cs.CoreV1().Nodes().Update(t.Context(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitNode(t, cs, "w2", "Ready=True "+UnschedulableTaint+":NoSchedule", 10*time.Second)

	g.set("w1", false)
	died := time.Now()
	waitNode(t, cs, "w1", "Ready=Unknown "+UnreachableTaint+":NoSchedule "+UnreachableTaint+":NoExecute", 10*time.Second)
	t.Logf("gossip death to Ready=Unknown and tainted: %v", time.Since(died))
	if got, err := nodeState(cs, t.Context(), "w2"); err != nil || got != "Ready=True "+UnschedulableTaint+":NoSchedule" {
		t.Errorf("w2: got %q (%v), want it untouched", got, err)
	}
}

// TestEvictionTime is the toleration arithmetic.
func TestEvictionTime(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	added := metav1.NewTime(t0)
	taints := []corev1.Taint{{Key: UnreachableTaint, Effect: corev1.TaintEffectNoExecute, TimeAdded: &added}}
	tol := func(key string, secs *int64) corev1.Toleration {
		return corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs}
	}
	for _, tc := range []struct {
		name   string
		tols   []corev1.Toleration
		want   time.Time
		evicts bool
	}{
		{"untolerated", nil, time.Time{}, true},
		{"other key", []corev1.Toleration{tol(NotReadyTaint, seconds(60))}, time.Time{}, true},
		{"30s", []corev1.Toleration{tol(UnreachableTaint, seconds(30))}, t0.Add(30 * time.Second), true},
		{"forever", []corev1.Toleration{tol(UnreachableTaint, nil)}, time.Time{}, false},
		{"negative is zero", []corev1.Toleration{tol(UnreachableTaint, seconds(-5))}, t0, true},
		{"everything", []corev1.Toleration{{Operator: corev1.TolerationOpExists}}, time.Time{}, false},
	} {
		got, evicts := evictionTime(&corev1.Pod{Spec: corev1.PodSpec{Tolerations: tc.tols}}, taints)
		if !got.Equal(tc.want) || evicts != tc.evicts {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, got, evicts, tc.want, tc.evicts)
		}
	}
}

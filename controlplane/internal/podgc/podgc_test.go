package podgc

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

func TestOrder(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Second))
	pod := func(name string, ts metav1.Time, reason string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: ts}, Status: corev1.PodStatus{Phase: corev1.PodFailed, Reason: reason}}
	}
	for _, tc := range []struct {
		name string
		a, b *corev1.Pod
		want int
	}{
		{"older first", pod("z", t0, ""), pod("a", t1, ""), -1},
		{"name breaks ties", pod("b", t0, ""), pod("a", t0, ""), 1},
		{"evicted first", pod("a", t0, ""), pod("b", t1, "Evicted"), 1},
	} {
		if got := oldestEvictedFirst(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, got, tc.want)
		}
	}
}

type fixture struct {
	t  *testing.T
	cs kubernetes.Interface
}

// pod creates a pod (bound to node unless it is "") and sets its phase
// as a kubelet would; a held pod has a finalizer so that it can be seen
// after deletion.
func (f fixture) pod(name, node string, phase corev1.PodPhase, reason string, held bool) {
	f.t.Helper()
	ctx := f.t.Context()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if held {
		p.Finalizers = []string{"skiff.test/hold"}
		f.t.Cleanup(func() {
			if p, err := f.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{}); err == nil {
				p.Finalizers = nil
				_, _ = f.cs.CoreV1().Pods("default").Update(context.Background(), p, metav1.UpdateOptions{})
			}
		})
	}
	p, err := f.cs.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	if phase != corev1.PodPending {
		p.Status.Phase, p.Status.Reason = phase, reason
		if _, err := f.cs.CoreV1().Pods("default").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f fixture) gone(name string) func() error {
	return func() error {
		p, err := f.cs.CoreV1().Pods("default").Get(f.t.Context(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("pod %s still there (phase %s, deletionTimestamp %v)", name, p.Status.Phase, p.DeletionTimestamp)
	}
}

// forceDeleted waits until a held pod is Failed and deleted with grace
// period 0, and returns it.
func (f fixture) forceDeleted(name string) *corev1.Pod {
	f.t.Helper()
	var got *corev1.Pod
	apitest.WaitFor(f.t, 20*time.Second, name+" to be failed and force-deleted", func() error {
		p, err := f.cs.CoreV1().Pods("default").Get(f.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 0 || p.Status.Phase != corev1.PodFailed {
			return fmt.Errorf("phase %s, deletionTimestamp %v, grace %v; want Failed, deleted with grace 0", p.Status.Phase, p.DeletionTimestamp, p.DeletionGracePeriodSeconds)
		}
		got = p
		return nil
	})
	return got
}

// passCounter counts the collector's passes from its debug log.
type passCounter struct {
	slog.Handler
	n *atomic.Int64
}

func (h passCounter) Enabled(context.Context, slog.Level) bool { return true }

func (h passCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "pod garbage collection pass" {
		h.n.Add(1)
	}
	return nil
}

func startController(t *testing.T, cs kubernetes.Interface, threshold int, quarantine time.Duration, passes *atomic.Int64) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = cs, slog.New(slog.DiscardHandler)
	if passes != nil {
		cfg.Logger = slog.New(passCounter{slog.DiscardHandler, passes})
	}
	cfg.TerminatedPodThreshold, cfg.QuarantineTime, cfg.CheckPeriod = threshold, quarantine, 100*time.Millisecond
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

func TestTerminatedBeyondThreshold(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	f := fixture{t, cs}
	if _, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Created in name order: ties of the second-granular creation time
	// are broken by name.
	f.pod("t-0", "n1", corev1.PodSucceeded, "", false)
	f.pod("t-1", "n1", corev1.PodFailed, "", false)
	f.pod("t-2", "n1", corev1.PodSucceeded, "", false)
	f.pod("t-3", "n1", corev1.PodFailed, "Evicted", false)
	f.pod("running", "n1", corev1.PodRunning, "", false)
	var passes atomic.Int64
	startController(t, cs, 2, time.Hour, &passes)
	apitest.WaitFor(t, 20*time.Second, "the evicted pod to go", f.gone("t-3"))
	apitest.WaitFor(t, 20*time.Second, "the oldest pod to go", f.gone("t-0"))
	// The collector deletes exactly the surplus in one pass: after two
	// more passes, the rest is still there.
	after := passes.Load() + 2
	apitest.WaitFor(t, 20*time.Second, "two more passes", func() error {
		if n := passes.Load(); n < after {
			return fmt.Errorf("%d passes, want %d", n, after)
		}
		return nil
	})
	for _, name := range []string{"t-1", "t-2", "running"} {
		if err := f.gone(name)(); err == nil {
			t.Errorf("%s deleted; want it kept (threshold 2)", name)
		}
	}
}

func TestOrphansAndTerminating(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	f := fixture{t, cs}
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "alive"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	oos, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "broken"},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oos.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionFalse}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, oos, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.pod("on-alive", "alive", corev1.PodRunning, "", false)
	f.pod("orphan", "ghost", corev1.PodRunning, "", true)
	f.pod("unscheduled", "", corev1.PodPending, "", true)
	f.pod("stuck", "broken", corev1.PodRunning, "", true)
	f.pod("terminating-on-alive", "alive", corev1.PodRunning, "", true)
	for _, name := range []string{"unscheduled", "stuck", "terminating-on-alive"} {
		if err := cs.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	startController(t, cs, 12500, 2*time.Second, nil)

	f.forceDeleted("unscheduled")
	f.forceDeleted("stuck")
	orphan := f.forceDeleted("orphan")
	if waited := time.Since(start); waited < 2*time.Second {
		t.Errorf("orphan deleted after %v, before its node's quarantine of 2s", waited)
	}
	var cond *corev1.PodCondition
	for i := range orphan.Status.Conditions {
		if orphan.Status.Conditions[i].Type == corev1.DisruptionTarget {
			cond = &orphan.Status.Conditions[i]
		}
	}
	if cond == nil || cond.Status != corev1.ConditionTrue || cond.Reason != ReasonDeletionByPodGC || cond.Message != MessageNodeGone {
		t.Errorf("orphan's DisruptionTarget condition %+v, want True %s %q", cond, ReasonDeletionByPodGC, MessageNodeGone)
	}
	for _, name := range []string{"unscheduled", "stuck"} {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.DisruptionTarget {
				t.Errorf("%s has a DisruptionTarget condition; only orphans get one", name)
			}
		}
	}
	// Pods on a live, ready-or-not-tainted node are left to their kubelet.
	for _, name := range []string{"on-alive", "terminating-on-alive"} {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.Status.Phase != corev1.PodRunning {
			t.Errorf("%s: phase %s, want Running", name, p.Status.Phase)
		}
	}
}

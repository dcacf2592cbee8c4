package disruption

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

var waitFor = apitest.WaitFor

// setup serves the API in-process with a disruption controller and a
// kubelet for namespace ns (pods bound, Ready after a moment, deletions
// finished).
func setup(t *testing.T, ns string) (kubernetes.Interface, *apitest.Kubelet) {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k := apitest.StartKubelet(t, cs, ns, 20*time.Millisecond)
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = cs, slog.New(slog.DiscardHandler)
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
	return cs, k
}

// replicaSet creates a ReplicaSet object (no controller runs here) and n
// pods it owns, labeled app=name.
func replicaSet(t *testing.T, cs kubernetes.Interface, ns, name string, replicas int32, n int) *appsv1.ReplicaSet {
	t.Helper()
	labels := map[string]string{"app": name}
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(t.Context(), &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec()}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		pod(t, cs, ns, fmt.Sprintf("%s-%d", name, i), labels, metav1.NewControllerRef(rs, appsv1.SchemeGroupVersion.WithKind("ReplicaSet")))
	}
	return rs
}

func podSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
}

func pod(t *testing.T, cs kubernetes.Interface, ns, name string, labels map[string]string, owner *metav1.OwnerReference) {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Spec: podSpec()}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	if _, err := cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// running waits until the pods of ns named run (and are Ready, but for
// those the kubelet leaves not ready).
func running(t *testing.T, cs kubernetes.Interface, ns string, names ...string) {
	t.Helper()
	for _, name := range names {
		waitFor(t, 20*time.Second, "pod "+name+" running", func() error {
			p, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil || p.Status.Phase != corev1.PodRunning {
				return fmt.Errorf("%v", err)
			}
			return nil
		})
	}
}

func budget(t *testing.T, cs kubernetes.Interface, ns, name string, spec policyv1.PodDisruptionBudgetSpec) {
	t.Helper()
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(t.Context(), &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitStatus waits until budget name's status reads want (expected,
// desired, current, allowed).
func waitStatus(t *testing.T, cs kubernetes.Interface, ns, name string, want [4]int32) *policyv1.PodDisruptionBudget {
	t.Helper()
	var b *policyv1.PodDisruptionBudget
	waitFor(t, 20*time.Second, fmt.Sprintf("budget %s at %v", name, want), func() error {
		var err error
		if b, err = cs.PolicyV1().PodDisruptionBudgets(ns).Get(t.Context(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		s := b.Status
		if got := [4]int32{s.ExpectedPods, s.DesiredHealthy, s.CurrentHealthy, s.DisruptionsAllowed}; got != want || s.ObservedGeneration != b.Generation {
			return fmt.Errorf("got %v (observed generation %d of %d)", got, s.ObservedGeneration, b.Generation)
		}
		return nil
	})
	return b
}

func evict(cs kubernetes.Interface, ns, name string) error {
	return cs.PolicyV1().Evictions(ns).Evict(context.Background(), &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
}

func gone(t *testing.T, cs kubernetes.Interface, ns, name string) {
	t.Helper()
	waitFor(t, 20*time.Second, "pod "+name+" gone", func() error {
		_, err := cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (%v)", err)
	})
}

// TestEvictionSpendsTheBudget: minAvailable 2 of 3 allows one eviction;
// the next is refused with 429 and the budget's numbers until a
// replacement is Ready.
func TestEvictionSpendsTheBudget(t *testing.T) {
	cs, _ := setup(t, "spend")
	replicaSet(t, cs, "spend", "web", 3, 3)
	two := intstr.FromInt32(2)
	budget(t, cs, "spend", "web", policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}})
	b := waitStatus(t, cs, "spend", "web", [4]int32{3, 2, 3, 1})
	if c := b.Status.Conditions; len(c) != 1 || c[0].Type != policyv1.DisruptionAllowedCondition || c[0].Status != metav1.ConditionTrue || c[0].Reason != policyv1.SufficientPodsReason {
		t.Errorf("conditions: %+v", c)
	}
	if err := evict(cs, "spend", "web-0"); err != nil {
		t.Fatalf("first eviction: %v", err)
	}
	// Refused: the cause has the budget's numbers as last written (3
	// healthy until the controller counts the eviction, then 2).
	err := evict(cs, "spend", "web-1")
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second eviction: got %v, want 429", err)
	}
	st := err.(apierrors.APIStatus).Status()
	if st.Message != "Cannot evict pod as it would violate the pod's disruption budget." || st.Details == nil || len(st.Details.Causes) != 1 ||
		st.Details.Causes[0].Type != policyv1.DisruptionBudgetCause || !strings.HasPrefix(st.Details.Causes[0].Message, "The disruption budget web needs 2 healthy pods and has ") {
		t.Errorf("429: %+v", st)
	}
	gone(t, cs, "spend", "web-0")
	waitStatus(t, cs, "spend", "web", [4]int32{2, 2, 2, 0})
	// A replacement, once Ready, gives the budget its disruption back.
	pod(t, cs, "spend", "web-3", map[string]string{"app": "web"}, nil)
	waitStatus(t, cs, "spend", "web", [4]int32{3, 2, 3, 1})
	if err := evict(cs, "spend", "web-1"); err != nil {
		t.Fatalf("eviction after the replacement: %v", err)
	}
}

// TestBudgetByScale: maxUnavailable and percentages count the
// controllers' replicas, so a missing pod counts as unavailable; a pod
// without a controller makes the count fail, which blocks evictions.
func TestBudgetByScale(t *testing.T) {
	cs, k := setup(t, "scale")
	replicaSet(t, cs, "scale", "db", 4, 3) // one of four missing
	one := intstr.FromInt32(1)
	budget(t, cs, "scale", "db", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}})
	waitStatus(t, cs, "scale", "db", [4]int32{4, 3, 3, 0})
	running(t, cs, "scale", "db-0")
	if err := evict(cs, "scale", "db-0"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction with one pod already missing: got %v, want 429", err)
	}

	// An unhealthy pod goes without spending when the budget is met
	// otherwise (IfHealthyBudget, the default).
	replicaSet(t, cs, "scale", "cache", 3, 2)
	k.SetNotReady(func(p *corev1.Pod) bool { return p.Name == "cache-2" })
	pod(t, cs, "scale", "cache-2", map[string]string{"app": "cache"}, nil)
	pct := intstr.FromString("50%")
	budget(t, cs, "scale", "cache", policyv1.PodDisruptionBudgetSpec{MinAvailable: &pct, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}})
	b := waitStatus(t, cs, "scale", "cache", [4]int32{0, 0, 0, 0}) // cache-2 has no controller: no count
	if c := b.Status.Conditions; len(c) != 1 || c[0].Reason != policyv1.SyncFailedReason || !strings.Contains(c[0].Message, `found no controller ref for pod "cache-2"`) {
		t.Errorf("conditions: %+v", c)
	}
	running(t, cs, "scale", "cache-0")
	if err := evict(cs, "scale", "cache-0"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction under a failed count: got %v, want 429", err)
	}
	if err := cs.CoreV1().Pods("scale").Delete(t.Context(), "cache-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	gone(t, cs, "scale", "cache-2")
	waitStatus(t, cs, "scale", "cache", [4]int32{3, 2, 2, 0})
}

func TestEvictionWithoutBudget(t *testing.T) {
	cs, k := setup(t, "free")
	k.SetNotReady(func(p *corev1.Pod) bool { return p.Name == "unready" })
	pod(t, cs, "free", "alone", nil, nil)
	pod(t, cs, "free", "unready", map[string]string{"app": "x"}, nil)
	two := intstr.FromInt32(2)
	budget(t, cs, "free", "x", policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "x"}}})
	waitStatus(t, cs, "free", "x", [4]int32{1, 2, 0, 0})
	// A pod no budget selects goes; so does one that does not run yet
	// (Pending), whatever its budget says.
	if err := evict(cs, "free", "alone"); err != nil {
		t.Errorf("eviction without a budget: %v", err)
	}
	if err := evict(cs, "free", "unready"); err != nil {
		t.Errorf("eviction of a pending pod: %v", err)
	}
	gone(t, cs, "free", "alone")
	gone(t, cs, "free", "unready")

	// Two budgets over one pod: upstream refuses with 500.
	pod(t, cs, "free", "both", map[string]string{"app": "x", "tier": "y"}, nil)
	budget(t, cs, "free", "y", policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"tier": "y"}}})
	running(t, cs, "free", "both")
	err := evict(cs, "free", "both")
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "more than one PodDisruptionBudget") {
		t.Errorf("eviction under two budgets: got %v", err)
	}
}

// TestUnhealthyPodEviction: a budget at its minimum (no disruption left)
// still lets a running but not Ready pod go (IfHealthyBudget, the
// default), while a Ready one is refused.
func TestUnhealthyPodEviction(t *testing.T) {
	cs, k := setup(t, "sick")
	k.SetNotReady(func(p *corev1.Pod) bool { return p.Name == "api-sick" })
	labels := map[string]string{"app": "api"}
	for _, name := range []string{"api-0", "api-1", "api-sick"} {
		pod(t, cs, "sick", name, labels, nil)
	}
	running(t, cs, "sick", "api-0", "api-1")
	waitFor(t, 10*time.Second, "api-sick running, not ready", func() error {
		p, err := cs.CoreV1().Pods("sick").Get(t.Context(), "api-sick", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.NodeName == "" {
			return fmt.Errorf("not bound yet")
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
		_, err = cs.CoreV1().Pods("sick").UpdateStatus(t.Context(), p, metav1.UpdateOptions{})
		return err
	})
	two := intstr.FromInt32(2)
	budget(t, cs, "sick", "api", policyv1.PodDisruptionBudgetSpec{MinAvailable: &two, Selector: &metav1.LabelSelector{MatchLabels: labels}})
	waitStatus(t, cs, "sick", "api", [4]int32{3, 2, 2, 0})
	if err := evict(cs, "sick", "api-0"); !apierrors.IsTooManyRequests(err) {
		t.Errorf("eviction of a Ready pod at the minimum: got %v, want 429", err)
	}
	if err := evict(cs, "sick", "api-sick"); err != nil {
		t.Errorf("eviction of the unhealthy pod: %v", err)
	}
	gone(t, cs, "sick", "api-sick")
}

package replicaset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

var waitFor = apitest.WaitFor

// startController runs a ReplicaSet controller until the returned stop is
// called or the test ends.
func startController(t *testing.T, cs kubernetes.Interface) (stop func()) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = cs, slog.New(slog.DiscardHandler)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func namespace(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

func newRS(name string, replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name, "tier": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

// activePods returns the pods of ns that select matches and are not being
// deleted.
func activePods(t *testing.T, cs kubernetes.Interface, ns, selector string) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// watchCount watches the pods of ns that selector matches and reports
// through check the number of them not being deleted after every event.
func watchCount(t *testing.T, cs kubernetes.Interface, ns, selector string, check func(active int)) {
	t.Helper()
	w, err := cs.CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		active := map[string]bool{}
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			switch {
			case ev.Type == watch.Deleted || p.DeletionTimestamp != nil:
				delete(active, p.Name)
			default:
				active[p.Name] = true
			}
			check(len(active))
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
}

func scale(t *testing.T, cs kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	s, err := cs.AppsV1().ReplicaSets(ns).GetScale(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Spec.Replicas = n
	if _, err := cs.AppsV1().ReplicaSets(ns).UpdateScale(t.Context(), name, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// settled waits until rs has exactly n active pods and a status that says
// so, all of them ready and available.
func settled(t *testing.T, cs kubernetes.Interface, ns, name string, n int32) {
	t.Helper()
	waitFor(t, 30*time.Second, fmt.Sprintf("%s to settle at %d ready pods", name, n), func() error {
		rs, err := cs.AppsV1().ReplicaSets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := len(activePods(t, cs, ns, "app="+name)); got != int(n) {
			return fmt.Errorf("got %d active pods, want %d", got, n)
		}
		st := rs.Status
		if st.ObservedGeneration != rs.Generation || st.Replicas != n || st.ReadyReplicas != n || st.AvailableReplicas != n {
			return fmt.Errorf("got status %+v at generation %d, want %d replicas all ready", st, rs.Generation, n)
		}
		return nil
	})
}

func TestScaleUpAndDown(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ns := namespace(t, cs, "scale")
	apitest.StartKubelet(t, cs, ns, 20*time.Millisecond)
	startController(t, cs)

	var mu sync.Mutex
	var most, limit int
	limit = 0
	watchCount(t, cs, ns, "app=web", func(n int) {
		mu.Lock()
		defer mu.Unlock()
		if n > limit {
			t.Errorf("saw %d active pods, never want more than %d", n, limit)
		}
		most = max(most, n)
	})
	if _, err := cs.AppsV1().ReplicaSets(ns).Create(t.Context(), newRS("web", 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	settled(t, cs, ns, "web", 0)
	mu.Lock()
	limit = 50
	mu.Unlock()
	scale(t, cs, ns, "web", 50)
	settled(t, cs, ns, "web", 50)
	for _, p := range activePods(t, cs, ns, "app=web") {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.Name != "web" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion || !strings.HasPrefix(p.Name, "web-") {
			t.Fatalf("pod %s has controller %+v, want web blocking owner deletion, name prefix web-", p.Name, ref)
		}
	}
	scale(t, cs, ns, "web", 0)
	settled(t, cs, ns, "web", 0)
	mu.Lock()
	defer mu.Unlock()
	if most != 50 {
		t.Errorf("at most %d active pods seen, want 50", most)
	}
}

func TestAdoptReleaseReplace(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ns := namespace(t, cs, "adopt")
	apitest.StartKubelet(t, cs, ns, 20*time.Millisecond)
	ctx := t.Context()

	// An orphan with the selector's labels but not all the template's.
	orphan := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Labels: map[string]string{"app": "api"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rs, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, newRS("api", 3), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	startController(t, cs)
	settled(t, cs, ns, "api", 3)
	got, err := cs.CoreV1().Pods(ns).Get(ctx, "orphan", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ref := metav1.GetControllerOf(got); ref == nil || ref.UID != rs.UID {
		t.Fatalf("orphan has controller %+v, want the replica set %s", ref, rs.UID)
	}
	waitFor(t, 10*time.Second, "fullyLabeledReplicas to leave out the adopted pod", func() error {
		rs, err := cs.AppsV1().ReplicaSets(ns).Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rs.Status.FullyLabeledReplicas != 2 {
			return fmt.Errorf("got fullyLabeledReplicas %d, want 2", rs.Status.FullyLabeledReplicas)
		}
		return nil
	})

	// Relabelled out of the selector: released and replaced.
	got.Labels = map[string]string{"app": "other"}
	if _, err := cs.CoreV1().Pods(ns).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the relabelled pod to be released", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.OwnerReferences) != 0 {
			return fmt.Errorf("got owner references %+v, want none", p.OwnerReferences)
		}
		return nil
	})
	settled(t, cs, ns, "api", 3)

	// A deleted pod is replaced.
	victim := activePods(t, cs, ns, "app=api")[0]
	if err := cs.CoreV1().Pods(ns).Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a replacement of the deleted pod", func() error {
		pods := activePods(t, cs, ns, "app=api")
		for _, p := range pods {
			if p.Name == victim.Name {
				return fmt.Errorf("%s is still active", victim.Name)
			}
		}
		if len(pods) != 3 {
			return fmt.Errorf("got %d active pods, want 3", len(pods))
		}
		return nil
	})
	settled(t, cs, ns, "api", 3)

	// The events say what happened.
	waitFor(t, 10*time.Second, "a SuccessfulCreate event", func() error {
		list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=api"})
		if err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, e := range list.Items {
			if e.Reason == ReasonSuccessfulCreate && strings.HasPrefix(e.Message, "Created pod: api-") {
				seen[e.Reason] = true
			}
		}
		if !seen[ReasonSuccessfulCreate] {
			return fmt.Errorf("got events %v, want a SuccessfulCreate", list.Items)
		}
		return nil
	})
}

func TestScaleDownDeletesNotReadyFirst(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ns := namespace(t, cs, "order")
	k := apitest.StartKubelet(t, cs, ns, 20*time.Millisecond)
	startController(t, cs)
	ctx := t.Context()
	if _, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, newRS("db", 3), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	settled(t, cs, ns, "db", 3)
	ready := map[string]bool{}
	for _, p := range activePods(t, cs, ns, "app=db") {
		ready[p.Name] = true
	}
	k.SetNotReady(func(p *corev1.Pod) bool { return !ready[p.Name] })
	scale(t, cs, ns, "db", 5)
	waitFor(t, 10*time.Second, "5 pods, 3 ready", func() error {
		rs, err := cs.AppsV1().ReplicaSets(ns).Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rs.Status.Replicas != 5 || rs.Status.ReadyReplicas != 3 {
			return fmt.Errorf("got status %+v, want 5 replicas, 3 ready", rs.Status)
		}
		return nil
	})
	scale(t, cs, ns, "db", 3)
	settled(t, cs, ns, "db", 3)
	for _, p := range activePods(t, cs, ns, "app=db") {
		if !ready[p.Name] {
			t.Errorf("not-ready pod %s survived the scale-down, a ready one went", p.Name)
		}
	}
}

func TestRestartMidScale(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ns := namespace(t, cs, "restart")
	apitest.StartKubelet(t, cs, ns, 20*time.Millisecond)
	watchCount(t, cs, ns, "app=job", func(n int) {
		if n > 40 {
			t.Errorf("saw %d active pods, want at most 40", n)
		}
	})
	if _, err := cs.AppsV1().ReplicaSets(ns).Create(t.Context(), newRS("job", 40), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stop := startController(t, cs)
	waitFor(t, 10*time.Second, "some pods", func() error {
		if n := len(activePods(t, cs, ns, "app=job")); n < 3 {
			return fmt.Errorf("got %d pods, want a few", n)
		}
		return nil
	})
	stop()
	startController(t, cs)
	settled(t, cs, ns, "job", 40)
}

func TestSlowStart(t *testing.T) {
	for _, tc := range []struct {
		count, failAt, wantDone, wantCalls int
	}{
		{count: 0, failAt: -1, wantDone: 0, wantCalls: 0},
		{count: 10, failAt: -1, wantDone: 10, wantCalls: 10},
		{count: 10, failAt: 0, wantDone: 0, wantCalls: 1},
		{count: 10, failAt: 1, wantDone: 2, wantCalls: 3}, // batches 1, 2: one of the second fails
	} {
		var mu sync.Mutex
		calls := 0
		done, err := slowStart(tc.count, func() error {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls-1 == tc.failAt {
				return fmt.Errorf("call %d fails", calls)
			}
			return nil
		})
		if done != tc.wantDone || calls != tc.wantCalls || (err != nil) != (tc.failAt >= 0) {
			t.Errorf("slowStart(%d) failing at %d: got done %d calls %d err %v, want done %d calls %d", tc.count, tc.failAt, done, calls, err, tc.wantDone, tc.wantCalls)
		}
	}
}

func TestMinReadySeconds(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ns := namespace(t, cs, "minready")
	apitest.StartKubelet(t, cs, ns, 10*time.Millisecond)
	startController(t, cs)
	ctx := t.Context()
	rs := newRS("slow", 3)
	rs.Spec.MinReadySeconds = 2
	if _, err := cs.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	status := func(ready, available int32) func() error {
		return func() error {
			rs, err := cs.AppsV1().ReplicaSets(ns).Get(ctx, "slow", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if rs.Status.ReadyReplicas != ready || rs.Status.AvailableReplicas != available {
				return fmt.Errorf("got %d ready, %d available, want %d, %d", rs.Status.ReadyReplicas, rs.Status.AvailableReplicas, ready, available)
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, "ready pods not available yet", status(3, 0))
	waitFor(t, 10*time.Second, "the ready pods to become available", status(3, 3))
}

func TestReplicaFailure(t *testing.T) {
	rs := newRS("quota", 4)
	rs.Namespace, rs.UID = "default", "rs-uid"
	cs := fake.NewClientset(rs)
	var mu sync.Mutex
	failing, attempts := true, 0
	cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if failing {
			return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "", errors.New("exceeded quota"))
		}
		// The fake does not generate names.
		pod := a.(k8stesting.CreateAction).GetObject().(*corev1.Pod)
		pod.Name = fmt.Sprintf("%s%d", pod.GenerateName, attempts)
		return false, nil, nil
	})
	startController(t, cs)
	failure := func(want bool) func() error {
		return func() error {
			got, err := cs.AppsV1().ReplicaSets("default").Get(t.Context(), "quota", metav1.GetOptions{})
			if err != nil {
				return err
			}
			var c *appsv1.ReplicaSetCondition
			for i := range got.Status.Conditions {
				if got.Status.Conditions[i].Type == appsv1.ReplicaSetReplicaFailure {
					c = &got.Status.Conditions[i]
				}
			}
			switch {
			case want && (c == nil || c.Status != corev1.ConditionTrue || c.Reason != ReasonFailedCreate || !strings.Contains(c.Message, "exceeded quota")):
				return fmt.Errorf("got ReplicaFailure %+v, want True %s", c, ReasonFailedCreate)
			case !want && c != nil:
				return fmt.Errorf("got ReplicaFailure %+v, want none", c)
			}
			return nil
		}
	}
	waitFor(t, 10*time.Second, "a ReplicaFailure condition", failure(true))
	mu.Lock()
	if attempts == 0 {
		t.Error("no create was tried")
	}
	failing = false
	mu.Unlock()
	waitFor(t, 20*time.Second, "the condition to go once creates succeed", failure(false))
	waitFor(t, 10*time.Second, "4 pods", func() error {
		list, err := cs.CoreV1().Pods("default").List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(list.Items) != 4 {
			return fmt.Errorf("got %d pods, want 4", len(list.Items))
		}
		return nil
	})
}

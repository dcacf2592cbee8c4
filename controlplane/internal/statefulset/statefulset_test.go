package statefulset

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/history"
)

var waitFor = apitest.WaitFor

const wait = 20 * time.Second

// startController runs a controller until the returned stop is called (or
// the test ends); stop waits for Run to return.
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

// kubelet plays the kubelet of namespace ns: while ready is set it marks
// pods Running and Ready, and it finishes the deletion of pods being
// deleted gracefully.
type kubelet struct{ ready atomic.Bool }

func startKubelet(t *testing.T, cs kubernetes.Interface, ns string) *kubelet {
	k := &kubelet{}
	k.ready.Store(true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				for i := range pods.Items {
					p := &pods.Items[i]
					switch {
					case p.DeletionTimestamp != nil:
						_ = cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &p.UID}})
					case k.ready.Load() && !runningReady(p) && p.Status.Phase != corev1.PodFailed:
						p.Status.Phase = corev1.PodRunning
						p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
						_, _ = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}) // a conflict is retried on the next round
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(15 * time.Millisecond): // the kubelet's pace, not a wait before an assertion
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return k
}

// recorder keeps the pod watch events of a namespace in order.
type recorder struct {
	mu     sync.Mutex
	events []watch.Event
}

func recordPods(t *testing.T, cs kubernetes.Interface, ns string) *recorder {
	t.Helper()
	w, err := cs.CoreV1().Pods(ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { w.Stop(); <-done })
	return r
}

// first returns the index of the first event for pod name that satisfies
// cond, or -1.
func (r *recorder) first(name string, cond func(watch.EventType, *corev1.Pod) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, ev := range r.events {
		if p, ok := ev.Object.(*corev1.Pod); ok && p.Name == name && cond(ev.Type, p) {
			return i
		}
	}
	return -1
}

func added(typ watch.EventType, _ *corev1.Pod) bool { return typ == watch.Added }
func ready(_ watch.EventType, p *corev1.Pod) bool {
	return runningReady(p) && p.DeletionTimestamp == nil
}
func deleting(_ watch.EventType, p *corev1.Pod) bool { return p.DeletionTimestamp != nil }
func gone(typ watch.EventType, _ *corev1.Pod) bool   { return typ == watch.Deleted }
func newNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// newSet returns a set of replicas pods of busybox (bound to a node, so
// that deleting them is graceful and the kubelet has to finish it).
func newSet(name string, replicas int32, policy appsv1.PodManagementPolicyType) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         name + "-svc",
			PodManagementPolicy: policy,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					NodeName:   "node-a",
					Containers: []corev1.Container{{Name: "c", Image: "busybox:1"}},
				},
			},
		},
	}
}

func getSet(t *testing.T, cs kubernetes.Interface, ns, name string) *appsv1.StatefulSet {
	t.Helper()
	set, err := cs.AppsV1().StatefulSets(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// rolledOut waits until set name has all its replicas Ready at its
// current generation and revision.
func rolledOut(t *testing.T, cs kubernetes.Interface, ns, name string, replicas int32) *appsv1.StatefulSet {
	t.Helper()
	var set *appsv1.StatefulSet
	waitFor(t, wait, name+" rolled out", func() error {
		s, err := cs.AppsV1().StatefulSets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		st := s.Status
		if st.ObservedGeneration != s.Generation || st.Replicas != replicas || st.ReadyReplicas != replicas ||
			st.UpdatedReplicas != replicas || st.CurrentRevision != st.UpdateRevision || st.AvailableReplicas != replicas {
			return fmt.Errorf("generation %d, status %+v, pods %s", s.Generation, st, describePods(t, cs, ns))
		}
		set = s
		return nil
	})
	return set
}

// describePods says what the pods of ns are at, for failure messages.
func describePods(t *testing.T, cs kubernetes.Interface, ns string) string {
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "%s(%s ready=%v deleting=%v rev=%s) ", p.Name, p.Status.Phase, runningReady(&p), p.DeletionTimestamp != nil, p.Labels[history.HashLabel])
	}
	return b.String()
}

func podNames(t *testing.T, cs kubernetes.Interface, ns string) []string {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func setImage(t *testing.T, cs kubernetes.Interface, ns, name, img string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":%q}]}}}}`, img)
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestOrderedReady(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx, ns := t.Context(), "ordered"
	newNamespace(t, cs, ns)
	rec := recordPods(t, cs, ns)
	startKubelet(t, cs, ns)
	startController(t, cs)

	created, err := cs.AppsV1().StatefulSets(ns).Create(ctx, newSet("web", 3, appsv1.OrderedReadyPodManagement), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set := rolledOut(t, cs, ns, "web", 3)
	if got, want := podNames(t, cs, ns), []string{"web-0", "web-1", "web-2"}; !slices.Equal(got, want) {
		t.Fatalf("pods %v, want %v", got, want)
	}
	for i := 1; i < 3; i++ {
		readyAt, addedAt := rec.first(fmt.Sprintf("web-%d", i-1), ready), rec.first(fmt.Sprintf("web-%d", i), added)
		if readyAt < 0 || addedAt < readyAt {
			t.Errorf("web-%d created at event %d, web-%d Ready at event %d: want it created after", i, addedAt, i-1, readyAt)
		}
	}

	pod, err := cs.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ what, got, want string }{
		{"pod-name label", pod.Labels[PodNameLabel], "web-1"},
		{"pod-index label", pod.Labels[PodIndexLabel], "1"},
		{"revision label", pod.Labels[history.HashLabel], set.Status.UpdateRevision},
		{"template label", pod.Labels["app"], "web"},
		{"hostname", pod.Spec.Hostname, "web-1"},
		{"subdomain", pod.Spec.Subdomain, "web-svc"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.what, c.got, c.want)
		}
	}
	if ref := metav1.GetControllerOf(pod); ref == nil || ref.UID != created.UID || ref.Kind != "StatefulSet" {
		t.Errorf("controller of web-1: got %+v, want the set", ref)
	}
	rev, err := cs.AppsV1().ControllerRevisions(ns).Get(ctx, set.Status.UpdateRevision, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rev.Revision != 1 || rev.Labels["app"] != "web" || !strings.HasPrefix(rev.Name, "web-") || metav1.GetControllerOf(rev).UID != created.UID {
		t.Errorf("revision %s: got number %d, labels %v, want 1 and the template's", rev.Name, rev.Revision, rev.Labels)
	}
	waitFor(t, wait, "the SuccessfulCreate event", func() error {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", "SuccessfulCreate").String()})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Message == "create Pod web-2 in StatefulSet web successful" && e.InvolvedObject.UID == created.UID {
				return nil
			}
		}
		return fmt.Errorf("%d SuccessfulCreate events, none for web-2", len(evs.Items))
	})

	// Scale down: from the highest ordinal, each gone before the next goes.
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	rolledOut(t, cs, ns, "web", 1)
	waitFor(t, wait, "web-2 and web-1 gone", func() error {
		if got := podNames(t, cs, ns); !slices.Equal(got, []string{"web-0"}) {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
	if gone2, del1 := rec.first("web-2", gone), rec.first("web-1", deleting); gone2 < 0 || del1 < gone2 {
		t.Errorf("web-1 deleted at event %d, web-2 gone at event %d: want web-2 gone first", del1, gone2)
	}

	// A deleted pod comes back with its name.
	old, err := cs.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "web-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "web-0 back", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID == old.UID {
			return fmt.Errorf("still the old web-0")
		}
		return nil
	})
	rolledOut(t, cs, ns, "web", 1)
}

func TestParallel(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx, ns := t.Context(), "parallel"
	newNamespace(t, cs, ns)
	k := startKubelet(t, cs, ns)
	k.ready.Store(false)
	startController(t, cs)
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, newSet("par", 3, appsv1.ParallelPodManagement), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// None Ready, all created.
	waitFor(t, wait, "three pods at once", func() error {
		if got := podNames(t, cs, ns); !slices.Equal(got, []string{"par-0", "par-1", "par-2"}) {
			return fmt.Errorf("pods %v", got)
		}
		return nil
	})
	k.ready.Store(true)
	rolledOut(t, cs, ns, "par", 3)

	// A failed pod is replaced under the same name.
	p, err := cs.CoreV1().Pods(ns).Get(ctx, "par-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k.ready.Store(false)
	p.Status.Phase = corev1.PodFailed
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "par-1 replaced", func() error {
		n, err := cs.CoreV1().Pods(ns).Get(ctx, "par-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.UID == p.UID {
			return fmt.Errorf("still the failed par-1")
		}
		return nil
	})
	k.ready.Store(true)
	rolledOut(t, cs, ns, "par", 3)
}

// kubectl runs the real kubectl against the API at cfg.
func kubectl(t *testing.T, cfg *rest.Config, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl is not on PATH")
	}
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q}}]
users: [{name: u, user: {}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`, cfg.Host)
	if err := os.WriteFile(kubeconfig, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(t.Context(), bin, append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	return string(out), err
}

func TestRollingUpdate(t *testing.T) {
	cfg := apitest.Start(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, ns := t.Context(), "rolling"
	newNamespace(t, cs, ns)
	startKubelet(t, cs, ns)
	startController(t, cs)
	set := newSet("web", 3, appsv1.OrderedReadyPodManagement)
	set.Spec.RevisionHistoryLimit = new(int32(1))
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := rolledOut(t, cs, ns, "web", 3).Status.UpdateRevision

	rec := recordPods(t, cs, ns)
	setImage(t, cs, ns, "web", "busybox:2")
	if out, err := kubectl(t, cfg, "-n", ns, "rollout", "status", "statefulset/web", "--timeout=20s"); err != nil {
		t.Fatalf("kubectl rollout status: %v\n%s", err, out)
	}
	second := rolledOut(t, cs, ns, "web", 3).Status.UpdateRevision
	if second == first {
		t.Fatalf("update revision still %s after a new template", first)
	}
	// From the highest ordinal down, each replaced once the one above is
	// back and Ready.
	for i := 2; i > 0; i-- {
		upReady := rec.first(fmt.Sprintf("web-%d", i), func(typ watch.EventType, p *corev1.Pod) bool {
			return ready(typ, p) && p.Spec.Containers[0].Image == "busybox:2"
		})
		below := rec.first(fmt.Sprintf("web-%d", i-1), deleting)
		if upReady < 0 || below < upReady {
			t.Errorf("web-%d deleted at event %d, web-%d updated and Ready at event %d: want after", i-1, below, i, upReady)
		}
	}

	out, err := kubectl(t, cfg, "-n", ns, "rollout", "history", "statefulset/web")
	if err != nil {
		t.Fatalf("kubectl rollout history: %v\n%s", err, out)
	}
	if !strings.Contains(out, "1 ") || !strings.Contains(out, "2 ") {
		t.Errorf("kubectl rollout history: got\n%s\nwant revisions 1 and 2", out)
	}
	out, err = kubectl(t, cfg, "-n", ns, "rollout", "history", "statefulset/web", "--revision=1")
	if err != nil || !strings.Contains(out, "busybox:1") {
		t.Errorf("kubectl rollout history --revision=1: %v, got\n%s\nwant the busybox:1 template", err, out)
	}

	out, err = kubectl(t, cfg, "-n", ns, "rollout", "undo", "statefulset/web")
	if err != nil {
		t.Fatalf("kubectl rollout undo: %v\n%s", err, out)
	}
	if img := getSet(t, cs, ns, "web").Spec.Template.Spec.Containers[0].Image; img != "busybox:1" {
		t.Fatalf("template image after undo: got %s, want busybox:1", img)
	}
	if out, err := kubectl(t, cfg, "-n", ns, "rollout", "status", "statefulset/web", "--timeout=20s"); err != nil {
		t.Fatalf("kubectl rollout status after undo: %v\n%s", err, out)
	}
	set = rolledOut(t, cs, ns, "web", 3)
	if set.Status.UpdateRevision != first {
		t.Errorf("update revision after undo: got %s, want the first one back, %s", set.Status.UpdateRevision, first)
	}
	rev, err := cs.AppsV1().ControllerRevisions(ns).Get(ctx, first, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rev.Revision != 3 {
		t.Errorf("the reused revision: got number %d, want 3", rev.Revision)
	}
	revs, err := cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 2 {
		t.Errorf("got %d revisions, want 2", len(revs.Items))
	}
	// kubectl v1.32 built on older API types writes
	// "creationTimestamp":null into the patch it compares with a revision,
	// so it does not see that the template already matches (nor would it
	// with kube-controller-manager built on these types); undo to an
	// explicit revision still works.
	out, err = kubectl(t, cfg, "-n", ns, "rollout", "undo", "statefulset/web", "--to-revision=2")
	if err != nil {
		t.Fatalf("kubectl rollout undo --to-revision=2: %v\n%s", err, out)
	}
	if out, err := kubectl(t, cfg, "-n", ns, "rollout", "status", "statefulset/web", "--timeout=20s"); err != nil {
		t.Fatalf("kubectl rollout status after the second undo: %v\n%s", err, out)
	}
	set = rolledOut(t, cs, ns, "web", 3)
	if set.Status.UpdateRevision != second || set.Spec.Template.Spec.Containers[0].Image != "busybox:2" {
		t.Errorf("after undo to revision 2: update revision %s, image %s, want %s and busybox:2", set.Status.UpdateRevision, set.Spec.Template.Spec.Containers[0].Image, second)
	}

	// History beyond revisionHistoryLimit (1) goes, oldest first, never a
	// revision in use.
	setImage(t, cs, ns, "web", "busybox:3")
	third := rolledOut(t, cs, ns, "web", 3).Status.UpdateRevision
	waitFor(t, wait, "the history trimmed", func() error {
		revs, err := cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var names []string
		for _, r := range revs.Items {
			names = append(names, r.Name)
		}
		slices.Sort(names)
		want := []string{second, third}
		slices.Sort(want)
		if !slices.Equal(names, want) {
			return fmt.Errorf("revisions %v, want %v", names, want)
		}
		return nil
	})
}

func TestPartitionAndOnDelete(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx, ns := t.Context(), "partition"
	newNamespace(t, cs, ns)
	startKubelet(t, cs, ns)
	startController(t, cs)
	set := newSet("db", 3, appsv1.ParallelPodManagement)
	set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
		Type:          appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: new(int32(2))},
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := rolledOut(t, cs, ns, "db", 3).Status.CurrentRevision
	setImage(t, cs, ns, "db", "busybox:2")
	var s *appsv1.StatefulSet
	waitFor(t, wait, "the partition updated", func() error {
		s = getSet(t, cs, ns, "db")
		if st := s.Status; st.ObservedGeneration != s.Generation || st.UpdatedReplicas != 1 || st.ReadyReplicas != 3 || st.CurrentReplicas != 2 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if s.Status.CurrentRevision != first || s.Status.UpdateRevision == first {
		t.Errorf("revisions: current %s update %s, want current %s and a new update", s.Status.CurrentRevision, s.Status.UpdateRevision, first)
	}
	for i, want := range []string{first, first, s.Status.UpdateRevision} {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, fmt.Sprintf("db-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.Labels[history.HashLabel]; got != want {
			t.Errorf("db-%d revision: got %s, want %s", i, got, want)
		}
	}
	// Deleted below the partition, a pod comes back at the current revision.
	old, err := cs.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "db-0", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "db-0 back", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "db-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.UID == old.UID {
			return fmt.Errorf("still the old one")
		}
		if got := p.Labels[history.HashLabel]; got != first {
			return fmt.Errorf("db-0 back at revision %s, want %s", got, first)
		}
		return nil
	})

	// OnDelete: nothing moves until a pod is deleted.
	if _, err := cs.AppsV1().StatefulSets(ns).Patch(ctx, "db", types.MergePatchType, []byte(`{"spec":{"updateStrategy":{"type":"OnDelete","rollingUpdate":null}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	setImage(t, cs, ns, "db", "busybox:3")
	waitFor(t, wait, "the new template observed", func() error {
		s = getSet(t, cs, ns, "db")
		if st := s.Status; st.ObservedGeneration != s.Generation || st.UpdatedReplicas != 0 || st.ReadyReplicas != 3 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "db-1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "db-1 back at the new revision", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "db-1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.Containers[0].Image != "busybox:3" {
			return fmt.Errorf("db-1 runs %s", p.Spec.Containers[0].Image)
		}
		return nil
	})
	for _, name := range []string{"db-0", "db-2"} {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img := p.Spec.Containers[0].Image; img == "busybox:3" {
			t.Errorf("%s updated without being deleted (OnDelete)", name)
		}
	}
}

func TestRestart(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx, ns := t.Context(), "restart"
	newNamespace(t, cs, ns)
	startKubelet(t, cs, ns)
	stop := startController(t, cs)
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, newSet("r", 6, appsv1.OrderedReadyPodManagement), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "r-2 created", func() error {
		_, err := cs.CoreV1().Pods(ns).Get(ctx, "r-2", metav1.GetOptions{})
		return err
	})
	stop()
	stop = startController(t, cs)
	rolledOut(t, cs, ns, "r", 6)
	setImage(t, cs, ns, "r", "busybox:2")
	waitFor(t, wait, "the update begun", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "r-5", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Spec.Containers[0].Image != "busybox:2" {
			return fmt.Errorf("r-5 runs %s", p.Spec.Containers[0].Image)
		}
		return nil
	})
	stop()
	startController(t, cs)
	set := rolledOut(t, cs, ns, "r", 6)
	if got, want := podNames(t, cs, ns), []string{"r-0", "r-1", "r-2", "r-3", "r-4", "r-5"}; !slices.Equal(got, want) {
		t.Errorf("pods %v, want %v", got, want)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.Spec.Containers[0].Image != "busybox:2" || p.Labels[history.HashLabel] != set.Status.UpdateRevision {
			t.Errorf("%s: image %s revision %s, want busybox:2 at %s", p.Name, p.Spec.Containers[0].Image, p.Labels[history.HashLabel], set.Status.UpdateRevision)
		}
	}
	revs, err := cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 2 {
		t.Errorf("got %d revisions, want 2", len(revs.Items))
	}
}

func TestAdopt(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx, ns := t.Context(), "adopt"
	newNamespace(t, cs, ns)
	startKubelet(t, cs, ns)
	startController(t, cs)
	orphan, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "keep-0", Labels: map[string]string{"app": "keep"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set := newSet("keep", 2, appsv1.OrderedReadyPodManagement)
	set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	created, err := cs.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "keep-0 adopted and keep-1 created", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "keep-0", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ref := metav1.GetControllerOf(p); p.UID != orphan.UID || ref == nil || ref.UID != created.UID {
			return fmt.Errorf("keep-0 uid %s (orphan %s), controller %v", p.UID, orphan.UID, ref)
		}
		_, err = cs.CoreV1().Pods(ns).Get(ctx, "keep-1", metav1.GetOptions{})
		return err
	})
}

func TestMaxUnavailable(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx, ns := t.Context(), "unavailable"
	newNamespace(t, cs, ns)
	startKubelet(t, cs, ns)
	startController(t, cs)
	set := newSet("mu", 5, appsv1.ParallelPodManagement)
	two := intstr.FromInt32(2)
	set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{
		Type:          appsv1.RollingUpdateStatefulSetStrategyType,
		RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{MaxUnavailable: &two},
	}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := getSet(t, cs, ns, "mu").Spec.UpdateStrategy.RollingUpdate; got == nil || got.MaxUnavailable == nil {
		t.Skip("the API server drops maxUnavailable (feature gate MaxUnavailableStatefulSet off)")
	}
	rolledOut(t, cs, ns, "mu", 5)
	rec := recordPods(t, cs, ns)
	setImage(t, cs, ns, "mu", "busybox:2")
	rolledOut(t, cs, ns, "mu", 5)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	readyNow := map[string]bool{}
	for i := range 5 {
		readyNow[fmt.Sprintf("mu-%d", i)] = true
	}
	worst := 0
	for _, ev := range rec.events {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		readyNow[p.Name] = ev.Type != watch.Deleted && ready(ev.Type, p)
		down := 0
		for _, r := range readyNow {
			if !r {
				down++
			}
		}
		worst = max(worst, down)
	}
	if worst != 2 {
		t.Errorf("at worst %d pods unavailable during the update, want maxUnavailable 2", worst)
	}
}

package daemonset

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/history"
)

var waitFor = apitest.WaitFor

const wait = 20 * time.Second

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

// startCluster plays the scheduler and the kubelets of namespace ns: it
// binds each pending pod to the node its matchFields name, marks bound pods
// Running and Ready (on nodes that exist), and finishes graceful deletes.
func startCluster(t *testing.T, cs kubernetes.Interface, ns string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			nodes, nerr := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
			if err == nil && nerr == nil {
				exists := map[string]bool{}
				for _, n := range nodes.Items {
					exists[n.Name] = true
				}
				for i := range pods.Items {
					p := &pods.Items[i]
					switch {
					case p.DeletionTimestamp != nil:
						_ = cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &p.UID}})
					case p.Spec.NodeName == "":
						if node := targetNode(p); exists[node] {
							_ = cs.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{
								ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
								Target:     corev1.ObjectReference{Kind: "Node", Name: node},
							}, metav1.CreateOptions{})
						}
					case exists[p.Spec.NodeName] && !ready(p) && p.Status.Phase != corev1.PodFailed:
						p.Status.Phase = corev1.PodRunning
						p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
						_, _ = cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}) // a conflict is retried next round
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(15 * time.Millisecond): // the cluster's pace, not a wait before an assertion
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func newNamespace(t *testing.T, cs kubernetes.Interface, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func addNode(t *testing.T, cs kubernetes.Interface, name string, lbls map[string]string) {
	t.Helper()
	if _, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func patchNode(t *testing.T, cs kubernetes.Interface, name, patch string) {
	t.Helper()
	if _, err := cs.CoreV1().Nodes().Patch(t.Context(), name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func newSet(name string) *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}},
				Spec: corev1.PodSpec{
					NodeSelector: map[string]string{"role": "worker"},
					Containers:   []corev1.Container{{Name: "c", Image: "agent:1"}},
				},
			},
		},
	}
}

// podsByNode returns the live pods of ns by the node they are bound to.
func podsByNode(t *testing.T, cs kubernetes.Interface, ns string) map[string][]corev1.Pod {
	t.Helper()
	pods, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]corev1.Pod{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out[targetNode(&p)] = append(out[targetNode(&p)], p)
		}
	}
	return out
}

// settled waits until set name's status is want (observedGeneration
// aside) at its generation, and it runs exactly one pod of image on each
// of nodes (and none elsewhere, but on the nodes in leftover).
func settled(t *testing.T, cs kubernetes.Interface, ns, name, image string, want appsv1.DaemonSetStatus, nodes []string, leftover ...string) *appsv1.DaemonSet {
	t.Helper()
	var set *appsv1.DaemonSet
	waitFor(t, wait, fmt.Sprintf("%s on %v with %s", name, nodes, image), func() error {
		s, err := cs.AppsV1().DaemonSets(ns).Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got := s.Status
		got.ObservedGeneration, got.CollisionCount, got.Conditions = 0, nil, nil
		if s.Status.ObservedGeneration != s.Generation || !reflect.DeepEqual(got, want) {
			return fmt.Errorf("generation %d, status %+v, want %+v", s.Generation, s.Status, want)
		}
		byNode := podsByNode(t, cs, ns)
		for _, n := range nodes {
			pods := byNode[n]
			if len(pods) != 1 || pods[0].Spec.Containers[0].Image != image || pods[0].Spec.NodeName != n || !ready(&pods[0]) {
				return fmt.Errorf("node %s has %d pods (%v)", n, len(pods), pods)
			}
		}
		for n := range byNode {
			if !slices.Contains(nodes, n) && !slices.Contains(leftover, n) {
				return fmt.Errorf("pods on node %s", n)
			}
		}
		set = s
		return nil
	})
	return set
}

// status is a set's status with desired nodes all up to date and
// available, and misscheduled ones.
func status(desired, misscheduled int32) appsv1.DaemonSetStatus {
	return appsv1.DaemonSetStatus{
		DesiredNumberScheduled: desired, CurrentNumberScheduled: desired, NumberReady: desired,
		UpdatedNumberScheduled: desired, NumberAvailable: desired, NumberMisscheduled: misscheduled,
	}
}

func setImage(t *testing.T, cs kubernetes.Interface, ns, name, img string) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"template":{"spec":{"containers":[{"name":"c","image":%q}]}}}}`, img)
	if _, err := cs.AppsV1().DaemonSets(ns).Patch(t.Context(), name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

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

var worker = map[string]string{"role": "worker"}

func TestNodes(t *testing.T) {
	cfg := apitest.Start(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, ns := t.Context(), "nodes"
	newNamespace(t, cs, ns)
	for _, n := range []string{"n1", "n2", "n3"} {
		addNode(t, cs, n, worker)
	}
	addNode(t, cs, "other", map[string]string{"role": "db"})
	startCluster(t, cs, ns)
	stop := startController(t, cs)

	created, err := cs.AppsV1().DaemonSets(ns).Create(ctx, newSet("agent"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	set := settled(t, cs, ns, "agent", "agent:1", status(3, 0), []string{"n1", "n2", "n3"})
	if out, err := kubectl(t, cfg, "-n", ns, "rollout", "status", "daemonset/agent", "--timeout=20s"); err != nil {
		t.Fatalf("kubectl rollout status: %v\n%s", err, out)
	}

	pod := podsByNode(t, cs, ns)["n2"][0]
	revs, err := cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(revs.Items) != 1 || revs.Items[0].Revision != 1 || metav1.GetControllerOf(&revs.Items[0]).UID != set.UID {
		t.Fatalf("revisions %+v, want one, number 1, of the set", revs.Items)
	}
	if got, want := pod.Labels[history.HashLabel], revs.Items[0].Labels[history.HashLabel]; got != want || want == "" {
		t.Errorf("pod revision hash %q, want %q", got, want)
	}
	if ref := metav1.GetControllerOf(&pod); ref == nil || ref.UID != created.UID {
		t.Errorf("controller of %s: got %+v, want the set", pod.Name, ref)
	}
	if !strings.HasPrefix(pod.Name, "agent-") {
		t.Errorf("pod name %s, want agent-…", pod.Name)
	}
	terms := pod.Spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchFields) != 1 || terms[0].MatchFields[0].Key != "metadata.name" || !slices.Equal(terms[0].MatchFields[0].Values, []string{"n2"}) {
		t.Errorf("node affinity %+v, want matchFields metadata.name In [n2]", terms)
	}
	for _, key := range []string{corev1.TaintNodeNotReady, corev1.TaintNodeUnreachable, corev1.TaintNodeDiskPressure, corev1.TaintNodeMemoryPressure, corev1.TaintNodePIDPressure, corev1.TaintNodeUnschedulable} {
		if !slices.ContainsFunc(pod.Spec.Tolerations, func(t corev1.Toleration) bool {
			return t.Key == key && t.Operator == corev1.TolerationOpExists && t.TolerationSeconds == nil
		}) {
			t.Errorf("no toleration of %s in %+v", key, pod.Spec.Tolerations)
		}
	}
	waitFor(t, wait, "the SuccessfulCreate event", func() error {
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", "SuccessfulCreate").String()})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Message == "Created pod: "+pod.Name && e.InvolvedObject.UID == created.UID {
				return nil
			}
		}
		return fmt.Errorf("%d SuccessfulCreate events, none for %s", len(evs.Items), pod.Name)
	})

	// A failed pod is replaced.
	failed := podsByNode(t, cs, ns)["n1"][0]
	failed.Status.Phase = corev1.PodFailed
	if _, err := cs.CoreV1().Pods(ns).UpdateStatus(ctx, &failed, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the failed pod replaced", func() error {
		pods := podsByNode(t, cs, ns)["n1"]
		if len(pods) != 1 || pods[0].UID == failed.UID || !ready(&pods[0]) {
			return fmt.Errorf("n1 has %d pods", len(pods))
		}
		evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("reason", "FailedDaemonPod").String()})
		if err != nil {
			return err
		}
		if len(evs.Items) != 1 || !strings.Contains(evs.Items[0].Message, failed.Name) {
			return fmt.Errorf("FailedDaemonPod events: %d", len(evs.Items))
		}
		return nil
	})

	// A new node gets a pod.
	addNode(t, cs, "n4", worker)
	settled(t, cs, ns, "agent", "agent:1", status(4, 0), []string{"n1", "n2", "n3", "n4"})

	// An untolerated NoExecute taint takes the pod away; a NoSchedule
	// one only stops new pods (the one there stays, misscheduled).
	patchNode(t, cs, "n2", `{"spec":{"taints":[{"key":"dedicated","value":"x","effect":"NoExecute"}]}}`)
	patchNode(t, cs, "n3", `{"spec":{"taints":[{"key":"dedicated","value":"x","effect":"NoSchedule"}]}}`)
	settled(t, cs, ns, "agent", "agent:1", status(2, 1), []string{"n1", "n4"}, "n3")
	if got := len(podsByNode(t, cs, ns)["n3"]); got != 1 {
		t.Errorf("NoSchedule-tainted n3 has %d pods, want its pod kept", got)
	}
	// Taints the daemon tolerates change nothing.
	patchNode(t, cs, "n2", `{"spec":{"taints":[{"key":"node.kubernetes.io/unschedulable","effect":"NoSchedule"},{"key":"node.kubernetes.io/not-ready","effect":"NoExecute"}]}}`)
	patchNode(t, cs, "n3", `{"spec":{"taints":null}}`)
	settled(t, cs, ns, "agent", "agent:1", status(4, 0), []string{"n1", "n2", "n3", "n4"})

	// A node whose labels no longer match loses its pod.
	patchNode(t, cs, "n4", `{"metadata":{"labels":{"role":"db"}}}`)
	settled(t, cs, ns, "agent", "agent:1", status(3, 0), []string{"n1", "n2", "n3"})

	// A pod relabelled out of the set is let go and replaced; an orphan
	// that matches is adopted.
	released := podsByNode(t, cs, ns)["n3"][0]
	if _, err := cs.CoreV1().Pods(ns).Patch(ctx, released.Name, types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"debug"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the relabelled pod let go and replaced", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, released.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ref := metav1.GetControllerOf(p); ref != nil {
			return fmt.Errorf("still controlled by %s", ref.Name)
		}
		for _, q := range podsByNode(t, cs, ns)["n3"] {
			if q.Labels["app"] == "agent" && ready(&q) {
				return nil
			}
		}
		return fmt.Errorf("no new pod on n3")
	})
	if err := cs.CoreV1().Pods(ns).Delete(ctx, released.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	// The orphan (of the current revision) appears on a new node while
	// the controller is down, so that it does not make a pod there first.
	stop()
	addNode(t, cs, "n5", worker)
	orphan := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orphan", Labels: map[string]string{"app": "agent", history.HashLabel: pod.Labels[history.HashLabel]}},
		Spec:       corev1.PodSpec{NodeName: "n5", Containers: []corev1.Container{{Name: "c", Image: "agent:1"}}},
	}
	orphan, err = cs.CoreV1().Pods(ns).Create(ctx, orphan, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	startController(t, cs)
	waitFor(t, wait, "the orphan adopted", func() error {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "orphan", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ref := metav1.GetControllerOf(p); p.UID != orphan.UID || ref == nil || ref.UID != created.UID {
			return fmt.Errorf("uid %s (orphan's %s), controller %v", p.UID, orphan.UID, ref)
		}
		return nil
	})
	settled(t, cs, ns, "agent", "agent:1", status(4, 0), []string{"n1", "n2", "n3", "n5"})

	// A deleted node's pod is left to pod garbage collection, uncounted.
	if err := cs.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	settled(t, cs, ns, "agent", "agent:1", status(3, 0), []string{"n2", "n3", "n5"}, "n1")
}

func TestRollingUpdate(t *testing.T) {
	cfg := apitest.Start(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, ns := t.Context(), "rolling"
	newNamespace(t, cs, ns)
	nodes := []string{"n1", "n2", "n3", "n4"}
	for _, n := range nodes {
		addNode(t, cs, n, worker)
	}
	startCluster(t, cs, ns)
	startController(t, cs)

	if _, err := cs.AppsV1().DaemonSets(ns).Create(ctx, newSet("agent"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	first := settled(t, cs, ns, "agent", "agent:1", status(4, 0), nodes)
	before := podsByNode(t, cs, ns)

	// maxUnavailable 1 (the default): never two nodes without a pod.
	w, err := cs.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var evs []watch.Event
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for ev := range w.ResultChan() {
			evs = append(evs, ev)
		}
	}()
	setImage(t, cs, ns, "agent", "agent:2")
	if out, err := kubectl(t, cfg, "-n", ns, "rollout", "status", "daemonset/agent", "--timeout=20s"); err != nil {
		t.Fatalf("kubectl rollout status: %v\n%s", err, out)
	}
	settled(t, cs, ns, "agent", "agent:2", status(4, 0), nodes)
	w.Stop()
	<-recorded
	live := map[string]bool{} // pods not being deleted, by name → ready
	for _, ps := range before {
		live[ps[0].Name] = true
	}
	worst := 0
	for _, ev := range evs {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			continue
		}
		if p.DeletionTimestamp != nil || ev.Type == "DELETED" {
			delete(live, p.Name)
		} else {
			live[p.Name] = ready(p)
		}
		available := 0
		for _, r := range live {
			if r {
				available++
			}
		}
		worst = max(worst, len(nodes)-available)
	}
	if worst != 1 {
		t.Errorf("at worst %d nodes without an available pod during the update, want 1", worst)
	}

	out, err := kubectl(t, cfg, "-n", ns, "rollout", "history", "daemonset/agent")
	if err != nil || !strings.Contains(out, "1 ") || !strings.Contains(out, "2 ") {
		t.Errorf("kubectl rollout history: %v, got\n%s\nwant revisions 1 and 2", err, out)
	}
	if out, err := kubectl(t, cfg, "-n", ns, "rollout", "undo", "daemonset/agent"); err != nil {
		t.Fatalf("kubectl rollout undo: %v\n%s", err, out)
	}
	if out, err := kubectl(t, cfg, "-n", ns, "rollout", "status", "daemonset/agent", "--timeout=20s"); err != nil {
		t.Fatalf("kubectl rollout status after undo: %v\n%s", err, out)
	}
	settled(t, cs, ns, "agent", "agent:1", status(4, 0), nodes)
	revs, err := cs.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var numbers []int64
	for _, r := range revs.Items {
		numbers = append(numbers, r.Revision)
	}
	slices.Sort(numbers)
	if !slices.Equal(numbers, []int64{2, 3}) {
		t.Errorf("revision numbers %v, want [2 3] (the first template reused as 3)", numbers)
	}

	// maxSurge: the new pod first, the old one once it is available.
	if _, err := cs.AppsV1().DaemonSets(ns).Patch(ctx, "agent", types.MergePatchType,
		[]byte(`{"spec":{"updateStrategy":{"rollingUpdate":{"maxSurge":2,"maxUnavailable":0}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	setImage(t, cs, ns, "agent", "agent:3")
	settled(t, cs, ns, "agent", "agent:3", status(4, 0), nodes)
}

func TestOnDeleteAndRestart(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx, ns := t.Context(), "restart"
	newNamespace(t, cs, ns)
	var nodes []string
	for i := range 6 {
		nodes = append(nodes, fmt.Sprintf("n%d", i))
		addNode(t, cs, nodes[i], worker)
	}
	startCluster(t, cs, ns)
	stop := startController(t, cs)
	set := newSet("agent")
	set.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
	if _, err := cs.AppsV1().DaemonSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	settled(t, cs, ns, "agent", "agent:1", status(6, 0), nodes)

	// OnDelete: the new template reaches a node when its pod is deleted.
	setImage(t, cs, ns, "agent", "agent:2")
	waitFor(t, wait, "the new template observed", func() error {
		s, err := cs.AppsV1().DaemonSets(ns).Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if s.Status.ObservedGeneration != s.Generation || s.Status.UpdatedNumberScheduled != 0 {
			return fmt.Errorf("status %+v", s.Status)
		}
		return nil
	})
	old := podsByNode(t, cs, ns)["n0"][0]
	if err := cs.CoreV1().Pods(ns).Delete(ctx, old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "n0's pod replaced", func() error {
		pods := podsByNode(t, cs, ns)["n0"]
		if len(pods) != 1 || pods[0].Spec.Containers[0].Image != "agent:2" {
			return fmt.Errorf("n0 pods %d", len(pods))
		}
		return nil
	})
	for _, n := range nodes[1:] {
		if img := podsByNode(t, cs, ns)[n][0].Spec.Containers[0].Image; img != "agent:1" {
			t.Errorf("%s runs %s under OnDelete without a delete", n, img)
		}
	}

	// Restart mid-update, twice: the end state is exact.
	if _, err := cs.AppsV1().DaemonSets(ns).Patch(ctx, "agent", types.MergePatchType,
		[]byte(`{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":2}}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, wait, "the update under way", func() error {
		updated := 0
		for _, pods := range podsByNode(t, cs, ns) {
			for _, p := range pods {
				if p.Spec.Containers[0].Image == "agent:2" {
					updated++
				}
			}
		}
		if updated < 3 {
			return fmt.Errorf("%d updated", updated)
		}
		return nil
	})
	stop()
	stop = startController(t, cs)
	addNode(t, cs, "n6", worker)
	nodes = append(nodes, "n6")
	stop()
	startController(t, cs)
	settled(t, cs, ns, "agent", "agent:2", status(7, 0), nodes)
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != len(nodes) {
		t.Errorf("%d pods, want %d", len(pods.Items), len(nodes))
	}
}

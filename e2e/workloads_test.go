package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// The workload controllers' acceptance scenarios (issue 5), with hollow
// nodes, the leader's scheduler and controllers, and the real kubectl.

// podCensus watches the pods of one label selector in one namespace and
// checks an invariant at every event it observes.
type podCensus struct {
	mu       sync.Mutex
	store    cache.Store
	violated []string
	check    func(ready, live int) string // "" when fine
	maxLive  int
}

// watchPods starts a census of the pods selected by selector in ns until
// the test ends.
func watchPods(t *testing.T, cs kubernetes.Interface, ns, selector string) *podCensus {
	t.Helper()
	f := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := f.Core().V1().Pods().Informer()
	c := &podCensus{store: inf.GetStore()}
	observe := func(any) { c.observe() }
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: observe, UpdateFunc: func(_, o any) { observe(o) }, DeleteFunc: observe}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	f.Start(stop)
	t.Cleanup(func() { close(stop); f.Shutdown() })
	if !cache.WaitForCacheSync(t.Context().Done(), inf.HasSynced) {
		t.Fatal("pod census: cache not synced")
	}
	return c
}

// counts returns how many of the pods are Ready (and not being deleted),
// and how many are live (not being deleted), by image.
func (c *podCensus) counts() (ready, live int, byImage map[string]int) {
	byImage = map[string]int{}
	for _, o := range c.store.List() {
		p := o.(*corev1.Pod)
		if p.DeletionTimestamp != nil {
			continue
		}
		live++
		byImage[p.Spec.Containers[0].Image]++
		if podReady(p) {
			ready++
		}
	}
	return ready, live, byImage
}

func (c *podCensus) observe() {
	c.mu.Lock()
	defer c.mu.Unlock()
	ready, live, _ := c.counts()
	c.maxLive = max(c.maxLive, live)
	if c.check != nil {
		if v := c.check(ready, live); v != "" && len(c.violated) < 10 {
			c.violated = append(c.violated, v)
		}
	}
}

// watchInvariant makes check run at every later event.
func (c *podCensus) watchInvariant(check func(ready, live int) string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.check, c.violated, c.maxLive = check, nil, 0
}

// result stops checking and returns the violations seen and the most live
// pods observed.
func (c *podCensus) result() ([]string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.check = nil
	return c.violated, c.maxLive
}

// waitExactly waits until exactly n pods are live, all Ready and of image.
func (c *podCensus) waitExactly(t *testing.T, n int, image string, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, fmt.Sprintf("exactly %d Ready pods of %s", n, image), func(context.Context) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		ready, live, byImage := c.counts()
		if ready != n || live != n || byImage[image] != n {
			return fmt.Errorf("%d ready, %d live, by image %v", ready, live, byImage)
		}
		return nil
	})
}

// rollingDeployment is a Deployment of 10 replicas rolling 3 up and at most
// 2 down at a time; minReadySeconds slows each step so a rollout takes
// seconds.
func rollingDeployment(name, image string, minReady int) string {
	return fmt.Sprintf(`
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: 10
  minReadySeconds: %[3]d
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 3, maxUnavailable: 2}}
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec: {containers: [{name: app, image: "%[2]s"}]}
`, name, image, minReady)
}

// atLeast8Of13 is the rollout invariant of rollingDeployment: at least
// replicas − maxUnavailable Ready, at most replicas + maxSurge live.
func atLeast8Of13(ready, live int) string {
	if ready < 8 || live > 13 {
		return fmt.Sprintf("%d ready, %d live (want ≥ 8 ready, ≤ 13 live)", ready, live)
	}
	return ""
}

// TestDeploymentRollout: with hollow nodes, a Deployment of 10 replicas
// rolls to a new image keeping at least 8 Ready and at most 13 pods at
// every observed moment; `kubectl rollout status` exits 0 when done;
// `kubectl rollout undo` returns to the previous template; a rollout that
// cannot progress makes `kubectl rollout status` fail at its deadline; and
// `kubectl scale` takes it 0 → 50 → 0.
func TestDeploymentRollout(t *testing.T) {
	ms := startMasters(t, 1)
	cs := clientset(t, ms.apiConfig(t, 0))
	k := newKubectlRunner(t, ms.adminKubeconfig(t, 0))
	hollowNodes(t, cs, "8", "roll-1", "roll-2", "roll-3")
	census := watchPods(t, cs, "default", "app=web")

	k.mustRun(t, "apply", "-f", manifest(t, rollingDeployment("web", "registry.local/web:v1", 0)))
	k.mustRun(t, "rollout", "status", "deployment/web", "--timeout=60s")
	census.waitExactly(t, 10, "registry.local/web:v1", 30*time.Second)

	census.watchInvariant(atLeast8Of13)
	k.mustRun(t, "set", "image", "deployment/web", "app=registry.local/web:v2")
	out := k.mustRun(t, "rollout", "status", "deployment/web", "--timeout=60s")
	if !strings.Contains(out, `deployment "web" successfully rolled out`) {
		t.Errorf("rollout status: %s", out)
	}
	census.waitExactly(t, 10, "registry.local/web:v2", 30*time.Second)
	violations, maxLive := census.result()
	if len(violations) > 0 {
		t.Errorf("rollout to v2 broke the invariant: %v", violations)
	}
	t.Logf("rollout to v2: at most %d pods live", maxLive)

	hist := k.mustRun(t, "rollout", "history", "deployment/web")
	if !strings.Contains(hist, "REVISION") || !strings.Contains(hist, "\n1 ") || !strings.Contains(hist, "\n2 ") {
		t.Errorf("rollout history:\n%s", hist)
	}
	census.watchInvariant(atLeast8Of13)
	k.mustRun(t, "rollout", "undo", "deployment/web")
	k.mustRun(t, "rollout", "status", "deployment/web", "--timeout=60s")
	census.waitExactly(t, 10, "registry.local/web:v1", 30*time.Second)
	if violations, _ := census.result(); len(violations) > 0 {
		t.Errorf("rollout undo broke the invariant: %v", violations)
	}
	if img := k.mustRun(t, "get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"); img != "registry.local/web:v1 3" {
		t.Errorf("after undo: template image and revision %q, want registry.local/web:v1 3", img)
	}

	// 0 → 50 → 0.
	k.mustRun(t, "scale", "deployment/web", "--replicas=0")
	census.waitExactly(t, 0, "", 30*time.Second)
	k.mustRun(t, "scale", "deployment/web", "--replicas=50")
	k.mustRun(t, "rollout", "status", "deployment/web", "--timeout=60s")
	census.waitExactly(t, 50, "registry.local/web:v1", 30*time.Second)
	k.mustRun(t, "scale", "deployment/web", "--replicas=0")
	census.waitExactly(t, 0, "", 30*time.Second)

	// No node fits: the rollout exceeds its deadline.
	k.mustRun(t, "apply", "-f", manifest(t, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: stuck}
spec:
  replicas: 2
  progressDeadlineSeconds: 3
  selector: {matchLabels: {app: stuck}}
  template:
    metadata: {labels: {app: stuck}}
    spec:
      nodeSelector: {disk: none-such}
      containers: [{name: app, image: registry.local/web:v1}]
`))
	out, errOut, code := k.run(t, "rollout", "status", "deployment/stuck", "--timeout=60s")
	if code == 0 || !strings.Contains(errOut, `deployment "stuck" exceeded its progress deadline`) {
		t.Errorf("rollout status of a stuck deployment: exit %d, stdout %q, stderr %q; want non-zero and the deadline message", code, out, errOut)
	}
}

// TestRolloutThroughLeaderKill: the leader master is killed in the middle
// of a rollout; the new leader's controllers finish it with exactly the
// replicas asked for, the invariant kept throughout.
func TestRolloutThroughLeaderKill(t *testing.T) {
	ms := startMasters(t, 3)
	leader := ms.waitLeader(t)
	follower := (leader + 1) % len(ms.nodes)
	cs := clientset(t, ms.apiConfig(t, follower))
	k := newKubectlRunner(t, ms.waitAPI(t, follower))
	hollowNodes(t, cs, "8", "lk-1", "lk-2", "lk-3")
	census := watchPods(t, cs, "default", "app=lk")

	// minReadySeconds 2: each step of the rollout waits, so it lasts
	// several seconds, long enough to lose the leader in the middle.
	k.mustRun(t, "apply", "-f", manifest(t, rollingDeployment("lk", "registry.local/lk:v1", 2)))
	k.mustRun(t, "rollout", "status", "deployment/lk", "--timeout=90s")
	census.waitExactly(t, 10, "registry.local/lk:v1", 30*time.Second)

	census.watchInvariant(atLeast8Of13)
	k.mustRun(t, "set", "image", "deployment/lk", "app=registry.local/lk:v2")
	waitUntil(t, 30*time.Second, "the rollout under way", func(context.Context) error {
		census.mu.Lock()
		defer census.mu.Unlock()
		_, _, byImage := census.counts()
		if byImage["registry.local/lk:v2"] == 0 || byImage["registry.local/lk:v1"] == 0 {
			return fmt.Errorf("pods by image %v", byImage)
		}
		return nil
	})
	ms.kill(t, leader)
	t.Logf("killed %s, the leader, in the middle of the rollout", ms.nodes[leader].name)
	k.mustRun(t, "rollout", "status", "deployment/lk", "--timeout=90s")
	census.waitExactly(t, 10, "registry.local/lk:v2", 30*time.Second)
	violations, maxLive := census.result()
	if len(violations) > 0 {
		t.Errorf("the rollout through the leader kill broke the invariant: %v", violations)
	}
	d, err := cs.AppsV1().Deployments("default").Get(t.Context(), "lk", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := d.Status; st.Replicas != 10 || st.UpdatedReplicas != 10 || st.AvailableReplicas != 10 || st.ObservedGeneration != d.Generation {
		t.Errorf("deployment status %+v, want 10 replicas, all updated and available", st)
	}
	rss, err := cs.AppsV1().ReplicaSets("default").List(t.Context(), metav1.ListOptions{LabelSelector: "app=lk"})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []string
	for _, rs := range rss.Items {
		sizes = append(sizes, fmt.Sprintf("%s=%d", rs.Spec.Template.Spec.Containers[0].Image, *rs.Spec.Replicas))
	}
	if len(rss.Items) != 2 {
		t.Errorf("replicasets %v, want the old one at 0 and the new one at 10", sizes)
	}
	t.Logf("at most %d pods live; replicasets %v", maxLive, sizes)
}

// TestStatefulSetAndDaemonSet: a StatefulSet's pods come up in ordinal
// order, each after the one before is Ready, and go in reverse; a
// DaemonSet has one pod per node and follows nodes that join and leave.
func TestStatefulSetAndDaemonSet(t *testing.T) {
	ms := startMasters(t, 1)
	cs := clientset(t, ms.apiConfig(t, 0))
	k := newKubectlRunner(t, ms.adminKubeconfig(t, 0))
	hollowNodes(t, cs, "8", "sd-1")
	stopSD2 := hollowNodes(t, cs, "8", "sd-2")

	// Creation order, from a watch: when db-i appears, db-0..i-1 are Ready.
	census := watchPods(t, cs, "default", "app=db")
	var orderMu sync.Mutex
	var order []string
	census.watchInvariant(func(int, int) string {
		for _, o := range census.store.List() {
			p := o.(*corev1.Pod)
			orderMu.Lock()
			seen := strings.Contains(strings.Join(order, ","), p.Name)
			if !seen {
				order = append(order, p.Name)
			}
			orderMu.Unlock()
			if seen {
				continue
			}
			var i int
			if _, err := fmt.Sscanf(p.Name, "db-%d", &i); err != nil {
				return "unexpected pod " + p.Name
			}
			for j := range i {
				o, ok, _ := census.store.GetByKey(fmt.Sprintf("default/db-%d", j))
				if !ok || !podReady(o.(*corev1.Pod)) {
					return fmt.Sprintf("db-%d created before db-%d was Ready", i, j)
				}
			}
		}
		return ""
	})
	k.mustRun(t, "apply", "-f", manifest(t, `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 4
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: registry.local/db:v1}]}
`))
	k.mustRun(t, "rollout", "status", "statefulset/db", "--timeout=60s")
	census.waitExactly(t, 4, "registry.local/db:v1", 30*time.Second)
	if v, _ := census.result(); len(v) > 0 {
		t.Errorf("statefulset ordering: %v", v)
	}
	orderMu.Lock()
	if got := strings.Join(order, ","); got != "db-0,db-1,db-2,db-3" {
		t.Errorf("pods appeared in order %s, want db-0,db-1,db-2,db-3", got)
	}
	orderMu.Unlock()
	// Scale down: the highest ordinal goes first, one at a time.
	census.watchInvariant(func(int, int) string {
		have := map[string]bool{}
		for _, o := range census.store.List() {
			if p := o.(*corev1.Pod); p.DeletionTimestamp == nil {
				have[p.Name] = true
			}
		}
		for i := 1; i < 4; i++ {
			if have[fmt.Sprintf("db-%d", i)] && !have[fmt.Sprintf("db-%d", i-1)] {
				return fmt.Sprintf("db-%d gone before db-%d", i-1, i)
			}
		}
		return ""
	})
	k.mustRun(t, "scale", "statefulset/db", "--replicas=1")
	census.waitExactly(t, 1, "registry.local/db:v1", 30*time.Second)
	if v, _ := census.result(); len(v) > 0 {
		t.Errorf("statefulset scale-down order: %v", v)
	}
	if _, err := cs.CoreV1().Pods("default").Get(t.Context(), "db-0", metav1.GetOptions{}); err != nil {
		t.Errorf("db-0 after scaling to 1: %v", err)
	}

	// DaemonSet: one pod per node, following nodes.
	k.mustRun(t, "apply", "-f", manifest(t, `
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: registry.local/agent:v1}]}
`))
	dsPods := func(want ...string) {
		t.Helper()
		waitUntil(t, 30*time.Second, fmt.Sprintf("daemonset pods Running on %v", want), func(ctx context.Context) error {
			ds, err := cs.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
			if err != nil {
				return err
			}
			pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
			if err != nil {
				return err
			}
			var on []string
			for _, p := range pods.Items {
				if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && strings.HasPrefix(p.Spec.NodeName, "sd-") {
					on = append(on, p.Spec.NodeName)
				}
			}
			st := ds.Status
			n := int32(len(want))
			if st.DesiredNumberScheduled != n || st.NumberReady != n || st.CurrentNumberScheduled != n || !sameSet(on, want) {
				return fmt.Errorf("status %+v, running on %v", st, on)
			}
			return nil
		})
	}
	dsPods("sd-1", "sd-2")
	hollowNodes(t, cs, "8", "sd-3")
	dsPods("sd-1", "sd-2", "sd-3")
	k.mustRun(t, "rollout", "status", "daemonset/agent", "--timeout=60s")
	stopSD2() // the machine goes, then its Node
	k.mustRun(t, "delete", "node", "sd-2")
	waitUntil(t, 30*time.Second, "the daemonset to count two nodes", func(ctx context.Context) error {
		ds, err := cs.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if st := ds.Status; st.DesiredNumberScheduled != 2 || st.NumberReady != 2 {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	k.mustRun(t, "rollout", "status", "daemonset/agent", "--timeout=60s")
}

// sameSet reports whether a and b hold the same strings, in any order.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	count := map[string]int{}
	for _, s := range a {
		count[s]++
	}
	for _, s := range b {
		count[s]--
		if count[s] < 0 {
			return false
		}
	}
	return true
}

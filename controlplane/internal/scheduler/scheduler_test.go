package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

const wait = 20 * time.Second

// cluster is an API server with the scheduler running against it.
type cluster struct {
	t  *testing.T
	cs kubernetes.Interface
}

func startCluster(t *testing.T, nodes ...*corev1.Node) *cluster {
	t.Helper()
	c := &cluster{t: t, cs: kubernetes.NewForConfigOrDie(apitest.Start(t))}
	for _, n := range nodes {
		c.createNode(n)
	}
	c.startScheduler()
	return c
}

// startScheduler runs a scheduler until the test ends or the returned
// function is called (which waits for Run to return).
func (c *cluster) startScheduler() (stop func()) {
	t := c.t
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger = c.cs, slog.New(slog.DiscardHandler)
	cfg.BackoffBase, cfg.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
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

// createNode creates a node and writes its status (allocatable, Ready), as
// a kubelet would.
func (c *cluster) createNode(n *corev1.Node) {
	c.t.Helper()
	ctx := c.t.Context()
	status := n.Status
	created, err := c.cs.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	created.Status = status
	if _, err := c.cs.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

// createPod creates pod in the default namespace.
func (c *cluster) createPod(p *corev1.Pod) {
	c.t.Helper()
	p = p.DeepCopy()
	p.Namespace, p.UID = metav1.NamespaceDefault, ""
	p.Spec.SchedulerName = "" // the API defaults it
	if p.Spec.Containers[0].Image == "" {
		p.Spec.Containers[0].Image = "busybox"
	}
	if _, err := c.cs.CoreV1().Pods(metav1.NamespaceDefault).Create(c.t.Context(), p, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) pod(name string) (*corev1.Pod, error) {
	return c.cs.CoreV1().Pods(metav1.NamespaceDefault).Get(c.t.Context(), name, metav1.GetOptions{})
}

// expectBound waits until pod name is bound, to node unless it is "", and
// returns its node.
func (c *cluster) expectBound(name, node string) string {
	c.t.Helper()
	var got string
	apitest.WaitFor(c.t, wait, "pod "+name+" bound", func() error {
		p, err := c.pod(name)
		if err != nil {
			return err
		}
		if got = p.Spec.NodeName; got == "" {
			return fmt.Errorf("not bound; conditions %+v", p.Status.Conditions)
		}
		return nil
	})
	if node != "" && got != node {
		c.t.Fatalf("pod %s: got node %q, want %q", name, got, node)
	}
	return got
}

// expectPending waits until pod name says it is unschedulable with msg
// (condition and FailedScheduling event), and checks it is not bound.
func (c *cluster) expectPending(name, msg string) {
	c.t.Helper()
	apitest.WaitFor(c.t, wait, "pod "+name+" unschedulable", func() error {
		p, err := c.pod(name)
		if err != nil {
			return err
		}
		if p.Spec.NodeName != "" {
			c.t.Fatalf("pod %s bound to %s, want it pending", name, p.Spec.NodeName)
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodScheduled {
				if cond.Status != corev1.ConditionFalse || cond.Reason != corev1.PodReasonUnschedulable || cond.Message != msg {
					return fmt.Errorf("got condition %s %s %q, want False Unschedulable %q", cond.Status, cond.Reason, cond.Message, msg)
				}
				return nil
			}
		}
		return fmt.Errorf("no PodScheduled condition")
	})
	apitest.WaitFor(c.t, wait, "a FailedScheduling event for "+name, func() error {
		evs, err := c.cs.CoreV1().Events(metav1.NamespaceDefault).List(c.t.Context(), metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
		})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if e.Reason == "FailedScheduling" && e.Type == corev1.EventTypeWarning && e.Message == msg && e.Source.Component == Name {
				return nil
			}
		}
		return fmt.Errorf("got %d events, none FailedScheduling %q", len(evs.Items), msg)
	})
}

func (c *cluster) updateNode(name string, change func(*corev1.Node)) {
	c.t.Helper()
	n, err := c.cs.CoreV1().Nodes().Get(c.t.Context(), name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	change(n)
	if _, err := c.cs.CoreV1().Nodes().Update(c.t.Context(), n, metav1.UpdateOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func TestBindsToFittingNode(t *testing.T) {
	c := startCluster(t, mkNode("small", "1", "1Gi", 110), mkNode("large", "8", "16Gi", 110))
	c.createPod(mkPod("web", "2", "1Gi"))
	c.expectBound("web", "large")
	apitest.WaitFor(t, wait, "the Scheduled event", func() error {
		evs, err := c.cs.CoreV1().Events(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=web,reason=Scheduled"})
		if err != nil {
			return err
		}
		for _, e := range evs.Items {
			if want := "Successfully assigned default/web to large"; e.Message == want && e.Type == corev1.EventTypeNormal {
				return nil
			}
		}
		return fmt.Errorf("no Scheduled event among %d", len(evs.Items))
	})
}

// The acceptance item: unschedulable pods explain why and get
// scheduled when a fitting node joins.
func TestUnschedulableUntilFittingNodeJoins(t *testing.T) {
	c := startCluster(t, mkNode("small", "4", "1Gi", 110),
		mkNode("gpu", "8", "32Gi", 110, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
		mkNode("down", "8", "32Gi", 110, func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }))
	c.createPod(mkPod("big", "1", "2Gi"))
	c.expectPending("big", "0/3 nodes are available: 1 Insufficient memory, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node.kubernetes.io/not-ready: }.")
	c.createNode(mkNode("roomy", "4", "4Gi", 110))
	c.expectBound("big", "roomy")
	p, err := c.pod("big")
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status != corev1.ConditionTrue {
			t.Errorf("bound pod: got PodScheduled %s %q, want True", cond.Status, cond.Message)
		}
	}
}

func TestCordon(t *testing.T) {
	c := startCluster(t, mkNode("a", "4", "8Gi", 110, func(n *corev1.Node) { n.Spec.Unschedulable = true }))
	c.createPod(mkPod("p", "", ""))
	c.expectPending("p", "0/1 nodes are available: 1 node(s) were unschedulable.")
	c.updateNode("a", func(n *corev1.Node) { n.Spec.Unschedulable = false })
	c.expectBound("p", "a")
}

func TestTaintsAndTolerations(t *testing.T) {
	c := startCluster(t, mkNode("gpu", "4", "8Gi", 110, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)))
	c.createPod(mkPod("plain", "", ""))
	c.createPod(mkPod("tolerant", "", "", toleration(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "gpu", Effect: corev1.TaintEffectNoSchedule})))
	c.expectBound("tolerant", "gpu")
	c.expectPending("plain", "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}.")
	c.updateNode("gpu", func(n *corev1.Node) { n.Spec.Taints = nil })
	c.expectBound("plain", "gpu")
}

func TestNodeSelectorAndAffinity(t *testing.T) {
	c := startCluster(t,
		mkNode("ssd", "4", "8Gi", 110, func(n *corev1.Node) { n.Labels["disk"] = "ssd" }),
		mkNode("hdd", "4", "8Gi", 110, func(n *corev1.Node) { n.Labels["disk"] = "hdd" }))
	c.createPod(mkPod("fast", "", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }))
	c.createPod(mkPod("named", "", "", nodeAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"hdd"}}}})))
	c.createPod(mkPod("nvme", "", "", nodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"nvme"}}}})))
	c.expectBound("fast", "ssd")
	c.expectBound("named", "hdd")
	c.expectPending("nvme", "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.")
	c.updateNode("hdd", func(n *corev1.Node) { n.Labels["disk"] = "nvme" })
	c.expectBound("nvme", "hdd")
}

func TestHostPorts(t *testing.T) {
	c := startCluster(t, mkNode("a", "4", "8Gi", 110), mkNode("b", "4", "8Gi", 110))
	first := c.expectBoundAfterCreate(mkPod("p1", "", "", hostPortOf(8080, "")))
	second := c.expectBoundAfterCreate(mkPod("p2", "", "", hostPortOf(8080, "")))
	if first == second {
		t.Fatalf("both pods with host port 8080 on %s", first)
	}
	c.createPod(mkPod("p3", "", "", hostPortOf(8080, "")))
	c.expectPending("p3", "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.")
	// A deleted pod frees its port.
	if err := c.cs.CoreV1().Pods(metav1.NamespaceDefault).Delete(t.Context(), "p1", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	c.expectBound("p3", first)
}

func (c *cluster) expectBoundAfterCreate(p *corev1.Pod) string {
	c.t.Helper()
	c.createPod(p)
	return c.expectBound(p.Name, "")
}

func TestPodAntiAffinity(t *testing.T) {
	c := startCluster(t, mkNode("a", "4", "8Gi", 110), mkNode("b", "4", "8Gi", 110))
	db := func(name string) *corev1.Pod {
		return mkPod(name, "", "", withLabels("app", "db"), antiAffinity("app", "db"))
	}
	first := c.expectBoundAfterCreate(db("db-0"))
	second := c.expectBoundAfterCreate(db("db-1"))
	if first == second {
		t.Fatalf("both anti-affine pods on %s", first)
	}
	// The running pods' terms reject db-2 before its own are looked at, as
	// in kube-scheduler; web is not selected by theirs but avoids them.
	c.createPod(db("db-2"))
	c.createPod(mkPod("web", "", "", withLabels("app", "web"), antiAffinity("app", "db")))
	c.expectPending("db-2", "0/2 nodes are available: 2 node(s) didn't satisfy existing pods anti-affinity rules.")
	c.expectPending("web", "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.")
	c.createNode(mkNode("c", "4", "8Gi", 110))
	// c takes at least one of them.
	apitest.WaitFor(t, wait, "db-2 or web on c", func() error {
		for _, name := range []string{"db-2", "web"} {
			if p, err := c.pod(name); err == nil && p.Spec.NodeName == "c" {
				return nil
			}
		}
		return fmt.Errorf("neither on c")
	})
}

// A ReplicaSet's pods spread over the nodes even where free resources
// alone would put them all on the larger node.
func TestSpreadsReplicaSetPods(t *testing.T) {
	c := startCluster(t, mkNode("big", "64", "256Gi", 110), mkNode("small", "4", "8Gi", 110))
	c.createPod(mkPod("other", "2", "4Gi", func(p *corev1.Pod) { p.Spec.NodeName = "small" }))
	count := map[string]int{}
	for i := range 4 {
		name := fmt.Sprintf("rs-%d", i)
		c.createPod(mkPod(name, "10m", "10Mi", ownedBy("3f1c2a9e-0000-4000-8000-000000000001")))
		count[c.expectBound(name, "")]++
	}
	if count["big"] != 2 || count["small"] != 2 {
		t.Errorf("got %v, want 2 pods on each node", count)
	}
}

// Many pods over many nodes, exactly filling them: every pod is bound and
// no node holds more than it has.
func TestManyPods(t *testing.T) {
	const nodes, perNode = 50, 10
	var ns []*corev1.Node
	for i := range nodes {
		ns = append(ns, mkNode(fmt.Sprintf("node-%02d", i), "1", "8Gi", 110))
	}
	c := startCluster(t, ns...)
	for i := range nodes * perNode {
		c.createPod(mkPod(fmt.Sprintf("many-%03d", i), "100m", "64Mi"))
	}
	apitest.WaitFor(t, 30*time.Second, "every pod bound", func() error {
		pods, err := c.cs.CoreV1().Pods(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName="})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods not bound", len(pods.Items))
		}
		return nil
	})
	pods, err := c.cs.CoreV1().Pods(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cpu := map[string]int64{}
	for _, p := range pods.Items {
		cpu[p.Spec.NodeName] += p.Spec.Containers[0].Resources.Requests.Cpu().MilliValue()
	}
	if len(pods.Items) != nodes*perNode || len(cpu) != nodes {
		t.Fatalf("got %d pods on %d nodes, want %d on %d", len(pods.Items), len(cpu), nodes*perNode, nodes)
	}
	for node, m := range cpu {
		if m > 1000 {
			t.Errorf("node %s: %dm cpu requested, over its 1000m", node, m)
		}
	}
	// The cluster is full now: one more pod does not fit anywhere.
	c.createPod(mkPod("one-more", "100m", ""))
	c.expectPending("one-more", fmt.Sprintf("0/%d nodes are available: %d Insufficient cpu.", nodes, nodes))
}

// A scheduler stopped halfway and started again counts what is bound and
// finishes the job without overfilling a node.
func TestRestart(t *testing.T) {
	const nodes, perNode = 4, 25
	c := &cluster{t: t, cs: kubernetes.NewForConfigOrDie(apitest.Start(t))}
	for i := range nodes {
		c.createNode(mkNode(fmt.Sprintf("node-%d", i), "1", "8Gi", 110))
	}
	stop := c.startScheduler()
	for i := range nodes * perNode {
		c.createPod(mkPod(fmt.Sprintf("r-%03d", i), "40m", ""))
	}
	c.expectBound("r-000", "")
	stop()
	c.startScheduler()
	apitest.WaitFor(t, wait, "every pod bound", func() error {
		pods, err := c.cs.CoreV1().Pods(metav1.NamespaceDefault).List(t.Context(), metav1.ListOptions{FieldSelector: "spec.nodeName="})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods not bound", len(pods.Items))
		}
		return nil
	})
	c.createPod(mkPod("one-more", "40m", ""))
	c.expectPending("one-more", fmt.Sprintf("0/%d nodes are available: %d Insufficient cpu.", nodes, nodes))
}

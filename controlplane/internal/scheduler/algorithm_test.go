package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// mkNode returns a Ready node with the given allocatable cpu, memory and
// pod count, labelled with its hostname, changed by opts.
func mkNode(name, cpu, mem string, pods int64, opts ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{
			Allocatable: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse(cpu),
				corev1.ResourceMemory: resource.MustParse(mem),
				corev1.ResourcePods:   *resource.NewQuantity(pods, resource.DecimalSI),
			},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

// mkPod returns a pod in namespace "ns" with one container requesting cpu
// and memory ("" for none), changed by opts.
func mkPod(name, cpu, mem string, opts ...func(*corev1.Pod)) *corev1.Pod {
	req := corev1.ResourceList{}
	if cpu != "" {
		req[corev1.ResourceCPU] = resource.MustParse(cpu)
	}
	if mem != "" {
		req[corev1.ResourceMemory] = resource.MustParse(mem)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{
			SchedulerName: Name,
			Containers:    []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req}}},
		},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func on(node string) func(*corev1.Pod) { return func(p *corev1.Pod) { p.Spec.NodeName = node } }

func withLabels(kv ...string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Labels = map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			p.Labels[kv[i]] = kv[i+1]
		}
	}
}

func hostPortOf(port int32, ip string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, corev1.ContainerPort{ContainerPort: 80, HostPort: port, HostIP: ip})
	}
}

func antiAffinity(key, value string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{key: value}},
				TopologyKey:   corev1.LabelHostname,
			}},
		}}
	}
}

func ownedBy(uid string) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: types.UID(uid), Controller: &yes}}
	}
}

func taint(key, value string, effect corev1.TaintEffect) func(*corev1.Node) {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: value, Effect: effect})
	}
}

func toleration(t corev1.Toleration) func(*corev1.Pod) {
	return func(p *corev1.Pod) { p.Spec.Tolerations = append(p.Spec.Tolerations, t) }
}

func nodeAffinity(terms ...corev1.NodeSelectorTerm) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: terms},
		}}
	}
}

// filterOne runs the filters for pod against node, with the other pods
// placed, and returns the reasons (nil when it fits).
func filterOne(t *testing.T, node *corev1.Node, pod *corev1.Pod, placed ...*corev1.Pod) []string {
	t.Helper()
	snap, err := NewSnapshot([]*corev1.Node{node}, placed)
	if err != nil {
		t.Fatal(err)
	}
	pi, err := NewPodInfo(pod)
	if err != nil {
		t.Fatal(err)
	}
	return newCycle(snap, pi).filter(snap.Nodes[0])
}

func TestFilters(t *testing.T) {
	ready := mkNode("n1", "2", "4Gi", 10)
	notReady := mkNode("n1", "2", "4Gi", 10, func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse })
	unknown := mkNode("n1", "2", "4Gi", 10, func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionUnknown })
	cordoned := mkNode("n1", "2", "4Gi", 10, func(n *corev1.Node) { n.Spec.Unschedulable = true })
	gpu := mkNode("n1", "2", "4Gi", 10, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule))
	labelled := mkNode("n1", "2", "4Gi", 10, func(n *corev1.Node) { n.Labels["disk"] = "ssd"; n.Labels["gen"] = "5" })
	withGPU := mkNode("n1", "2", "4Gi", 10, func(n *corev1.Node) { n.Status.Allocatable["example.com/gpu"] = resource.MustParse("1") })

	tests := []struct {
		name   string
		node   *corev1.Node
		pod    *corev1.Pod
		placed []*corev1.Pod
		want   []string
	}{
		{"fits", ready, mkPod("p", "1", "1Gi"), nil, nil},
		{"not ready", notReady, mkPod("p", "", ""), nil, []string{"node(s) had untolerated taint {node.kubernetes.io/not-ready: }"}},
		{"not ready tolerated", notReady, mkPod("p", "", "", toleration(corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists})), nil, nil},
		{"unreachable", unknown, mkPod("p", "", ""), nil, []string{"node(s) had untolerated taint {node.kubernetes.io/unreachable: }"}},
		{"cordoned", cordoned, mkPod("p", "", ""), nil, []string{"node(s) were unschedulable"}},
		{"cordon tolerated", cordoned, mkPod("p", "", "", toleration(corev1.Toleration{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})), nil, nil},
		{"taint", gpu, mkPod("p", "", ""), nil, []string{"node(s) had untolerated taint {dedicated: gpu}"}},
		{"taint tolerated by value", gpu, mkPod("p", "", "", toleration(corev1.Toleration{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule})), nil, nil},
		{"taint not tolerated by another value", gpu, mkPod("p", "", "", toleration(corev1.Toleration{Key: "dedicated", Value: "cpu"})), nil, []string{"node(s) had untolerated taint {dedicated: gpu}"}},
		{"taint not tolerated for another effect", gpu, mkPod("p", "", "", toleration(corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute})), nil, []string{"node(s) had untolerated taint {dedicated: gpu}"}},
		{"taint tolerated by wildcard", gpu, mkPod("p", "", "", toleration(corev1.Toleration{Operator: corev1.TolerationOpExists})), nil, nil},
		{"PreferNoSchedule ignored", mkNode("n1", "2", "4Gi", 10, taint("soft", "x", corev1.TaintEffectPreferNoSchedule)), mkPod("p", "", ""), nil, nil},
		{"nodeSelector", labelled, mkPod("p", "", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} }), nil, nil},
		{"nodeSelector mismatch", labelled, mkPod("p", "", "", func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "hdd"} }), nil, []string{"node(s) didn't match Pod's node affinity/selector"}},
		{"affinity In", labelled, mkPod("p", "", "", nodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpIn, Values: []string{"nvme", "ssd"}}}})), nil, nil},
		{"affinity NotIn", labelled, mkPod("p", "", "", nodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"ssd"}}}})), nil, []string{ReasonNodeAffinity}},
		{"affinity Gt", labelled, mkPod("p", "", "", nodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "gen", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}}}})), nil, nil},
		{"affinity DoesNotExist", labelled, mkPod("p", "", "", nodeAffinity(corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "disk", Operator: corev1.NodeSelectorOpDoesNotExist}}})), nil, []string{ReasonNodeAffinity}},
		{"affinity terms ORed", labelled, mkPod("p", "", "", nodeAffinity(
			corev1.NodeSelectorTerm{MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpExists}}},
			corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n1"}}}})), nil, nil},
		{"affinity matchFields other node", labelled, mkPod("p", "", "", nodeAffinity(corev1.NodeSelectorTerm{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"n2"}}}})), nil, []string{ReasonNodeAffinity}},
		{"host port taken", ready, mkPod("p", "", "", hostPortOf(8080, "")), []*corev1.Pod{mkPod("q", "", "", on("n1"), hostPortOf(8080, ""))}, []string{"node(s) didn't have free ports for the requested pod ports"}},
		{"host port taken on one IP", ready, mkPod("p", "", "", hostPortOf(8080, "10.0.0.1")), []*corev1.Pod{mkPod("q", "", "", on("n1"), hostPortOf(8080, ""))}, []string{ReasonHostPorts}},
		{"host port on another IP", ready, mkPod("p", "", "", hostPortOf(8080, "10.0.0.1")), []*corev1.Pod{mkPod("q", "", "", on("n1"), hostPortOf(8080, "10.0.0.2"))}, nil},
		{"another host port", ready, mkPod("p", "", "", hostPortOf(8081, "")), []*corev1.Pod{mkPod("q", "", "", on("n1"), hostPortOf(8080, ""))}, nil},
		{"insufficient cpu", ready, mkPod("p", "1500m", ""), []*corev1.Pod{mkPod("q", "1", "", on("n1"))}, []string{"Insufficient cpu"}},
		{"insufficient cpu and memory", ready, mkPod("p", "3", "5Gi"), nil, []string{"Insufficient cpu", "Insufficient memory"}},
		{"exactly full", ready, mkPod("p", "1", "2Gi"), []*corev1.Pod{mkPod("q", "1", "2Gi", on("n1"))}, nil},
		{"too many pods", mkNode("n1", "2", "4Gi", 1), mkPod("p", "", ""), []*corev1.Pod{mkPod("q", "", "", on("n1"))}, []string{"Too many pods"}},
		{"too many pods and insufficient cpu", mkNode("n1", "2", "4Gi", 1), mkPod("p", "2", ""), []*corev1.Pod{mkPod("q", "1", "", on("n1"))}, []string{"Too many pods", "Insufficient cpu"}},
		{"extended resource", withGPU, mkPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests["example.com/gpu"] = resource.MustParse("2")
		}), nil, []string{"Insufficient example.com/gpu"}},
		{"init container larger", ready, mkPod("p", "1", "", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: "i", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("3")}}}}
		}), nil, []string{"Insufficient cpu"}},
		{"overhead", ready, mkPod("p", "1", "", func(p *corev1.Pod) {
			p.Spec.Overhead = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1001m")}
		}), nil, []string{"Insufficient cpu"}},
		{"anti-affinity", ready, mkPod("p", "", "", withLabels("app", "db"), antiAffinity("app", "db")), []*corev1.Pod{mkPod("q", "", "", on("n1"), withLabels("app", "db"))}, []string{"node(s) didn't match pod anti-affinity rules"}},
		{"anti-affinity other labels", ready, mkPod("p", "", "", withLabels("app", "db"), antiAffinity("app", "db")), []*corev1.Pod{mkPod("q", "", "", on("n1"), withLabels("app", "web"))}, nil},
		{"anti-affinity other namespace", ready, mkPod("p", "", "", withLabels("app", "db"), antiAffinity("app", "db")), []*corev1.Pod{mkPod("q", "", "", on("n1"), withLabels("app", "db"), func(p *corev1.Pod) { p.Namespace = "other" })}, nil},
		{"existing pod's anti-affinity", ready, mkPod("p", "", "", withLabels("app", "db")), []*corev1.Pod{mkPod("q", "", "", on("n1"), antiAffinity("app", "db"))}, []string{"node(s) didn't satisfy existing pods anti-affinity rules"}},
		{"pod affinity unmet", ready, mkPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}, TopologyKey: corev1.LabelHostname}}}}
		}), []*corev1.Pod{mkPod("q", "", "", on("elsewhere"), withLabels("app", "cache"))}, []string{"node(s) didn't match pod affinity rules"}},
		{"pod affinity met", ready, mkPod("p", "", "", func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}, TopologyKey: corev1.LabelHostname}}}}
		}), []*corev1.Pod{mkPod("q", "", "", on("n1"), withLabels("app", "cache"))}, nil},
		// Order: a cordoned, tainted, full node reports the cordon only.
		{"first failing filter only", mkNode("n1", "1", "1Gi", 10, taint("a", "b", corev1.TaintEffectNoExecute), func(n *corev1.Node) { n.Spec.Unschedulable = true }), mkPod("p", "2", ""), nil, []string{ReasonUnschedulable}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := filterOne(t, tt.node, tt.pod, tt.placed...)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFitErrorMessage(t *testing.T) {
	tests := []struct {
		name    string
		reasons map[string]int
		all     int
		want    string
	}{
		{"upstream example", map[string]int{"Insufficient memory": 1, "node(s) had untolerated taint {dedicated: gpu}": 2}, 3,
			"0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {dedicated: gpu}."},
		{"one reason", map[string]int{ReasonUnschedulable: 1}, 1, "0/1 nodes are available: 1 node(s) were unschedulable."},
		// Sorted as strings, as kube-scheduler sorts them: "10 ..." before "2 ...".
		{"string order", map[string]int{"Insufficient cpu": 2, "Too many pods": 10}, 12, "0/12 nodes are available: 10 Too many pods, 2 Insufficient cpu."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := (&FitError{NumAllNodes: tt.all, Reasons: tt.reasons}).Error(); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestScheduleFitError(t *testing.T) {
	snap, err := NewSnapshot([]*corev1.Node{
		mkNode("small", "2", "1Gi", 10),
		mkNode("gpu1", "8", "32Gi", 10, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
		mkNode("gpu2", "8", "32Gi", 10, taint("dedicated", "gpu", corev1.TaintEffectNoSchedule)),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	pi, _ := NewPodInfo(mkPod("big", "1", "2Gi"))
	_, err = Schedule(snap, pi, Options{})
	var fe *FitError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v, want a *FitError", err)
	}
	if want := "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had untolerated taint {dedicated: gpu}."; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	if _, err := Schedule(&Snapshot{}, pi, Options{}); !errors.Is(err, ErrNoNodesAvailable) {
		t.Errorf("no nodes: got %v, want ErrNoNodesAvailable", err)
	}
}

func TestScheduleScores(t *testing.T) {
	// The least allocated node wins.
	snap, _ := NewSnapshot([]*corev1.Node{mkNode("busy", "4", "8Gi", 110), mkNode("idle", "4", "8Gi", 110)},
		[]*corev1.Pod{mkPod("x", "3", "6Gi", on("busy"))})
	pi, _ := NewPodInfo(mkPod("p", "100m", "100Mi"))
	if res, err := Schedule(snap, pi, Options{}); err != nil || res.Node != "idle" {
		t.Errorf("least allocated: got %q, %v; want idle", res.Node, err)
	}

	// A controller's pods spread even against free resources: "big" has
	// far more room, yet every second pod goes to "small".
	c := NewCache()
	c.SetNode(mkNode("big", "64", "256Gi", 110))
	c.SetNode(mkNode("small", "4", "8Gi", 110))
	if err := c.AddPod(mkPod("other", "2", "4Gi", on("small"))); err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for i := range 4 {
		pi, _ := NewPodInfo(mkPod(fmt.Sprintf("rs-%d", i), "10m", "10Mi", ownedBy("rs-uid")))
		res, err := Schedule(&c.snap, pi, Options{})
		if err != nil {
			t.Fatal(err)
		}
		c.AssumeLocked(pi, res.Node)
		count[res.Node]++
	}
	if count["big"] != 2 || count["small"] != 2 {
		t.Errorf("spreading: got %v, want 2 on each node", count)
	}

	// Ties are broken at random: over identical nodes, every node is chosen.
	var nodes []*corev1.Node
	for i := range 5 {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%d", i), "4", "8Gi", 110))
	}
	snap, _ = NewSnapshot(nodes, nil)
	rnd := rand.New(rand.NewPCG(1, 2))
	seen := map[string]bool{}
	for range 200 {
		res, err := Schedule(snap, pi, Options{Rand: rnd})
		if err != nil {
			t.Fatal(err)
		}
		seen[res.Node] = true
	}
	if len(seen) != 5 {
		t.Errorf("ties: got %d distinct nodes, want 5", len(seen))
	}
}

func TestNumFeasibleNodesToFind(t *testing.T) {
	tests := []struct{ nodes, pct, want int }{
		{10, 0, 10}, {99, 0, 99}, {100, 0, 100}, {1000, 0, 420}, {5000, 0, 500}, {6000, 0, 300}, {10000, 0, 500}, {1000, 100, 1000}, {1000, 5, 100}, {5000, 30, 1500},
	}
	for _, tt := range tests {
		if got := NumFeasibleNodesToFind(tt.nodes, tt.pct); got != tt.want {
			t.Errorf("NumFeasibleNodesToFind(%d, %d): got %d, want %d", tt.nodes, tt.pct, got, tt.want)
		}
	}
}

func TestScheduleStopsAtEnoughFeasibleNodes(t *testing.T) {
	var nodes []*corev1.Node
	for i := range 1000 {
		nodes = append(nodes, mkNode(fmt.Sprintf("n%04d", i), "4", "8Gi", 110))
	}
	snap, _ := NewSnapshot(nodes, nil)
	pi, _ := NewPodInfo(mkPod("p", "", ""))
	res, err := Schedule(snap, pi, Options{Start: 990})
	if err != nil {
		t.Fatal(err)
	}
	if res.Evaluated != 420 || res.Feasible != 420 {
		t.Errorf("got %d evaluated, %d feasible; want 420 each", res.Evaluated, res.Feasible)
	}
}

func TestPodRequests(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	p := mkPod("p", "1", "1Gi", func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "d"}) // no requests
		p.Spec.InitContainers = []corev1.Container{
			{Name: "sidecar", RestartPolicy: &always, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}}},
			{Name: "init", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("100Mi")}}},
		}
		p.Spec.Overhead = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}
	})
	// cpu: max(1 + 0.5 sidecar, 0.5 sidecar + 2 init) = 2.5; memory: 1Gi + 64Mi.
	if got := PodRequests(p, false); got.MilliCPU != 2500 || got.Memory != (1024+64)<<20 {
		t.Errorf("requests: got %d m, %d bytes; want 2500 m, %d bytes", got.MilliCPU, got.Memory, (1024+64)<<20)
	}
	// Scoring counts a missing request as 100m or 200Mi: the container
	// without any, and the sidecar's memory.
	if got := PodRequests(p, true); got.MilliCPU != 2500 || got.Memory != (1024+200+200+64)<<20 {
		t.Errorf("non-zero requests: got %d m, %d bytes; want 2500 m, %d bytes", got.MilliCPU, got.Memory, (1024+200+200+64)<<20)
	}
}

func TestCacheAccounting(t *testing.T) {
	c := NewCache()
	c.SetNode(mkNode("n1", "4", "8Gi", 110))
	if err := c.AddPod(mkPod("a", "1", "1Gi", on("n1"), hostPortOf(80, ""), ownedBy("o"))); err != nil {
		t.Fatal(err)
	}
	pi, _ := NewPodInfo(mkPod("b", "2", "1Gi", ownedBy("o")))
	c.Lock()
	c.AssumeLocked(pi, "n1")
	c.Unlock()
	n := c.snap.Nodes[0]
	if n.Requested.MilliCPU != 3000 || len(n.Pods) != 2 || n.owners["o"] != 2 || len(n.ports) != 1 {
		t.Fatalf("after add and assume: got cpu %d, %d pods, owner %d, %d ports; want 3000, 2, 2, 1", n.Requested.MilliCPU, len(n.Pods), n.owners["o"], len(n.ports))
	}
	c.Forget("ns/b", "n1")
	if !c.RemovePod("ns/a") || c.RemovePod("ns/a") {
		t.Error("RemovePod: want true once, then false")
	}
	if n.Requested.MilliCPU != 0 || n.Requested.Memory != 0 || len(n.Pods) != 0 || len(n.owners) != 0 || len(n.ports) != 0 {
		t.Errorf("after removal: got %+v, %d pods, owners %v, ports %v; want all zero", n.Requested, len(n.Pods), n.owners, n.ports)
	}
	// A pod seen bound after its assumption replaces it: Forget does nothing.
	c.Lock()
	c.AssumeLocked(pi, "n1")
	c.Unlock()
	if err := c.AddPod(mkPod("b", "2", "1Gi", on("n1"))); err != nil {
		t.Fatal(err)
	}
	c.Forget("ns/b", "n1")
	if !c.Has("ns/b") || n.Requested.MilliCPU != 2000 {
		t.Errorf("bound pod forgotten: has %v, cpu %d; want true, 2000", c.Has("ns/b"), n.Requested.MilliCPU)
	}
	// A removed node leaves the snapshot; its pods stay counted until removed.
	c.RemoveNode("n1")
	if len(c.snap.Nodes) != 0 || !c.Has("ns/b") {
		t.Errorf("after RemoveNode: %d nodes, has pod %v; want 0, true", len(c.snap.Nodes), c.Has("ns/b"))
	}
}

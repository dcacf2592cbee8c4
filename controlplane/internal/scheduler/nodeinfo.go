package scheduler

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// NodeInfo is the scheduler's aggregate of one node: the node and the
// pods bound or assumed on it, with the sums the filters and scores read
// kept up to date as pods come and go, so a decision never walks all pods.
// A NodeInfo is changed only by its Snapshot's owner (the Cache, under its
// lock); Schedule only reads it.
type NodeInfo struct {
	// The fields filtering and scoring read for every node a pod is
	// weighed against come first, together: at 5,000 nodes a pod is
	// weighed against 500, and each cache line of a NodeInfo they touch
	// is a miss (a map's length read through its header was one more).

	// unschedulable is Node.Spec.Unschedulable (cordoned), kept here so
	// that filtering a node reads its NodeInfo alone: the Node object is
	// elsewhere in memory.
	unschedulable bool
	// numPods is len(Pods).
	numPods int64
	// AllowedPods is the node's allocatable pod count.
	AllowedPods int64
	// taints are the NoSchedule and NoExecute taints a pod must tolerate,
	// with the implied not-ready or unreachable taint of a node whose Ready
	// condition is not True, and reasons their rejection texts.
	taints []corev1.Taint
	// Allocatable is the node's allocatable resources.
	Allocatable Resources
	// Requested sums the pods' Requests, NonZero their NonZero.
	Requested, NonZero Resources

	// Node is nil while pods name a node the scheduler has not seen.
	Node *corev1.Node
	Name string
	// Pods are the pods bound or assumed here, by key.
	Pods map[string]*PodInfo

	ports   map[portKey]map[string]int // host ports in use: protocol+port -> IP -> pods
	owners  map[types.UID]int          // pods per controller
	reasons []string
	index   int // in Snapshot.Nodes, or -1
}

type portKey struct {
	Protocol corev1.Protocol
	Port     int32
}

func newNodeInfo(name string) *NodeInfo {
	return &NodeInfo{Name: name, Pods: map[string]*PodInfo{}, ports: map[portKey]map[string]int{}, owners: map[types.UID]int{}, index: -1}
}

// setNode records node's current object.
func (n *NodeInfo) setNode(node *corev1.Node) {
	n.Node = node
	n.unschedulable = node.Spec.Unschedulable
	n.Allocatable = resourcesOf(node.Status.Allocatable, false)
	n.AllowedPods = node.Status.Allocatable.Pods().Value()
	n.taints, n.reasons = n.taints[:0], n.reasons[:0]
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
			n.taints = append(n.taints, t)
		}
	}
	// A node that is not Ready is not schedulable. Kubernetes says so with
	// a taint the kubelet or the node lifecycle controller sets; the
	// scheduler implies it too, so it does not depend on when that happens.
	implied := corev1.TaintNodeNotReady
	if c := readyCondition(node); c != nil && c.Status == corev1.ConditionTrue {
		implied = ""
	} else if c != nil && c.Status == corev1.ConditionUnknown {
		implied = corev1.TaintNodeUnreachable
	}
	if implied != "" && !hasTaint(n.taints, implied, corev1.TaintEffectNoSchedule) {
		n.taints = append(n.taints, corev1.Taint{Key: implied, Effect: corev1.TaintEffectNoSchedule})
	}
	for _, t := range n.taints {
		n.reasons = append(n.reasons, fmt.Sprintf(reasonUntoleratedTaint, t.Key, t.Value))
	}
}

func readyCondition(node *corev1.Node) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeReady {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

func hasTaint(taints []corev1.Taint, key string, effect corev1.TaintEffect) bool {
	for _, t := range taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// addPod counts p on the node; sign -1 removes it.
func (n *NodeInfo) addPod(p *PodInfo, sign int) {
	if sign > 0 {
		n.Pods[p.Key] = p
	} else {
		delete(n.Pods, p.Key)
	}
	n.numPods = int64(len(n.Pods))
	n.Requested.add(&p.Requests, int64(sign))
	n.NonZero.add(&p.NonZero, int64(sign))
	for _, hp := range p.ports {
		k := portKey{hp.Protocol, hp.Port}
		ips := n.ports[k]
		if ips == nil {
			ips = map[string]int{}
			n.ports[k] = ips
		}
		if ips[hp.IP] += sign; ips[hp.IP] <= 0 {
			delete(ips, hp.IP)
			if len(ips) == 0 {
				delete(n.ports, k)
			}
		}
	}
	if p.Owner != "" {
		if n.owners[p.Owner] += sign; n.owners[p.Owner] <= 0 {
			delete(n.owners, p.Owner)
		}
	}
}

// portsConflict reports whether one of p's host ports is taken here.
func (n *NodeInfo) portsConflict(p *PodInfo) bool {
	for _, hp := range p.ports {
		ips := n.ports[portKey{hp.Protocol, hp.Port}]
		if len(ips) == 0 {
			continue
		}
		if hp.IP == "0.0.0.0" || ips[hp.IP] > 0 || ips["0.0.0.0"] > 0 {
			return true
		}
	}
	return false
}

// Snapshot is the read-only view a decision is made on: the known nodes, in
// an order that only changes when nodes come or go, and the pods bound or
// assumed on them. Its owner (the Cache) changes it between decisions,
// never during one.
type Snapshot struct {
	// Nodes are the nodes the scheduler may choose from.
	Nodes []*NodeInfo
	// withAntiAffinity are the pods with required anti-affinity terms, by
	// key, with the node they are on: the incoming pod must not break them.
	withAntiAffinity map[string]placedPod
}

type placedPod struct {
	pod  *PodInfo
	node *NodeInfo
}

// NewSnapshot returns a snapshot of nodes with pods placed on them (by
// spec.nodeName, pods naming other nodes are left out). It is for tests
// and benchmarks; the scheduler keeps its own up to date incrementally.
func NewSnapshot(nodes []*corev1.Node, pods []*corev1.Pod) (*Snapshot, error) {
	c := NewCache()
	for _, n := range nodes {
		c.SetNode(n)
	}
	for _, p := range pods {
		if err := c.AddPod(p); err != nil {
			return nil, err
		}
	}
	return &c.snap, nil
}

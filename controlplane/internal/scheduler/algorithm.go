package scheduler

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// The reasons a filter gives for rejecting a node: kube-scheduler's texts,
// counted per node in a FitError.
const (
	ReasonUnschedulable              = "node(s) were unschedulable"
	reasonUntoleratedTaint           = "node(s) had untolerated taint {%s: %s}"
	ReasonNodeAffinity               = "node(s) didn't match Pod's node affinity/selector"
	ReasonHostPorts                  = "node(s) didn't have free ports for the requested pod ports"
	ReasonTooManyPods                = "Too many pods"
	ReasonExistingAntiAffinity       = "node(s) didn't satisfy existing pods anti-affinity rules"
	ReasonPodAffinity                = "node(s) didn't match pod affinity rules"
	ReasonPodAntiAffinity            = "node(s) didn't match pod anti-affinity rules"
	reasonInsufficient               = "Insufficient %s"
	noNodeAvailableFormat            = "0/%d nodes are available:"
	minFeasibleNodesToFind           = 100
	minFeasibleNodesPercentageToFind = 5
)

// ReasonUntoleratedTaint returns the reason for a node whose taint the pod
// does not tolerate.
func ReasonUntoleratedTaint(key, value string) string {
	return fmt.Sprintf(reasonUntoleratedTaint, key, value)
}

// ReasonInsufficient returns the reason for a node without enough of a
// resource ("Insufficient cpu").
func ReasonInsufficient(name corev1.ResourceName) string {
	return fmt.Sprintf(reasonInsufficient, name)
}

// ErrNoNodesAvailable is returned by Schedule when the snapshot has no
// nodes at all; its text is kube-scheduler's.
var ErrNoNodesAvailable = errors.New("no nodes available to schedule pods")

// FitError is returned by Schedule when no node passes the filters. It
// counts each reason over the nodes that gave it.
type FitError struct {
	NumAllNodes int
	// Reasons counts the nodes that gave each reason; a node may give
	// several (one per insufficient resource).
	Reasons map[string]int
}

// Error returns kube-scheduler's message: "0/3 nodes are available: 1
// Insufficient memory, 2 node(s) had untolerated taint {dedicated: gpu}."
// — each count and reason, sorted as strings. Skiff does not preempt, so
// no preemption text follows.
func (e *FitError) Error() string {
	msg := fmt.Sprintf(noNodeAvailableFormat, e.NumAllNodes)
	if len(e.Reasons) == 0 {
		return msg
	}
	parts := make([]string, 0, len(e.Reasons))
	for reason, n := range e.Reasons {
		parts = append(parts, strconv.Itoa(n)+" "+reason)
	}
	slices.Sort(parts)
	return msg + " " + strings.Join(parts, ", ") + "."
}

// Options are the per-decision inputs of Schedule besides the snapshot
// and the pod.
type Options struct {
	// Start is the index in Snapshot.Nodes where the search begins (taken
	// modulo the node count); pass the previous Start plus the previous
	// Result.Evaluated so that successive decisions look at all nodes in
	// turn.
	Start int
	// PercentageOfNodesToScore bounds how many feasible nodes a decision
	// looks for in a large cluster: 0 is kube-scheduler's adaptive default
	// (50% minus 1% per 125 nodes, at least 5%, at least 100 nodes), 100
	// looks at every node.
	PercentageOfNodesToScore int
	// Rand breaks ties between the best nodes; nil always takes the first.
	Rand *rand.Rand
}

// Result is a decision.
type Result struct {
	// Node is the chosen node's name.
	Node string
	// Evaluated is how many nodes the decision went through.
	Evaluated int
	// Feasible is how many of them passed the filters.
	Feasible int
}

// Schedule picks a node for pod from snap, which it only reads: it runs
// the filters over the nodes from opt.Start until it has found enough
// feasible nodes (see Options.PercentageOfNodesToScore), scores those, and
// returns the best, ties broken by opt.Rand. When no node fits it returns
// a *FitError (ErrNoNodesAvailable when there are no nodes).
func Schedule(snap *Snapshot, pod *PodInfo, opt Options) (Result, error) {
	n := len(snap.Nodes)
	if n == 0 {
		return Result{}, ErrNoNodesAvailable
	}
	want := NumFeasibleNodesToFind(n, opt.PercentageOfNodesToScore)
	cy := newCycle(snap, pod)
	feasible := make([]*NodeInfo, 0, want)
	var reasons map[string]int
	start := opt.Start % n
	if start < 0 {
		start += n
	}
	evaluated := 0
	for ; evaluated < n && len(feasible) < want; evaluated++ {
		node := snap.Nodes[(start+evaluated)%n]
		rs := cy.filter(node)
		if rs == nil {
			feasible = append(feasible, node)
			continue
		}
		if reasons == nil {
			reasons = map[string]int{}
		}
		for _, r := range rs {
			reasons[r]++
		}
	}
	if len(feasible) == 0 {
		return Result{Evaluated: evaluated}, &FitError{NumAllNodes: n, Reasons: reasons}
	}
	best := cy.pick(feasible, opt.Rand)
	return Result{Node: best.Name, Evaluated: evaluated, Feasible: len(feasible)}, nil
}

// NumFeasibleNodesToFind is how many feasible nodes a decision over
// numNodes nodes looks for before it stops filtering (see Options).
func NumFeasibleNodesToFind(numNodes, percentage int) int {
	if numNodes < minFeasibleNodesToFind || percentage >= 100 {
		return numNodes
	}
	if percentage <= 0 {
		percentage = max(50-numNodes/125, minFeasibleNodesPercentageToFind)
	}
	return max(numNodes*percentage/100, minFeasibleNodesToFind)
}

// topology is one value of one topology label.
type topology struct{ key, value string }

// cycle is what one decision computes once for its pod.
type cycle struct {
	pod    *PodInfo
	scalar []corev1.ResourceName // the extended resources requested, sorted

	// forbidden are topologies where an existing pod's anti-affinity term
	// selects the pod.
	forbidden map[topology]bool
	// antiTaken[i] are the values of anti-affinity term i's topology key
	// where a pod the term selects runs; affinityHave[i] likewise for the
	// affinity terms, and affinityFirst tells that no pod matches any
	// affinity term but the pod matches all of them itself (the first of a
	// group may go anywhere).
	antiTaken, affinityHave []map[string]bool
	affinityFirst           bool
}

func newCycle(snap *Snapshot, pod *PodInfo) *cycle {
	cy := &cycle{pod: pod}
	for name := range pod.Requests.Scalar {
		cy.scalar = append(cy.scalar, name)
	}
	slices.Sort(cy.scalar)
	for _, e := range snap.withAntiAffinity {
		if e.node.Node == nil {
			continue
		}
		for i := range e.pod.antiAffinity {
			t := &e.pod.antiAffinity[i]
			if v, ok := e.node.Node.Labels[t.topologyKey]; ok && t.matches(pod.Pod) {
				if cy.forbidden == nil {
					cy.forbidden = map[topology]bool{}
				}
				cy.forbidden[topology{t.topologyKey, v}] = true
			}
		}
	}
	if len(pod.antiAffinity) == 0 && len(pod.affinity) == 0 {
		return cy
	}
	// Only pods with inter-pod terms of their own pay for this walk over
	// every pod.
	cy.antiTaken = make([]map[string]bool, len(pod.antiAffinity))
	cy.affinityHave = make([]map[string]bool, len(pod.affinity))
	for i := range cy.antiTaken {
		cy.antiTaken[i] = map[string]bool{}
	}
	for i := range cy.affinityHave {
		cy.affinityHave[i] = map[string]bool{}
	}
	matched := false
	for _, n := range snap.Nodes {
		for _, other := range n.Pods {
			for i := range pod.antiAffinity {
				t := &pod.antiAffinity[i]
				if v, ok := n.Node.Labels[t.topologyKey]; ok && t.matches(other.Pod) {
					cy.antiTaken[i][v] = true
				}
			}
			for i := range pod.affinity {
				t := &pod.affinity[i]
				if t.matches(other.Pod) {
					matched = true
					if v, ok := n.Node.Labels[t.topologyKey]; ok {
						cy.affinityHave[i][v] = true
					}
				}
			}
		}
	}
	if len(pod.affinity) > 0 && !matched {
		cy.affinityFirst = true
		for i := range pod.affinity {
			if !pod.affinity[i].matches(pod.Pod) {
				cy.affinityFirst = false
			}
		}
	}
	return cy
}

var (
	reasonsUnschedulable        = []string{ReasonUnschedulable}
	reasonsNodeAffinity         = []string{ReasonNodeAffinity}
	reasonsHostPorts            = []string{ReasonHostPorts}
	reasonsExistingAntiAffinity = []string{ReasonExistingAntiAffinity}
	reasonsPodAffinity          = []string{ReasonPodAffinity}
	reasonsPodAntiAffinity      = []string{ReasonPodAntiAffinity}
)

// filter runs the filters in kube-scheduler's order and returns the first
// failing one's reasons, or nil when the node fits.
func (cy *cycle) filter(n *NodeInfo) []string {
	if rs := cy.filterUnschedulable(n); rs != nil {
		return rs
	}
	if rs := cy.filterTaints(n); rs != nil {
		return rs
	}
	if !matchesNodeSelector(cy.pod.Pod, n.Node) {
		return reasonsNodeAffinity
	}
	if n.portsConflict(cy.pod) {
		return reasonsHostPorts
	}
	if rs := cy.filterResources(n); rs != nil {
		return rs
	}
	return cy.filterInterPod(n)
}

func (cy *cycle) filterUnschedulable(n *NodeInfo) []string {
	if n.unschedulable && !tolerates(cy.pod.Pod.Spec.Tolerations, &corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}) {
		return reasonsUnschedulable
	}
	return nil
}

func (cy *cycle) filterTaints(n *NodeInfo) []string {
	for i := range n.taints {
		if !tolerates(cy.pod.Pod.Spec.Tolerations, &n.taints[i]) {
			return n.reasons[i : i+1]
		}
	}
	return nil
}

// tolerates reports whether one of tols tolerates taint, by Kubernetes'
// rules: a toleration with an empty effect matches every effect, one with
// an empty key and operator Exists matches every taint.
func tolerates(tols []corev1.Toleration, taint *corev1.Taint) bool {
	for i := range tols {
		t := &tols[i]
		if (t.Effect != "" && t.Effect != taint.Effect) || (t.Key != "" && t.Key != taint.Key) {
			continue
		}
		switch t.Operator {
		case "", corev1.TolerationOpEqual:
			if t.Value == taint.Value {
				return true
			}
		case corev1.TolerationOpExists:
			return true
		}
	}
	return false
}

// matchesNodeSelector reports whether node has every label of the pod's
// nodeSelector and matches one of its required node affinity terms.
func matchesNodeSelector(pod *corev1.Pod, node *corev1.Node) bool {
	for k, v := range pod.Spec.NodeSelector {
		if got, ok := node.Labels[k]; !ok || got != v {
			return false
		}
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	for i := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if termMatches(&a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[i], node) {
			return true
		}
	}
	return false
}

// termMatches ANDs a node selector term's requirements; a term without any
// matches no node.
func termMatches(term *corev1.NodeSelectorTerm, node *corev1.Node) bool {
	if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
		return false
	}
	for i := range term.MatchExpressions {
		r := &term.MatchExpressions[i]
		v, ok := node.Labels[r.Key]
		if !requirementMatches(r, v, ok) {
			return false
		}
	}
	for i := range term.MatchFields {
		r := &term.MatchFields[i]
		if r.Key != "metadata.name" || (r.Operator != corev1.NodeSelectorOpIn && r.Operator != corev1.NodeSelectorOpNotIn) {
			return false
		}
		if !requirementMatches(r, node.Name, true) {
			return false
		}
	}
	return true
}

func requirementMatches(r *corev1.NodeSelectorRequirement, v string, has bool) bool {
	switch r.Operator {
	case corev1.NodeSelectorOpIn:
		return has && slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !slices.Contains(r.Values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(r.Values) != 1 {
			return false
		}
		want, err1 := strconv.ParseInt(r.Values[0], 10, 64)
		got, err2 := strconv.ParseInt(v, 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if r.Operator == corev1.NodeSelectorOpGt {
			return got > want
		}
		return got < want
	}
	return false
}

// filterResources gives one reason per resource the node lacks: the pod
// count first, then cpu, memory, ephemeral storage and the extended
// resources by name.
func (cy *cycle) filterResources(n *NodeInfo) []string {
	var out []string
	if n.numPods+1 > n.AllowedPods {
		out = append(out, ReasonTooManyPods)
	}
	r := &cy.pod.Requests
	if r.MilliCPU > 0 && r.MilliCPU > n.Allocatable.MilliCPU-n.Requested.MilliCPU {
		out = append(out, ReasonInsufficient(corev1.ResourceCPU))
	}
	if r.Memory > 0 && r.Memory > n.Allocatable.Memory-n.Requested.Memory {
		out = append(out, ReasonInsufficient(corev1.ResourceMemory))
	}
	if r.EphemeralStorage > 0 && r.EphemeralStorage > n.Allocatable.EphemeralStorage-n.Requested.EphemeralStorage {
		out = append(out, ReasonInsufficient(corev1.ResourceEphemeralStorage))
	}
	for _, name := range cy.scalar {
		if want := r.Scalar[name]; want > 0 && want > n.Allocatable.Scalar[name]-n.Requested.Scalar[name] {
			out = append(out, ReasonInsufficient(name))
		}
	}
	return out
}

// filterInterPod checks, in kube-scheduler's order, the existing pods'
// anti-affinity, then the pod's affinity, then its anti-affinity.
func (cy *cycle) filterInterPod(n *NodeInfo) []string {
	for t := range cy.forbidden {
		if v, ok := n.Node.Labels[t.key]; ok && v == t.value {
			return reasonsExistingAntiAffinity
		}
	}
	if len(cy.affinityHave) > 0 && !cy.affinityFirst {
		for i := range cy.pod.affinity {
			v, ok := n.Node.Labels[cy.pod.affinity[i].topologyKey]
			if !ok || !cy.affinityHave[i][v] {
				return reasonsPodAffinity
			}
		}
	}
	for i := range cy.antiTaken {
		if v, ok := n.Node.Labels[cy.pod.antiAffinity[i].topologyKey]; ok && cy.antiTaken[i][v] {
			return reasonsPodAntiAffinity
		}
	}
	return nil
}

// Score weights, as kube-scheduler weighs its default plugins' scores:
// spreading counts twice as much as free resources.
const (
	weightLeastAllocated = 1
	weightSpread         = 2
	maxNodeScore         = 100
)

// pick scores the feasible nodes and returns the best. A node scores for
// its free cpu and memory once the pod is on it (least allocated, 0-100),
// and for how few pods of the pod's controller it has compared with the
// most any feasible node has (spreading, 0-100).
func (cy *cycle) pick(nodes []*NodeInfo, rnd *rand.Rand) *NodeInfo {
	if len(nodes) == 1 {
		return nodes[0]
	}
	maxOwned := 0
	if owner := cy.pod.Owner; owner != "" {
		for _, n := range nodes {
			maxOwned = max(maxOwned, n.owners[owner])
		}
	}
	var best *NodeInfo
	bestScore, ties := int64(-1), 0
	for _, n := range nodes {
		s := weightLeastAllocated * leastAllocated(n, cy.pod)
		spread := int64(maxNodeScore)
		if maxOwned > 0 {
			spread = int64(maxNodeScore * (maxOwned - n.owners[cy.pod.Owner]) / maxOwned)
		}
		s += weightSpread * spread
		switch {
		case s > bestScore:
			best, bestScore, ties = n, s, 1
		case s == bestScore:
			ties++
			if rnd != nil && rnd.IntN(ties) == 0 { // each of the tied nodes with equal chance
				best = n
			}
		}
	}
	return best
}

// leastAllocated averages the free share of cpu and memory (0-100) left on
// n with the pod on it.
func leastAllocated(n *NodeInfo, pod *PodInfo) int64 {
	return (freeShare(n.NonZero.MilliCPU+pod.NonZero.MilliCPU, n.Allocatable.MilliCPU) +
		freeShare(n.NonZero.Memory+pod.NonZero.Memory, n.Allocatable.Memory)) / 2
}

func freeShare(requested, capacity int64) int64 {
	if capacity <= 0 || requested > capacity {
		return 0
	}
	return (capacity - requested) * maxNodeScore / capacity
}

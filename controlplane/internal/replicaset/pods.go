package replicaset

import (
	"math"
	"sort"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DeletionCostAnnotation ranks a ReplicaSet's pods for scale-down: lower
// cost goes first (Kubernetes' controller.kubernetes.io/pod-deletion-cost).
const DeletionCostAnnotation = "controller.kubernetes.io/pod-deletion-cost"

// isActive reports whether pod counts as a replica: not finished and not
// being deleted.
func isActive(pod *corev1.Pod) bool {
	return pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed && pod.DeletionTimestamp == nil
}

func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// IsReady reports whether pod's Ready condition is True.
func IsReady(pod *corev1.Pod) bool {
	c := readyCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

// IsAvailable reports whether pod has been ready for at least
// minReadySeconds at now.
func IsAvailable(pod *corev1.Pod, minReadySeconds int32, now time.Time) bool {
	c := readyCondition(pod)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	if minReadySeconds == 0 {
		return true
	}
	return !c.LastTransitionTime.IsZero() && c.LastTransitionTime.Add(time.Duration(minReadySeconds)*time.Second).Before(now)
}

var phaseOrder = map[corev1.PodPhase]int{corev1.PodPending: 0, corev1.PodUnknown: 1, corev1.PodRunning: 2}

func deletionCost(pod *corev1.Pod) int64 {
	if v, ok := pod.Annotations[DeletionCostAnnotation]; ok {
		if n, err := strconv.ParseInt(v, 10, 32); err == nil {
			return n
		}
	}
	return 0
}

func restarts(pod *corev1.Pod) int32 {
	var most int32
	for _, s := range pod.Status.ContainerStatuses {
		most = max(most, s.RestartCount)
	}
	return most
}

// logBucket puts a duration since t into a power-of-two bucket of
// seconds, so that pods of about the same age tie and the next criterion
// decides, as Kubernetes' logarithmic scale-down does.
func logBucket(t metav1.Time, now time.Time) int {
	d := now.Sub(t.Time)
	if d < time.Second {
		return 0
	}
	return int(math.Log2(d.Seconds())) + 1
}

// sortForDeletion orders pods so that the ones to delete first come first,
// as kube-controller-manager does: unassigned before assigned, pending
// before unknown before running, not ready before ready, lower deletion
// cost first, more pods of the same set on the node first, ready for less
// time first, more container restarts first, newer first.
func sortForDeletion(pods []*corev1.Pod, now time.Time) {
	onNode := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" {
			onNode[p.Spec.NodeName]++
		}
	}
	readySince := func(p *corev1.Pod) metav1.Time {
		if c := readyCondition(p); c != nil && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime
		}
		return metav1.Time{}
	}
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if a.Spec.NodeName != b.Spec.NodeName && (a.Spec.NodeName == "" || b.Spec.NodeName == "") {
			return a.Spec.NodeName == ""
		}
		if phaseOrder[a.Status.Phase] != phaseOrder[b.Status.Phase] {
			return phaseOrder[a.Status.Phase] < phaseOrder[b.Status.Phase]
		}
		if IsReady(a) != IsReady(b) {
			return !IsReady(a)
		}
		if ca, cb := deletionCost(a), deletionCost(b); ca != cb {
			return ca < cb
		}
		if ra, rb := onNode[a.Spec.NodeName], onNode[b.Spec.NodeName]; ra != rb {
			return ra > rb
		}
		if IsReady(a) && IsReady(b) {
			ta, tb := readySince(a), readySince(b)
			if ba, bb := logBucket(ta, now), logBucket(tb, now); ba != bb {
				return ba < bb
			}
		}
		if ra, rb := restarts(a), restarts(b); ra != rb {
			return ra > rb
		}
		if ba, bb := logBucket(a.CreationTimestamp, now), logBucket(b.CreationTimestamp, now); ba != bb {
			return ba < bb
		}
		return a.CreationTimestamp.After(b.CreationTimestamp.Time)
	})
}

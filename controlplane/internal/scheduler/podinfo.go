package scheduler

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// Defaults counted for a container that requests no cpu or memory when
// scoring (never when filtering), as kube-scheduler does, so that many
// request-less pods do not all land on one node.
const (
	defaultMilliCPURequest = 100               // 0.1 core
	defaultMemoryRequest   = 200 * 1024 * 1024 // 200 MiB
)

// Resources is an amount of the resources the scheduler accounts: cpu in
// millicores, memory and ephemeral storage in bytes, and every other
// (extended) resource in its own unit. Scalar is nil when there are none.
type Resources struct {
	MilliCPU, Memory, EphemeralStorage int64
	Scalar                             map[corev1.ResourceName]int64
}

func (r *Resources) add(o *Resources, sign int64) {
	r.MilliCPU += sign * o.MilliCPU
	r.Memory += sign * o.Memory
	r.EphemeralStorage += sign * o.EphemeralStorage
	for name, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[name] += sign * v
		if r.Scalar[name] == 0 {
			delete(r.Scalar, name)
		}
	}
}

// maxOf raises every amount of r to at least o's.
func (r *Resources) maxOf(o *Resources) {
	r.MilliCPU = max(r.MilliCPU, o.MilliCPU)
	r.Memory = max(r.Memory, o.Memory)
	r.EphemeralStorage = max(r.EphemeralStorage, o.EphemeralStorage)
	for name, v := range o.Scalar {
		if r.Scalar == nil {
			r.Scalar = map[corev1.ResourceName]int64{}
		}
		r.Scalar[name] = max(r.Scalar[name], v)
	}
}

// resourcesOf reads a resource list; nonZero substitutes the scoring
// defaults for a missing cpu or memory amount.
func resourcesOf(list corev1.ResourceList, nonZero bool) Resources {
	var r Resources
	for name, q := range list {
		switch name {
		case corev1.ResourceCPU:
			r.MilliCPU = q.MilliValue()
		case corev1.ResourceMemory:
			r.Memory = q.Value()
		case corev1.ResourceEphemeralStorage:
			r.EphemeralStorage = q.Value()
		case corev1.ResourcePods:
		default:
			if v := q.Value(); v != 0 {
				if r.Scalar == nil {
					r.Scalar = map[corev1.ResourceName]int64{}
				}
				r.Scalar[name] = v
			}
		}
	}
	if nonZero {
		if _, ok := list[corev1.ResourceCPU]; !ok {
			r.MilliCPU = defaultMilliCPURequest
		}
		if _, ok := list[corev1.ResourceMemory]; !ok {
			r.Memory = defaultMemoryRequest
		}
	}
	return r
}

// PodRequests returns what a pod asks of a node, as kube-scheduler counts
// it: the sum of its containers' requests, raised to what any init
// container needs while it runs (beside the sidecars — init containers
// with restartPolicy Always — started before it), plus the pod overhead.
// nonZero counts the scoring defaults for containers that request no cpu
// or memory.
func PodRequests(pod *corev1.Pod, nonZero bool) Resources {
	var sum Resources
	for i := range pod.Spec.Containers {
		r := resourcesOf(pod.Spec.Containers[i].Resources.Requests, nonZero)
		sum.add(&r, 1)
	}
	var sidecars, initMax Resources
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		r := resourcesOf(c.Resources.Requests, nonZero)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecars.add(&r, 1)
			initMax.maxOf(&sidecars)
			continue
		}
		r.add(&sidecars, 1)
		initMax.maxOf(&r)
	}
	sum.add(&sidecars, 1)
	sum.maxOf(&initMax)
	if pod.Spec.Overhead != nil {
		r := resourcesOf(pod.Spec.Overhead, false)
		sum.add(&r, 1)
	}
	return sum
}

// hostPort is one host port a pod asks for; IP "0.0.0.0" stands for all
// addresses.
type hostPort struct {
	IP       string
	Protocol corev1.Protocol
	Port     int32
}

// affinityTerm is a compiled required pod (anti-)affinity term.
type affinityTerm struct {
	namespaces    map[string]bool // nil with allNamespaces
	allNamespaces bool
	selector      labels.Selector
	topologyKey   string
}

// matches reports whether pod p falls under the term.
func (t *affinityTerm) matches(p *corev1.Pod) bool {
	return (t.allNamespaces || t.namespaces[p.Namespace]) && t.selector.Matches(labels.Set(p.Labels))
}

func compileTerms(pod *corev1.Pod, terms []corev1.PodAffinityTerm) ([]affinityTerm, error) {
	out := make([]affinityTerm, 0, len(terms))
	for i := range terms {
		term := &terms[i]
		sel := labels.Nothing() // a nil selector selects nothing
		if term.LabelSelector != nil {
			s, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
			if err != nil {
				return nil, fmt.Errorf("scheduler: pod %s/%s: affinity term %d: %w", pod.Namespace, pod.Name, i, err)
			}
			sel = s
		}
		t := affinityTerm{selector: sel, topologyKey: term.TopologyKey}
		switch {
		case term.NamespaceSelector != nil && len(term.NamespaceSelector.MatchLabels) == 0 && len(term.NamespaceSelector.MatchExpressions) == 0:
			t.allNamespaces = true // an empty namespace selector selects every namespace
		default:
			// A non-empty namespaceSelector is not evaluated (it would need
			// the namespaces' labels): only the listed namespaces count.
			t.namespaces = map[string]bool{}
			for _, ns := range term.Namespaces {
				t.namespaces[ns] = true
			}
			if len(term.Namespaces) == 0 && term.NamespaceSelector == nil {
				t.namespaces[pod.Namespace] = true
			}
		}
		out = append(out, t)
	}
	return out, nil
}

// PodInfo is a pod with what the scheduler derives from it, computed once:
// it is read-only once made.
type PodInfo struct {
	Pod *corev1.Pod
	// Key is "namespace/name".
	Key string
	// Requests is what filters count; NonZero what scores count.
	Requests, NonZero Resources
	ports             []hostPort
	// Owner is the UID of the pod's controller (its ownerReference with
	// controller true), or empty.
	Owner        types.UID
	affinity     []affinityTerm
	antiAffinity []affinityTerm
}

// NewPodInfo derives a PodInfo from pod, which it keeps and never changes.
// An error means the pod's affinity terms do not compile.
func NewPodInfo(pod *corev1.Pod) (*PodInfo, error) {
	pi := &PodInfo{
		Pod:      pod,
		Key:      pod.Namespace + "/" + pod.Name,
		Requests: PodRequests(pod, false),
		NonZero:  PodRequests(pod, true),
	}
	for i := range pod.Spec.Containers {
		for _, p := range pod.Spec.Containers[i].Ports {
			if p.HostPort <= 0 {
				continue
			}
			hp := hostPort{IP: p.HostIP, Protocol: p.Protocol, Port: p.HostPort}
			if hp.IP == "" {
				hp.IP = "0.0.0.0"
			}
			if hp.Protocol == "" {
				hp.Protocol = corev1.ProtocolTCP
			}
			pi.ports = append(pi.ports, hp)
		}
	}
	if ref := metav1.GetControllerOfNoCopy(pod); ref != nil {
		pi.Owner = ref.UID
	}
	if a := pod.Spec.Affinity; a != nil {
		var err error
		if a.PodAffinity != nil {
			if pi.affinity, err = compileTerms(pod, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution); err != nil {
				return nil, err
			}
		}
		if a.PodAntiAffinity != nil {
			if pi.antiAffinity, err = compileTerms(pod, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution); err != nil {
				return nil, err
			}
		}
	}
	return pi, nil
}

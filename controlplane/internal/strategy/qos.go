package strategy

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// PodQOSClass returns the quality of service class of a pod with this
// (defaulted) spec, which kube-apiserver records in status.qosClass at
// creation: Guaranteed when every container limits cpu and memory and
// requests exactly its limits, BestEffort when no container requests or
// limits either, Burstable otherwise. Only cpu and memory count.
func PodQOSClass(spec *corev1.PodSpec) corev1.PodQOSClass {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	guaranteed := true
	add := func(sum corev1.ResourceList, name corev1.ResourceName, q resource.Quantity) {
		if v, ok := sum[name]; ok {
			q.Add(v)
		}
		sum[name] = q
	}
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range cs {
			limited := 0
			for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := c.Resources.Requests[name]; ok && q.Sign() > 0 {
					add(requests, name, q.DeepCopy())
				}
				if q, ok := c.Resources.Limits[name]; ok && q.Sign() > 0 {
					add(limits, name, q.DeepCopy())
					limited++
				}
			}
			if limited < 2 {
				guaranteed = false
			}
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	if guaranteed {
		for name, req := range requests {
			if lim, ok := limits[name]; !ok || lim.Cmp(req) != 0 {
				guaranteed = false
			}
		}
	}
	if guaranteed && len(requests) == len(limits) {
		return corev1.PodQOSGuaranteed
	}
	return corev1.PodQOSBurstable
}

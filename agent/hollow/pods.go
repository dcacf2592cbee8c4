package hollow

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/agent/internal/nodestatus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// runPods watches the pods bound to any node (one informer for all the
// hollow nodes) and acts for those bound to its own, until ctx ends.
func (h *Hollow) runPods(ctx context.Context) error {
	queue := workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](50*time.Millisecond, 30*time.Second))
	defer queue.ShutDown()
	factory := informers.NewSharedInformerFactoryWithOptions(h.cfg.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
	}))
	nodeFactory := informers.NewSharedInformerFactory(h.cfg.Client, 0)
	podInf := factory.Core().V1().Pods()
	nodeInf := nodeFactory.Core().V1().Nodes()
	pods, nodes := podInf.Lister(), nodeInf.Lister() // registers both informers before Start
	mine := func(obj any) (*corev1.Pod, *node) {
		if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = tomb.Obj
		}
		p, ok := obj.(*corev1.Pod)
		if !ok {
			return nil, nil
		}
		return p, h.index[p.Spec.NodeName]
	}
	enqueue := func(obj any) {
		if p, n := mine(obj); n != nil {
			if h.cfg.OnPod != nil {
				h.cfg.OnPod(p)
			}
			queue.Add(p.Namespace + "/" + p.Name)
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if p, n := mine(obj); n != nil {
				n.pods.release(p.UID)
			}
		},
	}); err != nil {
		return err
	}
	stop := make(chan struct{})
	factory.Start(stop)
	nodeFactory.Start(stop)
	defer func() { close(stop); factory.Shutdown(); nodeFactory.Shutdown() }()
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, nodeInf.Informer().HasSynced) {
		return nil // ctx ended
	}
	var wg sync.WaitGroup
	for range h.cfg.Parallelism {
		wg.Go(func() {
			for {
				key, shutdown := queue.Get()
				if shutdown {
					return
				}
				if err := h.syncPod(ctx, pods, nodes, key); err != nil && ctx.Err() == nil {
					h.cfg.Logger.Debug("hollow pod not synced yet", "pod", key, "err", err)
					queue.AddRateLimited(key)
				} else {
					queue.Forget(key)
				}
				queue.Done(key)
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	return nil
}

// syncPod marks a pod of a hollow node Running, or confirms its deletion.
func (h *Hollow) syncPod(ctx context.Context, pods listerscorev1.PodLister, nodes listerscorev1.NodeLister, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	n := h.index[pod.Spec.NodeName]
	if n == nil {
		return nil
	}
	rctx, cancel := context.WithTimeout(ctx, h.cfg.RequestTimeout)
	defer cancel()
	if pod.DeletionTimestamp != nil {
		// Nothing to stop: the containers are gone at once. As a
		// kubelet, the pod ends Failed first (killed), unless it already
		// finished.
		uid := pod.UID
		if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
			p := pod.DeepCopy()
			p.Status.Phase = corev1.PodFailed
			for i := range p.Status.Conditions {
				if t := p.Status.Conditions[i].Type; t == corev1.PodReady || t == corev1.ContainersReady {
					p.Status.Conditions[i].Status = corev1.ConditionFalse
				}
			}
			if _, err := h.cfg.Client.CoreV1().Pods(ns).UpdateStatus(rctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
		err := h.cfg.Client.CoreV1().Pods(ns).Delete(rctx, name, metav1.DeleteOptions{
			GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid},
		})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil // gone, or another pod of that name now
		}
		if err == nil {
			n.pods.release(uid)
		}
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	var podCIDR string
	if no, err := nodes.Get(n.name); err == nil {
		podCIDR = no.Spec.PodCIDR
	}
	ip, err := n.pods.assign(pod, podCIDR)
	if err != nil {
		return err
	}
	next := h.runningStatus(pod, n, ip)
	if next == nil {
		return nil // already as marked
	}
	p := pod.DeepCopy()
	p.Status = *next
	_, err = h.cfg.Client.CoreV1().Pods(ns).UpdateStatus(rctx, p, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// runningStatus returns the status a kubelet reports for the pod running
// on n with IP ip, or nil when the pod already has it.
func (h *Hollow) runningStatus(pod *corev1.Pod, n *node, ip string) *corev1.PodStatus {
	if marked(pod, n, ip) {
		return nil
	}
	now := metav1.NewTime(h.cfg.Now())
	st := pod.Status.DeepCopy()
	st.Phase = corev1.PodRunning
	st.HostIP, st.HostIPs = n.ip, []corev1.HostIP{{IP: n.ip}}
	st.PodIP, st.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodScheduled} {
		setPodCondition(st, t, now)
	}
	started := st.StartTime
	old := map[string]corev1.ContainerStatus{}
	for _, cs := range append(st.InitContainerStatuses, st.ContainerStatuses...) {
		old[cs.Name] = cs
	}
	status := func(c corev1.Container, sidecarOrApp bool) corev1.ContainerStatus {
		yes := true
		cs := corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image),
			ContainerID:  "containerd://" + nodestatus.StableID("container", string(pod.UID), c.Name),
			Ready:        true,
			Started:      &yes,
			RestartCount: 0,
		}
		if sidecarOrApp {
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: *started}
		} else {
			no := false
			cs.Started = &no
			cs.State.Terminated = &corev1.ContainerStateTerminated{
				ExitCode: 0, Reason: "Completed", StartedAt: *started, FinishedAt: *started,
				ContainerID: cs.ContainerID,
			}
		}
		if o, ok := old[c.Name]; ok && o.ContainerID == cs.ContainerID {
			cs.State = o.State // keep what was reported (its times)
		}
		return cs
	}
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
		st.InitContainerStatuses = append(st.InitContainerStatuses, status(c, sidecar))
	}
	st.ContainerStatuses = nil
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, status(c, true))
	}
	return st
}

// marked reports whether the pod already shows what runningStatus sets.
func marked(pod *corev1.Pod, n *node, ip string) bool {
	st := &pod.Status
	if st.Phase != corev1.PodRunning || st.PodIP != ip || st.HostIP != n.ip || st.StartTime == nil ||
		len(st.ContainerStatuses) != len(pod.Spec.Containers) || len(st.InitContainerStatuses) != len(pod.Spec.InitContainers) {
		return false
	}
	for _, t := range []corev1.PodConditionType{corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady, corev1.PodScheduled} {
		ok := false
		for _, c := range st.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready || cs.State.Running == nil {
			return false
		}
	}
	return true
}

// setPodCondition sets condition t True, keeping its transition time when
// it already was.
func setPodCondition(st *corev1.PodStatus, t corev1.PodConditionType, now metav1.Time) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != corev1.ConditionTrue {
				st.Conditions[i] = corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
			}
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
}

// imageID makes up a digest reference for an image.
func imageID(image string) string {
	repo := image
	if i := strings.LastIndex(repo, "@"); i >= 0 {
		repo = repo[:i]
	} else if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	if !strings.Contains(repo, "/") {
		repo = "docker.io/library/" + repo
	}
	return repo + "@sha256:" + nodestatus.StableID("image", image)
}

// podIPs hands out the pod IPs of one node: from its spec.podCIDR when it
// has one, else from its synthetic /24. It is safe for concurrent use.
type podIPs struct {
	mu        sync.Mutex
	synthetic netip.Prefix
	byUID     map[types.UID]netip.Addr
	used      map[netip.Addr]bool
}

func newPodIPs(synthetic netip.Prefix) *podIPs {
	return &podIPs{synthetic: synthetic, byUID: map[types.UID]netip.Addr{}, used: map[netip.Addr]bool{}}
}

// assign returns the pod's IP: the one it has when that belongs to the
// node, else a free one of podCIDR (or of the synthetic range when
// podCIDR is empty or not IPv4).
func (a *podIPs) assign(pod *corev1.Pod, podCIDR string) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byUID[pod.UID]; ok {
		return ip.String(), nil
	}
	cidr := a.synthetic
	if p, err := netip.ParsePrefix(podCIDR); err == nil && p.Addr().Is4() {
		cidr = p.Masked()
	}
	// A pod marked by an earlier run keeps its IP.
	if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil && (cidr.Contains(ip) || a.synthetic.Contains(ip)) && !a.used[ip] {
		a.byUID[pod.UID], a.used[ip] = ip, true
		return ip.String(), nil
	}
	// Skip the network address and .1 (the bridge's, on a real node).
	ip := cidr.Addr().Next().Next()
	for ; cidr.Contains(ip); ip = ip.Next() {
		if !a.used[ip] && cidr.Contains(ip.Next()) { // not the broadcast address
			a.byUID[pod.UID], a.used[ip] = ip, true
			return ip.String(), nil
		}
	}
	return "", fmt.Errorf("hollow: pod CIDR %v of the node is full", cidr)
}

// release frees the pod's IP.
func (a *podIPs) release(uid types.UID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if ip, ok := a.byUID[uid]; ok {
		delete(a.byUID, uid)
		delete(a.used, ip)
	}
}

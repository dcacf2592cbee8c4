package apitest

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Kubelet plays the node agent for the tests of controllers, where none
// runs: it binds every new pod of its namespace to its node (node-<ns>,
// which it creates), after its delay marks it Running and Ready (unless
// SetNotReady says otherwise), and finishes a graceful deletion after its
// delay, the pod Failed first. Its methods may be called from any goroutine.
type Kubelet struct {
	cs       kubernetes.Interface
	ns, node string
	delay    time.Duration

	mu       sync.Mutex
	notReady func(*corev1.Pod) bool
}

// StartKubelet runs a Kubelet for namespace ns until the test ends.
func StartKubelet(t testing.TB, cs kubernetes.Interface, ns string, delay time.Duration) *Kubelet {
	t.Helper()
	k := &Kubelet{cs: cs, ns: ns, node: "node-" + ns, delay: delay}
	if _, err := cs.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.node}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	queue := workqueue.NewTypedDelayingQueue[string]()
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	pods := factory.Core().V1().Pods()
	handle := func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok && k.wants(p) {
			if p.Spec.NodeName == "" {
				queue.Add(p.Name)
			} else {
				queue.AddAfter(p.Name, delay)
			}
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: handle, UpdateFunc: func(_, obj any) { handle(obj) },
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	factory.Start(ctx.Done())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			name, shutdown := queue.Get()
			if shutdown {
				return
			}
			p, err := pods.Lister().Pods(ns).Get(name)
			if err == nil && k.wants(p) {
				if err := k.step(ctx, p); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
					queue.AddAfter(name, 10*time.Millisecond)
				}
			}
			queue.Done(name)
		}
	}()
	t.Cleanup(func() {
		cancel()
		queue.ShutDown()
		<-done
		factory.Shutdown()
	})
	return k
}

// SetNotReady makes the kubelet leave the pods for which f is true
// Pending and not ready (nil: none).
func (k *Kubelet) SetNotReady(f func(*corev1.Pod) bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.notReady = f
}

// wants reports whether p has a step left: binding, running, or going.
func (k *Kubelet) wants(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Spec.NodeName == "" {
		return true
	}
	k.mu.Lock()
	skip := k.notReady != nil && k.notReady(p)
	k.mu.Unlock()
	return !skip && !podReady(p)
}

func (k *Kubelet) step(ctx context.Context, p *corev1.Pod) error {
	switch {
	case p.DeletionTimestamp != nil:
		// The delay since the deletion was seen passed in the queue;
		// deletionTimestamp itself is when the grace period ends. The
		// pod ends Failed (killed) first, as with the kubelet.
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.Spec.NodeName != "" {
			p = p.DeepCopy()
			p.Status.Phase = corev1.PodFailed
			if _, err := k.cs.CoreV1().Pods(k.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				return err
			}
		}
		zero := int64(0)
		return k.cs.CoreV1().Pods(k.ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &p.UID}})
	case p.Spec.NodeName == "":
		return k.cs.CoreV1().Pods(k.ns).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, UID: p.UID},
			Target:     corev1.ObjectReference{Kind: "Node", Name: k.node},
		}, metav1.CreateOptions{})
	}
	now := metav1.Now()
	p = p.DeepCopy()
	p.Status.Phase = corev1.PodRunning
	p.Status.StartTime = &now
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: true, Started: new(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	_, err := k.cs.CoreV1().Pods(k.ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Package scheduler is Skiff's kube-scheduler: it assigns every pending
// pod that names the "default-scheduler" to a node that fits it, through
// the pods/binding subresource, and tells why when none does (condition
// PodScheduled=False reason Unschedulable, Warning event
// FailedScheduling, with kube-scheduler's message).
//
//	s, err := scheduler.New(cfg) // cfg from DefaultConfig, with Client set
//	err = s.Run(ctx)             // leader-only: until ctx ends; may run again later
//
// The decision is the pure function Schedule: a read-only Snapshot (the
// nodes and the pods bound or assumed on each, with per-node sums kept up
// to date incrementally by a Cache) and a pod in, a node or a *FitError
// out. Its filters are kube-scheduler's, in its order and with its reason
// texts: node unschedulable (cordon), taints and tolerations (a node that
// is not Ready counts as tainted node.kubernetes.io/not-ready), nodeSelector
// and required node affinity, host ports, resources (cpu, memory,
// ephemeral storage, extended resources, pod count) and required
// inter-pod (anti-)affinity. Feasible nodes are scored for free cpu and
// memory and for spreading the pods of one controller; ties are broken at
// random. In large clusters a decision stops after enough feasible nodes
// (kube-scheduler's percentageOfNodesToScore), the next one starting where
// it stopped.
//
// Run works through the API only (informers on pods and nodes). A pod is
// assumed on its node in the Cache when chosen, before its binding is
// written, so the next decision counts it; bindings run concurrently
// (Config.Parallelism) and a failed one is forgotten and retried.
// Unschedulable pods wait aside until a node is added or changes in a way
// that may let them fit, a pod is deleted or finishes, or RetryInterval
// passes. Run is level-triggered: started again, it rebuilds everything
// from the API.
package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/controlplane/internal/events"
)

// Name is the scheduler name pods are defaulted to, the only one this
// scheduler serves, and the source of its events.
const Name = corev1.DefaultSchedulerName

// Config configures a Scheduler.
type Config struct {
	// Client reads pods and nodes, binds pods, writes pod status and events.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Parallelism bounds the API writes (bindings, status updates) in
	// flight; more wait, which also holds back new decisions.
	Parallelism int
	// RetryInterval is how often every unschedulable pod is tried again even
	// when no event suggested it might fit.
	RetryInterval time.Duration
	// BackoffBase and BackoffMax bound the wait before a pod that failed
	// (unschedulable, or its binding failed) is tried again: the base,
	// doubled per failure, at most the maximum.
	BackoffBase, BackoffMax time.Duration
	// PercentageOfNodesToScore: see Options; 0 is adaptive.
	PercentageOfNodesToScore int
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
}

// DefaultConfig returns a Config without Client, with kube-scheduler's
// back-off (1 s to 10 s).
func DefaultConfig() Config {
	return Config{
		Logger:        slog.Default(),
		Parallelism:   256,
		RetryInterval: 60 * time.Second,
		BackoffBase:   time.Second, BackoffMax: 10 * time.Second,
		RequestTimeout: 30 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil:
		return errors.New("scheduler: config: Client and Logger are required")
	case c.Parallelism <= 0 || c.RetryInterval <= 0 || c.RequestTimeout <= 0:
		return fmt.Errorf("scheduler: config: Parallelism %d, RetryInterval %v and RequestTimeout %v must be positive", c.Parallelism, c.RetryInterval, c.RequestTimeout)
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("scheduler: config: bad back-off %v..%v", c.BackoffBase, c.BackoffMax)
	case c.PercentageOfNodesToScore < 0 || c.PercentageOfNodesToScore > 100:
		return fmt.Errorf("scheduler: config: PercentageOfNodesToScore %d not in 0..100", c.PercentageOfNodesToScore)
	}
	return nil
}

// Scheduler binds pending pods to nodes. See the package comment.
type Scheduler struct{ cfg Config }

// New returns a Scheduler for cfg.
func New(cfg Config) (*Scheduler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Scheduler{cfg: cfg}, nil
}

// run is the state of one Run.
type run struct {
	cfg   Config
	log   *slog.Logger
	cache *Cache
	queue *queue
	pods  corelisters.PodLister
	rec   record.EventRecorder
	rnd   *rand.Rand
	start int // where the next decision begins in the snapshot's nodes

	// work hands API writes to the writers, goroutines that live as long
	// as the run (a goroutine per write grew its stack anew each time,
	// through client-go's calls); writers counts them, up to Parallelism.
	// Only the scheduling loop dispatches.
	work    chan func()
	writers int
	wg      sync.WaitGroup
}

// Run schedules pods until ctx ends; it returns nil then, after every
// goroutine it started (informers, bindings) has exited.
func (s *Scheduler) Run(ctx context.Context) error {
	rec, stopRec := events.NewRecorder(s.cfg.Client, Name)
	defer stopRec()
	r := &run{
		cfg: s.cfg, log: s.cfg.Logger, cache: NewCache(),
		queue: newQueue(s.cfg.BackoffBase, s.cfg.BackoffMax),
		rec:   rec, rnd: rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
		work: make(chan func()),
	}
	defer r.queue.shutdown()
	src := s.cfg.Informers
	if src == nil {
		src = sharedinformers.New(s.cfg.Client, 1)
	}
	factory, startInformers, releaseInformers := src.Join(ctx)
	defer releaseInformers()
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	r.pods = podInf.Lister()
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.podAdded(obj.(*corev1.Pod)) },
		UpdateFunc: func(old, obj any) { r.podUpdated(old.(*corev1.Pod), obj.(*corev1.Pod)) },
		DeleteFunc: r.podDeleted,
	}); err != nil {
		return err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.cache.SetNode(obj.(*corev1.Node)); r.queue.moveAll() },
		UpdateFunc: func(old, obj any) { r.nodeUpdated(old.(*corev1.Node), obj.(*corev1.Node)) },
		DeleteFunc: func(obj any) {
			if n, ok := sharedinformers.As[*corev1.Node](obj); ok {
				r.cache.RemoveNode(n.Name)
			}
		},
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, nodeInf.Informer().HasSynced) {
		return nil // ctx ended
	}
	r.log.Info("scheduler started", "nodes", len(nodeInf.Informer().GetStore().ListKeys()))

	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		for {
			key, moves, shutdown := r.queue.pop()
			if shutdown {
				return
			}
			r.scheduleOne(ctx, key, moves)
			r.queue.done(key)
		}
	}()
	tick := time.NewTicker(s.cfg.RetryInterval)
	defer tick.Stop()
	for running := true; running; {
		select {
		case <-tick.C:
			r.queue.moveAll()
		case <-ctx.Done():
			running = false
		}
	}
	r.queue.shutdown()
	<-loopDone
	close(r.work)
	r.wg.Wait()
	return nil
}

// responsible reports whether pod is this scheduler's to place now.
func responsible(pod *corev1.Pod) bool {
	return pod.Spec.NodeName == "" && pod.Spec.SchedulerName == Name && pod.DeletionTimestamp == nil &&
		len(pod.Spec.SchedulingGates) == 0 && !terminal(pod)
}

func terminal(pod *corev1.Pod) bool {
	return pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed
}

func podKey(pod *corev1.Pod) string { return pod.Namespace + "/" + pod.Name }

func (r *run) podAdded(pod *corev1.Pod) {
	switch {
	case pod.Spec.NodeName != "" && !terminal(pod):
		r.countPod(pod)
		r.queue.forget(podKey(pod))
	case responsible(pod):
		r.queue.add(podKey(pod))
	}
}

func (r *run) countPod(pod *corev1.Pod) {
	if err := r.cache.AddPod(pod); err != nil {
		r.log.Warn("pod counted without its affinity terms", "pod", podKey(pod), "err", err)
	}
}

func (r *run) podUpdated(old, pod *corev1.Pod) {
	key := podKey(pod)
	switch {
	case pod.Spec.NodeName != "":
		r.queue.forget(key)
		if terminal(pod) {
			if r.cache.RemovePod(key) {
				r.queue.moveAll() // its resources and ports are free
			}
			return
		}
		r.countPod(pod)
	case !responsible(pod):
		r.queue.forget(key)
		if pod.DeletionTimestamp != nil || terminal(pod) {
			r.cache.RemovePod(key) // an assumed pod that will not be bound
		}
	case r.queue.isUnschedulable(key) && equality.Semantic.DeepEqual(old.Spec, pod.Spec) && equality.Semantic.DeepEqual(old.Labels, pod.Labels):
		// Only its status changed (most likely the scheduler's own
		// PodScheduled condition): nothing that could make it fit.
	default:
		r.queue.add(key)
	}
}

func (r *run) podDeleted(obj any) {
	pod, ok := sharedinformers.As[*corev1.Pod](obj)
	if !ok {
		return
	}
	key := podKey(pod)
	r.queue.forget(key)
	if r.cache.RemovePod(key) {
		r.queue.moveAll()
	}
}

func (r *run) nodeUpdated(old, node *corev1.Node) {
	r.cache.SetNode(node)
	// Heartbeats change nothing that could make a pod fit; these can.
	if old.Spec.Unschedulable != node.Spec.Unschedulable ||
		!equality.Semantic.DeepEqual(old.Spec.Taints, node.Spec.Taints) ||
		!equality.Semantic.DeepEqual(old.Labels, node.Labels) ||
		!equality.Semantic.DeepEqual(old.Status.Allocatable, node.Status.Allocatable) ||
		readyStatus(old) != readyStatus(node) {
		r.queue.moveAll()
	}
}

func readyStatus(node *corev1.Node) corev1.ConditionStatus {
	if c := readyCondition(node); c != nil {
		return c.Status
	}
	return ""
}

// scheduleOne decides for the pod with key, popped at move count moves.
func (r *run) scheduleOne(ctx context.Context, key string, moves uint64) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return
	}
	pod, err := r.pods.Pods(ns).Get(name)
	if err != nil || !responsible(pod) {
		r.queue.forget(key) // gone, bound, or no longer ours: events bring it back if needed
		return
	}
	if r.cache.Has(key) {
		return // assumed: its binding is in flight
	}
	pi, err := NewPodInfo(pod)
	if err != nil {
		r.queue.unschedulable(key, moves)
		r.dispatch(func() { r.recordFailure(ctx, pod, err.Error()) })
		return
	}
	r.cache.Lock()
	snap := r.cache.SnapshotLocked()
	res, err := Schedule(snap, pi, Options{Start: r.start, PercentageOfNodesToScore: r.cfg.PercentageOfNodesToScore, Rand: r.rnd})
	if n := len(snap.Nodes); n > 0 {
		r.start = (r.start + res.Evaluated) % n
	}
	if err == nil {
		r.cache.AssumeLocked(pi, res.Node)
	}
	r.cache.Unlock()
	if err != nil {
		r.log.Debug("pod unschedulable", "pod", key, "reason", err.Error())
		r.queue.unschedulable(key, moves)
		msg := err.Error()
		r.dispatch(func() { r.recordFailure(ctx, pod, msg) })
		return
	}
	r.dispatch(func() { r.bind(ctx, pod, key, res.Node) })
}

// dispatch runs an API write in the background: on an idle writer, on a
// new one while there are fewer than Parallelism, or else on the first
// writer to finish.
func (r *run) dispatch(f func()) {
	select {
	case r.work <- f:
		return
	default:
	}
	if r.writers < r.cfg.Parallelism {
		r.writers++
		r.wg.Add(1)
		go r.writer(f)
		return
	}
	r.work <- f
}

// writer runs first, then the writes dispatched to it until the run ends.
func (r *run) writer(first func()) {
	defer r.wg.Done()
	first()
	for f := range r.work {
		f()
	}
}

// bind writes the binding of the pod assumed on node; on failure the
// assumption is forgotten and the pod retried.
func (r *run) bind(ctx context.Context, pod *corev1.Pod, key, node string) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	err := r.cfg.Client.CoreV1().Pods(pod.Namespace).Bind(rctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{})
	if err != nil {
		r.cache.Forget(key, node)
		switch {
		case ctx.Err() != nil:
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
			// Gone, or bound already (by another scheduler, or an earlier
			// try whose answer was lost): the pod's events say what to do.
			r.log.Debug("binding refused", "pod", key, "node", node, "err", err)
			r.queue.retry(key)
		default:
			r.log.Warn("binding failed", "pod", key, "node", node, "err", err)
			r.rec.Eventf(pod, corev1.EventTypeWarning, "FailedScheduling", "Binding rejected: %v", err)
			r.queue.retry(key)
		}
		return
	}
	r.queue.forget(key)
	r.log.Debug("pod bound", "pod", key, "node", node)
	r.rec.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
}

// recordFailure tells why pod does not fit: a FailedScheduling event, and
// the PodScheduled condition unless it already says so.
func (r *run) recordFailure(ctx context.Context, pod *corev1.Pod, msg string) {
	r.rec.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	var prev *corev1.PodCondition
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodScheduled {
			prev = &pod.Status.Conditions[i]
		}
	}
	if prev != nil && prev.Status == corev1.ConditionFalse && prev.Reason == corev1.PodReasonUnschedulable && prev.Message == msg {
		return
	}
	cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg, LastTransitionTime: metav1.Now()}
	if prev != nil && prev.Status == corev1.ConditionFalse {
		cond.LastTransitionTime = prev.LastTransitionTime
	}
	// A strategic merge patch merges conditions by type: the others stay.
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []corev1.PodCondition{cond}}})
	if err != nil {
		panic(err) // a PodCondition always encodes
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	_, err = r.cfg.Client.CoreV1().Pods(pod.Namespace).Patch(rctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		r.log.Warn("PodScheduled condition not written", "pod", podKey(pod), "err", err)
	}
}

// Package podgc is the pod garbage collector, as kube-controller-manager's
// podgc controller: every CheckPeriod it force-deletes (grace period 0)
//
//   - terminated pods (Succeeded or Failed) beyond TerminatedPodThreshold,
//     evicted ones first, then the oldest;
//   - orphaned pods, bound to a node that no longer exists: a node missing
//     from the cache is quarantined for QuarantineTime and then confirmed
//     gone with a live GET, so a node that is only late in the cache keeps
//     its pods;
//   - terminating pods on a node that is not Ready and carries the
//     node.kubernetes.io/out-of-service taint;
//   - terminating pods that were never scheduled.
//
// A pod not yet in a terminal phase is first marked Failed, orphans with
// the DisruptionTarget condition (reason DeletionByPodGC, message "PodGC:
// node no longer exists"), as Kubernetes 1.32 does, so that the workload
// controllers see the pod failed even though no kubelet will ever say so.
//
//	c, err := podgc.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)         // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only (informers on pods and nodes),
// computes everything from the current state each period, and may be
// stopped and started again at any moment (a new Run quarantines afresh).
package podgc

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"

	"golang.org/x/sync/errgroup"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Condition wording of an orphan's DisruptionTarget condition.
const (
	ReasonDeletionByPodGC = "DeletionByPodGC"
	MessageNodeGone       = "PodGC: node no longer exists"
)

// Config configures a Controller.
type Config struct {
	// Client reads pods and nodes, and writes pod status and deletions.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// TerminatedPodThreshold is how many terminated pods may exist before
	// the oldest are deleted (kube-controller-manager's
	// --terminated-pod-gc-threshold); 0 or less keeps them all.
	TerminatedPodThreshold int
	// CheckPeriod is how often pods are collected.
	CheckPeriod time.Duration
	// QuarantineTime is how long a node must be missing from the cache
	// before a live GET decides its pods are orphans.
	QuarantineTime time.Duration
	// Parallelism bounds the deletions in flight.
	Parallelism int
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// Now is the clock.
	Now func() time.Time
}

// DefaultConfig returns a Config without Client, with Kubernetes'
// defaults.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), TerminatedPodThreshold: 12500, CheckPeriod: 20 * time.Second,
		QuarantineTime: 40 * time.Second, Parallelism: 16, RequestTimeout: 10 * time.Second, Now: time.Now,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("podgc: config: Client, Logger and Now are required")
	case c.CheckPeriod <= 0 || c.QuarantineTime < 0 || c.Parallelism <= 0 || c.RequestTimeout <= 0:
		return fmt.Errorf("podgc: config: bad CheckPeriod %v, QuarantineTime %v, Parallelism %d or RequestTimeout %v",
			c.CheckPeriod, c.QuarantineTime, c.Parallelism, c.RequestTimeout)
	}
	return nil
}

// Controller collects pods. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// run is the state of one Run.
type run struct {
	*Controller
	pods  listerscorev1.PodLister
	nodes listerscorev1.NodeLister
	// missing is when each node named by a pod was first seen missing
	// from the cache.
	missing map[string]time.Time
}

// Run collects pods every CheckPeriod until ctx ends; it returns nil then.
func (c *Controller) Run(ctx context.Context) error {
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	r := &run{Controller: c, pods: podInf.Lister(), nodes: nodeInf.Lister(), missing: map[string]time.Time{}}
	podInf.Informer()
	nodeInf.Informer()
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, nodeInf.Informer().HasSynced) {
		return nil // ctx ended
	}
	tick := time.NewTicker(c.cfg.CheckPeriod)
	defer tick.Stop()
	for {
		if err := r.collect(ctx); err != nil && ctx.Err() == nil {
			c.cfg.Logger.Warn("pod garbage collection incomplete", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// collect runs one pass over the cached pods.
func (r *run) collect(ctx context.Context) error {
	pods, err := r.pods.List(labels.Everything())
	if err != nil {
		return err
	}
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	byName := make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
	}
	type victim struct {
		pod  *corev1.Pod
		cond *corev1.PodCondition
		why  string
	}
	var victims []victim
	seen := map[*corev1.Pod]bool{}
	add := func(p *corev1.Pod, cond *corev1.PodCondition, why string) {
		if !seen[p] {
			seen[p] = true
			victims = append(victims, victim{p, cond, why})
		}
	}

	if t := r.cfg.TerminatedPodThreshold; t > 0 {
		var terminated []*corev1.Pod
		for _, p := range pods {
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				terminated = append(terminated, p)
			}
		}
		if n := len(terminated) - t; n > 0 {
			slices.SortFunc(terminated, oldestEvictedFirst)
			for _, p := range terminated[:n] {
				add(p, nil, "terminated")
			}
		}
	}
	for _, p := range pods {
		if p.DeletionTimestamp == nil || p.Spec.NodeName == "" {
			continue
		}
		if n := byName[p.Spec.NodeName]; n != nil && !nodeReady(n) && outOfService(n) {
			add(p, nil, "terminating on an out-of-service node")
		}
	}
	gone, err := r.goneNodes(ctx, pods, byName)
	for _, p := range pods {
		if p.Spec.NodeName != "" && gone[p.Spec.NodeName] {
			add(p, &corev1.PodCondition{
				Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
				Reason: ReasonDeletionByPodGC, Message: MessageNodeGone,
			}, "orphaned")
		}
	}
	for _, p := range pods {
		if p.DeletionTimestamp != nil && p.Spec.NodeName == "" {
			add(p, nil, "unscheduled and terminating")
		}
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Parallelism)
	errs := make([]error, len(victims))
	for i, v := range victims {
		g.Go(func() error {
			if err := r.failAndDelete(gctx, v.pod, v.cond); err != nil && !apierrors.IsNotFound(err) {
				errs[i] = fmt.Errorf("podgc: pod %s/%s: %w", v.pod.Namespace, v.pod.Name, err)
				return nil
			}
			r.cfg.Logger.Info("force-deleted pod", "pod", v.pod.Namespace+"/"+v.pod.Name, "node", v.pod.Spec.NodeName, "why", v.why)
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through errs
	r.cfg.Logger.Debug("pod garbage collection pass", "pods", len(pods), "nodes", len(nodes), "deleted", len(victims))
	return errors.Join(append(errs, err)...)
}

// goneNodes returns the nodes pods are bound to that are confirmed gone:
// missing from the cache for QuarantineTime and then not found by a live
// GET.
func (r *run) goneNodes(ctx context.Context, pods []*corev1.Pod, cached map[string]*corev1.Node) (map[string]bool, error) {
	now := r.cfg.Now()
	wanted := map[string]bool{}
	for _, p := range pods {
		if n := p.Spec.NodeName; n != "" && cached[n] == nil {
			wanted[n] = true
			if _, ok := r.missing[n]; !ok {
				r.missing[n] = now
			}
		}
	}
	gone := map[string]bool{}
	var errs []error
	for n, since := range r.missing {
		if !wanted[n] {
			delete(r.missing, n) // back in the cache, or no pods left
			continue
		}
		if now.Sub(since) < r.cfg.QuarantineTime {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		_, err := r.cfg.Client.CoreV1().Nodes().Get(rctx, n, metav1.GetOptions{})
		cancel()
		switch {
		case apierrors.IsNotFound(err):
			gone[n] = true
		case err != nil:
			errs = append(errs, fmt.Errorf("podgc: node %s: %w", n, err))
		default:
			delete(r.missing, n) // it exists: the cache is late
		}
	}
	return gone, errors.Join(errs...)
}

// failAndDelete marks a pod that is not yet terminal Failed (with cond,
// if any) and deletes it with grace period 0.
func (r *run) failAndDelete(ctx context.Context, pod *corev1.Pod, cond *corev1.PodCondition) error {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	if pod.Status.Phase != corev1.PodSucceeded && pod.Status.Phase != corev1.PodFailed {
		next := pod.DeepCopy()
		next.Status.Phase = corev1.PodFailed
		if cond != nil {
			setCondition(&next.Status, *cond, metav1.NewTime(r.cfg.Now()))
		}
		// The cached resourceVersion makes this fail on a pod changed
		// since; the next period sees the change.
		if _, err := r.cfg.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(rctx, next, metav1.UpdateOptions{}); err != nil {
			return err
		}
	}
	uid := pod.UID
	return r.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(rctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64), Preconditions: &metav1.Preconditions{UID: &uid},
	})
}

// setCondition sets c in st, keeping the transition time when the status
// does not change.
func setCondition(st *corev1.PodStatus, c corev1.PodCondition, now metav1.Time) {
	c.LastTransitionTime = now
	for i := range st.Conditions {
		if st.Conditions[i].Type == c.Type {
			if st.Conditions[i].Status == c.Status {
				c.LastTransitionTime = st.Conditions[i].LastTransitionTime
			}
			st.Conditions[i] = c
			return
		}
	}
	st.Conditions = append(st.Conditions, c)
}

// oldestEvictedFirst orders terminated pods for deletion: evicted ones
// first, then by creation time, then by name.
func oldestEvictedFirst(a, b *corev1.Pod) int {
	ea, eb := evicted(a), evicted(b)
	if ea != eb {
		if ea {
			return -1
		}
		return 1
	}
	return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
}

func evicted(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed && p.Status.Reason == "Evicted"
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func outOfService(n *corev1.Node) bool {
	return slices.ContainsFunc(n.Spec.Taints, func(t corev1.Taint) bool { return t.Key == corev1.TaintNodeOutOfService })
}

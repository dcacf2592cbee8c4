// Package nodelifecycle is the node lifecycle controller: it notices nodes
// that stopped answering, marks them and their pods, taints them, and
// evicts their pods according to the pods' tolerations, as
// kube-controller-manager's node lifecycle controller and taint eviction
// controller do together.
//
//	c, err := nodelifecycle.New(cfg) // cfg from DefaultConfig: Client set, Gossip optional
//	err = c.Run(ctx)                 // leader-only: until ctx ends; may run again later
//
// A node is alive while its heartbeats arrive: renewals of its Lease in
// kube-node-lease, changes of its Ready condition's lastHeartbeatTime, and,
// when Config.Gossip is set, the gossip pool's view of the worker (DESIGN.md:
// liveness lives in memory, transitions in Raft). A worker gossip reports
// dead is unreachable at once; one without a heartbeat for GracePeriod is
// unreachable too. Heartbeats are timed by this controller's clock when it
// observes them, never by the timestamps the node wrote, so clock skew
// between machines does not matter; a new leader gives every node a full
// GracePeriod from its start.
//
// For an unreachable node the controller sets every node condition to
// Unknown (reason NodeStatusUnknown), marks the node's pods not Ready, and
// records a NodeNotReady event. From the Ready condition it keeps the
// node's taints: node.kubernetes.io/unreachable (Unknown) or
// node.kubernetes.io/not-ready (False), with the NoSchedule and NoExecute
// effects, and node.kubernetes.io/unschedulable:NoSchedule for a cordoned
// node. A pod on a node with NoExecute taints it does not tolerate is
// deleted at once; one that tolerates them for tolerationSeconds is deleted
// that long after the taint was added (pods get 30 s by default, see the
// API server's DefaultTolerationSeconds). The node's agent (kubelet) posts
// Ready=True again when it comes back, and the taints go.
//
// Everything is computed from the current state each MonitorPeriod, so the
// controller may stop and start again at any moment.
package nodelifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/skiff-sh/skiff/controlplane/internal/events"
)

// Taint keys the controller manages.
const (
	UnreachableTaint   = "node.kubernetes.io/unreachable"
	NotReadyTaint      = "node.kubernetes.io/not-ready"
	UnschedulableTaint = "node.kubernetes.io/unschedulable"
)

// LeaseNamespace holds the nodes' heartbeat leases.
const LeaseNamespace = "kube-node-lease"

// Gossip is the gossip pool's view of the workers, kept in memory by every
// master.
type Gossip interface {
	// Alive reports whether the worker named node is alive; known is false
	// when the pool has never heard of it (then heartbeats decide).
	Alive(node string) (alive, known bool)
	// Changed receives a value (without blocking the sender) whenever a
	// worker's state changes, so that deaths are handled at once.
	Changed() <-chan struct{}
}

// Config configures a Controller.
type Config struct {
	// Client reads nodes, leases and pods, and writes node status and
	// taints, pod status and pod deletions.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Gossip, if set, is the pool's view of the workers.
	Gossip Gossip
	// GracePeriod is how long a node may go without a heartbeat before it
	// is unreachable (kube-controller-manager's --node-monitor-grace-period).
	GracePeriod time.Duration
	// MonitorPeriod is how often every node is checked.
	MonitorPeriod time.Duration
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// Now is the clock.
	Now func() time.Time
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), GracePeriod: 40 * time.Second, MonitorPeriod: time.Second,
		RequestTimeout: 10 * time.Second, Now: time.Now,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("nodelifecycle: config: Client, Logger and Now are required")
	case c.GracePeriod <= 0 || c.MonitorPeriod <= 0 || c.RequestTimeout <= 0:
		return fmt.Errorf("nodelifecycle: config: GracePeriod %v, MonitorPeriod %v and RequestTimeout %v must be positive", c.GracePeriod, c.MonitorPeriod, c.RequestTimeout)
	}
	return nil
}

// Controller watches nodes' liveness. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// podsByNode indexes pods by spec.nodeName.
const podsByNode = "nodelifecycle.nodeName" // unique: the pod informer may be shared

// run is the state of one Run: the heartbeats observed, by node name.
type run struct {
	*Controller
	rec   record.EventRecorder
	nodes listerscorev1.NodeLister
	pods  cache.Indexer

	mu sync.Mutex
	// seen is when a heartbeat of each node was last observed; beat is
	// the last heartbeat value observed (lease renew time or status
	// heartbeat time), so that a re-list of the same value is not a beat.
	seen map[string]time.Time
	beat map[string]string
}

// Run watches nodes until ctx ends; it returns nil then.
func (c *Controller) Run(ctx context.Context) error {
	rec, stopRec := events.NewRecorder(c.cfg.Client, "node-controller")
	defer stopRec()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	r := &run{Controller: c, rec: rec, seen: map[string]time.Time{}, beat: map[string]string{}}
	nodeInf := factory.Core().V1().Nodes()
	podInf := factory.Core().V1().Pods().Informer()
	if err := podInf.AddIndexers(cache.Indexers{podsByNode: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return err
	}
	r.nodes, r.pods = nodeInf.Lister(), podInf.GetIndexer()
	onNode := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			if ready := readyCondition(n); ready != nil && ready.Status != corev1.ConditionUnknown {
				r.heartbeat(n.Name, "status:"+ready.LastHeartbeatTime.UTC().Format(time.RFC3339Nano))
			} else {
				r.heartbeat(n.Name, "")
			}
		}
	}
	onLease := func(obj any) {
		// The shared informer has every lease; a node's is in LeaseNamespace.
		if l, ok := obj.(*coordinationv1.Lease); ok && l.Namespace == LeaseNamespace && l.Spec.RenewTime != nil {
			r.heartbeat(l.Name, "lease:"+l.Spec.RenewTime.UTC().Format(time.RFC3339Nano))
		}
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onNode, UpdateFunc: func(_, obj any) { onNode(obj) }}); err != nil {
		return err
	}
	leaseInf := factory.Coordination().V1().Leases().Informer()
	if _, err := leaseInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: onLease, UpdateFunc: func(_, obj any) { onLease(obj) }}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), nodeInf.Informer().HasSynced, podInf.HasSynced, leaseInf.HasSynced) {
		return nil // ctx ended
	}
	var changed <-chan struct{}
	if c.cfg.Gossip != nil {
		changed = c.cfg.Gossip.Changed()
	}
	tick := time.NewTicker(c.cfg.MonitorPeriod)
	defer tick.Stop()
	for {
		r.monitor(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-changed:
		}
	}
}

// heartbeat records that node showed a sign of life with value, unless
// value is the one already seen. The first sighting of a node counts as
// one, which gives every node a full grace period from this run's start.
func (r *run) heartbeat(node, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.seen[node]; ok && (value == "" || r.beat[node] == value) {
		return
	}
	r.seen[node], r.beat[node] = r.cfg.Now(), value
}

// alive reports whether node counts as alive now.
func (r *run) alive(node string, now time.Time) bool {
	if r.cfg.Gossip != nil {
		if alive, known := r.cfg.Gossip.Alive(node); known && !alive {
			return false
		} else if known {
			return true
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	seen, ok := r.seen[node]
	return !ok || now.Sub(seen) <= r.cfg.GracePeriod
}

// monitor checks every node once. Failures are logged and retried at the
// next check.
func (r *run) monitor(ctx context.Context) {
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		r.cfg.Logger.Error("node lifecycle: list nodes", "err", err)
		return
	}
	now := r.cfg.Now()
	for _, node := range nodes {
		if ctx.Err() != nil {
			return
		}
		if err := r.check(ctx, node, now); err != nil && ctx.Err() == nil && !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			r.cfg.Logger.Warn("node lifecycle: check failed, retrying", "node", node.Name, "err", err)
		}
	}
}

// check brings one node's conditions and taints in line with its liveness
// and evicts the pods its NoExecute taints no longer allow.
func (r *run) check(ctx context.Context, node *corev1.Node, now time.Time) error {
	if !r.alive(node.Name, now) {
		if ready := readyCondition(node); ready == nil || ready.Status != corev1.ConditionUnknown {
			updated, err := r.markUnknown(ctx, node, now)
			if err != nil {
				return err
			}
			node = updated
		}
		if err := r.markPodsNotReady(ctx, node.Name); err != nil {
			return err
		}
	}
	node, err := r.syncTaints(ctx, node, now)
	if err != nil {
		return err
	}
	return r.evict(ctx, node, now)
}

// markUnknown sets every condition of node to Unknown, as the node
// lifecycle controller does when the kubelet stops posting.
func (r *run) markUnknown(ctx context.Context, node *corev1.Node, now time.Time) (*corev1.Node, error) {
	upd := node.DeepCopy()
	t := metav1.NewTime(now)
	for _, typ := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		i := slices.IndexFunc(upd.Status.Conditions, func(c corev1.NodeCondition) bool { return c.Type == typ })
		if i < 0 {
			upd.Status.Conditions = append(upd.Status.Conditions, corev1.NodeCondition{
				Type: typ, Status: corev1.ConditionUnknown, Reason: "NodeStatusNeverUpdated",
				Message: "Kubelet never posted node status.", LastHeartbeatTime: t, LastTransitionTime: t,
			})
			continue
		}
		c := &upd.Status.Conditions[i]
		if c.Status != corev1.ConditionUnknown {
			c.Status, c.LastTransitionTime = corev1.ConditionUnknown, t
		}
		c.Reason, c.Message = "NodeStatusUnknown", "Kubelet stopped posting node status."
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	updated, err := r.cfg.Client.CoreV1().Nodes().UpdateStatus(rctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	r.cfg.Logger.Info("node unreachable", "node", node.Name)
	r.rec.Eventf(updated, corev1.EventTypeNormal, "NodeNotReady", "Node %s status is now: NodeNotReady", node.Name)
	return updated, nil
}

// markPodsNotReady sets the Ready condition of node's pods to False, so
// that endpoints stop sending them traffic while their node is away.
func (r *run) markPodsNotReady(ctx context.Context, node string) error {
	objs, err := r.pods.ByIndex(podsByNode, node)
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		i := slices.IndexFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.PodReady })
		if i < 0 || pod.Status.Conditions[i].Status == corev1.ConditionFalse || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		upd := pod.DeepCopy()
		c := &upd.Status.Conditions[i]
		c.Status, c.LastTransitionTime = corev1.ConditionFalse, metav1.NewTime(r.cfg.Now())
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		_, err := r.cfg.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(rctx, upd, metav1.UpdateOptions{})
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		r.rec.Event(pod, corev1.EventTypeWarning, "NodeNotReady", "Node is not ready")
	}
	return errors.Join(errs...)
}

// wantTaints returns the taints the controller owns that node should have,
// from its Ready condition and spec.unschedulable.
func wantTaints(node *corev1.Node) []corev1.Taint {
	var want []corev1.Taint
	key := ""
	if ready := readyCondition(node); ready != nil {
		switch ready.Status {
		case corev1.ConditionUnknown:
			key = UnreachableTaint
		case corev1.ConditionFalse:
			key = NotReadyTaint
		}
	}
	if key != "" {
		want = append(want, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoSchedule}, corev1.Taint{Key: key, Effect: corev1.TaintEffectNoExecute})
	}
	if node.Spec.Unschedulable {
		want = append(want, corev1.Taint{Key: UnschedulableTaint, Effect: corev1.TaintEffectNoSchedule})
	}
	return want
}

// owned reports whether the controller manages taint t.
func owned(t corev1.Taint) bool {
	return t.Key == UnreachableTaint || t.Key == NotReadyTaint || t.Key == UnschedulableTaint
}

// syncTaints updates node's taints to wantTaints, keeping everyone else's
// and the timeAdded of NoExecute taints already present.
func (r *run) syncTaints(ctx context.Context, node *corev1.Node, now time.Time) (*corev1.Node, error) {
	want := wantTaints(node)
	var have []corev1.Taint
	for _, t := range node.Spec.Taints {
		if owned(t) {
			have = append(have, t)
		}
	}
	same := len(have) == len(want)
	for _, w := range want {
		same = same && slices.ContainsFunc(have, func(h corev1.Taint) bool { return h.MatchTaint(&w) })
	}
	if same {
		return node, nil
	}
	upd := node.DeepCopy()
	upd.Spec.Taints = slices.DeleteFunc(upd.Spec.Taints, func(t corev1.Taint) bool { return owned(t) })
	for _, w := range want {
		if w.Effect == corev1.TaintEffectNoExecute {
			added := metav1.NewTime(now)
			if i := slices.IndexFunc(have, func(h corev1.Taint) bool { return h.MatchTaint(&w) }); i >= 0 && have[i].TimeAdded != nil {
				added = *have[i].TimeAdded
			}
			w.TimeAdded = &added
		}
		upd.Spec.Taints = append(upd.Spec.Taints, w)
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	updated, err := r.cfg.Client.CoreV1().Nodes().Update(rctx, upd, metav1.UpdateOptions{})
	if err != nil {
		return nil, err
	}
	r.cfg.Logger.Info("node taints updated", "node", node.Name, "taints", len(want))
	return updated, nil
}

// evict deletes the pods on node whose tolerations of its NoExecute taints
// have run out.
func (r *run) evict(ctx context.Context, node *corev1.Node, now time.Time) error {
	var taints []corev1.Taint
	for _, t := range node.Spec.Taints {
		if t.Effect == corev1.TaintEffectNoExecute {
			taints = append(taints, t)
		}
	}
	if len(taints) == 0 {
		return nil
	}
	objs, err := r.pods.ByIndex(podsByNode, node.Name)
	if err != nil {
		return err
	}
	var errs []error
	for _, obj := range objs {
		pod := obj.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			continue
		}
		if deadline, ok := evictionTime(pod, taints); !ok || now.Before(deadline) {
			continue
		}
		if err := r.deletePod(ctx, pod); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// evictionTime returns when pod must leave a node with the NoExecute
// taints, or false when it tolerates them forever. A pod that does not
// tolerate one of them must leave at once (the zero time).
func evictionTime(pod *corev1.Pod, taints []corev1.Taint) (time.Time, bool) {
	var deadline time.Time
	forever := true
	for i := range taints {
		t := &taints[i]
		j := slices.IndexFunc(pod.Spec.Tolerations, func(tol corev1.Toleration) bool { return tol.ToleratesTaint(klog.Background(), t, false) })
		if j < 0 {
			return time.Time{}, true
		}
		secs := pod.Spec.Tolerations[j].TolerationSeconds
		if secs == nil {
			continue
		}
		added := time.Time{}
		if t.TimeAdded != nil {
			added = t.TimeAdded.Time
		}
		d := added.Add(time.Duration(max(*secs, 0)) * time.Second)
		if forever || d.Before(deadline) {
			deadline, forever = d, false
		}
	}
	return deadline, !forever
}

// deletePod evicts pod as the taint eviction controller does: the
// DisruptionTarget condition first, then a delete with the pod's own grace
// period and its UID as precondition.
func (r *run) deletePod(ctx context.Context, pod *corev1.Pod) error {
	r.rec.Eventf(pod, corev1.EventTypeNormal, "TaintManagerEviction", "Marking for deletion Pod %s/%s", pod.Namespace, pod.Name)
	if !slices.ContainsFunc(pod.Status.Conditions, func(c corev1.PodCondition) bool { return c.Type == corev1.DisruptionTarget }) {
		upd := pod.DeepCopy()
		upd.Status.Conditions = append(upd.Status.Conditions, corev1.PodCondition{
			Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue, Reason: "DeletionByTaintManager",
			Message: "Taint manager: deleting due to NoExecute taint", LastTransitionTime: metav1.NewTime(r.cfg.Now()),
		})
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		_, err := r.cfg.Client.CoreV1().Pods(pod.Namespace).UpdateStatus(rctx, upd, metav1.UpdateOptions{})
		cancel()
		if err != nil && !apierrors.IsConflict(err) {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return err
		}
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	err := r.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(rctx, pod.Name, metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(pod.UID))})
	if err == nil {
		r.cfg.Logger.Info("pod evicted from failed node", "pod", pod.Namespace+"/"+pod.Name, "node", pod.Spec.NodeName)
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// readyCondition returns node's Ready condition, or nil.
func readyCondition(node *corev1.Node) *corev1.NodeCondition {
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeReady {
			return &node.Status.Conditions[i]
		}
	}
	return nil
}

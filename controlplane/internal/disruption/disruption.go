// Package disruption is the disruption controller, as in
// kube-controller-manager: it keeps each PodDisruptionBudget's status,
// which evictions (pods/eviction) spend:
//
//   - expectedPods: the pods selected (minAvailable as a number), or the
//     scale of their controllers (maxUnavailable, or minAvailable as a
//     percentage: Deployments, ReplicaSets, StatefulSets);
//   - desiredHealthy: minAvailable, or expectedPods - maxUnavailable
//     (percentages rounded up);
//   - currentHealthy: the selected pods that are Ready and not going,
//     not counting those an eviction took in the last two minutes
//     (disruptedPods, until the pod's deletion shows);
//   - disruptionsAllowed: currentHealthy - desiredHealthy, at least 0 (and
//     0 when no pod is expected), with the DisruptionAllowed condition (SufficientPods,
//     InsufficientPods, or SyncFailed when a pod has no controller with a
//     scale).
//
// A nil selector selects no pod, an empty one every pod of the namespace,
// as policy/v1 says.
//
//	c, err := disruption.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)              // leader-only: until ctx ends; may run again later
package disruption

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/endpoints"
	"github.com/skiff-sh/skiff/controlplane/internal/events"
	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"
)

// Component is the source of the controller's events.
const Component = "controllermanager"

// Config configures a Controller.
type Config struct {
	// Client reads pods, workloads and budgets and writes budgets' status.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	Now       func() time.Time
	// DeletionTimeout is how long an evicted pod stays out of
	// currentHealthy while its deletion does not show.
	DeletionTimeout time.Duration
	Workers         int
	RequestTimeout  time.Duration
	// RetryBase and RetryMax bound the back-off after a failed sync.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client, with Kubernetes' values.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), Now: time.Now, DeletionTimeout: 2 * time.Minute, Workers: 5,
		RequestTimeout: 10 * time.Second, RetryBase: 5 * time.Millisecond, RetryMax: 60 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("disruption: config: Client, Logger and Now are required")
	case c.DeletionTimeout <= 0 || c.Workers <= 0 || c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("disruption: config: bad DeletionTimeout %v, Workers %d, RequestTimeout %v or retry bounds %v..%v", c.DeletionTimeout, c.Workers, c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller keeps budgets' status. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

type run struct {
	cfg         Config
	budgets     policylisters.PodDisruptionBudgetLister
	pods        corelisters.PodLister
	replicaSets appslisters.ReplicaSetLister
	deployments appslisters.DeploymentLister
	statefuls   appslisters.StatefulSetLister
	queue       workqueue.TypedRateLimitingInterface[string]
	rec         record.EventRecorder
}

// Run keeps every budget's status until ctx ends; it returns nil then, once
// its goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	r := &run{cfg: c.cfg, queue: workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)}
	defer r.queue.ShutDown()
	rec, stopRec := events.NewRecorder(c.cfg.Client, Component)
	defer stopRec()
	r.rec = rec
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	budgets := factory.Policy().V1().PodDisruptionBudgets()
	pods := factory.Core().V1().Pods()
	rsets, deploys, sets := factory.Apps().V1().ReplicaSets(), factory.Apps().V1().Deployments(), factory.Apps().V1().StatefulSets()
	r.budgets, r.pods = budgets.Lister(), pods.Lister()
	r.replicaSets, r.deployments, r.statefuls = rsets.Lister(), deploys.Lister(), sets.Lister()

	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	if _, err := budgets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	podEvent := func(obj any) {
		if p, ok := sharedinformers.As[*corev1.Pod](obj); ok {
			r.enqueueSelecting(p.Namespace, labels.Set(p.Labels))
		}
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: podEvent,
		UpdateFunc: func(oldObj, obj any) {
			podEvent(oldObj) // labels may have changed
			podEvent(obj)
		},
		DeleteFunc: podEvent,
	}); err != nil {
		return err
	}
	// A controller's scale changes the budgets of its namespace.
	scaleEvent := func(obj any) {
		if m, ok := sharedinformers.As[metav1.Object](obj); ok {
			r.enqueueSelecting(m.GetNamespace(), nil)
		}
	}
	for _, inf := range []cache.SharedIndexInformer{rsets.Informer(), deploys.Informer(), sets.Informer()} {
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc: scaleEvent, UpdateFunc: func(_, obj any) { scaleEvent(obj) }, DeleteFunc: scaleEvent,
		}); err != nil {
			return err
		}
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), budgets.Informer().HasSynced, pods.Informer().HasSynced,
		rsets.Informer().HasSynced, deploys.Informer().HasSynced, sets.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, r.queue, c.cfg.Workers, c.cfg.Logger, "disruption budget", r.sync)
	return nil
}

// enqueueSelecting queues the budgets of ns that select a pod with
// podLabels; nil queues them all.
func (r *run) enqueueSelecting(ns string, podLabels labels.Set) {
	list, err := r.budgets.PodDisruptionBudgets(ns).List(labels.Everything())
	if err != nil {
		return
	}
	for _, b := range list {
		if podLabels == nil || selects(b, podLabels) {
			r.queue.Add(b.Namespace + "/" + b.Name)
		}
	}
}

// selects reports whether b selects a pod with podLabels: a nil selector
// selects none, an empty one all.
func selects(b *policyv1.PodDisruptionBudget, podLabels labels.Set) bool {
	if b.Spec.Selector == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
	return err == nil && sel.Matches(podLabels)
}

// sync writes a budget's status from the pods it selects; it returns when
// to look again (an eviction recorded in disruptedPods expires), or 0.
func (r *run) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	b, err := r.budgets.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	all, err := r.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var pods []*corev1.Pod
	for _, p := range all {
		if selects(b, labels.Set(p.Labels)) {
			pods = append(pods, p)
		}
	}
	now := r.cfg.Now()
	status := policyv1.PodDisruptionBudgetStatus{ObservedGeneration: b.Generation, Conditions: b.Status.Conditions}
	expected, desired, err := r.desired(b, pods)
	if err != nil {
		r.rec.Eventf(b, corev1.EventTypeWarning, "CalculateExpectedPodCountFailed", "Failed to calculate the number of expected pods: %v", err)
		setCondition(&status, metav1.ConditionFalse, policyv1.SyncFailedReason, err.Error(), now)
		status.DisruptedPods = b.Status.DisruptedPods
		return 0, r.write(ctx, b, status)
	}
	disrupted, requeue := r.stillDisrupted(b, pods, now)
	status.DisruptedPods = disrupted
	for _, p := range pods {
		if _, taken := disrupted[p.Name]; !taken && p.DeletionTimestamp == nil && endpoints.Ready(p) {
			status.CurrentHealthy++
		}
	}
	status.ExpectedPods, status.DesiredHealthy = expected, desired
	// A budget that expects no pod allows no disruption, as upstream (its
	// controller scaled to zero while its pods still run).
	if expected > 0 {
		status.DisruptionsAllowed = max(status.CurrentHealthy-desired, 0)
	}
	if status.DisruptionsAllowed > 0 {
		setCondition(&status, metav1.ConditionTrue, policyv1.SufficientPodsReason, "", now)
	} else {
		setCondition(&status, metav1.ConditionFalse, policyv1.InsufficientPodsReason, "", now)
	}
	return requeue, r.write(ctx, b, status)
}

// desired returns the budget's expected pods and desired healthy ones.
func (r *run) desired(b *policyv1.PodDisruptionBudget, pods []*corev1.Pod) (expected, desired int32, err error) {
	switch {
	case b.Spec.MaxUnavailable != nil:
		if expected, err = r.scale(pods); err != nil {
			return 0, 0, err
		}
		unavailable, err := intstr.GetScaledValueFromIntOrPercent(b.Spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, max(expected-int32(unavailable), 0), nil
	case b.Spec.MinAvailable != nil && b.Spec.MinAvailable.Type == intstr.Int:
		return int32(len(pods)), b.Spec.MinAvailable.IntVal, nil
	case b.Spec.MinAvailable != nil:
		if expected, err = r.scale(pods); err != nil {
			return 0, 0, err
		}
		available, err := intstr.GetScaledValueFromIntOrPercent(b.Spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, int32(available), nil
	}
	return 0, 0, nil
}

// scale sums the replicas of the controllers of pods, each counted once:
// a ReplicaSet's Deployment when it has one, else the ReplicaSet, or a
// StatefulSet. A pod without such a controller is an error, as upstream.
func (r *run) scale(pods []*corev1.Pod) (int32, error) {
	seen := map[types.UID]bool{}
	var total int32
	for _, p := range pods {
		ref := metav1.GetControllerOfNoCopy(p)
		if ref == nil {
			return 0, fmt.Errorf("found no controller ref for pod %q", p.Name)
		}
		uid, replicas, err := r.controllerScale(p.Namespace, ref)
		if err != nil {
			return 0, err
		}
		if !seen[uid] {
			seen[uid] = true
			total += replicas
		}
	}
	return total, nil
}

func (r *run) controllerScale(ns string, ref *metav1.OwnerReference) (types.UID, int32, error) {
	replicas := func(n *int32) int32 {
		if n == nil {
			return 1
		}
		return *n
	}
	switch {
	case ref.Kind == "ReplicaSet" && ref.APIVersion == "apps/v1":
		rs, err := r.replicaSets.ReplicaSets(ns).Get(ref.Name)
		if err == nil && rs.UID == ref.UID {
			if d := metav1.GetControllerOfNoCopy(rs); d != nil && d.Kind == "Deployment" {
				if dep, err := r.deployments.Deployments(ns).Get(d.Name); err == nil && dep.UID == d.UID {
					return dep.UID, replicas(dep.Spec.Replicas), nil
				}
			}
			return rs.UID, replicas(rs.Spec.Replicas), nil
		}
	case ref.Kind == "StatefulSet" && ref.APIVersion == "apps/v1":
		s, err := r.statefuls.StatefulSets(ns).Get(ref.Name)
		if err == nil && s.UID == ref.UID {
			return s.UID, replicas(s.Spec.Replicas), nil
		}
	default:
		return "", 0, fmt.Errorf("controller %s %s has no scale this controller knows", ref.Kind, ref.Name)
	}
	return "", 0, fmt.Errorf("found no controllers for pod's controller %s %s", ref.Kind, ref.Name)
}

// stillDisrupted keeps the evictions of disruptedPods whose pods still
// exist, are not yet going, and were evicted less than DeletionTimeout
// ago; it returns when the next of them expires.
func (r *run) stillDisrupted(b *policyv1.PodDisruptionBudget, pods []*corev1.Pod, now time.Time) (map[string]metav1.Time, time.Duration) {
	if len(b.Status.DisruptedPods) == 0 {
		return nil, 0
	}
	byName := map[string]*corev1.Pod{}
	for _, p := range pods {
		byName[p.Name] = p
	}
	kept := map[string]metav1.Time{}
	var next time.Duration
	for name, at := range b.Status.DisruptedPods {
		p := byName[name]
		expires := at.Add(r.cfg.DeletionTimeout)
		if p == nil || p.DeletionTimestamp != nil || !expires.After(now) {
			if p != nil && p.DeletionTimestamp == nil {
				r.cfg.Logger.Info("an evicted pod was not deleted in time", "pdb", b.Namespace+"/"+b.Name, "pod", name)
			}
			continue
		}
		kept[name] = at
		if wait := expires.Sub(now); next == 0 || wait < next {
			next = wait
		}
	}
	if len(kept) == 0 {
		return nil, 0
	}
	return kept, next
}

// write stores status if it changed, conditionally on the cached
// budget's resourceVersion.
func (r *run) write(ctx context.Context, b *policyv1.PodDisruptionBudget, status policyv1.PodDisruptionBudgetStatus) error {
	if apiequality.Semantic.DeepEqual(status, b.Status) {
		return nil
	}
	c := b.DeepCopy()
	c.Status = status
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	if _, err := r.cfg.Client.PolicyV1().PodDisruptionBudgets(b.Namespace).UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("disruption: status of %s/%s: %w", b.Namespace, b.Name, err)
	}
	return nil
}

// setCondition sets the DisruptionAllowed condition of st, whose
// conditions it copies first (they may be the cache's); its transition
// time moves only when its status does.
func setCondition(st *policyv1.PodDisruptionBudgetStatus, status metav1.ConditionStatus, reason, message string, now time.Time) {
	st.Conditions = slices.Clone(st.Conditions)
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: status, Reason: reason, Message: message,
		ObservedGeneration: st.ObservedGeneration, LastTransitionTime: metav1.NewTime(now)})
}

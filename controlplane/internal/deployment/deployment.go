// Package deployment is the Deployment controller: every Deployment owns
// ReplicaSets named "<deployment>-<pod-template-hash>", one per template it
// has had, and moves pods from the old ones to the one of its current
// template by its strategy (RollingUpdate within maxSurge and
// maxUnavailable, or Recreate), as kube-controller-manager's controller
// does, so that kubectl's rollout status, history, undo, pause, resume and
// restart work unchanged.
//
//	c, err := deployment.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)              // leader-only: until ctx ends; may run again later
//
// A sync of one Deployment claims its ReplicaSets (adopts matching
// orphans, releases owned ones that no longer match), then: only the
// status while it is being deleted; scaling (proportional across its
// ReplicaSets mid-rollout) while paused or when only spec.replicas changed;
// otherwise a step of its strategy. It writes revisions
// (deployment.kubernetes.io/revision, revision-history), the desired and
// max replicas annotations, the status and its Available, Progressing and
// ReplicaFailure conditions, and deletes old ReplicaSets beyond
// revisionHistoryLimit.
//
// It works through the Kubernetes API only, is level-triggered, and may be
// stopped and started again at any moment, in the middle of a rollout too:
// every step is computed from the API's current state, ReplicaSet names are
// deterministic (a second create is AlreadyExists), and every write carries
// the resourceVersion it was computed from, so a stale cache's write is a
// conflict and not a double step.
package deployment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/events"
)

// Component is the source of the controller's events.
const Component = "deployment-controller"

// Event reasons, as in Kubernetes.
const (
	ReasonScaling   = "ScalingReplicaSet"
	ReasonSelectAll = "SelectingAll"
)

var controllerKind = appsv1.SchemeGroupVersion.WithKind("Deployment")

// ErrCollision is returned by a sync that found another object under the
// name of its new ReplicaSet: it has bumped status.collisionCount, and the
// next sync tries another name.
var ErrCollision = errors.New("deployment: replica set name taken by another template")

// Config configures a Controller.
type Config struct {
	// Client reads and writes Deployments, ReplicaSets, pods and events.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Now is the clock of conditions and progress deadlines.
	Now func() time.Time
	// Workers is the number of Deployments synced at once.
	Workers int
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed sync.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client, with Kubernetes' values.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), Now: time.Now, Workers: 5, RequestTimeout: 10 * time.Second,
		RetryBase: 5 * time.Millisecond, RetryMax: 60 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("deployment: config: Client, Logger and Now are required")
	case c.Workers <= 0:
		return fmt.Errorf("deployment: config: Workers %d must be positive", c.Workers)
	case c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("deployment: config: bad RequestTimeout %v or retry bounds %v..%v", c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller rolls Deployments out. See the package comment.
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
	cfg    Config
	deps   appslisters.DeploymentLister
	rsets  appslisters.ReplicaSetLister
	pods   corelisters.PodLister
	queue  workqueue.TypedRateLimitingInterface[string]
	rec    record.EventRecorder
	logger *slog.Logger
}

// Run rolls Deployments out until ctx ends; it returns nil then, after its
// goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	r := &run{
		cfg: c.cfg, logger: c.cfg.Logger,
		queue: workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax),
	}
	defer r.queue.ShutDown()
	rec, stopRec := events.NewRecorder(c.cfg.Client, Component)
	defer stopRec()
	r.rec = rec
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	depInf := factory.Apps().V1().Deployments()
	rsInf := factory.Apps().V1().ReplicaSets()
	podInf := factory.Core().V1().Pods()
	r.deps, r.rsets, r.pods = depInf.Lister(), rsInf.Lister(), podInf.Lister()
	if _, err := depInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueue,
		UpdateFunc: func(_, obj any) { r.enqueue(obj) },
		DeleteFunc: r.enqueue,
	}); err != nil {
		return err
	}
	if _, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.rsChanged,
		UpdateFunc: r.rsUpdated,
		DeleteFunc: r.rsChanged,
	}); err != nil {
		return err
	}
	// Pods matter only to Recreate, which waits for the old ones to go.
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: r.podDeleted}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), depInf.Informer().HasSynced, rsInf.Informer().HasSynced, podInf.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, r.queue, c.cfg.Workers, r.logger, "deployment", workers.Once(r.sync))
	return nil
}

func (r *run) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		r.queue.Add(key)
	}
}

// ownerOf returns the key of the Deployment that controls obj, if the
// cache knows it by that UID.
func (r *run) ownerOf(obj metav1.Object) (string, bool) {
	ref := metav1.GetControllerOf(obj)
	if ref == nil || ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return "", false
	}
	d, err := r.deps.Deployments(obj.GetNamespace()).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return "", false
	}
	return d.Namespace + "/" + d.Name, true
}

// enqueueSelecting queues the Deployments whose selector matches the
// orphan rs, so one of them adopts it.
func (r *run) enqueueSelecting(rs *appsv1.ReplicaSet) {
	list, err := r.deps.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range list {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(rs.Labels)) {
			continue
		}
		r.queue.Add(d.Namespace + "/" + d.Name)
	}
}

func (r *run) rsChanged(obj any) {
	rs, ok := sharedinformers.As[*appsv1.ReplicaSet](obj)
	if !ok {
		return
	}
	if key, ok := r.ownerOf(rs); ok {
		r.queue.Add(key)
		return
	}
	if metav1.GetControllerOf(rs) == nil && rs.DeletionTimestamp == nil {
		r.enqueueSelecting(rs)
	}
}

func (r *run) rsUpdated(oldObj, obj any) {
	old, rs := oldObj.(*appsv1.ReplicaSet), obj.(*appsv1.ReplicaSet)
	if old.ResourceVersion == rs.ResourceVersion {
		return
	}
	if !reflect.DeepEqual(metav1.GetControllerOf(old), metav1.GetControllerOf(rs)) {
		if key, ok := r.ownerOf(old); ok {
			r.queue.Add(key)
		}
	}
	if key, ok := r.ownerOf(rs); ok {
		r.queue.Add(key)
		return
	}
	if metav1.GetControllerOf(rs) == nil {
		r.enqueueSelecting(rs)
	}
}

// podDeleted wakes a Recreate Deployment whose last old pod went.
func (r *run) podDeleted(obj any) {
	pod, ok := sharedinformers.As[*corev1.Pod](obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := r.rsets.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	key, ok := r.ownerOf(rs)
	if !ok {
		return
	}
	d, err := r.deps.Deployments(pod.Namespace).Get(metav1.GetControllerOf(rs).Name)
	if err == nil && d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		r.queue.Add(key)
	}
}

// sync takes one step of one Deployment.
func (r *run) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	cached, err := r.deps.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d := cached.DeepCopy()
	if d.Spec.Selector == nil || (len(d.Spec.Selector.MatchLabels) == 0 && len(d.Spec.Selector.MatchExpressions) == 0) {
		r.rec.Eventf(d, corev1.EventTypeWarning, ReasonSelectAll, "This deployment is selecting all pods. A non-empty selector is required.")
		if d.Status.ObservedGeneration < d.Generation {
			d.Status.ObservedGeneration = d.Generation
			_, err := r.updateStatus(ctx, d)
			return err
		}
		return nil
	}
	sets, err := r.claim(ctx, d)
	if err != nil {
		return err
	}
	if d.DeletionTimestamp != nil {
		return r.syncStatusOnly(ctx, d, sets)
	}
	if err := r.checkPaused(ctx, d); err != nil {
		return err
	}
	if d.Spec.Paused {
		return r.scaleOnly(ctx, d, sets)
	}
	if scaling, err := r.isScaling(ctx, d, sets); err != nil {
		return err
	} else if scaling {
		return r.scaleOnly(ctx, d, sets)
	}
	switch d.Spec.Strategy.Type {
	case appsv1.RecreateDeploymentStrategyType:
		return r.recreate(ctx, d, sets)
	case appsv1.RollingUpdateDeploymentStrategyType:
		return r.rolling(ctx, d, sets)
	}
	return fmt.Errorf("deployment: %s: unknown strategy %q", key, d.Spec.Strategy.Type)
}

// claim returns the ReplicaSets d controls after adopting matching orphans
// and releasing owned ones that no longer match.
func (r *run) claim(ctx context.Context, d *appsv1.Deployment) ([]*appsv1.ReplicaSet, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return nil, nil // the API validates selectors
	}
	list, err := r.rsets.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	var (
		claimed  []*appsv1.ReplicaSet
		errs     []error
		checked  bool
		adoptErr error
	)
	canAdopt := func() error {
		if !checked {
			checked = true
			rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
			defer cancel()
			fresh, err := r.cfg.Client.AppsV1().Deployments(d.Namespace).Get(rctx, d.Name, metav1.GetOptions{})
			switch {
			case err != nil:
				adoptErr = err
			case fresh.UID != d.UID || fresh.DeletionTimestamp != nil:
				adoptErr = errAdoptionRefused
			}
		}
		return adoptErr
	}
	for _, rs := range list {
		matches := sel.Matches(labels.Set(rs.Labels))
		if ref := metav1.GetControllerOf(rs); ref != nil {
			if ref.UID != d.UID {
				continue
			}
			if matches {
				claimed = append(claimed, rs)
			} else if d.DeletionTimestamp == nil {
				if _, err := r.patchOwner(ctx, d, rs, false); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if !matches || d.DeletionTimestamp != nil || rs.DeletionTimestamp != nil {
			continue
		}
		if err := canAdopt(); err != nil {
			if !errors.Is(err, errAdoptionRefused) {
				errs = append(errs, err)
			}
			continue
		}
		adopted, err := r.patchOwner(ctx, d, rs, true)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if adopted != nil {
			claimed = append(claimed, adopted)
		}
	}
	return claimed, errors.Join(errs...)
}

var errAdoptionRefused = errors.New("deployment: the deployment is gone or going; no adoption")

// patchOwner adopts rs for d (adopt) or releases it, and returns it as
// patched: nil when it went or changed meanwhile.
func (r *run) patchOwner(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet, adopt bool) (*appsv1.ReplicaSet, error) {
	var refs any = []metav1.OwnerReference{controllerRef(d)}
	if !adopt {
		refs = []map[string]any{{"$patch": "delete", "uid": d.UID}}
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": refs, "uid": rs.UID}})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	patched, err := r.cfg.Client.AppsV1().ReplicaSets(rs.Namespace).Patch(rctx, rs.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("deployment: claim replica set %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	r.logger.Info("replica set ownership changed", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name, "adopted", adopt)
	return patched, nil
}

// checkPaused records a pause or resume in the Progressing condition.
func (r *run) checkPaused(ctx context.Context, d *appsv1.Deployment) error {
	if !hasDeadline(d) {
		return nil
	}
	c := condition(&d.Status, appsv1.DeploymentProgressing)
	if c != nil && c.Reason == ReasonTimedOut {
		return nil
	}
	paused := c != nil && c.Reason == ReasonPaused
	now := r.cfg.Now()
	switch {
	case d.Spec.Paused && !paused:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonPaused, "Deployment is paused", now))
	case !d.Spec.Paused && paused:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonResumed, "Deployment is resumed", now))
	default:
		return nil
	}
	updated, err := r.updateStatus(ctx, d)
	if err != nil {
		return err
	}
	*d = *updated
	return nil
}

func (r *run) updateStatus(ctx context.Context, d *appsv1.Deployment) (*appsv1.Deployment, error) {
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	updated, err := r.cfg.Client.AppsV1().Deployments(d.Namespace).UpdateStatus(rctx, d, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("deployment: update status of %s/%s: %w", d.Namespace, d.Name, err)
	}
	return updated, nil
}

// syncStatusOnly writes the status without touching the ReplicaSets.
func (r *run) syncStatusOnly(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	newRS, olds, err := r.newAndOld(ctx, d, sets, false)
	if err != nil {
		return err
	}
	return r.writeStatus(ctx, d, append(olds, newRS), newRS)
}

// writeStatus writes d's status as its ReplicaSets make it, if changed.
func (r *run) writeStatus(ctx context.Context, d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) error {
	st := calculateStatus(d, all, newRS, r.cfg.Now())
	if apiequality.Semantic.DeepEqual(d.Status, st) {
		return nil
	}
	d.Status = st
	_, err := r.updateStatus(ctx, d)
	return err
}

// isScaling reports whether only d's size changed: some active
// ReplicaSet records another desired size.
func (r *run) isScaling(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) (bool, error) {
	newRS, olds, err := r.newAndOld(ctx, d, sets, false)
	if err != nil {
		return false, err
	}
	for _, rs := range active(append(olds, newRS)) {
		if n, ok := intAnnotation(rs, DesiredReplicasAnnotation); ok && n != desired(d) {
			return true, nil
		}
	}
	return false, nil
}

// scaleOnly resizes d's ReplicaSets to its size without a rollout step
// (paused, or a scaling event), and cleans up old ones while paused.
func (r *run) scaleOnly(ctx context.Context, d *appsv1.Deployment, sets []*appsv1.ReplicaSet) error {
	newRS, olds, err := r.newAndOld(ctx, d, sets, false)
	if err != nil {
		return err
	}
	if err := r.scale(ctx, d, newRS, olds); err != nil {
		return err
	}
	if d.Spec.Paused {
		if err := r.cleanup(ctx, d, olds); err != nil {
			return err
		}
	}
	return r.writeStatus(ctx, d, append(olds, newRS), newRS)
}

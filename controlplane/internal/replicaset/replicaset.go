// Package replicaset is the ReplicaSet controller: every ReplicaSet keeps
// spec.replicas active pods that match its selector, created from its
// template and owned by it, as kube-controller-manager's controller does.
//
//	c, err := replicaset.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)              // leader-only: until ctx ends; may run again later
//
// A sync of one ReplicaSet claims its pods (adopts matching orphans,
// releases owned pods that no longer match), creates the missing ones in
// slow-start batches (1, 2, 4, ...) or deletes the extra ones, cheapest to
// lose first, and writes the status (replicas, fullyLabeledReplicas,
// readyReplicas, availableReplicas, observedGeneration, ReplicaFailure).
//
// It works through the Kubernetes API only (informers on ReplicaSets and
// pods, writes through the client), is level-triggered, and may be stopped
// and started again at any moment: in-memory expectations keep one run from
// acting twice on a cache that has not caught up with its own writes, and a
// new run starts from a fresh list of the API's current state.
package replicaset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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

// Event reasons, as in Kubernetes.
const (
	ReasonSuccessfulCreate = "SuccessfulCreate"
	ReasonSuccessfulDelete = "SuccessfulDelete"
	ReasonFailedCreate     = "FailedCreate"
	ReasonFailedDelete     = "FailedDelete"
)

// Component is the source of the controller's events.
const Component = "replicaset-controller"

var controllerKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// ErrAdoptionRefused is returned by a sync when the ReplicaSet changed
// identity or started being deleted since the cache saw it, so it must not
// adopt pods.
var ErrAdoptionRefused = errors.New("replicaset: the replica set is gone or going; no adoption")

// Config configures a Controller.
type Config struct {
	// Client reads and writes ReplicaSets, pods and events.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Now is the clock (availability, expectations' expiry).
	Now func() time.Time
	// Workers is the number of ReplicaSets synced at once.
	Workers int
	// BurstReplicas bounds the pods created or deleted by one sync.
	BurstReplicas int
	// ExpectationsTTL is how long a sync waits for its informer to show
	// the pods it created or deleted before it acts again regardless.
	ExpectationsTTL time.Duration
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed sync.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client, with Kubernetes' values.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), Now: time.Now, Workers: 5, BurstReplicas: 500,
		ExpectationsTTL: 5 * time.Minute, RequestTimeout: 10 * time.Second,
		RetryBase: 5 * time.Millisecond, RetryMax: 60 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("replicaset: config: Client, Logger and Now are required")
	case c.Workers <= 0 || c.BurstReplicas <= 0:
		return fmt.Errorf("replicaset: config: Workers %d and BurstReplicas %d must be positive", c.Workers, c.BurstReplicas)
	case c.ExpectationsTTL <= 0 || c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("replicaset: config: bad ExpectationsTTL %v, RequestTimeout %v or retry bounds %v..%v", c.ExpectationsTTL, c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller keeps ReplicaSets' pods. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// run is the state of one Run: its caches, queue and expectations.
type run struct {
	cfg    Config
	rsets  appslisters.ReplicaSetLister
	pods   corelisters.PodLister
	queue  workqueue.TypedRateLimitingInterface[string]
	expect *expectations
	rec    record.EventRecorder
}

// Run keeps every ReplicaSet's pods until ctx ends; it returns nil then,
// after its goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	r := &run{
		cfg:    c.cfg,
		queue:  workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax),
		expect: newExpectations(c.cfg.Now, c.cfg.ExpectationsTTL),
	}
	defer r.queue.ShutDown()
	rec, stopRec := events.NewRecorder(c.cfg.Client, Component)
	defer stopRec()
	r.rec = rec
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	rsInf := factory.Apps().V1().ReplicaSets()
	podInf := factory.Core().V1().Pods()
	r.rsets, r.pods = rsInf.Lister(), podInf.Lister()
	if _, err := rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueue,
		UpdateFunc: func(_, obj any) { r.enqueue(obj) },
		DeleteFunc: r.enqueue,
	}); err != nil {
		return err
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.addPod,
		UpdateFunc: r.updatePod,
		DeleteFunc: r.deletePod,
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), rsInf.Informer().HasSynced, podInf.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, r.queue, c.cfg.Workers, r.cfg.Logger, "replica set", workers.Once(r.sync))
	return nil
}

func (r *run) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		r.queue.Add(key)
	}
}

// owner returns the key of the ReplicaSet that controls pod, if the cache
// knows it by that UID.
func (r *run) owner(pod *corev1.Pod) (string, bool) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return "", false
	}
	rs, err := r.rsets.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return "", false
	}
	return pod.Namespace + "/" + rs.Name, true
}

// enqueueSelecting queues every ReplicaSet whose selector matches the
// orphan pod, so one of them adopts it.
func (r *run) enqueueSelecting(pod *corev1.Pod) {
	list, err := r.rsets.ReplicaSets(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, rs := range list {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		r.queue.Add(pod.Namespace + "/" + rs.Name)
	}
}

func (r *run) addPod(obj any) {
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		r.deletePod(pod) // a new run's list shows a pod already going
		return
	}
	if key, ok := r.owner(pod); ok {
		r.expect.created(key)
		r.queue.Add(key)
		return
	}
	if metav1.GetControllerOf(pod) == nil {
		r.enqueueSelecting(pod)
	}
}

func (r *run) updatePod(oldObj, obj any) {
	old, pod := oldObj.(*corev1.Pod), obj.(*corev1.Pod)
	if old.ResourceVersion == pod.ResourceVersion {
		return // a resync
	}
	labelsChanged := !apiequality.Semantic.DeepEqual(old.Labels, pod.Labels)
	if pod.DeletionTimestamp != nil {
		// Going: as good as gone for the count, and its owner should know
		// at once rather than when the last grace second has passed.
		r.deletePod(pod)
		if labelsChanged {
			r.deletePod(old)
		}
		return
	}
	oldRef, ref := metav1.GetControllerOf(old), metav1.GetControllerOf(pod)
	refChanged := !apiequality.Semantic.DeepEqual(oldRef, ref)
	if refChanged && oldRef != nil {
		if key, ok := r.owner(old); ok {
			r.queue.Add(key)
		}
	}
	if ref != nil {
		key, ok := r.owner(pod)
		if !ok {
			return
		}
		r.queue.Add(key)
		// A pod that just got ready becomes available after the set's
		// minReadySeconds: look again then.
		if !IsReady(old) && IsReady(pod) {
			if rs, err := r.rsets.ReplicaSets(pod.Namespace).Get(ref.Name); err == nil && rs.Spec.MinReadySeconds > 0 {
				r.queue.AddAfter(key, time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
			}
		}
		return
	}
	if labelsChanged || refChanged {
		r.enqueueSelecting(pod)
	}
}

func (r *run) deletePod(obj any) {
	pod, ok := sharedinformers.As[*corev1.Pod](obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != controllerKind.Kind {
		return
	}
	key := pod.Namespace + "/" + ref.Name
	r.expect.deleted(key, pod.Namespace+"/"+pod.Name)
	r.queue.Add(key)
}

// sync brings one ReplicaSet's pods and status to what its spec asks.
func (r *run) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	rs, err := r.rsets.ReplicaSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.expect.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return nil // the API validates selectors; nothing to do with a broken one
	}
	// Check before listing: pods the informer shows after this point only
	// make the list newer than the expectations assume.
	mayAct := r.expect.satisfied(key)
	all, err := r.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return err
	}
	var active []*corev1.Pod
	for _, p := range all {
		if isActive(p) {
			active = append(active, p)
		}
	}
	pods, err := r.claim(ctx, rs, sel, active)
	if err != nil {
		return err
	}
	var manageErr error
	if mayAct && rs.DeletionTimestamp == nil {
		manageErr = r.manage(ctx, key, rs, pods)
	}
	updated, err := r.updateStatus(ctx, rs, r.status(rs, pods, manageErr))
	if err != nil {
		return err
	}
	if manageErr != nil {
		return manageErr
	}
	want := *updated.Spec.Replicas
	if updated.Spec.MinReadySeconds > 0 && updated.Status.ReadyReplicas == want && updated.Status.AvailableReplicas != want {
		r.queue.AddAfter(key, time.Duration(updated.Spec.MinReadySeconds)*time.Second)
	}
	return nil
}

// claim returns the pods rs controls after adopting the matching orphans
// and releasing the owned pods that no longer match, as Kubernetes'
// ControllerRefManager does.
func (r *run) claim(ctx context.Context, rs *appsv1.ReplicaSet, sel labels.Selector, pods []*corev1.Pod) ([]*corev1.Pod, error) {
	var (
		claimed  []*corev1.Pod
		errs     []error
		checked  bool
		adoptErr error
	)
	canAdopt := func() error {
		if !checked {
			checked = true
			rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
			defer cancel()
			// A fresh read: the cache may not show yet that rs is going or
			// was replaced by another of the same name.
			fresh, err := r.cfg.Client.AppsV1().ReplicaSets(rs.Namespace).Get(rctx, rs.Name, metav1.GetOptions{})
			switch {
			case err != nil:
				adoptErr = err
			case fresh.UID != rs.UID || fresh.DeletionTimestamp != nil:
				adoptErr = ErrAdoptionRefused
			}
		}
		return adoptErr
	}
	for _, pod := range pods {
		matches := sel.Matches(labels.Set(pod.Labels))
		if ref := metav1.GetControllerOf(pod); ref != nil {
			if ref.UID != rs.UID {
				continue
			}
			if matches {
				claimed = append(claimed, pod)
				continue
			}
			if rs.DeletionTimestamp != nil {
				continue
			}
			if err := r.release(ctx, rs, pod); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if !matches || rs.DeletionTimestamp != nil || pod.DeletionTimestamp != nil {
			continue
		}
		if err := canAdopt(); err != nil {
			if !errors.Is(err, ErrAdoptionRefused) {
				errs = append(errs, err)
			}
			continue
		}
		adopted, err := r.adopt(ctx, rs, pod)
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

func controllerRef(rs *appsv1.ReplicaSet) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{
		APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind,
		Name: rs.Name, UID: rs.UID, Controller: &yes, BlockOwnerDeletion: &yes,
	}
}

// adopt makes rs pod's controller. The patch names the pod's UID, so it
// fails rather than adopt another pod that took the name.
func (r *run) adopt(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) (*corev1.Pod, error) {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"ownerReferences": []metav1.OwnerReference{controllerRef(rs)},
		"uid":             pod.UID,
	}})
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	adopted, err := r.cfg.Client.CoreV1().Pods(pod.Namespace).Patch(rctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
		return nil, nil // gone, replaced, or taken by another controller meanwhile
	}
	if err != nil {
		return nil, fmt.Errorf("replicaset: adopt pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	r.cfg.Logger.Info("adopted pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", pod.Namespace+"/"+pod.Name)
	return adopted, nil
}

// release removes rs's ownerReference from pod.
func (r *run) release(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"ownerReferences": []map[string]any{{"$patch": "delete", "uid": rs.UID}},
		"uid":             pod.UID,
	}})
	if err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	_, err = r.cfg.Client.CoreV1().Pods(pod.Namespace).Patch(rctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsInvalid(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("replicaset: release pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	r.cfg.Logger.Info("released pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", pod.Namespace+"/"+pod.Name)
	return nil
}

// manage creates or deletes pods so that rs has spec.replicas of them.
func (r *run) manage(ctx context.Context, key string, rs *appsv1.ReplicaSet, pods []*corev1.Pod) error {
	diff := len(pods) - int(*rs.Spec.Replicas)
	switch {
	case diff < 0:
		n := min(-diff, r.cfg.BurstReplicas)
		r.expect.expectCreates(key, n)
		done, err := slowStart(n, func() error { return r.createPod(ctx, rs) })
		// The creations that were never tried or failed will not show.
		for range n - done {
			r.expect.created(key)
		}
		return err
	case diff > 0:
		n := min(diff, r.cfg.BurstReplicas)
		doomed := append([]*corev1.Pod(nil), pods...)
		sortForDeletion(doomed, r.cfg.Now())
		doomed = doomed[:n]
		keys := make([]string, len(doomed))
		for i, p := range doomed {
			keys[i] = p.Namespace + "/" + p.Name
		}
		r.expect.expectDeletes(key, keys)
		errs := make([]error, len(doomed))
		var wg sync.WaitGroup
		for i, p := range doomed {
			wg.Go(func() {
				if err := r.deletePodOf(ctx, rs, p); err != nil {
					r.expect.deleted(key, keys[i])
					if !apierrors.IsNotFound(err) {
						errs[i] = err
					}
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	return nil
}

// slowStart calls fn count times in batches of 1, 2, 4, ... run in
// parallel, and stops after the first batch with a failure, so that a
// template the API rejects costs one request and not hundreds. It returns
// how many calls succeeded and the first error.
func slowStart(count int, fn func() error) (int, error) {
	done := 0
	for batch := min(count, 1); batch > 0; batch = min(2*batch, count-done) {
		errs := make([]error, batch)
		var wg sync.WaitGroup
		for i := range batch {
			wg.Go(func() { errs[i] = fn() })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				for _, e := range errs {
					if e == nil {
						done++
					}
				}
				return done, err
			}
		}
		done += batch
	}
	return done, nil
}

// podPrefix is the generateName of rs's pods.
func podPrefix(rs *appsv1.ReplicaSet) string {
	prefix := rs.Name + "-"
	if len(prefix) > 58 { // leave room for the generated suffix
		prefix = prefix[:58]
	}
	return prefix
}

// writeContext bounds a pod create or delete by the request timeout but
// not by ctx: a write once sent is waited for even when Run is stopping,
// so that when Run returns every write of this run has happened or failed,
// and the next run's list shows it. A create cancelled mid-flight could
// land after the next run has listed, and that run would create the pod a
// second time.
func (r *run) writeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), r.cfg.RequestTimeout)
}

func (r *run) createPod(ctx context.Context, rs *appsv1.ReplicaSet) error {
	t := rs.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: podPrefix(rs), Namespace: rs.Namespace,
			Labels: t.Labels, Annotations: t.Annotations, Finalizers: t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{controllerRef(rs)},
		},
		Spec: t.Spec,
	}
	if err := ctx.Err(); err != nil {
		return err // stopping: no new writes
	}
	rctx, cancel := r.writeContext(ctx)
	defer cancel()
	created, err := r.cfg.Client.CoreV1().Pods(rs.Namespace).Create(rctx, pod, metav1.CreateOptions{})
	if err != nil {
		if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil // every create fails now, and the set goes with its namespace
		}
		r.rec.Eventf(rs, corev1.EventTypeWarning, ReasonFailedCreate, "Error creating: %v", err)
		return err
	}
	r.cfg.Logger.Debug("created pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", created.Namespace+"/"+created.Name)
	r.rec.Eventf(rs, corev1.EventTypeNormal, ReasonSuccessfulCreate, "Created pod: %v", created.Name)
	return nil
}

func (r *run) deletePodOf(ctx context.Context, rs *appsv1.ReplicaSet, pod *corev1.Pod) error {
	if err := ctx.Err(); err != nil {
		return err // stopping: no new writes
	}
	rctx, cancel := r.writeContext(ctx)
	defer cancel()
	// The UID precondition keeps a stale cache from deleting a new pod
	// that took a deleted one's name.
	err := r.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(rctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pod.UID}})
	if err != nil {
		if apierrors.IsConflict(err) {
			return apierrors.NewNotFound(corev1.Resource("pods"), pod.Name)
		}
		if !apierrors.IsNotFound(err) {
			r.rec.Eventf(rs, corev1.EventTypeWarning, ReasonFailedDelete, "Error deleting: %v", err)
		}
		return err
	}
	r.cfg.Logger.Debug("deleted pod", "replicaset", rs.Namespace+"/"+rs.Name, "pod", pod.Namespace+"/"+pod.Name)
	r.rec.Eventf(rs, corev1.EventTypeNormal, ReasonSuccessfulDelete, "Deleted pod: %v", pod.Name)
	return nil
}

// status computes rs's status from its claimed active pods and the error
// of this sync's creates or deletes.
func (r *run) status(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	templateLabels := labels.Set(rs.Spec.Template.Labels).AsSelectorPreValidated()
	now := r.cfg.Now()
	var full, ready, available int32
	for _, p := range pods {
		if templateLabels.Matches(labels.Set(p.Labels)) {
			full++
		}
		if IsReady(p) {
			ready++
			if IsAvailable(p, rs.Spec.MinReadySeconds, now) {
				available++
			}
		}
	}
	st.Replicas, st.FullyLabeledReplicas, st.ReadyReplicas, st.AvailableReplicas = int32(len(pods)), full, ready, available
	failure := -1
	for i, c := range st.Conditions {
		if c.Type == appsv1.ReplicaSetReplicaFailure {
			failure = i
		}
	}
	switch {
	case manageErr != nil && failure < 0:
		reason := ReasonFailedCreate
		if len(pods) > int(*rs.Spec.Replicas) {
			reason = ReasonFailedDelete
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr == nil && failure >= 0:
		st.Conditions = append(st.Conditions[:failure:failure], st.Conditions[failure+1:]...)
	}
	return st
}

// updateStatus writes st as rs's status, with observedGeneration, unless
// it is already there.
func (r *run) updateStatus(ctx context.Context, rs *appsv1.ReplicaSet, st appsv1.ReplicaSetStatus) (*appsv1.ReplicaSet, error) {
	st.ObservedGeneration = rs.Generation
	if apiequality.Semantic.DeepEqual(rs.Status, st) {
		return rs, nil
	}
	cp := rs.DeepCopy()
	cp.Status = st
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	updated, err := r.cfg.Client.AppsV1().ReplicaSets(rs.Namespace).UpdateStatus(rctx, cp, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("replicaset: update status of %s/%s: %w", rs.Namespace, rs.Name, err)
	}
	return updated, nil
}

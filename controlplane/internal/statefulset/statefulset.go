// Package statefulset is the StatefulSet controller, as in
// kube-controller-manager: each set keeps pods named <set>-<ordinal> for
// ordinals start … start+replicas−1, created in order (OrderedReady: one
// at a time, each once all lower ones are Running and Ready; Parallel: all
// at once), removed from the highest ordinal down, recreated with the same
// name when failed or deleted, and rolled to a new template from the
// highest ordinal down (RollingUpdate, honouring partition and
// maxUnavailable) or when deleted (OnDelete). Templates are recorded as
// ControllerRevisions (package history), so `kubectl rollout status`,
// `history` and `undo` work.
//
//	c, err := statefulset.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)               // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only (informers on statefulsets,
// pods and controllerrevisions; creates, deletes and status updates), is
// level-triggered, and may be stopped and started again at any moment:
// everything is derived from the API's current state, deletes carry the
// uid they were decided on, and expectations keep a lagging cache from
// repeating a create or delete. volumeClaimTemplates are ignored: Skiff
// has no PersistentVolumeClaims.
package statefulset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
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
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/controllerref"
	"github.com/skiff-sh/skiff/controlplane/internal/events"
	"github.com/skiff-sh/skiff/controlplane/internal/expectations"
	"github.com/skiff-sh/skiff/controlplane/internal/history"
)

// Component is the source of the controller's events.
const Component = "statefulset-controller"

// The labels every pod of a set carries besides its template's.
const (
	PodNameLabel  = appsv1.StatefulSetPodNameLabel // statefulset.kubernetes.io/pod-name
	PodIndexLabel = appsv1.PodIndexLabel           // apps.kubernetes.io/pod-index
)

var kind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

// Config configures a Controller.
type Config struct {
	// Client reads and writes statefulsets, pods and controllerrevisions.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Now is the clock (minReadySeconds, expectations).
	Now func() time.Time
	// Workers is how many sets are synced at once.
	Workers int
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed sync.
	RetryBase, RetryMax time.Duration
	// ExpectationsTTL is how long a sync waits at most for the informer to
	// show the controller's own creates and deletes.
	ExpectationsTTL time.Duration
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), Now: time.Now, Workers: 2, RequestTimeout: 10 * time.Second,
		RetryBase: 50 * time.Millisecond, RetryMax: 30 * time.Second, ExpectationsTTL: time.Minute,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("statefulset: config: Client, Logger and Now are required")
	case c.Workers < 1 || c.RequestTimeout <= 0 || c.ExpectationsTTL <= 0:
		return fmt.Errorf("statefulset: config: bad Workers %d, RequestTimeout %v or ExpectationsTTL %v", c.Workers, c.RequestTimeout, c.ExpectationsTTL)
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("statefulset: config: bad retry bounds %v..%v", c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller runs StatefulSets. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

// run is one Run's state: caches, queue, expectations, event recorder.
type run struct {
	cfg       Config
	queue     workqueue.TypedRateLimitingInterface[string]
	sets      appslisters.StatefulSetLister
	refs      *controllerref.Manager // claims pods, by the byController index
	revisions appslisters.ControllerRevisionLister
	expect    *expectations.Expectations
	rec       record.EventRecorder
}

// Run syncs every StatefulSet until ctx ends; it returns nil then, once
// its goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	r := &run{
		cfg:    c.cfg,
		queue:  workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax),
		expect: expectations.New(c.cfg.Now, c.cfg.ExpectationsTTL),
	}
	defer r.queue.ShutDown()
	rec, stopRec := events.NewRecorder(c.cfg.Client, Component)
	defer stopRec()
	r.rec = rec

	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	sets := factory.Apps().V1().StatefulSets()
	pods := factory.Core().V1().Pods()
	revisions := factory.Apps().V1().ControllerRevisions()
	r.sets, r.revisions = sets.Lister(), revisions.Lister()

	enqueueSet := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	if _, err := sets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueSet, UpdateFunc: func(_, obj any) { enqueueSet(obj) }, DeleteFunc: enqueueSet,
	}); err != nil {
		return err
	}
	r.refs = controllerref.New(byController, kind, c.cfg.Client, c.cfg.Logger)
	if err := r.refs.Index(pods.Informer()); err != nil {
		return err
	}
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { r.podEvent(obj, podAdded) },
		UpdateFunc: func(_, obj any) {
			if obj.(*corev1.Pod).DeletionTimestamp != nil {
				r.podEvent(obj, podDeleted)
			} else {
				r.podEvent(obj, podUpdated)
			}
		},
		DeleteFunc: func(obj any) { r.podEvent(obj, podDeleted) },
	}); err != nil {
		return err
	}
	if _, err := revisions.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if rev, ok := sharedinformers.As[*appsv1.ControllerRevision](obj); ok {
				if ref := controllerref.Of(rev, kind); ref != nil {
					r.queue.Add(rev.Namespace + "/" + ref.Name)
				}
			}
		},
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), sets.Informer().HasSynced, pods.Informer().HasSynced, revisions.Informer().HasSynced) {
		return nil // ctx ended
	}

	workers.Run(ctx, r.queue, c.cfg.Workers, c.cfg.Logger, "statefulset", r.sync)
	return nil
}

// What the informer shows happened to a pod.
const (
	podAdded = iota
	podUpdated
	podDeleted // or being deleted
)

// byController names the controller's index of pods by controller uid.
const byController = "statefulset.controller" // unique: the pod informer may be shared

// enqueueSelecting queues the sets in pod's namespace whose selector
// matches it.
func (r *run) enqueueSelecting(pod *corev1.Pod) {
	sets, err := r.sets.StatefulSets(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, set := range sets {
		sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
			r.queue.Add(set.Namespace + "/" + set.Name)
		}
	}
}

// podEvent queues the set controlling a pod and meets expectations.
func (r *run) podEvent(obj any, what int) {
	pod, ok := sharedinformers.As[*corev1.Pod](obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		if what != podDeleted {
			r.enqueueSelecting(pod) // an orphan to adopt
		}
		return
	}
	if ref.Kind != kind.Kind || ref.APIVersion != kind.GroupVersion().String() {
		return
	}
	key := pod.Namespace + "/" + ref.Name
	switch what {
	case podAdded:
		r.expect.Created(key)
	case podDeleted:
		r.expect.Deleted(key, pod.UID)
	}
	r.queue.Add(key)
}

// state is what one sync works from.
type state struct {
	set             *appsv1.StatefulSet
	key             string
	current, update *appsv1.ControllerRevision
	currentTemplate corev1.PodTemplateSpec
	start, replicas int
	pods            map[int]*corev1.Pod // by ordinal, in range or not
	now             time.Time
	requeue         time.Duration // to see a pod become available
	collisionCount  int32
	owned           []*appsv1.ControllerRevision
	monotonic       bool
	minReadySeconds int32
	rollingUpdate   bool
	partition       int
	maxUnavailable  int
}

// sync brings set key one step closer to its spec and records its status.
// It returns when to look again without an event (minReadySeconds), or 0.
func (r *run) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	set, err := r.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.expect.Forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if set.DeletionTimestamp != nil {
		return 0, nil // the garbage collector takes the pods
	}
	if !r.expect.Satisfied(key) {
		return r.cfg.ExpectationsTTL, nil // an informer event comes first, as a rule
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()

	st, err := r.load(ctx, set, key)
	if err != nil {
		return 0, err
	}
	if err := r.step(ctx, st); err != nil {
		return 0, err
	}
	if err := r.writeStatus(ctx, st); err != nil {
		return 0, err
	}
	live := map[string]bool{st.current.Name: true, st.update.Name: true}
	for _, p := range st.pods {
		live[p.Labels[history.HashLabel]] = true
	}
	limit := 10
	if set.Spec.RevisionHistoryLimit != nil {
		limit = int(*set.Spec.RevisionHistoryLimit)
	}
	if err := history.Truncate(ctx, r.cfg.Client, st.owned, live, limit); err != nil {
		return 0, err
	}
	return st.requeue, nil
}

// load reads set's pods and revisions from the caches and makes sure its
// template has a revision.
func (r *run) load(ctx context.Context, set *appsv1.StatefulSet, key string) (*state, error) {
	st := &state{set: set, key: key, now: r.cfg.Now(), pods: map[int]*corev1.Pod{}, collisionCount: ptrOr(set.Status.CollisionCount, 0)}
	st.replicas = int(ptrOr(set.Spec.Replicas, 1))
	if set.Spec.Ordinals != nil {
		st.start = int(set.Spec.Ordinals.Start)
	}
	st.monotonic = set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	st.minReadySeconds = set.Spec.MinReadySeconds
	st.rollingUpdate = set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType
	st.maxUnavailable = 1
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		st.partition = int(ptrOr(ru.Partition, 0))
		if ru.MaxUnavailable != nil {
			n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, st.replicas, false)
			if err == nil {
				st.maxUnavailable = max(n, 1)
			}
		}
	}

	all, err := r.refs.Claim(ctx, set, set.Spec.Selector, func(p *corev1.Pod) bool {
		_, ok := ordinal(set.Name, p.Name)
		return ok
	})
	if err != nil {
		return nil, err
	}
	for _, p := range all {
		if ord, ok := ordinal(set.Name, p.Name); ok {
			st.pods[ord] = p
		}
	}

	revs, err := r.revisions.ControllerRevisions(set.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	st.owned = history.Owned(set, revs)
	update, collisions, err := history.For(r.cfg.Client, set, kind, set.Spec.Template).Sync(ctx, st.owned, st.collisionCount)
	if err != nil {
		if collisions != st.collisionCount {
			// Remember the names tried, so the next sync tries others.
			s := set.DeepCopy()
			s.Status.CollisionCount = &collisions
			if _, uerr := r.cfg.Client.AppsV1().StatefulSets(s.Namespace).UpdateStatus(ctx, s, metav1.UpdateOptions{}); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
		return nil, err
	}
	st.collisionCount = collisions
	st.update = update
	if !slices.ContainsFunc(st.owned, func(r *appsv1.ControllerRevision) bool { return r.Name == update.Name }) {
		st.owned = append(st.owned, update)
	} else {
		for i, o := range st.owned {
			if o.Name == update.Name {
				st.owned[i] = update
			}
		}
	}
	st.current = update
	for _, o := range st.owned {
		if o.Name == set.Status.CurrentRevision {
			st.current = o
		}
	}
	st.currentTemplate = set.Spec.Template
	if st.current != st.update {
		if st.currentTemplate, err = templateOf(st.current); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// ordinal returns the ordinal of pod name in set, if it is one of its names.
func ordinal(set, name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, set+"-")
	if !ok || rest == "" || (len(rest) > 1 && rest[0] == '0') {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// templateOf returns the pod template a revision records.
func templateOf(rev *appsv1.ControllerRevision) (corev1.PodTemplateSpec, error) {
	var patch struct {
		Spec struct {
			Template corev1.PodTemplateSpec `json:"template"`
		} `json:"spec"`
	}
	if err := json.Unmarshal(rev.Data.Raw, &patch); err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("statefulset: revision %s/%s: %w", rev.Namespace, rev.Name, err)
	}
	return patch.Spec.Template, nil
}

func (st *state) inRange(ord int) bool { return ord >= st.start && ord < st.start+st.replicas }

// step takes the next actions: creates and deletes for scaling and
// replacing, then rolling updates. In OrderedReady it stops at the first
// action or unhealthy pod, to come back when the informer shows the change.
func (r *run) step(ctx context.Context, st *state) error {
	for ord := st.start; ord < st.start+st.replicas; ord++ {
		pod := st.pods[ord]
		switch {
		case pod == nil:
			if err := r.create(ctx, st, ord); err != nil || st.monotonic {
				return err
			}
			continue
		case pod.DeletionTimestamp != nil:
			if st.monotonic {
				return nil
			}
			continue
		case pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded:
			// Gone for good: delete it so that it comes back.
			if err := r.delete(ctx, st, pod); err != nil || st.monotonic {
				return err
			}
			continue
		}
		if err := r.fixIdentity(ctx, st, pod, ord); err != nil {
			return err
		}
		if st.monotonic && !st.available(pod) {
			return nil
		}
	}

	var condemned []int
	for ord := range st.pods {
		if !st.inRange(ord) {
			condemned = append(condemned, ord)
		}
	}
	slices.Sort(condemned)
	for i := len(condemned) - 1; i >= 0; i-- {
		pod := st.pods[condemned[i]]
		if pod.DeletionTimestamp != nil {
			if st.monotonic {
				return nil
			}
			continue
		}
		if err := r.delete(ctx, st, pod); err != nil || st.monotonic {
			return err
		}
	}

	if !st.rollingUpdate {
		return nil
	}
	// From the highest ordinal down to the partition, replace pods of
	// other revisions while at most maxUnavailable are unavailable.
	low := st.start + st.partition
	unavailable := 0
	for ord := low; ord < st.start+st.replicas; ord++ {
		if p := st.pods[ord]; p == nil || p.DeletionTimestamp != nil || !st.available(p) {
			unavailable++
		}
	}
	for ord := st.start + st.replicas - 1; ord >= low; ord-- {
		pod := st.pods[ord]
		if pod == nil || pod.DeletionTimestamp != nil || pod.Labels[history.HashLabel] == st.update.Name {
			continue
		}
		if st.available(pod) {
			if unavailable >= st.maxUnavailable {
				return nil
			}
			unavailable++
		}
		if err := r.delete(ctx, st, pod); err != nil {
			return err
		}
	}
	return nil
}

// available reports whether pod is Running and Ready, and has been Ready
// for minReadySeconds; if it is only waiting for minReadySeconds, it asks
// for a sync when that time has passed.
func (st *state) available(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning || pod.DeletionTimestamp != nil {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type != corev1.PodReady {
			continue
		}
		if c.Status != corev1.ConditionTrue {
			return false
		}
		if st.minReadySeconds == 0 {
			return true
		}
		wait := c.LastTransitionTime.Add(time.Duration(st.minReadySeconds) * time.Second).Sub(st.now)
		if wait <= 0 {
			return true
		}
		if st.requeue == 0 || wait < st.requeue {
			st.requeue = wait + time.Second/10
		}
		return false
	}
	return false
}

// runningReady reports whether pod is Running with a true Ready condition.
func runningReady(pod *corev1.Pod) bool {
	if pod.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// newPod returns the pod of ordinal ord: from the current revision below
// the partition of a rolling update, else from the update revision.
func (st *state) newPod(ord int) *corev1.Pod {
	template, rev := st.set.Spec.Template, st.update
	if st.rollingUpdate {
		ru := st.set.Spec.UpdateStrategy.RollingUpdate
		if (ru != nil && ru.Partition != nil && ord < st.start+int(*ru.Partition)) ||
			((ru == nil || ru.Partition == nil) && ord < st.start+int(st.set.Status.CurrentReplicas)) {
			template, rev = st.currentTemplate, st.current
		}
	}
	name := fmt.Sprintf("%s-%d", st.set.Name, ord)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: st.set.Namespace,
			Labels:          maps.Clone(template.Labels),
			Annotations:     maps.Clone(template.Annotations),
			Finalizers:      slices.Clone(template.Finalizers),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(st.set, kind)},
		},
		Spec: *template.Spec.DeepCopy(),
	}
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	pod.Labels[PodNameLabel] = name
	pod.Labels[PodIndexLabel] = strconv.Itoa(ord)
	pod.Labels[history.HashLabel] = rev.Name
	pod.Spec.Hostname = name
	pod.Spec.Subdomain = st.set.Spec.ServiceName
	return pod
}

func (r *run) create(ctx context.Context, st *state, ord int) error {
	pod := st.newPod(ord)
	r.expect.ExpectCreate(st.key)
	created, err := r.cfg.Client.CoreV1().Pods(pod.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		r.expect.Created(st.key)
	}
	if apierrors.IsAlreadyExists(err) {
		return nil // a cache behind: the informer brings it
	}
	if err != nil {
		r.rec.Eventf(st.set, corev1.EventTypeWarning, "FailedCreate", "create Pod %s in StatefulSet %s failed error: %v", pod.Name, st.set.Name, err)
		return fmt.Errorf("statefulset: create pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	st.pods[ord] = created
	r.rec.Eventf(st.set, corev1.EventTypeNormal, "SuccessfulCreate", "create Pod %s in StatefulSet %s successful", pod.Name, st.set.Name)
	r.cfg.Logger.Info("created pod", "statefulset", st.key, "pod", pod.Namespace+"/"+pod.Name, "rev", created.Labels[history.HashLabel])
	return nil
}

// delete deletes pod, the very one the cache shows (its uid).
func (r *run) delete(ctx context.Context, st *state, pod *corev1.Pod) error {
	uid := pod.UID
	r.expect.ExpectDelete(st.key, uid)
	err := r.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil {
		r.expect.Deleted(st.key, uid)
	}
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or another pod by now
	}
	if err != nil {
		r.rec.Eventf(st.set, corev1.EventTypeWarning, "FailedDelete", "delete Pod %s in StatefulSet %s failed error: %v", pod.Name, st.set.Name, err)
		return fmt.Errorf("statefulset: delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	marked := pod.DeepCopy()
	marked.DeletionTimestamp = &metav1.Time{Time: st.now}
	for ord, p := range st.pods {
		if p == pod {
			st.pods[ord] = marked
		}
	}
	r.rec.Eventf(st.set, corev1.EventTypeNormal, "SuccessfulDelete", "delete Pod %s in StatefulSet %s successful", pod.Name, st.set.Name)
	r.cfg.Logger.Info("deleted pod", "statefulset", st.key, "pod", pod.Namespace+"/"+pod.Name)
	return nil
}

// fixIdentity puts back the identity labels of pod ord, if someone took
// them off (hostname and subdomain cannot change on a pod).
func (r *run) fixIdentity(ctx context.Context, st *state, pod *corev1.Pod, ord int) error {
	name, index := pod.Labels[PodNameLabel], pod.Labels[PodIndexLabel]
	if name == pod.Name && index == strconv.Itoa(ord) {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"labels": map[string]string{PodNameLabel: pod.Name, PodIndexLabel: strconv.Itoa(ord)},
	}})
	if err != nil {
		return err
	}
	_, err = r.cfg.Client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// writeStatus records what the caches show (after this sync's own
// actions) in the set's status, if that changes it.
func (r *run) writeStatus(ctx context.Context, st *state) error {
	status := appsv1.StatefulSetStatus{
		ObservedGeneration: st.set.Generation,
		CurrentRevision:    st.current.Name,
		UpdateRevision:     st.update.Name,
		CollisionCount:     &st.collisionCount,
		Conditions:         st.set.Status.Conditions,
	}
	for _, p := range st.pods {
		status.Replicas++
		if runningReady(p) {
			status.ReadyReplicas++
			if st.available(p) {
				status.AvailableReplicas++
			}
		}
		if p.DeletionTimestamp == nil {
			if p.Labels[history.HashLabel] == st.current.Name {
				status.CurrentReplicas++
			}
			if p.Labels[history.HashLabel] == st.update.Name {
				status.UpdatedReplicas++
			}
		}
	}
	// A finished rolling update makes the update revision current.
	if st.rollingUpdate && status.UpdatedReplicas == status.Replicas && status.ReadyReplicas == status.Replicas {
		status.CurrentRevision, status.CurrentReplicas = st.update.Name, status.UpdatedReplicas
	}
	if apiequality.Semantic.DeepEqual(status, st.set.Status) {
		return nil
	}
	set := st.set.DeepCopy()
	set.Status = status
	if _, err := r.cfg.Client.AppsV1().StatefulSets(set.Namespace).UpdateStatus(ctx, set, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("statefulset: update status of %s: %w", st.key, err)
	}
	return nil
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

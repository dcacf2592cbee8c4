// Package daemonset is the DaemonSet controller, as in
// kube-controller-manager: each set keeps one pod on every node it should
// run on (the node matches its node selector and required node affinity,
// and the pod tolerates the node's NoSchedule and NoExecute taints), adds
// pods for new nodes, removes pods from nodes it should no longer run on,
// replaces failed pods, and rolls to a new template (RollingUpdate with
// maxUnavailable and maxSurge, or OnDelete). Templates are recorded as
// ControllerRevisions (package history), so `kubectl rollout status`,
// `history` and `undo` work.
//
//	c, err := daemonset.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)             // leader-only: until ctx ends; may run again later
//
// Like upstream, it does not bind: a pod gets required node affinity
// matchFields metadata.name In [node] and the scheduler binds it. Pods of
// nodes that no longer exist are left to pod garbage collection and not
// counted. It works through the Kubernetes API only (informers on
// daemonsets, nodes, pods and controllerrevisions), is level-triggered, and
// may be stopped and started again at any moment: everything is derived
// from the API's current state, deletes carry the uid they were decided
// on, and expectations keep a lagging cache from repeating a create or
// delete.
package daemonset

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/controllerref"
	"github.com/skiff-sh/skiff/controlplane/internal/events"
	"github.com/skiff-sh/skiff/controlplane/internal/expectations"
	"github.com/skiff-sh/skiff/controlplane/internal/history"
)

// Component is the source of the controller's events.
const Component = "daemonset-controller"

// TemplateGenerationLabel carries, on pods, the set's deprecated template
// generation annotation, when the set has one (pods made before
// controller revisions were matched by it).
const (
	TemplateGenerationLabel      = "pod-template-generation"
	TemplateGenerationAnnotation = "deprecated.daemonset.template.generation"
)

var kind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

// Config configures a Controller.
type Config struct {
	// Client reads and writes daemonsets, pods and controllerrevisions,
	// and reads nodes.
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
	// FailedPodBackoff and FailedPodBackoffMax bound how long a node's
	// failed pod waits before it is replaced again (doubling each time), so
	// that a pod that fails at once does not churn.
	FailedPodBackoff, FailedPodBackoffMax time.Duration
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), Now: time.Now, Workers: 2, RequestTimeout: 10 * time.Second,
		RetryBase: 50 * time.Millisecond, RetryMax: 30 * time.Second, ExpectationsTTL: time.Minute,
		FailedPodBackoff: time.Second, FailedPodBackoffMax: 15 * time.Minute,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("daemonset: config: Client, Logger and Now are required")
	case c.Workers < 1 || c.RequestTimeout <= 0 || c.ExpectationsTTL <= 0:
		return fmt.Errorf("daemonset: config: bad Workers %d, RequestTimeout %v or ExpectationsTTL %v", c.Workers, c.RequestTimeout, c.ExpectationsTTL)
	case c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("daemonset: config: bad retry bounds %v..%v", c.RetryBase, c.RetryMax)
	case c.FailedPodBackoff <= 0 || c.FailedPodBackoffMax < c.FailedPodBackoff:
		return fmt.Errorf("daemonset: config: bad failed pod back-off %v..%v", c.FailedPodBackoff, c.FailedPodBackoffMax)
	}
	return nil
}

// Controller runs DaemonSets. See the package comment.
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
	sets      appslisters.DaemonSetLister
	nodes     corelisters.NodeLister
	refs      *controllerref.Manager // claims pods, by the byController index
	revisions appslisters.ControllerRevisionLister
	expect    *expectations.Expectations
	rec       record.EventRecorder
	// backoff delays replacing failed pods, by set uid and node.
	backoff *flowcontrol.Backoff
}

// What the informer shows happened to a pod.
const (
	podAdded = iota
	podUpdated
	podDeleted // or being deleted
)

// Run syncs every DaemonSet until ctx ends; it returns nil then, once its
// goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	r := &run{
		cfg:     c.cfg,
		queue:   workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax),
		expect:  expectations.New(c.cfg.Now, c.cfg.ExpectationsTTL),
		backoff: flowcontrol.NewBackOff(c.cfg.FailedPodBackoff, c.cfg.FailedPodBackoffMax),
	}
	defer r.queue.ShutDown()
	rec, stopRec := events.NewRecorder(c.cfg.Client, Component)
	defer stopRec()
	r.rec = rec

	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	sets := factory.Apps().V1().DaemonSets()
	nodes := factory.Core().V1().Nodes()
	pods := factory.Core().V1().Pods()
	revisions := factory.Apps().V1().ControllerRevisions()
	r.sets, r.nodes, r.revisions = sets.Lister(), nodes.Lister(), revisions.Lister()

	enqueueSet := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	enqueueAll := func() {
		all, err := r.sets.List(labels.Everything())
		if err != nil {
			return
		}
		for _, s := range all {
			r.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
	if _, err := sets.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueueSet, UpdateFunc: func(_, obj any) { enqueueSet(obj) }, DeleteFunc: enqueueSet,
	}); err != nil {
		return err
	}
	if _, err := nodes.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { enqueueAll() },
		UpdateFunc: func(oldObj, obj any) {
			o, n := oldObj.(*corev1.Node), obj.(*corev1.Node)
			// Heartbeats change nothing a daemon set looks at.
			if !maps.Equal(o.Labels, n.Labels) || !apiequality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) {
				enqueueAll()
			}
		},
		DeleteFunc: func(any) { enqueueAll() },
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
	if !cache.WaitForCacheSync(ctx.Done(), sets.Informer().HasSynced, nodes.Informer().HasSynced, pods.Informer().HasSynced, revisions.Informer().HasSynced) {
		return nil // ctx ended
	}

	// The failed pods' back-off forgets sets it has not seen for a while.
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		gc := time.NewTicker(c.cfg.FailedPodBackoffMax)
		defer gc.Stop()
		for {
			select {
			case <-gc.C:
				r.backoff.GC()
			case <-ctx.Done():
				return
			}
		}
	}()
	workers.Run(ctx, r.queue, c.cfg.Workers, c.cfg.Logger, "daemonset", r.sync)
	<-gcDone
	return nil
}

// byController names the controller's index of pods by controller uid.
const byController = "daemonset.controller" // unique: the pod informer may be shared

// enqueueSelecting queues the sets in pod's namespace whose selector
// matches it.
func (r *run) enqueueSelecting(pod *corev1.Pod) {
	sets, err := r.sets.DaemonSets(pod.Namespace).List(labels.Everything())
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

// nodeState is one node as a set sees it.
type nodeState struct {
	node *corev1.Node
	// shouldRun: a pod belongs there; keep: a pod there may stay (it
	// tolerates the node's NoExecute taints, if not its NoSchedule ones).
	shouldRun, keep bool
	pods            []*corev1.Pod // the set's pods targeting the node, not being deleted, oldest first
	terminating     bool          // one of its pods is being deleted
}

// state is what one sync works from.
type state struct {
	set     *appsv1.DaemonSet
	key     string
	hash    string // of the current revision
	now     time.Time
	requeue time.Duration
	nodes   []*nodeState // by name
	acted   bool         // this sync created or deleted something
}

// sync brings set key one step closer to its spec and records its status.
// It returns when to look again without an event (minReadySeconds), or 0.
func (r *run) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	set, err := r.sets.DaemonSets(ns).Get(name)
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

	revs, err := r.revisions.ControllerRevisions(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	owned := history.Owned(set, revs)
	collisions := ptrOr(set.Status.CollisionCount, 0)
	cur, newCollisions, err := history.For(r.cfg.Client, set, kind, set.Spec.Template).Sync(ctx, owned, collisions)
	if err != nil {
		if newCollisions != collisions {
			s := set.DeepCopy()
			s.Status.CollisionCount = &newCollisions
			if _, uerr := r.cfg.Client.AppsV1().DaemonSets(ns).UpdateStatus(ctx, s, metav1.UpdateOptions{}); uerr != nil {
				err = errors.Join(err, uerr)
			}
		}
		return 0, err
	}
	if !slices.ContainsFunc(owned, func(o *appsv1.ControllerRevision) bool { return o.Name == cur.Name }) {
		owned = append(owned, cur)
	}

	st, err := r.load(ctx, set, key, cur.Labels[history.HashLabel])
	if err != nil {
		return 0, err
	}
	if err := r.manage(ctx, st); err != nil {
		return 0, err
	}
	if !st.acted && set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if err := r.rollingUpdate(ctx, st); err != nil {
			return 0, err
		}
	}
	if err := r.writeStatus(ctx, st, newCollisions); err != nil {
		return 0, err
	}

	live := map[string]bool{cur.Name: true}
	byHash := map[string]string{}
	for _, o := range owned {
		byHash[o.Labels[history.HashLabel]] = o.Name
	}
	for _, n := range st.nodes {
		for _, p := range n.pods {
			live[byHash[p.Labels[history.HashLabel]]] = true
		}
	}
	limit := 10
	if set.Spec.RevisionHistoryLimit != nil {
		limit = int(*set.Spec.RevisionHistoryLimit)
	}
	if err := history.Truncate(ctx, r.cfg.Client, owned, live, limit); err != nil {
		return 0, err
	}
	return st.requeue, nil
}

// load reads the nodes and the set's pods from the caches.
func (r *run) load(ctx context.Context, set *appsv1.DaemonSet, key, hash string) (*state, error) {
	st := &state{set: set, key: key, hash: hash, now: r.cfg.Now()}
	nodes, err := r.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	slices.SortFunc(nodes, func(a, b *corev1.Node) int { return cmp.Compare(a.Name, b.Name) })
	byName := map[string]*nodeState{}
	template := podSpec(set, "")
	for _, n := range nodes {
		ns := &nodeState{node: n}
		ns.shouldRun, ns.keep = shouldRun(set, &template, n)
		byName[n.Name] = ns
		st.nodes = append(st.nodes, ns)
	}
	all, err := r.refs.Claim(ctx, set, set.Spec.Selector, func(*corev1.Pod) bool { return true })
	if err != nil {
		return nil, err
	}
	for _, p := range all {
		n := byName[targetNode(p)]
		if n == nil {
			continue // a node gone: pod garbage collection's
		}
		if p.DeletionTimestamp != nil {
			n.terminating = true
			continue
		}
		n.pods = append(n.pods, p)
	}
	for _, n := range st.nodes {
		slices.SortStableFunc(n.pods, func(a, b *corev1.Pod) int {
			return cmp.Or(a.CreationTimestamp.Compare(b.CreationTimestamp.Time), cmp.Compare(a.Name, b.Name))
		})
	}
	return st, nil
}

// targetNode returns the node pod is bound to or meant for.
func targetNode(pod *corev1.Pod) string {
	if pod.Spec.NodeName != "" {
		return pod.Spec.NodeName
	}
	a := pod.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return ""
	}
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		for _, f := range term.MatchFields {
			if f.Key == metav1.ObjectNameField && f.Operator == corev1.NodeSelectorOpIn && len(f.Values) == 1 {
				return f.Values[0]
			}
		}
	}
	return ""
}

// manage creates the pods nodes lack and deletes those that should not be:
// failed ones, extra ones, and those on nodes the set no longer runs on.
func (r *run) manage(ctx context.Context, st *state) error {
	surge := allowsSurge(st.set)
	var errs []error
	for _, n := range st.nodes {
		var del []*corev1.Pod
		switch {
		case n.shouldRun && len(n.pods) == 0 && !n.terminating:
			errs = append(errs, r.create(ctx, st, n.node.Name))
			continue
		case n.keep:
			var running []*corev1.Pod
			for _, p := range n.pods {
				if p.Status.Phase == corev1.PodFailed {
					key := string(st.set.UID) + "/" + n.node.Name
					if r.backoff.IsInBackOffSinceUpdate(key, st.now) {
						st.lookAgain(r.backoff.Get(key))
						continue
					}
					r.backoff.Next(key, st.now)
					r.rec.Eventf(st.set, corev1.EventTypeWarning, "FailedDaemonPod", "Found failed daemon pod %s/%s on node %s, will try to kill it", p.Namespace, p.Name, n.node.Name)
					del = append(del, p)
					continue
				}
				running = append(running, p)
			}
			if !surge {
				if len(running) > 1 {
					del = append(del, running[1:]...) // keep the oldest
				}
				break
			}
			// With surge, an old and a new pod may share a node while the
			// new one is not available yet and the old one is ready.
			var oldestNew, oldestOld *corev1.Pod
			for _, p := range running {
				switch {
				case p.Labels[history.HashLabel] == st.hash && oldestNew == nil:
					oldestNew = p
				case p.Labels[history.HashLabel] != st.hash && oldestOld == nil:
					oldestOld = p
				default:
					del = append(del, p)
				}
			}
			if oldestNew != nil && oldestOld != nil && (!ready(oldestOld) || st.available(oldestNew)) {
				del = append(del, oldestOld)
			}
		default:
			del = n.pods
		}
		for _, p := range del {
			errs = append(errs, r.delete(ctx, st, p))
		}
	}
	return errors.Join(errs...)
}

// rollingUpdate replaces pods of older revisions: with maxSurge, a new pod
// first and the old one once the new is available; else the old pod first,
// while at most maxUnavailable nodes lack an available pod.
func (r *run) rollingUpdate(ctx context.Context, st *state) error {
	desired := 0
	for _, n := range st.nodes {
		if n.shouldRun {
			desired++
		}
	}
	maxSurge, maxUnavailable := limits(st.set, desired)
	var errs []error
	if maxSurge == 0 {
		unavailable := 0
		var free, candidates []*corev1.Pod
		for _, n := range st.nodes {
			if !n.shouldRun && len(n.pods) == 0 {
				continue
			}
			newPod, oldPod, ok := st.split(n.pods)
			switch {
			case !ok || (newPod == nil) == (oldPod == nil):
				unavailable++ // none, or manage's to sort out
			case newPod != nil:
				if !st.available(newPod) {
					unavailable++
				}
			case !st.available(oldPod):
				free = append(free, oldPod) // unavailable anyway: replace at once
			default:
				candidates = append(candidates, oldPod)
			}
		}
		n := min(max(maxUnavailable-unavailable, 0), len(candidates))
		for _, p := range append(free, candidates[:n]...) {
			errs = append(errs, r.delete(ctx, st, p))
		}
		return errors.Join(errs...)
	}

	surged := 0
	var free, candidates []string
	for _, n := range st.nodes {
		if !n.shouldRun {
			continue
		}
		newPod, oldPod, ok := st.split(n.pods)
		switch {
		case !ok:
			surged++
		case oldPod == nil:
		case newPod == nil:
			if !st.available(oldPod) {
				free = append(free, n.node.Name)
			} else {
				candidates = append(candidates, n.node.Name)
			}
		case !st.available(newPod):
			surged++
		default:
			errs = append(errs, r.delete(ctx, st, oldPod))
		}
	}
	n := min(max(maxSurge-surged, 0), len(candidates))
	for _, node := range append(free, candidates[:n]...) {
		errs = append(errs, r.create(ctx, st, node))
	}
	return errors.Join(errs...)
}

// split returns a node's pod of the current revision and its pod of an
// older one; ok is false when it has more than one of either.
func (st *state) split(pods []*corev1.Pod) (newPod, oldPod *corev1.Pod, ok bool) {
	for _, p := range pods {
		if p.Status.Phase == corev1.PodFailed {
			return nil, nil, false
		}
		if p.Labels[history.HashLabel] == st.hash {
			if newPod != nil {
				return nil, nil, false
			}
			newPod = p
		} else {
			if oldPod != nil {
				return nil, nil, false
			}
			oldPod = p
		}
	}
	return newPod, oldPod, true
}

// allowsSurge reports whether set's rolling update may run two pods on a
// node.
func allowsSurge(set *appsv1.DaemonSet) bool {
	ru := set.Spec.UpdateStrategy.RollingUpdate
	if set.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil || ru.MaxSurge == nil {
		return false
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, 1, true)
	return err == nil && n > 0
}

// limits returns maxSurge and maxUnavailable for desired nodes (percents
// round up); with neither, one node at a time.
func limits(set *appsv1.DaemonSet, desired int) (surge, unavailable int) {
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			surge, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxSurge, desired, true)
		}
		if ru.MaxUnavailable != nil {
			unavailable, _ = intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, desired, true)
		} else if surge == 0 {
			unavailable = 1
		}
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

// available reports whether pod has been Ready for the set's
// minReadySeconds; if it only waits for that, it asks for a sync then.
func (st *state) available(pod *corev1.Pod) bool {
	c := readyCondition(pod)
	if c == nil || c.Status != corev1.ConditionTrue {
		return false
	}
	if st.set.Spec.MinReadySeconds == 0 {
		return true
	}
	wait := c.LastTransitionTime.Add(time.Duration(st.set.Spec.MinReadySeconds) * time.Second).Sub(st.now)
	if wait <= 0 {
		return true
	}
	st.lookAgain(wait + time.Second/10)
	return false
}

// lookAgain asks for a sync after d at the latest.
func (st *state) lookAgain(d time.Duration) {
	if st.requeue == 0 || d < st.requeue {
		st.requeue = d
	}
}

func ready(pod *corev1.Pod) bool {
	c := readyCondition(pod)
	return c != nil && c.Status == corev1.ConditionTrue
}

func readyCondition(pod *corev1.Pod) *corev1.PodCondition {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == corev1.PodReady {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

// podSpec returns the spec of set's pods for node (any node when node is
// ""): its template's with the daemon tolerations and, for a node, required
// node affinity to it alone.
func podSpec(set *appsv1.DaemonSet, node string) corev1.PodSpec {
	spec := *set.Spec.Template.Spec.DeepCopy()
	for _, t := range daemonTolerations(spec.HostNetwork) {
		if !slices.ContainsFunc(spec.Tolerations, func(have corev1.Toleration) bool {
			return have.Key == t.Key && have.Effect == t.Effect && have.Operator == t.Operator && have.Value == t.Value && have.TolerationSeconds == nil
		}) {
			spec.Tolerations = append(spec.Tolerations, t)
		}
	}
	if node == "" {
		return spec
	}
	if spec.Affinity == nil {
		spec.Affinity = &corev1.Affinity{}
	}
	if spec.Affinity.NodeAffinity == nil {
		spec.Affinity.NodeAffinity = &corev1.NodeAffinity{}
	}
	// The node was found to match the set's own terms: they give way to it.
	spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution = &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{
			Key: metav1.ObjectNameField, Operator: corev1.NodeSelectorOpIn, Values: []string{node},
		}}}},
	}
	return spec
}

// daemonTolerations are the tolerations every daemon pod gets, as
// upstream: it stays on nodes that are not ready, unreachable, under
// pressure or cordoned (and, on the host network, without pod network).
func daemonTolerations(hostNetwork bool) []corev1.Toleration {
	t := []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
	if hostNetwork {
		t = append(t, corev1.Toleration{Key: corev1.TaintNodeNetworkUnavailable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
	return t
}

// shouldRun reports whether a pod of set with spec belongs on node
// (shouldRun), and whether one there may stay (keep): a node that does not
// match the set's node name, selector or affinity gets none; one with a
// NoSchedule taint the pod does not tolerate gets no new pod but keeps one
// that runs; one with such a NoExecute taint keeps none.
func shouldRun(set *appsv1.DaemonSet, spec *corev1.PodSpec, node *corev1.Node) (run, keep bool) {
	if spec.NodeName != "" && spec.NodeName != node.Name {
		return false, false
	}
	if !matchesNode(spec, node) {
		return false, false
	}
	run, keep = true, true
	for i := range node.Spec.Taints {
		taint := &node.Spec.Taints[i]
		if taint.Effect != corev1.TaintEffectNoSchedule && taint.Effect != corev1.TaintEffectNoExecute {
			continue
		}
		if slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return tolerates(&t, taint) }) {
			continue
		}
		run = false
		if taint.Effect == corev1.TaintEffectNoExecute {
			keep = false
		}
	}
	return run, keep
}

// tolerates reports whether t tolerates taint.
func tolerates(t *corev1.Toleration, taint *corev1.Taint) bool {
	if t.Effect != "" && t.Effect != taint.Effect {
		return false
	}
	switch t.Operator {
	case corev1.TolerationOpExists:
		return t.Key == "" || t.Key == taint.Key
	case corev1.TolerationOpEqual, "":
		return t.Key == taint.Key && t.Value == taint.Value
	}
	return false
}

// matchesNode reports whether node satisfies spec's node selector and
// required node affinity.
func matchesNode(spec *corev1.PodSpec, node *corev1.Node) bool {
	for k, v := range spec.NodeSelector {
		if have, ok := node.Labels[k]; !ok || have != v {
			return false
		}
	}
	a := spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
		return true
	}
	// Terms are ORed; a term's requirements ANDed; an empty term matches
	// nothing.
	for _, term := range a.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms {
		if len(term.MatchExpressions) == 0 && len(term.MatchFields) == 0 {
			continue
		}
		ok := true
		for _, req := range term.MatchExpressions {
			v, has := node.Labels[req.Key]
			ok = ok && requirementMatches(req, v, has)
		}
		for _, req := range term.MatchFields {
			ok = ok && req.Key == metav1.ObjectNameField && requirementMatches(req, node.Name, true)
		}
		if ok {
			return true
		}
	}
	return false
}

// requirementMatches reports whether a value (present or not) satisfies
// req.
func requirementMatches(req corev1.NodeSelectorRequirement, v string, has bool) bool {
	switch req.Operator {
	case corev1.NodeSelectorOpIn:
		return has && slices.Contains(req.Values, v)
	case corev1.NodeSelectorOpNotIn:
		return !has || !slices.Contains(req.Values, v)
	case corev1.NodeSelectorOpExists:
		return has
	case corev1.NodeSelectorOpDoesNotExist:
		return !has
	case corev1.NodeSelectorOpGt, corev1.NodeSelectorOpLt:
		if !has || len(req.Values) != 1 {
			return false
		}
		have, err1 := strconv.ParseInt(v, 10, 64)
		want, err2 := strconv.ParseInt(req.Values[0], 10, 64)
		if err1 != nil || err2 != nil {
			return false
		}
		if req.Operator == corev1.NodeSelectorOpGt {
			return have > want
		}
		return have < want
	}
	return false
}

// create creates the set's pod for node, of the current revision.
func (r *run) create(ctx context.Context, st *state, node string) error {
	set := st.set
	lbls := maps.Clone(set.Spec.Template.Labels)
	if lbls == nil {
		lbls = map[string]string{}
	}
	lbls[history.HashLabel] = st.hash
	if g, ok := set.Annotations[TemplateGenerationAnnotation]; ok {
		lbls[TemplateGenerationLabel] = g
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: set.Name + "-", Namespace: set.Namespace,
			Labels:          lbls,
			Annotations:     maps.Clone(set.Spec.Template.Annotations),
			Finalizers:      slices.Clone(set.Spec.Template.Finalizers),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(set, kind)},
		},
		Spec: podSpec(set, node),
	}
	st.acted = true
	r.expect.ExpectCreate(st.key)
	created, err := r.cfg.Client.CoreV1().Pods(set.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		r.expect.Created(st.key)
		r.rec.Eventf(set, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return fmt.Errorf("daemonset: create pod of %s for node %s: %w", st.key, node, err)
	}
	r.rec.Eventf(set, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", created.Name)
	r.cfg.Logger.Info("created pod", "daemonset", st.key, "pod", created.Namespace+"/"+created.Name, "node", node, "rev", st.hash)
	return nil
}

// delete deletes pod, the very one the cache shows (its uid).
func (r *run) delete(ctx context.Context, st *state, pod *corev1.Pod) error {
	st.acted = true
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
		r.rec.Eventf(st.set, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
		return fmt.Errorf("daemonset: delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	r.rec.Eventf(st.set, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", pod.Name)
	r.cfg.Logger.Info("deleted pod", "daemonset", st.key, "pod", pod.Namespace+"/"+pod.Name, "node", targetNode(pod))
	return nil
}

// writeStatus records in the set's status what the caches showed at the
// start of this sync, if that changes it.
func (r *run) writeStatus(ctx context.Context, st *state, collisions int32) error {
	status := appsv1.DaemonSetStatus{
		ObservedGeneration: st.set.Generation,
		CollisionCount:     &collisions,
		Conditions:         st.set.Status.Conditions,
	}
	for _, n := range st.nodes {
		if !n.shouldRun {
			if len(n.pods) > 0 {
				status.NumberMisscheduled++
			}
			continue
		}
		status.DesiredNumberScheduled++
		if len(n.pods) == 0 {
			continue
		}
		status.CurrentNumberScheduled++
		// The oldest pod speaks for the node.
		p := n.pods[0]
		if ready(p) {
			status.NumberReady++
			if st.available(p) {
				status.NumberAvailable++
			}
		}
		if p.Labels[history.HashLabel] == st.hash {
			status.UpdatedNumberScheduled++
		}
	}
	status.NumberUnavailable = status.DesiredNumberScheduled - status.NumberAvailable
	if apiequality.Semantic.DeepEqual(status, st.set.Status) {
		return nil
	}
	set := st.set.DeepCopy()
	set.Status = status
	if _, err := r.cfg.Client.AppsV1().DaemonSets(set.Namespace).UpdateStatus(ctx, set, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("daemonset: update status of %s: %w", st.key, err)
	}
	return nil
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// Package endpointslice is the EndpointSlice controller: for every Service
// with a selector it keeps discovery.k8s.io/v1 EndpointSlices listing the
// selected pods, as kube-controller-manager's endpointslice controller
// does. netproxy programs Service routing from these slices.
//
//	c, err := endpointslice.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)                 // leader-only: until ctx ends; may run again later
//
// Slices are named "<service>-" plus a generated suffix, labelled
// kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by
// (endpointslice-controller.k8s.io), carry the Service's own labels, and
// have the Service as their controller owner, so the garbage collector
// deletes them with it. One slice holds the endpoints that share one
// resolved port set, at most MaxEndpointsPerSlice of them.
//
// Every pod that is not terminal and has an IP of the slice's family is an
// endpoint, terminating pods included: serving is the pod's Ready
// condition, terminating is whether it has a deletionTimestamp, and ready
// is serving and not terminating (always true when the Service publishes
// not-ready addresses). Each address type of the Service (its ipFamilies)
// has its own slices; a type without endpoints keeps one empty placeholder
// slice.
//
// Changes touch as few slices as possible: slices are updated in place,
// new endpoints go first into slices being updated anyway, and a slice that
// would be deleted is reused rather than another one created. Writes the
// informer cache has not shown yet make the next sync of that Service wait
// (never a duplicate slice from a stale cache).
package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	listersdiscoveryv1 "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/endpoints"
	"github.com/skiff-sh/skiff/controlplane/internal/events"
)

// ControllerName is the endpointslice.kubernetes.io/managed-by value of the
// slices this controller owns.
const ControllerName = "endpointslice-controller.k8s.io"

// ErrStaleCache is returned by a sync that found the informer cache behind
// this controller's own writes; the Service is synced again shortly.
var ErrStaleCache = errors.New("endpointslice: informer cache behind the controller's own writes")

// Config configures a Controller.
type Config struct {
	// Client reads services, pods and nodes and writes endpoint slices.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// MaxEndpointsPerSlice is the most endpoints one slice holds
	// (kube-controller-manager's --max-endpoints-per-slice).
	MaxEndpointsPerSlice int
	// Workers is how many services are synced at once.
	Workers int
	// BatchPeriod delays a sync after a pod change so that a burst of
	// changes is written once (0 syncs at once).
	BatchPeriod time.Duration
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed sync.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), MaxEndpointsPerSlice: 100, Workers: 5, RequestTimeout: 10 * time.Second,
		RetryBase: 5 * time.Millisecond, RetryMax: 100 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil:
		return errors.New("endpointslice: config: Client and Logger are required")
	case c.MaxEndpointsPerSlice < 1 || c.MaxEndpointsPerSlice > 1000:
		return fmt.Errorf("endpointslice: config: MaxEndpointsPerSlice %d not in 1..1000", c.MaxEndpointsPerSlice)
	case c.Workers <= 0 || c.BatchPeriod < 0 || c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("endpointslice: config: bad Workers %d, BatchPeriod %v, RequestTimeout %v or retry bounds %v..%v",
			c.Workers, c.BatchPeriod, c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller keeps the EndpointSlices of selector Services. See the
// package comment.
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
	rec      record.EventRecorder
	services listerscorev1.ServiceLister
	pods     listerscorev1.PodLister
	nodes    listerscorev1.NodeLister
	slices   listersdiscoveryv1.EndpointSliceLister
	queue    workqueue.TypedRateLimitingInterface[string]
	triggers *endpoints.TriggerTimes
	expect   *expectations
}

// Run keeps the EndpointSlices of every selector Service until ctx ends;
// it returns nil then, after its goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	rec, stopRec := events.NewRecorder(c.cfg.Client, "endpoint-slice-controller")
	defer stopRec()
	queue := workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)
	defer queue.ShutDown()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	r := &run{
		Controller: c, rec: rec, services: svcInf.Lister(), pods: podInf.Lister(), nodes: nodeInf.Lister(),
		slices: sliceInf.Lister(), queue: queue, triggers: endpoints.NewTriggerTimes(), expect: newExpectations(),
	}
	onService := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onService, UpdateFunc: func(_, obj any) { onService(obj) }, DeleteFunc: onService,
	}); err != nil {
		return err
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { r.onPod(nil, obj) },
		UpdateFunc: func(old, obj any) {
			if old.(*corev1.Pod).ResourceVersion != obj.(*corev1.Pod).ResourceVersion {
				r.onPod(old, obj)
			}
		},
		DeleteFunc: func(obj any) { r.onPod(nil, obj) },
	}); err != nil {
		return err
	}
	onSlice := func(obj any) {
		if s, ok := sharedinformers.As[*discoveryv1.EndpointSlice](obj); ok && s.Labels[discoveryv1.LabelManagedBy] == ControllerName && s.Labels[discoveryv1.LabelServiceName] != "" {
			queue.Add(s.Namespace + "/" + s.Labels[discoveryv1.LabelServiceName])
		}
	}
	if _, err := sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: onSlice, UpdateFunc: func(_, obj any) { onSlice(obj) }, DeleteFunc: onSlice,
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, podInf.Informer().HasSynced, nodeInf.Informer().HasSynced, sliceInf.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, queue, c.cfg.Workers, c.cfg.Logger, "endpoint slices", workers.Once(r.sync))
	return nil
}

// onPod queues the services that select the pod, before and after the
// change.
func (r *run) onPod(old, obj any) {
	for _, o := range []any{old, obj} {
		if pod, ok := sharedinformers.As[*corev1.Pod](o); ok {
			for _, key := range endpoints.ServicesSelecting(r.services, pod) {
				r.queue.AddAfter(key, r.cfg.BatchPeriod)
			}
		}
	}
}

// sync makes the Service named key's slices what its pods say.
func (r *run) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // never queued by us
	}
	svc, err := r.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		// The garbage collector deletes the slices with their owner.
		r.triggers.Forget(ns, name)
		r.expect.forget(key)
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Selector == nil || svc.DeletionTimestamp != nil {
		return nil
	}
	existing, err := r.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{
		discoveryv1.LabelServiceName: name, discoveryv1.LabelManagedBy: ControllerName,
	}))
	if err != nil {
		return err
	}
	if !r.expect.satisfied(key, existing) {
		return ErrStaleCache
	}
	pods, err := r.pods.Pods(ns).List(labels.Set(svc.Spec.Selector).AsSelectorPreValidated())
	if err != nil {
		return err
	}
	trigger := r.triggers.Compute(svc, pods)
	plan := reconcile(svc, pods, r.zone, existing, r.cfg.MaxEndpointsPerSlice, trigger)
	return r.apply(ctx, key, svc, plan)
}

// zone returns the topology zone label of the named node, or "".
func (r *run) zone(node string) string {
	if n, err := r.nodes.Get(node); err == nil {
		return n.Labels[corev1.LabelTopologyZone]
	}
	return ""
}

// apply writes a plan: creates first, then updates, then deletes, so that
// endpoints moving between slices are never missing from all of them.
func (r *run) apply(ctx context.Context, key string, svc *corev1.Service, p plan) error {
	client := r.cfg.Client.DiscoveryV1().EndpointSlices(svc.Namespace)
	var errs []error
	for _, s := range p.create {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		got, err := client.Create(rctx, s, metaCreate)
		cancel()
		if err != nil {
			if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
				return nil // the namespace is going
			}
			r.rec.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s/%s: %v", svc.Namespace, svc.Name, err)
			errs = append(errs, err)
			continue
		}
		r.expect.wrote(key, got.Name, got.ResourceVersion)
	}
	for _, s := range p.update {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		got, err := client.Update(rctx, s, metaUpdate)
		cancel()
		if err != nil {
			if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
				r.rec.Eventf(svc, corev1.EventTypeWarning, "FailedToUpdateEndpointSlices", "Error updating Endpoint Slices for Service %s/%s: %v", svc.Namespace, svc.Name, err)
			}
			errs = append(errs, err)
			continue
		}
		r.expect.wrote(key, got.Name, got.ResourceVersion)
	}
	for _, s := range p.delete {
		rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		err := client.Delete(rctx, s.Name, metaDeleteUID(s.UID))
		cancel()
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
			continue
		}
		r.expect.deleted(key, s.Name)
	}
	if len(p.create)+len(p.update)+len(p.delete) > 0 {
		r.cfg.Logger.Debug("wrote endpoint slices", "service", key, "created", len(p.create), "updated", len(p.update), "deleted", len(p.delete))
	}
	return errors.Join(errs...)
}

// expectations remembers, per Service, the slices this controller wrote or
// deleted that the informer cache may not show yet.
type expectations struct {
	mu sync.Mutex
	// m maps a service key to slice names and the least resourceVersion
	// the cache must show for each (0: the slice must be gone).
	m map[string]map[string]expectation
}

type expectation struct {
	rv uint64
	// until is when the expectation lapses: should another writer delete
	// a slice before the cache showed it, it never will.
	until time.Time
}

// expectationTTL bounds how long a sync waits for the cache.
const expectationTTL = 30 * time.Second

func newExpectations() *expectations { return &expectations{m: map[string]map[string]expectation{}} }

// wrote records that the slice was written at resourceVersion rv. Skiff's
// resourceVersions are decimal revisions that only grow; a version that
// does not parse sets no expectation.
func (e *expectations) wrote(svc, slice, rv string) {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil || n == 0 {
		return
	}
	e.set(svc, slice, n)
}

// deleted records that the slice was deleted.
func (e *expectations) deleted(svc, slice string) { e.set(svc, slice, 0) }

func (e *expectations) set(svc, slice string, v uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m[svc] == nil {
		e.m[svc] = map[string]expectation{}
	}
	e.m[svc][slice] = expectation{rv: v, until: time.Now().Add(expectationTTL)}
}

func (e *expectations) forget(svc string) {
	e.mu.Lock()
	delete(e.m, svc)
	e.mu.Unlock()
}

// satisfied reports whether the cached slices of the Service show every
// write recorded for it, and drops the expectations they meet.
func (e *expectations) satisfied(svc string, cached []*discoveryv1.EndpointSlice) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	want := e.m[svc]
	if len(want) == 0 {
		return true
	}
	have := make(map[string]uint64, len(cached))
	for _, s := range cached {
		n, _ := strconv.ParseUint(s.ResourceVersion, 10, 64)
		have[s.Name] = n
	}
	now := time.Now()
	for name, x := range want {
		got, present := have[name]
		switch {
		case x.rv == 0 && !present, x.rv != 0 && present && got >= x.rv, now.After(x.until):
			delete(want, name)
		}
	}
	if len(want) == 0 {
		delete(e.m, svc)
		return true
	}
	return false
}

// Package endpoints is the Endpoints controller: for every Service with a
// selector it keeps a core/v1 Endpoints object of the same name listing the
// selected pods' addresses and ports, as kube-controller-manager's
// endpoint controller does.
//
//	c, err := endpoints.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)             // leader-only: until ctx ends; may run again later
//
// Ready pods go to addresses, not-ready ones to notReadyAddresses (all to
// addresses when the Service publishes not-ready addresses). Pods that are
// terminal, have no IP, or are terminating (unless the Service publishes
// not-ready addresses) are left out. Service ports are resolved per pod: a
// numeric targetPort as is, a named one against the pod's container ports,
// so pods that number a name differently land in different subsets. The
// subsets are written in canonical form (Repack): one subset per distinct
// set of ports, addresses and ports sorted.
//
// Services without a selector are left alone (their Endpoints belong to the
// user); the Endpoints of a deleted Service are deleted, also those left over
// from a time the controller was not running. An Endpoints object is written
// only when its subsets, labels or annotations would change.
//
// The controller works through the Kubernetes API only (informers on
// services, pods and endpoints), is level-triggered, and may be stopped and
// started again at any moment.
package endpoints

//lint:file-ignore SA1019 this controller owns core/v1 Endpoints, which Kubernetes still serves and kubectl reads

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/events"
)

// MaxCapacity is the most addresses an Endpoints object holds; beyond it
// the controller truncates and sets the over-capacity annotation, as
// Kubernetes does.
const MaxCapacity = 1000

// leaderAnnotation marks the Endpoints old leader elections used; they
// have no Service and must survive the leftover check.
const leaderAnnotation = "control-plane.alpha.kubernetes.io/leader"

// Config configures a Controller.
type Config struct {
	// Client reads services and pods and writes endpoints.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Workers is how many services are synced at once.
	Workers int
	// BatchPeriod delays a sync after a pod change so that a burst of
	// changes is written once (kube-controller-manager's
	// --endpoint-updates-batch-period; 0 syncs at once).
	BatchPeriod time.Duration
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// RetryBase and RetryMax bound the back-off after a failed sync.
	RetryBase, RetryMax time.Duration
}

// DefaultConfig returns a Config without Client.
func DefaultConfig() Config {
	return Config{
		Logger: slog.Default(), Workers: 5, RequestTimeout: 10 * time.Second,
		RetryBase: 5 * time.Millisecond, RetryMax: 100 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil:
		return errors.New("endpoints: config: Client and Logger are required")
	case c.Workers <= 0 || c.BatchPeriod < 0 || c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("endpoints: config: bad Workers %d, BatchPeriod %v, RequestTimeout %v or retry bounds %v..%v",
			c.Workers, c.BatchPeriod, c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller keeps the Endpoints of selector Services. See the package
// comment.
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
	rec       record.EventRecorder
	services  listerscorev1.ServiceLister
	pods      listerscorev1.PodLister
	endpoints listerscorev1.EndpointsLister
	queue     workqueue.TypedRateLimitingInterface[string]
	triggers  *TriggerTimes
}

// Run keeps the Endpoints of every selector Service until ctx ends; it
// returns nil then, after its goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	rec, stopRec := events.NewRecorder(c.cfg.Client, "endpoint-controller")
	defer stopRec()
	queue := workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax)
	defer queue.ShutDown()
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	epInf := factory.Core().V1().Endpoints()
	r := &run{Controller: c, rec: rec, services: svcInf.Lister(), pods: podInf.Lister(), endpoints: epInf.Lister(), queue: queue, triggers: NewTriggerTimes()}

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
	if _, err := epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: onService}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, podInf.Informer().HasSynced, epInf.Informer().HasSynced) {
		return nil // ctx ended
	}
	// Endpoints whose Service went while no controller ran are deleted by
	// their sync.
	if eps, err := r.endpoints.List(labels.Everything()); err == nil {
		for _, ep := range eps {
			if _, ok := ep.Annotations[leaderAnnotation]; !ok {
				queue.Add(ep.Namespace + "/" + ep.Name)
			}
		}
	}
	workers.Run(ctx, queue, c.cfg.Workers, c.cfg.Logger, "endpoints", workers.Once(r.sync))
	return nil
}

// onPod queues the services that select the pod, before (old) and after
// the change.
func (r *run) onPod(old, obj any) {
	for _, o := range []any{old, obj} {
		pod, ok := sharedinformers.As[*corev1.Pod](o)
		if !ok {
			continue
		}
		for _, key := range ServicesSelecting(r.services, pod) {
			r.queue.AddAfter(key, r.cfg.BatchPeriod)
		}
	}
}

// ServicesSelecting returns the namespace/name keys of the Services in the
// pod's namespace whose selector matches its labels.
func ServicesSelecting(services listerscorev1.ServiceLister, pod *corev1.Pod) []string {
	svcs, err := services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var keys []string
	for _, svc := range svcs {
		if svc.Spec.Selector != nil && labels.Set(svc.Spec.Selector).AsSelectorPreValidated().Matches(labels.Set(pod.Labels)) {
			keys = append(keys, svc.Namespace+"/"+svc.Name)
		}
	}
	return keys
}

// sync makes the Endpoints of the Service named key what its pods say.
func (r *run) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // never queued by us
	}
	rctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	svc, err := r.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.triggers.Forget(ns, name)
		if _, err := r.endpoints.Endpoints(ns).Get(name); apierrors.IsNotFound(err) {
			return nil
		}
		err = r.cfg.Client.CoreV1().Endpoints(ns).Delete(rctx, name, metav1.DeleteOptions{})
		if err == nil {
			r.cfg.Logger.Info("deleted the endpoints of a deleted service", "service", key)
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.Selector == nil {
		return nil
	}
	pods, err := r.pods.Pods(ns).List(labels.Set(svc.Spec.Selector).AsSelectorPreValidated())
	if err != nil {
		return err
	}
	trigger := r.triggers.Compute(svc, pods)
	subsets := Subsets(svc, pods)

	cur, err := r.endpoints.Endpoints(ns).Get(name)
	create := apierrors.IsNotFound(err)
	if err != nil && !create {
		return err
	}
	if create {
		cur = &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	}
	wantLabels := maps.Clone(svc.Labels)
	if wantLabels == nil {
		wantLabels = map[string]string{}
	}
	if svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		wantLabels[corev1.IsHeadlessService] = ""
	}
	subsets, truncated := Truncate(subsets, MaxCapacity)
	_, overCapacity := cur.Annotations[corev1.EndpointsOverCapacity]
	if !create && apiequality.Semantic.DeepEqual(cur.Subsets, subsets) && labelsEqual(cur.Labels, wantLabels) && overCapacity == truncated {
		return nil
	}
	next := cur.DeepCopy()
	next.Subsets, next.Labels = subsets, wantLabels
	if next.Annotations == nil {
		next.Annotations = map[string]string{}
	}
	if trigger.IsZero() {
		delete(next.Annotations, corev1.EndpointsLastChangeTriggerTime)
	} else {
		next.Annotations[corev1.EndpointsLastChangeTriggerTime] = trigger.UTC().Format(time.RFC3339Nano)
	}
	if truncated {
		next.Annotations[corev1.EndpointsOverCapacity] = "truncated"
	} else {
		delete(next.Annotations, corev1.EndpointsOverCapacity)
	}
	if create {
		_, err = r.cfg.Client.CoreV1().Endpoints(ns).Create(rctx, next, metav1.CreateOptions{})
		if apierrors.IsForbidden(err) || (apierrors.IsNotFound(err) && ctx.Err() == nil) {
			return nil // the namespace is going
		}
		if err != nil && !apierrors.IsAlreadyExists(err) { // AlreadyExists: the cache is behind our own create
			r.rec.Eventf(next, corev1.EventTypeWarning, "FailedToCreateEndpoint", "Failed to create endpoint for service %v/%v: %v", ns, name, err)
		}
	} else {
		_, err = r.cfg.Client.CoreV1().Endpoints(ns).Update(rctx, next, metav1.UpdateOptions{})
		if err != nil && !apierrors.IsConflict(err) {
			r.rec.Eventf(next, corev1.EventTypeWarning, "FailedToUpdateEndpoint", "Failed to update endpoint %v/%v: %v", ns, name, err)
		}
	}
	if err != nil {
		return err
	}
	r.cfg.Logger.Debug("wrote endpoints", "service", key, "subsets", len(subsets))
	return nil
}

// labelsEqual compares label maps, nil and empty being equal.
func labelsEqual(a, b map[string]string) bool {
	return len(a) == len(b) && maps.Equal(a, b)
}

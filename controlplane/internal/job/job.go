// Package job is the Job controller (batch/v1), as in
// kube-controller-manager: each Job runs pods from its template until
// spec.completions of them succeeded (or, without completions, until one
// did and the others finished), at most spec.parallelism at a time, one per
// index with the Indexed completion mode; an Indexed Job also succeeds as
// soon as a rule of its successPolicy is met. A Job fails when more than
// spec.backoffLimit of its pods failed (with restartPolicy OnFailure,
// container restarts count too), when it ran longer than
// activeDeadlineSeconds, or when a failed pod matches a FailJob rule of
// its podFailurePolicy (an Ignore rule's failures do not count); failed
// pods are replaced after an exponential
// back-off (10 s doubling up to 10 min). A suspended Job has no pods. A
// finished Job is deleted ttlSecondsAfterFinished later, if set (the
// ttl-after-finished controller's part).
//
//	c, err := job.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)       // leader-only: until ctx ends; may run again later
//
// Pods are counted with upstream's tracking finalizer: every pod is created
// with batch.kubernetes.io/job-tracking; a finished pod's uid goes to
// status.uncountedTerminatedPods before its finalizer is removed, and to
// the succeeded or failed count after. A count therefore survives the pod's
// deletion and a leader change at any step, and is never made twice.
// Pods the controller deletes itself (excess, suspension, a finished Job)
// lose their finalizer first and are not counted, as upstream. The
// terminal condition (Complete, Failed) follows the interim one
// (SuccessCriteriaMet, FailureTarget) once no pod of the Job runs or
// terminates.
//
// It works through the Kubernetes API only (informers on jobs and pods,
// writes through the client), is level-triggered, and may be stopped and
// started again at any moment; expectations keep a lagging cache from
// repeating a create or delete.
package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/skiff-sh/skiff/controlplane/internal/controllerref"
	"github.com/skiff-sh/skiff/controlplane/internal/events"
	"github.com/skiff-sh/skiff/controlplane/internal/expectations"
	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"
)

// Component is the source of the controller's events.
const Component = "job-controller"

var kind = batchv1.SchemeGroupVersion.WithKind("Job")

// Config configures a Controller.
type Config struct {
	// Client reads and writes jobs, pods and events.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Now is the clock (deadlines, back-off, TTLs, condition times).
	Now func() time.Time
	// Workers is the number of jobs synced at once.
	Workers int
	// BurstPods bounds the pods created or deleted by one sync.
	BurstPods int
	// BackoffBase and BackoffMax bound the delay before a failed pod is
	// replaced: BackoffBase doubled for each failure but the first.
	BackoffBase, BackoffMax time.Duration
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
		Logger: slog.Default(), Now: time.Now, Workers: 5, BurstPods: 500,
		BackoffBase: 10 * time.Second, BackoffMax: 10 * time.Minute,
		ExpectationsTTL: 5 * time.Minute, RequestTimeout: 10 * time.Second,
		RetryBase: 5 * time.Millisecond, RetryMax: 60 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Client == nil || c.Logger == nil || c.Now == nil:
		return errors.New("job: config: Client, Logger and Now are required")
	case c.Workers <= 0 || c.BurstPods <= 0:
		return fmt.Errorf("job: config: Workers %d and BurstPods %d must be positive", c.Workers, c.BurstPods)
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("job: config: bad pod back-off %v..%v", c.BackoffBase, c.BackoffMax)
	case c.ExpectationsTTL <= 0 || c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("job: config: bad ExpectationsTTL %v, RequestTimeout %v or retry bounds %v..%v", c.ExpectationsTTL, c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller runs Jobs. See the package comment.
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
	jobs   batchlisters.JobLister
	pods   corelisters.PodLister
	refs   *controllerref.Manager
	byUID  cache.Indexer // pods, by controller uid (refs' index)
	queue  workqueue.TypedRateLimitingInterface[string]
	expect *expectations.Expectations
	rec    record.EventRecorder

	// written holds each job's last status write: a cache older than that
	// has not seen it.
	written *expectations.Writes

	mu       sync.Mutex
	failures map[string]failureRecord // by job key: what the back-off counts from
}

// failureRecord is what the back-off of a job counts from: its failed and
// succeeded counts when this run last saw them, the failures since its
// last success, and when the last one was seen.
type failureRecord struct {
	failed, succeeded int32
	consecutive       int
	at                time.Time
}

// byController names the controller's index of pods by controller uid.
const byController = "job.controller" // unique: the pod informer may be shared

// podKeyPrefix marks a queue key naming a pod whose job is gone, whose
// tracking finalizer is to be removed.
const podKeyPrefix = "pod:"

// Run syncs every Job until ctx ends; it returns nil then, once its
// goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	r := &run{
		cfg:      c.cfg,
		queue:    workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax),
		expect:   expectations.New(c.cfg.Now, c.cfg.ExpectationsTTL),
		failures: map[string]failureRecord{}, written: expectations.NewWrites(),
	}
	defer r.queue.ShutDown()
	rec, stopRec := events.NewRecorder(c.cfg.Client, Component)
	defer stopRec()
	r.rec = rec

	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	jobs := factory.Batch().V1().Jobs()
	pods := factory.Core().V1().Pods()
	r.jobs, r.pods = jobs.Lister(), pods.Lister()
	if _, err := jobs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    r.enqueueJob,
		UpdateFunc: func(_, obj any) { r.enqueueJob(obj) },
		DeleteFunc: r.jobDeleted,
	}); err != nil {
		return err
	}
	r.refs = controllerref.New(byController, kind, c.cfg.Client, c.cfg.Logger)
	if err := r.refs.Index(pods.Informer()); err != nil {
		return err
	}
	r.byUID = pods.Informer().GetIndexer()
	if _, err := pods.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { r.podEvent(obj, podAdded) },
		UpdateFunc: func(_, obj any) { r.podEvent(obj, podUpdated) },
		DeleteFunc: func(obj any) { r.podEvent(obj, podDeleted) },
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), jobs.Informer().HasSynced, pods.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, r.queue, c.cfg.Workers, c.cfg.Logger, "job", r.syncKey)
	return nil
}

func (r *run) enqueueJob(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		r.queue.Add(key)
	}
}

// jobDeleted queues the job (to forget it) and its pods still holding the
// tracking finalizer, which nothing else would release.
func (r *run) jobDeleted(obj any) {
	r.enqueueJob(obj)
	j, ok := sharedinformers.As[*batchv1.Job](obj)
	if !ok {
		return
	}
	owned, err := r.byUID.ByIndex(byController, string(j.UID))
	if err != nil {
		return
	}
	for _, o := range owned {
		if p := o.(*corev1.Pod); hasTrackingFinalizer(p) {
			r.queue.Add(podKeyPrefix + p.Namespace + "/" + p.Name)
		}
	}
}

// What the informer shows happened to a pod.
const (
	podAdded = iota
	podUpdated
	podDeleted
)

// podEvent queues the job controlling a pod and meets expectations; a pod
// without a job (orphaned, or its job gone) still holding the finalizer is
// queued itself.
func (r *run) podEvent(obj any, what int) {
	pod, ok := sharedinformers.As[*corev1.Pod](obj)
	if !ok {
		return
	}
	ref := metav1.GetControllerOfNoCopy(pod)
	if ref == nil {
		// Orphaned (a job deleted with propagation Orphan): nothing
		// counts it any more.
		if what != podDeleted && hasTrackingFinalizer(pod) {
			r.queue.Add(podKeyPrefix + pod.Namespace + "/" + pod.Name)
		}
		return
	}
	if ref.Kind != kind.Kind || ref.APIVersion != kind.GroupVersion().String() {
		return
	}
	key := pod.Namespace + "/" + ref.Name
	switch {
	case what == podAdded && pod.DeletionTimestamp == nil:
		r.expect.Created(key)
	case what == podDeleted || pod.DeletionTimestamp != nil:
		r.expect.Deleted(key, pod.UID)
	}
	if what != podDeleted && hasTrackingFinalizer(pod) {
		if j, err := r.jobs.Jobs(pod.Namespace).Get(ref.Name); err != nil || j.UID != ref.UID {
			r.queue.Add(podKeyPrefix + pod.Namespace + "/" + pod.Name)
			return
		}
	}
	r.queue.Add(key)
}

// syncKey syncs one queued key: a job's, or an orphaned pod's to release.
func (r *run) syncKey(ctx context.Context, key string) (time.Duration, error) {
	if pod, ok := strings.CutPrefix(key, podKeyPrefix); ok {
		return 0, r.releaseOrphan(ctx, pod)
	}
	return r.sync(ctx, key)
}

// releaseOrphan removes the tracking finalizer of a pod without a job (no
// controller, or its job is gone or another by now), so that it can go.
func (r *run) releaseOrphan(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := r.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) || err == nil && !hasTrackingFinalizer(pod) {
		return nil
	}
	if err != nil {
		return err
	}
	if ref := controllerref.Of(pod, kind); ref != nil {
		if j, err := r.jobs.Jobs(ns).Get(ref.Name); err == nil && j.UID == ref.UID {
			return nil // its job is back in the cache: the job's sync counts it
		}
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	return r.removeFinalizer(ctx, pod)
}

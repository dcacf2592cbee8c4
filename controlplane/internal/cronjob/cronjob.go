// Package cronjob is the CronJob controller (batch/v1), as in
// kube-controller-manager: at each time its schedule names (standard cron
// syntax, in spec.timeZone or the master's local time) a CronJob creates a
// Job from its jobTemplate, named <cronjob>-<minutes since the epoch> so
// that a time is never run twice, unless it is suspended, the time is older
// than startingDeadlineSeconds, or a Job of it still runs and its
// concurrencyPolicy is Forbid (Replace deletes that Job instead). It keeps
// status.active, lastScheduleTime and lastSuccessfulTime, and deletes the
// finished Jobs beyond successfulJobsHistoryLimit and
// failedJobsHistoryLimit, oldest first. More than 100 missed times (the
// controller was down) start the latest one only, with a warning event.
//
//	c, err := cronjob.New(cfg) // cfg from DefaultConfig, with Client set
//	err = c.Run(ctx)           // leader-only: until ctx ends; may run again later
//
// It works through the Kubernetes API only (informers on cronjobs and
// jobs), is level-triggered, and may be stopped and started again at any
// moment: a Job created just before a stop is found again by its name.
package cronjob

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"github.com/robfig/cron/v3"

	"github.com/skiff-sh/skiff/controlplane/internal/controllerref"
	"github.com/skiff-sh/skiff/controlplane/internal/events"
	"github.com/skiff-sh/skiff/controlplane/internal/expectations"
	"github.com/skiff-sh/skiff/controlplane/internal/sharedinformers"
	"github.com/skiff-sh/skiff/controlplane/internal/workers"
)

// Component is the source of the controller's events.
const Component = "cronjob-controller"

var kind = batchv1.SchemeGroupVersion.WithKind("CronJob")

// maxMissed is how many missed times are tolerated before only the
// latest is started, with a warning.
const maxMissed = 100

// Config configures a Controller.
type Config struct {
	// Client reads and writes cronjobs, jobs and events.
	Client kubernetes.Interface
	// Informers, if set, is shared with the other components of the
	// leadership term; nil gives this one informers of its own.
	Informers *sharedinformers.Provider
	Logger    *slog.Logger
	// Now is the clock the schedules are read by.
	Now func() time.Time
	// Workers is the number of cronjobs synced at once.
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
		return errors.New("cronjob: config: Client, Logger and Now are required")
	case c.Workers <= 0 || c.RequestTimeout <= 0 || c.RetryBase <= 0 || c.RetryMax < c.RetryBase:
		return fmt.Errorf("cronjob: config: bad Workers %d, RequestTimeout %v or retry bounds %v..%v", c.Workers, c.RequestTimeout, c.RetryBase, c.RetryMax)
	}
	return nil
}

// Controller runs CronJobs. See the package comment.
type Controller struct{ cfg Config }

// New returns a Controller for cfg.
func New(cfg Config) (*Controller, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Controller{cfg: cfg}, nil
}

type run struct {
	cfg   Config
	crons batchlisters.CronJobLister
	jobs  batchlisters.JobLister
	queue workqueue.TypedRateLimitingInterface[string]
	rec   record.EventRecorder

	// written holds each cronjob's last status write: a cache older than
	// that has not seen the time just run nor the job just created.
	written *expectations.Writes
}

// Run syncs every CronJob until ctx ends; it returns nil then, once its
// goroutines have exited.
func (c *Controller) Run(ctx context.Context) error {
	r := &run{cfg: c.cfg, queue: workers.NewQueue(c.cfg.RetryBase, c.cfg.RetryMax), written: expectations.NewWrites()}
	defer r.queue.ShutDown()
	rec, stopRec := events.NewRecorder(c.cfg.Client, Component)
	defer stopRec()
	r.rec = rec
	factory, startInformers, releaseInformers := sharedinformers.Join(ctx, c.cfg.Informers, c.cfg.Client)
	defer releaseInformers()
	crons, jobs := factory.Batch().V1().CronJobs(), factory.Batch().V1().Jobs()
	r.crons, r.jobs = crons.Lister(), jobs.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			r.queue.Add(key)
		}
	}
	if _, err := crons.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	jobEvent := func(obj any) {
		if j, ok := sharedinformers.As[*batchv1.Job](obj); ok {
			if ref := controllerref.Of(j, kind); ref != nil {
				r.queue.Add(j.Namespace + "/" + ref.Name)
			}
		}
	}
	if _, err := jobs.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: jobEvent, UpdateFunc: func(_, obj any) { jobEvent(obj) }, DeleteFunc: jobEvent,
	}); err != nil {
		return err
	}
	startInformers()
	if !cache.WaitForCacheSync(ctx.Done(), crons.Informer().HasSynced, jobs.Informer().HasSynced) {
		return nil // ctx ended
	}
	workers.Run(ctx, r.queue, c.cfg.Workers, c.cfg.Logger, "cronjob", r.sync)
	return nil
}

// sync records what became of the cronjob's jobs, starts the job of the
// latest time due, and returns when the next time is.
func (r *run) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cj, err := r.crons.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.written.Forget(key)
		return 0, nil
	}
	if err != nil || cj.DeletionTimestamp != nil {
		return 0, err
	}
	if r.written.Behind(key, cj.ResourceVersion) {
		return 0, nil // the event of this run's last write comes next
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	all, err := r.jobs.Jobs(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var children []*batchv1.Job
	for _, j := range all {
		if ref := metav1.GetControllerOfNoCopy(j); ref != nil && ref.UID == cj.UID {
			children = append(children, j)
		}
	}
	now := r.cfg.Now()
	status := cj.Status.DeepCopy()
	if err := r.track(ctx, cj, status, children); err != nil {
		return 0, err
	}
	errs := []error{r.cleanup(ctx, cj, children)}

	var after time.Duration
	if !*cj.Spec.Suspend {
		var err error
		after, err = r.schedule(ctx, cj, status, now)
		errs = append(errs, err)
	}
	if !apiequality.Semantic.DeepEqual(*status, cj.Status) {
		c := cj.DeepCopy()
		c.Status = *status
		updated, err := r.cfg.Client.BatchV1().CronJobs(ns).UpdateStatus(ctx, c, metav1.UpdateOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("cronjob: status of %s: %w", key, err))
		} else {
			r.written.Wrote(key, updated.ResourceVersion)
		}
	}
	return after, errors.Join(errs...)
}

// track brings status.active in line with the jobs that exist and run,
// and records the last success. A job the cache does not show is looked
// up before it leaves status.active: it may be too new for the cache.
func (r *run) track(ctx context.Context, cj *batchv1.CronJob, status *batchv1.CronJobStatus, children []*batchv1.Job) error {
	byUID := map[string]*batchv1.Job{}
	for _, j := range children {
		byUID[string(j.UID)] = j
		active := slices.ContainsFunc(status.Active, func(ref corev1.ObjectReference) bool { return ref.UID == j.UID })
		done, complete := finished(j)
		switch {
		case !done && !active:
			// Created just before a stop, or by someone else for it.
			status.Active = append(status.Active, jobRef(j))
		case done && active:
			status.Active = slices.DeleteFunc(status.Active, func(ref corev1.ObjectReference) bool { return ref.UID == j.UID })
			state := batchv1.JobFailed
			if complete {
				state = batchv1.JobComplete
			}
			r.rec.Eventf(cj, corev1.EventTypeNormal, "SawCompletedJob", "Saw completed job: %s, status: %v", j.Name, state)
		}
		if t := j.Status.CompletionTime; complete && t != nil && (status.LastSuccessfulTime == nil || status.LastSuccessfulTime.Before(t)) {
			status.LastSuccessfulTime = t.DeepCopy()
		}
		// A job made for a time the status does not show (its status write
		// was lost to a conflict) brings that time back: otherwise the next
		// time due would look like the first since the creation, and that
		// job's time would be skipped as never run.
		if t, err := time.Parse(time.RFC3339, j.Annotations[batchv1.CronJobScheduledTimestampAnnotation]); err == nil &&
			(status.LastScheduleTime == nil || status.LastScheduleTime.Time.Before(t)) {
			status.LastScheduleTime = &metav1.Time{Time: t}
		}
	}
	var lookupErr error
	status.Active = slices.DeleteFunc(status.Active, func(ref corev1.ObjectReference) bool {
		if byUID[string(ref.UID)] != nil || lookupErr != nil {
			return false
		}
		j, err := r.cfg.Client.BatchV1().Jobs(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true
		case err != nil:
			lookupErr = err
			return false
		}
		done, _ := finished(j)
		return j.UID != ref.UID || done
	})
	return lookupErr
}

// cleanup deletes the finished jobs beyond the history limits, oldest
// first.
func (r *run) cleanup(ctx context.Context, cj *batchv1.CronJob, children []*batchv1.Job) error {
	var succeeded, failed []*batchv1.Job
	for _, j := range children {
		if done, complete := finished(j); done && complete {
			succeeded = append(succeeded, j)
		} else if done {
			failed = append(failed, j)
		}
	}
	var errs []error
	for _, set := range []struct {
		jobs  []*batchv1.Job
		limit *int32
	}{{succeeded, cj.Spec.SuccessfulJobsHistoryLimit}, {failed, cj.Spec.FailedJobsHistoryLimit}} {
		if set.limit == nil || len(set.jobs) <= int(*set.limit) {
			continue
		}
		slices.SortFunc(set.jobs, func(a, b *batchv1.Job) int { return startTime(a).Compare(startTime(b)) })
		for _, j := range set.jobs[:len(set.jobs)-int(*set.limit)] {
			errs = append(errs, r.deleteJob(ctx, cj, j))
		}
	}
	return errors.Join(errs...)
}

// schedule starts the job of the latest time due, if any and allowed, and
// returns the wait until the next time.
func (r *run) schedule(ctx context.Context, cj *batchv1.CronJob, status *batchv1.CronJobStatus, now time.Time) (time.Duration, error) {
	loc := time.Local
	if tz := cj.Spec.TimeZone; tz != nil {
		var err error
		if loc, err = time.LoadLocation(*tz); err != nil {
			r.rec.Eventf(cj, corev1.EventTypeWarning, "UnknownTimeZone", "invalid timeZone: %q: %s", *tz, err)
			return 0, nil
		}
	}
	sched, err := cron.ParseStandard(cj.Spec.Schedule)
	if err != nil {
		r.rec.Eventf(cj, corev1.EventTypeWarning, "InvalidSchedule", "invalid schedule: %s : %s", cj.Spec.Schedule, err)
		return 0, nil
	}
	now = now.In(loc)
	nextAfter := func() time.Duration { return sched.Next(now).Sub(now) + 100*time.Millisecond }
	due, missed := latestDue(cj, status, sched, now)
	if due.IsZero() {
		return nextAfter(), nil
	}
	if missed > maxMissed {
		r.rec.Eventf(cj, corev1.EventTypeWarning, "TooManyMissedTimes", "too many missed start times: %d. Set or decrease .spec.startingDeadlineSeconds or check clock skew", missed)
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil && due.Add(time.Duration(*d)*time.Second).Before(now) {
		r.rec.Eventf(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job: %s", due.UTC().Format(time.RFC1123Z))
		return nextAfter(), nil
	}
	// Its job exists already (made before this run's last status write
	// showed in the cache): the time is done.
	if j, err := r.jobs.Jobs(cj.Namespace).Get(jobName(cj, due)); err == nil && metav1.IsControlledBy(j, cj) {
		status.LastScheduleTime = &metav1.Time{Time: due}
		return nextAfter(), nil
	}
	if cj.Spec.ConcurrencyPolicy == batchv1.ForbidConcurrent && len(status.Active) > 0 {
		r.rec.Event(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
		return nextAfter(), nil
	}
	if cj.Spec.ConcurrencyPolicy == batchv1.ReplaceConcurrent {
		for _, ref := range status.Active {
			j, err := r.jobs.Jobs(ref.Namespace).Get(ref.Name)
			if err == nil && j.UID == ref.UID {
				if err := r.deleteJob(ctx, cj, j); err != nil {
					return 0, err
				}
			}
		}
		status.Active = nil
	}
	j, err := r.cfg.Client.BatchV1().Jobs(cj.Namespace).Create(ctx, newJob(cj, due), metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		// Created before a stop: the informer brings it to track.
		r.cfg.Logger.Info("job already exists", "cronjob", cj.Namespace+"/"+cj.Name, "job", jobName(cj, due))
	case err != nil:
		r.rec.Eventf(cj, corev1.EventTypeWarning, "FailedCreate", "Error creating job: %v", err)
		return 0, fmt.Errorf("cronjob: create the job of %s/%s: %w", cj.Namespace, cj.Name, err)
	default:
		r.rec.Eventf(cj, corev1.EventTypeNormal, "SuccessfulCreate", "Created job %v", j.Name)
		status.Active = append(status.Active, jobRef(j))
	}
	status.LastScheduleTime = &metav1.Time{Time: due}
	return nextAfter(), nil
}

// latestDue returns the latest time the schedule names since the last one
// run (or the cronjob's creation, or startingDeadlineSeconds ago if later)
// up to now, and about how many times were due (exact for regular
// schedules); zero if none is due. Far behind, it steps from one interval
// before the estimate instead of walking every missed time.
func latestDue(cj *batchv1.CronJob, status *batchv1.CronJobStatus, sched cron.Schedule, now time.Time) (time.Time, int) {
	earliest := cj.CreationTimestamp.Time
	if t := status.LastScheduleTime; t != nil {
		earliest = t.Time
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		if floor := now.Add(-time.Duration(*d) * time.Second); floor.After(earliest) {
			earliest = floor
		}
	}
	t1 := sched.Next(earliest.In(now.Location()))
	t2 := sched.Next(t1)
	switch {
	case t1.IsZero() || now.Before(t1):
		return time.Time{}, 0
	case now.Before(t2) || t2.IsZero():
		return t1, 1
	}
	interval := t2.Sub(t1)
	if interval < time.Second {
		return time.Time{}, 0
	}
	missed := int(now.Sub(t1)/interval) + 1
	// Estimated from the first interval, the start may overshoot an
	// irregular schedule (weekdays only): step back until a time is due.
	start := t1.Add(time.Duration(missed-2) * interval)
	for start.After(t1) && sched.Next(start.Add(-time.Nanosecond)).After(now) {
		start = start.Add(-interval)
	}
	due := t1
	for t := sched.Next(start.Add(-time.Nanosecond)); !t.IsZero() && !t.After(now); t = sched.Next(t) {
		due = t
	}
	return due, missed
}

// newJob is the job of cj for time due.
func newJob(cj *batchv1.CronJob, due time.Time) *batchv1.Job {
	t := cj.Spec.JobTemplate.DeepCopy()
	annotations := t.Annotations
	if annotations == nil {
		annotations = map[string]string{}
	}
	annotations[batchv1.CronJobScheduledTimestampAnnotation] = due.Format(time.RFC3339)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: jobName(cj, due), Namespace: cj.Namespace,
			Labels: t.Labels, Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(cj, kind)},
		},
		Spec: t.Spec,
	}
}

// jobName is <cronjob>-<minutes since the epoch of due>: one job per time.
func jobName(cj *batchv1.CronJob, due time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, due.Unix()/60)
}

func (r *run) deleteJob(ctx context.Context, cj *batchv1.CronJob, j *batchv1.Job) error {
	uid, policy := j.UID, metav1.DeletePropagationBackground
	err := r.cfg.Client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		r.rec.Eventf(cj, corev1.EventTypeWarning, "FailedDelete", "Deleted job: %v", err)
		return fmt.Errorf("cronjob: delete job %s/%s: %w", j.Namespace, j.Name, err)
	}
	r.rec.Eventf(cj, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted job %v", j.Name)
	return nil
}

func jobRef(j *batchv1.Job) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name, UID: j.UID, ResourceVersion: j.ResourceVersion}
}

// finished reports whether j has its terminal condition, and whether it is
// Complete.
func finished(j *batchv1.Job) (done, complete bool) {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return true, true
		case batchv1.JobFailed:
			return true, false
		}
	}
	return false, false
}

func startTime(j *batchv1.Job) time.Time {
	if j.Status.StartTime != nil {
		return j.Status.StartTime.Time
	}
	return j.CreationTimestamp.Time
}

package job

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/endpoints"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
)

// Condition reasons and messages, as upstream.
const (
	ReasonBackoffLimitExceeded = "BackoffLimitExceeded"
	ReasonDeadlineExceeded     = "DeadlineExceeded"
	ReasonCompletionsReached   = "CompletionsReached"
	ReasonSuccessPolicy        = "SuccessPolicy"
	ReasonPodFailurePolicy     = "PodFailurePolicy"
	ReasonSuspended            = "JobSuspended"
	ReasonResumed              = "JobResumed"

	messageBackoffLimitExceeded = "Job has reached the specified backoff limit"
	messageDeadlineExceeded     = "Job was active longer than specified deadline"
	messageCompletionsReached   = "Reached expected number of succeeded pods"
)

// state is what one sync of a job works from and decides.
type state struct {
	job *batchv1.Job
	key string
	now time.Time
	// pods of the job, as claimed from the cache.
	pods []*corev1.Pod
	// active pods: not finished, not being deleted; terminating: being
	// deleted, not finished.
	active, terminating []*corev1.Pod
	ready               int32
	// status under construction: counts, uncounted uids, completed indexes.
	status    batchv1.JobStatus
	succeeded map[types.UID]bool // status.uncountedTerminatedPods.succeeded
	failed    map[types.UID]bool // status.uncountedTerminatedPods.failed
	completed map[int]bool       // completed indexes (Indexed)
	// ignored are failed pods podFailurePolicy does not count; failJob is
	// the message of the first failed pod whose FailJob rule matched.
	ignored []*corev1.Pod
	failJob string
	requeue time.Duration
}

// sync brings job key one step closer to done and records its status. It
// returns when to look again without an event (deadline, back-off, TTL),
// or 0.
func (r *run) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	j, err := r.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		r.expect.Forget(key)
		r.written.Forget(key)
		r.mu.Lock()
		delete(r.failures, key)
		r.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if r.written.Behind(key, j.ResourceVersion) {
		return 0, nil // the event of this run's last write comes next
	}
	var pods []*corev1.Pod
	if j.DeletionTimestamp == nil {
		cctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		pods, err = r.refs.Claim(cctx, j, j.Spec.Selector, func(*corev1.Pod) bool { return true })
		cancel()
	} else {
		pods, err = r.owned(j)
	}
	if err != nil {
		return 0, err
	}
	st := r.load(j, key, pods)
	if j.DeletionTimestamp != nil {
		// Being deleted: no pod is counted any more, and none may stay
		// for want of its finalizer.
		return 0, r.releaseAll(ctx, st.pods)
	}
	if finished(j) {
		if err := r.releaseAll(ctx, st.pods); err != nil {
			return 0, err
		}
		return r.expire(ctx, j, st.now)
	}
	r.track(st)
	// A failure the policy ignores is not counted: its pod may go now.
	if err := r.releaseAll(ctx, st.ignored); err != nil {
		return 0, err
	}
	if err := r.decide(ctx, st); err != nil {
		return 0, err
	}
	updated, err := r.writeStatus(ctx, st)
	if err != nil {
		return 0, err
	}
	// The uids are in the stored status now: the pods may go.
	var errs []error
	for _, p := range st.pods {
		if hasTrackingFinalizer(p) && (st.succeeded[p.UID] || st.failed[p.UID]) {
			errs = append(errs, r.removeFinalizer(ctx, p))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if finished(updated) {
		return r.expire(ctx, updated, st.now)
	}
	return st.requeue, nil
}

// owned returns the cached pods job controls, without claiming.
func (r *run) owned(j *batchv1.Job) ([]*corev1.Pod, error) {
	objs, err := r.byUID.ByIndex(byController, string(j.UID))
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		pods = append(pods, o.(*corev1.Pod))
	}
	return pods, nil
}

// load sorts job's pods and starts its new status from the stored one.
func (r *run) load(j *batchv1.Job, key string, pods []*corev1.Pod) *state {
	st := &state{job: j, key: key, now: r.cfg.Now(), pods: pods, status: *j.Status.DeepCopy(),
		succeeded: map[types.UID]bool{}, failed: map[types.UID]bool{}, completed: map[int]bool{}}
	if u := j.Status.UncountedTerminatedPods; u != nil {
		for _, uid := range u.Succeeded {
			st.succeeded[uid] = true
		}
		for _, uid := range u.Failed {
			st.failed[uid] = true
		}
	}
	if indexed(j) {
		for _, i := range parseIndexes(j.Status.CompletedIndexes, int(*j.Spec.Completions)) {
			st.completed[i] = true
		}
	}
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	for _, p := range pods {
		switch {
		case terminal(p):
		case p.DeletionTimestamp != nil:
			st.terminating = append(st.terminating, p)
		default:
			st.active = append(st.active, p)
			if endpoints.Ready(p) {
				st.ready++
			}
		}
	}
	return st
}

// track moves to the counts the uids whose pods let go of the finalizer
// (or are gone), and records the newly finished pods as uncounted.
func (r *run) track(st *state) {
	byUID := make(map[types.UID]*corev1.Pod, len(st.pods))
	for _, p := range st.pods {
		byUID[p.UID] = p
	}
	// An Indexed job counts its completed indexes, not its pods.
	var succeededCount int32
	for _, m := range []struct {
		uids  map[types.UID]bool
		count *int32
	}{{st.succeeded, &succeededCount}, {st.failed, &st.status.Failed}} {
		for uid := range m.uids {
			if p, ok := byUID[uid]; !ok || !hasTrackingFinalizer(p) {
				delete(m.uids, uid)
				*m.count++
			}
		}
	}
	if indexed(st.job) {
		st.status.Succeeded = int32(len(st.completed))
	} else {
		st.status.Succeeded += succeededCount
	}
	for _, p := range st.pods {
		if !hasTrackingFinalizer(p) || st.succeeded[p.UID] || st.failed[p.UID] {
			continue
		}
		if len(st.succeeded)+len(st.failed) >= maxUncounted {
			st.after(time.Millisecond) // the rest in the next sync, as upstream
			break
		}
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			st.succeeded[p.UID] = true
			if i, ok := completionIndex(p, st.job); ok {
				st.completed[i] = true
			}
		case failedPod(p, st.job):
			switch action, msg := matchFailurePolicy(st.job.Spec.PodFailurePolicy, p); action {
			case batchv1.PodFailurePolicyActionIgnore:
				st.ignored = append(st.ignored, p)
				continue
			case batchv1.PodFailurePolicyActionFailJob:
				if st.failJob == "" {
					st.failJob = msg
				}
			}
			st.failed[p.UID] = true
		}
	}
}

// maxUncounted bounds the pods one sync adds to uncountedTerminatedPods,
// as upstream, so that the status stays small.
const maxUncounted = 500

// succeededCount and failedCount include the uncounted pods; an Indexed
// job's successes are its completed indexes.
func (st *state) succeededCount() int32 {
	if indexed(st.job) {
		return int32(len(st.completed))
	}
	return st.status.Succeeded + int32(len(st.succeeded))
}
func (st *state) failedCount() int32 { return st.status.Failed + int32(len(st.failed)) }

// decide sets the job's conditions and creates or deletes pods.
func (r *run) decide(ctx context.Context, st *state) error {
	j := st.job
	if st.status.StartTime == nil && !*j.Spec.Suspend {
		st.status.StartTime = &metav1.Time{Time: st.now}
	}
	interim := interimCondition(&st.status)
	if interim == nil {
		rule := successRule(st)
		switch {
		case st.failJob != "":
			interim = r.setCondition(st, batchv1.JobFailureTarget, corev1.ConditionTrue, ReasonPodFailurePolicy, st.failJob)
		case r.pastBackoffLimit(st):
			interim = r.setCondition(st, batchv1.JobFailureTarget, corev1.ConditionTrue, ReasonBackoffLimitExceeded, messageBackoffLimitExceeded)
		case pastDeadline(j, &st.status, st.now):
			interim = r.setCondition(st, batchv1.JobFailureTarget, corev1.ConditionTrue, ReasonDeadlineExceeded, messageDeadlineExceeded)
		case rule >= 0:
			interim = r.setCondition(st, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, ReasonSuccessPolicy, fmt.Sprintf("Matched rules at index %d", rule))
		case succeeded(st):
			interim = r.setCondition(st, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, ReasonCompletionsReached, messageCompletionsReached)
		}
	}
	if interim != nil {
		// Done either way: the running pods go (as failures when the job
		// failed, uncounted when it succeeded), and the terminal condition
		// follows once none runs or terminates and every finished pod is
		// counted.
		if interim.Type == batchv1.JobFailureTarget {
			for _, p := range st.active {
				if hasTrackingFinalizer(p) {
					st.failed[p.UID] = true
				}
			}
		}
		if err := r.deletePods(ctx, st, st.active, interim.Type == batchv1.JobSuccessCriteriaMet); err != nil {
			return err
		}
		if len(st.active) == 0 && len(st.terminating) == 0 && len(st.succeeded) == 0 && len(st.failed) == 0 {
			r.finish(st, interim)
		}
		return nil
	}
	if *j.Spec.Suspend {
		if c := condition(&st.status, batchv1.JobSuspended); c == nil || c.Status != corev1.ConditionTrue {
			r.setCondition(st, batchv1.JobSuspended, corev1.ConditionTrue, ReasonSuspended, "Job suspended")
			r.rec.Event(j, corev1.EventTypeNormal, "Suspended", "Job suspended")
		}
		return r.deletePods(ctx, st, st.active, true)
	}
	if c := condition(&st.status, batchv1.JobSuspended); c != nil && c.Status == corev1.ConditionTrue {
		r.setCondition(st, batchv1.JobSuspended, corev1.ConditionFalse, ReasonResumed, "Job resumed")
		r.rec.Event(j, corev1.EventTypeNormal, "Resumed", "Job resumed")
		// The deadline counts from the resumption.
		st.status.StartTime = &metav1.Time{Time: st.now}
	}
	if d := j.Spec.ActiveDeadlineSeconds; d != nil {
		st.after(st.status.StartTime.Add(time.Duration(*d) * time.Second).Sub(st.now))
	}
	if !r.expect.Satisfied(st.key) {
		st.after(r.cfg.ExpectationsTTL) // an informer event comes first, as a rule
		return nil
	}
	if indexed(j) {
		return r.manageIndexed(ctx, st)
	}
	return r.manage(ctx, st)
}

// after asks for a sync in d, unless an earlier one is due.
func (st *state) after(d time.Duration) {
	d = max(d, time.Millisecond)
	if st.requeue == 0 || d < st.requeue {
		st.requeue = d
	}
}

// finish turns the interim condition into the terminal one.
func (r *run) finish(st *state, interim *batchv1.JobCondition) {
	if interim.Type == batchv1.JobSuccessCriteriaMet {
		r.setCondition(st, batchv1.JobComplete, corev1.ConditionTrue, interim.Reason, interim.Message)
		st.status.CompletionTime = &metav1.Time{Time: st.now}
		r.rec.Event(st.job, corev1.EventTypeNormal, "Completed", "Job completed")
		r.cfg.Logger.Info("job completed", "job", st.key, "succeeded", st.succeededCount())
		return
	}
	r.setCondition(st, batchv1.JobFailed, corev1.ConditionTrue, interim.Reason, interim.Message)
	r.rec.Event(st.job, corev1.EventTypeWarning, interim.Reason, interim.Message)
	r.cfg.Logger.Info("job failed", "job", st.key, "reason", interim.Reason, "failed", st.failedCount())
}

// pastBackoffLimit: more pods failed than backoffLimit allows or, with
// restartPolicy OnFailure, the running pods' containers restarted that
// often.
func (r *run) pastBackoffLimit(st *state) bool {
	limit := *st.job.Spec.BackoffLimit
	if st.failedCount() > limit {
		return true
	}
	if st.job.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
		return false
	}
	var restarts int32
	for _, p := range st.active {
		if p.Status.Phase != corev1.PodRunning && p.Status.Phase != corev1.PodPending {
			continue
		}
		for _, s := range p.Status.InitContainerStatuses {
			restarts += s.RestartCount
		}
		for _, s := range p.Status.ContainerStatuses {
			restarts += s.RestartCount
		}
	}
	if limit == 0 {
		return restarts > 0
	}
	return restarts >= limit
}

// pastDeadline: a job that is not suspended ran activeDeadlineSeconds
// since it started (or was last resumed).
func pastDeadline(j *batchv1.Job, st *batchv1.JobStatus, now time.Time) bool {
	d := j.Spec.ActiveDeadlineSeconds
	return d != nil && !*j.Spec.Suspend && st.StartTime != nil && !now.Before(st.StartTime.Add(time.Duration(*d)*time.Second))
}

// successRule returns the index of the first rule of an Indexed job's
// successPolicy its completed indexes meet, or -1: a rule with
// succeededIndexes is met when all of them completed, or succeededCount of
// them when it has both; one with succeededCount only when that many
// indexes completed.
func successRule(st *state) int {
	j := st.job
	if j.Spec.SuccessPolicy == nil || !indexed(j) {
		return -1
	}
	for i, rule := range j.Spec.SuccessPolicy.Rules {
		switch {
		case rule.SucceededIndexes != nil:
			want := parseIndexes(*rule.SucceededIndexes, int(*j.Spec.Completions))
			if len(want) == 0 {
				continue // none within completions: never met
			}
			done := 0
			for _, ix := range want {
				if st.completed[ix] {
					done++
				}
			}
			if (rule.SucceededCount == nil && done == len(want)) || (rule.SucceededCount != nil && done >= int(*rule.SucceededCount)) {
				return i
			}
		case rule.SucceededCount != nil && len(st.completed) >= int(*rule.SucceededCount):
			return i
		}
	}
	return -1
}

// succeeded reports whether the job reached its completions.
func succeeded(st *state) bool {
	j := st.job
	switch {
	case indexed(j):
		return len(st.completed) == int(*j.Spec.Completions)
	case j.Spec.Completions == nil:
		return st.succeededCount() > 0 && len(st.active) == 0
	}
	return st.succeededCount() >= *j.Spec.Completions && len(st.active) == 0
}

// manage creates or deletes NonIndexed pods towards the number the job
// wants running.
func (r *run) manage(ctx context.Context, st *state) error {
	j := st.job
	active := int32(len(st.active))
	// With podReplacementPolicy Failed, a pod being deleted is replaced
	// only once it is gone.
	busy := active
	if onlyReplaceFailed(j) {
		busy += int32(len(st.terminating))
	}
	want := *j.Spec.Parallelism
	switch {
	case j.Spec.Completions == nil && st.succeededCount() > 0:
		want = active // one succeeded: the others finish, none starts
	case j.Spec.Completions != nil:
		want = max(min(*j.Spec.Completions-st.succeededCount(), want), 0)
	}
	if active > want {
		// The newest go first, not ready ones before ready ones.
		excess := slices.Clone(st.active)
		slices.SortStableFunc(excess, func(a, b *corev1.Pod) int {
			if ra, rb := endpoints.Ready(a), endpoints.Ready(b); ra != rb {
				if ra {
					return 1
				}
				return -1
			}
			return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
		})
		return r.deletePods(ctx, st, excess[:active-want], true)
	}
	missing := min(int(want-busy), r.cfg.BurstPods)
	if missing <= 0 || !r.backedOff(st) {
		return nil
	}
	return r.createPods(ctx, st, make([]int, missing), false)
}

// manageIndexed keeps one pod for each index not completed, at most
// parallelism at once, lowest indexes first, and deletes pods of indexes
// completed or out of range and duplicates.
func (r *run) manageIndexed(ctx context.Context, st *state) error {
	j := st.job
	completions := int(*j.Spec.Completions)
	running := map[int]bool{}
	var extra []*corev1.Pod
	for _, p := range st.active {
		i, ok := completionIndex(p, j)
		if !ok || st.completed[i] || running[i] {
			extra = append(extra, p)
			continue
		}
		running[i] = true
	}
	if err := r.deletePods(ctx, st, extra, true); err != nil {
		return err
	}
	taken := maps.Clone(running)
	if onlyReplaceFailed(j) {
		for _, p := range st.terminating {
			if i, ok := completionIndex(p, j); ok {
				taken[i] = true
			}
		}
	}
	want := min(int(*j.Spec.Parallelism), completions-len(st.completed))
	if len(st.active) > want {
		// Each active pod holds an index of its own now; the newest go.
		return r.deletePods(ctx, st, st.active[want:], true)
	}
	var indexes []int
	for i := 0; i < completions && len(taken)+len(indexes) < want && len(indexes) < r.cfg.BurstPods; i++ {
		if !st.completed[i] && !taken[i] {
			indexes = append(indexes, i)
		}
	}
	if len(indexes) == 0 || !r.backedOff(st) {
		return nil
	}
	return r.createPods(ctx, st, indexes, true)
}

// backedOff reports whether failed pods may be replaced now: the back-off
// doubles from BackoffBase with each failure since the last success. When
// not, it asks for a sync when they may.
func (r *run) backedOff(st *state) bool {
	r.mu.Lock()
	rec, ok := r.failures[st.key]
	failed, succ := st.failedCount(), st.succeededCount()
	switch {
	case !ok:
		rec = failureRecord{failed: failed}
	case failed > rec.failed:
		rec = failureRecord{failed: failed, at: st.now, consecutive: rec.consecutive + int(failed-rec.failed), succeeded: succ}
	}
	if succ > rec.succeeded {
		rec.consecutive, rec.succeeded = 0, succ
	}
	r.failures[st.key] = rec
	r.mu.Unlock()
	if rec.consecutive == 0 {
		return true
	}
	delay := r.cfg.BackoffBase << min(rec.consecutive-1, 30)
	delay = min(delay, r.cfg.BackoffMax)
	if wait := rec.at.Add(delay).Sub(st.now); wait > 0 {
		st.after(wait)
		return false
	}
	return true
}

// createPods creates one pod for each of indexes (their values matter
// only when withIndex), in slow-start batches: 1, 2, 4, ... while they
// succeed.
func (r *run) createPods(ctx context.Context, st *state, indexes []int, withIndex bool) error {
	for batch := 1; len(indexes) > 0; batch *= 2 {
		n := min(batch, len(indexes))
		errs := make(chan error, n)
		for _, i := range indexes[:n] {
			r.expect.ExpectCreate(st.key)
			go func() { errs <- r.createPod(ctx, st.job, st.key, i, withIndex) }()
		}
		var failed []error
		for range n {
			if err := <-errs; err != nil {
				failed = append(failed, err)
			}
		}
		if len(failed) > 0 {
			return errors.Join(failed...)
		}
		indexes = indexes[n:]
	}
	return nil
}

func (r *run) createPod(ctx context.Context, j *batchv1.Job, key string, index int, withIndex bool) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	pod := newPod(j, index, withIndex)
	created, err := r.cfg.Client.CoreV1().Pods(j.Namespace).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		r.expect.Created(key)
		if apierrors.IsForbidden(err) && apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
			return nil // the namespace is going; so is the job
		}
		r.rec.Eventf(j, corev1.EventTypeWarning, "FailedCreate", "Error creating: %v", err)
		return fmt.Errorf("job: create pod of %s: %w", key, err)
	}
	r.rec.Eventf(j, corev1.EventTypeNormal, "SuccessfulCreate", "Created pod: %v", created.Name)
	r.cfg.Logger.Debug("created pod", "job", key, "pod", created.Name)
	return nil
}

// deletePods deletes pods, each the very one the cache shows (its uid).
// With uncounted, their finalizers go first: a pod the controller deletes
// is not counted, unless the job failed (the caller counts them then).
func (r *run) deletePods(ctx context.Context, st *state, pods []*corev1.Pod, uncounted bool) error {
	var errs []error
	for _, p := range slices.Clone(pods) {
		if uncounted {
			if err := r.removeFinalizer(ctx, p); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		uid := p.UID
		r.expect.ExpectDelete(st.key, uid)
		dctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
		err := r.cfg.Client.CoreV1().Pods(p.Namespace).Delete(dctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		cancel()
		if err != nil {
			r.expect.Deleted(st.key, uid)
		}
		switch {
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
		case err != nil:
			r.rec.Eventf(st.job, corev1.EventTypeWarning, "FailedDelete", "Error deleting: %v", err)
			errs = append(errs, fmt.Errorf("job: delete pod %s/%s: %w", p.Namespace, p.Name, err))
		default:
			r.rec.Eventf(st.job, corev1.EventTypeNormal, "SuccessfulDelete", "Deleted pod: %v", p.Name)
		}
		st.active = slices.DeleteFunc(st.active, func(a *corev1.Pod) bool { return a.UID == uid })
		if err == nil {
			st.terminating = append(st.terminating, p)
		}
	}
	return errors.Join(errs...)
}

// releaseAll removes the tracking finalizer of every pod that has it.
func (r *run) releaseAll(ctx context.Context, pods []*corev1.Pod) error {
	var errs []error
	for _, p := range pods {
		errs = append(errs, r.removeFinalizer(ctx, p))
	}
	return errors.Join(errs...)
}

// removeFinalizer takes the tracking finalizer off pod with a JSON patch
// that tests the list it edits, so that a list changed meanwhile is
// refused rather than overwritten.
func (r *run) removeFinalizer(ctx context.Context, p *corev1.Pod) error {
	i := slices.Index(p.Finalizers, batchv1.JobTrackingFinalizer)
	if i < 0 {
		return nil
	}
	path := "/metadata/finalizers/" + strconv.Itoa(i)
	patch := fmt.Sprintf(`[{"op":"test","path":%q,"value":%q},{"op":"remove","path":%q}]`, path, batchv1.JobTrackingFinalizer, path)
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	_, err := r.cfg.Client.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.JSONPatchType, []byte(patch), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("job: remove the tracking finalizer of pod %s/%s: %w", p.Namespace, p.Name, err)
	}
	return nil
}

// writeStatus stores st's status if it changed, conditionally on the
// cached job's resourceVersion, and returns the job as stored.
func (r *run) writeStatus(ctx context.Context, st *state) (*batchv1.Job, error) {
	s := &st.status
	s.Active = int32(len(st.active))
	s.Ready = &st.ready
	terminating := int32(len(st.terminating))
	s.Terminating = &terminating
	s.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{Succeeded: sortedUIDs(st.succeeded), Failed: sortedUIDs(st.failed)}
	if indexed(st.job) {
		s.CompletedIndexes = formatIndexes(slices.Sorted(maps.Keys(st.completed)))
	}
	if apiequality.Semantic.DeepEqual(*s, st.job.Status) {
		return st.job, nil
	}
	j := st.job.DeepCopy()
	j.Status = *s
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	updated, err := r.cfg.Client.BatchV1().Jobs(j.Namespace).UpdateStatus(ctx, j, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("job: status of %s: %w", st.key, err)
	}
	r.written.Wrote(st.key, updated.ResourceVersion)
	return updated, nil
}

// expire deletes a finished job once its ttlSecondsAfterFinished passed,
// or says when to look again.
func (r *run) expire(ctx context.Context, j *batchv1.Job, now time.Time) (time.Duration, error) {
	ttl := j.Spec.TTLSecondsAfterFinished
	at := finishTime(j)
	if ttl == nil || at.IsZero() || j.DeletionTimestamp != nil {
		return 0, nil
	}
	if wait := at.Add(time.Duration(*ttl) * time.Second).Sub(now); wait > 0 {
		return wait, nil
	}
	uid, policy := j.UID, metav1.DeletePropagationForeground
	ctx, cancel := context.WithTimeout(ctx, r.cfg.RequestTimeout)
	defer cancel()
	err := r.cfg.Client.BatchV1().Jobs(j.Namespace).Delete(ctx, j.Name, metav1.DeleteOptions{
		PropagationPolicy: &policy, Preconditions: &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("job: delete %s/%s after its TTL: %w", j.Namespace, j.Name, err)
	}
	r.cfg.Logger.Info("deleted a finished job after its TTL", "job", j.Namespace+"/"+j.Name, "ttl_seconds", *ttl)
	return 0, nil
}

// setCondition sets (adds or updates) a condition of st's status and
// returns it; the transition time moves only when its status changes.
func (r *run) setCondition(st *state, t batchv1.JobConditionType, status corev1.ConditionStatus, reason, message string) *batchv1.JobCondition {
	now := metav1.Time{Time: st.now}
	c := condition(&st.status, t)
	if c == nil {
		st.status.Conditions = append(st.status.Conditions, batchv1.JobCondition{Type: t})
		c = &st.status.Conditions[len(st.status.Conditions)-1]
	}
	if c.Status != status {
		c.LastTransitionTime = now
	}
	c.Status, c.Reason, c.Message, c.LastProbeTime = status, reason, message, now
	return c
}

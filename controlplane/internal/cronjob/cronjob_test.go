package cronjob

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/robfig/cron/v3"
	"k8s.io/client-go/kubernetes/fake"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/expectations"
)

var waitFor = apitest.WaitFor

// clock is the controller's clock in the tests: it moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// env is a cronjob controller over an in-process API, with a clock of its
// own.
type env struct {
	t     *testing.T
	cs    kubernetes.Interface
	ns    string
	clock *clock
	ticks int
}

func setup(t *testing.T, ns string) *env {
	t.Helper()
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, cs: cs, ns: ns, clock: &clock{now: time.Now()}}
	cfg := DefaultConfig()
	cfg.Client, cfg.Logger, cfg.Now = cs, slog.New(slog.DiscardHandler), e.clock.Now
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return e
}

// advance moves the clock by d and touches the cronjob so that the
// controller looks at it again at once (its own wake-up follows the real
// clock).
func (e *env) advance(d time.Duration, name string) {
	e.t.Helper()
	e.at(e.clock.Now().Add(d), name)
}

// at sets the clock to t and touches the cronjob.
func (e *env) at(t time.Time, name string) {
	e.t.Helper()
	e.clock.mu.Lock()
	e.clock.now = t
	e.clock.mu.Unlock()
	e.ticks++
	waitFor(e.t, 10*time.Second, "the cronjob touched", func() error {
		cj, err := e.cs.BatchV1().CronJobs(e.ns).Get(e.t.Context(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cj.Annotations == nil {
			cj.Annotations = map[string]string{}
		}
		cj.Annotations["test/tick"] = strconv.Itoa(e.ticks)
		_, err = e.cs.BatchV1().CronJobs(e.ns).Update(e.t.Context(), cj, metav1.UpdateOptions{})
		return err
	})
}

func (e *env) create(name, schedule string, change func(*batchv1.CronJob)) *batchv1.CronJob {
	e.t.Helper()
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: batchv1.CronJobSpec{Schedule: schedule}}
	cj.Spec.JobTemplate.Spec.Template.Spec = corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}
	cj.Spec.JobTemplate.Labels = map[string]string{"app": name}
	if change != nil {
		change(cj)
	}
	created, err := e.cs.BatchV1().CronJobs(e.ns).Create(e.t.Context(), cj, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	// The clock starts 10 s into the minute of the creation (maybe before
	// it: nothing is due before the creation anyway), so that each
	// advance by a minute makes exactly the next minute due.
	e.clock.mu.Lock()
	e.clock.now = time.Unix(minuteAfter(created.CreationTimestamp.Time)*60-50, 0)
	e.clock.mu.Unlock()
	return created
}

// jobs waits until the cronjob has exactly the jobs named by the times
// want (minutes since the epoch), and returns them.
func (e *env) jobs(cj *batchv1.CronJob, want ...int64) []batchv1.Job {
	e.t.Helper()
	var names []string
	for _, m := range want {
		names = append(names, fmt.Sprintf("%s-%d", cj.Name, m))
	}
	var out []batchv1.Job
	waitFor(e.t, 10*time.Second, fmt.Sprintf("jobs %v", names), func() error {
		list, err := e.cs.BatchV1().Jobs(e.ns).List(e.t.Context(), metav1.ListOptions{LabelSelector: "app=" + cj.Name})
		if err != nil {
			return err
		}
		out = slices.DeleteFunc(list.Items, func(j batchv1.Job) bool { return j.DeletionTimestamp != nil })
		var got []string
		for _, j := range out {
			got = append(got, j.Name)
		}
		slices.Sort(got)
		if !slices.Equal(got, names) {
			return fmt.Errorf("got %v", got)
		}
		return nil
	})
	return out
}

// complete writes a job's status as the job controller would once it
// finished.
func (e *env) complete(j batchv1.Job, condition batchv1.JobConditionType) {
	e.t.Helper()
	waitFor(e.t, 10*time.Second, "the job finished", func() error {
		cur, err := e.cs.BatchV1().Jobs(e.ns).Get(e.t.Context(), j.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.NewTime(e.clock.Now())
		cur.Status.StartTime = &now
		cur.Status.Conditions = append(cur.Status.Conditions, batchv1.JobCondition{Type: condition, Status: corev1.ConditionTrue, LastTransitionTime: now})
		if condition == batchv1.JobComplete {
			cur.Status.CompletionTime = &now
			cur.Status.Succeeded = 1
		}
		_, err = e.cs.BatchV1().Jobs(e.ns).UpdateStatus(e.t.Context(), cur, metav1.UpdateOptions{})
		return err
	})
}

func (e *env) cronJob(name string, cond func(*batchv1.CronJob) error) *batchv1.CronJob {
	e.t.Helper()
	var cj *batchv1.CronJob
	waitFor(e.t, 10*time.Second, "the cronjob's status", func() error {
		var err error
		if cj, err = e.cs.BatchV1().CronJobs(e.ns).Get(e.t.Context(), name, metav1.GetOptions{}); err != nil {
			return err
		}
		return cond(cj)
	})
	return cj
}

// minute is the time of the minute after t, in minutes since the epoch.
func minuteAfter(t time.Time) int64 { return t.Unix()/60 + 1 }

func TestCronJobRunsEachTime(t *testing.T) {
	e := setup(t, "cron")
	cj := e.create("tick", "* * * * *", func(c *batchv1.CronJob) { c.Spec.SuccessfulJobsHistoryLimit = new(int32(1)) })
	m := minuteAfter(cj.CreationTimestamp.Time)
	e.advance(time.Minute, cj.Name)
	first := e.jobs(cj, m)[0]
	if ts := first.Annotations[batchv1.CronJobScheduledTimestampAnnotation]; ts != time.Unix(m*60, 0).In(time.Local).Format(time.RFC3339) {
		t.Errorf("scheduled timestamp %q, want minute %d", ts, m)
	}
	if ref := metav1.GetControllerOf(&first); ref == nil || ref.UID != cj.UID {
		t.Errorf("job's controller: %v", ref)
	}
	e.cronJob(cj.Name, func(c *batchv1.CronJob) error {
		if len(c.Status.Active) != 1 || c.Status.Active[0].Name != first.Name || c.Status.LastScheduleTime == nil || c.Status.LastScheduleTime.Unix() != m*60 {
			return fmt.Errorf("%+v", c.Status)
		}
		return nil
	})
	e.complete(first, batchv1.JobComplete)
	e.cronJob(cj.Name, func(c *batchv1.CronJob) error {
		if len(c.Status.Active) != 0 || c.Status.LastSuccessfulTime == nil {
			return fmt.Errorf("%+v", c.Status)
		}
		return nil
	})
	// The next minute: a new job; once it succeeds, the history keeps one.
	e.advance(time.Minute, cj.Name)
	second := e.jobs(cj, m, m+1)[1]
	e.complete(second, batchv1.JobComplete)
	e.jobs(cj, m+1)
}

func TestCronJobConcurrency(t *testing.T) {
	e := setup(t, "concurrency")
	forbid := e.create("forbid", "* * * * *", func(c *batchv1.CronJob) { c.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent })
	replace := e.create("replace", "* * * * *", func(c *batchv1.CronJob) { c.Spec.ConcurrencyPolicy = batchv1.ReplaceConcurrent })
	m := minuteAfter(forbid.CreationTimestamp.Time)
	if minuteAfter(replace.CreationTimestamp.Time) != m {
		t.Skip("created across a minute boundary") // rare; the times below assume one minute
	}
	e.advance(time.Minute, forbid.Name)
	e.advance(0, replace.Name)
	e.jobs(forbid, m)
	e.jobs(replace, m)
	// The next minute, the first jobs still run.
	e.advance(time.Minute, forbid.Name)
	e.advance(0, replace.Name)
	e.jobs(replace, m+1) // the running one replaced
	e.cronJob(forbid.Name, func(c *batchv1.CronJob) error {
		if c.Status.LastScheduleTime == nil || c.Status.LastScheduleTime.Unix() != m*60 {
			return fmt.Errorf("lastScheduleTime %v, want the first minute's (the second was skipped)", c.Status.LastScheduleTime)
		}
		return nil
	})
	e.jobs(forbid, m)
}

func TestCronJobSuspendAndDeadline(t *testing.T) {
	e := setup(t, "deadline")
	cj := e.create("late", "* * * * *", func(c *batchv1.CronJob) {
		c.Spec.Suspend = new(true)
		c.Spec.StartingDeadlineSeconds = new(int64(30))
	})
	m := minuteAfter(cj.CreationTimestamp.Time)
	first := time.Unix(m*60, 0)
	e.at(first.Add(3*time.Minute+45*time.Second), cj.Name)
	// Resumed then, the times more than 30 s old are missed, and the next
	// one runs: only it, so nothing ran while suspended.
	waitFor(t, 10*time.Second, "resumed", func() error {
		c, err := e.cs.BatchV1().CronJobs(e.ns).Get(t.Context(), cj.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		c.Spec.Suspend = new(false)
		_, err = e.cs.BatchV1().CronJobs(e.ns).Update(t.Context(), c, metav1.UpdateOptions{})
		return err
	})
	e.at(first.Add(4*time.Minute+10*time.Second), cj.Name)
	e.jobs(cj, m+4)
	late := e.cronJob(cj.Name, func(c *batchv1.CronJob) error {
		if c.Status.LastScheduleTime == nil {
			return fmt.Errorf("%+v", c.Status)
		}
		return nil
	})
	if got := late.Status.LastScheduleTime.Unix(); got != (m+4)*60 {
		t.Errorf("lastScheduleTime %d, want %d", got, (m+4)*60)
	}
}

func TestLatestDue(t *testing.T) {
	sched, err := cron.ParseStandard("*/5 * * * *")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(base)}}
	for _, tc := range []struct {
		now    time.Duration
		due    time.Duration // -1: none
		missed int
	}{
		{4 * time.Minute, -1, 0},
		{5 * time.Minute, 5 * time.Minute, 1},
		{7 * time.Minute, 5 * time.Minute, 1},
		{12 * time.Minute, 10 * time.Minute, 2},
		{1000*time.Hour + 3*time.Minute, 1000 * time.Hour, 12000},
	} {
		due, missed := latestDue(cj, &cj.Status, sched, base.Add(tc.now))
		want := time.Time{}
		if tc.due >= 0 {
			want = base.Add(tc.due)
		}
		if !due.Equal(want) || missed != tc.missed {
			t.Errorf("now +%v: got %v (%d missed), want %v (%d)", tc.now, due, missed, want, tc.missed)
		}
	}
}

// TestLatestDueIrregular: weekdays at 9, last run on a Wednesday, now
// Monday 8:00: Friday 9:00 is the latest due (the estimate from the first
// interval would overshoot into the weekend).
func TestLatestDueIrregular(t *testing.T) {
	sched, err := cron.ParseStandard("0 9 * * 1-5")
	if err != nil {
		t.Fatal(err)
	}
	wed := time.Date(2026, 1, 7, 9, 30, 0, 0, time.UTC)
	cj := &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(wed.Add(-time.Hour))}}
	cj.Status.LastScheduleTime = &metav1.Time{Time: wed}
	due, _ := latestDue(cj, &cj.Status, sched, time.Date(2026, 1, 12, 8, 0, 0, 0, time.UTC))
	if want := time.Date(2026, 1, 9, 9, 0, 0, 0, time.UTC); !due.Equal(want) {
		t.Errorf("got %v, want %v", due, want)
	}
}

// TestStaleCacheDoesNotRepeat: right after creating the job of a time, the
// cronjob cache may still show the old lastScheduleTime while the job
// cache shows the job. The sync must neither create nor (Replace) delete
// anything then.
func TestStaleCacheDoesNotRepeat(t *testing.T) {
	due := time.Date(2026, 3, 1, 10, 0, 0, 0, time.Local)
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tick", Namespace: "ns", UID: "cj-uid", ResourceVersion: "5", CreationTimestamp: metav1.NewTime(due.Add(-90 * time.Second))},
		Spec:       batchv1.CronJobSpec{Schedule: "* * * * *", ConcurrencyPolicy: batchv1.ReplaceConcurrent, Suspend: new(false)},
	}
	cj.Status.LastScheduleTime = &metav1.Time{Time: due.Add(-time.Minute)}
	job := newJob(cj, due)
	job.UID, job.ResourceVersion = "job-uid", "6"
	crons := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	jobs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := crons.Add(cj); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Add(job); err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(cj, job)
	cs.ClearActions()
	r := &run{
		cfg:   Config{Client: cs, Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return due.Add(5 * time.Second) }, RequestTimeout: time.Second},
		crons: batchlisters.NewCronJobLister(crons), jobs: batchlisters.NewJobLister(jobs),
		rec: record.NewFakeRecorder(10), written: expectations.NewWrites(),
	}
	if _, err := r.sync(t.Context(), "ns/tick"); err != nil {
		t.Fatal(err)
	}
	for _, a := range cs.Actions() {
		if a.GetVerb() == "create" || a.GetVerb() == "delete" {
			t.Errorf("a stale cronjob cache led to %s %s", a.GetVerb(), a.GetResource().Resource)
		}
	}
	got, err := cs.BatchV1().CronJobs("ns").Get(t.Context(), "tick", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := got.Status; st.LastScheduleTime == nil || !st.LastScheduleTime.Equal(&metav1.Time{Time: due}) || len(st.Active) != 1 || st.Active[0].UID != "job-uid" {
		t.Errorf("status: %+v, want the job active and its time the last", st)
	}
}

// TestLostStatusWrite: the job of a time exists but the status write that
// followed its creation was lost (a conflict). The job's scheduled time
// comes back into lastScheduleTime; without it, under Forbid, the time
// would stay unrecorded for good and the next one skipped as the first.
func TestLostStatusWrite(t *testing.T) {
	e := setup(t, "lost")
	cj := e.create("forbid", "* * * * *", func(c *batchv1.CronJob) {
		c.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent
		c.Spec.Suspend = new(true) // nothing runs until the job below exists
	})
	m := minuteAfter(cj.CreationTimestamp.Time)
	if _, err := e.cs.BatchV1().Jobs(e.ns).Create(t.Context(), newJob(cj, time.Unix(m*60, 0)), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.jobs(cj, m)
	waitFor(t, 10*time.Second, "resumed", func() error {
		c, err := e.cs.BatchV1().CronJobs(e.ns).Get(t.Context(), cj.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		c.Spec.Suspend = new(false)
		_, err = e.cs.BatchV1().CronJobs(e.ns).Update(t.Context(), c, metav1.UpdateOptions{})
		return err
	})
	e.advance(2*time.Minute, cj.Name) // minute m+1 is due, m's job still runs
	e.cronJob(cj.Name, func(c *batchv1.CronJob) error {
		if c.Status.LastScheduleTime == nil || c.Status.LastScheduleTime.Unix() != m*60 || len(c.Status.Active) != 1 {
			return fmt.Errorf("lastScheduleTime %v, %d active; want the job's time, %d, and it active", c.Status.LastScheduleTime, len(c.Status.Active), m*60)
		}
		return nil
	})
	e.jobs(cj, m) // Forbid: no second job
}

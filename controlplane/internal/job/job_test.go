package job

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/expectations"
)

var waitFor = apitest.WaitFor

// setup serves the API in-process, makes namespace ns and runs a Job
// controller with a short back-off; stop stops the controller (also at
// the end of the test).
func setup(t *testing.T, ns string) (cs kubernetes.Interface, start func() (stop func())) {
	t.Helper()
	cs = kubernetes.NewForConfigOrDie(apitest.Start(t))
	if _, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	start = func() func() {
		cfg := DefaultConfig()
		cfg.Client, cfg.Logger = cs, slog.New(slog.DiscardHandler)
		cfg.BackoffBase, cfg.BackoffMax = 20*time.Millisecond, 100*time.Millisecond
		c, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		var once sync.Once
		stop := func() {
			once.Do(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("Run: %v", err)
				}
			})
		}
		t.Cleanup(stop)
		return stop
	}
	return cs, start
}

func newJob(name string, completions, parallelism int32) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: batchv1.JobSpec{
		Parallelism: &parallelism,
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "c", Image: "busybox"}},
		}},
	}}
	if completions >= 0 {
		j.Spec.Completions = &completions
	}
	return j
}

func createJob(t *testing.T, cs kubernetes.Interface, ns string, j *batchv1.Job) *batchv1.Job {
	t.Helper()
	created, err := cs.BatchV1().Jobs(ns).Create(t.Context(), j, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return created
}

// jobPods lists the job's pods not being deleted.
func jobPods(t *testing.T, cs kubernetes.Interface, j *batchv1.Job) []corev1.Pod {
	t.Helper()
	list, err := cs.CoreV1().Pods(j.Namespace).List(t.Context(), metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + j.Name})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(list.Items, func(p corev1.Pod) bool { return p.DeletionTimestamp != nil })
}

// running returns the job's pods that have not finished, waiting until
// there are exactly n.
func running(t *testing.T, cs kubernetes.Interface, j *batchv1.Job, n int) []corev1.Pod {
	t.Helper()
	var out []corev1.Pod
	waitFor(t, 20*time.Second, fmt.Sprintf("%d running pods of %s", n, j.Name), func() error {
		out = slices.DeleteFunc(jobPods(t, cs, j), func(p corev1.Pod) bool {
			return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		})
		if len(out) != n {
			return fmt.Errorf("%d", len(out))
		}
		return nil
	})
	return out
}

// finish sets pod's phase as its kubelet would once its containers exited.
func finish(t *testing.T, cs kubernetes.Interface, p corev1.Pod, phase corev1.PodPhase) {
	t.Helper()
	waitFor(t, 10*time.Second, "the pod's status written", func() error {
		cur, err := cs.CoreV1().Pods(p.Namespace).Get(t.Context(), p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Phase = phase
		_, err = cs.CoreV1().Pods(p.Namespace).UpdateStatus(t.Context(), cur, metav1.UpdateOptions{})
		return err
	})
}

// waitJob waits until the stored job satisfies cond.
func waitJob(t *testing.T, cs kubernetes.Interface, j *batchv1.Job, what string, cond func(*batchv1.Job) error) *batchv1.Job {
	t.Helper()
	var cur *batchv1.Job
	waitFor(t, 20*time.Second, what, func() error {
		var err error
		if cur, err = cs.BatchV1().Jobs(j.Namespace).Get(t.Context(), j.Name, metav1.GetOptions{}); err != nil {
			return err
		}
		return cond(cur)
	})
	return cur
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType, reason string) error {
	for _, c := range j.Status.Conditions {
		if c.Type == t && c.Status == corev1.ConditionTrue && c.Reason == reason {
			return nil
		}
	}
	return fmt.Errorf("no %s=True (%s) in %+v; status %+v", t, reason, j.Status.Conditions, j.Status)
}

// noFinalizers waits until no pod of the job holds the tracking finalizer.
func noFinalizers(t *testing.T, cs kubernetes.Interface, ns string) {
	t.Helper()
	waitFor(t, 20*time.Second, "no pod holding the tracking finalizer", func() error {
		list, err := cs.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range list.Items {
			if slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) {
				return fmt.Errorf("pod %s has it", p.Name)
			}
		}
		return nil
	})
}

func TestJobCompletes(t *testing.T) {
	cs, start := setup(t, "jobs")
	start()
	j := createJob(t, cs, "jobs", newJob("pi", 3, 2))
	pods := running(t, cs, j, 2)
	for _, p := range pods {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.UID != j.UID || !slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer) ||
			!strings.HasPrefix(p.Name, "pi-") || p.Labels[batchv1.ControllerUidLabel] != string(j.UID) {
			t.Fatalf("pod %s: owner %v, finalizers %v, labels %v", p.Name, ref, p.Finalizers, p.Labels)
		}
	}
	finish(t, cs, pods[0], corev1.PodSucceeded)
	// One done, two to go, two at a time.
	waitJob(t, cs, j, "one success counted", func(j *batchv1.Job) error {
		if j.Status.Succeeded != 1 || j.Status.Active != 2 || j.Status.StartTime == nil {
			return fmt.Errorf("%+v", j.Status)
		}
		return nil
	})
	for _, p := range running(t, cs, j, 2) {
		finish(t, cs, p, corev1.PodSucceeded)
	}
	done := waitJob(t, cs, j, "Complete", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobComplete, ReasonCompletionsReached) })
	if err := hasCondition(done, batchv1.JobSuccessCriteriaMet, ReasonCompletionsReached); err != nil {
		t.Error(err)
	}
	if s := done.Status; s.Succeeded != 3 || s.Failed != 0 || s.Active != 0 || s.CompletionTime == nil ||
		len(s.UncountedTerminatedPods.Succeeded)+len(s.UncountedTerminatedPods.Failed) != 0 {
		t.Errorf("status: %+v", s)
	}
	if n := len(jobPods(t, cs, j)); n != 3 {
		t.Errorf("got %d pods, want 3", n)
	}
	noFinalizers(t, cs, "jobs")
}

// TestJobCountsExactlyOnce restarts the controller while pods finish, and
// deletes finished pods: every success is counted once, none is lost, and
// no pod runs beyond the completions.
func TestJobCountsExactlyOnce(t *testing.T) {
	cs, start := setup(t, "once")
	stop := start()
	j := createJob(t, cs, "once", newJob("batch", 6, 3))
	pods := running(t, cs, j, 3)
	stop()
	// Finished while no controller runs; one is even deleted at once (a
	// user's kubectl delete): the finalizer holds it until it is counted.
	for _, p := range pods {
		finish(t, cs, p, corev1.PodSucceeded)
	}
	if err := cs.CoreV1().Pods("once").Delete(t.Context(), pods[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	stop = start()
	waitJob(t, cs, j, "three successes counted", func(j *batchv1.Job) error {
		if j.Status.Succeeded != 3 {
			return fmt.Errorf("%+v", j.Status)
		}
		return nil
	})
	rest := running(t, cs, j, 3)
	for i, p := range rest {
		finish(t, cs, p, corev1.PodSucceeded)
		if i == 0 {
			stop() // in the middle of counting
			stop = start()
		}
	}
	done := waitJob(t, cs, j, "Complete", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobComplete, ReasonCompletionsReached) })
	if done.Status.Succeeded != 6 {
		t.Errorf("succeeded %d, want exactly 6", done.Status.Succeeded)
	}
	waitFor(t, 10*time.Second, "the deleted pod gone", func() error {
		_, err := cs.CoreV1().Pods("once").Get(t.Context(), pods[0].Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there: %v", err)
	})
	list, err := cs.CoreV1().Pods("once").List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 5 {
		t.Errorf("got %d pods, want the 5 not deleted (no extra pod ever created)", len(list.Items))
	}
}

func TestJobBackoffLimit(t *testing.T) {
	cs, start := setup(t, "fail")
	start()
	j := newJob("flaky", 1, 1)
	j.Spec.BackoffLimit = new(int32(1))
	j = createJob(t, cs, "fail", j)
	finish(t, cs, running(t, cs, j, 1)[0], corev1.PodFailed)
	// Replaced after the back-off; its failure too is one too many.
	finish(t, cs, running(t, cs, j, 1)[0], corev1.PodFailed)
	failed := waitJob(t, cs, j, "Failed", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobFailed, ReasonBackoffLimitExceeded) })
	if err := hasCondition(failed, batchv1.JobFailureTarget, ReasonBackoffLimitExceeded); err != nil {
		t.Error(err)
	}
	if s := failed.Status; s.Failed != 2 || s.Succeeded != 0 || s.Active != 0 || s.CompletionTime != nil {
		t.Errorf("status: %+v", s)
	}
	if n := len(jobPods(t, cs, j)); n != 2 {
		t.Errorf("got %d pods, want 2", n)
	}
	noFinalizers(t, cs, "fail")
}

func TestJobDeadline(t *testing.T) {
	cs, start := setup(t, "deadline")
	start()
	j := newJob("slow", 2, 2)
	j.Spec.ActiveDeadlineSeconds = new(int64(1))
	j = createJob(t, cs, "deadline", j)
	failed := waitJob(t, cs, j, "Failed", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobFailed, ReasonDeadlineExceeded) })
	if s := failed.Status; s.Active != 0 || s.Failed != 2 {
		t.Errorf("status: %+v, want the two running pods failed (both were made at the start)", s)
	}
	running(t, cs, j, 0)
	noFinalizers(t, cs, "deadline")
}

func TestJobIndexed(t *testing.T) {
	cs, start := setup(t, "indexed")
	start()
	j := newJob("idx", 3, 2)
	j.Spec.CompletionMode = new(batchv1.IndexedCompletion)
	j = createJob(t, cs, "indexed", j)
	byIndex := func(pods []corev1.Pod) map[string]corev1.Pod {
		m := map[string]corev1.Pod{}
		for _, p := range pods {
			m[p.Annotations[batchv1.JobCompletionIndexAnnotation]] = p
		}
		return m
	}
	pods := byIndex(running(t, cs, j, 2))
	p0, ok := pods["0"]
	if !ok || pods["1"].Name == "" {
		t.Fatalf("pods by index: %v, want 0 and 1 first", pods)
	}
	if !strings.HasPrefix(p0.Name, "idx-0-") || p0.Spec.Hostname != "idx-0" || p0.Labels[batchv1.JobCompletionIndexAnnotation] != "0" ||
		!slices.ContainsFunc(p0.Spec.Containers[0].Env, func(e corev1.EnvVar) bool {
			return e.Name == "JOB_COMPLETION_INDEX" && e.ValueFrom != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.labels['batch.kubernetes.io/job-completion-index']"
		}) {
		t.Errorf("pod of index 0: %+v", p0)
	}
	finish(t, cs, pods["1"], corev1.PodSucceeded)
	finish(t, cs, p0, corev1.PodFailed)
	waitJob(t, cs, j, "index 1 completed", func(j *batchv1.Job) error {
		if j.Status.CompletedIndexes != "1" || j.Status.Failed != 1 {
			return fmt.Errorf("%+v", j.Status)
		}
		return nil
	})
	// Index 0 again (after its back-off) and index 2.
	pods = byIndex(running(t, cs, j, 2))
	if _, ok := pods["0"]; !ok || pods["2"].Name == "" {
		t.Fatalf("pods by index: %v, want 0 and 2", pods)
	}
	for _, p := range pods {
		finish(t, cs, p, corev1.PodSucceeded)
	}
	done := waitJob(t, cs, j, "Complete", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobComplete, ReasonCompletionsReached) })
	if s := done.Status; s.CompletedIndexes != "0-2" || s.Succeeded != 3 || s.Failed != 1 {
		t.Errorf("status: %+v", s)
	}
}

// TestJobSuccessPolicy: an Indexed job whose successPolicy rule is met
// succeeds with upstream's reason and message, its other pods deleted and
// not counted.
func TestJobSuccessPolicy(t *testing.T) {
	cs, start := setup(t, "success")
	start()
	j := newJob("leader", 4, 4)
	j.Spec.CompletionMode = new(batchv1.IndexedCompletion)
	two, leaderOnly := int32(2), "0"
	j.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: []batchv1.SuccessPolicyRule{
		{SucceededIndexes: &leaderOnly}, // index 0 does not succeed here
		{SucceededIndexes: new("1-3"), SucceededCount: &two},
	}}
	j = createJob(t, cs, "success", j)
	pods := map[string]corev1.Pod{}
	for _, p := range running(t, cs, j, 4) {
		pods[p.Annotations[batchv1.JobCompletionIndexAnnotation]] = p
	}
	finish(t, cs, pods["1"], corev1.PodSucceeded)
	waitJob(t, cs, j, "index 1 completed", func(j *batchv1.Job) error {
		if j.Status.CompletedIndexes != "1" {
			return fmt.Errorf("%+v", j.Status)
		}
		return nil
	})
	if got, _ := cs.BatchV1().Jobs("success").Get(t.Context(), j.Name, metav1.GetOptions{}); hasCondition(got, batchv1.JobSuccessCriteriaMet, ReasonSuccessPolicy) == nil {
		t.Fatalf("one of two indexes: the job already met its policy: %+v", got.Status)
	}
	finish(t, cs, pods["3"], corev1.PodSucceeded)
	done := waitJob(t, cs, j, "Complete", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobComplete, ReasonSuccessPolicy) })
	for _, c := range done.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobSuccessCriteriaMet) && c.Message != "Matched rules at index 1" {
			t.Errorf("condition %s: message %q, want %q", c.Type, c.Message, "Matched rules at index 1")
		}
	}
	if s := done.Status; s.CompletedIndexes != "1,3" || s.Succeeded != 2 || s.Failed != 0 || s.Active != 0 {
		t.Errorf("status: %+v, want indexes 1 and 3 succeeded, the others gone uncounted", s)
	}
	running(t, cs, j, 0)
	noFinalizers(t, cs, "success")
}

func TestJobSuspend(t *testing.T) {
	cs, start := setup(t, "suspend")
	start()
	j := newJob("later", 2, 2)
	j.Spec.Suspend = new(true)
	j = createJob(t, cs, "suspend", j)
	waitJob(t, cs, j, "Suspended", func(j *batchv1.Job) error {
		if err := hasCondition(j, batchv1.JobSuspended, ReasonSuspended); err != nil {
			return err
		}
		if j.Status.StartTime != nil {
			return fmt.Errorf("startTime %v on a job that never ran", j.Status.StartTime)
		}
		return nil
	})
	running(t, cs, j, 0)
	resume := func(suspend bool) {
		waitFor(t, 10*time.Second, "the job updated", func() error {
			cur, err := cs.BatchV1().Jobs("suspend").Get(t.Context(), j.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Spec.Suspend = &suspend
			_, err = cs.BatchV1().Jobs("suspend").Update(t.Context(), cur, metav1.UpdateOptions{})
			return err
		})
	}
	resume(false)
	running(t, cs, j, 2)
	resumed := waitJob(t, cs, j, "resumed", func(j *batchv1.Job) error {
		for _, c := range j.Status.Conditions {
			if c.Type == batchv1.JobSuspended && c.Status == corev1.ConditionFalse && c.Reason == ReasonResumed && j.Status.StartTime != nil {
				return nil
			}
		}
		return fmt.Errorf("%+v", j.Status)
	})
	resume(true)
	running(t, cs, j, 0)
	again := waitJob(t, cs, j, "suspended again", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobSuspended, ReasonSuspended) })
	if again.Status.Failed != 0 {
		t.Errorf("failed %d: pods deleted for a suspension are not failures", again.Status.Failed)
	}
	if resumed.Status.StartTime == nil {
		t.Error("no startTime once resumed")
	}
	noFinalizers(t, cs, "suspend")
}

// TestJobTTLAndOrphans: a finished job with ttlSecondsAfterFinished goes,
// and the pods of a deleted job (no garbage collector runs here) let go of
// their finalizer.
func TestJobTTLAndOrphans(t *testing.T) {
	cs, start := setup(t, "ttl")
	start()
	j := newJob("brief", 1, 1)
	j.Spec.TTLSecondsAfterFinished = new(int32(0))
	j = createJob(t, cs, "ttl", j)
	finish(t, cs, running(t, cs, j, 1)[0], corev1.PodSucceeded)
	waitJob(t, cs, j, "deleted (foreground) after its TTL", func(j *batchv1.Job) error {
		if j.DeletionTimestamp == nil || !slices.Contains(j.Finalizers, metav1.FinalizerDeleteDependents) {
			return fmt.Errorf("deletionTimestamp %v, finalizers %v", j.DeletionTimestamp, j.Finalizers)
		}
		return nil
	})

	// Gone at once (Background): its pods are left to the garbage
	// collector, and to this controller to release.
	gone := createJob(t, cs, "ttl", newJob("abandoned", 2, 2))
	running(t, cs, gone, 2)
	background := metav1.DeletePropagationBackground
	if err := cs.BatchV1().Jobs("ttl").Delete(t.Context(), gone.Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil {
		t.Fatal(err)
	}
	noFinalizers(t, cs, "ttl")
	// Held for the garbage collector to orphan its pods (the default for
	// jobs): nothing counts them any more either.
	held := createJob(t, cs, "ttl", newJob("held", 2, 2))
	running(t, cs, held, 2)
	if err := cs.BatchV1().Jobs("ttl").Delete(t.Context(), held.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitJob(t, cs, held, "held with the orphan finalizer", func(j *batchv1.Job) error {
		if !slices.Contains(j.Finalizers, metav1.FinalizerOrphanDependents) {
			return fmt.Errorf("finalizers %v", j.Finalizers)
		}
		return nil
	})
	noFinalizers(t, cs, "ttl")
	// Orphaned, as the garbage collector leaves them.
	for _, p := range jobPods(t, cs, held) {
		waitFor(t, 10*time.Second, "the pod orphaned", func() error {
			cur, err := cs.CoreV1().Pods("ttl").Get(t.Context(), p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.OwnerReferences = nil
			cur.Finalizers = append(cur.Finalizers, batchv1.JobTrackingFinalizer)
			_, err = cs.CoreV1().Pods("ttl").Update(t.Context(), cur, metav1.UpdateOptions{})
			return err
		})
	}
	noFinalizers(t, cs, "ttl")
}

func TestIndexesFormat(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{{nil, ""}, {[]int{0}, "0"}, {[]int{0, 1, 2}, "0-2"}, {[]int{1, 3, 4, 5, 7}, "1,3-5,7"}} {
		got := formatIndexes(tc.in)
		if got != tc.want {
			t.Errorf("formatIndexes(%v) = %q, want %q", tc.in, got, tc.want)
		}
		if back := parseIndexes(got, 100); !slices.Equal(back, tc.in) {
			t.Errorf("parseIndexes(%q) = %v, want %v", got, back, tc.in)
		}
	}
	if got := parseIndexes("1,3-5,9", 5); !slices.Equal(got, []int{1, 3, 4}) {
		t.Errorf("parseIndexes beyond completions: %v", got)
	}
}

// TestJobPodFailurePolicy: a failure the policy ignores is not counted
// (backoffLimit 0 would fail the job) and its pod is replaced; one whose
// exit code a FailJob rule names fails the job at once, saying why.
func TestJobPodFailurePolicy(t *testing.T) {
	cs, start := setup(t, "policy")
	start()
	j := newJob("trainer", 1, 1)
	j.Spec.BackoffLimit = new(int32(0))
	j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}}},
		{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}}},
	}}
	j = createJob(t, cs, "policy", j)
	failWith := func(p corev1.Pod, exitCode int32, cond corev1.PodConditionType) {
		t.Helper()
		waitFor(t, 10*time.Second, "the pod failed", func() error {
			cur, err := cs.CoreV1().Pods(p.Namespace).Get(t.Context(), p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cur.Status.Phase = corev1.PodFailed
			cur.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: exitCode}}}}
			if cond != "" {
				cur.Status.Conditions = append(cur.Status.Conditions, corev1.PodCondition{Type: cond, Status: corev1.ConditionTrue})
			}
			_, err = cs.CoreV1().Pods(p.Namespace).UpdateStatus(t.Context(), cur, metav1.UpdateOptions{})
			return err
		})
	}
	first := running(t, cs, j, 1)[0]
	failWith(first, 137, corev1.DisruptionTarget)
	second := running(t, cs, j, 1)[0]
	if second.Name == first.Name {
		t.Fatal("the ignored failure was not replaced")
	}
	if cur := waitJob(t, cs, j, "the job", func(*batchv1.Job) error { return nil }); cur.Status.Failed != 0 || finished(cur) {
		t.Fatalf("an ignored failure counted: %+v", cur.Status)
	}
	failWith(second, 42, "")
	failed := waitJob(t, cs, j, "Failed", func(j *batchv1.Job) error { return hasCondition(j, batchv1.JobFailed, ReasonPodFailurePolicy) })
	want := fmt.Sprintf("Container c for pod policy/%s failed with exit code 42 matching FailJob rule at index 0", second.Name)
	if c := condition(&failed.Status, batchv1.JobFailed); c.Message != want || failed.Status.Failed != 1 {
		t.Errorf("Failed: %q, failed %d; want %q, 1", c.Message, failed.Status.Failed, want)
	}
	noFinalizers(t, cs, "policy")
}

func TestPastDeadline(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	j := newJob("d", 1, 1)
	j.Spec.ActiveDeadlineSeconds, j.Spec.Suspend = new(int64(60)), new(false)
	st := &batchv1.JobStatus{StartTime: &metav1.Time{Time: start}}
	if pastDeadline(j, st, start.Add(59*time.Second)) || !pastDeadline(j, st, start.Add(60*time.Second)) {
		t.Error("the deadline is not at startTime + activeDeadlineSeconds")
	}
	// Suspended, the clock stops (a resume restarts it).
	j.Spec.Suspend = new(true)
	if pastDeadline(j, st, start.Add(time.Hour)) {
		t.Error("a suspended job went past its deadline")
	}
}

// TestJobReplacesOnlyFailed: with podReplacementPolicy Failed, a pod being
// deleted is not replaced until it is Failed, and then counts as one
// failure.
func TestJobReplacesOnlyFailed(t *testing.T) {
	cs, start := setup(t, "replace")
	start()
	j := newJob("careful", 1, 1)
	j.Spec.PodReplacementPolicy = new(batchv1.Failed)
	j = createJob(t, cs, "replace", j)
	first := running(t, cs, j, 1)[0]
	if err := cs.CoreV1().Pods("replace").Delete(t.Context(), first.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The sync that saw the deletion wrote this status after any create.
	waitJob(t, cs, j, "the pod terminating", func(j *batchv1.Job) error {
		if j.Status.Active != 0 || j.Status.Terminating == nil || *j.Status.Terminating != 1 {
			return fmt.Errorf("%+v", j.Status)
		}
		return nil
	})
	if pods := jobPods(t, cs, j); len(pods) != 0 {
		t.Fatalf("replaced while the first pod is still going: %v", pods)
	}
	// Its node reports it Failed (killed): now it counts and is replaced.
	waitFor(t, 10*time.Second, "the pod failed", func() error {
		cur, err := cs.CoreV1().Pods("replace").Get(t.Context(), first.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Phase = corev1.PodFailed
		_, err = cs.CoreV1().Pods("replace").UpdateStatus(t.Context(), cur, metav1.UpdateOptions{})
		return err
	})
	second := running(t, cs, j, 1)[0]
	if second.Name == first.Name {
		t.Fatal("no replacement")
	}
	waitJob(t, cs, j, "one failure", func(j *batchv1.Job) error {
		if j.Status.Failed != 1 {
			return fmt.Errorf("%+v", j.Status)
		}
		return nil
	})
}

// TestBehindOwnWrite: a job cache older than the controller's last status
// write of that job is not acted on (the write's own event comes next): a
// failed pod whose finalizer the controller removed after recording it
// would otherwise look like nothing happened, and be replaced.
func TestBehindOwnWrite(t *testing.T) {
	j := newJob("stale", 1, 1)
	j.Namespace, j.UID, j.ResourceVersion = "ns", "job-uid", "7"
	j.Spec.BackoffLimit, j.Spec.Suspend, j.Spec.CompletionMode = new(int32(0)), new(false), new(batchv1.NonIndexedCompletion)
	jobs := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	if err := jobs.Add(j); err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(j)
	r := &run{
		cfg:  Config{Client: cs, Logger: slog.New(slog.DiscardHandler), Now: time.Now, RequestTimeout: time.Second, BurstPods: 10},
		jobs: batchlisters.NewJobLister(jobs), written: expectations.NewWrites(),
	}
	r.written.Wrote("ns/stale", "9")
	after, err := r.sync(t.Context(), "ns/stale")
	if err != nil || after != 0 || len(cs.Actions()) != 0 {
		t.Errorf("sync of a cache behind its own write: %v, %v, actions %v; want nothing done", after, err, cs.Actions())
	}
}

// TestJobIndexedParallelismDown: parallelism lowered, one of the two
// running indexes goes.
func TestJobIndexedParallelismDown(t *testing.T) {
	cs, start := setup(t, "down")
	start()
	j := newJob("idx", 3, 2)
	j.Spec.CompletionMode = new(batchv1.IndexedCompletion)
	j = createJob(t, cs, "down", j)
	running(t, cs, j, 2)
	waitFor(t, 10*time.Second, "parallelism 1", func() error {
		cur, err := cs.BatchV1().Jobs("down").Get(t.Context(), j.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Parallelism = new(int32(1))
		_, err = cs.BatchV1().Jobs("down").Update(t.Context(), cur, metav1.UpdateOptions{})
		return err
	})
	running(t, cs, j, 1)
}

package strategy

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const testJobUID = types.UID("7c1c8a3e-6f7a-4b51-9d0e-2f3a4b5c6d7e")

// newJob is a job as the registry hands it to validation: named, with its
// uid, and its selector generated.
func newJob() *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: objectMeta("pi"), Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: testPodSpec()}}}
	j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	j.UID = testJobUID
	PrepareJob(j)
	return j
}

func TestDefaultJob(t *testing.T) {
	j := &batchv1.Job{ObjectMeta: objectMeta("pi"), Spec: batchv1.JobSpec{Template: testTemplate()}}
	Default(j)
	s := j.Spec
	if *s.Completions != 1 || *s.Parallelism != 1 || *s.BackoffLimit != 6 || *s.CompletionMode != batchv1.NonIndexedCompletion ||
		*s.Suspend || *s.ManualSelector || *s.PodReplacementPolicy != batchv1.TerminatingOrFailed {
		t.Errorf("defaults: got %+v", s)
	}
	if !apiequality.Semantic.DeepEqual(j.Labels, map[string]string{"app": "web"}) {
		t.Errorf("job labels: got %v, want the template's", j.Labels)
	}
	// Parallelism alone: a work queue, completions stay unset.
	w := &batchv1.Job{Spec: batchv1.JobSpec{Parallelism: ptrTo(int32(3)), Template: testTemplate()}}
	Default(w)
	if w.Spec.Completions != nil || *w.Spec.Parallelism != 3 {
		t.Errorf("work queue: got completions %v parallelism %d, want unset and 3", w.Spec.Completions, *w.Spec.Parallelism)
	}
}

func TestPrepareJob(t *testing.T) {
	j := newJob()
	uid := string(testJobUID)
	wantLabels := map[string]string{"job-name": "pi", "batch.kubernetes.io/job-name": "pi", "controller-uid": uid, "batch.kubernetes.io/controller-uid": uid}
	if !apiequality.Semantic.DeepEqual(j.Spec.Template.Labels, wantLabels) {
		t.Errorf("template labels: got %v, want %v", j.Spec.Template.Labels, wantLabels)
	}
	if !apiequality.Semantic.DeepEqual(j.Labels, wantLabels) {
		t.Errorf("job labels: got %v, want the template's %v", j.Labels, wantLabels)
	}
	if want := (&metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": uid}}); !apiequality.Semantic.DeepEqual(j.Spec.Selector, want) {
		t.Errorf("selector: got %v, want %v", j.Spec.Selector, want)
	}
	m := &batchv1.Job{ObjectMeta: objectMeta("m"), Spec: batchv1.JobSpec{ManualSelector: ptrTo(true), Selector: testSelector(), Template: testTemplate()}}
	m.UID = testJobUID
	before := m.DeepCopy()
	PrepareJob(m)
	if !apiequality.Semantic.DeepEqual(m, before) {
		t.Errorf("a manual selector's job was changed: %+v", m)
	}
}

func TestValidateJob(t *testing.T) {
	always := defaulted(newJob())
	always.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
	checkMessage(t, Validate(always), `spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"`)

	foreign := defaulted(newJob())
	foreign.Spec.Selector.MatchLabels["batch.kubernetes.io/controller-uid"] = "other"
	checkMessage(t, Validate(foreign), "spec.selector: Invalid value: {\"matchLabels\":{\"batch.kubernetes.io/controller-uid\":\"other\"}}: `selector` not auto-generated")

	relabeled := defaulted(newJob())
	relabeled.Spec.Template.Labels["job-name"] = "other"
	checkMessage(t, Validate(relabeled), "spec.template.metadata.labels[job-name]: Invalid value: {\"batch.kubernetes.io/controller-uid\":\""+string(testJobUID)+"\",\"batch.kubernetes.io/job-name\":\"pi\",\"controller-uid\":\""+string(testJobUID)+"\",\"job-name\":\"other\"}: must be 'pi'")

	indexed := newJob()
	indexed.Spec.CompletionMode = ptrTo(batchv1.IndexedCompletion)
	indexed.Spec.Parallelism = ptrTo(int32(2))
	indexed = defaulted(indexed)
	checkMessage(t, Validate(indexed), "spec.completions: Required value: when completion mode is Indexed")

	policy := newJob()
	policy.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{Action: batchv1.PodFailurePolicyActionIgnore,
		OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}}}}}
	policy.Spec.PodReplacementPolicy = ptrTo(batchv1.TerminatingOrFailed)
	checkMessage(t, Validate(defaulted(policy)), `spec.podReplacementPolicy: Unsupported value: "TerminatingOrFailed": supported values: "Failed"`)
	policy.Spec.PodReplacementPolicy = nil
	if d := defaulted(policy); *d.Spec.PodReplacementPolicy != batchv1.Failed || len(Validate(d)) > 0 {
		t.Errorf("a pod failure policy's default replacement policy: %v, %v", *d.Spec.PodReplacementPolicy, Validate(d))
	}

	negative := defaulted(newJob())
	negative.Spec.BackoffLimit = ptrTo(int32(-1))
	negative.Spec.ActiveDeadlineSeconds = ptrTo(int64(-5))
	checkErrs(t, Validate(negative), "spec.backoffLimit: Invalid value", "spec.activeDeadlineSeconds: Invalid value")
}

func TestValidateJobSuccessPolicy(t *testing.T) {
	withPolicy := func(indexed bool, rules ...batchv1.SuccessPolicyRule) *batchv1.Job {
		j := newJob()
		j.Spec.Completions, j.Spec.Parallelism = ptrTo(int32(5)), ptrTo(int32(5))
		if indexed {
			j.Spec.CompletionMode = ptrTo(batchv1.IndexedCompletion)
		}
		j.Spec.SuccessPolicy = &batchv1.SuccessPolicy{Rules: rules}
		return defaulted(j)
	}
	indexes := func(s string) batchv1.SuccessPolicyRule { return batchv1.SuccessPolicyRule{SucceededIndexes: &s} }
	count := func(n int32) batchv1.SuccessPolicyRule { return batchv1.SuccessPolicyRule{SucceededCount: &n} }
	both := func(s string, n int32) batchv1.SuccessPolicyRule {
		return batchv1.SuccessPolicyRule{SucceededIndexes: &s, SucceededCount: &n}
	}

	checkErrs(t, Validate(withPolicy(true, indexes("0,2-4"), count(3), both("1-4", 2))))
	checkMessage(t, Validate(withPolicy(false, count(1))), `spec.successPolicy: Invalid value: "NonIndexed": requires indexed completion mode`)
	checkMessage(t, Validate(withPolicy(true)), `spec.successPolicy.rules: Required value: at least one rules must be specified when the successPolicy is specified`)
	checkMessage(t, Validate(withPolicy(true, batchv1.SuccessPolicyRule{})), `spec.successPolicy.rules[0]: Required value: at least one of succeededCount or succeededIndexes must be specified`)
	checkMessage(t, Validate(withPolicy(true, indexes("3-1"))), `spec.successPolicy.rules[0].succeededIndexes: Invalid value: "3-1": error parsing succeededIndexes: the fragment "3-1" violates the requirement that first <= last`)
	checkMessage(t, Validate(withPolicy(true, indexes("2,1"))), `spec.successPolicy.rules[0].succeededIndexes: Invalid value: "2,1": error parsing succeededIndexes: non-increasing order, previous: 2, current: 1`)
	checkMessage(t, Validate(withPolicy(true, indexes("0-5"))), `spec.successPolicy.rules[0].succeededIndexes: Invalid value: "0-5": error parsing succeededIndexes: too large index: "5"`)
	checkMessage(t, Validate(withPolicy(true, indexes("x"))), `spec.successPolicy.rules[0].succeededIndexes: Invalid value: "x": error parsing succeededIndexes: cannot convert string to integer for index: "x"`)
	checkMessage(t, Validate(withPolicy(true, count(6))), `spec.successPolicy.rules[0].succeededCount: Invalid value: 6: must be less than or equal to 5 (the number of specified completions)`)
	checkMessage(t, Validate(withPolicy(true, both("0-1", 3))), `spec.successPolicy.rules[0].succeededCount: Invalid value: 3: must be less than or equal to 2 (the number of indexes in the specified succeededIndexes field)`)
	checkErrs(t, Validate(withPolicy(true, count(-1))), "spec.successPolicy.rules[0].succeededCount: Invalid value")
	many := make([]batchv1.SuccessPolicyRule, 21)
	for i := range many {
		many[i] = count(1)
	}
	checkErrs(t, Validate(withPolicy(true, many...)), "spec.successPolicy.rules: Too many")

	old := withPolicy(true, count(3))
	changed := old.DeepCopy()
	changed.Spec.SuccessPolicy.Rules[0] = count(2)
	checkErrs(t, ValidateUpdate(changed, old), "spec.successPolicy: Invalid value")
}

func TestValidateJobUpdate(t *testing.T) {
	old := defaulted(newJob())
	old.Status.StartTime = &metav1.Time{}

	image := old.DeepCopy()
	image.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
	checkErrs(t, ValidateUpdate(image, old), "spec.template: Invalid value")

	completions := old.DeepCopy()
	completions.Spec.Completions = ptrTo(int32(5))
	checkErrs(t, ValidateUpdate(completions, old), "spec.completions: Invalid value")

	parallelism := old.DeepCopy()
	parallelism.Spec.Parallelism = ptrTo(int32(4))
	parallelism.Spec.Suspend = ptrTo(true)
	checkErrs(t, ValidateUpdate(parallelism, old))

	// Suspended and never started: where its pods go may still change.
	suspended := defaulted(newJob())
	suspended.Spec.Suspend = ptrTo(true)
	moved := suspended.DeepCopy()
	moved.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"}
	checkErrs(t, ValidateUpdate(moved, suspended))
	imageToo := moved.DeepCopy()
	imageToo.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
	checkErrs(t, ValidateUpdate(imageToo, suspended), "spec.template: Invalid value")
}

func newCronJob() *batchv1.CronJob {
	c := &batchv1.CronJob{ObjectMeta: objectMeta("nightly"), Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *"}}
	c.Spec.JobTemplate.Spec.Template.Spec = testPodSpec()
	c.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure
	return c
}

func TestDefaultCronJob(t *testing.T) {
	c := defaulted(newCronJob())
	if s := c.Spec; s.ConcurrencyPolicy != batchv1.AllowConcurrent || *s.Suspend || *s.SuccessfulJobsHistoryLimit != 3 || *s.FailedJobsHistoryLimit != 1 ||
		s.JobTemplate.Spec.Template.Spec.DNSPolicy != corev1.DNSClusterFirst || s.JobTemplate.Spec.BackoffLimit != nil {
		t.Errorf("defaults: got %+v", s)
	}
}

func TestValidateCronJob(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*batchv1.CronJob)
		want   string
	}{
		{"bad schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "61 * * * *" },
			`spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61`},
		{"no schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "" }, "spec.schedule: Required value"},
		{"TZ in the schedule", func(c *batchv1.CronJob) { c.Spec.Schedule = "TZ=UTC 0 3 * * *" },
			`spec.schedule: Invalid value: "TZ=UTC 0 3 * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead`},
		{"unknown time zone", func(c *batchv1.CronJob) { c.Spec.TimeZone = ptrTo("Mars/Olympus") },
			`spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus`},
		{"Local", func(c *batchv1.CronJob) { c.Spec.TimeZone = ptrTo("Local") },
			`spec.timeZone: Invalid value: "Local": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones`},
		{"concurrency", func(c *batchv1.CronJob) { c.Spec.ConcurrencyPolicy = "Sometimes" },
			`spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"`},
		{"restartPolicy", func(c *batchv1.CronJob) {
			c.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		},
			`spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"`},
		{"selector", func(c *batchv1.CronJob) { c.Spec.JobTemplate.Spec.Selector = testSelector() },
			"spec.jobTemplate.spec.selector: Invalid value: {\"matchLabels\":{\"app\":\"web\"}}: `selector` will be auto-generated"},
		{"long name", func(c *batchv1.CronJob) { c.Name = strings.Repeat("n", 53) },
			`metadata.name: Invalid value: "` + strings.Repeat("n", 53) + `": must be no more than 52 characters`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaulted(newCronJob())
			tc.change(c)
			checkMessage(t, Validate(c), tc.want)
		})
	}
	ok := defaulted(newCronJob())
	ok.Spec.TimeZone = ptrTo("Europe/Paris")
	if errs := Validate(ok); len(errs) > 0 {
		t.Errorf("a valid time zone: %v", errs)
	}
}

package strategy

// The batch/v1 kinds: Jobs and CronJobs, as kube-apiserver 1.32
// defaults, completes and validates them.

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // CronJobs' time zones, also on a host without zoneinfo

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/robfig/cron/v3"
)

// The labels of a job's pods that kube-apiserver still adds without the
// batch.kubernetes.io/ prefix.
const (
	legacyJobNameLabel       = "job-name"
	legacyControllerUIDLabel = "controller-uid"
)

// maxParallelismForIndexedJob bounds Indexed jobs, as upstream.
const maxParallelismForIndexedJob = 100_000

// maxSuccessPolicyRules and maxSucceededIndexesLength bound a Job's
// successPolicy, as upstream.
const (
	maxSuccessPolicyRules     = 20
	maxSucceededIndexesLength = 64 * 1024
)

func defaultJob(j *batchv1.Job) {
	spec := &j.Spec
	// A job that says neither runs one pod to one completion.
	if spec.Completions == nil && spec.Parallelism == nil {
		spec.Completions = ptrTo(int32(1))
	}
	if spec.Parallelism == nil {
		spec.Parallelism = ptrTo(int32(1))
	}
	if spec.BackoffLimit == nil {
		if spec.BackoffLimitPerIndex != nil {
			spec.BackoffLimit = ptrTo(int32(math.MaxInt32))
		} else {
			spec.BackoffLimit = ptrTo(int32(6))
		}
	}
	if spec.CompletionMode == nil {
		spec.CompletionMode = ptrTo(batchv1.NonIndexedCompletion)
	}
	if spec.Suspend == nil {
		spec.Suspend = ptrTo(false)
	}
	if p := spec.PodFailurePolicy; p != nil {
		for i := range p.Rules {
			for k := range p.Rules[i].OnPodConditions {
				if c := &p.Rules[i].OnPodConditions[k]; c.Status == "" {
					c.Status = corev1.ConditionTrue
				}
			}
		}
	}
	if spec.PodReplacementPolicy == nil {
		if spec.PodFailurePolicy != nil {
			spec.PodReplacementPolicy = ptrTo(batchv1.Failed)
		} else {
			spec.PodReplacementPolicy = ptrTo(batchv1.TerminatingOrFailed)
		}
	}
	if spec.ManualSelector == nil {
		spec.ManualSelector = ptrTo(false)
	}
	jobLabelsFromTemplate(j)
	DefaultPodTemplate(&spec.Template)
}

// jobLabelsFromTemplate gives a job without labels its template's.
func jobLabelsFromTemplate(j *batchv1.Job) {
	if len(j.Labels) == 0 && len(j.Spec.Template.Labels) > 0 {
		j.Labels = make(map[string]string, len(j.Spec.Template.Labels))
		for k, v := range j.Spec.Template.Labels {
			j.Labels[k] = v
		}
	}
}

// PrepareJob completes a new job once its name and uid are known: unless
// its selector is manual, its template gets the job-name and
// controller-uid labels and its selector selects the uid, so that its pods
// are its own alone. A job without labels then gets the template's, as a
// job read back from kube-apiserver's storage has them.
func PrepareJob(j *batchv1.Job) {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	t := &j.Spec.Template
	if t.Labels == nil {
		t.Labels = map[string]string{}
	}
	for _, k := range []string{legacyJobNameLabel, batchv1.JobNameLabel} {
		if _, ok := t.Labels[k]; !ok {
			t.Labels[k] = j.Name
		}
	}
	for _, k := range []string{legacyControllerUIDLabel, batchv1.ControllerUidLabel} {
		if _, ok := t.Labels[k]; !ok {
			t.Labels[k] = string(j.UID)
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = string(j.UID)
	}
	jobLabelsFromTemplate(j)
}

func validateJob(j *batchv1.Job) field.ErrorList {
	errs := validateGeneratedSelector(j)
	return append(errs, validateJobSpec(&j.Spec, field.NewPath("spec"))...)
}

// validateGeneratedSelector checks that a job whose selector is not manual
// selects its own uid, and that its template carries the generated labels.
func validateGeneratedSelector(j *batchv1.Job) field.ErrorList {
	var errs field.ErrorList
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector || j.Spec.Selector == nil {
		return nil
	}
	if j.UID == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	meta := field.NewPath("spec", "template", "metadata")
	for _, want := range []struct{ key, value string }{
		{legacyControllerUIDLabel, string(j.UID)}, {batchv1.ControllerUidLabel, string(j.UID)},
		{legacyJobNameLabel, j.Name}, {batchv1.JobNameLabel, j.Name},
	} {
		errs = append(errs, validateHasLabel(j.Spec.Template.Labels, meta, want.key, want.value)...)
	}
	if sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector); err == nil && !sel.Matches(labels.Set{batchv1.ControllerUidLabel: string(j.UID)}) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}

func validateHasLabel(l map[string]string, fldPath *field.Path, key, want string) field.ErrorList {
	got, ok := l[key]
	switch {
	case !ok:
		return field.ErrorList{field.Required(fldPath.Child("labels").Key(key), fmt.Sprintf("must be '%s'", want))}
	case got != want:
		return field.ErrorList{field.Invalid(fldPath.Child("labels").Key(key), l, fmt.Sprintf("must be '%s'", want))}
	}
	return nil
}

func validateJobSpec(spec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	sel, errs := validateSelector(spec.Selector, "job", fldPath.Child("selector"))
	if sel != nil && !sel.Empty() && !sel.Matches(labels.Set(spec.Template.Labels)) {
		errs = append(errs, field.Invalid(fldPath.Child("template", "metadata", "labels"), spec.Template.Labels, "`selector` does not match template `labels`"))
	}
	return append(errs, validateJobSpecBody(spec, fldPath)...)
}

// validateJobSpecBody checks a job's spec but for its selector, which a
// CronJob's job template leaves to be generated.
func validateJobSpecBody(spec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	nonnegative := func(v *int32, name string) {
		if v != nil {
			errs = append(errs, validateNonnegative(int64(*v), fldPath.Child(name))...)
		}
	}
	nonnegative(spec.Parallelism, "parallelism")
	nonnegative(spec.Completions, "completions")
	nonnegative(spec.BackoffLimit, "backoffLimit")
	nonnegative(spec.TTLSecondsAfterFinished, "ttlSecondsAfterFinished")
	nonnegative(spec.BackoffLimitPerIndex, "backoffLimitPerIndex")
	nonnegative(spec.MaxFailedIndexes, "maxFailedIndexes")
	if d := spec.ActiveDeadlineSeconds; d != nil {
		errs = append(errs, validateNonnegative(*d, fldPath.Child("activeDeadlineSeconds"))...)
	}
	switch mode := spec.CompletionMode; {
	case mode == nil:
	case *mode == batchv1.IndexedCompletion:
		if spec.Completions == nil {
			errs = append(errs, field.Required(fldPath.Child("completions"), fmt.Sprintf("when completion mode is %s", batchv1.IndexedCompletion)))
		}
		if p := spec.Parallelism; p != nil && *p > maxParallelismForIndexedJob {
			errs = append(errs, field.Invalid(fldPath.Child("parallelism"), *p, fmt.Sprintf("must be less than or equal to %d when completion mode is %s", maxParallelismForIndexedJob, batchv1.IndexedCompletion)))
		}
	case *mode != batchv1.NonIndexedCompletion:
		errs = append(errs, field.NotSupported(fldPath.Child("completionMode"), *mode, []batchv1.CompletionMode{batchv1.NonIndexedCompletion, batchv1.IndexedCompletion}))
	}
	if spec.BackoffLimitPerIndex != nil && (spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion) {
		errs = append(errs, field.Forbidden(fldPath.Child("backoffLimitPerIndex"), "requires indexed completion mode"))
	}
	errs = append(errs, validateSuccessPolicy(spec, fldPath.Child("successPolicy"))...)
	switch p := spec.PodReplacementPolicy; {
	case p == nil:
	case spec.PodFailurePolicy != nil && *p != batchv1.Failed:
		// The policy judges pods once they failed, not while they go.
		errs = append(errs, field.NotSupported(fldPath.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.Failed}))
	case *p != batchv1.TerminatingOrFailed && *p != batchv1.Failed:
		errs = append(errs, field.NotSupported(fldPath.Child("podReplacementPolicy"), *p, []batchv1.PodReplacementPolicy{batchv1.TerminatingOrFailed, batchv1.Failed}))
	}
	tPath := fldPath.Child("template")
	errs = append(errs, ValidatePodTemplate(&spec.Template, tPath)...)
	// Left out, restartPolicy is defaulted to Always: "Required" says what
	// to write instead, as kube-apiserver does.
	switch rp := spec.Template.Spec.RestartPolicy; rp {
	case corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	case corev1.RestartPolicyAlways, "":
		errs = append(errs, field.Required(tPath.Child("spec", "restartPolicy"), fmt.Sprintf("valid values: %q, %q", corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever)))
	default:
		errs = append(errs, field.NotSupported(tPath.Child("spec", "restartPolicy"), rp, []corev1.RestartPolicy{corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever}))
	}
	if spec.PodFailurePolicy != nil && spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever {
		errs = append(errs, field.Invalid(tPath.Child("spec", "restartPolicy"), spec.Template.Spec.RestartPolicy, fmt.Sprintf("only %q is supported when podFailurePolicy is specified", corev1.RestartPolicyNever)))
	}
	return errs
}

// validateSuccessPolicy checks a Job's successPolicy as kube-apiserver
// does: Indexed jobs only, 1 to 20 rules, each with succeededIndexes
// (ascending, not overlapping, below completions) or succeededCount (at
// most completions, and at most the indexes it names) or both.
func validateSuccessPolicy(spec *batchv1.JobSpec, fldPath *field.Path) field.ErrorList {
	p := spec.SuccessPolicy
	if p == nil {
		return nil
	}
	var errs field.ErrorList
	if spec.CompletionMode == nil || *spec.CompletionMode != batchv1.IndexedCompletion {
		mode := batchv1.NonIndexedCompletion
		if spec.CompletionMode != nil {
			mode = *spec.CompletionMode
		}
		errs = append(errs, field.Invalid(fldPath, mode, "requires indexed completion mode"))
	}
	rulesPath := fldPath.Child("rules")
	switch n := len(p.Rules); {
	case n == 0:
		errs = append(errs, field.Required(rulesPath, "at least one rules must be specified when the successPolicy is specified"))
	case n > maxSuccessPolicyRules:
		errs = append(errs, field.TooMany(rulesPath, n, maxSuccessPolicyRules))
	}
	completions := int32(0)
	if spec.Completions != nil {
		completions = *spec.Completions
	}
	for i, rule := range p.Rules {
		rulePath := rulesPath.Index(i)
		if rule.SucceededIndexes == nil && rule.SucceededCount == nil {
			errs = append(errs, field.Required(rulePath, "at least one of succeededCount or succeededIndexes must be specified"))
		}
		var named int32
		if ix := rule.SucceededIndexes; ix != nil {
			ixPath := rulePath.Child("succeededIndexes")
			if len(*ix) > maxSucceededIndexesLength {
				errs = append(errs, field.TooLong(ixPath, "", maxSucceededIndexesLength))
			} else if n, err := countIndexes(*ix, completions); err != nil {
				errs = append(errs, field.Invalid(ixPath, *ix, "error parsing succeededIndexes: "+err.Error()))
			} else {
				named = n
			}
		}
		if c := rule.SucceededCount; c != nil {
			countPath := rulePath.Child("succeededCount")
			errs = append(errs, validateNonnegative(int64(*c), countPath)...)
			if *c > completions {
				errs = append(errs, field.Invalid(countPath, *c, fmt.Sprintf("must be less than or equal to %d (the number of specified completions)", completions)))
			}
			if rule.SucceededIndexes != nil && *c > named {
				errs = append(errs, field.Invalid(countPath, *c, fmt.Sprintf("must be less than or equal to %d (the number of indexes in the specified succeededIndexes field)", named)))
			}
		}
	}
	return errs
}

// countIndexes checks a list of indexes ("1,3-5,7": ascending intervals,
// not overlapping, each below completions) and returns how many it names.
func countIndexes(s string, completions int32) (int32, error) {
	var total int32
	prev := int64(-1)
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.ParseInt(lo, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("cannot convert string to integer for index: %q", lo)
		}
		last := first
		if isRange {
			if last, err = strconv.ParseInt(hi, 10, 32); err != nil {
				return 0, fmt.Errorf("cannot convert string to integer for index: %q", hi)
			}
		}
		switch {
		case last >= int64(completions):
			return 0, fmt.Errorf("too large index: %q", strconv.FormatInt(last, 10))
		case first < 0:
			return 0, fmt.Errorf("index must be non-negative: %q", lo)
		case first <= prev:
			return 0, fmt.Errorf("non-increasing order, previous: %d, current: %d", prev, first)
		case first > last:
			return 0, fmt.Errorf("the fragment %q violates the requirement that first <= last", part)
		}
		total += int32(last - first + 1)
		prev = last
	}
	return total, nil
}

// validateJobUpdate keeps what a running job cannot follow: its selector,
// completion mode and pod template (unless it is suspended and never
// started), and its completions (unless it is an elastic Indexed job).
func validateJobUpdate(j, old *batchv1.Job) field.ErrorList {
	errs := validateJob(j)
	specPath := field.NewPath("spec")
	errs = append(errs, validateImmutable(j.Spec.Selector, old.Spec.Selector, specPath.Child("selector"))...)
	errs = append(errs, validateImmutable(j.Spec.CompletionMode, old.Spec.CompletionMode, specPath.Child("completionMode"))...)
	errs = append(errs, validateImmutable(j.Spec.PodFailurePolicy, old.Spec.PodFailurePolicy, specPath.Child("podFailurePolicy"))...)
	errs = append(errs, validateImmutable(j.Spec.BackoffLimitPerIndex, old.Spec.BackoffLimitPerIndex, specPath.Child("backoffLimitPerIndex"))...)
	errs = append(errs, validateImmutable(j.Spec.SuccessPolicy, old.Spec.SuccessPolicy, specPath.Child("successPolicy"))...)
	elastic := j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion &&
		j.Spec.Completions != nil && j.Spec.Parallelism != nil && *j.Spec.Completions == *j.Spec.Parallelism &&
		old.Spec.Completions != nil && old.Spec.Parallelism != nil && *old.Spec.Completions == *old.Spec.Parallelism
	switch {
	case elastic:
	case j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion && !equalPtr(j.Spec.Completions, old.Spec.Completions):
		errs = append(errs, field.Invalid(specPath.Child("completions"), j.Spec.Completions, "can only be modified in tandem with spec.parallelism"))
	default:
		errs = append(errs, validateImmutable(j.Spec.Completions, old.Spec.Completions, specPath.Child("completions"))...)
	}
	// A suspended job that never started may still change where its pods
	// go: node affinity and selector, tolerations, labels, annotations and
	// scheduling gates.
	t, oldT := j.Spec.Template, old.Spec.Template
	if old.Spec.Suspend != nil && *old.Spec.Suspend && old.Status.StartTime == nil {
		t, oldT = *schedulingless(&t), *schedulingless(&oldT)
	}
	return append(errs, validateImmutable(t, oldT, specPath.Child("template"))...)
}

// schedulingless is a copy of t without what decides where its pods go.
func schedulingless(t *corev1.PodTemplateSpec) *corev1.PodTemplateSpec {
	c := t.DeepCopy()
	c.Labels, c.Annotations = nil, nil
	c.Spec.NodeSelector, c.Spec.Tolerations, c.Spec.SchedulingGates = nil, nil, nil
	if c.Spec.Affinity != nil {
		c.Spec.Affinity.NodeAffinity = nil
	}
	return c
}

func defaultCronJob(c *batchv1.CronJob) {
	spec := &c.Spec
	if spec.ConcurrencyPolicy == "" {
		spec.ConcurrencyPolicy = batchv1.AllowConcurrent
	}
	if spec.Suspend == nil {
		spec.Suspend = ptrTo(false)
	}
	if spec.SuccessfulJobsHistoryLimit == nil {
		spec.SuccessfulJobsHistoryLimit = ptrTo(int32(3))
	}
	if spec.FailedJobsHistoryLimit == nil {
		spec.FailedJobsHistoryLimit = ptrTo(int32(1))
	}
	DefaultPodTemplate(&spec.JobTemplate.Spec.Template)
}

// maxCronJobName leaves room for the "-<minutes since the epoch>" the
// controller appends to name a job (63 characters in all).
const maxCronJobName = 63 - 11

func validateCronJob(c *batchv1.CronJob) field.ErrorList {
	errs := validateCronJobSpec(&c.Spec, nil, field.NewPath("spec"))
	if len(c.Name) > maxCronJobName {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), c.Name, fmt.Sprintf("must be no more than %d characters", maxCronJobName)))
	}
	return errs
}

func validateCronJobUpdate(c, old *batchv1.CronJob) field.ErrorList {
	return validateCronJobSpec(&c.Spec, &old.Spec, field.NewPath("spec"))
}

func validateCronJobSpec(spec, old *batchv1.CronJobSpec, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if spec.Schedule == "" {
		errs = append(errs, field.Required(fldPath.Child("schedule"), ""))
	} else {
		// A schedule stored with TZ before the timeZone field may keep it.
		errs = append(errs, validateSchedule(spec.Schedule, old != nil && strings.Contains(old.Schedule, "TZ"), spec.TimeZone, fldPath.Child("schedule"))...)
	}
	if d := spec.StartingDeadlineSeconds; d != nil {
		errs = append(errs, validateNonnegative(*d, fldPath.Child("startingDeadlineSeconds"))...)
	}
	if old == nil || !equalPtr(old.TimeZone, spec.TimeZone) {
		errs = append(errs, validateTimeZone(spec.TimeZone, fldPath.Child("timeZone"))...)
	}
	switch p := spec.ConcurrencyPolicy; p {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	case "":
		errs = append(errs, field.Required(fldPath.Child("concurrencyPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(fldPath.Child("concurrencyPolicy"), p, []batchv1.ConcurrencyPolicy{batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent}))
	}
	tPath := fldPath.Child("jobTemplate", "spec")
	errs = append(errs, validateJobSpecBody(&spec.JobTemplate.Spec, tPath)...)
	if sel := spec.JobTemplate.Spec.Selector; sel != nil {
		errs = append(errs, field.Invalid(tPath.Child("selector"), sel, "`selector` will be auto-generated"))
	}
	if m := spec.JobTemplate.Spec.ManualSelector; m != nil && *m {
		errs = append(errs, field.NotSupported(tPath.Child("manualSelector"), m, []string{"nil", "false"}))
	}
	for name, v := range map[string]*int32{"successfulJobsHistoryLimit": spec.SuccessfulJobsHistoryLimit, "failedJobsHistoryLimit": spec.FailedJobsHistoryLimit} {
		if v != nil {
			errs = append(errs, validateNonnegative(int64(*v), fldPath.Child(name))...)
		}
	}
	return errs
}

func validateSchedule(schedule string, allowTZ bool, timeZone *string, fldPath *field.Path) field.ErrorList {
	var errs field.ErrorList
	if _, err := cron.ParseStandard(schedule); err != nil {
		errs = append(errs, field.Invalid(fldPath, schedule, err.Error()))
	}
	switch hasTZ := strings.Contains(schedule, "TZ"); {
	case allowTZ && hasTZ && timeZone != nil:
		errs = append(errs, field.Invalid(fldPath, schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule"))
	case !allowTZ && hasTZ:
		errs = append(errs, field.Invalid(fldPath, schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
	}
	return errs
}

var validTimeZoneCharacters = regexp.MustCompile(`^[A-Za-z\.\-_0-9+]{1,14}$`)

func validateTimeZone(tz *string, fldPath *field.Path) field.ErrorList {
	switch {
	case tz == nil:
		return nil
	case *tz == "":
		return field.ErrorList{field.Invalid(fldPath, tz, "timeZone must be nil or non-empty string")}
	}
	for part := range strings.SplitSeq(*tz, "/") {
		if part == "." || part == ".." || strings.HasPrefix(part, "-") || !validTimeZoneCharacters.MatchString(part) {
			return field.ErrorList{field.Invalid(fldPath, tz, "unknown time zone malformed time zone")}
		}
	}
	if strings.EqualFold(*tz, "Local") {
		return field.ErrorList{field.Invalid(fldPath, tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones")}
	}
	if _, err := time.LoadLocation(*tz); err != nil {
		return field.ErrorList{field.Invalid(fldPath, tz, err.Error())}
	}
	return nil
}

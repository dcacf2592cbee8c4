package job

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// completionIndexEnv is the variable that tells an Indexed job's container
// its index.
const completionIndexEnv = "JOB_COMPLETION_INDEX"

// newPod is a pod of j from its template, owned by it and holding the
// tracking finalizer; with withIndex, the pod of completion index i.
func newPod(j *batchv1.Job, i int, withIndex bool) *corev1.Pod {
	t := j.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: j.Name + "-", Namespace: j.Namespace,
			Labels: t.Labels, Annotations: t.Annotations,
			Finalizers:      append(t.Finalizers, batchv1.JobTrackingFinalizer),
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(j, kind)},
		},
		Spec: t.Spec,
	}
	if !withIndex {
		return pod
	}
	index := strconv.Itoa(i)
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Labels[batchv1.JobCompletionIndexAnnotation] = index
	pod.Annotations[batchv1.JobCompletionIndexAnnotation] = index
	// "<job>-<index>-" within the 58 characters a generated name's base
	// may have.
	pod.GenerateName = truncate(j.Name, 58-len(index)-2) + "-" + index + "-"
	if pod.Spec.Hostname == "" {
		pod.Spec.Hostname = j.Name + "-" + index
	}
	env := corev1.EnvVar{Name: completionIndexEnv, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
		APIVersion: "v1", FieldPath: "metadata.labels['" + batchv1.JobCompletionIndexAnnotation + "']",
	}}}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for k := range cs {
			if !slices.ContainsFunc(cs[k].Env, func(e corev1.EnvVar) bool { return e.Name == completionIndexEnv }) {
				cs[k].Env = append(cs[k].Env, env)
			}
		}
	}
	return pod
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func hasTrackingFinalizer(p *corev1.Pod) bool {
	return slices.Contains(p.Finalizers, batchv1.JobTrackingFinalizer)
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// failedPod reports whether p counts as a failure of j: it failed, or
// (unless j replaces failed pods only) it is being deleted unfinished, as
// an orphaned pod may never reach the Failed phase.
func failedPod(p *corev1.Pod, j *batchv1.Job) bool {
	if p.Status.Phase == corev1.PodFailed {
		return true
	}
	if onlyReplaceFailed(j) {
		return false
	}
	return p.DeletionTimestamp != nil && p.Status.Phase != corev1.PodSucceeded
}

// onlyReplaceFailed: podReplacementPolicy Failed, under which a pod being
// deleted is neither a failure nor replaced until it is gone.
func onlyReplaceFailed(j *batchv1.Job) bool {
	return j.Spec.PodReplacementPolicy != nil && *j.Spec.PodReplacementPolicy == batchv1.Failed
}

func indexed(j *batchv1.Job) bool {
	return j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion && j.Spec.Completions != nil
}

// completionIndex is the index of a pod of an Indexed job, if it has a
// valid one.
func completionIndex(p *corev1.Pod, j *batchv1.Job) (int, bool) {
	if !indexed(j) {
		return 0, false
	}
	i, err := strconv.Atoi(p.Annotations[batchv1.JobCompletionIndexAnnotation])
	if err != nil || i < 0 || i >= int(*j.Spec.Completions) {
		return 0, false
	}
	return i, true
}

// parseIndexes reads status.completedIndexes ("1,3-5,7"), keeping the
// indexes below n.
func parseIndexes(s string, n int) []int {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := max(first, 0); i <= last && i < n; i++ {
			out = append(out, i)
		}
	}
	return out
}

// formatIndexes writes sorted indexes as status.completedIndexes does:
// runs of consecutive ones as "first-last".
func formatIndexes(ix []int) string {
	var b strings.Builder
	for k := 0; k < len(ix); {
		end := k
		for end+1 < len(ix) && ix[end+1] == ix[end]+1 {
			end++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(ix[k]))
		if end > k {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(ix[end]))
		}
		k = end + 1
	}
	return b.String()
}

func sortedUIDs(m map[types.UID]bool) []types.UID {
	return slices.Sorted(maps.Keys(m))
}

// condition returns the status's condition of type t, or nil.
func condition(s *batchv1.JobStatus, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range s.Conditions {
		if s.Conditions[i].Type == t {
			return &s.Conditions[i]
		}
	}
	return nil
}

func conditionTrue(s *batchv1.JobStatus, t batchv1.JobConditionType) bool {
	c := condition(s, t)
	return c != nil && c.Status == corev1.ConditionTrue
}

// interimCondition is the job's FailureTarget or SuccessCriteriaMet
// condition when true: it is done, and waits for its pods to go.
func interimCondition(s *batchv1.JobStatus) *batchv1.JobCondition {
	for _, t := range []batchv1.JobConditionType{batchv1.JobFailureTarget, batchv1.JobSuccessCriteriaMet} {
		if conditionTrue(s, t) {
			return condition(s, t)
		}
	}
	return nil
}

// finished reports whether j has its terminal condition.
func finished(j *batchv1.Job) bool {
	return conditionTrue(&j.Status, batchv1.JobComplete) || conditionTrue(&j.Status, batchv1.JobFailed)
}

// finishTime is when j got its terminal condition, or zero.
func finishTime(j *batchv1.Job) time.Time {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// matchFailurePolicy returns the action of the first rule of policy that
// failed pod p matches (a container's non-zero exit code, or a pod
// condition), and for FailJob the message of the job's condition; "" when
// there is no policy or no rule matches (the failure counts).
func matchFailurePolicy(policy *batchv1.PodFailurePolicy, p *corev1.Pod) (batchv1.PodFailurePolicyAction, string) {
	if policy == nil || p.Status.Phase != corev1.PodFailed {
		return "", ""
	}
	for i, rule := range policy.Rules {
		var what string
		switch {
		case rule.OnExitCodes != nil:
			for _, cs := range slices.Concat(p.Status.ContainerStatuses, p.Status.InitContainerStatuses) {
				if exitCodeMatches(rule.OnExitCodes, cs) {
					what = fmt.Sprintf("Container %s for pod %s/%s failed with exit code %d", cs.Name, p.Namespace, p.Name, cs.State.Terminated.ExitCode)
					break
				}
			}
		default:
			for _, c := range p.Status.Conditions {
				if slices.ContainsFunc(rule.OnPodConditions, func(pat batchv1.PodFailurePolicyOnPodConditionsPattern) bool {
					return pat.Type == c.Type && pat.Status == c.Status
				}) {
					what = fmt.Sprintf("Pod %s/%s has condition %s", p.Namespace, p.Name, c.Type)
					break
				}
			}
		}
		if what == "" {
			continue
		}
		switch rule.Action {
		case batchv1.PodFailurePolicyActionIgnore, batchv1.PodFailurePolicyActionCount:
			return rule.Action, ""
		case batchv1.PodFailurePolicyActionFailJob:
			return rule.Action, fmt.Sprintf("%s matching %s rule at index %d", what, rule.Action, i)
		}
		// FailIndex needs backoffLimitPerIndex, which is not acted on: the
		// next rule decides.
	}
	return "", ""
}

func exitCodeMatches(req *batchv1.PodFailurePolicyOnExitCodesRequirement, cs corev1.ContainerStatus) bool {
	t := cs.State.Terminated
	if t == nil || t.ExitCode == 0 || req.ContainerName != nil && *req.ContainerName != cs.Name {
		return false
	}
	in := slices.Contains(req.Values, t.ExitCode)
	return req.Operator == batchv1.PodFailurePolicyOnExitCodesOpIn && in || req.Operator == batchv1.PodFailurePolicyOnExitCodesOpNotIn && !in
}

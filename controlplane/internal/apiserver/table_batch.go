package apiserver

// The batch/v1 table columns, as kube-apiserver 1.32 prints them.

import (
	"fmt"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

var jobColumns = []column{
	nameColumn,
	{def: stringCol("Status", "Status of the job."), cell: func(obj runtime.Object, _ time.Time) any {
		return jobStatus(obj.(*batchv1.Job))
	}},
	{def: stringCol("Completions", batchv1.JobStatus{}.SwaggerDoc()["succeeded"]), cell: func(obj runtime.Object, _ time.Time) any {
		j := obj.(*batchv1.Job)
		switch {
		case j.Spec.Completions != nil:
			return fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
		case j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1:
			return fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
		}
		return fmt.Sprintf("%d/1", j.Status.Succeeded)
	}},
	{def: stringCol("Duration", "Time required to complete the job."), cell: func(obj runtime.Object, now time.Time) any {
		st := obj.(*batchv1.Job).Status
		switch {
		case st.StartTime == nil:
			return ""
		case st.CompletionTime == nil:
			return duration.HumanDuration(now.Sub(st.StartTime.Time))
		}
		return duration.HumanDuration(st.CompletionTime.Sub(st.StartTime.Time))
	}},
	ageColumn,
	containersColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*batchv1.Job).Spec.Template }),
	imagesColumn(func(obj runtime.Object) *corev1.PodTemplateSpec { return &obj.(*batchv1.Job).Spec.Template }),
	selectorColumn(batchv1.JobSpec{}.SwaggerDoc()["selector"], func(obj runtime.Object) *metav1.LabelSelector {
		return obj.(*batchv1.Job).Spec.Selector
	}),
}

// jobStatus is the STATUS cell of a job: its terminal condition, else
// Terminating, Suspended or an interim condition, else Running.
func jobStatus(j *batchv1.Job) string {
	has := func(t batchv1.JobConditionType) bool {
		for _, c := range j.Status.Conditions {
			if c.Type == t && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	}
	switch {
	case has(batchv1.JobComplete):
		return "Complete"
	case has(batchv1.JobFailed):
		return "Failed"
	case j.DeletionTimestamp != nil:
		return "Terminating"
	case has(batchv1.JobSuspended):
		return "Suspended"
	case has(batchv1.JobFailureTarget):
		return "FailureTarget"
	case has(batchv1.JobSuccessCriteriaMet):
		return "SuccessCriteriaMet"
	}
	return "Running"
}

var cronJobColumns = []column{
	nameColumn,
	{def: stringCol("Schedule", batchv1.CronJobSpec{}.SwaggerDoc()["schedule"]), cell: func(obj runtime.Object, _ time.Time) any {
		return obj.(*batchv1.CronJob).Spec.Schedule
	}},
	{def: stringCol("Timezone", batchv1.CronJobSpec{}.SwaggerDoc()["timeZone"]), cell: func(obj runtime.Object, _ time.Time) any {
		if tz := obj.(*batchv1.CronJob).Spec.TimeZone; tz != nil {
			return *tz
		}
		return "<none>"
	}},
	{def: stringCol("Suspend", batchv1.CronJobSpec{}.SwaggerDoc()["suspend"]), cell: func(obj runtime.Object, _ time.Time) any {
		switch s := obj.(*batchv1.CronJob).Spec.Suspend; {
		case s == nil:
			return "<unset>"
		case *s:
			return "True"
		}
		return "False"
	}},
	{def: intCol("Active", batchv1.CronJobStatus{}.SwaggerDoc()["active"]), cell: func(obj runtime.Object, _ time.Time) any {
		return int64(len(obj.(*batchv1.CronJob).Status.Active))
	}},
	{def: stringCol("Last Schedule", batchv1.CronJobStatus{}.SwaggerDoc()["lastScheduleTime"]), cell: func(obj runtime.Object, now time.Time) any {
		if t := obj.(*batchv1.CronJob).Status.LastScheduleTime; t != nil {
			return since(*t, now)
		}
		return "<none>"
	}},
	ageColumn,
	containersColumn(func(obj runtime.Object) *corev1.PodTemplateSpec {
		return &obj.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template
	}),
	imagesColumn(func(obj runtime.Object) *corev1.PodTemplateSpec {
		return &obj.(*batchv1.CronJob).Spec.JobTemplate.Spec.Template
	}),
	selectorColumn(batchv1.JobSpec{}.SwaggerDoc()["selector"], func(obj runtime.Object) *metav1.LabelSelector {
		return obj.(*batchv1.CronJob).Spec.JobTemplate.Spec.Selector
	}),
}

package strategy

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// workloadCases are the template and selector rules every workload kind
// shares; each mutates the spec fields named in workloadFields.
type workloadFields struct {
	selector **metav1.LabelSelector
	template *corev1.PodTemplateSpec
	replicas **int32 // nil for daemon sets
}

var workloadCases = []struct {
	name   string
	mutate func(workloadFields)
	want   []string
}{
	{"valid", func(workloadFields) {}, nil},
	{"no selector", func(w workloadFields) { *w.selector = nil },
		[]string{"spec.selector: Required value", "spec.template.metadata.labels: Invalid value"}},
	{"empty selector", func(w workloadFields) { *w.selector = &metav1.LabelSelector{} }, []string{"spec.selector: Invalid value"}},
	{"selector does not match", func(w workloadFields) { w.template.Labels = map[string]string{"app": "other"} },
		[]string{"spec.template.metadata.labels: Invalid value"}},
	{"invalid selector", func(w workloadFields) { (*w.selector).MatchLabels = map[string]string{"app": "a b"} },
		[]string{"spec.selector.matchLabels: Invalid value", "spec.selector: Invalid value"}},
	{"template restartPolicy", func(w workloadFields) { w.template.Spec.RestartPolicy = corev1.RestartPolicyNever },
		[]string{"spec.template.spec.restartPolicy: Unsupported value"}},
	{"template activeDeadlineSeconds", func(w workloadFields) { w.template.Spec.ActiveDeadlineSeconds = ptrTo(int64(60)) },
		[]string{"spec.template.spec.activeDeadlineSeconds: Forbidden"}},
	{"template without image", func(w workloadFields) { w.template.Spec.Containers[0].Image = "" },
		[]string{"spec.template.spec.containers[0].image: Required value"}},
	{"template without containers", func(w workloadFields) { w.template.Spec.Containers = nil },
		[]string{"spec.template.spec.containers: Required value"}},
	{"template label", func(w workloadFields) { w.template.Labels["bad key!"] = "x" },
		[]string{"spec.template.labels: Invalid value"}},
	{"negative replicas", func(w workloadFields) {
		if w.replicas != nil {
			*w.replicas = ptrTo(int32(-1))
		}
	}, []string{"spec.replicas: Invalid value"}},
}

func TestValidateWorkloads(t *testing.T) {
	kinds := []struct {
		kind   string
		new    func() runtime.Object
		fields func(runtime.Object) workloadFields
	}{
		{"Deployment", func() runtime.Object { return defaulted(newDeployment()) }, func(o runtime.Object) workloadFields {
			d := o.(*appsv1.Deployment)
			return workloadFields{&d.Spec.Selector, &d.Spec.Template, &d.Spec.Replicas}
		}},
		{"ReplicaSet", func() runtime.Object { return defaulted(newReplicaSet()) }, func(o runtime.Object) workloadFields {
			rs := o.(*appsv1.ReplicaSet)
			return workloadFields{&rs.Spec.Selector, &rs.Spec.Template, &rs.Spec.Replicas}
		}},
		{"StatefulSet", func() runtime.Object { return defaulted(newStatefulSet()) }, func(o runtime.Object) workloadFields {
			s := o.(*appsv1.StatefulSet)
			return workloadFields{&s.Spec.Selector, &s.Spec.Template, &s.Spec.Replicas}
		}},
		{"DaemonSet", func() runtime.Object { return defaulted(newDaemonSet()) }, func(o runtime.Object) workloadFields {
			ds := o.(*appsv1.DaemonSet)
			return workloadFields{&ds.Spec.Selector, &ds.Spec.Template, nil}
		}},
	}
	for _, k := range kinds {
		for _, tc := range workloadCases {
			t.Run(k.kind+"/"+tc.name, func(t *testing.T) {
				obj := k.new()
				f := k.fields(obj)
				tc.mutate(f)
				want := tc.want
				if f.replicas == nil && tc.name == "negative replicas" {
					want = nil
				}
				checkErrs(t, Validate(obj), want...)
			})
		}
	}
}

func TestValidateWorkloadMessages(t *testing.T) {
	d := defaulted(newDeployment())
	d.Spec.Template.Labels = map[string]string{"app": "other"}
	checkMessage(t, Validate(d), "spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`")

	d = defaulted(newDeployment())
	d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
	checkMessage(t, Validate(d), `spec.template.spec.restartPolicy: Unsupported value: "Never": supported values: "Always"`)
}

func TestValidateDeployment(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*appsv1.Deployment)
		want   []string
	}{
		{"both zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: ptrTo(intstr.FromInt32(0)), MaxSurge: ptrTo(intstr.FromString("0%"))}
		}, []string{"spec.strategy.rollingUpdate.maxUnavailable: Invalid value"}},
		{"over 100%", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate.MaxUnavailable = ptrTo(intstr.FromString("150%"))
		},
			[]string{"spec.strategy.rollingUpdate.maxUnavailable: Invalid value"}},
		{"not a percentage", func(d *appsv1.Deployment) { d.Spec.Strategy.RollingUpdate.MaxSurge = ptrTo(intstr.FromString("half")) },
			[]string{"spec.strategy.rollingUpdate.maxSurge: Invalid value"}},
		{"strategy type", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" }, []string{"spec.strategy: Unsupported value"}},
		{"recreate with rollingUpdate", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType },
			[]string{"spec.strategy.rollingUpdate: Forbidden"}},
		{"recreate", func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}, nil},
		{"revisionHistoryLimit", func(d *appsv1.Deployment) { d.Spec.RevisionHistoryLimit = ptrTo(int32(-1)) }, []string{"spec.revisionHistoryLimit: Invalid value"}},
		{"progress deadline below minReady", func(d *appsv1.Deployment) { d.Spec.MinReadySeconds = 600 },
			[]string{"spec.progressDeadlineSeconds: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := defaulted(newDeployment())
			tc.mutate(d)
			checkErrs(t, Validate(d), tc.want...)
		})
	}
}

func TestValidateDaemonSet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*appsv1.DaemonSet)
		want   []string
	}{
		{"both set", func(d *appsv1.DaemonSet) { d.Spec.UpdateStrategy.RollingUpdate.MaxSurge = ptrTo(intstr.FromInt32(1)) },
			[]string{"spec.updateStrategy.rollingUpdate.maxSurge: Invalid value"}},
		{"both zero", func(d *appsv1.DaemonSet) {
			d.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable = ptrTo(intstr.FromInt32(0))
		},
			[]string{"spec.updateStrategy.rollingUpdate.maxUnavailable: Required value"}},
		{"surge only", func(d *appsv1.DaemonSet) {
			d.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: ptrTo(intstr.FromInt32(0)), MaxSurge: ptrTo(intstr.FromString("10%"))}
		}, nil},
		{"strategy type", func(d *appsv1.DaemonSet) { d.Spec.UpdateStrategy.Type = "Surge" }, []string{"spec.updateStrategy: Unsupported value"}},
		{"on delete", func(d *appsv1.DaemonSet) {
			d.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := defaulted(newDaemonSet())
			tc.mutate(d)
			checkErrs(t, Validate(d), tc.want...)
		})
	}
}

func TestValidateStatefulSet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*appsv1.StatefulSet)
		want   []string
	}{
		{"podManagementPolicy", func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = "Random" }, []string{"spec.podManagementPolicy: Invalid value"}},
		{"updateStrategy", func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = "Canary" }, []string{"spec.updateStrategy: Invalid value"}},
		{"negative partition", func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.RollingUpdate.Partition = ptrTo(int32(-1)) },
			[]string{"spec.updateStrategy.rollingUpdate.partition: Invalid value"}},
		{"retention policy", func(s *appsv1.StatefulSet) { s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = "Keep" },
			[]string{"spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value"}},
		{"mount of an unknown volume", func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers[0].VolumeMounts[0].Name = "logs" },
			[]string{"spec.template.spec.containers[0].volumeMounts[0].name: Not found"}},
		{"no serviceName", func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "" }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := defaulted(newStatefulSet())
			tc.mutate(s)
			checkErrs(t, Validate(s), tc.want...)
		})
	}
}

func TestValidateWorkloadUpdates(t *testing.T) {
	newSel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "v": "2"}}

	d := defaulted(newDeployment())
	d2 := d.DeepCopy()
	d2.Spec.Replicas = ptrTo(int32(5))
	d2.Spec.Template.Spec.Containers[0].Image = "nginx:1.28"
	checkErrs(t, ValidateUpdate(d2, d))
	d2.Spec.Selector = newSel
	d2.Spec.Template.Labels["v"] = "2"
	checkErrs(t, ValidateUpdate(d2, d), "spec.selector: Invalid value")
	checkMessage(t, ValidateUpdate(d2, d), `spec.selector: Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable`)

	rs := defaulted(newReplicaSet())
	rs2 := rs.DeepCopy()
	rs2.Spec.Selector = newSel
	rs2.Spec.Template.Labels["v"] = "2"
	checkErrs(t, ValidateUpdate(rs2, rs), "spec.selector: Invalid value")

	ds := defaulted(newDaemonSet())
	ds2 := ds.DeepCopy()
	ds2.Spec.Selector = newSel
	ds2.Spec.Template.Labels["v"] = "2"
	checkErrs(t, ValidateUpdate(ds2, ds), "spec.selector: Invalid value")

	s := defaulted(newStatefulSet())
	s2 := s.DeepCopy()
	s2.Spec.Replicas = ptrTo(int32(3))
	s2.Spec.Template.Spec.Containers[0].Image = "postgres:17"
	s2.Spec.UpdateStrategy.RollingUpdate.Partition = ptrTo(int32(1))
	s2.Spec.MinReadySeconds = 5
	s2.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 1}
	s2.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.DeletePersistentVolumeClaimRetentionPolicyType
	checkErrs(t, ValidateUpdate(s2, s))
	for _, mutate := range []func(*appsv1.StatefulSet){
		func(s *appsv1.StatefulSet) { s.Spec.ServiceName = "other" },
		func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = appsv1.ParallelPodManagement },
		func(s *appsv1.StatefulSet) { s.Spec.VolumeClaimTemplates[0].Spec.StorageClassName = ptrTo("fast") },
	} {
		s3 := s.DeepCopy()
		mutate(s3)
		errs := ValidateUpdate(s3, s)
		checkErrs(t, errs, "spec: Forbidden")
		checkMessage(t, errs, "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden")
	}
}

func TestValidateControllerRevision(t *testing.T) {
	r := defaulted(newControllerRevision())
	r.Revision = -1
	checkErrs(t, Validate(r), "revision: Invalid value")
	r.Revision, r.Data = 1, runtime.RawExtension{}
	checkErrs(t, Validate(r), "data: Required value")

	old := defaulted(newControllerRevision())
	r = old.DeepCopy()
	r.Data.Raw = []byte("{ \"spec\" : { } }") // same content, other spacing
	r.Labels = map[string]string{"controller.kubernetes.io/hash": "7b9f"}
	checkErrs(t, ValidateUpdate(r, old))
	r.Data.Raw = []byte(`{"spec":{"replicas":2}}`)
	checkErrs(t, ValidateUpdate(r, old), "data: Invalid value")
}

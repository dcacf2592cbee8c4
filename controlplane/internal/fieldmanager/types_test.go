package fieldmanager

import (
	"reflect"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/applyconfigurations"
)

// TestGoTypesMatchSchemas: New's managers (Go objects converted
// unvalidated, and updates that leave the field their subresource cannot
// set out of the comparison) write the same objects and managedFields, and
// fail the same writes, as managers over the schemas' own validating
// converter that compare everything, through a pod's and a deployment's
// life: create, updates by several managers, status updates (one that also
// changes the spec), an update of the main resource that changes status,
// server-side apply, lists with duplicate keys, and an element without its
// key.
func TestGoTypesMatchSchemas(t *testing.T) {
	scheme := testScheme(t)
	fast := New(scheme)
	ref := newSet(scheme, applyconfigurations.NewTypeConverter(scheme))
	if _, ok := fast.types.(*goTypes); !ok || !fast.shortcuts {
		t.Fatalf("New's converter is %T, shortcuts %v; want *goTypes, true", fast.types, fast.shortcuts)
	}
	podKind := corev1.SchemeGroupVersion.WithKind("Pod")

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i",
			Env: []corev1.EnvVar{{Name: "E", Value: "1"}}, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resourceMust("100m")}}}}},
	}
	labelled := pod.DeepCopy()
	labelled.Labels["tier"] = "front"
	labelled.Spec.Containers[0].Env = append(labelled.Spec.Containers[0].Env, corev1.EnvVar{Name: "E", Value: "2"}) // a duplicate key
	running := labelled.DeepCopy()
	running.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.1.5", PodIPs: []corev1.PodIP{{IP: "10.244.1.5"}},
		Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}, {Type: corev1.PodScheduled, Status: corev1.ConditionTrue}},
		ContainerStatuses: []corev1.ContainerStatus{{Name: "a", Ready: true, Image: "i", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}
	notReady := running.DeepCopy()
	notReady.Status.Conditions[0].Status = corev1.ConditionFalse
	notReady.Status.ContainerStatuses[0].Ready = false
	specToo := notReady.DeepCopy() // a status write cannot set spec
	specToo.Status.Phase = corev1.PodSucceeded
	specToo.Spec.Containers[0].Image = "other"
	specToo.Spec.ActiveDeadlineSeconds = new(int64)
	statusToo := specToo.DeepCopy() // nor a write of the main resource status
	statusToo.Spec.Containers[0].Image = "i"
	statusToo.Status.Phase = corev1.PodFailed
	statusToo.Status.Message = "set through the main resource"
	nameless := labelled.DeepCopy()
	nameless.Spec.Containers = append(nameless.Spec.Containers, corev1.Container{Image: "j"}) // no key

	replicas := int32(3)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.25"}}}}},
	}
	scaled := d.DeepCopy()
	*scaled.Spec.Replicas = 5
	progressed := scaled.DeepCopy()
	progressed.Status = appsv1.DeploymentStatus{Replicas: 5, ReadyReplicas: 2, ObservedGeneration: 2,
		Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: corev1.ConditionTrue, Reason: "NewReplicaSetAvailable"}}}

	type step struct {
		name  string
		gvk   schema.GroupVersionKind
		sub   string
		obj   runtime.Object // Update's new object; nil for an apply
		patch string         // Apply's configuration
		by    string
		force bool
	}
	for _, life := range [][]step{{
		{name: "create", gvk: podKind, obj: pod, by: "kubectl-create"},
		{name: "label, duplicate env", gvk: podKind, obj: labelled, by: "kubectl-label"},
		{name: "running", gvk: podKind, sub: "status", obj: running, by: "kubelet"},
		{name: "not ready", gvk: podKind, sub: "status", obj: notReady, by: "kubelet"},
		{name: "status and spec through status", gvk: podKind, sub: "status", obj: specToo, by: "kubelet"},
		{name: "spec and status through the main resource", gvk: podKind, obj: statusToo, by: "kubectl-edit"},
		{name: "container without name", gvk: podKind, obj: nameless, by: "kubectl-edit"},
		{name: "apply labels", gvk: podKind, patch: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"d","labels":{"tier":"back"}}}`, by: "kubectl"},
		{name: "apply labels, forced", gvk: podKind, patch: `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"d","labels":{"tier":"back"}}}`, by: "kubectl", force: true},
	}, {
		{name: "apply", gvk: deploymentKind, patch: `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default"},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.25"}]}}}}`, by: "kubectl"},
		{name: "update", gvk: deploymentKind, obj: d, by: "kubectl-edit"},
		{name: "scale", gvk: deploymentKind, sub: "scale", obj: scaled, by: "kubectl-scale"},
		{name: "status", gvk: deploymentKind, sub: "status", obj: progressed, by: "deployment-controller"},
		{name: "apply image", gvk: deploymentKind, patch: string(deployment(3, "")), by: "kubectl"},
		{name: "apply image, forced", gvk: deploymentKind, patch: string(deployment(3, ", tier: front")), by: "kubectl", force: true},
	}} {
		var liveFast, liveRef runtime.Object
		for _, s := range life {
			mf, err := fast.For(s.gvk, s.sub)
			if err != nil {
				t.Fatal(err)
			}
			mr, err := ref.For(s.gvk, s.sub)
			if err != nil {
				t.Fatal(err)
			}
			var outFast, outRef runtime.Object
			var errFast, errRef error
			if s.obj != nil {
				outFast, errFast = mf.Update(liveFast, withFields(s.obj, liveFast), s.by)
				outRef, errRef = mr.Update(liveRef, withFields(s.obj, liveRef), s.by)
			} else {
				outFast, errFast = mf.Apply(liveFast, []byte(s.patch), s.by, s.force)
				outRef, errRef = mr.Apply(liveRef, []byte(s.patch), s.by, s.force)
			}
			if (errFast == nil) != (errRef == nil) {
				t.Fatalf("%s %s: error %v, schemas' converter: %v", s.gvk.Kind, s.name, errFast, errRef)
			}
			if errFast != nil && outFast == nil {
				t.Logf("%s %s: both fail: %v", s.gvk.Kind, s.name, errFast)
				continue
			}
			if got, want := untimed(outFast), untimed(outRef); !reflect.DeepEqual(got, want) {
				t.Fatalf("%s %s: got\n%+v\nmanagedFields\n%s\nschemas' converter:\n%+v\nmanagedFields\n%s", s.gvk.Kind, s.name, got, describeEntries(mfOf(got)), want, describeEntries(mfOf(want)))
			}
			t.Logf("%s %s: %d managedFields entries", s.gvk.Kind, s.name, len(mfOf(outFast)))
			liveFast, liveRef = outFast, outRef
		}
	}
	// The Go objects after each kind's first went the unvalidated way.
	for _, gvk := range []schema.GroupVersionKind{podKind, deploymentKind} {
		if _, ok := fast.types.(*goTypes).kinds.Load(gvk); !ok {
			t.Errorf("goTypes never learnt %s", gvk)
		}
	}
}

// withFields returns a copy of obj with live's managedFields, as a client
// sends back what it read; obj itself when live is nil.
func withFields(obj, live runtime.Object) runtime.Object {
	if live == nil {
		return obj
	}
	obj = obj.DeepCopyObject()
	obj.(metav1.Object).SetManagedFields(live.(metav1.Object).GetManagedFields())
	return obj
}

// untimed is a copy of obj without the times of its managedFields.
func untimed(obj runtime.Object) runtime.Object {
	obj = obj.DeepCopyObject()
	es := obj.(metav1.Object).GetManagedFields()
	for i := range es {
		es[i].Time = nil
	}
	return obj
}

func mfOf(obj runtime.Object) []metav1.ManagedFieldsEntry {
	return obj.(metav1.Object).GetManagedFields()
}

// BenchmarkPodStatusUpdate: the managedFields of a kubelet's status update
// (Pending → Running) of a pod created by a client, over goTypes and over
// the schemas' validating converter.
func BenchmarkPodStatusUpdate(b *testing.B) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	podKind := corev1.SchemeGroupVersion.WithKind("Pod")
	yes := true
	created := metav1.Unix(1700000000, 0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9c6b5f4-x2x9k", GenerateName: "web-7d9c6b5f4-", Namespace: "d", UID: "0c3c1b8e-5d1f-4a59-9a9e-0f4c5b8a2e11",
			CreationTimestamp: created, Labels: map[string]string{"app": "web", "pod-template-hash": "7d9c6b5f4"},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d9c6b5f4", UID: "5b0c0e4e-1c57-4f0e-9d36-9a1f7f3c6d21", Controller: &yes, BlockOwnerDeletion: &yes}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resourceMust("100m")}}}},
			RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst, SchedulerName: "default-scheduler", NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable,
			Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: created}}},
	}
	for _, c := range []struct {
		name string
		set  *Set
	}{{"goTypes", New(scheme)}, {"schemas", newSet(scheme, applyconfigurations.NewTypeConverter(scheme))}} {
		b.Run(c.name, func(b *testing.B) {
			main, err := c.set.For(podKind, "")
			if err != nil {
				b.Fatal(err)
			}
			status, err := c.set.For(podKind, "status")
			if err != nil {
				b.Fatal(err)
			}
			live, err := main.Update(nil, pod, "kubectl-create")
			if err != nil {
				b.Fatal(err)
			}
			// As a kubelet reports it Running.
			running := live.DeepCopyObject().(*corev1.Pod)
			now := metav1.Unix(1700000002, 0)
			st := &running.Status
			st.Phase, st.StartTime = corev1.PodRunning, &now
			st.HostIP, st.HostIPs = "10.0.0.7", []corev1.HostIP{{IP: "10.0.0.7"}}
			st.PodIP, st.PodIPs = "10.244.1.5", []corev1.PodIP{{IP: "10.244.1.5"}}
			for _, c := range []corev1.PodConditionType{"PodReadyToStartContainers", corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady} {
				st.Conditions = append(st.Conditions, corev1.PodCondition{Type: c, Status: corev1.ConditionTrue, LastTransitionTime: now})
			}
			st.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", Ready: true, Started: &yes, Image: "i", ImageID: "sha256:0123", ContainerID: "containerd://abc",
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := status.Update(live, running, "kubelet"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPodCreate: the managedFields of a client's pod create, as the
// benchmark's and a ReplicaSet's pods look once defaulted.
func BenchmarkPodCreate(b *testing.B) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		b.Fatal(err)
	}
	m, err := New(scheme).For(corev1.SchemeGroupVersion.WithKind("Pod"), "")
	if err != nil {
		b.Fatal(err)
	}
	grace := int64(30)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-1", Namespace: "d", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "registry.local/app:v1",
			Resources:                corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resourceMust("100m"), corev1.ResourceMemory: resourceMust("100Mi")}},
			TerminationMessagePath:   "/dev/termination-log",
			TerminationMessagePolicy: corev1.TerminationMessageReadFile, ImagePullPolicy: corev1.PullIfNotPresent}},
			RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst, SchedulerName: "default-scheduler",
			TerminationGracePeriodSeconds: &grace, SecurityContext: &corev1.PodSecurityContext{},
			Tolerations: []corev1.Toleration{{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable},
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Update(nil, pod, "kubectl-create"); err != nil {
			b.Fatal(err)
		}
	}
}

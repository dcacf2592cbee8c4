package fieldmanager

import (
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// write is one update of a sequence: by manager, through the main
// resource or status, changing the stored object with change.
type write struct {
	name, manager string
	status        bool
	change        func(obj runtime.Object)
	// fallback: the fast path must decline (the full pipeline decides).
	fallback bool
}

// checkFastPath applies writes in turn to live, each through updateFast
// and through the full pipeline (update), and fails when they differ: in
// the managedFields (entries, order, fields; the writer's time aside,
// every other entry's time kept) or anywhere else in the object.
func checkFastPath(t *testing.T, main, status *Manager, live runtime.Object, writes []write) {
	t.Helper()
	for _, w := range writes {
		m := main
		if w.status {
			m = status
		}
		next := live.DeepCopyObject()
		w.change(next)
		fast, ok := m.updateFast(live, next, w.manager)
		full, err := m.update(live, next, w.manager)
		if err != nil {
			t.Fatalf("%s: full pipeline: %v", w.name, err)
		}
		if w.fallback {
			if ok {
				t.Errorf("%s: the fast path took a write it should leave to the pipeline", w.name)
			}
			live = full
			continue
		}
		if !ok {
			t.Fatalf("%s: the fast path declined", w.name)
		}
		got, want := objectMeta(fast).GetManagedFields(), objectMeta(full).GetManagedFields()
		if len(got) != len(want) {
			t.Fatalf("%s: fast path managedFields:\n%s\nfull pipeline:\n%s", w.name, describeEntries(got), describeEntries(want))
		}
		for i := range got {
			g, f := got[i], want[i]
			writer := g.Manager == w.manager && g.Operation == metav1.ManagedFieldsOperationUpdate
			if writer {
				if (g.Time == nil) != (f.Time == nil) {
					t.Errorf("%s: writer's entry time %v, pipeline's %v", w.name, g.Time, f.Time)
				}
				g.Time, f.Time = nil, nil
			}
			if !reflect.DeepEqual(g, f) {
				t.Errorf("%s: entry %d: fast path\n%s\nfull pipeline\n%s", w.name, i, describeEntries([]metav1.ManagedFieldsEntry{g}), describeEntries([]metav1.ManagedFieldsEntry{f}))
			}
		}
		a, b := fast.DeepCopyObject(), full.DeepCopyObject()
		objectMeta(a).SetManagedFields(nil)
		objectMeta(b).SetManagedFields(nil)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: the fast path's object differs beyond managedFields:\n%#v\n%#v", w.name, a, b)
		}
		live = full
	}
}

func TestUpdateFastPath(t *testing.T) {
	podKind := corev1.SchemeGroupVersion.WithKind("Pod")
	pod := func(o runtime.Object) *corev1.Pod { return o.(*corev1.Pod) }
	created, err := manager(t, podKind, "").Update(nil, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "d", UID: "u1", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i:1",
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resourceMust("100m")}}}},
			RestartPolicy: corev1.RestartPolicyAlways, Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}},
		Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable},
	}, "client")
	if err != nil {
		t.Fatal(err)
	}
	main, status := mainAndStatus(t, podKind)
	cond := func(p *corev1.Pod, typ corev1.PodConditionType, st corev1.ConditionStatus) {
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == typ {
				p.Status.Conditions[i].Status = st
				return
			}
		}
		p.Status.Conditions = append(p.Status.Conditions, corev1.PodCondition{Type: typ, Status: st})
	}
	checkFastPath(t, main, status, created, []write{
		{name: "bound", manager: "scheduler", status: true, change: func(o runtime.Object) {
			cond(pod(o), corev1.PodScheduled, corev1.ConditionTrue)
		}},
		{name: "running", manager: "kubelet", status: true, change: func(o runtime.Object) {
			p := pod(o)
			p.Status.Phase, p.Status.PodIP, p.Status.PodIPs = corev1.PodRunning, "10.0.0.5", []corev1.PodIP{{IP: "10.0.0.5"}}
			cond(p, corev1.PodReady, corev1.ConditionTrue)
			cond(p, corev1.PodScheduled, corev1.ConditionFalse) // taken from the scheduler
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "a", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
		}},
		{name: "kubelet again", manager: "kubelet", status: true, change: func(o runtime.Object) {
			cond(pod(o), corev1.ContainersReady, corev1.ConditionTrue)
		}},
		{name: "no change", manager: "kubelet", status: true, change: func(runtime.Object) {}},
		{name: "spec ignored on status", manager: "sneaky", status: true, change: func(o runtime.Object) {
			pod(o).Spec.Containers[0].Image = "i:9"
		}},
		{name: "only fields no entry holds", manager: "registry", change: func(o runtime.Object) {
			p := pod(o)
			p.Generation, p.ResourceVersion = 7, "42"
		}},
		{name: "label added", manager: "labeler", change: func(o runtime.Object) { pod(o).Labels["tier"] = "front" }},
		{name: "own image", manager: "client", change: func(o runtime.Object) { pod(o).Spec.Containers[0].Image = "i:2" }},
		{name: "image taken", manager: "other", change: func(o runtime.Object) { pod(o).Spec.Containers[0].Image = "i:3" }},
		{name: "status ignored on main", manager: "sneaky", change: func(o runtime.Object) { pod(o).Status.Phase = corev1.PodFailed }},
		{name: "label removed, entry empty", manager: "labeler", change: func(o runtime.Object) { delete(pod(o).Labels, "tier") }},
		{name: "condition removed", manager: "kubelet", status: true, change: func(o runtime.Object) {
			p := pod(o)
			p.Status.Conditions = p.Status.Conditions[:1]
		}},
		{name: "removed by another", manager: "cleaner", change: func(o runtime.Object) { pod(o).Spec.Tolerations = nil }},
		{name: "managedFields sent back", manager: "annotator", change: func(o runtime.Object) {
			pod(o).Annotations = map[string]string{"a": "b"} // the object keeps the managedFields it was read with
		}},
		{name: "managedFields of its own", manager: "annotator", fallback: true, change: func(o runtime.Object) {
			p := pod(o)
			p.Annotations["a"] = "c"
			p.ManagedFields = p.ManagedFields[:1]
		}},
		{name: "managedFields reset", manager: "annotator", fallback: true, change: func(o runtime.Object) {
			pod(o).ManagedFields = []metav1.ManagedFieldsEntry{{}}
		}},
	})
}

// TestUpdateFastPathApplied: entries of appliers (server-side apply) are
// kept and taken from as the pipeline does; the cap on Update entries and
// encodings this package does not write are left to the pipeline.
func TestUpdateFastPathApplied(t *testing.T) {
	main, status := mainAndStatus(t, deploymentKind)
	applied, err := main.Apply(nil, deployment(2, ""), "kubectl", false)
	if err != nil {
		t.Fatal(err)
	}
	dep := func(o runtime.Object) *appsv1.Deployment { return o.(*appsv1.Deployment) }
	writes := []write{
		{name: "status", manager: "deployment-controller", status: true, change: func(o runtime.Object) {
			d := dep(o)
			d.Status.Replicas, d.Status.ObservedGeneration = 2, 1
		}},
		{name: "replicas taken from the applier", manager: "scaler", change: func(o runtime.Object) {
			three := int32(3)
			dep(o).Spec.Replicas = &three
		}},
		// Within a pointer to a struct (trimEqual copies and looks into
		// it): set, changed, then dropped with the struct it is in.
		{name: "rolling update set", manager: "roller", change: func(o runtime.Object) {
			surge := intstr.FromString("25%")
			dep(o).Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge}}
		}},
		{name: "max surge changed", manager: "roller", change: func(o runtime.Object) {
			one, surge := intstr.FromInt32(1), intstr.FromInt32(2)
			dep(o).Spec.Strategy.RollingUpdate.MaxSurge, dep(o).Spec.Strategy.RollingUpdate.MaxUnavailable = &surge, &one
		}},
		{name: "recreate", manager: "roller", change: func(o runtime.Object) {
			dep(o).Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
		}},
	}
	for i := range 7 { // with the three managers above, ten Update entries
		writes = append(writes, write{name: "annotator " + itoa(i), manager: "annotator-" + itoa(i), change: func(o runtime.Object) {
			d := dep(o)
			if d.Annotations == nil {
				d.Annotations = map[string]string{}
			}
			d.Annotations["a"+itoa(i)] = "x"
		}})
	}
	// The next manager makes the pipeline merge the oldest entries.
	writes = append(writes, write{name: "past the cap", manager: "annotator-7", fallback: true, change: func(o runtime.Object) {
		dep(o).Annotations["a7"] = "x"
	}})
	checkFastPath(t, main, status, applied, writes)

	// An encoding of the same fields in another order is decoded by the
	// pipeline only.
	cm := manager(t, configMapKind, "")
	now := metav1.Now()
	live := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "d", ManagedFields: []metav1.ManagedFieldsEntry{{
		Manager: "m", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "v1", Time: &now, FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:data":{"f:b":{},"f:a":{}}}`),
	}}}, Data: map[string]string{"a": "1", "b": "2"}}
	next := live.DeepCopy()
	next.Data["c"] = "3"
	if _, ok := cm.updateFast(live, next, "n"); ok {
		t.Error("the fast path took managedFields in an encoding it does not write")
	}
}

// TestUpdateFastPathReconciled: a set the schema reconciliation would
// change (fields under the selector, which is atomic: recorded so by an
// older schema) is left to the pipeline.
func TestUpdateFastPathReconciled(t *testing.T) {
	main := manager(t, deploymentKind, "")
	const granular = `{"f:spec":{"f:selector":{"f:matchLabels":{"f:app":{}}}}}`
	var set fieldpath.Set
	if err := set.FromJSON(strings.NewReader(granular)); err != nil {
		t.Fatal(err)
	}
	if again, err := set.ToJSON(); err != nil || string(again) != granular {
		t.Fatalf("%s encodes back as %s, %v: want it canonical, so that only the reconciliation can refuse it", granular, again, err)
	}
	now := metav1.Now()
	live := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "d", ManagedFields: []metav1.ManagedFieldsEntry{{
		Manager: "old", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", Time: &now, FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(granular),
	}}}, Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}}}
	next := live.DeepCopy()
	next.Labels = map[string]string{"tier": "front"}
	if _, ok := main.updateFast(live, next, "labeler"); ok {
		t.Error("the fast path took a set the schema reconciliation changes")
	}
	if _, err := main.Update(live, next, "labeler"); err != nil {
		t.Errorf("the pipeline: %v", err)
	}
}

package fieldmanager

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, discoveryv1.AddToScheme, coordinationv1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

var (
	deploymentKind = appsv1.SchemeGroupVersion.WithKind("Deployment")
	configMapKind  = corev1.SchemeGroupVersion.WithKind("ConfigMap")
)

func manager(t *testing.T, gvk schema.GroupVersionKind, sub string) *Manager {
	t.Helper()
	m, err := New(testScheme(t)).For(gvk, sub)
	if err != nil {
		t.Fatalf("For(%s, %q): %v", gvk, sub, err)
	}
	return m
}

// mainAndStatus returns the Managers of gvk through the main resource and
// through status, of one Set.
func mainAndStatus(t *testing.T, gvk schema.GroupVersionKind) (main, status *Manager) {
	t.Helper()
	set := New(testScheme(t))
	main, err := set.For(gvk, "")
	if err != nil {
		t.Fatalf("For(%s, \"\"): %v", gvk, err)
	}
	if status, err = set.For(gvk, "status"); err != nil {
		t.Fatalf("For(%s, status): %v", gvk, err)
	}
	return main, status
}

// deployment is an apply configuration of the Deployment web with the
// given replicas; extra is spliced into its metadata.labels.
func deployment(replicas int, labels string) []byte {
	return []byte(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels: {app: web` + labels + `}
spec:
  replicas: ` + itoa(replicas) + `
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: nginx
        image: nginx:1.26
`)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// entries returns the managedFields of obj as "manager/operation/subresource" → fieldsV1 JSON.
func entries(t *testing.T, obj runtime.Object) map[string]string {
	t.Helper()
	m, err := metaOf(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range m.GetManagedFields() {
		if e.FieldsType != "FieldsV1" || e.FieldsV1 == nil {
			t.Errorf("entry %+v: want fieldsType FieldsV1 and fieldsV1", e)
			continue
		}
		out[e.Manager+"/"+string(e.Operation)+"/"+e.Subresource] = e.FieldsV1.GetRawString()
	}
	return out
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, errors.New("not an object with metadata")
	}
	return m, nil
}

func mustApply(t *testing.T, m *Manager, live runtime.Object, patch []byte, manager string, force bool) *appsv1.Deployment {
	t.Helper()
	out, err := m.Apply(live, patch, manager, force)
	if err != nil {
		t.Fatalf("Apply as %s: %v", manager, err)
	}
	d, ok := out.(*appsv1.Deployment)
	if !ok {
		t.Fatalf("Apply returned %T, want *appsv1.Deployment", out)
	}
	if got := d.GetObjectKind().GroupVersionKind(); got != deploymentKind {
		t.Errorf("Apply returned kind %s, want %s", got, deploymentKind)
	}
	return d
}

func TestApplyCreates(t *testing.T) {
	m := manager(t, deploymentKind, "")
	d := mustApply(t, m, nil, deployment(3, ""), "kubectl", false)
	if d.Name != "web" || d.Namespace != "default" || d.Spec.Replicas == nil || *d.Spec.Replicas != 3 || d.Spec.Template.Spec.Containers[0].Image != "nginx:1.26" {
		t.Errorf("got %s/%s replicas %v containers %+v, want default/web with 3 replicas of nginx:1.26", d.Namespace, d.Name, d.Spec.Replicas, d.Spec.Template.Spec.Containers)
	}
	mf := d.GetManagedFields()
	if len(mf) != 1 {
		t.Fatalf("got managedFields %+v, want one entry", mf)
	}
	e := mf[0]
	if e.Manager != "kubectl" || e.Operation != metav1.ManagedFieldsOperationApply || e.APIVersion != "apps/v1" || e.FieldsType != "FieldsV1" || e.Subresource != "" || e.Time == nil {
		t.Errorf("got entry %+v, want kubectl Apply apps/v1 FieldsV1 with a time", e)
	}
	for _, f := range []string{`"f:replicas":{}`, `"k:{\"name\":\"nginx\"}":{`, `"f:image":{}`, `"f:labels":{`, `"f:app":{}`} {
		if !strings.Contains(e.FieldsV1.GetRawString(), f) {
			t.Errorf("got fieldsV1 %s, want it to contain %s", e.FieldsV1.GetRawString(), f)
		}
	}
	// Server-owned metadata is never managed.
	for _, f := range []string{`"f:metadata":{"f:name"`, `"f:namespace"`, `"f:status"`} {
		if strings.Contains(e.FieldsV1.GetRawString(), f) {
			t.Errorf("got fieldsV1 %s, want no %s", e.FieldsV1.GetRawString(), f)
		}
	}
}

func TestApplyTwiceIsIdempotent(t *testing.T) {
	m := manager(t, deploymentKind, "")
	first := mustApply(t, m, nil, deployment(3, ""), "kubectl", false)
	first.UID, first.ResourceVersion = "u1", "7" // as stored
	second := mustApply(t, m, first, deployment(3, ""), "kubectl", false)
	if !equalJSON(t, first, second) {
		t.Errorf("re-applying the same configuration changed the object:\n got %s\nwant %s", mustJSON(t, second), mustJSON(t, first))
	}
}

func TestApplyConflicts(t *testing.T) {
	m := manager(t, deploymentKind, "")
	live := mustApply(t, m, nil, deployment(3, ""), "kubectl", false)

	_, err := m.Apply(live, deployment(5, ""), "other", false)
	if !apierrors.IsConflict(err) {
		t.Fatalf("applying replicas 5 as other: got %v, want 409 Conflict", err)
	}
	want := `Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas`
	if err.Error() != want {
		t.Errorf("got message %q, want %q", err.Error(), want)
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		t.Fatalf("got %T, want an API status", err)
	}
	causes := status.Status().Details.Causes
	if len(causes) != 1 || causes[0].Type != metav1.CauseTypeFieldManagerConflict || causes[0].Field != ".spec.replicas" || causes[0].Message != `conflict with "kubectl"` {
		t.Errorf("got causes %+v, want one FieldManagerConflict on .spec.replicas with kubectl", causes)
	}

	// The same value is no conflict: both managers own it. (The object does
	// not change, so other's entry has no time, as in kube-apiserver.)
	shared := mustApply(t, m, live, deployment(3, ""), "other", false)
	got := entries(t, shared)
	if !strings.Contains(got["other/Apply/"], `"f:replicas"`) || !strings.Contains(got["kubectl/Apply/"], `"f:replicas"`) {
		t.Errorf("got managers %v, want kubectl and other both owning spec.replicas", got)
	}
}

func TestApplyConflictsWithSeveralManagers(t *testing.T) {
	m := manager(t, deploymentKind, "")
	live := mustApply(t, m, nil, deployment(3, ""), "kubectl", false)
	live = mustApply(t, m, live, []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","labels":{"team":"a"}}}`), "team-tool", false)
	_, err := m.Apply(live, deployment(5, `, team: b`), "other", false)
	if !apierrors.IsConflict(err) {
		t.Fatalf("got %v, want 409 Conflict", err)
	}
	for _, want := range []string{"Apply failed with 2 conflicts:", `conflicts with "kubectl":`, "- .spec.replicas", `conflicts with "team-tool":`, "- .metadata.labels.team"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("got message %q, want it to contain %q", err.Error(), want)
		}
	}
}

func TestApplyForceTakesOwnership(t *testing.T) {
	m := manager(t, deploymentKind, "")
	live := mustApply(t, m, nil, deployment(3, ""), "kubectl", false)
	forced := mustApply(t, m, live, []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":5}}`), "other", true)
	if *forced.Spec.Replicas != 5 {
		t.Errorf("got replicas %d, want 5", *forced.Spec.Replicas)
	}
	got := entries(t, forced)
	if !strings.Contains(got["other/Apply/"], `"f:replicas"`) {
		t.Errorf("got other's fields %s, want spec.replicas", got["other/Apply/"])
	}
	if strings.Contains(got["kubectl/Apply/"], `"f:replicas"`) || !strings.Contains(got["kubectl/Apply/"], `"f:image"`) {
		t.Errorf("got kubectl's fields %s, want the image but no longer spec.replicas", got["kubectl/Apply/"])
	}
	// kubectl applying its old value now conflicts with the new owner.
	if _, err := m.Apply(forced, deployment(3, ""), "kubectl", false); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `conflict with "other"`) {
		t.Errorf("kubectl re-applying replicas 3: got %v, want a conflict with other", err)
	}
}

func TestUpdateAfterApply(t *testing.T) {
	m := manager(t, deploymentKind, "")
	live := mustApply(t, m, nil, deployment(3, ""), "kubectl", false)

	changed := live.DeepCopy()
	changed.Spec.Replicas = ptr(int32(7))
	changed.Labels["edited"] = "yes"
	liveBefore, changedBefore := live.DeepCopy(), changed.DeepCopy()
	out, err := m.Update(live, changed, "kubectl-edit")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(live, liveBefore) || !reflect.DeepEqual(changed, changedBefore) {
		t.Errorf("Update modified its arguments")
	}
	got := entries(t, out)
	if e := got["kubectl-edit/Update/"]; !strings.Contains(e, `"f:replicas"`) || !strings.Contains(e, `"f:edited"`) || strings.Contains(e, `"f:image"`) {
		t.Errorf("got kubectl-edit's fields %s, want spec.replicas and the edited label only", e)
	}
	if e := got["kubectl/Apply/"]; strings.Contains(e, `"f:replicas"`) || !strings.Contains(e, `"f:image"`) {
		t.Errorf("got kubectl's fields %s, want the image but not spec.replicas", e)
	}
	if changed.ManagedFields[0].Manager != "kubectl" || len(changed.ManagedFields) != 1 {
		t.Errorf("Update modified its argument: managedFields %+v", changed.ManagedFields)
	}
	// The applier now conflicts with the editor on replicas.
	if _, err := m.Apply(out, deployment(3, ""), "kubectl", false); !apierrors.IsConflict(err) || !strings.Contains(err.Error(), `conflict with "kubectl-edit" using apps/v1: .spec.replicas`) {
		t.Errorf("re-applying replicas 3: got %v, want a conflict with kubectl-edit on .spec.replicas", err)
	}
	// An update that changes nothing takes nothing.
	same, err := m.Update(out, out, "someone")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := entries(t, same)["someone/Update/"]; ok {
		t.Errorf("a no-op update added an entry: %v", entries(t, same))
	}
}

func TestUpdateOnCreate(t *testing.T) {
	m := manager(t, configMapKind, "")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Labels: map[string]string{"a": "b"}}, Data: map[string]string{"k": "v"}}
	out, err := m.Update(nil, cm, "kubectl-create")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := out.(*corev1.ConfigMap); !ok {
		t.Fatalf("got %T, want *corev1.ConfigMap", out)
	}
	got := entries(t, out)
	if e := got["kubectl-create/Update/"]; e != `{"f:data":{".":{},"f:k":{}},"f:metadata":{"f:labels":{".":{},"f:a":{}}}}` {
		t.Errorf("got managers %v, want kubectl-create owning data.k and labels.a", got)
	}
	if cm.ManagedFields != nil {
		t.Errorf("Update modified its argument: %+v", cm.ManagedFields)
	}
}

func TestUpdateManagedFieldsFromClient(t *testing.T) {
	m := manager(t, configMapKind, "")
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"}}
	live, err := m.Update(nil, cm, "creator")
	if err != nil {
		t.Fatal(err)
	}
	// A client that sends a list with one empty entry resets the fields:
	// only its own change is tracked.
	reset := live.DeepCopyObject().(*corev1.ConfigMap)
	reset.ManagedFields = []metav1.ManagedFieldsEntry{{}}
	reset.Data["j"] = "w"
	out, err := m.Update(live, reset, "resetter")
	if err != nil {
		t.Fatal(err)
	}
	if got := entries(t, out); len(got) != 1 || got["resetter/Update/"] != `{"f:data":{"f:j":{}}}` {
		t.Errorf("got managers %v, want only resetter owning data.j", got)
	}
	// A client that sends no managedFields keeps the stored ones.
	plain := live.DeepCopyObject().(*corev1.ConfigMap)
	plain.ManagedFields = nil
	plain.Data["j"] = "w"
	out, err = m.Update(live, plain, "editor")
	if err != nil {
		t.Fatal(err)
	}
	if got := entries(t, out); len(got) != 2 || got["creator/Update/"] == "" || got["editor/Update/"] != `{"f:data":{"f:j":{}}}` {
		t.Errorf("got managers %v, want creator and editor owning data.j", got)
	}
}

func TestApplyRemovesDroppedFields(t *testing.T) {
	m := manager(t, configMapKind, "")
	live, err := m.Apply(nil, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"1","b":"2"}},"data":{"x":"1","y":"2"}}`), "tool", false)
	if err != nil {
		t.Fatal(err)
	}
	// Another manager also owns data.y: dropping it from tool's
	// configuration must not delete it.
	shared, err := m.Apply(live, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"y":"2"}}`), "other", false)
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Apply(shared, []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","labels":{"a":"1"}},"data":{"x":"1"}}`), "tool", false)
	if err != nil {
		t.Fatal(err)
	}
	cm := out.(*corev1.ConfigMap)
	if got, want := mustJSON(t, cm.Labels), `{"a":"1"}`; got != want {
		t.Errorf("got labels %s, want %s (b dropped by its only owner)", got, want)
	}
	if got, want := mustJSON(t, cm.Data), `{"x":"1","y":"2"}`; got != want {
		t.Errorf("got data %s, want %s (y still owned by other)", got, want)
	}
}

func TestApplyBadRequests(t *testing.T) {
	m := manager(t, deploymentKind, "")
	tests := []struct {
		name, patch, want string
	}{
		{"not yaml", "{", "error decoding YAML"},
		{"other kind", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"web"}}`, "invalid object type: /v1, Kind=ConfigMap"},
		{"other version", `{"apiVersion":"apps/v1beta1","kind":"Deployment","metadata":{"name":"web"}}`, "invalid object type: apps/v1beta1, Kind=Deployment"},
		{"no kind", `{"metadata":{"name":"web"}}`, "invalid object type"},
		{"unknown field", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"bogus":1}}`, ".spec.bogus: field not declared in schema"},
		{"managed fields", `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","managedFields":[{"manager":"x"}]}}`, "metadata.managedFields must be nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Apply(nil, []byte(tt.patch), "kubectl", false)
			if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want 400 BadRequest containing %q", err, tt.want)
			}
		})
	}
}

// TestStatusSubresource: writes through /status are recorded with the
// subresource, and own only status; the main resource owns no status.
func TestStatusSubresource(t *testing.T) {
	main, status := mainAndStatus(t, deploymentKind)
	live := mustApply(t, main, nil, []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":2},"status":{"replicas":9}}`), "kubectl", false)
	if e := entries(t, live)["kubectl/Apply/"]; strings.Contains(e, "f:status") {
		t.Errorf("got kubectl's fields %s, want no status through the main resource", e)
	}
	changed := live.DeepCopy()
	changed.Status.ReadyReplicas = 2
	changed.Spec.Paused = true // a status write cannot own spec
	out, err := status.Update(live, changed, "controller")
	if err != nil {
		t.Fatal(err)
	}
	if e := entries(t, out)["controller/Update/status"]; e != `{"f:status":{"f:readyReplicas":{}}}` {
		t.Errorf("got %v, want controller/Update/status owning status.readyReplicas only", entries(t, out))
	}
}

func TestServedKinds(t *testing.T) {
	set := New(testScheme(t))
	kinds := []schema.GroupVersionKind{
		corev1.SchemeGroupVersion.WithKind("Namespace"), corev1.SchemeGroupVersion.WithKind("Node"),
		corev1.SchemeGroupVersion.WithKind("Pod"), corev1.SchemeGroupVersion.WithKind("Service"),
		corev1.SchemeGroupVersion.WithKind("Endpoints"), configMapKind, corev1.SchemeGroupVersion.WithKind("Secret"),
		corev1.SchemeGroupVersion.WithKind("ServiceAccount"), corev1.SchemeGroupVersion.WithKind("Event"),
		deploymentKind, appsv1.SchemeGroupVersion.WithKind("ReplicaSet"), appsv1.SchemeGroupVersion.WithKind("StatefulSet"),
		appsv1.SchemeGroupVersion.WithKind("DaemonSet"), appsv1.SchemeGroupVersion.WithKind("ControllerRevision"),
		discoveryv1.SchemeGroupVersion.WithKind("EndpointSlice"), coordinationv1.SchemeGroupVersion.WithKind("Lease"),
	}
	for _, gvk := range kinds {
		m, err := set.For(gvk, "")
		if err != nil {
			t.Errorf("For(%s): %v", gvk, err)
			continue
		}
		again, _ := set.For(gvk, "")
		if again != m || m.Kind() != gvk {
			t.Errorf("For(%s) twice: got a different or wrong Manager", gvk)
		}
	}
}

// widget is a kind no embedded schema describes.
type widget struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
}

func (w *widget) DeepCopyObject() runtime.Object {
	c := *w
	w.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return &c
}

func TestNoSchema(t *testing.T) {
	s := testScheme(t)
	gvk := schema.GroupVersionKind{Group: "example.com", Version: "v1", Kind: "Widget"}
	s.AddKnownTypeWithName(gvk, &widget{})
	_, err := New(s).For(gvk, "")
	if !errors.Is(err, ErrNoSchema) || !strings.Contains(err.Error(), "example.com/v1, Kind=Widget") {
		t.Errorf("For(Widget): got %v, want ErrNoSchema naming the kind", err)
	}
	if _, err := New(s).For(schema.GroupVersionKind{Version: "v1", Kind: "Nope"}, ""); err == nil {
		t.Errorf("For(a kind the scheme does not know): got nil error")
	}
}

func TestManagerFromUserAgent(t *testing.T) {
	tests := []struct{ ua, want string }{
		{"kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd", "kubectl"},
		{"skiff/v0.1 (linux/amd64) kubernetes/$Format", "skiff"},
		{"curl", "curl"},
		{"", ""},
		{"bad\x00agent/1", "badagent"},
		{strings.Repeat("x", 200), strings.Repeat("x", 128)},
	}
	for _, tt := range tests {
		if got := ManagerFromUserAgent(tt.ua); got != tt.want {
			t.Errorf("ManagerFromUserAgent(%q): got %q, want %q", tt.ua, got, tt.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func equalJSON(t *testing.T, a, b any) bool { return mustJSON(t, a) == mustJSON(t, b) }

// TestCreateFastPath: a create's managedFields from the fast path are those
// of the full field manager pipeline, for objects of every shape the API
// creates (maps, lists with keys, sets, status that a create cannot own,
// empty objects).
func TestCreateFastPath(t *testing.T) {
	one := int32(1)
	yes := true
	labels := map[string]string{"app": "web", "tier": "front"}
	for _, tc := range []struct {
		gvk schema.GroupVersionKind
		obj runtime.Object
	}{
		{corev1.SchemeGroupVersion.WithKind("ConfigMap"), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "d", Labels: labels, Annotations: map[string]string{"a": "b"}}, Data: map[string]string{"k": "v", "x": "y"}}},
		{corev1.SchemeGroupVersion.WithKind("ConfigMap"), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "empty"}}},
		{corev1.SchemeGroupVersion.WithKind("Pod"), &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", GenerateName: "p-", Labels: labels, Finalizers: []string{"x/y"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "rs", UID: "u", Controller: &yes, BlockOwnerDeletion: &yes}}},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "a", Image: "i", Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
					Env: []corev1.EnvVar{{Name: "E", Value: "1"}}, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resourceMust("100m")}}},
					{Name: "b", Image: "j", TerminationMessagePolicy: corev1.TerminationMessageReadFile}},
				Tolerations:   []corev1.Toleration{{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}},
				RestartPolicy: corev1.RestartPolicyAlways, DNSPolicy: corev1.DNSClusterFirst, SchedulerName: "default-scheduler",
				Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable},
		}},
		{appsv1.SchemeGroupVersion.WithKind("Deployment"), &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "d", Labels: labels},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "i"}}}}},
		}},
		{corev1.SchemeGroupVersion.WithKind("Service"), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "s"},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}},
				ClusterIP: "10.96.0.5", ClusterIPs: []string{"10.96.0.5"}, Type: corev1.ServiceTypeClusterIP},
		}},
		{corev1.SchemeGroupVersion.WithKind("Node"), &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: labels},
			Spec:       corev1.NodeSpec{PodCIDR: "10.244.1.0/24", Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
			Status:     corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}},
		}},
	} {
		t.Run(tc.gvk.Kind+"/"+tc.obj.(metav1.Object).GetName(), func(t *testing.T) {
			m := manager(t, tc.gvk, "")
			fast, ok := m.create(tc.obj, "creator")
			if !ok {
				t.Fatal("the fast path declined")
			}
			full, err := m.update(nil, tc.obj, "creator")
			if err != nil {
				t.Fatal(err)
			}
			strip := func(obj runtime.Object) []metav1.ManagedFieldsEntry {
				es := obj.(metav1.Object).GetManagedFields()
				for i := range es {
					es[i].Time = nil
				}
				return es
			}
			got, want := strip(fast), strip(full)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("fast path managedFields:\n%+v\nfull pipeline:\n%+v", describeEntries(got), describeEntries(want))
			}
			fast.(metav1.Object).SetManagedFields(nil)
			full.(metav1.Object).SetManagedFields(nil)
			if !reflect.DeepEqual(fast, full) {
				t.Errorf("the objects differ beyond managedFields:\n%+v\n%+v", fast, full)
			}
		})
	}
}

func describeEntries(es []metav1.ManagedFieldsEntry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s %s %s %q %s\n", e.Manager, e.Operation, e.APIVersion, e.Subresource, e.FieldsV1.GetRawString())
	}
	return b.String()
}

func resourceMust(s string) resource.Quantity { return resource.MustParse(s) }

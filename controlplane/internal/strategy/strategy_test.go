package strategy

import (
	"reflect"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// errStrings renders errors as "path: Type", sorted, for comparison.
func errStrings(errs field.ErrorList) []string {
	out := make([]string, 0, len(errs))
	for _, e := range errs {
		out = append(out, e.Field+": "+e.Type.String())
	}
	slices.Sort(out)
	return out
}

// checkErrs fails unless errs are exactly want (as "path: Type").
func checkErrs(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := errStrings(errs); !slices.Equal(got, want) {
		t.Errorf("got errors %q, want %q\n(full: %v)", got, want, errs.ToAggregate())
	}
}

// checkMessage fails unless one error renders exactly as want (the text
// kubectl prints after "is invalid: ").
func checkMessage(t *testing.T, errs field.ErrorList, want string) {
	t.Helper()
	for _, e := range errs {
		if e.Error() == want {
			return
		}
	}
	t.Errorf("got errors %v, want one reading %q", errs.ToAggregate(), want)
}

func objectMeta(name string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: "default"}
}

func testPodSpec() corev1.PodSpec {
	return corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:1.27", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80}}}}}
}

func testTemplate() corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: testPodSpec()}
}

func testSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
}

// Minimal valid objects of every kind, before defaulting: what a user would
// write in a manifest.
func newPod() *corev1.Pod { return &corev1.Pod{ObjectMeta: objectMeta("web"), Spec: testPodSpec()} }

func newService() *corev1.Service {
	return &corev1.Service{ObjectMeta: objectMeta("web"), Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "web"},
		Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
	}}
}

func newSecret() *corev1.Secret {
	return &corev1.Secret{ObjectMeta: objectMeta("creds"), Data: map[string][]byte{"password": []byte("s3cret")}}
}

func newConfigMap() *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: objectMeta("cfg"), Data: map[string]string{"app.conf": "x=1"}}
}

func newNamespace() *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}
}

func newNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}, Spec: corev1.NodeSpec{PodCIDR: "10.244.1.0/24"}}
}

func newServiceAccount() *corev1.ServiceAccount {
	return &corev1.ServiceAccount{ObjectMeta: objectMeta("default")}
}

// endpoints is core/v1 Endpoints, deprecated upstream in favour of
// EndpointSlice but still served.
//
//lint:ignore SA1019 Kubernetes still serves core/v1 Endpoints and kubectl reads them
type endpoints = corev1.Endpoints

func newEndpoints() *endpoints {
	//lint:ignore SA1019 as above
	return &endpoints{ObjectMeta: objectMeta("web"), Subsets: []corev1.EndpointSubset{{
		Addresses: []corev1.EndpointAddress{{IP: "10.244.1.5"}},
		Ports:     []corev1.EndpointPort{{Name: "http", Port: 80}},
	}}}
}

func newEvent() *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     objectMeta("web.1"),
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "default", Name: "web"},
		Reason:         "Scheduled", Message: "assigned", Type: corev1.EventTypeNormal,
	}
}

func newDeployment() *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: objectMeta("web"), Spec: appsv1.DeploymentSpec{Selector: testSelector(), Template: testTemplate()}}
}

func newReplicaSet() *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{ObjectMeta: objectMeta("web-1"), Spec: appsv1.ReplicaSetSpec{Selector: testSelector(), Template: testTemplate()}}
}

func newStatefulSet() *appsv1.StatefulSet {
	s := &appsv1.StatefulSet{ObjectMeta: objectMeta("db"), Spec: appsv1.StatefulSetSpec{
		Selector: testSelector(), Template: testTemplate(), ServiceName: "db",
		VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}},
	}}
	s.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	return s
}

func newDaemonSet() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{ObjectMeta: objectMeta("agent"), Spec: appsv1.DaemonSetSpec{Selector: testSelector(), Template: testTemplate()}}
}

func newControllerRevision() *appsv1.ControllerRevision {
	return &appsv1.ControllerRevision{ObjectMeta: objectMeta("db-7b9f"), Revision: 1, Data: runtime.RawExtension{Raw: []byte(`{"spec":{}}`)}}
}

func newEndpointSlice() *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  objectMeta("web-abc"),
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.5"}}},
		Ports:       []discoveryv1.EndpointPort{{Name: ptrTo("http"), Port: ptrTo(int32(80))}},
	}
}

func newLease() *coordinationv1.Lease {
	return &coordinationv1.Lease{ObjectMeta: objectMeta("node-1"), Spec: coordinationv1.LeaseSpec{
		HolderIdentity: ptrTo("node-1"), LeaseDurationSeconds: ptrTo(int32(40)),
	}}
}

// allKinds are the kinds the API server serves through this package, each
// as a valid manifest.
func allKinds() []runtime.Object {
	return []runtime.Object{
		newPod(), newService(), newSecret(), newConfigMap(), newNamespace(), newNode(), newServiceAccount(),
		newEndpoints(), newEvent(), newDeployment(), newReplicaSet(), newStatefulSet(), newDaemonSet(),
		newControllerRevision(), newEndpointSlice(), newLease(), newJob(), newCronJob(), newPodDisruptionBudget(),
		newRole(), newClusterRole(), newRoleBinding(), newClusterRoleBinding(),
	}
}

// defaulted returns a defaulted copy of obj.
func defaulted[T runtime.Object](obj T) T {
	c := obj.DeepCopyObject().(T)
	Default(c)
	return c
}

// TestEveryKind checks the contract for every served kind: the kind has
// rules, a valid manifest stays valid once defaulted, defaulting twice
// changes nothing, and an unchanged update is valid.
func TestEveryKind(t *testing.T) {
	objs := allKinds()
	if len(objs) != len(kinds) {
		t.Errorf("got %d kinds with rules, want %d (one per served kind)", len(kinds), len(objs))
	}
	for _, obj := range objs {
		t.Run(reflect.TypeOf(obj).Elem().Name(), func(t *testing.T) {
			if _, ok := lookup(obj); !ok {
				t.Fatalf("got no rules for %T, want some", obj)
			}
			d := defaulted(obj)
			if errs := Validate(d); len(errs) > 0 {
				t.Errorf("Validate(defaulted manifest) = %v, want no errors", errs.ToAggregate())
			}
			again := defaulted(d)
			if !apiequality.Semantic.DeepEqual(d, again) {
				t.Errorf("Default is not idempotent:\nonce:  %+v\ntwice: %+v", d, again)
			}
			if errs := ValidateUpdate(again, d); len(errs) > 0 {
				t.Errorf("ValidateUpdate(unchanged) = %v, want no errors", errs.ToAggregate())
			}
		})
	}
}

func TestUnknownKind(t *testing.T) {
	pdb := &corev1.LimitRange{ObjectMeta: objectMeta("limits")}
	before := pdb.DeepCopy()
	Default(pdb)
	if !reflect.DeepEqual(pdb, before) {
		t.Errorf("Default changed an unknown kind: got %+v, want %+v", pdb, before)
	}
	if errs := Validate(pdb); errs != nil {
		t.Errorf("Validate(unknown kind) = %v, want nil", errs)
	}
	if errs := ValidateUpdate(pdb, pdb); errs != nil {
		t.Errorf("ValidateUpdate(unknown kind) = %v, want nil", errs)
	}
}

func TestValidateUpdateKindMismatch(t *testing.T) {
	errs := ValidateUpdate(defaulted(newPod()), defaulted(newService()))
	checkErrs(t, errs, "<nil>: Internal error")
}

// TestValidateDoesNotModify guards the contract that validators only read.
func TestValidateDoesNotModify(t *testing.T) {
	for _, obj := range allKinds() {
		d := defaulted(obj)
		before := d.DeepCopyObject()
		Validate(d)
		ValidateUpdate(d, before.DeepCopyObject())
		if !reflect.DeepEqual(d, before) {
			t.Errorf("%T: validation modified the object:\ngot  %+v\nwant %+v", d, d, before)
		}
	}
}

// TestKindsAreDistinct guards the dispatch table against a kind listed
// twice (the second entry would never be used).
func TestKindsAreDistinct(t *testing.T) {
	seen := map[reflect.Type]bool{}
	for _, k := range kinds {
		if seen[k.typ] {
			t.Errorf("got %v twice in the kind table, want it once", k.typ)
		}
		seen[k.typ] = true
	}
	if len(seen) != 23 {
		t.Errorf("got %d distinct kinds, want 23", len(seen))
	}
}

func fieldPath(name string, more ...string) *field.Path { return field.NewPath(name, more...) }

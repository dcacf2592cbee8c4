package registry

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/skiff-sh/skiff/raftstore"
	"github.com/skiff-sh/skiff/raftstore/storetest"
)

// testNow is the registry clock in tests: fixed, with a sub-second part
// that creationTimestamp must drop.
var testNow = time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)

var (
	// configMaps stands for any resource, with generation counted (as for
	// workloads) so that its tests cover it.
	configMaps = &Resource{
		GroupResource: corev1.Resource("configmaps"),
		Kind:          corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		Namespaced:    true,
		Generation:    true,
		New:           func() runtime.Object { return &corev1.ConfigMap{} },
		NewList:       func() runtime.Object { return &corev1.ConfigMapList{} },
	}
	pods = &Resource{
		GroupResource: corev1.Resource("pods"),
		Kind:          corev1.SchemeGroupVersion.WithKind("Pod"),
		Namespaced:    true,
		New:           func() runtime.Object { return &corev1.Pod{} },
		NewList:       func() runtime.Object { return &corev1.PodList{} },
		Fields: func(obj runtime.Object) fields.Set {
			p := obj.(*corev1.Pod)
			return fields.Set{"spec.nodeName": p.Spec.NodeName, "status.phase": string(p.Status.Phase)}
		},
	}
	namespaces = &Resource{
		GroupResource: corev1.Resource("namespaces"),
		Kind:          corev1.SchemeGroupVersion.WithKind("Namespace"),
		New:           func() runtime.Object { return &corev1.Namespace{} },
		NewList:       func() runtime.Object { return &corev1.NamespaceList{} },
		ValidateName:  validation.ValidateNamespaceName,
	}
)

// startRaft runs a single-node raftstore in a temporary directory until the
// test ends.
func startRaft(t testing.TB) *raftstore.Store {
	t.Helper()
	return storetest.Start(t, "")
}

func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme
}

// newTestStore returns a registry over a fresh single-node raftstore.
func newTestStore(t testing.TB) (*Store, *raftstore.Store) {
	t.Helper()
	rs := startRaft(t)
	st, err := New(Config{KV: rs, Scheme: testScheme(t), Now: func() time.Time { return testNow }})
	if err != nil {
		t.Fatal(err)
	}
	return st, rs
}

func configMap(ns, name string, labels map[string]string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels}, Data: data}
}

func pod(ns, name, node string, labels map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec:       corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
}

func mustCreate(t testing.TB, st *Store, res *Resource, ns string, obj runtime.Object) runtime.Object {
	t.Helper()
	out, err := st.Create(t.Context(), res, ns, obj, CreateOptions{})
	if err != nil {
		t.Fatalf("Create %s: %v", res.GroupResource, err)
	}
	return out
}

func objMeta(t testing.TB, obj runtime.Object) metav1.Object {
	t.Helper()
	m, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func rvOf(t testing.TB, obj runtime.Object) string { return objMeta(t, obj).GetResourceVersion() }

// names returns the namespace/name of every item of a list.
func names(t testing.TB, list runtime.Object) []string {
	t.Helper()
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, it := range items {
		m := objMeta(t, it)
		out = append(out, m.GetNamespace()+"/"+m.GetName())
	}
	return out
}

func listMeta(t testing.TB, list runtime.Object) metav1.ListInterface {
	t.Helper()
	lm, err := meta.ListAccessor(list)
	if err != nil {
		t.Fatal(err)
	}
	return lm
}

// nextEvent returns the next watch event, failing the test after a deadline.
func nextEvent(t testing.TB, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch closed, want an event")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return watch.Event{}
}

// wantEvent checks an event's type, object name and resourceVersion.
func wantEvent(t testing.TB, ev watch.Event, typ watch.EventType, name, rv string) {
	t.Helper()
	if ev.Type != typ {
		t.Fatalf("event type: got %s (%v), want %s", ev.Type, ev.Object, typ)
	}
	m := objMeta(t, ev.Object)
	if m.GetName() != name || m.GetResourceVersion() != rv {
		t.Fatalf("%s event: got %s at rv %s, want %s at rv %s", typ, m.GetName(), m.GetResourceVersion(), name, rv)
	}
}

func semanticEqual(a, b any) bool { return apiequality.Semantic.DeepEqual(a, b) }

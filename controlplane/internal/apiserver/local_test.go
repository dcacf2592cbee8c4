package apiserver

import (
	"context"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// nextEvent returns w's next event, failing after 10 seconds.
func nextEvent(t *testing.T, w watch.Interface) watch.Event {
	t.Helper()
	select {
	case ev, ok := <-w.ResultChan():
		if !ok {
			t.Fatal("watch ended, want an event")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	return watch.Event{}
}

// TestLocalListerWatcher: an informer over ListerWatcher sees what the
// API's clients write, as a client's informer would (objects without
// apiVersion and kind), and the options are checked as a GET's.
func TestLocalListerWatcher(t *testing.T) {
	srv, ts := startAPIServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"a","labels":{"app":"web"}},"data":{"k":"1"}}`, nil)
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"b"}}`, nil)

	lw, ok := srv.ListerWatcher(&corev1.ConfigMap{})
	if !ok {
		t.Fatal("ListerWatcher(ConfigMap): not served")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	inf := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	go inf.RunWithContext(ctx)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("informer did not sync")
	}
	got, exists, err := inf.GetStore().GetByKey("default/a")
	if err != nil || !exists {
		t.Fatalf("default/a: exists %v, err %v; want it listed", exists, err)
	}
	a := got.(*corev1.ConfigMap)
	if a.Data["k"] != "1" || a.Labels["app"] != "web" || a.ResourceVersion == "" || a.Kind != "" || a.APIVersion != "" {
		t.Errorf("listed %+v, want data, labels and resourceVersion, no kind or apiVersion", a)
	}
	mustDo(t, http.StatusOK, "PUT", cms+"/a", "application/json", `{"metadata":{"name":"a","labels":{"app":"web"}},"data":{"k":"2"}}`, nil)
	mustDo(t, http.StatusOK, "DELETE", cms+"/b", "", "", nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		obj, _, _ := inf.GetStore().GetByKey("default/a")
		_, bExists, _ := inf.GetStore().GetByKey("default/b")
		if cm, ok := obj.(*corev1.ConfigMap); ok && cm.Data["k"] == "2" && !bExists {
			if cm.Kind != "" {
				t.Errorf("watched %+v, want no kind", cm.TypeMeta)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("informer did not see a updated and b deleted within 10s: a=%v, b there %v", obj, bExists)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// A label selector selects; a field the resource has no label for is
	// a 400, as on a GET.
	list, err := lw.ListWithContext(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if items := list.(*corev1.ConfigMapList).Items; len(items) != 1 || items[0].Name != "a" {
		t.Errorf("app=web listed %v, want a only", items)
	}
	if _, err := lw.ListWithContext(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=n1"}); !apierrors.IsBadRequest(err) {
		t.Errorf("list by spec.nodeName: %v, want 400 BadRequest", err)
	}
	if _, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: "x"}); err == nil {
		t.Error("watch from resourceVersion x: no error, want one")
	}

	// timeoutSeconds ends the watch.
	one := int64(1)
	w, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: list.(*corev1.ConfigMapList).ResourceVersion, TimeoutSeconds: &one})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case _, open := <-w.ResultChan():
		if open {
			t.Error("an event on a quiet watch, want it to end")
		}
	case <-time.After(10 * time.Second):
		t.Error("watch with timeoutSeconds=1 still open after 10s")
	}

	for _, obj := range []runtime.Object{&corev1.Binding{}, &metav1.Status{}} {
		if _, ok := srv.ListerWatcher(obj); ok {
			t.Errorf("ListerWatcher(%T): ok, want not served", obj)
		}
	}
}

// TestLocalWatchCopies: the registry shares a change's decoded object
// between its watchers; each local watch gets a copy of its own, so that a
// consumer changing it changes nothing another watcher sees.
func TestLocalWatchCopies(t *testing.T) {
	srv, ts := startAPIServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	var created corev1.ConfigMap
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"a","labels":{"app":"web"}}}`, &created)
	lw, _ := srv.ListerWatcher(&corev1.ConfigMap{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	from := metav1.ListOptions{ResourceVersion: "1"} // before the create: replayed from the store
	w1, err := lw.WatchWithContext(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	defer w1.Stop()
	ev := nextEvent(t, w1)
	first, ok := ev.Object.(*corev1.ConfigMap)
	if ev.Type != watch.Added || !ok || first.Name != "a" {
		t.Fatalf("got %s %T, want ADDED configmap a", ev.Type, ev.Object)
	}
	first.Labels["app"] = "changed"
	first.Name = "changed"
	w2, err := lw.WatchWithContext(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Stop()
	second := nextEvent(t, w2).Object.(*corev1.ConfigMap)
	if second.Name != "a" || second.Labels["app"] != "web" {
		t.Errorf("the second watch got %s with labels %v, want a with app=web: the first watch's object was shared", second.Name, second.Labels)
	}
}

// TestLocalMetadataListerWatcher: the garbage collector's metadata
// informers get PartialObjectMetadata, as from a metadata client.
func TestLocalMetadataListerWatcher(t *testing.T) {
	srv, ts := startAPIServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"a","ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"o","uid":"u1"}]},"data":{"k":"1"}}`, nil)
	if _, ok := srv.MetadataListerWatcher(schema.GroupVersionResource{Version: "v1", Resource: "nope"}); ok {
		t.Error("MetadataListerWatcher(nope): ok, want not served")
	}
	lw, ok := srv.MetadataListerWatcher(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"})
	if !ok {
		t.Fatal("MetadataListerWatcher(configmaps): not served")
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	obj, err := lw.ListWithContext(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	list, ok := obj.(*metav1.PartialObjectMetadataList)
	if !ok || len(list.Items) != 1 || list.Items[0].Name != "a" || len(list.Items[0].OwnerReferences) != 1 || list.ResourceVersion == "" {
		t.Fatalf("listed %#v, want a PartialObjectMetadataList of a with its owner and a resourceVersion", obj)
	}
	w, err := lw.WatchWithContext(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"b"}}`, nil)
	ev := nextEvent(t, w)
	if p, ok := ev.Object.(*metav1.PartialObjectMetadata); ev.Type != watch.Added || !ok || p.Name != "b" || p.Kind != "PartialObjectMetadata" {
		t.Errorf("got %s %#v, want ADDED PartialObjectMetadata b", ev.Type, ev.Object)
	}
}

package apiserver

import (
	"context"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
)

// TestMetadataClient: client-go's metadata client and informer (what the
// garbage collector and namespace controllers use) list, get and watch
// objects as PartialObjectMetadata.
func TestMetadataClient(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"before","labels":{"a":"b"}},"data":{"k":"v"}}`, nil)

	mc, err := metadata.NewForConfig(&rest.Config{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	gvr := corev1.SchemeGroupVersion.WithResource("configmaps")
	got, err := mc.Resource(gvr).Namespace("default").Get(t.Context(), "before", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "before" || got.Labels["a"] != "b" || got.UID == "" {
		t.Errorf("metadata get: got %+v", got)
	}

	f := metadatainformer.NewSharedInformerFactory(mc, 0)
	inf := f.ForResource(gvr).Informer()
	added := make(chan string, 10)
	deleted := make(chan string, 10)
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { added <- obj.(*metav1.PartialObjectMetadata).Name },
		DeleteFunc: func(obj any) { deleted <- obj.(*metav1.PartialObjectMetadata).Name },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	f.Start(stop)
	defer func() { close(stop); f.Shutdown() }()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("metadata informer did not sync")
	}
	want := func(ch chan string, name string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != name {
				t.Fatalf("got %s, want %s", got, name)
			}
		case <-ctx.Done():
			t.Fatalf("no event for %s", name)
		}
	}
	want(added, "before")
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"after"}}`, nil)
	want(added, "after")
	mustDo(t, http.StatusOK, "DELETE", cms+"/before", "", "", nil)
	want(deleted, "before")

	var list metav1.PartialObjectMetadataList
	code, _, body := do(t, "GET", cms, "", "", "Accept", "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json")
	decode(t, body, &list)
	if code != 200 || list.Kind != "PartialObjectMetadataList" || list.APIVersion != "meta.k8s.io/v1" || list.ResourceVersion == "" ||
		len(list.Items) != 1 || list.Items[0].Name != "after" || list.Items[0].Kind != "PartialObjectMetadata" {
		t.Errorf("list as PartialObjectMetadataList: got %d %s", code, body)
	}
	// The one rendering where the other is due is 406.
	code, _, body = do(t, "GET", cms, "", "", "Accept", "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1")
	if code != http.StatusNotAcceptable {
		t.Errorf("list as PartialObjectMetadata: got %d %s, want 406", code, body)
	}
}

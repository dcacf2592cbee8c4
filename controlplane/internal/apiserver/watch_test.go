package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestWatchList is the watch-list protocol client-go uses from 1.35 on (and
// with KUBE_FEATURE_WatchListClient): the initial state as ADDED events,
// then a bookmark that ends them, then changes.
func TestWatchList(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"before"}}`, nil)

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", cms+"?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=30", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("got %d, want 200", resp.StatusCode)
	}
	lines := bufio.NewScanner(resp.Body)
	next := func() (string, metav1.PartialObjectMetadata) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch ended: %v", lines.Err())
		}
		var ev struct {
			Type   string                       `json:"type"`
			Object metav1.PartialObjectMetadata `json:"object"`
		}
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", lines.Bytes(), err)
		}
		return ev.Type, ev.Object
	}
	if typ, obj := next(); typ != "ADDED" || obj.Name != "before" {
		t.Fatalf("got %s %q, want ADDED before", typ, obj.Name)
	}
	typ, obj := next()
	if typ != "BOOKMARK" || obj.Kind != "ConfigMap" || obj.APIVersion != "v1" || obj.ResourceVersion == "" || obj.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("got %s %+v, want the initial-events-end BOOKMARK of a v1 ConfigMap", typ, obj)
	}
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"after"}}`, nil)
	if typ, obj := next(); typ != "ADDED" || obj.Name != "after" {
		t.Fatalf("got %s %q, want ADDED after", typ, obj.Name)
	}
}

// TestWatchOverHTTP2: the watch stream works over HTTP/2 as well, for
// clients that reach the API through an HTTP/2 proxy.
func TestWatchOverHTTP2(t *testing.T) {
	srv, plain := startAPIServer(t)
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", ts.URL+"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1", nil)
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("got %d over %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	mustDo(t, http.StatusCreated, "POST", plain.URL+"/api/v1/namespaces/default/configmaps", "application/json", `{"metadata":{"name":"h2"}}`, nil)
	lines := bufio.NewScanner(resp.Body)
	if !lines.Scan() {
		t.Fatalf("watch ended: %v", lines.Err())
	}
	var ev metav1.WatchEvent
	if err := json.Unmarshal(lines.Bytes(), &ev); err != nil || ev.Type != "ADDED" {
		t.Fatalf("got %q (%v), want an ADDED event", lines.Bytes(), err)
	}
}

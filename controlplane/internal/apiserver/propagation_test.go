package apiserver

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestDeletePropagationPolicy: DELETE's propagationPolicy (query or body)
// and the deprecated orphanDependents set the garbage collector's
// finalizers as kube-apiserver does; Background, the default (but for
// jobs, which orphan), deletes at once.
func TestDeletePropagationPolicy(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	deploys := ts.URL + "/apis/apps/v1/namespaces/default/deployments"
	jobs := ts.URL + "/apis/batch/v1/namespaces/default/jobs"
	job := func(name string) string {
		return `{"metadata":{"name":"` + name + `"},"spec":{"template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"busybox"}]}}}}`
	}
	create := func(url, body string) { t.Helper(); mustDo(t, 201, "POST", url, "application/json", body, nil) }
	cm := func(name string, finalizers ...string) {
		t.Helper()
		f, _ := json.Marshal(finalizers)
		create(cms, `{"metadata":{"name":"`+name+`","finalizers":`+string(f)+`}}`)
	}

	tests := []struct {
		name, url, body string
		setup           func()
		code            int
		finalizers      []string // nil: gone
	}{
		{name: "foreground in the query", setup: func() {
			create(deploys, `{"metadata":{"name":"web"},"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`)
		}, url: deploys + "/web?propagationPolicy=Foreground", code: 200, finalizers: []string{metav1.FinalizerDeleteDependents}},
		{name: "orphan in the body", setup: func() { cm("c1") }, url: cms + "/c1", body: `{"propagationPolicy":"Orphan"}`, code: 200, finalizers: []string{metav1.FinalizerOrphanDependents}},
		{name: "orphanDependents true", setup: func() { cm("c2") }, url: cms + "/c2", body: `{"orphanDependents":true}`, code: 200, finalizers: []string{metav1.FinalizerOrphanDependents}},
		{name: "orphanDependents false, held by another finalizer: 202", setup: func() { cm("c3", "example.com/x") }, url: cms + "/c3", body: `{"orphanDependents":false}`, code: 202, finalizers: []string{"example.com/x"}},
		{name: "background", setup: func() { cm("c4") }, url: cms + "/c4", body: `{"propagationPolicy":"Background"}`, code: 200},
		{name: "unset", setup: func() { cm("c5") }, url: cms + "/c5", code: 200},
		{name: "a job, unset: orphan (batch/v1's default)", setup: func() { create(jobs, job("j1")) }, url: jobs + "/j1", code: 200, finalizers: []string{metav1.FinalizerOrphanDependents}},
		{name: "a job, background", setup: func() { create(jobs, job("j2")) }, url: jobs + "/j2?propagationPolicy=Background", code: 200},
		{name: "background in the query wins over the body", setup: func() { cm("c6") }, url: cms + "/c6?propagationPolicy=Background", body: `{"propagationPolicy":"Foreground"}`, code: 200},
	}
	for _, tt := range tests {
		tt.setup()
		code, _, body := do(t, "DELETE", tt.url, "application/json", tt.body)
		if code != tt.code {
			t.Errorf("%s: DELETE: got %d %s, want %d", tt.name, code, body, tt.code)
			continue
		}
		var got metav1.PartialObjectMetadata
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		objURL, _, _ := strings.Cut(tt.url, "?")
		if tt.finalizers == nil {
			if got.Kind != "Status" {
				t.Errorf("%s: got a %s in answer, want a Status", tt.name, got.Kind)
			}
			mustDo(t, 404, "GET", objURL, "", "", nil)
			continue
		}
		if got.DeletionTimestamp == nil || !slices.Equal(got.Finalizers, tt.finalizers) {
			t.Errorf("%s: got deletionTimestamp %v finalizers %q, want set, %q", tt.name, got.DeletionTimestamp, got.Finalizers, tt.finalizers)
		}
		var stored metav1.PartialObjectMetadata
		mustDo(t, 200, "GET", objURL, "", "", &stored)
		if !slices.Equal(stored.Finalizers, tt.finalizers) {
			t.Errorf("%s: stored finalizers %q, want %q", tt.name, stored.Finalizers, tt.finalizers)
		}
	}

	cm("bad")
	for _, tt := range []struct{ body, want string }{
		{`{"propagationPolicy":"Sideways"}`, `propagationPolicy: Unsupported value: "Sideways"`},
		{`{"propagationPolicy":"Orphan","orphanDependents":true}`, `propagationPolicy: Invalid value: "Orphan": orphanDependents and deletionPropagation cannot be both set`},
	} {
		code, _, body := do(t, "DELETE", cms+"/bad", "application/json", tt.body)
		var st metav1.Status
		if err := json.Unmarshal(body, &st); err != nil || code != 422 || !strings.Contains(st.Message, tt.want) {
			t.Errorf("DELETE with %s: got %d %s, want 422 %q", tt.body, code, body, tt.want)
		}
	}

	// A collection delete applies the policy to every object.
	cm("all1")
	cm("all2")
	mustDo(t, 200, "DELETE", cms+"?labelSelector=&propagationPolicy=Foreground&fieldSelector=metadata.name%21%3Dbad", "", "", nil)
	for _, name := range []string{"all1", "all2"} {
		var stored metav1.PartialObjectMetadata
		mustDo(t, 200, "GET", cms+"/"+name, "", "", &stored)
		if !slices.Equal(stored.Finalizers, []string{metav1.FinalizerDeleteDependents}) {
			t.Errorf("%s after a foreground collection delete: finalizers %q, want %q", name, stored.Finalizers, metav1.FinalizerDeleteDependents)
		}
	}
}

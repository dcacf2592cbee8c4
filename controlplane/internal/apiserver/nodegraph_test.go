package apiserver

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestNodeReads: a node reads the Secrets and ConfigMaps that pods bound to
// it refer to, by name only, as kube-apiserver's Node
// authorizer allows, and is refused the others with its 403; a pod bound a
// moment before its node reads is seen, and a pod's deletion ends what it
// allowed. Other users are not concerned.
func TestNodeReads(t *testing.T) {
	api := startUsersAPI(t, func(*Config) {})
	api.srv.graph.wait = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := api.srv.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })

	const n1, n2 = "system:node:n1", "system:node:n2"
	for _, s := range []string{"s-vol", "s-env", "s-pull", "s-other", "s-late"} {
		api.admin(t, http.MethodPost, "/api/v1/namespaces/default/secrets", `{"metadata":{"name":"`+s+`"}}`)
	}
	for _, c := range []string{"cm-proj", "cm-other"} {
		api.admin(t, http.MethodPost, "/api/v1/namespaces/default/configmaps", `{"metadata":{"name":"`+c+`"}}`)
	}
	api.admin(t, http.MethodPost, "/api/v1/namespaces/default/pods", `{"metadata":{"name":"mine"},"spec":{"nodeName":"n1",
		"imagePullSecrets":[{"name":"s-pull"}],
		"containers":[{"name":"c","image":"busybox","env":[{"name":"E","valueFrom":{"secretKeyRef":{"name":"s-env","key":"k"}}}]}],
		"volumes":[{"name":"a","secret":{"secretName":"s-vol"}},{"name":"b","projected":{"sources":[{"configMap":{"name":"cm-proj"}}]}}]}}`)
	api.admin(t, http.MethodPost, "/api/v1/namespaces/default/pods", `{"metadata":{"name":"theirs"},"spec":{"nodeName":"n2",
		"containers":[{"name":"c","image":"busybox","envFrom":[{"secretRef":{"name":"s-other"}}]}]}}`)
	api.admin(t, http.MethodPost, "/api/v1/namespaces/default/pods", `{"metadata":{"name":"pending"},"spec":{
		"containers":[{"name":"c","image":"busybox","envFrom":[{"configMapRef":{"name":"cm-other"}}]}]}}`)

	noRelation := func(what, name string) string {
		return what + ` "` + name + `" is forbidden: User "system:node:n1" cannot get resource "` + what + `" in API group "" in the namespace "default": no relationship found between node 'n1' and this object`
	}
	check := func(t *testing.T, user, path string, wantCode int, wantMessage string) {
		t.Helper()
		got := api.do(t, user, http.MethodGet, path, "")
		if got.code != wantCode || (wantMessage != "" && got.body["message"] != wantMessage) {
			t.Errorf("%s GET %s: got %d %q, want %d %q", user, path, got.code, got.body["message"], wantCode, wantMessage)
		}
		if wantCode == http.StatusForbidden && got.body["reason"] != "Forbidden" {
			t.Errorf("%s GET %s: reason %v, want Forbidden", user, path, got.body["reason"])
		}
	}
	tests := []struct {
		name, user, path string
		wantCode         int
		wantMessage      string
	}{
		{"secret volume", n1, "/api/v1/namespaces/default/secrets/s-vol", 200, ""},
		{"secret of env", n1, "/api/v1/namespaces/default/secrets/s-env", 200, ""},
		{"image pull secret", n1, "/api/v1/namespaces/default/secrets/s-pull", 200, ""},
		{"projected configmap", n1, "/api/v1/namespaces/default/configmaps/cm-proj", 200, ""},
		{"watch of one name", n1, "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Ds-vol", 200, ""},
		{"another node's secret", n1, "/api/v1/namespaces/default/secrets/s-other", 403, noRelation("secrets", "s-other")},
		{"a pending pod's configmap", n1, "/api/v1/namespaces/default/configmaps/cm-other", 403, noRelation("configmaps", "cm-other")},
		{"no such secret", n1, "/api/v1/namespaces/default/secrets/nothing", 403, noRelation("secrets", "nothing")},
		{"list", n1, "/api/v1/namespaces/default/secrets", 403,
			`secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "default": can only get individual resources of this type`},
		{"list everywhere", n1, "/api/v1/configmaps", 403,
			`configmaps is forbidden: User "system:node:n1" cannot list resource "configmaps" in API group "" at the cluster scope: can only get individual resources of this type`},
		{"the other node", n2, "/api/v1/namespaces/default/secrets/s-other", 200, ""},
		{"the other node, not its secret", n2, "/api/v1/namespaces/default/secrets/s-vol", 403, ""},
		{"another user", "jane", "/api/v1/namespaces/default/secrets/s-other", 200, ""},
		{"pods are not concerned", n1, "/api/v1/namespaces/default/pods/theirs", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { check(t, tt.user, tt.path, tt.wantCode, tt.wantMessage) })
	}

	t.Run("pod bound a moment before", func(t *testing.T) {
		api.admin(t, http.MethodPost, "/api/v1/namespaces/default/pods", `{"metadata":{"name":"late"},"spec":{"nodeName":"n1",
			"containers":[{"name":"c","image":"busybox"}],"volumes":[{"name":"a","secret":{"secretName":"s-late"}}]}}`)
		check(t, n1, "/api/v1/namespaces/default/secrets/s-late", 200, "")
		api.admin(t, http.MethodPost, "/api/v1/namespaces/default/pods/pending/binding",
			`{"apiVersion":"v1","kind":"Binding","metadata":{"name":"pending"},"target":{"kind":"Node","name":"n1"}}`)
		check(t, n1, "/api/v1/namespaces/default/configmaps/cm-other", 200, "")
	})
	t.Run("pod deleted", func(t *testing.T) {
		api.admin(t, http.MethodDelete, "/api/v1/namespaces/default/pods/mine?gracePeriodSeconds=0", "")
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := api.do(t, n1, http.MethodGet, "/api/v1/namespaces/default/secrets/s-vol", "")
			if got.code == http.StatusForbidden {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET s-vol after its pod went: still %d", got.code)
			}
			time.Sleep(10 * time.Millisecond) // poll interval of the wait
		}
		// Its other references went with it; another pod's stay.
		check(t, n1, "/api/v1/namespaces/default/configmaps/cm-proj", 403, noRelation("configmaps", "cm-proj"))
		check(t, n1, "/api/v1/namespaces/default/secrets/s-late", 200, "")
	})
}

// TestNodeReadsWithoutRun: without Server.Run a node's read that needs the
// graph is refused as unavailable, not left hanging.
func TestNodeReadsWithoutRun(t *testing.T) {
	api := startUsersAPI(t, func(*Config) {})
	api.admin(t, http.MethodPost, "/api/v1/namespaces/default/secrets", `{"metadata":{"name":"s"}}`)
	got := api.do(t, "system:node:n1", http.MethodGet, "/api/v1/namespaces/default/secrets/s", "")
	if got.code != http.StatusServiceUnavailable {
		t.Errorf("GET as a node without Run: got %d %v, want 503", got.code, got.body["message"])
	}
	if got := api.do(t, "jane", http.MethodGet, "/api/v1/namespaces/default/secrets/s", ""); got.code != 200 {
		t.Errorf("GET as another user: got %d %v", got.code, got.body["message"])
	}
}

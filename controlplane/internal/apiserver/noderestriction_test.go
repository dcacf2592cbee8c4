package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// testUserKey carries the user a test request is made as (X-Test-User).
type testUserKey struct{}

// TestNodeRestriction: a node's agent writes its own Node, its own Lease,
// the status of pods bound to it and their deletion, as kube-apiserver's
// NodeRestriction admission allows, and is refused the rest with its
// 403s; an administrator is refused nothing of it.
func TestNodeRestriction(t *testing.T) {
	signer := testSigner(t)
	api := startUsersAPI(t, func(c *Config) { c.ServiceAccountTokens = signer })
	do, admin := api.do, api.admin
	uid := func(obj map[string]any) string { return obj["metadata"].(map[string]any)["uid"].(string) }
	pod := func(name, node string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"` + name + `","labels":{"app":"a"}},"spec":{"nodeName":"` + node + `","containers":[{"name":"c","image":"busybox"}]}}`
	}
	const n1 = "system:node:n1"
	if a := do(t, "", http.MethodPost, "/api/v1/namespaces", `{"metadata":{"name":"kube-node-lease"}}`); a.code != 201 && a.code != 409 {
		t.Fatalf("namespace kube-node-lease: got %d %v", a.code, a.body["message"])
	}
	admin(t, http.MethodPost, "/api/v1/namespaces/default/serviceaccounts", `{"metadata":{"name":"default"}}`)
	mine := admin(t, http.MethodPost, "/api/v1/namespaces/default/pods", pod("mine", "n1"))
	admin(t, http.MethodPost, "/api/v1/namespaces/default/pods", pod("theirs", "n2"))
	admin(t, http.MethodPost, "/api/v1/namespaces/default/pods", pod("doomed", "n1"))

	lease := func(ns, name string) string {
		return `{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"` + name + `","namespace":"` + ns + `"},"spec":{"holderIdentity":"` + name + `"}}`
	}
	token := func(ref string) string {
		return `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["api"]` + ref + `}}`
	}
	tests := []struct {
		name, user, method, path, body string
		wantCode                       int
		wantMessage                    string
	}{
		{"own node registered", n1, http.MethodPost, "/api/v1/nodes", `{"metadata":{"name":"n1","labels":{"kubernetes.io/hostname":"n1"}},"spec":{"taints":[{"key":"k","effect":"NoSchedule"}]}}`, 201, ""},
		{"another node registered", n1, http.MethodPost, "/api/v1/nodes", `{"metadata":{"name":"n2"}}`, 403,
			`nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"`},
		{"own node labeled", n1, http.MethodPatch, "/api/v1/nodes/n1", `{"metadata":{"labels":{"zone":"a"}}}`, 200, ""},
		{"own taints changed", n1, http.MethodPatch, "/api/v1/nodes/n1", `{"spec":{"taints":null}}`, 403,
			`nodes "n1" is forbidden: node "n1" is not allowed to modify taints`},
		{"restricted label set", n1, http.MethodPatch, "/api/v1/nodes/n1", `{"metadata":{"labels":{"node-restriction.kubernetes.io/pool":"gold"}}}`, 403,
			`nodes "n1" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/pool`},
		{"role label set", n1, http.MethodPatch, "/api/v1/nodes/n1", `{"metadata":{"labels":{"node-role.kubernetes.io/worker":"","node.kubernetes.io/pool":"a"}}}`, 403,
			`nodes "n1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/worker`},
		{"node label set", n1, http.MethodPatch, "/api/v1/nodes/n1", `{"metadata":{"labels":{"node.kubernetes.io/pool":"a","topology.kubernetes.io/zone":"z"}}}`, 200, ""},
		{"node registered with a role", n1, http.MethodPost, "/api/v1/nodes", `{"metadata":{"name":"n1","labels":{"node-role.kubernetes.io/control-plane":""}}}`, 403,
			`nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: node-role.kubernetes.io/control-plane`},
		{"admin sets a role", "jane", http.MethodPatch, "/api/v1/nodes/n1", `{"metadata":{"labels":{"node-role.kubernetes.io/worker":""}}}`, 200, ""},
		{"role label kept", n1, http.MethodPatch, "/api/v1/nodes/n1", `{"metadata":{"labels":{"zone":"b"}}}`, 200, ""},
		{"role label removed", n1, http.MethodPatch, "/api/v1/nodes/n1", `{"metadata":{"labels":{"node-role.kubernetes.io/worker":null}}}`, 403,
			`nodes "n1" is forbidden: is not allowed to modify labels: node-role.kubernetes.io/worker`},
		{"own node status", n1, http.MethodPatch, "/api/v1/nodes/n1/status", `{"status":{"conditions":[{"type":"Ready","status":"True"}]}}`, 200, ""},
		{"another node's status", n1, http.MethodPatch, "/api/v1/nodes/n2/status", `{"status":{}}`, 403,
			`nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"`},
		{"nodes deleted", n1, http.MethodDelete, "/api/v1/nodes", ``, 403, `node "n1" is not allowed to delete nodes`},

		{"status of a pod bound to it", n1, http.MethodPatch, "/api/v1/namespaces/default/pods/mine/status", `{"status":{"phase":"Running"}}`, 200, ""},
		{"status of another node's pod", n1, http.MethodPatch, "/api/v1/namespaces/default/pods/theirs/status", `{"status":{"phase":"Running"}}`, 403,
			`pods "theirs" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself`},
		{"labels through status", n1, http.MethodPatch, "/api/v1/namespaces/default/pods/mine/status", `{"metadata":{"labels":{"app":"b"}}}`, 403,
			`pods "mine" is forbidden: node "n1" cannot update labels through pod status`},
		{"pod spec", n1, http.MethodPatch, "/api/v1/namespaces/default/pods/mine", `{"metadata":{"labels":{"app":"b"}}}`, 403,
			`pods "mine" is forbidden: node "n1" can only create and delete mirror pods`},
		{"pod created", n1, http.MethodPost, "/api/v1/namespaces/default/pods", pod("made", "n1"), 403,
			`pods "made" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods`},
		{"mirror pod for another node", n1, http.MethodPost, "/api/v1/namespaces/default/pods",
			`{"metadata":{"name":"static","annotations":{"kubernetes.io/config.mirror":"x"}},"spec":{"nodeName":"n2","containers":[{"name":"c","image":"busybox"}]}}`, 403,
			`pods "static" is forbidden: node "n1" can only create pods with spec.nodeName set to itself`},
		{"mirror pod", n1, http.MethodPost, "/api/v1/namespaces/default/pods",
			`{"metadata":{"name":"static","annotations":{"kubernetes.io/config.mirror":"x"}},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}]}}`, 201, ""},
		{"another node's pod deleted", n1, http.MethodDelete, "/api/v1/namespaces/default/pods/theirs", ``, 403,
			`pods "theirs" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself`},
		{"another node's pod evicted", n1, http.MethodPost, "/api/v1/namespaces/default/pods/theirs/eviction",
			`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"theirs","namespace":"default"}}`, 403,
			`pods "theirs" is forbidden: node "n1" can only evict pods with spec.nodeName set to itself`},
		{"pods deleted", n1, http.MethodDelete, "/api/v1/namespaces/default/pods", ``, 403, `node "n1" can only create and delete mirror pods`},
		{"own pod deleted", n1, http.MethodDelete, "/api/v1/namespaces/default/pods/doomed", `{"gracePeriodSeconds":0}`, 200, ""},
		{"missing pod deleted", n1, http.MethodDelete, "/api/v1/namespaces/default/pods/gone", ``, 404, `pods "gone" not found`},

		{"own lease", n1, http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease("kube-node-lease", "n1"), 201, ""},
		{"own lease renewed", n1, http.MethodPatch, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1", `{"spec":{"leaseDurationSeconds":40}}`, 200, ""},
		{"another node's lease", n1, http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease("kube-node-lease", "n2"), 403,
			`leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the requesting node`},
		{"lease elsewhere", n1, http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease("default", "n1"), 403,
			`can only access leases in the "kube-node-lease" system namespace`},

		{"token for a pod bound to it", n1, http.MethodPost, "/api/v1/namespaces/default/serviceaccounts/default/token",
			token(`,"boundObjectRef":{"apiVersion":"v1","kind":"Pod","name":"mine","uid":"` + uid(mine) + `"}`), 201, ""},
		{"token for another node's pod", n1, http.MethodPost, "/api/v1/namespaces/default/serviceaccounts/default/token",
			token(`,"boundObjectRef":{"apiVersion":"v1","kind":"Pod","name":"theirs","uid":"x"}`), 403,
			`serviceaccounts "default" is forbidden: the UID in the bound object reference (x) does not match the UID in record`},
		{"token bound to nothing", n1, http.MethodPost, "/api/v1/namespaces/default/serviceaccounts/default/token", token(``), 403,
			`serviceaccounts "default" is forbidden: node requested token not bound to a pod`},

		{"admin writes another node's pod status", "jane", http.MethodPatch, "/api/v1/namespaces/default/pods/theirs/status", `{"status":{"phase":"Running"}}`, 200, ""},
		{"admin relabels a pod", "jane", http.MethodPatch, "/api/v1/namespaces/default/pods/theirs", `{"metadata":{"labels":{"app":"b"}}}`, 200, ""},
		{"admin writes a lease anywhere", "jane", http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/default/leases", lease("default", "n1"), 201, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.user, tt.method, tt.path, tt.body)
			msg, _ := a.body["message"].(string)
			if a.code != tt.wantCode || !strings.Contains(msg, tt.wantMessage) {
				t.Errorf("got %d %q, want %d %q", a.code, msg, tt.wantCode, tt.wantMessage)
			}
			if tt.wantCode == 403 && (a.body["kind"] != "Status" || a.body["reason"] != string(metav1.StatusReasonForbidden)) {
				t.Errorf("got %v, want a Status with reason Forbidden", a.body)
			}
		})
	}
}

// usersAPI serves an API server's handler to requests made as the user
// their X-Test-User header names (a system:node: user is in system:nodes),
// or as no one (the handler's own default) without it.
type usersAPI struct {
	srv *Server
	url string
}

// answer is a usersAPI response: its code and its JSON body.
type answer struct {
	code int
	body map[string]any
}

func startUsersAPI(t *testing.T, configure func(*Config)) *usersAPI {
	t.Helper()
	srv, _ := startAPIServerWith(t, func(c *Config) {
		configure(c)
		c.UserFrom = func(ctx context.Context) (UserInfo, bool) {
			u, ok := ctx.Value(testUserKey{}).(UserInfo)
			return u, ok
		}
	})
	h := srv.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if name := r.Header.Get("X-Test-User"); name != "" {
			groups := []string{"system:authenticated"}
			if strings.HasPrefix(name, "system:node:") {
				groups = append(groups, "system:nodes")
			}
			r = r.WithContext(context.WithValue(r.Context(), testUserKey{}, UserInfo{Name: name, Groups: groups}))
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return &usersAPI{srv: srv, url: ts.URL}
}

// do makes a request as user ("" for none).
func (a *usersAPI) do(t *testing.T, user, method, path, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	if user != "" {
		req.Header.Set("X-Test-User", user)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&out); err != nil {
		t.Fatalf("%s %s: got %q, want JSON: %v", method, path, raw, err)
	}
	return answer{resp.StatusCode, out}
}

// admin makes a request as no one and fails the test unless it succeeds.
func (a *usersAPI) admin(t *testing.T, method, path, body string) map[string]any {
	t.Helper()
	got := a.do(t, "", method, path, body)
	if got.code >= 300 {
		t.Fatalf("admin %s %s: got %d %v", method, path, got.code, got.body["message"])
	}
	return got.body
}

package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// startServerAs serves the API to every request as user jane of group
// devs, as the master does once it has authenticated a request.
func startServerAs(t *testing.T) *httptest.Server {
	t.Helper()
	_, ts := startAPIServerWith(t, func(c *Config) {
		c.UserFrom = func(context.Context) (UserInfo, bool) {
			return UserInfo{Name: "jane", Groups: []string{"devs", "system:authenticated"}}, true
		}
	})
	return ts
}

// TestKubectlAuth runs kubectl auth whoami and can-i: the user the
// request authenticated as, and every access allowed (no authorization).
func TestKubectlAuth(t *testing.T) {
	k := newKubectl(t, startServerAs(t).URL)
	k.runSteps(t, []kubectlStep{
		{args: []string{"auth", "whoami"}, wantOut: []string{`^ATTRIBUTE +VALUE\nUsername +jane\nGroups +\[devs system:authenticated\]\n$`}},
		{args: []string{"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"}, wantOut: []string{`^jane$`}},
		{args: []string{"auth", "can-i", "create", "deployments"}, wantOut: []string{`^yes\n$`}},
		{args: []string{"auth", "can-i", "delete", "nodes", "--all-namespaces"}, wantOut: []string{`^yes\n$`}},
		{args: []string{"-n", "default", "auth", "can-i", "get", "pods", "--subresource=log"}, wantOut: []string{`^yes\n$`}},
		{args: []string{"auth", "can-i", "get", "/metrics"}, wantOut: []string{`^yes\n$`}},
		{args: []string{"auth", "can-i", "--list"}, wantOut: []string{`Resources +Non-Resource URLs +Resource Names +Verbs\n`, `\n\*\.\* +\[\] +\[\] +\[\*\]\n`, `\n +\[\*\] +\[\] +\[\*\]\n`}},
	})
}

func TestReviews(t *testing.T) {
	ts := startServerAs(t)
	authz := ts.URL + "/apis/authorization.k8s.io/v1"
	status := func(t *testing.T, body []byte) metav1.Status {
		t.Helper()
		var st metav1.Status
		if err := json.Unmarshal(body, &st); err != nil {
			t.Fatalf("got body %q, want a Status: %v", body, err)
		}
		return st
	}
	tests := []struct {
		name, path, body string
		wantCode         int
		wantMessage      string
	}{
		{name: "self access without attributes", path: "/selfsubjectaccessreviews", body: `{"spec":{}}`, wantCode: 422,
			wantMessage: `SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.resourceAttributes: Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified`},
		{name: "self access with both attributes", path: "/selfsubjectaccessreviews", body: `{"spec":{"resourceAttributes":{"verb":"get"},"nonResourceAttributes":{"path":"/x","verb":"get"}}}`, wantCode: 422,
			wantMessage: `spec.nonResourceAttributes: Invalid value: {"path":"/x","verb":"get"}: cannot be specified in combination with resourceAttributes`},
		{name: "access of nobody", path: "/subjectaccessreviews", body: `{"spec":{"resourceAttributes":{"verb":"get","resource":"pods"}}}`, wantCode: 422,
			wantMessage: `SubjectAccessReview.authorization.k8s.io "" is invalid: spec.user: Invalid value: "": at least one of user or group must be specified`},
		{name: "access review with a name", path: "/subjectaccessreviews", body: `{"metadata":{"name":"x"},"spec":{"user":"joe","resourceAttributes":{"verb":"get"}}}`, wantCode: 422,
			wantMessage: `metadata: Invalid value:`},
		{name: "local review of another namespace", path: "/namespaces/default/localsubjectaccessreviews",
			body: `{"spec":{"user":"joe","resourceAttributes":{"namespace":"kube-system","verb":"get","resource":"pods"}}}`, wantCode: 400,
			wantMessage: `spec.resourceAttributes.namespace must match namespace: default`},
		{name: "local review of a URL", path: "/namespaces/default/localsubjectaccessreviews",
			body: `{"spec":{"user":"joe","nonResourceAttributes":{"path":"/healthz","verb":"get"}}}`, wantCode: 422,
			wantMessage: `spec.nonResourceAttributes: Invalid value: {"path":"/healthz","verb":"get"}: disallowed on this kind of request`},
		{name: "rules without a namespace", path: "/selfsubjectrulesreviews", body: `{"spec":{}}`, wantCode: 400, wantMessage: "no namespace on request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, body := do(t, "POST", authz+tt.path, "application/json", tt.body)
			st := status(t, body)
			if code != tt.wantCode || int(st.Code) != tt.wantCode {
				t.Errorf("got %d %+v, want %d", code, st, tt.wantCode)
			}
			if !strings.Contains(st.Message, tt.wantMessage) {
				t.Errorf("got message %q, want it to contain %q", st.Message, tt.wantMessage)
			}
		})
	}

	// A valid review comes back decided, spec as sent.
	code, _, body := do(t, "POST", authz+"/namespaces/default/localsubjectaccessreviews", "application/json",
		`{"spec":{"groups":["devs"],"resourceAttributes":{"namespace":"default","verb":"delete","resource":"secrets"}}}`)
	var sar authorizationv1.LocalSubjectAccessReview
	if err := json.Unmarshal(body, &sar); err != nil || code != http.StatusCreated {
		t.Fatalf("local access review: got %d %s (%v), want 201", code, body, err)
	}
	if !sar.Status.Allowed || sar.Kind != "LocalSubjectAccessReview" || sar.Spec.ResourceAttributes.Resource != "secrets" || sar.Namespace != "default" {
		t.Errorf("local access review: got %+v", sar)
	}

	// Nothing is stored: there is nothing to list (405) or get (404).
	for p, want := range map[string]int{"/selfsubjectaccessreviews": http.StatusMethodNotAllowed, "/subjectaccessreviews/x": http.StatusNotFound} {
		if code, _, body := do(t, "GET", authz+p, "", ""); code != want {
			t.Errorf("GET %s: got %d %s, want %d", p, code, body, want)
		}
	}

	// Discovery: create only.
	code, _, body = do(t, "GET", authz, "", "")
	var list metav1.APIResourceList
	if err := json.Unmarshal(body, &list); err != nil || code != http.StatusOK {
		t.Fatalf("discovery: got %d %s", code, body)
	}
	var names []string
	for _, r := range list.APIResources {
		names = append(names, r.Name)
		if len(r.Verbs) != 1 || r.Verbs[0] != "create" {
			t.Errorf("%s: got verbs %v, want [create]", r.Name, r.Verbs)
		}
	}
	if got := strings.Join(names, " "); got != "localsubjectaccessreviews selfsubjectaccessreviews selfsubjectrulesreviews subjectaccessreviews" {
		t.Errorf("got resources %s", got)
	}
}

// TestSelfReviewWithoutUser: a request nobody authenticated has no self.
func TestSelfReviewWithoutUser(t *testing.T) {
	ts := startServer(t)
	code, _, body := do(t, "POST", ts.URL+"/apis/authentication.k8s.io/v1/selfsubjectreviews", "application/json", `{}`)
	if code != http.StatusBadRequest || !strings.Contains(string(body), "no user present on request") {
		t.Errorf("got %d %s, want 400 no user present on request", code, body)
	}
}

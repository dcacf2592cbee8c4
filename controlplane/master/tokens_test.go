package master

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/authn"
	"github.com/skiff-sh/skiff/controlplane/internal/authz"
	"github.com/skiff-sh/skiff/controlplane/internal/pki"
	"github.com/skiff-sh/skiff/raftstore/storetest"
)

// tokenClient returns an HTTP client that trusts the master's CA and presents
// no certificate.
func tokenClient(t *testing.T, dataDir string) *http.Client {
	t.Helper()
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// getWithToken sends GET url with the bearer token (none when empty) and
// returns the status code and body.
func getWithToken(t *testing.T, c *http.Client, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestBearerTokenRequests: a stored token authenticates against the API and
// the status paths; an unknown one gets kube-apiserver's 401 Status; a
// deleted one stops working promptly.
func TestBearerTokenRequests(t *testing.T) {
	dataDir, url, store := startMasterStore(t)
	ctx := t.Context()
	secret, tok, err := CreateToken(ctx, store, TokenSpec{User: "jane", Groups: []string{"dev", AdminGroup}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	c := tokenClient(t, dataDir)

	for _, path := range []string{"/api/v1/namespaces", "/status", "/metrics"} {
		// The master waited for its tokens before serving, and this single
		// node has applied the write: no wait is needed.
		if code, body := getWithToken(t, c, url+path, secret); code != http.StatusOK {
			t.Errorf("GET %s with the token = %d %s, want 200", path, code, body)
		}
	}

	want := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Message: "Unauthorized", Reason: metav1.StatusReasonUnauthorized, Code: http.StatusUnauthorized,
	}
	for name, token := range map[string]string{"unknown": pki.NewToken(), "not ours": "abc", "the stored hash": tok.Hash, "none": ""} {
		code, body := getWithToken(t, c, url+"/api/v1/namespaces", token)
		var got metav1.Status
		if err := json.Unmarshal(body, &got); err != nil || code != http.StatusUnauthorized || got != want {
			t.Errorf("GET with %s token = %d %s (%v), want 401 %+v", name, code, body, err, want)
		}
	}

	if err := DeleteToken(ctx, store, tok.ID); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		code, _ := getWithToken(t, c, url+"/api/v1/namespaces", secret)
		if code == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET with a deleted token = %d for 2s, want 401", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAuthenticatedUserInContext: the handlers behind authentication see the
// user in the request's context, from a token or a certificate.
func TestAuthenticatedUserInContext(t *testing.T) {
	store := storetest.Start(t, "")
	secret, _, err := CreateToken(t.Context(), store, TokenSpec{User: "jane", Groups: []string{"dev"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := authn.DefaultConfig()
	cfg.Store = store
	a, err := authn.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Authenticator.Run: %v", err)
		}
	}()
	select {
	case <-a.Synced():
	case <-time.After(20 * time.Second):
		t.Fatal("tokens not loaded within 20s")
	}
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok := authn.UserFrom(r.Context())
		if !ok {
			http.Error(w, "no user in the context", http.StatusInternalServerError)
			return
		}
		w.Write([]byte(u.Name + " " + strings.Join(u.Groups, ",")))
	})
	// dev, qa and ops may list pods, read /status and impersonate.
	tester := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "tester"}, Rules: []rbacv1.PolicyRule{
		{Verbs: []string{"list"}, APIGroups: []string{""}, Resources: []string{"pods"}},
		{Verbs: []string{"impersonate"}, APIGroups: []string{""}, Resources: []string{"users", "groups", "serviceaccounts"}},
		{Verbs: []string{"get"}, NonResourceURLs: []string{"/status"}},
	}}
	var subjects []rbacv1.Subject
	for _, g := range []string{"dev", "qa", "ops", "system:serviceaccounts:ci"} {
		subjects = append(subjects, rbacv1.Subject{Kind: rbacv1.GroupKind, Name: g})
	}
	h := authenticate(a.AuthenticateRequest, staticRBAC(t, tester, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "testers"},
		RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "tester"}, Subjects: subjects}), slog.New(slog.DiscardHandler), echo, echo)

	r := httptest.NewRequest(http.MethodGet, "/api/v1/pods", nil)
	r.Header.Set("Authorization", "Bearer "+secret)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got, want := w.Body.String(), "jane dev,system:authenticated"; w.Code != http.StatusOK || got != want {
		t.Errorf("token request: got %d %q, want 200 %q", w.Code, got, want)
	}

	// kubectl --as and --as-group: the request acts as that user.
	for _, tt := range []struct {
		name     string
		as       map[string][]string
		wantCode int
		wantBody string
	}{
		{name: "impersonation", as: map[string][]string{"Impersonate-User": {"joe"}, "Impersonate-Group": {"qa", "ops"}}, wantCode: http.StatusOK, wantBody: "joe qa,ops,system:authenticated"},
		{name: "impersonated service account", as: map[string][]string{"Impersonate-User": {"system:serviceaccount:ci:runner"}}, wantCode: http.StatusOK,
			wantBody: "system:serviceaccount:ci:runner system:serviceaccounts,system:serviceaccounts:ci,system:authenticated"},
		{name: "groups without a user", as: map[string][]string{"Impersonate-Group": {"qa"}}, wantCode: http.StatusBadRequest, wantBody: "without a user"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/pods", nil)
		r.Header.Set("Authorization", "Bearer "+secret)
		for k, vs := range tt.as {
			for _, v := range vs {
				r.Header.Add(k, v)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.wantCode || !strings.Contains(w.Body.String(), tt.wantBody) {
			t.Errorf("%s: got %d %q, want %d %q", tt.name, w.Code, w.Body.String(), tt.wantCode, tt.wantBody)
		}
	}
	// Without a role: 403, in kube-apiserver's words, for a request and for
	// an impersonation.
	nobody, _, err := CreateToken(t.Context(), store, TokenSpec{User: "nobody", Groups: []string{"outsiders"}})
	if err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the outsider's token to be known", func() error {
		_, err := a.AuthenticateToken(nobody)
		return err
	})
	for _, tt := range []struct {
		name, as, want string
	}{
		{"request", "", `pods is forbidden: User \"nobody\" cannot list resource \"pods\" in API group \"\" at the cluster scope`},
		{"impersonation", "joe", `users \"joe\" is forbidden: User \"nobody\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope`},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/pods", nil)
		r.Header.Set("Authorization", "Bearer "+nobody)
		if tt.as != "" {
			r.Header.Set("Impersonate-User", tt.as)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), tt.want) || !strings.Contains(w.Body.String(), `"reason":"Forbidden"`) {
			t.Errorf("%s without a role: got %d %s, want 403 %s", tt.name, w.Code, w.Body.String(), tt.want)
		}
	}

	// A joining node's bootstrap token may not act as anyone else.
	boot, _, err := CreateToken(t.Context(), store, TokenSpec{User: bootstrap.BootstrapUserPrefix + "x", Groups: []string{bootstrap.BootstrapGroup}})
	if err != nil {
		t.Fatal(err)
	}
	apitest.WaitFor(t, 20*time.Second, "the bootstrap token to be known", func() error {
		_, err := a.AuthenticateToken(boot)
		return err
	})
	r = httptest.NewRequest(http.MethodGet, "/api/v1/pods", nil)
	r.Header.Set("Authorization", "Bearer "+boot)
	r.Header.Set("Impersonate-User", "skiff-admin")
	r.Header.Add("Impersonate-Group", AdminGroup)
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "cannot impersonate users") {
		t.Errorf("a bootstrap token impersonating the admin: got %d %q, want 403", w.Code, w.Body.String())
	}

	certPEM, keyPEM, err := pki.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, _, err := ca.IssueClient("cert-user", []string{"ops"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r = httptest.NewRequest(http.MethodGet, "/status", nil)
	block, _ := pem.Decode(leafPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	r.TLS = &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert, ca.Certificate()}}}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if got, want := w.Body.String(), "cert-user ops,system:authenticated"; w.Code != http.StatusOK || got != want {
		t.Errorf("certificate request: got %d %q, want 200 %q", w.Code, got, want)
	}
}

// TestKubectlWithBearerToken: kubectl with a token kubeconfig is served; with
// a bogus token it prints its usual message and exits 1.
func TestKubectlWithBearerToken(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	dataDir, url, store := startMasterStore(t)
	secret, _, err := CreateToken(t.Context(), store, TokenSpec{User: "jane", Groups: []string{AdminGroup}})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	kc, err := TokenKubeconfig(url, ca.CertPEM(), "jane", secret)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jane.kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	if out, err := kubectlCached(t, cache, path, "get", "namespace", "default", "-o", "name"); err != nil || out != "namespace/default\n" {
		t.Fatalf("kubectl with the token kubeconfig = %q, %v; want namespace/default", out, err)
	}
	bogus := pki.NewToken()
	// With discovery cached (a token that worked before), the request itself
	// is refused and kubectl prints the Status message.
	out, err := kubectlCached(t, cache, path, "--token", bogus, "get", "namespaces")
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || out != "error: You must be logged in to the server (Unauthorized)\n" {
		t.Fatalf("kubectl with a bogus token = %v:\n%s\nwant exit 1 and \"error: You must be logged in to the server (Unauthorized)\"", err, out)
	}
	// With a cold cache, discovery is refused first; client-go then words the
	// 401 itself (as it does against kube-apiserver).
	out, err = kubectlCached(t, t.TempDir(), path, "--token", bogus, "get", "namespaces")
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasSuffix(out, "\nerror: You must be logged in to the server (the server has asked for the client to provide credentials)\n") {
		t.Fatalf("kubectl with a bogus token and no discovery cache = %v:\n%s\nwant exit 1 and \"error: You must be logged in to the server\"", err, out)
	}
}

// kubectlCached runs the real kubectl with kubeconfig, HOME in a temp dir and
// the discovery cache in cacheDir.
func kubectlCached(t *testing.T, cacheDir, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", cacheDir}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "KUBECONFIG=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestTokenKubeconfigRefuses(t *testing.T) {
	certPEM, _, err := pki.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		server string
		ca     []byte
		user   string
		token  string
	}{
		{"http://127.0.0.1:6443", certPEM, "u", "t"},
		{"127.0.0.1:6443", certPEM, "u", "t"},
		{"https://127.0.0.1:6443", []byte("no pem"), "u", "t"},
		{"https://127.0.0.1:6443", certPEM, "", "t"},
		{"https://127.0.0.1:6443", certPEM, "u", ""},
	} {
		if _, err := TokenKubeconfig(tc.server, tc.ca, tc.user, tc.token); err == nil {
			t.Errorf("TokenKubeconfig(%q, %.10q, %q, %q) succeeded, want an error", tc.server, tc.ca, tc.user, tc.token)
		}
	}
}

// TestServiceAccountTokenWithKubectl: a token from kubectl create token
// authenticates kubectl as the service account, until the account goes.
func TestServiceAccountTokenWithKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	dataDir, url, store := startMasterStore(t)
	kc := KubeconfigPath(dataDir)
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	// A kubeconfig with the token only: a client certificate would win.
	as := func(token string) string { return tokenKubeconfigFile(t, url, ca, "sa", token) }
	// The leader's service account controller makes default's account.
	var token string
	apitest.WaitFor(t, 30*time.Second, "a token of default/default", func() error {
		out, err := kubectl(t, kc, "-n", "default", "create", "token", "default")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		token = strings.TrimSpace(out)
		return nil
	})
	out, err := kubectl(t, as(token), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
	if want := `system:serviceaccount:default:default ["system:serviceaccounts","system:serviceaccounts:default","system:authenticated"]`; err != nil || out != want {
		t.Fatalf("kubectl --token (service account) auth whoami = %q, %v; want %s", out, err, want)
	}
	// TokenReviews of both kinds of token, as an in-cluster proxy asks them.
	secret, _, err := CreateToken(t.Context(), store, TokenSpec{User: "jane", Groups: []string{"dev"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ token, want string }{
		{token, "true system:serviceaccount:default:default"},
		{secret, "true jane"},
		{"skf_not-a-token", " "}, // authenticated false is omitted
	} {
		review := filepath.Join(t.TempDir(), "review.json")
		if err := os.WriteFile(review, []byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+tt.token+`"}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		// --validate=false: kubectl validates a kind without a PATCH path against
		// /openapi/v2, which Skiff does not serve.
		out, err := kubectl(t, kc, "create", "--validate=false", "-f", review, "-o", "jsonpath={.status.authenticated} {.status.user.username}")
		if err != nil || out != tt.want {
			t.Errorf("TokenReview of %.12s...: %q, %v; want %q", tt.token, out, err, tt.want)
		}
	}
	if out, err := kubectl(t, kc, "-n", "default", "create", "sa", "temp"); err != nil {
		t.Fatalf("kubectl create sa: %v\n%s", err, out)
	}
	// A token Secret of the account: filled by the token controller, its
	// token lasts as long as the Secret.
	secretFile := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(secretFile, []byte("apiVersion: v1\nkind: Secret\nmetadata:\n  name: temp-token\n  namespace: default\n"+
		"  annotations:\n    kubernetes.io/service-account.name: temp\ntype: kubernetes.io/service-account-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl(t, kc, "apply", "-f", secretFile); err != nil {
		t.Fatalf("kubectl apply the token secret: %v\n%s", err, out)
	}
	var secretToken string
	apitest.WaitFor(t, 30*time.Second, "the token secret filled", func() error {
		out, err := kubectl(t, kc, "-n", "default", "get", "secret", "temp-token", "-o", "jsonpath={.data.token}")
		if err != nil || out == "" {
			return fmt.Errorf("%q, %v", out, err)
		}
		b, err := base64.StdEncoding.DecodeString(out)
		secretToken = string(b)
		return err
	})
	secretConfig := as(secretToken)
	if out, err := kubectl(t, secretConfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "system:serviceaccount:default:temp" {
		t.Fatalf("kubectl with the token secret's token = %q, %v", out, err)
	}
	temp, err := kubectl(t, kc, "-n", "default", "create", "token", "temp")
	if err != nil {
		t.Fatalf("kubectl create token temp: %v\n%s", err, temp)
	}
	tempConfig := as(strings.TrimSpace(temp))
	if out, err := kubectl(t, tempConfig, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "system:serviceaccount:default:temp" {
		t.Fatalf("kubectl as temp = %q, %v", out, err)
	}
	if out, err := kubectl(t, kc, "-n", "default", "delete", "sa", "temp"); err != nil {
		t.Fatalf("kubectl delete sa: %v\n%s", err, out)
	}
	// The account's deletion takes its token Secret, and both tokens, along.
	apitest.WaitFor(t, 30*time.Second, "the token secret deleted with its account", func() error {
		if out, err := kubectl(t, kc, "-n", "default", "get", "secret", "temp-token", "-o", "name"); err == nil {
			return fmt.Errorf("still there: %s", out)
		}
		return nil
	})
	if out, err := kubectl(t, secretConfig, "get", "ns", "default", "-o", "name"); err == nil || !strings.Contains(out, "error: You must be logged in to the server") {
		t.Fatalf("kubectl with a deleted token secret's token = %q, %v; want \"You must be logged in\"", out, err)
	}
	out, err = kubectl(t, tempConfig, "get", "ns", "default", "-o", "name")
	if err == nil || !strings.Contains(out, "error: You must be logged in to the server") {
		t.Fatalf("kubectl with the token of a deleted service account = %q, %v; want \"You must be logged in\"", out, err)
	}
}

// staticRBAC returns an authorizer over objs (roles and bindings of any
// kind), without the default ones.
func staticRBAC(t *testing.T, objs ...runtime.Object) *authz.RBAC {
	t.Helper()
	idx := func() cache.Indexer {
		return cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	roles, clusterRoles, rbs, crbs := idx(), idx(), idx(), idx()
	for _, o := range objs {
		var err error
		switch o.(type) {
		case *rbacv1.Role:
			err = roles.Add(o)
		case *rbacv1.ClusterRole:
			err = clusterRoles.Add(o)
		case *rbacv1.RoleBinding:
			err = rbs.Add(o)
		case *rbacv1.ClusterRoleBinding:
			err = crbs.Add(o)
		default:
			t.Fatalf("staticRBAC: %T", o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return authz.New(rbaclisters.NewRoleLister(roles), rbaclisters.NewClusterRoleLister(clusterRoles),
		rbaclisters.NewRoleBindingLister(rbs), rbaclisters.NewClusterRoleBindingLister(crbs))
}

// tokenKubeconfigFile writes a kubeconfig for server that authenticates
// as user with the bearer token only, and returns its path.
func tokenKubeconfigFile(t *testing.T, server string, ca *pki.CA, user, token string) string {
	t.Helper()
	b, err := TokenKubeconfig(server, ca.CertPEM(), user, token)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), user+".kubeconfig")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

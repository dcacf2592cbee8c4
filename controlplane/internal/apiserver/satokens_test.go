package apiserver

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"

	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
)

func startTokenServer(t *testing.T) (*Server, *kubectl, string) {
	t.Helper()
	signer := testSigner(t)
	srv, ts := startAPIServerWith(t, func(c *Config) { c.ServiceAccountTokens = signer })
	return srv, newKubectl(t, ts.URL), ts.URL
}

// testSigner returns a service account token signer of a new key.
func testSigner(t *testing.T) *satoken.Signer {
	t.Helper()
	key, err := satoken.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	signer, err := satoken.NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// tokenClaims decodes a token's payload as a client would (no check).
func tokenClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		t.Fatalf("token %q is not a JWT", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestKubectlCreateToken requests tokens with kubectl create token and
// checks what they say, the errors of bad requests, and that a token
// authenticates only while its service account and bound pod exist.
func TestKubectlCreateToken(t *testing.T) {
	srv, k, url := startTokenServer(t)
	api := url + "/api/v1/namespaces/default"
	mustDo(t, http.StatusCreated, "POST", api+"/serviceaccounts", "application/json", `{"metadata":{"name":"runner"}}`, nil)
	mustDo(t, http.StatusCreated, "POST", api+"/pods", "application/json",
		`{"metadata":{"name":"build"},"spec":{"serviceAccountName":"runner","nodeName":"node-1","containers":[{"name":"c","image":"busybox"}]}}`, nil)
	mustDo(t, http.StatusCreated, "POST", api+"/pods", "application/json",
		`{"metadata":{"name":"other"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`, nil)

	out, errOut, code := k.run(t, "create", "token", "runner", "--duration=2h", "--audience=vault")
	if code != 0 {
		t.Fatalf("kubectl create token: exit %d: %s", code, errOut)
	}
	plain := strings.TrimSpace(out)
	c := tokenClaims(t, plain)
	k8s := c["kubernetes.io"].(map[string]any)
	if c["sub"] != "system:serviceaccount:default:runner" || c["iss"] != satoken.Issuer || c["aud"].([]any)[0] != "vault" ||
		int64(c["exp"].(float64)-c["iat"].(float64)) != 7200 || k8s["pod"] != nil {
		t.Errorf("token claims %v", c)
	}
	// A token for another audience is not one for the API.
	if _, err := srv.AuthenticateServiceAccountToken(t.Context(), plain); !errors.Is(err, satoken.ErrInvalid) {
		t.Errorf("a vault token authenticated to the API: %v", err)
	}

	out, errOut, code = k.run(t, "create", "token", "runner", "--bound-object-kind=Pod", "--bound-object-name=build")
	if code != 0 {
		t.Fatalf("kubectl create token bound to a pod: exit %d: %s", code, errOut)
	}
	bound := strings.TrimSpace(out)
	k8s = tokenClaims(t, bound)["kubernetes.io"].(map[string]any)
	if k8s["pod"].(map[string]any)["name"] != "build" || k8s["node"].(map[string]any)["name"] != "node-1" {
		t.Errorf("bound token claims %v", k8s)
	}
	u, err := srv.AuthenticateServiceAccountToken(t.Context(), bound)
	if err != nil || u.Name != "system:serviceaccount:default:runner" || strings.Join(u.Groups, ",") != "system:serviceaccounts,system:serviceaccounts:default" {
		t.Fatalf("bound token: got %+v, %v", u, err)
	}
	out, errOut, code = k.run(t, "create", "token", "runner")
	if code != 0 {
		t.Fatalf("kubectl create token: exit %d: %s", code, errOut)
	}
	unbound := strings.TrimSpace(out)
	if c := tokenClaims(t, unbound); int64(c["exp"].(float64)-c["iat"].(float64)) != 3600 {
		t.Errorf("default lifetime: got claims %v, want an hour", c)
	}

	// TokenReview: what kube-rbac-proxy and Vault ask.
	review := func(body string) authenticationv1.TokenReview {
		t.Helper()
		var rev authenticationv1.TokenReview
		mustDo(t, http.StatusCreated, "POST", url+"/apis/authentication.k8s.io/v1/tokenreviews", "application/json", body, &rev)
		return rev
	}
	rev := review(`{"spec":{"token":"` + bound + `"}}`)
	if st := rev.Status; !st.Authenticated || st.User.Username != "system:serviceaccount:default:runner" || st.User.Extra["authentication.kubernetes.io/pod-name"][0] != "build" ||
		len(st.Audiences) != 1 || st.Audiences[0] != satoken.Issuer || st.User.UID == "" {
		t.Errorf("review of a bound token: %+v", st)
	}
	if st := review(`{"spec":{"token":"` + plain + `","audiences":["vault","other"]}}`).Status; !st.Authenticated || len(st.Audiences) != 1 || st.Audiences[0] != "vault" {
		t.Errorf("review of a vault token for vault: %+v", st)
	}
	if st := review(`{"spec":{"token":"` + plain + `"}}`).Status; st.Authenticated || !strings.Contains(st.Error, "do not include") {
		t.Errorf("review of a vault token for the API: %+v", st)
	}
	if st := review(`{"spec":{"token":"skf_nothing"}}`).Status; st.Authenticated || st.Error == "" {
		t.Errorf("review of an unknown token: %+v", st)
	}
	if code, _, body := do(t, "POST", url+"/apis/authentication.k8s.io/v1/tokenreviews", "application/json", `{"spec":{}}`); code != http.StatusBadRequest ||
		!strings.Contains(string(body), "token is required for TokenReview in authentication") {
		t.Errorf("review without a token: %d %s", code, body)
	}

	k.runSteps(t, []kubectlStep{
		{args: []string{"create", "token", "runner", "--duration=5m"}, wantCode: 1,
			wantErr: `TokenRequest.authentication.k8s.io "runner" is invalid: spec.expirationSeconds: Invalid value: 300: may not specify a duration less than 10 minutes`},
		{args: []string{"create", "token", "nobody"}, wantCode: 1, wantErr: `serviceaccounts "nobody" not found`},
		{args: []string{"create", "token", "runner", "--bound-object-kind=Pod", "--bound-object-name=gone"}, wantCode: 1, wantErr: `pods "gone" not found`},
		{args: []string{"create", "token", "runner", "--bound-object-kind=Pod", "--bound-object-name=other"}, wantCode: 1,
			wantErr: `cannot bind token for serviceaccount "runner" to pod running with different serviceaccount name.`},
		{args: []string{"create", "token", "runner", "--bound-object-kind=Pod", "--bound-object-name=build", "--bound-object-uid=not-the-uid"}, wantCode: 1,
			wantErr: `the UID in the bound object reference (not-the-uid) does not match the UID in record`},
		// The pod goes: its tokens stop working (60 s after the deletion
		// timestamp; a pod without containers running goes at once).
		{args: []string{"delete", "pod", "build", "--grace-period=0", "--force"}},
	})
	if _, err := srv.AuthenticateServiceAccountToken(t.Context(), bound); !errors.Is(err, ErrTokenRevoked) {
		t.Errorf("a token bound to a deleted pod: got %v, want ErrTokenRevoked", err)
	}
	if _, err := srv.AuthenticateServiceAccountToken(t.Context(), unbound); err != nil {
		t.Errorf("an unbound token after the pod went: %v", err)
	}
	// The service account goes and comes back: a new uid, old tokens revoked.
	k.runSteps(t, []kubectlStep{{args: []string{"delete", "sa", "runner"}}, {args: []string{"create", "sa", "runner"}}})
	if _, err := srv.AuthenticateServiceAccountToken(t.Context(), unbound); !errors.Is(err, ErrTokenRevoked) || !strings.Contains(err.Error(), "recreated") {
		t.Errorf("a token of a recreated service account: got %v, want ErrTokenRevoked", err)
	}

	// The TokenRequest itself comes back with the token and its expiry.
	var tr authenticationv1.TokenRequest
	mustDo(t, http.StatusCreated, "POST", api+"/serviceaccounts/runner/token", "application/json", `{"spec":{"expirationSeconds":600}}`, &tr)
	if tr.Kind != "TokenRequest" || tr.Status.Token == "" || time.Until(tr.Status.ExpirationTimestamp.Time) > 11*time.Minute || tr.Spec.Audiences[0] != satoken.Issuer {
		t.Errorf("TokenRequest: got %+v", tr)
	}
}

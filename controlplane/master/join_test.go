package master

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/raftstore"
)

// newCSR returns a PEM certificate request for a new P-256 key.
func newCSR(t *testing.T, cn string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// postJoin posts body to the join endpoint of url with the bearer token
// (none when empty) or through c's own credentials.
func postJoin(t *testing.T, c *http.Client, url, token string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+bootstrap.JoinPath, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

func joinBody(t *testing.T, req bootstrap.JoinRequest) []byte {
	t.Helper()
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestJoinToken: the join token names the cluster's CA and gossip key, and
// its bearer token is a bootstrapper's that authenticates only at the join
// endpoint.
func TestJoinToken(t *testing.T) {
	dataDir, url, store := startMasterStore(t)
	ctx := t.Context()
	s, rec, err := CreateJoinToken(ctx, store, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := bootstrap.Parse(s)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	if !strings.HasPrefix(rec.User, bootstrap.BootstrapUserPrefix) || !slices.Equal(rec.Groups, []string{bootstrap.BootstrapGroup}) || rec.Expires.IsZero() {
		t.Errorf("token record %+v: want a bootstrapper in %s, expiring", rec, bootstrap.BootstrapGroup)
	}
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.MatchesCA(ca.CertPEM()); err != nil {
		t.Errorf("the token's CA hash does not match the cluster CA: %v", err)
	}
	key, _, err := store.Get(ctx, gossipKeyKey, raftstore.ReadOptions{})
	if err != nil || key == nil || !bytes.Equal(key.Value, tok.GossipKey) {
		t.Errorf("the token's gossip key %x is not the store's %v (%v)", tok.GossipKey, key, err)
	}

	// The CA is served to anyone, and is the one the token names.
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	code, body := getWithToken(t, anon, url+bootstrap.CAPath, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s anonymously = %d %s, want 200", bootstrap.CAPath, code, body)
	}
	if _, err := tok.MatchesCA(body); err != nil {
		t.Errorf("GET %s: %v", bootstrap.CAPath, err)
	}

	// The bootstrapper may not use the API, nor the status paths.
	c := tokenClient(t, dataDir)
	apitest.WaitFor(t, 10*time.Second, "the bootstrap token to authenticate", func() error {
		code, body := getWithToken(t, c, url+"/api/v1/namespaces", tok.Bearer)
		if code != http.StatusForbidden {
			return fmt.Errorf("GET /api/v1/namespaces as a bootstrapper = %d %s, want 403", code, body)
		}
		return nil
	})
	for _, path := range []string{"/status", "/metrics", "/apis"} {
		if code, body := getWithToken(t, c, url+path, tok.Bearer); code != http.StatusForbidden || !strings.Contains(string(body), "may only join nodes") {
			t.Errorf("GET %s as a bootstrapper = %d %s, want 403", path, code, body)
		}
	}
	// /version and the health paths stay open to anyone.
	if code, body := getWithToken(t, c, url+"/version", tok.Bearer); code != http.StatusOK {
		t.Errorf("GET /version as a bootstrapper = %d %s, want 200", code, body)
	}

	// A negative TTL is refused.
	if _, _, err := CreateJoinToken(ctx, store, -time.Second, ""); err == nil {
		t.Error("CreateJoinToken with a negative TTL: got nil, want an error")
	}
}

// TestJoinEndpoint: a bootstrapper and the admin get a node's certificates
// signed by the cluster CA; other users are forbidden, bad tokens
// unauthorized, bad requests refused with a Status.
func TestJoinEndpoint(t *testing.T) {
	dataDir, url, store := startMasterStore(t)
	ctx := t.Context()
	s, _, err := CreateJoinToken(ctx, store, time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := bootstrap.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := CreateToken(ctx, store, TokenSpec{User: "jane", Groups: []string{"dev"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	c := tokenClient(t, dataDir)
	good := bootstrap.JoinRequest{NodeName: "worker-1", NodeIPs: []string{"10.1.2.3", "fd00::3"}, ClientCSR: string(newCSR(t, "ignored")), ServingCSR: string(newCSR(t, "ignored"))}

	// check verifies the certificates of a successful answer.
	check := func(t *testing.T, body []byte) {
		t.Helper()
		var resp bootstrap.JoinResponse
		if err := json.Unmarshal(body, &resp); err != nil {
			t.Fatalf("join response %s: %v", body, err)
		}
		if resp.CA != string(ca.CertPEM()) {
			t.Errorf("join response CA is not the cluster CA")
		}
		client := parseCertPEM(t, resp.ClientCert)
		if _, err := client.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client certificate does not verify: %v", err)
		}
		if client.Subject.CommonName != "system:node:worker-1" || !slices.Equal(client.Subject.Organization, []string{"system:nodes"}) {
			t.Errorf("client certificate subject %v, want CN system:node:worker-1 O system:nodes", client.Subject)
		}
		if d := time.Until(client.NotAfter); d < 364*24*time.Hour || d > 366*24*time.Hour {
			t.Errorf("client certificate valid for %v more, want a year", d)
		}
		serving := parseCertPEM(t, resp.ServingCert)
		for _, host := range []string{"10.1.2.3", "fd00::3", "worker-1"} {
			if _, err := serving.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				t.Errorf("serving certificate for %s: %v", host, err)
			}
		}
		if len(serving.IPAddresses) != 2 || !slices.Equal(serving.DNSNames, []string{"worker-1"}) {
			t.Errorf("serving certificate SANs %v %v, want exactly the node IPs and name", serving.IPAddresses, serving.DNSNames)
		}
		if _, err := serving.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "127.0.0.1"}); err == nil {
			t.Error("serving certificate verifies for 127.0.0.1, which is not the node's")
		}
	}

	t.Run("bootstrapper", func(t *testing.T) {
		var body []byte
		apitest.WaitFor(t, 10*time.Second, "the join token to be accepted", func() error {
			var code int
			code, body = postJoin(t, c, url, tok.Bearer, joinBody(t, good))
			if code != http.StatusOK {
				return fmt.Errorf("POST join = %d %s, want 200", code, body)
			}
			return nil
		})
		check(t, body)
	})
	t.Run("admin", func(t *testing.T) {
		certPEM, keyPEM, err := ca.IssueClient(AdminUser, []string{AdminGroup}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}}}
		code, body := postJoin(t, admin, url, "", joinBody(t, good))
		if code != http.StatusOK {
			t.Fatalf("POST join as the admin = %d %s, want 200", code, body)
		}
		check(t, body)
	})

	bad := func(mutate func(*bootstrap.JoinRequest)) []byte {
		r := good
		mutate(&r)
		return joinBody(t, r)
	}
	tampered := newCSR(t, "x")
	tampered[len(tampered)/2] ^= 1 // corrupts the DER: a bad signature or a parse error
	tests := []struct {
		name     string
		token    string
		body     []byte
		wantCode int
		wantMsg  string
	}{
		{"plain user", plain, joinBody(t, good), http.StatusForbidden, `user "jane" may not join nodes`},
		{"garbage token", "skf_garbage", joinBody(t, good), http.StatusUnauthorized, "Unauthorized"},
		{"no token", "", joinBody(t, good), http.StatusUnauthorized, "Unauthorized"},
		{"not JSON", tok.Bearer, []byte("{"), http.StatusBadRequest, "not JSON"},
		{"bad client CSR", tok.Bearer, bad(func(r *bootstrap.JoinRequest) { r.ClientCSR = "nope" }), http.StatusBadRequest, "client CSR: pki: bad certificate request"},
		{"tampered serving CSR", tok.Bearer, bad(func(r *bootstrap.JoinRequest) { r.ServingCSR = string(tampered) }), http.StatusBadRequest, "serving CSR: pki: bad certificate request"},
		{"bad node name", tok.Bearer, bad(func(r *bootstrap.JoinRequest) { r.NodeName = "Bad_Name" }), http.StatusBadRequest, `node name "Bad_Name"`},
		{"no node IP", tok.Bearer, bad(func(r *bootstrap.JoinRequest) { r.NodeIPs = nil }), http.StatusBadRequest, "no node IP"},
		{"bad node IP", tok.Bearer, bad(func(r *bootstrap.JoinRequest) { r.NodeIPs = []string{"0.0.0.0"} }), http.StatusBadRequest, `node IP "0.0.0.0"`},
		{"too large", tok.Bearer, bytes.Repeat([]byte{' '}, maxJoinRequest+1), http.StatusRequestEntityTooLarge, "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := postJoin(t, c, url, tt.token, tt.body)
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("body %s is not a Status: %v", body, err)
			}
			if code != tt.wantCode || st.Kind != "Status" || st.Code != int32(tt.wantCode) || !strings.Contains(st.Message, tt.wantMsg) {
				t.Errorf("POST join = %d %+v, want %d with a Status saying %q", code, st, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func parseCertPEM(t *testing.T, s string) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode([]byte(s))
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("not a PEM certificate: %q", s)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

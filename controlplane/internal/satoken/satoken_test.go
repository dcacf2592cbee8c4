package satoken

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func newSigner(t *testing.T) *Signer {
	t.Helper()
	key, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var now = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func podClaims() Claims {
	warn := now.Add(time.Hour)
	return Claims{
		Audiences: []string{Issuer, "vault"}, IssuedAt: now, NotBefore: now, Expiry: now.Add(time.Hour), ID: "c1d2",
		Namespace: "ci", ServiceAccount: Ref{Name: "runner", UID: "sa-uid"},
		Pod: &Ref{Name: "build-1", UID: "pod-uid"}, Node: &Ref{Name: "node-1"}, WarnAfter: &warn,
	}
}

func TestRoundTrip(t *testing.T) {
	s := newSigner(t)
	c := podClaims()
	tok, err := s.Issue(c)
	if err != nil {
		t.Fatal(err)
	}
	if !LooksLikeToken(tok) {
		t.Errorf("LooksLikeToken(%q) = false", tok)
	}
	got, err := s.Verify(tok, []string{Issuer}, now.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Pod, c.Pod) || got.ServiceAccount != c.ServiceAccount || got.Namespace != "ci" || !got.Expiry.Equal(c.Expiry) ||
		got.ID != "c1d2" || got.WarnAfter == nil || !got.WarnAfter.Equal(*c.WarnAfter) || got.Secret != nil {
		t.Errorf("got claims %+v, want %+v", got, c)
	}
	if got.Username() != "system:serviceaccount:ci:runner" || strings.Join(got.Groups(), ",") != "system:serviceaccounts,system:serviceaccounts:ci" {
		t.Errorf("got user %s %v", got.Username(), got.Groups())
	}
	// Another audience the token names works too.
	if _, err := s.Verify(tok, []string{"vault"}, now); err != nil {
		t.Errorf("audience vault: %v", err)
	}

	// The payload, as a client that decodes it (without verifying) reads it.
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	k8s := m["kubernetes.io"].(map[string]any)
	if m["sub"] != "system:serviceaccount:ci:runner" || m["iss"] != Issuer || k8s["namespace"] != "ci" ||
		k8s["serviceaccount"].(map[string]any)["uid"] != "sa-uid" || k8s["pod"].(map[string]any)["name"] != "build-1" {
		t.Errorf("payload %s", payload)
	}
}

func TestVerifyRefuses(t *testing.T) {
	s, other := newSigner(t), newSigner(t)
	tok, err := s.Issue(podClaims())
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue(podClaims())
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok, ".")
	forged := podClaims()
	forged.ServiceAccount.Name = "admin"
	forgedTok, err := other.Issue(forged)
	if err != nil {
		t.Fatal(err)
	}
	// The payload of another signer's token under this signer's header and signature.
	spliced := parts[0] + "." + strings.Split(forgedTok, ".")[1] + "." + parts[2]
	tests := []struct {
		name, token, audience string
		at                    time.Time
		want                  string
	}{
		{"another key", foreign, Issuer, now, "another algorithm or key"},
		{"spliced payload", spliced, Issuer, now, "bad signature"},
		{"not a JWT", "skf_abc", Issuer, now, "not a JWT"},
		{"other audience", tok, "https://example.com", now, "do not include any of"},
		{"expired", tok, Issuer, now.Add(time.Hour + 2*time.Minute), "expired at 2026-11-26T13:00:00Z"},
		{"within the leeway", tok, Issuer, now.Add(time.Hour + 30*time.Second), ""},
		{"not yet valid", tok, Issuer, now.Add(-2 * time.Minute), "not valid before"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Verify(tt.token, []string{tt.audience}, tt.at)
			if tt.want == "" {
				if err != nil {
					t.Errorf("got %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

func TestNewSignerRefuses(t *testing.T) {
	for _, key := range []string{"", "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"} {
		if _, err := NewSigner([]byte(key)); err == nil {
			t.Errorf("NewSigner(%q) accepted it", key)
		}
	}
}

func TestLegacy(t *testing.T) {
	s := newSigner(t)
	tok, err := s.IssueLegacy("ci", Ref{Name: "runner", UID: "sa-uid"}, "runner-token")
	if err != nil {
		t.Fatal(err)
	}
	// Never expires: valid a century on.
	c, err := s.Verify(tok, []string{Issuer}, now.Add(100*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Legacy || c.Username() != "system:serviceaccount:ci:runner" || c.ServiceAccount.UID != "sa-uid" || c.Secret == nil || c.Secret.Name != "runner-token" {
		t.Errorf("got %+v", c)
	}
	if _, err := s.Verify(tok, []string{"vault"}, now); !errors.Is(err, ErrInvalid) {
		t.Errorf("a Secret's token for another audience: %v", err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil || m["iss"] != "kubernetes/serviceaccount" || m["kubernetes.io/serviceaccount/secret.name"] != "runner-token" || m["exp"] != nil {
		t.Errorf("payload %s", payload)
	}
}

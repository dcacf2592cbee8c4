package bootstrap

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"
)

func selfSigned(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestTokenRoundTrip(t *testing.T) {
	caPEM := selfSigned(t)
	block, _ := pem.Decode(caPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	want := Token{CAHash: HashCA(cert), GossipKey: bytes.Repeat([]byte{0xfb}, 32), Bearer: "skf_abc-_DEF"}
	s := want.String()
	if !strings.HasPrefix(s, "SKIFF1.") || strings.Count(s, ".") != 3 {
		t.Fatalf("String() = %q, want SKIFF1 and four fields", s)
	}
	got, err := Parse("  " + s + "\n")
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	if got.CAHash != want.CAHash || !bytes.Equal(got.GossipKey, want.GossipKey) || got.Bearer != want.Bearer {
		t.Errorf("Parse(String()) = %+v, want %+v", got, want)
	}
	if c, err := got.MatchesCA(caPEM); err != nil || !c.Equal(cert) {
		t.Errorf("MatchesCA(the CA) = %v, %v; want the CA", c, err)
	}
	if _, err := got.MatchesCA(selfSigned(t)); !errors.Is(err, ErrCAMismatch) {
		t.Errorf("MatchesCA(another CA) = %v, want ErrCAMismatch", err)
	}
	if _, err := got.MatchesCA(append(caPEM, caPEM...)); err == nil || errors.Is(err, ErrCAMismatch) {
		t.Errorf("MatchesCA(two certificates) = %v, want a refusal", err)
	}
}

func TestParseRefuses(t *testing.T) {
	hash := strings.Repeat("ab", 32)
	key := strings.Repeat("A", 43) // 32 bytes of base64url
	tests := []struct{ name, token, want string }{
		{"empty", "", "fields"},
		{"plain bearer token", "skf_abcdef", "fields"},
		{"other version", "SKIFF2." + hash + "." + key + ".skf_x", "SKIFF1"},
		{"short hash", "SKIFF1.abcd." + key + ".skf_x", "CA hash"},
		{"hash not hex", "SKIFF1." + strings.Repeat("zz", 32) + "." + key + ".skf_x", "CA hash"},
		{"short key", "SKIFF1." + hash + ".AAAA.skf_x", "gossip key"},
		{"key not base64url", "SKIFF1." + hash + "." + strings.Repeat("+", 43) + ".skf_x", "gossip key"},
		{"no bearer", "SKIFF1." + hash + "." + key + ".", "bearer"},
		{"bearer with space", "SKIFF1." + hash + "." + key + ".skf x", "bearer"},
		{"five fields", "SKIFF1." + hash + "." + key + ".skf.x", "fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.token)
			if !errors.Is(err, ErrMalformedToken) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v, want ErrMalformedToken about %q", tt.token, err, tt.want)
			}
		})
	}
}

func TestNodeMaySetLabel(t *testing.T) {
	for key, want := range map[string]bool{
		"zone":                                   true,
		"example.com/pool":                       true,
		"kubernetes.io/hostname":                 true,
		"kubernetes.io/arch":                     true,
		"beta.kubernetes.io/os":                  true,
		"topology.kubernetes.io/zone":            true,
		"node.kubernetes.io/instance-type":       true,
		"node.kubernetes.io/anything":            true,
		"team.node.kubernetes.io/x":              true,
		"kubelet.kubernetes.io/x":                true,
		"node-role.kubernetes.io/worker":         false,
		"kubernetes.io/role":                     false,
		"example.k8s.io/x":                       false,
		"k8s.io/x":                               false,
		"node-restriction.kubernetes.io/pool":    false,
		"a.node-restriction.kubernetes.io/pool":  false,
		"notkubernetes.io/x":                     true,
		"topology.kubernetes.io/unknown-setting": false,
	} {
		if got := NodeMaySetLabel(key); got != want {
			t.Errorf("NodeMaySetLabel(%q) = %v, want %v", key, got, want)
		}
	}
}

package pki_test

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
)

// parseLeaf parses the certificate of certPEM.
func parseLeaf(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(certPEM)
	if block == nil {
		t.Fatalf("no PEM block in %q", certPEM)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func clientVerifyOptions(ca *pki.CA) x509.VerifyOptions {
	return x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

func TestIssueServing(t *testing.T) {
	ca := newCA(t)
	certPEM, _, err := ca.IssueServing(
		[]string{"master-1.example", "localhost"},
		[]net.IP{net.ParseIP("10.0.0.7"), net.ParseIP("127.0.0.1"), net.ParseIP("fd00::7")},
		time.Hour)
	if err != nil {
		t.Fatalf("IssueServing: %v", err)
	}
	cert := parseLeaf(t, certPEM)
	tests := []struct {
		host   string
		wantOK bool
	}{
		{"kubernetes", true},
		{"kubernetes.default", true},
		{"kubernetes.default.svc", true},
		{"kubernetes.default.svc.cluster.local", true},
		{"localhost", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"master-1.example", true},
		{"10.0.0.7", true},
		{"fd00::7", true},
		{"master-2.example", false},
		{"10.0.0.8", false},
		{"skiff-peer", false},
	}
	for _, tt := range tests {
		_, err := cert.Verify(x509.VerifyOptions{
			DNSName: tt.host, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		})
		if gotOK := err == nil; gotOK != tt.wantOK {
			t.Errorf("verify serving certificate for %s: got error %v, want ok %v", tt.host, err, tt.wantOK)
		}
	}
	// Given names already in the defaults are not repeated.
	if got, want := len(cert.DNSNames), 6; got != want {
		t.Errorf("DNS names: got %d %v, want %d", got, cert.DNSNames, want)
	}
	if got, want := len(cert.IPAddresses), 4; got != want {
		t.Errorf("IP addresses: got %d %v, want %d", got, cert.IPAddresses, want)
	}
	// A serving certificate is not a client certificate.
	if _, err := cert.Verify(clientVerifyOptions(ca)); err == nil {
		t.Errorf("verify serving certificate for client auth: got nil error, want one")
	}
	// Nor does it verify under another CA.
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: newCA(t).Pool()}); err == nil {
		t.Errorf("verify serving certificate under a foreign CA: got nil error, want one")
	}
}

func TestIssueClient(t *testing.T) {
	ca := newCA(t)
	tests := []struct {
		user   string
		groups []string
	}{
		{"system:admin", []string{"system:masters"}},
		{"alice", []string{"dev", "ops"}},
		{"bob", nil},
	}
	for _, tt := range tests {
		certPEM, _, err := ca.IssueClient(tt.user, tt.groups, time.Hour)
		if err != nil {
			t.Fatalf("IssueClient(%q): %v", tt.user, err)
		}
		cert := parseLeaf(t, certPEM)
		if got := cert.Subject.CommonName; got != tt.user {
			t.Errorf("common name: got %q, want %q", got, tt.user)
		}
		if got := cert.Subject.Organization; !slices.Equal(got, tt.groups) {
			t.Errorf("organizations of %s: got %q, want %q", tt.user, got, tt.groups)
		}
		if _, err := cert.Verify(clientVerifyOptions(ca)); err != nil {
			t.Errorf("verify client certificate of %s: got %v, want nil", tt.user, err)
		}
		serverOpts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
		if _, err := cert.Verify(serverOpts); err == nil {
			t.Errorf("verify client certificate of %s for server auth: got nil error, want one", tt.user)
		}
	}
	if _, _, err := ca.IssueClient("", nil, time.Hour); err == nil {
		t.Errorf("IssueClient with an empty common name: got nil error, want one")
	}
}

func TestIssuePeer(t *testing.T) {
	ca := newCA(t)
	certPEM, _, err := ca.IssuePeer(time.Hour)
	if err != nil {
		t.Fatalf("IssuePeer: %v", err)
	}
	cert := parseLeaf(t, certPEM)
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		opts := x509.VerifyOptions{DNSName: pki.PeerServerName, Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage}}
		if _, err := cert.Verify(opts); err != nil {
			t.Errorf("verify peer certificate for usage %v: got %v, want nil", usage, err)
		}
	}
	if err := cert.VerifyHostname("kubernetes"); err == nil {
		t.Errorf("peer certificate for kubernetes: got nil error, want one")
	}
}

func TestIssueValidityAndSerials(t *testing.T) {
	ca := newCA(t)
	caExpiry := ca.Certificate().NotAfter
	tests := []struct {
		name      string
		validity  time.Duration
		wantErr   bool
		wantAfter func(now time.Time) time.Time
	}{
		{"one day", 24 * time.Hour, false, func(now time.Time) time.Time { return now.Add(24 * time.Hour) }},
		{"capped at the CA", 100 * 365 * 24 * time.Hour, false, func(time.Time) time.Time { return caExpiry }},
		{"zero", 0, true, nil},
		{"negative", -time.Hour, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now()
			certPEM, keyPEM, err := ca.IssueClient("alice", nil, tt.validity)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("IssueClient(validity %v): got error %v, want error %v", tt.validity, err, tt.wantErr)
			}
			if tt.wantErr {
				if certPEM != nil || keyPEM != nil {
					t.Errorf("IssueClient(validity %v): got PEM with the error, want none", tt.validity)
				}
				return
			}
			cert := parseLeaf(t, certPEM)
			if got, want := cert.NotAfter, tt.wantAfter(now); got.Sub(want).Abs() > 2*time.Second {
				t.Errorf("NotAfter: got %v, want %v", got, want)
			}
			if cert.NotAfter.After(caExpiry) {
				t.Errorf("NotAfter: got %v, want at most the CA's %v", cert.NotAfter, caExpiry)
			}
			if !cert.NotBefore.Before(now) {
				t.Errorf("NotBefore: got %v, want before %v", cert.NotBefore, now)
			}
		})
	}

	seen := map[string]bool{}
	for range 20 {
		certPEM, _, err := ca.IssuePeer(time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		serial := parseLeaf(t, certPEM).SerialNumber
		if serial.Sign() <= 0 || serial.BitLen() > 128 {
			t.Errorf("serial: got %v (%d bits), want positive and at most 128 bits", serial, serial.BitLen())
		}
		if seen[serial.String()] {
			t.Errorf("serial: got %v twice, want distinct serials", serial)
		}
		seen[serial.String()] = true
	}
}

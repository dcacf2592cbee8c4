package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
)

func csrPEM(t *testing.T, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "asked-for", Organization: []string{"system:masters"}}, DNSNames: []string{"evil.example"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func TestParseCSR(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	good := csrPEM(t, ec)
	block, _ := pem.Decode(good)
	block.Bytes[len(block.Bytes)-3] ^= 0xff // inside the signature
	tampered := pem.EncodeToMemory(block)
	tests := []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"ecdsa", good, true},
		{"not PEM", []byte("hello"), false},
		{"certificate", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), false},
		{"bad signature", tampered, false},
		{"weak RSA", csrPEM(t, weak), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pki.ParseCSR(tt.pem)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, pki.ErrBadCSR)) {
				t.Errorf("ParseCSR = %v, want ok %v (pki.ErrBadCSR otherwise)", err, tt.ok)
			}
		})
	}
}

func TestSignCSR(t *testing.T) {
	ca := newCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := pki.ParseCSR(csrPEM(t, key))
	if err != nil {
		t.Fatal(err)
	}
	clientPEM, err := ca.SignClient(csr, "system:node:n1", []string{"system:nodes"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	client, err := certOf(clientPEM)
	if err != nil {
		t.Fatal(err)
	}
	if client.Subject.CommonName != "system:node:n1" || !slices.Equal(client.Subject.Organization, []string{"system:nodes"}) || len(client.DNSNames) != 0 {
		t.Errorf("client certificate %v %v: want the CA's subject, not the request's", client.Subject, client.DNSNames)
	}
	if !key.PublicKey.Equal(client.PublicKey) {
		t.Error("client certificate is not for the request's key")
	}
	if _, err := client.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client certificate: %v", err)
	}
	servingPEM, err := ca.SignServing(csr, "system:node:n1", []string{"system:nodes"}, []string{"n1"}, []net.IP{net.ParseIP("10.0.0.5")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serving, err := certOf(servingPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"n1", "10.0.0.5"} {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
	for _, host := range []string{"evil.example", "localhost", "127.0.0.1"} {
		if _, err := serving.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host}); err == nil {
			t.Errorf("serving certificate verifies for %s, want only the given SANs", host)
		}
	}
	if _, err := ca.SignServing(csr, "x", nil, nil, nil, time.Hour); err == nil {
		t.Error("SignServing without SANs: got nil, want an error")
	}
}

func certOf(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

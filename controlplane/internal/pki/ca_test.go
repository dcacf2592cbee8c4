package pki_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
)

// newCA returns a new CA kept in a fresh temporary directory.
func newCA(t *testing.T) *pki.CA {
	t.Helper()
	ca, err := pki.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatalf("LoadOrCreateCA: %v", err)
	}
	return ca
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA (create): %v", err)
	}
	cert := ca.Certificate()
	if got, want := cert.Subject.CommonName, pki.CAName; got != want {
		t.Errorf("CA common name: got %q, want %q", got, want)
	}
	if !cert.IsCA {
		t.Errorf("CA IsCA: got false, want true")
	}
	if got, want := time.Until(cert.NotAfter).Round(time.Hour), pki.CAValidity; got != want {
		t.Errorf("CA remaining validity: got %v, want %v", got, want)
	}
	if got, want := cert.PublicKeyAlgorithm.String(), "ECDSA"; got != want {
		t.Errorf("CA key algorithm: got %s, want %s", got, want)
	}
	for name, wantMode := range map[string]os.FileMode{pki.CAKeyFile: 0o600, pki.CACertFile: 0o600, ".": os.ModeDir | 0o700} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode(); got != wantMode {
			t.Errorf("%s mode: got %v, want %v", name, got, wantMode)
		}
	}
	entries, _ := os.ReadDir(dir)
	if got, want := len(entries), 2; got != want {
		t.Errorf("files in CA dir: got %d (%v), want %d", got, entries, want)
	}

	again, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA (reload): %v", err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Errorf("reloaded CA: got a different certificate, want the one created")
	}
	onDisk, _ := os.ReadFile(filepath.Join(dir, pki.CACertFile))
	if !bytes.Equal(onDisk, ca.CertPEM()) {
		t.Errorf("ca.crt: got bytes that differ from CertPEM")
	}
	// A certificate issued before the reload verifies under the reloaded CA.
	certPEM, _, err := ca.IssueClient("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseLeaf(t, certPEM).Verify(clientVerifyOptions(again)); err != nil {
		t.Errorf("verify certificate of the first CA under the reloaded CA: got %v, want nil", err)
	}
}

func TestLoadOrCreateCARefusesBadFiles(t *testing.T) {
	good := t.TempDir()
	if _, err := pki.LoadOrCreateCA(good); err != nil {
		t.Fatal(err)
	}
	goodCert, _ := os.ReadFile(filepath.Join(good, pki.CACertFile))
	goodKey, _ := os.ReadFile(filepath.Join(good, pki.CAKeyFile))
	other := t.TempDir()
	if _, err := pki.LoadOrCreateCA(other); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := os.ReadFile(filepath.Join(other, pki.CAKeyFile))
	leafCert, leafKey, err := newCA(t).IssueClient("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		cert, key  []byte // nil: file absent
		wantIs     error  // nil: only a non-nil error is wanted
		wantSubstr string
	}{
		{name: "key of another CA", cert: goodCert, key: otherKey, wantIs: pki.ErrKeyMismatch},
		{name: "leaf certificate", cert: leafCert, key: leafKey, wantIs: pki.ErrNotCA},
		{name: "corrupt certificate", cert: []byte("not a certificate"), key: goodKey, wantSubstr: "no PEM block"},
		{name: "truncated certificate", cert: goodCert[:len(goodCert)/2], key: goodKey, wantSubstr: "certificate"},
		{name: "corrupt key", cert: goodCert, key: []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), wantSubstr: "private key"},
		{name: "key in the certificate file", cert: goodKey, key: goodKey, wantSubstr: "want CERTIFICATE"},
		{name: "certificate without key", cert: goodCert, wantSubstr: "exists without"},
		{name: "key without certificate", key: goodKey, wantSubstr: "exists without"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, data []byte) {
				if data != nil {
					if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
			}
			write(pki.CACertFile, tt.cert)
			write(pki.CAKeyFile, tt.key)
			ca, err := pki.LoadOrCreateCA(dir)
			if err == nil {
				t.Fatalf("LoadOrCreateCA: got CA %q, want an error", ca.Certificate().Subject.CommonName)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("LoadOrCreateCA: got error %v, want %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), tt.wantSubstr) {
				t.Errorf("LoadOrCreateCA: got error %q, want it to contain %q", err, tt.wantSubstr)
			}
			// The refused files are left as they were.
			for name, want := range map[string][]byte{pki.CACertFile: tt.cert, pki.CAKeyFile: tt.key} {
				got, _ := os.ReadFile(filepath.Join(dir, name))
				if !bytes.Equal(got, want) {
					t.Errorf("%s after refusal: got %d bytes, want the %d written", name, len(got), len(want))
				}
			}
		})
	}
}

func TestLoadCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(filepath.Join(dir, pki.CAKeyFile))
	loaded, err := pki.LoadCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	// The loaded CA signs certificates that the original trusts.
	certPEM, _, err := loaded.IssueClient("bob", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseLeaf(t, certPEM).Verify(clientVerifyOptions(ca)); err != nil {
		t.Errorf("verify certificate of the loaded CA under the original: got %v, want nil", err)
	}
}

// TestLoadOrCreateCAConcurrent checks that racing first calls on one
// directory never leave two CAs: every success returns the same certificate.
func TestLoadOrCreateCAConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	var wg sync.WaitGroup
	results := make([]*pki.CA, n)
	for i := range n {
		wg.Go(func() {
			// Losers of the race get an error; they are simply not counted.
			results[i], _ = pki.LoadOrCreateCA(dir)
		})
	}
	wg.Wait()
	final, err := pki.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA after the race: %v", err)
	}
	for i, ca := range results {
		if ca != nil && !bytes.Equal(ca.CertPEM(), final.CertPEM()) {
			t.Errorf("caller %d: got a CA that differs from the one kept in %s", i, dir)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("files in CA dir: got %v, want only %s and %s", entries, pki.CACertFile, pki.CAKeyFile)
	}
}

// Package pki owns the cluster's public key infrastructure: the cluster CA,
// the certificates it issues (API serving, client and master-to-master peer
// certificates), the TLS configurations built from them, client-certificate
// authentication, admin kubeconfigs and bearer tokens.
//
// The intended call sequence on a master is:
//
//  1. ca, err := LoadOrCreateCA(dataDir + "/pki") — the first master creates
//     the CA; every later call (and restart) reloads it. Masters that receive
//     the CA from elsewhere use LoadCA(certPEM, keyPEM).
//  2. ca.IssueServing(names, ips, validity) for the API listener, then
//     ServerTLSConfig(cert, key, ca) for the https listener (port 6443).
//  3. ca.IssuePeer(validity), then PeerTLSConfigs(cert, key, ca) for Raft and
//     RPC traffic between masters (mutual TLS, server name PeerServerName).
//  4. ca.IssueClient("system:admin", []string{"system:masters"}, validity)
//     and WriteKubeconfig(dataDir+"/admin.kubeconfig", ...) for the admin.
//  5. Per request, the API server's authentication calls Authenticate(r.TLS)
//     and, for bearer tokens, TokenMatches(storedHash, presented); tokens come
//     from NewToken and only their HashToken is ever stored.
//
// A CA is immutable once loaded and safe for concurrent use. The package has
// no global state and starts no goroutines.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// File names of the CA inside the directory given to LoadOrCreateCA.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// CAName is the common name of the cluster CA.
const CAName = "skiff-ca"

// CAValidity is how long a new cluster CA is valid.
const CAValidity = 10 * 365 * 24 * time.Hour

// clockSkew backdates NotBefore so that a certificate just issued on one
// master is already valid on a master whose clock is slightly behind.
const clockSkew = 5 * time.Minute

var (
	// ErrKeyMismatch is returned by LoadCA and LoadOrCreateCA when the private
	// key is not the key of the certificate.
	ErrKeyMismatch = errors.New("pki: private key does not match the CA certificate")
	// ErrNotCA is returned by LoadCA and LoadOrCreateCA when the certificate
	// is not a CA certificate allowed to sign certificates.
	ErrNotCA = errors.New("pki: certificate is not a signing CA")
	// ErrCAExpired is returned by the Issue methods when the CA certificate is
	// outside its validity period, so nothing it signs would verify.
	ErrCAExpired = errors.New("pki: CA certificate is not valid now")
)

// CA is a certificate authority: its certificate and signing key. It is
// immutable and safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	pool    *x509.CertPool
}

// LoadOrCreateCA returns the CA kept in dir as CACertFile and CAKeyFile,
// creating dir (0700), a new ECDSA P-256 CA named CAName valid for
// CAValidity, and both files (the key 0600) when neither file exists. A
// directory with only one of the two files, or with files that do not form a
// CA, is refused rather than overwritten: certificates already issued trust
// the old CA. Concurrent callers on one directory never overwrite each other;
// the loser of a creation race gets an error and may call again.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	certPEM, certErr := os.ReadFile(certPath)
	keyPEM, keyErr := os.ReadFile(keyPath)
	certMissing, keyMissing := errors.Is(certErr, os.ErrNotExist), errors.Is(keyErr, os.ErrNotExist)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err := LoadCA(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("pki: CA in %s: %w", dir, err)
		}
		return ca, nil
	case certMissing && keyMissing:
		return createCA(dir, certPath, keyPath)
	case certMissing && keyErr == nil:
		return nil, fmt.Errorf("pki: %s exists without %s; restore the certificate or remove both", keyPath, certPath)
	case keyMissing && certErr == nil:
		return nil, fmt.Errorf("pki: %s exists without %s; restore the key or remove both", certPath, keyPath)
	case certErr != nil:
		return nil, fmt.Errorf("pki: read CA certificate: %w", certErr)
	default:
		return nil, fmt.Errorf("pki: read CA key: %w", keyErr)
	}
}

// createCA makes a new CA and writes it to certPath and keyPath, the key
// first, so a crash in between leaves a key without certificate, which
// LoadOrCreateCA refuses instead of silently minting a second CA.
func createCA(dir, certPath, keyPath string) (*CA, error) {
	certPEM, keyPEM, err := GenerateCA()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki: create CA directory: %w", err)
	}
	if err := writeExclusive(keyPath, keyPEM); err != nil {
		return nil, err
	}
	if err := writeExclusive(certPath, certPEM); err != nil {
		return nil, err
	}
	return LoadCA(certPEM, keyPEM)
}

// GenerateCA returns a new ECDSA P-256 CA named CAName, valid for
// CAValidity: its certificate and private key in PEM. Nothing is written.
func GenerateCA() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          newSerial(),
		Subject:               pkix.Name{CommonName: CAName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	if keyPEM, err = encodeKey(key); err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// LoadCA returns the CA made of a PEM certificate and its PEM private key
// (PKCS#8, SEC 1 EC or PKCS#1 RSA). It fails with ErrNotCA when the
// certificate may not sign certificates and with ErrKeyMismatch when the key
// is not the certificate's.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%w: %q", ErrNotCA, cert.Subject.CommonName)
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, ErrKeyMismatch
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: bytes.Clone(certPEM), key: key, pool: pool}, nil
}

// Certificate returns the CA certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// CertPEM returns a copy of the CA certificate in PEM, as loaded or created.
func (ca *CA) CertPEM() []byte { return bytes.Clone(ca.certPEM) }

// KeyPEM returns the CA's private key in PEM (PKCS#8), for keeping the CA
// where it was loaded from. Handle with care.
func (ca *CA) KeyPEM() []byte {
	b, err := encodeKey(ca.key)
	if err != nil {
		panic(fmt.Sprintf("pki: encode a key that was decoded: %v", err)) // broken invariant
	}
	return b
}

// Pool returns a new pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// parseCert parses the first PEM block of certPEM, which must be a CERTIFICATE.
func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, errors.New("pki: certificate: no PEM block found")
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("pki: certificate: got PEM block %q, want CERTIFICATE", block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate: %w", err)
	}
	return cert, nil
}

// parseKey parses the first PEM block of keyPEM as a signing private key.
func parseKey(keyPEM []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("pki: private key: no PEM block found")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("pki: private key: got PEM block %q, want PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: private key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: private key: %T cannot sign", key)
	}
	return signer, nil
}

// encodeKey returns key as a PKCS#8 PEM block.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// newSerial returns a random positive serial number of at most 128 bits.
func newSerial() *big.Int {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails; it crashes the program instead.
	b[0] &= 0x7f    // keep the DER INTEGER positive without a padding byte
	n := new(big.Int).SetBytes(b[:])
	if n.Sign() == 0 {
		n.SetInt64(1) // serial numbers must be positive (RFC 5280 4.1.2.2)
	}
	return n
}

// writeExclusive writes data to path with mode 0600, failing if path exists.
// The data lands in a temporary file first and is hard-linked into place, so
// path never holds a partial file and a concurrent writer is never overwritten.
func writeExclusive(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// writeAtomic writes data to path with mode 0600, replacing any file there
// through a rename so readers see the old or the new content, never a mix.
func writeAtomic(path string, data []byte) error {
	tmp, err := writeTemp(path, data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// writeTemp writes data to a new 0600 file beside path, synced to disk, and
// returns its name.
func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("pki: %w", err)
	}
	name := f.Name()
	// CreateTemp makes the file 0600 already; Chmod keeps it so under any umask.
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(name)
		return "", fmt.Errorf("pki: write %s: %w", path, err)
	}
	return name, nil
}

package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// ErrBadCSR is returned by ParseCSR for a certificate request it refuses:
// not PEM, not a CERTIFICATE REQUEST, a bad self-signature or a weak key.
var ErrBadCSR = errors.New("pki: bad certificate request")

// minRSABits is the smallest RSA key ParseCSR accepts.
const minRSABits = 2048

// ParseCSR parses the first PEM block of csrPEM as a certificate request and
// checks that it is signed by the key it carries (proof that the requester
// holds the key) and that the key is ECDSA, Ed25519 or RSA of at least 2048
// bits. Errors wrap ErrBadCSR.
func ParseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM block found", ErrBadCSR)
	}
	if block.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: got PEM block %q, want CERTIFICATE REQUEST", ErrBadCSR, block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSR, err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits, want at least %d", ErrBadCSR, k.N.BitLen(), minRSABits)
		}
	default:
		return nil, fmt.Errorf("%w: unsupported key type %T", ErrBadCSR, k)
	}
	return csr, nil
}

// SignClient returns a client certificate (PEM) for the key of csr, for the
// user commonName in groups, valid for validity (capped at the CA's
// expiry), as IssueClient. The request's subject and extensions are
// ignored: the CA decides who the key is. Check csr with ParseCSR first.
func (ca *CA) SignClient(csr *x509.CertificateRequest, commonName string, groups []string, validity time.Duration) ([]byte, error) {
	if commonName == "" {
		return nil, errors.New("pki: client certificate: empty common name")
	}
	return ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: slices.Clone(groups)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey, validity)
}

// SignServing returns a serving certificate (PEM) for the key of csr, with
// the subject commonName in groups (as Kubernetes names a kubelet's serving
// certificate) and exactly the given DNS names and IPs, valid for validity
// (capped at the CA's expiry). The request's subject and extensions are
// ignored. At least one name or IP is required; an empty name or a nil IP
// is an error. Check csr with ParseCSR first.
func (ca *CA) SignServing(csr *x509.CertificateRequest, commonName string, groups, names []string, ips []net.IP, validity time.Duration) ([]byte, error) {
	if commonName == "" {
		return nil, errors.New("pki: serving certificate: empty common name")
	}
	if len(names) == 0 && len(ips) == 0 {
		return nil, errors.New("pki: serving certificate: no DNS name or IP address")
	}
	var dns []string
	for _, n := range names {
		if n == "" {
			return nil, errors.New("pki: serving certificate: empty DNS name")
		}
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	var addrs []net.IP
	for _, ip := range ips {
		if ip == nil {
			return nil, errors.New("pki: serving certificate: nil IP address")
		}
		if !slices.ContainsFunc(addrs, ip.Equal) {
			addrs = append(addrs, ip)
		}
	}
	return ca.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: slices.Clone(groups)},
		DNSNames:    dns,
		IPAddresses: addrs,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, csr.PublicKey, validity)
}

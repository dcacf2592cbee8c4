package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// PeerServerName is the DNS name every peer certificate carries and every
// peer client verifies, whatever address it dials.
const PeerServerName = "skiff-peer"

// Common names of the serving and peer certificates.
const (
	servingName = "skiff-apiserver"
	peerName    = PeerServerName
)

// servingDNSNames are the names every API serving certificate carries: the
// in-cluster names of the kubernetes Service and localhost.
var servingDNSNames = []string{
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
	"localhost",
}

// servingIPs are the addresses every API serving certificate carries.
var servingIPs = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}

// IssueServing returns a new API server certificate and its key, in PEM,
// valid for validity (capped at the CA's expiry) for servingDNSNames,
// 127.0.0.1, ::1 and the given names and IPs. Duplicates are dropped; an
// empty name or a nil IP is an error.
func (ca *CA) IssueServing(names []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	dns := slices.Clone(servingDNSNames)
	for _, n := range names {
		if n == "" {
			return nil, nil, errors.New("pki: serving certificate: empty DNS name")
		}
		if !slices.Contains(dns, n) {
			dns = append(dns, n)
		}
	}
	addrs := slices.Clone(servingIPs)
	for _, ip := range ips {
		if ip == nil {
			return nil, nil, errors.New("pki: serving certificate: nil IP address")
		}
		if !slices.ContainsFunc(addrs, ip.Equal) {
			addrs = append(addrs, ip)
		}
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: servingName},
		DNSNames:    dns,
		IPAddresses: addrs,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, validity)
}

// IssueClient returns a new client certificate and its key, in PEM, for the
// user commonName in groups, valid for validity (capped at the CA's expiry).
// As in Kubernetes client-certificate authentication, the subject's common
// name is the user and its organizations are the groups.
func (ca *CA) IssueClient(commonName string, groups []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if commonName == "" {
		return nil, nil, errors.New("pki: client certificate: empty common name")
	}
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: slices.Clone(groups)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, validity)
}

// IssuePeer returns a new master-to-master certificate and its key, in PEM,
// valid for validity (capped at the CA's expiry). It carries the DNS name
// PeerServerName and serves both ends of a mutual TLS connection.
func (ca *CA) IssuePeer(validity time.Duration) (certPEM, keyPEM []byte, err error) {
	return ca.issue(&x509.Certificate{
		Subject:     pkix.Name{CommonName: peerName},
		DNSNames:    []string{PeerServerName},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, validity)
}

// issue completes tmpl with a new P-256 key, a random serial and the validity
// window, and signs it with the CA.
func (ca *CA) issue(tmpl *x509.Certificate, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if validity <= 0 {
		return nil, nil, fmt.Errorf("pki: certificate %q: got validity %v, want > 0", tmpl.Subject.CommonName, validity)
	}
	now := time.Now()
	if now.Before(ca.cert.NotBefore) || now.After(ca.cert.NotAfter) {
		return nil, nil, fmt.Errorf("%w: valid from %v to %v", ErrCAExpired, ca.cert.NotBefore, ca.cert.NotAfter)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate key: %w", err)
	}
	if certPEM, err = ca.sign(tmpl, &key.PublicKey, validity); err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// sign completes tmpl with a random serial and the validity window (capped
// at the CA's expiry) and signs it for the public key pub.
func (ca *CA) sign(tmpl *x509.Certificate, pub any, validity time.Duration) (certPEM []byte, err error) {
	if validity <= 0 {
		return nil, fmt.Errorf("pki: certificate %q: got validity %v, want > 0", tmpl.Subject.CommonName, validity)
	}
	now := time.Now()
	if now.Before(ca.cert.NotBefore) || now.After(ca.cert.NotAfter) {
		return nil, fmt.Errorf("%w: valid from %v to %v", ErrCAExpired, ca.cert.NotBefore, ca.cert.NotAfter)
	}
	tmpl.SerialNumber = newSerial()
	tmpl.NotBefore = now.Add(-clockSkew)
	// A certificate outliving its CA would be rejected after the CA expires
	// anyway; capping makes its NotAfter say so.
	tmpl.NotAfter = now.Add(validity)
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

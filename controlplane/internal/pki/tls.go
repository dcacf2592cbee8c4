package pki

import (
	"crypto/tls"
	"fmt"
)

// ServerTLSConfig returns the configuration of the API listener: it presents
// the PEM certificate and key, asks clients for a certificate without
// requiring one (bearer tokens authenticate the others), and verifies any
// certificate given against ca, failing the handshake when it does not verify.
func ServerTLSConfig(certPEM, keyPEM []byte, ca *CA) (*tls.Config, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: serving key pair: %w", err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// PeerTLSConfigs returns both ends of master-to-master mutual TLS for the PEM
// peer certificate and key: the server requires and verifies a client
// certificate of ca; the client verifies the server against ca under the name
// PeerServerName, whatever address it dials, and presents the same certificate.
func PeerTLSConfigs(certPEM, keyPEM []byte, ca *CA) (server, client *tls.Config, err error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: peer key pair: %w", err)
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		RootCAs:      ca.Pool(),
		ServerName:   PeerServerName,
		MinVersion:   tls.VersionTLS12,
	}
	return server, client, nil
}

// Authenticate returns the user and groups of the client certificate that the
// handshake of state verified: the common name and organizations of the leaf
// of the first verified chain, as Kubernetes reads them. ok is false when
// state is nil (plain HTTP), when no certificate was verified, or when the
// common name is empty. Pass an http.Request's TLS field. A peer certificate
// authenticates as the user PeerServerName with no groups; authorization
// decides what that user may do.
func Authenticate(state *tls.ConnectionState) (user string, groups []string, ok bool) {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return "", nil, false
	}
	leaf := state.VerifiedChains[0][0]
	if leaf.Subject.CommonName == "" {
		return "", nil, false
	}
	return leaf.Subject.CommonName, append([]string(nil), leaf.Subject.Organization...), true
}

// Package bootstrap owns what a new worker and the masters share so that the
// worker can join the cluster securely: the join token that
// `skiff token create --join` prints, and the request and response of the
// masters' join endpoint, which signs the worker's certificates.
//
// A join token is one string of four dot-separated fields:
//
//	SKIFF1.<ca-sha256>.<gossip-key>.<bearer-token>
//
// where ca-sha256 is the lower-case hex SHA-256 of the cluster CA
// certificate's DER encoding, gossip-key is the gossip pool's 32-byte key in
// unpadded base64url, and bearer-token is a bearer token of a user in
// BootstrapGroup (pki tokens contain no dots). The master side:
//
//	s := bootstrap.Token{CAHash: bootstrap.HashCA(caCert), GossipKey: key, Bearer: secret}.String()
//
// The worker side:
//
//	tok, err := bootstrap.Parse(s)      // ErrMalformedToken when it is not one
//	// join the gossip pool with tok.GossipKey, find a master's API, then
//	// GET CAPath anonymously, check tok.MatchesCA(caPEM), and POST a
//	// JoinRequest to JoinPath with tok.Bearer over TLS verified against it.
//
// Both endpoints are served by every master: CAPath to anyone (the CA
// certificate is public), JoinPath to users in BootstrapGroup or the admin
// group (system:masters), and refuses others with 403.
//
// A joined node may set on its own Node only the labels NodeMaySetLabel
// allows: the agent checks its --node-labels, the masters every write.
package bootstrap

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Identities of joining and joined workers, as in Kubernetes TLS
// bootstrapping.
const (
	// BootstrapGroup is the group of the bearer tokens in join tokens.
	BootstrapGroup = "system:bootstrappers:skiff"
	// BootstrapUserPrefix starts the user name of a join token's bearer
	// token; a random ID follows.
	BootstrapUserPrefix = "system:bootstrap:"
	// NodesGroup is the group of every node's client certificate.
	NodesGroup = "system:nodes"
	// NodeUserPrefix starts a node's user name: NodeUserPrefix + node name.
	NodeUserPrefix = "system:node:"
)

// Paths of the masters' endpoints on the Kubernetes API listener.
const (
	// CAPath serves the cluster CA certificate (PEM) to anyone, on GET.
	CAPath = "/skiff/v1/ca"
	// JoinPath takes a JoinRequest (JSON) on POST and answers a
	// JoinResponse, or a metav1.Status on errors.
	JoinPath = "/skiff/v1/join"
)

// tokenVersion starts every join token of this format.
const tokenVersion = "SKIFF1"

// gossipKeySize is the length of the gossip pool's key (membership.KeySize).
const gossipKeySize = 32

// ErrMalformedToken is returned by Parse for a string that is not a join
// token of this format.
var ErrMalformedToken = errors.New("bootstrap: malformed join token (want SKIFF1.<ca-sha256>.<gossip-key>.<bearer-token>, as 'skiff token create --join' prints)")

// Token is a decoded join token.
type Token struct {
	// CAHash is the SHA-256 of the cluster CA certificate's DER encoding.
	CAHash [sha256.Size]byte
	// GossipKey is the gossip pool's encryption key.
	GossipKey []byte
	// Bearer is a bearer token of a user in BootstrapGroup.
	Bearer string
}

// String encodes t as a join token.
func (t Token) String() string {
	return strings.Join([]string{tokenVersion, hex.EncodeToString(t.CAHash[:]), base64.RawURLEncoding.EncodeToString(t.GossipKey), t.Bearer}, ".")
}

// Parse decodes a join token; surrounding white space is ignored. It
// returns an error wrapping ErrMalformedToken that names the bad field, and
// never includes the secret parts in it.
func Parse(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: got %d dot-separated fields, want 4", ErrMalformedToken, len(parts))
	}
	if parts[0] != tokenVersion {
		return Token{}, fmt.Errorf("%w: it does not start with %s", ErrMalformedToken, tokenVersion+".")
	}
	var t Token
	h, err := hex.DecodeString(parts[1])
	if err != nil || len(h) != sha256.Size {
		return Token{}, fmt.Errorf("%w: the CA hash is not %d hex digits", ErrMalformedToken, 2*sha256.Size)
	}
	copy(t.CAHash[:], h)
	t.GossipKey, err = base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(t.GossipKey) != gossipKeySize {
		return Token{}, fmt.Errorf("%w: the gossip key is not %d bytes of base64url", ErrMalformedToken, gossipKeySize)
	}
	if parts[3] == "" || strings.ContainsAny(parts[3], " \t\r\n") {
		return Token{}, fmt.Errorf("%w: the bearer token is empty or has spaces", ErrMalformedToken)
	}
	t.Bearer = parts[3]
	return t, nil
}

// HashCA returns the SHA-256 of a CA certificate's DER encoding, the form
// join tokens carry.
func HashCA(cert *x509.Certificate) [sha256.Size]byte {
	return sha256.Sum256(cert.Raw)
}

// MatchesCA parses caPEM, which must hold exactly one certificate, and
// returns it when its hash is the token's; otherwise an error that says the
// CA is not the one the token names.
func (t Token) MatchesCA(caPEM []byte) (*x509.Certificate, error) {
	block, rest := pem.Decode(caPEM)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("bootstrap: the cluster CA is not one PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: the cluster CA: %w", err)
	}
	got := HashCA(cert)
	if subtle.ConstantTimeCompare(got[:], t.CAHash[:]) != 1 {
		return nil, fmt.Errorf("%w: the server's CA has SHA-256 %x, the join token names %x", ErrCAMismatch, got, t.CAHash)
	}
	return cert, nil
}

// ErrCAMismatch is returned by MatchesCA when the CA a server presents is
// not the one the join token names: the token is for another cluster, or
// something between the worker and the master impersonates it.
var ErrCAMismatch = errors.New("bootstrap: the cluster CA does not match the join token")

// JoinRequest is the body of a POST to JoinPath.
type JoinRequest struct {
	// NodeName is the worker's Node name (a DNS-1123 subdomain).
	NodeName string `json:"nodeName"`
	// NodeIPs are the worker's addresses, the IP SANs of its serving
	// certificate.
	NodeIPs []string `json:"nodeIPs"`
	// ClientCSR is a PEM CERTIFICATE REQUEST for the worker's client
	// certificate; its subject is ignored: the certificate is for
	// NodeUserPrefix+NodeName in NodesGroup.
	ClientCSR string `json:"clientCSR"`
	// ServingCSR is a PEM CERTIFICATE REQUEST for the serving certificate of
	// the worker's endpoint (logs, exec, port-forward); its subject and
	// extensions are ignored: the certificate is for NodeIPs and NodeName.
	ServingCSR string `json:"servingCSR"`
}

// JoinResponse is the answer to a JoinRequest: PEM certificates.
type JoinResponse struct {
	CA          string `json:"caPEM"`
	ClientCert  string `json:"clientCert"`
	ServingCert string `json:"servingCert"`
}

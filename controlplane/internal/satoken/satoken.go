// Package satoken issues and verifies service account tokens: JSON Web
// Tokens signed with the cluster's service account key (ES256), carrying
// the claims Kubernetes' bound tokens carry (issuer, audiences, expiry, the
// "kubernetes.io" claim naming the namespace, the service account and the
// object the token is bound to), so that in-cluster clients and tools that
// read tokens find what they expect.
//
//	keyPEM, _ := satoken.GenerateKey()  // once per cluster, kept in the store
//	s, _ := satoken.NewSigner(keyPEM)
//	tok, _ := s.Issue(claims)          // the TokenRequest API
//	c, err := s.Verify(tok, auds, now) // authentication; then check the objects still exist
//
// Verify checks the signature, the issuer, the audiences and the validity
// window only. Whether the service account and the bound object still
// exist with the same uid is the authenticator's question (package authn
// asks it through the registry).
package satoken

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"time"
)

// Issuer is the iss claim of every token, and the audience a token needs
// to authenticate to the API: kube-apiserver's default.
const Issuer = "https://kubernetes.default.svc.cluster.local"

// LegacyIssuer is the iss claim of the long-lived tokens kept in Secrets
// of type kubernetes.io/service-account-token (IssueLegacy).
const LegacyIssuer = "kubernetes/serviceaccount"

// UserPrefix starts the user name of a service account:
// system:serviceaccount:NAMESPACE:NAME.
const UserPrefix = "system:serviceaccount:"

// GroupServiceAccounts is the group of every service account; each is
// also in GroupServiceAccounts + ":" + its namespace.
const GroupServiceAccounts = "system:serviceaccounts"

// leeway is the clock skew tolerated on exp and nbf, as upstream.
const leeway = 60 * time.Second

// ErrInvalid is returned for a token that is malformed, signed by another
// key, for another issuer or audience, or outside its validity window.
var ErrInvalid = errors.New("satoken: invalid service account token")

// Ref names an object a token is bound to, or its service account.
type Ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// Claims are what a token says.
type Claims struct {
	Audiences []string
	IssuedAt  time.Time
	NotBefore time.Time
	Expiry    time.Time
	// ID is the jti claim: unique per token.
	ID             string
	Namespace      string
	ServiceAccount Ref
	// Pod, Secret and Node are the objects a token is bound to: it is
	// valid only while they exist (a pod-bound token also names its node).
	Pod, Secret, Node *Ref
	// WarnAfter, for tokens a kubelet mounts, is when a client should
	// have read a newer one.
	WarnAfter *time.Time
	// Legacy marks a token of a service account token Secret (Secret
	// names it): no audience, no expiry, valid while the Secret holds it.
	Legacy bool
}

// Username returns the user the token authenticates as.
func (c Claims) Username() string { return UserPrefix + c.Namespace + ":" + c.ServiceAccount.Name }

// Groups returns the groups of the token's service account.
func (c Claims) Groups() []string {
	return []string{GroupServiceAccounts, GroupServiceAccounts + ":" + c.Namespace}
}

// wire is the JSON payload, with the claim names Kubernetes uses.
type wire struct {
	Audiences []string   `json:"aud"`
	Expiry    int64      `json:"exp"`
	IssuedAt  int64      `json:"iat"`
	NotBefore int64      `json:"nbf"`
	Issuer    string     `json:"iss"`
	ID        string     `json:"jti"`
	Subject   string     `json:"sub"`
	K8s       wireClaims `json:"kubernetes.io"`
}

type wireClaims struct {
	Namespace      string `json:"namespace"`
	Node           *Ref   `json:"node,omitempty"`
	Pod            *Ref   `json:"pod,omitempty"`
	Secret         *Ref   `json:"secret,omitempty"`
	ServiceAccount Ref    `json:"serviceaccount"`
	WarnAfter      int64  `json:"warnafter,omitempty"`
}

// legacyWire is the payload of a Secret's token, with the claim names
// Kubernetes' legacy tokens use.
type legacyWire struct {
	Issuer         string `json:"iss"`
	Namespace      string `json:"kubernetes.io/serviceaccount/namespace"`
	SecretName     string `json:"kubernetes.io/serviceaccount/secret.name"`
	ServiceAccount string `json:"kubernetes.io/serviceaccount/service-account.name"`
	UID            string `json:"kubernetes.io/serviceaccount/service-account.uid"`
	Subject        string `json:"sub"`
}

type header struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// GenerateKey returns a new P-256 signing key in PEM (EC PRIVATE KEY).
func GenerateKey() ([]byte, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

// Signer issues and verifies tokens with one key. It is safe for
// concurrent use.
type Signer struct {
	key    *ecdsa.PrivateKey
	header string // the encoded JOSE header, the same for every token
}

// NewSigner returns a Signer for a key from GenerateKey.
func NewSigner(keyPEM []byte) (*Signer, error) {
	b, _ := pem.Decode(keyPEM)
	if b == nil || b.Type != "EC PRIVATE KEY" {
		return nil, errors.New("satoken: the key is not a PEM EC PRIVATE KEY")
	}
	k, err := x509.ParseECPrivateKey(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("satoken: key: %w", err)
	}
	if k.Curve != elliptic.P256() {
		return nil, errors.New("satoken: the key is not on P-256")
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	// The key ID is the public key's hash, as kube-apiserver derives it.
	sum := sha256.Sum256(pub)
	h, err := json.Marshal(header{Alg: "ES256", Kid: base64.RawURLEncoding.EncodeToString(sum[:])})
	if err != nil {
		return nil, err
	}
	return &Signer{key: k, header: base64.RawURLEncoding.EncodeToString(h)}, nil
}

// Issue returns the signed token of c.
func (s *Signer) Issue(c Claims) (string, error) {
	w := wire{
		Audiences: c.Audiences, Expiry: c.Expiry.Unix(), IssuedAt: c.IssuedAt.Unix(), NotBefore: c.NotBefore.Unix(),
		Issuer: Issuer, ID: c.ID, Subject: c.Username(),
		K8s: wireClaims{Namespace: c.Namespace, Node: c.Node, Pod: c.Pod, Secret: c.Secret, ServiceAccount: c.ServiceAccount},
	}
	if c.WarnAfter != nil {
		w.K8s.WarnAfter = c.WarnAfter.Unix()
	}
	payload, err := json.Marshal(w)
	if err != nil {
		return "", err
	}
	return s.sign(payload)
}

// IssueLegacy returns the long-lived token of service account sa (name
// and uid) in namespace ns for the token Secret named secret, as the
// token controller writes it into the Secret: no audience, no expiry.
func (s *Signer) IssueLegacy(ns string, sa Ref, secret string) (string, error) {
	payload, err := json.Marshal(legacyWire{Issuer: LegacyIssuer, Namespace: ns, SecretName: secret, ServiceAccount: sa.Name, UID: sa.UID,
		Subject: UserPrefix + ns + ":" + sa.Name})
	if err != nil {
		return "", err
	}
	return s.sign(payload)
}

// sign returns the JWT of payload.
func (s *Signer) sign(payload []byte) (string, error) {
	signed := s.header + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	r, sig, err := ecdsa.Sign(rand.Reader, s.key, digest[:])
	if err != nil {
		return "", err
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	sig.FillBytes(raw[32:])
	return signed + "." + base64.RawURLEncoding.EncodeToString(raw), nil
}

// LooksLikeToken says whether a bearer token is a JWT (three base64url
// parts, the first a JSON object), to tell service account tokens from
// Skiff's own bearer tokens without verifying anything.
func LooksLikeToken(token string) bool {
	return strings.HasPrefix(token, "eyJ") && strings.Count(token, ".") == 2
}

// Verify returns the claims of a token this Signer's key signed for
// Issuer, meant for one of audiences, valid at now. Any other token is
// ErrInvalid, with the reason.
func (s *Signer) Verify(token string, audiences []string, now time.Time) (Claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return Claims{}, fmt.Errorf("%w: not a JWT", ErrInvalid)
	}
	if parts[0] != s.header {
		return Claims{}, fmt.Errorf("%w: another algorithm or key", ErrInvalid)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(sig) != 64 {
		return Claims{}, fmt.Errorf("%w: malformed signature", ErrInvalid)
	}
	digest := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if !ecdsa.Verify(&s.key.PublicKey, digest[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		return Claims{}, fmt.Errorf("%w: bad signature", ErrInvalid)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return Claims{}, fmt.Errorf("%w: malformed payload", ErrInvalid)
	}
	var w wire
	d := json.NewDecoder(bytes.NewReader(payload))
	if err := d.Decode(&w); err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	if w.Issuer == LegacyIssuer {
		return verifyLegacy(payload, audiences)
	}
	switch {
	case w.Issuer != Issuer:
		return Claims{}, fmt.Errorf("%w: issuer %q", ErrInvalid, w.Issuer)
	case !slices.ContainsFunc(audiences, func(a string) bool { return slices.Contains(w.Audiences, a) }):
		return Claims{}, fmt.Errorf("%w: audiences %q do not include any of %q", ErrInvalid, w.Audiences, audiences)
	case now.After(time.Unix(w.Expiry, 0).Add(leeway)):
		return Claims{}, fmt.Errorf("%w: expired at %s", ErrInvalid, time.Unix(w.Expiry, 0).UTC().Format(time.RFC3339))
	case now.Add(leeway).Before(time.Unix(w.NotBefore, 0)):
		return Claims{}, fmt.Errorf("%w: not valid before %s", ErrInvalid, time.Unix(w.NotBefore, 0).UTC().Format(time.RFC3339))
	case w.K8s.Namespace == "" || w.K8s.ServiceAccount.Name == "" || w.Subject != UserPrefix+w.K8s.Namespace+":"+w.K8s.ServiceAccount.Name:
		return Claims{}, fmt.Errorf("%w: subject %q does not match its service account", ErrInvalid, w.Subject)
	}
	c := Claims{
		Audiences: w.Audiences, IssuedAt: time.Unix(w.IssuedAt, 0), NotBefore: time.Unix(w.NotBefore, 0), Expiry: time.Unix(w.Expiry, 0),
		ID: w.ID, Namespace: w.K8s.Namespace, ServiceAccount: w.K8s.ServiceAccount, Pod: w.K8s.Pod, Secret: w.K8s.Secret, Node: w.K8s.Node,
	}
	if w.K8s.WarnAfter != 0 {
		t := time.Unix(w.K8s.WarnAfter, 0)
		c.WarnAfter = &t
	}
	return c, nil
}

// verifyLegacy returns the claims of a Secret's token: one for the API
// only (it names no audience, its claims name Issuer), whose subject
// matches its service account.
func verifyLegacy(payload []byte, audiences []string) (Claims, error) {
	var l legacyWire
	if err := json.Unmarshal(payload, &l); err != nil {
		return Claims{}, fmt.Errorf("%w: payload: %v", ErrInvalid, err)
	}
	switch {
	case !slices.Contains(audiences, Issuer):
		return Claims{}, fmt.Errorf("%w: a service account token Secret's token is for the API, not %q", ErrInvalid, audiences)
	case l.Namespace == "" || l.ServiceAccount == "" || l.SecretName == "" || l.Subject != UserPrefix+l.Namespace+":"+l.ServiceAccount:
		return Claims{}, fmt.Errorf("%w: subject %q does not match its service account", ErrInvalid, l.Subject)
	}
	return Claims{Audiences: []string{Issuer}, Namespace: l.Namespace, ServiceAccount: Ref{Name: l.ServiceAccount, UID: l.UID}, Secret: &Ref{Name: l.SecretName}, Legacy: true}, nil
}

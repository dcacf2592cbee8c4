package master

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/skiff-sh/skiff/controlplane/internal/authn"
)

// Token is the stored record of a bearer token: its ID, user, groups,
// description, creation and expiry times, and the hash of the token (never
// the token).
type Token = authn.Token

// TokenSpec is what CreateToken is asked for: user, groups, TTL (0 for a
// token that never expires) and description.
type TokenSpec = authn.TokenSpec

// TokenKV is the part of the store that token management uses; a
// *raftstore.Store and a remote *raftstore.Client both provide it.
type TokenKV = authn.KV

// ErrTokenNotFound is returned by DeleteToken when no token has the ID.
var ErrTokenNotFound = authn.ErrTokenNotFound

// CreateToken stores a new bearer token for spec and returns it: the only
// time the token is seen, as the store keeps only its hash. Every master
// accepts it once its replica has applied the write, normally within
// milliseconds.
func CreateToken(ctx context.Context, kv TokenKV, spec TokenSpec) (string, Token, error) {
	return authn.CreateToken(ctx, kv, spec, time.Now())
}

// ListTokens returns every token record in ID order, expired ones included.
func ListTokens(ctx context.Context, kv TokenKV) ([]Token, error) {
	return authn.ListTokens(ctx, kv)
}

// DeleteToken removes the token with the given ID, or returns
// ErrTokenNotFound. Every master refuses the token as soon as its replica
// has applied the delete.
func DeleteToken(ctx context.Context, kv TokenKV, id string) error {
	return authn.DeleteToken(ctx, kv, id)
}

// tokenKubeconfig is the part of client-go's clientcmd v1 Config that
// TokenKubeconfig writes. []byte fields marshal as base64.
type tokenKubeconfig struct {
	APIVersion     string           `json:"apiVersion"`
	Kind           string           `json:"kind"`
	Clusters       []kubeconfigItem `json:"clusters"`
	Users          []kubeconfigItem `json:"users"`
	Contexts       []kubeconfigItem `json:"contexts"`
	CurrentContext string           `json:"current-context"`
	Preferences    struct{}         `json:"preferences"`
}

// kubeconfigItem is a named cluster, user or context; exactly one of its
// pointers is set.
type kubeconfigItem struct {
	Name    string             `json:"name"`
	Cluster *kubeconfigCluster `json:"cluster,omitempty"`
	User    *kubeconfigUser    `json:"user,omitempty"`
	Context *kubeconfigContext `json:"context,omitempty"`
}

type kubeconfigCluster struct {
	Server                   string `json:"server"`
	CertificateAuthorityData []byte `json:"certificate-authority-data"`
}

type kubeconfigUser struct {
	Token string `json:"token"`
}

type kubeconfigContext struct {
	Cluster string `json:"cluster"`
	User    string `json:"user"`
}

// TokenKubeconfig returns a kubeconfig YAML for server (an https URL) that
// trusts caPEM and authenticates with the bearer token, under the user entry
// userName, in the current context "skiff".
func TokenKubeconfig(server string, caPEM []byte, userName, token string) ([]byte, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("master: kubeconfig: got server %q, want an https URL", server)
	}
	if userName == "" || token == "" {
		return nil, errors.New("master: kubeconfig: the user name and the token must not be empty")
	}
	if !x509.NewCertPool().AppendCertsFromPEM(caPEM) {
		return nil, errors.New("master: kubeconfig: no CA certificate in the CA PEM")
	}
	kc := tokenKubeconfig{
		APIVersion:     "v1",
		Kind:           "Config",
		Clusters:       []kubeconfigItem{{Name: "skiff", Cluster: &kubeconfigCluster{Server: server, CertificateAuthorityData: caPEM}}},
		Users:          []kubeconfigItem{{Name: userName, User: &kubeconfigUser{Token: token}}},
		Contexts:       []kubeconfigItem{{Name: "skiff", Context: &kubeconfigContext{Cluster: "skiff", User: userName}}},
		CurrentContext: "skiff",
	}
	out, err := yaml.Marshal(kc)
	if err != nil {
		return nil, fmt.Errorf("master: kubeconfig: %w", err)
	}
	return out, nil
}

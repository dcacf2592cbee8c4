package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"

	"sigs.k8s.io/yaml"
)

// kubeconfig is the part of client-go's clientcmd v1 Config that Kubeconfig
// writes. []byte fields marshal as base64, as the *-data fields require.
type kubeconfig struct {
	APIVersion     string         `json:"apiVersion"`
	Kind           string         `json:"kind"`
	Clusters       []namedCluster `json:"clusters"`
	Users          []namedUser    `json:"users"`
	Contexts       []namedContext `json:"contexts"`
	CurrentContext string         `json:"current-context"`
	Preferences    struct{}       `json:"preferences"`
}

type namedCluster struct {
	Name    string `json:"name"`
	Cluster struct {
		Server                   string `json:"server"`
		CertificateAuthorityData []byte `json:"certificate-authority-data"`
	} `json:"cluster"`
}

type namedUser struct {
	Name string `json:"name"`
	User struct {
		ClientCertificateData []byte `json:"client-certificate-data"`
		ClientKeyData         []byte `json:"client-key-data"`
	} `json:"user"`
}

type namedContext struct {
	Name    string `json:"name"`
	Context struct {
		Cluster string `json:"cluster"`
		User    string `json:"user"`
	} `json:"context"`
}

// Kubeconfig returns a kubeconfig YAML with one cluster (server, an https
// URL, trusting caPEM), one user (the client certificate and key, embedded)
// and one context joining them, which is the current context. It checks that
// caPEM holds a certificate and that certPEM and keyPEM form a pair.
func Kubeconfig(server string, caPEM, certPEM, keyPEM []byte, clusterName, userName, contextName string) ([]byte, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("pki: kubeconfig: got server %q, want an https URL", server)
	}
	if clusterName == "" || userName == "" || contextName == "" {
		return nil, errors.New("pki: kubeconfig: cluster, user and context names must not be empty")
	}
	if !x509.NewCertPool().AppendCertsFromPEM(caPEM) {
		return nil, errors.New("pki: kubeconfig: no CA certificate in the CA PEM")
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return nil, fmt.Errorf("pki: kubeconfig: client key pair: %w", err)
	}
	cfg := kubeconfig{APIVersion: "v1", Kind: "Config", CurrentContext: contextName}
	var c namedCluster
	c.Name, c.Cluster.Server, c.Cluster.CertificateAuthorityData = clusterName, server, caPEM
	var usr namedUser
	usr.Name, usr.User.ClientCertificateData, usr.User.ClientKeyData = userName, certPEM, keyPEM
	var ctx namedContext
	ctx.Name, ctx.Context.Cluster, ctx.Context.User = contextName, clusterName, userName
	cfg.Clusters, cfg.Users, cfg.Contexts = []namedCluster{c}, []namedUser{usr}, []namedContext{ctx}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("pki: kubeconfig: %w", err)
	}
	return out, nil
}

// WriteKubeconfig writes the Kubeconfig of the same arguments to path with
// mode 0600, replacing any file there atomically (temporary file + rename).
// The directory of path must exist.
func WriteKubeconfig(path, server string, caPEM, certPEM, keyPEM []byte, clusterName, userName, contextName string) error {
	data, err := Kubeconfig(server, caPEM, certPEM, keyPEM, clusterName, userName, contextName)
	if err != nil {
		return err
	}
	return writeAtomic(path, data)
}

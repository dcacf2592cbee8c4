package join

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
)

// Files of the credentials in DataDir/pki.
const (
	CAFile          = "ca.crt"
	ClientCertFile  = "client.crt"
	ClientKeyFile   = "client.key"
	ServingCertFile = "serving.crt"
	ServingKeyFile  = "serving.key"
	GossipKeyFile   = "gossip.key"
	// MastersFile lists the masters' gossip addresses seen at the last
	// start, also joined on the next.
	MastersFile = "masters"
)

// credentials are what a joined node keeps: the cluster CA, its client and
// serving key pairs, and the gossip key.
type credentials struct {
	ca                      *x509.Certificate
	caPEM                   []byte
	clientCert, clientKey   []byte // PEM
	servingCert, servingKey []byte // PEM
	gossip                  []byte
}

func (c *credentials) gossipKey() []byte {
	if c == nil {
		return nil
	}
	return c.gossip
}

// loadCredentials reads the credentials in dir; a missing file is an error
// wrapping fs.ErrNotExist.
func loadCredentials(dir string) (*credentials, error) {
	read := func(name string) ([]byte, error) { return os.ReadFile(filepath.Join(dir, name)) }
	var c credentials
	var err error
	for _, f := range []struct {
		name string
		dst  *[]byte
	}{
		{CAFile, &c.caPEM}, {ClientCertFile, &c.clientCert}, {ClientKeyFile, &c.clientKey},
		{ServingCertFile, &c.servingCert}, {ServingKeyFile, &c.servingKey},
	} {
		if *f.dst, err = read(f.name); err != nil {
			return nil, err
		}
	}
	key, err := read(GossipKeyFile)
	if err != nil {
		return nil, err
	}
	if c.gossip, err = base64.StdEncoding.DecodeString(strings.TrimSpace(string(key))); err != nil {
		return nil, fmt.Errorf("%s: %w", GossipKeyFile, err)
	}
	if c.ca, err = parseCert(c.caPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", CAFile, err)
	}
	return &c, nil
}

// check returns why the credentials cannot serve the node name at ip until
// validUntil, or nil: both certificates must verify against the CA, be the
// node's, match their keys and stay valid until then.
func (c *credentials) check(name string, ip netip.Addr, validUntil time.Time) error {
	roots := x509.NewCertPool()
	roots.AddCert(c.ca)
	for _, p := range []struct {
		what      string
		cert, key []byte
		usage     x509.ExtKeyUsage
		host      string
	}{
		{"client certificate", c.clientCert, c.clientKey, x509.ExtKeyUsageClientAuth, ""},
		{"serving certificate", c.servingCert, c.servingKey, x509.ExtKeyUsageServerAuth, ip.String()},
	} {
		pair, err := tls.X509KeyPair(p.cert, p.key)
		if err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		cert := pair.Leaf
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: p.host, KeyUsages: []x509.ExtKeyUsage{p.usage}}); err != nil {
			return fmt.Errorf("%s: %w", p.what, err)
		}
		if cert.Subject.CommonName != bootstrap.NodeUserPrefix+name {
			return fmt.Errorf("%s is for %q, not node %s", p.what, cert.Subject.CommonName, name)
		}
		if cert.NotAfter.Before(validUntil) {
			return fmt.Errorf("%s expires at %s", p.what, cert.NotAfter.Format(time.RFC3339))
		}
	}
	if len(c.gossip) != 32 {
		return fmt.Errorf("%s: %d bytes, want 32", GossipKeyFile, len(c.gossip))
	}
	return nil
}

// expires returns when the first of the certificates expires.
func (c *credentials) expires() time.Time {
	var t time.Time
	for _, p := range [][]byte{c.clientCert, c.servingCert} {
		if cert, err := parseCert(p); err == nil && (t.IsZero() || cert.NotAfter.Before(t)) {
			t = cert.NotAfter
		}
	}
	return t
}

// save writes the credentials to dir (0700), each file 0600, each
// replaced atomically; the CA last, so that a crash leaves a set that
// loadCredentials refuses or a complete one.
func (c *credentials) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{ClientKeyFile, c.clientKey}, {ClientCertFile, c.clientCert},
		{ServingKeyFile, c.servingKey}, {ServingCertFile, c.servingCert},
		{GossipKeyFile, []byte(base64.StdEncoding.EncodeToString(c.gossip) + "\n")},
		{CAFile, c.caPEM},
	} {
		if err := writeFile(filepath.Join(dir, f.name), f.data); err != nil {
			return err
		}
	}
	return nil
}

// writeFile replaces path with data (0600) through a synced temporary file.
func writeFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("join: %w", err)
	}
	tmp := f.Name()
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
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("join: write %s: %w", path, err)
	}
	return nil
}

// streamTLS is the stream endpoint's TLS configuration.
func (c *credentials) streamTLS() (*tls.Config, error) {
	cert, err := tls.X509KeyPair(c.servingCert, c.servingKey)
	if err != nil {
		return nil, fmt.Errorf("join: serving key pair: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.ca)
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    roots,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// joinHTTPTimeout bounds each request of the join.
const joinHTTPTimeout = 15 * time.Second

// requestCredentials has a master sign new credentials for the node. For
// each master's API host in turn, it fetches the cluster CA anonymously
// (nothing secret is sent), trusts it only if its hash is the token's, and
// then posts the join request with the bearer token over TLS verified
// against that CA. A CA mismatch or a refused token ends the attempt; a
// master that cannot be reached passes to the next.
func (a *Agent) requestCredentials(ctx context.Context, tok *bootstrap.Token, hosts []string) (*credentials, error) {
	if tok == nil {
		return nil, ErrTokenRequired
	}
	clientKey, clientCSR, err := newKeyAndCSR(bootstrap.NodeUserPrefix + a.cfg.NodeName)
	if err != nil {
		return nil, err
	}
	servingKey, servingCSR, err := newKeyAndCSR(bootstrap.NodeUserPrefix + a.cfg.NodeName)
	if err != nil {
		return nil, err
	}
	body, err := json.Marshal(bootstrap.JoinRequest{
		NodeName: a.cfg.NodeName, NodeIPs: []string{a.cfg.NodeIP.String()},
		ClientCSR: string(clientCSR), ServingCSR: string(servingCSR),
	})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, host := range hosts {
		resp, caPEM, err := a.postJoin(ctx, tok, host, body)
		if err != nil {
			if errors.Is(err, bootstrap.ErrCAMismatch) || errors.Is(err, ErrTokenRejected) || errors.Is(err, errRefused) || ctx.Err() != nil {
				return nil, err
			}
			a.log.Warn("joining through a master", "api", host, "err", err)
			errs = append(errs, err)
			continue
		}
		c := &credentials{caPEM: caPEM, clientKey: clientKey, servingKey: servingKey, gossip: tok.GossipKey,
			clientCert: []byte(resp.ClientCert), servingCert: []byte(resp.ServingCert)}
		if c.ca, err = parseCert(caPEM); err != nil {
			return nil, err
		}
		// What the master signed must be what was asked for, by the CA that
		// was verified.
		if err := c.check(a.cfg.NodeName, a.cfg.NodeIP, time.Now()); err != nil {
			return nil, fmt.Errorf("join: the master at %s signed unusable credentials: %w", host, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("join: no master signed the node's certificates: %w", errors.Join(errs...))
}

// errRefused marks a join request the master refused (403, 400): another
// master would refuse it too.
var errRefused = errors.New("join: the master refused the join request")

// postJoin verifies the master at host against the token's CA hash and
// posts the join request to it; it returns the response and the verified CA.
func (a *Agent) postJoin(ctx context.Context, tok *bootstrap.Token, host string, body []byte) (bootstrap.JoinResponse, []byte, error) {
	// The CA is public: fetching it over an unverified connection reveals
	// nothing, and it is trusted only if its hash is the token's.
	insecure := &http.Client{Timeout: joinHTTPTimeout, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}}} // #nosec G402 -- verified against the token's hash below
	defer insecure.CloseIdleConnections()
	caPEM, err := fetch(ctx, insecure, http.MethodGet, "https://"+host+bootstrap.CAPath, "", nil)
	if err != nil {
		return bootstrap.JoinResponse{}, nil, fmt.Errorf("join: fetching the cluster CA from %s: %w", host, err)
	}
	caCert, err := tok.MatchesCA(caPEM)
	if err != nil {
		return bootstrap.JoinResponse{}, nil, fmt.Errorf("join: the API server at %s: %w", host, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(caCert)
	verified := &http.Client{Timeout: joinHTTPTimeout, Transport: &http.Transport{
		Proxy: nil, TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}
	defer verified.CloseIdleConnections()
	out, err := fetch(ctx, verified, http.MethodPost, "https://"+host+bootstrap.JoinPath, tok.Bearer, body)
	if err != nil {
		return bootstrap.JoinResponse{}, nil, err
	}
	var resp bootstrap.JoinResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		return bootstrap.JoinResponse{}, nil, fmt.Errorf("join: the join response of %s: %w", host, err)
	}
	if !bytes.Equal(bytes.TrimSpace([]byte(resp.CA)), bytes.TrimSpace(caPEM)) {
		return bootstrap.JoinResponse{}, nil, fmt.Errorf("join: the master at %s answered with another CA than the one it serves", host)
	}
	return resp, caPEM, nil
}

// maxResponse bounds what the join reads of a response.
const maxResponse = 1 << 20

// fetch sends one request and returns the body of a 200 answer; other
// answers become errors that carry the Status message.
func fetch(ctx context.Context, c *http.Client, method, url, bearer string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode == http.StatusOK {
		return out, nil
	}
	msg := strings.TrimSpace(string(out))
	var st metav1.Status
	if json.Unmarshal(out, &st) == nil && st.Message != "" {
		msg = st.Message
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return nil, ErrTokenRejected
	case http.StatusForbidden, http.StatusBadRequest:
		return nil, fmt.Errorf("%w: %s: %s", errRefused, resp.Status, msg)
	}
	return nil, fmt.Errorf("join: %s %s: %s: %s", method, url, resp.Status, msg)
}

// newKeyAndCSR returns a new P-256 key (PEM) and a certificate request for
// it (PEM).
func newKeyAndCSR(cn string) (keyPEM, csrPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("join: generate key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("join: encode key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, crypto.Signer(key))
	if err != nil {
		return nil, nil, fmt.Errorf("join: certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), nil
}

// parseCert parses a PEM certificate.
func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

package stream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	restclient "k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/agent/internal/containers"
)

// testPKI is a CA with a serving certificate for 127.0.0.1 and client
// certificates by common name.
type testPKI struct {
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPEM  []byte
	pool   *x509.CertPool
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testPKI{caCert: cert, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pool: pool}
}

// issue returns PEM certificate and key for cn (a server for 127.0.0.1
// when server is set).
func (p *testPKI) issue(t *testing.T, cn string, server bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func (p *testPKI) tlsCert(t *testing.T, cn string, server bool) tls.Certificate {
	t.Helper()
	c, k := p.issue(t, cn, server)
	cert, err := tls.X509KeyPair(c, k)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// fakeBackend plays the pod manager.
type fakeBackend struct {
	logDir string
	netns  string

	mu            sync.Mutex
	active        bool
	attachesEnded atomic.Int64
}

func (b *fakeBackend) LogPath(ns, pod, container string, previous bool) (string, error) {
	if pod == "missing" {
		return "", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, pod)
	}
	name := "1.log"
	if previous {
		name = "0.log"
	}
	return filepath.Join(b.logDir, ns+"_"+pod, container, name), nil
}

func (b *fakeBackend) LogActive(ns, pod, container, path string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.active
}

func (b *fakeBackend) CheckContainer(ns, pod, container string) error {
	if container == "gone" {
		return apierrors.NewBadRequest(fmt.Sprintf("container %s is not running", container))
	}
	return nil
}

// Exec runs a few pretend commands:
//
//	echo ARGS...   ARGS on stdout
//	exit N         "bye" on stderr, exit code N
//	cat            stdin to stdout
//	resize N       the first N terminal sizes on stdout
//	fail           an error that is not an exit code
func (b *fakeBackend) Exec(ctx context.Context, ns, pod, container string, cmd []string, s containers.Streams) (int, error) {
	switch cmd[0] {
	case "echo":
		fmt.Fprintln(s.Stdout, strings.Join(cmd[1:], " "))
		return 0, nil
	case "exit":
		fmt.Fprintln(s.Stderr, "bye")
		n, _ := strconv.Atoi(cmd[1])
		return n, nil
	case "cat":
		if _, err := io.Copy(s.Stdout, s.Stdin); err != nil {
			return 1, err
		}
		return 0, nil
	case "resize":
		n, _ := strconv.Atoi(cmd[1])
		for range n {
			select {
			case sz, ok := <-s.Resize:
				if !ok {
					return 2, nil
				}
				fmt.Fprintf(s.Stdout, "%dx%d\n", sz.Width, sz.Height)
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return 0, nil
	case "fail":
		return 0, errors.New("the runtime is on fire")
	}
	return 127, nil
}

func (b *fakeBackend) Attach(ctx context.Context, ns, pod, container string, s containers.Streams) error {
	defer b.attachesEnded.Add(1)
	fmt.Fprintln(s.Stdout, "attached")
	if s.Stdin != nil {
		_, err := io.Copy(s.Stdout, s.Stdin)
		return err
	}
	<-ctx.Done()
	return ctx.Err()
}

func (b *fakeBackend) PodNetNS(ns, pod string) (string, error) {
	if pod == "missing" {
		return "", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, pod)
	}
	return b.netns, nil
}

// env is a running Server with its PKI and backend.
type env struct {
	pki     *testPKI
	backend *fakeBackend
	srv     *Server
	addr    string
}

func startServer(t *testing.T, b *fakeBackend) *env {
	t.Helper()
	p := newPKI(t)
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.TLS = &tls.Config{Certificates: []tls.Certificate{p.tlsCert(t, "agent", true)}, ClientCAs: p.pool}
	cfg.Backend = b
	cfg.StreamCreationTimeout = 5 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
	return &env{pki: p, backend: b, srv: srv, addr: srv.Addr()}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// restConfig is a client of the server as user cn.
func (e *env) restConfig(t *testing.T, cn string) *restclient.Config {
	c, k := e.pki.issue(t, cn, false)
	return &restclient.Config{
		Host:            "https://" + e.addr,
		TLSClientConfig: restclient.TLSClientConfig{CAData: e.pki.caPEM, CertData: c, KeyData: k},
	}
}

// httpClient is a plain HTTPS client of the server as user cn ("" = no
// client certificate).
func (e *env) httpClient(t *testing.T, cn string) *http.Client {
	tc := &tls.Config{RootCAs: e.pki.pool}
	if cn != "" {
		tc.Certificates = []tls.Certificate{e.pki.tlsCert(t, cn, false)}
	}
	tr := &http.Transport{TLSClientConfig: tc}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// viaProxy puts an API-server-like reverse proxy in front of the agent,
// as controlplane/internal/apiserver's proxyToAgent does (upgrades
// included; its own client certificate towards the agent), and returns a
// client config for the proxy.
func (e *env) viaProxy(t *testing.T) *restclient.Config {
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      e.pki.pool,
		Certificates: []tls.Certificate{e.pki.tlsCert(t, DefaultAllowedUser, false)},
	}}
	t.Cleanup(tr.CloseIdleConnections)
	target := &url.URL{Scheme: "https", Host: e.addr}
	proxy := httptest.NewUnstartedServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = e.addr
		},
		Transport:     tr,
		FlushInterval: -1,
	})
	proxy.StartTLS()
	t.Cleanup(proxy.Close)
	return &restclient.Config{Host: proxy.URL, TLSClientConfig: restclient.TLSClientConfig{Insecure: true}}
}

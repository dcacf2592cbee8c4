package join

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/retry"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/mastertest"
)

// testConfig is a Config for node name joining through m with token.
func testConfig(t *testing.T, m *mastertest.Master, name, token string) Config {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Join, cfg.Token, cfg.NodeName = m.GossipAddr, token, name
	cfg.NodeIP = netip.MustParseAddr("127.0.0.1")
	cfg.GossipAddr, cfg.DataDir = "127.0.0.1:0", t.TempDir()
	cfg.Timeout = 20 * time.Second
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

// running is an Agent whose Run runs until stop or the end of the test.
type running struct {
	*Agent
	done      chan error
	stop      func() error
	expectErr bool // Run's failure is the test's subject
}

func start(t *testing.T, cfg Config) *running {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Agent: a, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	var result error
	stopped := false
	r.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			result = <-r.done
		}
		return result
	}
	t.Cleanup(func() {
		if err := r.stop(); err != nil && !r.expectErr {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// waitReady waits for the agent to be ready, failing the test if Run
// returns first.
func (r *running) waitReady(t *testing.T) {
	t.Helper()
	select {
	case <-r.Ready():
	case err := <-r.done:
		r.done <- err // for stop
		t.Fatalf("Run returned before Ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("not Ready within 30s")
	}
}

// runErr waits for Run to fail, within limit, and returns its error.
func (r *running) runErr(t *testing.T, limit time.Duration) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		r.expectErr = true
		select {
		case <-r.Ready():
			t.Error("Ready is closed after Run failed")
		default:
		}
		return err
	case <-time.After(limit):
		t.Fatalf("Run did not fail within %v", limit)
		return nil
	}
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(20 * time.Millisecond) // between polls
	}
}

func readFiles(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{CAFile, ClientCertFile, ClientKeyFile, ServingCertFile, ServingKeyFile, GossipKeyFile} {
		path := filepath.Join(dir, "pki", name)
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
		}
		if out[name], err = os.ReadFile(path); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestJoinAndRestart: a worker joins with a join token, registers its Node
// with its client certificate, serves its stream endpoint to clients of the
// cluster CA only, and after a restart joins again with the saved
// credentials, without a token.
func TestJoinAndRestart(t *testing.T) {
	m := mastertest.Start(t)
	cfg := testConfig(t, m, "worker-a", m.JoinToken(t, time.Hour))
	a := start(t, cfg)
	a.waitReady(t)

	// The client certificate is the node's, and the API accepts it.
	rc := a.RESTConfig()
	cert := parseCertT(t, rc.CertData)
	if cert.Subject.CommonName != "system:node:worker-a" || !slices.Equal(cert.Subject.Organization, []string{"system:nodes"}) {
		t.Errorf("client certificate subject %v, want system:node:worker-a in system:nodes", cert.Subject)
	}
	cs := kubernetes.NewForConfigOrDie(rc)
	ctx := t.Context()
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the Node with the node's credentials: %v", err)
	}
	if _, err := m.Client(t).CoreV1().Nodes().Get(ctx, "worker-a", metav1.GetOptions{}); err != nil {
		t.Fatalf("the admin does not see the node's Node: %v", err)
	}
	files := readFiles(t, cfg.DataDir)

	// The pool: the node is a worker at its IP; its pod CIDR can be set.
	if got := a.Pool().Meta(); !got.Worker || got.NodeIP != "127.0.0.1" {
		t.Errorf("pool metadata %+v, want a worker at 127.0.0.1", got)
	}
	if err := a.SetPodCIDR("10.244.7.0/24"); err != nil {
		t.Fatal(err)
	}
	if got := a.Pool().Meta(); got.PodCIDR != "10.244.7.0/24" || !got.Worker {
		t.Errorf("after SetPodCIDR, pool metadata %+v", got)
	}

	checkStreamTLS(t, a.StreamTLS(), files[CAFile], a.RESTConfig())

	// Restart without a token: the saved credentials are used as they are.
	if err := a.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	cfg.Token = ""
	b := start(t, cfg)
	b.waitReady(t)
	if again := readFiles(t, cfg.DataDir); !mapsEqual(again, files) {
		t.Error("the credentials changed on a restart with valid saved credentials")
	}
	if _, err := kubernetes.NewForConfigOrDie(b.RESTConfig()).CoreV1().Nodes().Get(ctx, "worker-a", metav1.GetOptions{}); err != nil {
		t.Fatalf("after a restart, get the Node: %v", err)
	}

	if err := b.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// The masters seen at the last start are joined too: Join may be gone.
	cfg.Join = closedPort(t)
	c := start(t, cfg)
	c.waitReady(t)
	if err := c.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}

	// A node name that the saved certificates are not for needs a token.
	other := cfg
	other.NodeName = "worker-b"
	if err := start(t, other).runErr(t, 10*time.Second); !errors.Is(err, ErrTokenRequired) {
		t.Errorf("restart as another node without a token: got %v, want ErrTokenRequired", err)
	}

	// With valid credentials, a node whose masters are all down waits for
	// them past Timeout instead of failing, until it is stopped.
	m.Stop()
	cfg.Timeout = 100 * time.Millisecond
	d := start(t, cfg)
	select {
	case err := <-d.done:
		d.done <- err
		t.Fatalf("Run with saved credentials and no master returned %v, want it to wait", err)
	case <-d.Ready():
		t.Fatal("Ready without a master")
	case <-time.After(10 * cfg.Timeout):
	}
	if err := d.stop(); err != nil {
		t.Errorf("Run stopped while waiting for a master = %v, want nil", err)
	}
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func mapsEqual(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

func parseCertT(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	c, err := parseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkStreamTLS serves HTTPS with cfg and checks that a client of the
// cluster CA (the node's own client certificate will do) gets through,
// verifying the server as the node's IP, and that a client without a
// certificate does not.
func checkStreamTLS(t *testing.T, cfg *tls.Config, caPEM []byte, rc *rest.Config) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ErrorLog: log.New(io.Discard, "", 0), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	clientCert, err := tls.X509KeyPair(rc.CertData, rc.KeyData)
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String() + "/"
	get := func(certs []tls.Certificate) (string, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if got, err := get([]tls.Certificate{clientCert}); err != nil || got != "system:node:worker-a" {
		t.Errorf("stream endpoint with a client certificate of the CA = %q, %v; want system:node:worker-a", got, err)
	}
	if got, err := get(nil); err == nil {
		t.Errorf("stream endpoint without a client certificate = %q, want a refused handshake", got)
	}
}

// TestJoinRefusals: each wrong part of a join token is refused promptly
// with an error that says which.
func TestJoinRefusals(t *testing.T) {
	m := mastertest.Start(t)
	good, err := bootstrap.Parse(m.JoinToken(t, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	plain := m.Token(t, "jane", "dev")
	waitAuthenticates(t, m, plain)
	nobody := closedPort(t)

	variant := func(f func(*bootstrap.Token)) string {
		tok := good
		tok.GossipKey = slices.Clone(good.GossipKey)
		f(&tok)
		return tok.String()
	}
	tests := []struct {
		name    string
		token   string
		mutate  func(*Config)
		limit   time.Duration
		wantErr error
		wantMsg string
	}{
		{"wrong gossip key", variant(func(tk *bootstrap.Token) { tk.GossipKey[0] ^= 1 }), nil, 5 * time.Second, ErrGossipKeyRefused, "does not match the cluster at " + m.GossipAddr},
		{"unknown bearer token", variant(func(tk *bootstrap.Token) { tk.Bearer = "skf_unknown" }), nil, 10 * time.Second, ErrTokenRejected, "expired or unknown"},
		{"tampered CA hash", variant(func(tk *bootstrap.Token) { tk.CAHash[3] ^= 1 }), nil, 10 * time.Second, bootstrap.ErrCAMismatch, "the join token names"},
		{"not a bootstrap token", variant(func(tk *bootstrap.Token) { tk.Bearer = plain }), nil, 10 * time.Second, errRefused, `user "jane" may not join nodes`},
		{"no token", "", nil, 5 * time.Second, ErrTokenRequired, "a join token is required"},
		{"nobody at the join address", good.String(), func(c *Config) { c.Join, c.Timeout = nobody, time.Second }, 10 * time.Second, ErrNoMaster, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(t, m, "worker-r", tt.token)
			if tt.mutate != nil {
				tt.mutate(&cfg)
			}
			err := start(t, cfg).runErr(t, tt.limit)
			t.Logf("Run: %v", err)
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Run = %v, want %v saying %q", err, tt.wantErr, tt.wantMsg)
			}
			if _, statErr := os.Stat(filepath.Join(cfg.DataDir, "pki", ClientCertFile)); statErr == nil {
				t.Error("a refused join saved credentials")
			}
			if tt.token != "" && strings.Contains(err.Error(), strings.Split(tt.token, ".")[3]) {
				t.Error("the error shows the bearer token")
			}
		})
	}
}

// TestFailover: with three masters, the node's requests go to a live
// master at once when the one it would ask first is stopped, before gossip
// has noticed.
func TestFailover(t *testing.T) {
	ms := mastertest.StartCluster(t, 3)
	token := ms[0].JoinToken(t, time.Hour)
	// A node whose first choice is not m1, the Raft leader (the bootstrap
	// node), so that stopping it leaves the store serving throughout.
	var a *running
	var first string
	for i := 0; ; i++ {
		cfg := testConfig(t, ms[0], fmt.Sprintf("worker-f%d", i), token)
		b := start(t, cfg)
		b.waitReady(t)
		first = b.masters.order()[0]
		if !strings.HasSuffix(ms[0].URL, "//"+first) {
			a = b
			break
		}
		if err := b.stop(); err != nil {
			t.Fatal(err)
		}
	}
	var victim *mastertest.Master
	for _, m := range ms {
		if strings.HasSuffix(m.URL, "//"+first) {
			victim = m
		}
	}
	if victim == nil {
		t.Fatalf("the first master %s is none of the cluster's", first)
	}
	cs := kubernetes.NewForConfigOrDie(a.RESTConfig())
	ctx := t.Context()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName}}
	if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	victim.Stop()
	if hosts := a.Pool().MasterAPIs(); !slices.Contains(hosts, first) {
		t.Logf("gossip already dropped the stopped master: %v", hosts)
	}
	for i := range 3 {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := cs.CoreV1().Nodes().Get(rctx, a.cfg.NodeName, metav1.GetOptions{})
		cancel()
		if err != nil {
			t.Fatalf("get %d after %s stopped: %v", i, victim.Name, err)
		}
	}
	// A write, too (retried on a conflict: the masters' controllers, node
	// IPAM, may write the Node at the same time).
	node.Labels = map[string]string{"failover": "ok"}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		_, err := cs.CoreV1().Nodes().Update(rctx, mustGet(t, cs, a.cfg.NodeName), metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatalf("update after %s stopped: %v", victim.Name, err)
	}
	waitFor(t, 20*time.Second, "gossip to drop the stopped master", func() error {
		if hosts := a.Pool().MasterAPIs(); slices.Contains(hosts, first) || len(hosts) != 2 {
			return fmt.Errorf("live masters %v", hosts)
		}
		return nil
	})
}

func mustGet(t *testing.T, cs kubernetes.Interface, name string) *corev1.Node {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels = map[string]string{"failover": "ok"}
	return n
}

// waitAuthenticates waits until the master takes token (discovery, which
// every authenticated user may read, answers 200 instead of 401).
func waitAuthenticates(t *testing.T, m *mastertest.Master, token string) {
	t.Helper()
	// Only the status code matters here: the server is not verified.
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer c.CloseIdleConnections()
	waitFor(t, 10*time.Second, "the token to authenticate", func() error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, m.URL+"/api", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET with the token = %s", resp.Status)
		}
		return nil
	})
}

package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/master"
	"github.com/skiff-sh/skiff/raftstore"
)

// runSkiff runs one skiff command in-process.
func runSkiff(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// TestTokenCommands creates, lists and deletes a bearer token of a running
// `skiff up` through its peer address, and uses it with kubectl through
// `skiff kubeconfig --token`.
func TestTokenCommands(t *testing.T) {
	up := startUp(t)
	code, out, errOut := runSkiff(t, "token", "create", "--peer", up.peerAddr, "--user", "jane", "--groups", "dev, ops", "--ttl", "1h", "--description", "cmd test")
	if code != 0 {
		t.Fatalf("skiff token create exited %d: %s", code, errOut)
	}
	token := strings.TrimSuffix(out, "\n")
	if !regexp.MustCompile(`^skf_[A-Za-z0-9_-]{43}$`).MatchString(token) {
		t.Fatalf("skiff token create printed %q, want one token line", out)
	}
	m := regexp.MustCompile(`Created token ([0-9a-f]{12}) for user "jane" in groups \[dev,ops\]; expires: \S+Z\.`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("skiff token create said %q, want the ID, user, groups and expiry", errOut)
	}
	id := m[1]

	code, out, errOut = runSkiff(t, "token", "list", "--peer", up.peerAddr)
	if code != 0 {
		t.Fatalf("skiff token list exited %d: %s", code, errOut)
	}
	if !regexp.MustCompile(`(?m)^`+id+`\s+jane\s+dev,ops\s+\S+\s+\S+\s+cmd test$`).MatchString(out) || strings.Contains(out, token) {
		t.Fatalf("skiff token list printed:\n%s\nwant a row for %s (jane, dev,ops, cmd test) and no token", out, id)
	}

	server := kubeconfigServer(t, up.kubeconfig)
	code, kc, errOut := runSkiff(t, "kubeconfig", "--data-dir", up.dataDir, "--server", server, "--token", token, "--user", "jane")
	if code != 0 || !strings.Contains(kc, "token: "+token+"\n") || !strings.Contains(kc, "certificate-authority-data: ") {
		t.Fatalf("skiff kubeconfig --token = %d %q (stderr %q), want a kubeconfig with the token", code, kc, errOut)
	}
	// The same from a token file, as `skiff token create > FILE` writes it.
	tokenPath := filepath.Join(t.TempDir(), "jane.token")
	if err := os.WriteFile(tokenPath, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, fromFile, errOut := runSkiff(t, "kubeconfig", "--data-dir", up.dataDir, "--server", server, "--token-file", tokenPath, "--user", "jane"); code != 0 || fromFile != kc {
		t.Fatalf("skiff kubeconfig --token-file = %d %q (stderr %q), want the --token kubeconfig", code, fromFile, errOut)
	}
	kcPath := filepath.Join(t.TempDir(), "jane.kubeconfig")
	if err := os.WriteFile(kcPath, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	_, haveKubectl := exec.LookPath("kubectl")
	if haveKubectl == nil {
		waitKubectl(t, "the new token to work", func() error {
			if out, err := kubectl(t, kcPath, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "jane" {
				return fmt.Errorf("kubectl auth whoami = %q, %v", out, err)
			}
			return nil
		})
	}

	code, out, errOut = runSkiff(t, "token", "delete", "--peer", up.peerAddr, id)
	if code != 0 || out != "deleted token "+id+"\n" {
		t.Fatalf("skiff token delete = %d %q (stderr %q), want 0 and \"deleted token %s\"", code, out, errOut, id)
	}
	if code, out, _ := runSkiff(t, "token", "list", "--peer", up.peerAddr); code != 0 || strings.Contains(out, id) {
		t.Fatalf("skiff token list after delete = %d:\n%s\nwant no %s", code, out, id)
	}
	if code, _, errOut := runSkiff(t, "token", "delete", "--peer", up.peerAddr, id); code != 1 || !strings.Contains(errOut, "no such token") {
		t.Fatalf("skiff token delete of a deleted token = %d %q, want 1 and \"no such token\"", code, errOut)
	}
	if haveKubectl == nil {
		waitKubectl(t, "the deleted token to stop working", func() error {
			out, err := kubectl(t, kcPath, "get", "namespace", "default", "-o", "name")
			if err == nil || !strings.Contains(out, "error: You must be logged in to the server") {
				return fmt.Errorf("kubectl get namespace default = %q, %v", out, err)
			}
			return nil
		})
	}
}

// waitKubectl polls cond (which runs kubectl) until it returns nil, for at most 10s.
func waitKubectl(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kubeconfigServer returns the server URL of a kubeconfig.
func kubeconfigServer(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*server: (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no server in %s", path)
	}
	return string(m[1])
}

// TestTokenCreateJoin: `skiff token create --join` prints one join token
// naming the cluster's CA and gossip key, with the bearer token of a
// bootstrap user that the masters accept at the join endpoint only.
func TestTokenCreateJoin(t *testing.T) {
	up := startUp(t)
	if code, _, errOut := runSkiff(t, "token", "create", "--join", "--peer", up.peerAddr, "--user", "jane"); code != 2 || !strings.Contains(errOut, "--user cannot be set") {
		t.Fatalf("skiff token create --join --user = %d %q, want 2 and a refusal", code, errOut)
	}
	code, out, errOut := runSkiff(t, "token", "create", "--join", "--peer", up.peerAddr, "--ttl", "2h")
	if code != 0 {
		t.Fatalf("skiff token create --join exited %d: %s", code, errOut)
	}
	s := strings.TrimSuffix(out, "\n")
	if !regexp.MustCompile(`^SKIFF1\.[0-9a-f]{64}\.[A-Za-z0-9_-]{43}\.skf_[A-Za-z0-9_-]{43}$`).MatchString(s) {
		t.Fatalf("skiff token create --join printed %q, want one join token line", out)
	}
	m := regexp.MustCompile(`Created join token ([0-9a-f]{12}) for user "(system:bootstrap:[0-9a-f]+)"; expires: \S+Z\.\nOn a new worker: skiff agent --join (127\.0\.0\.1:\d+|<a master's gossip address, host:7946>) --token`).FindStringSubmatch(errOut)
	if m == nil {
		t.Fatalf("skiff token create --join said %q, want the ID, user, expiry and how to join", errOut)
	}
	tok, err := bootstrap.Parse(s)
	if err != nil {
		t.Fatal(err)
	}

	// The CA hash is the cluster CA's, and the gossip key the pool's.
	ca, err := master.LoadCA(up.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.MatchesCA(ca.CertPEM()); err != nil {
		t.Errorf("join token and cluster CA: %v", err)
	}
	cl, err := raftstore.NewClient(raftstore.ClientConfig{Endpoints: []string{up.peerAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	key, _, err := cl.Get(t.Context(), "/skiff/gossip/key", raftstore.ReadOptions{})
	if err != nil || key == nil || string(key.Value) != string(tok.GossipKey) {
		t.Errorf("the join token's gossip key is not the store's: %v %v", key, err)
	}

	code, out, errOut = runSkiff(t, "token", "list", "--peer", up.peerAddr)
	if code != 0 || !regexp.MustCompile(`(?m)^`+m[1]+`\s+`+m[2]+`\s+system:bootstrappers:skiff\s+\S+\s+\S+\s+join token$`).MatchString(out) {
		t.Fatalf("skiff token list = %d:\n%s\n(stderr %q) want a row for the join token %s", code, out, errOut, m[1])
	}

	// The bearer token authenticates, as a bootstrapper kept out of the API.
	server := kubeconfigServer(t, up.kubeconfig)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	waitKubectl(t, "the join token's bearer token to authenticate", func() error {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, server+"/api/v1/namespaces", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok.Bearer)
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			return fmt.Errorf("GET /api/v1/namespaces with the join token's bearer token = %d, want 403", resp.StatusCode)
		}
		return nil
	})
}

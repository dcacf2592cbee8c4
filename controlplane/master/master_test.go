package master

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/raftstore"
	"github.com/skiff-sh/skiff/raftstore/storetest"
)

// startMaster runs a single-node store and a master on ephemeral ports and
// returns the master's data directory and API URL once it serves.
func startMaster(t *testing.T) (dataDir, url string) {
	t.Helper()
	dataDir, url, _ = startMasterStore(t)
	return dataDir, url
}

// startMasterStore is startMaster that also returns the master's store.
func startMasterStore(t *testing.T) (dataDir, url string, store *raftstore.Store) {
	t.Helper()
	dataDir = t.TempDir()
	store = storetest.Start(t, dataDir)
	ready := make(chan string, 1)
	cfg := DefaultConfig()
	cfg.Store, cfg.DataDir, cfg.APIAddr = store, dataDir, "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.OnReady = func(url, _ string) { ready <- url }
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	masterDone := make(chan error, 1)
	go func() { masterDone <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-masterDone; err != nil {
			t.Errorf("master Run: %v", err)
		}
	})
	select {
	case url = <-ready:
	case err := <-masterDone:
		t.Fatalf("master stopped before serving: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("master did not serve within 20s")
	}
	return dataDir, url, store
}

// kubectl runs the real kubectl with kubeconfig, its cache and HOME in temp dirs.
func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestAdminKubeconfigWithKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	dataDir, _ := startMaster(t)
	kc := KubeconfigPath(dataDir)
	out, err := kubectl(t, kc, "get", "namespaces", "-o", "name")
	if err != nil {
		t.Fatalf("kubectl get namespaces: %v\n%s", err, out)
	}
	for _, ns := range []string{"namespace/default", "namespace/kube-system", "namespace/kube-public", "namespace/kube-node-lease"} {
		if !strings.Contains(out, ns+"\n") {
			t.Errorf("kubectl get namespaces lacks %s:\n%s", ns, out)
		}
	}
	if out, err := kubectl(t, kc, "-n", "default", "create", "configmap", "c1", "--from-literal=k=v"); err != nil {
		t.Fatalf("kubectl create configmap: %v\n%s", err, out)
	}
	if out, err := kubectl(t, kc, "-n", "default", "get", "configmap", "c1", "-o", "jsonpath={.data.k}"); err != nil || out != "v" {
		t.Fatalf("kubectl get configmap = %q, %v; want v", out, err)
	}

	// /metrics on the API listener has the store's and the API's metrics.
	metrics, err := kubectl(t, kc, "get", "--raw", "/metrics")
	if err != nil {
		t.Fatalf("kubectl get --raw /metrics: %v\n%s", err, metrics)
	}
	for _, want := range []string{"skiff_raft_is_leader 1\n", `apiserver_request_total{verb="create",group="",version="v1",resource="configmaps"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}

	// Another user's kubeconfig from the same CA is authenticated too (and,
	// with no role, refused: 403, not 401).
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Kubeconfig(ca, readServer(t, kc), "jane", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherPath := filepath.Join(t.TempDir(), "jane.kubeconfig")
	if err := os.WriteFile(otherPath, other, 0o600); err != nil {
		t.Fatal(err)
	}
	forbidden := `Error from server (Forbidden): namespaces "default" is forbidden: User "jane" cannot get resource "namespaces" in API group "" in the namespace "default"` + "\n"
	if out, err := kubectl(t, otherPath, "get", "namespace", "default", "-o", "name"); err == nil || out != forbidden {
		t.Fatalf("kubectl as jane = %q, %v; want %q", out, err, forbidden)
	}

	// Who each one is, as the API sees it, also when acting as another.
	for _, tt := range []struct {
		kubeconfig string
		as         []string
		want       string
	}{
		{kc, nil, `skiff-admin ["system:masters","system:authenticated"]`},
		{otherPath, nil, `jane ["system:authenticated"]`},
		{kc, []string{"--as", "joe", "--as-group", "qa"}, `joe ["qa","system:authenticated"]`},
	} {
		args := append(append([]string{"auth", "whoami"}, tt.as...), "-o", "jsonpath={.status.userInfo.username} {.status.userInfo.groups}")
		if out, err := kubectl(t, tt.kubeconfig, args...); err != nil || out != tt.want {
			t.Errorf("kubectl %s = %q, %v; want %s", strings.Join(args, " "), out, err, tt.want)
		}
	}
	if out, err := kubectl(t, otherPath, "auth", "can-i", "delete", "deployments"); err == nil || out != "no\n" {
		t.Errorf("kubectl auth can-i delete deployments as jane = %q, %v; want no (no role)", out, err)
	}
}

// readServer returns the server URL of a kubeconfig written by the master.
func readServer(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "server: "); ok {
			return s
		}
	}
	t.Fatalf("no server in %s", path)
	return ""
}

func TestAnonymousRequests(t *testing.T) {
	_, url := startMaster(t)
	// No client certificate: only the public paths answer.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/healthz", 200},
		{"/livez", 200},
		{"/readyz", 200},
		{"/version", 200},
		{"/api/v1/namespaces", 401},
		{"/api", 401},
		{"/metrics", 401},
		{"/status", 401},
	} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			resp, err := client.Get(url + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// /readyz may take a moment after start; everything else is immediate.
			if resp.StatusCode == tc.want || tc.path != "/readyz" || time.Now().After(deadline) {
				if resp.StatusCode != tc.want {
					t.Errorf("GET %s without a certificate = %d, want %d", tc.path, resp.StatusCode, tc.want)
				}
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestKubectlWithoutCredentials(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	dataDir, url := startMaster(t)
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	// A kubeconfig that trusts the cluster but presents no certificate, only
	// a bearer token the cluster does not know.
	kc := filepath.Join(t.TempDir(), "anon.kubeconfig")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	content := "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: " + url + "\n    certificate-authority: " + caFile +
		"\nusers:\n- name: anon\n  user: {token: not-a-token-of-this-cluster}\ncontexts:\n- name: c\n  context: {cluster: c, user: anon}\ncurrent-context: c\n"
	if err := os.WriteFile(kc, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := kubectl(t, kc, "get", "namespaces")
	if err == nil || !strings.Contains(out, "You must be logged in to the server") {
		t.Fatalf("kubectl without credentials = %v:\n%s\nwant an error saying \"You must be logged in to the server\"", err, out)
	}
}

// TestKubernetesService: the leader keeps default/kubernetes at the
// service range's first address, and the API's certificate names it, so
// pods verify the API they reach through it.
func TestKubernetesService(t *testing.T) {
	dataDir, url := startMaster(t)
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM())
	conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: pool, ServerName: "10.96.0.1"})
	if err != nil {
		t.Fatalf("TLS to the API as 10.96.0.1: %v", err)
	}
	conn.Close()
	for _, name := range []string{"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"} {
		conn, err := tls.Dial("tcp", strings.TrimPrefix(url, "https://"), &tls.Config{RootCAs: pool, ServerName: name})
		if err != nil {
			t.Fatalf("TLS to the API as %s: %v", name, err)
		}
		conn.Close()
	}
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	kc := KubeconfigPath(dataDir)
	apitest.WaitFor(t, 30*time.Second, "the kubernetes service", func() error {
		out, err := kubectl(t, kc, "-n", "default", "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP} {.spec.ports[0].name} {.spec.ports[0].port}")
		if err != nil || out != "10.96.0.1 https 443" {
			return fmt.Errorf("%q, %v", out, err)
		}
		return nil
	})
}

package pki_test

import (
	"bytes"
	"encoding/base64"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
)

const versionBody = `{"major":"1","minor":"32","gitVersion":"v1.32.0"}`

// adminServer is an https server with ServerTLSConfig that answers /version
// to the client certificate of system:admin in system:masters and 401 to
// anyone else, and records the User-Agents of the requests it answered.
type adminServer struct {
	*httptest.Server
	mu     sync.Mutex
	agents []string
}

func newAdminServer(t *testing.T, ca *pki.CA) *adminServer {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServing(nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ServerTLSConfig(certPEM, keyPEM, ca)
	if err != nil {
		t.Fatal(err)
	}
	s := &adminServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, groups, ok := pki.Authenticate(r.TLS)
		if !ok || user != "system:admin" || !slices.Contains(groups, "system:masters") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}`))
			return
		}
		if r.URL.Path != "/version" {
			http.NotFound(w, r)
			return
		}
		s.mu.Lock()
		s.agents = append(s.agents, r.UserAgent())
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(versionBody))
	}))
	s.TLS = cfg
	// Refused handshakes are expected; keep their log lines with the test's.
	s.Config.ErrorLog = log.New(testWriter{t}, "", 0)
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

func (s *adminServer) userAgents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.agents)
}

// testWriter writes to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// kubectl runs the real kubectl on PATH with kubeconfig, keeping its cache
// and home in temporary directories, and returns its combined output.
func kubectl(t *testing.T, kubeconfig string, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	args = append([]string{"--kubeconfig", kubeconfig, "--cache-dir", filepath.Join(home, "cache"), "--request-timeout", "10s"}, args...)
	cmd := exec.CommandContext(t.Context(), "kubectl", args...)
	cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKubeconfigWithKubectl proves that the real kubectl accepts the
// kubeconfig Skiff writes: it trusts the embedded CA and presents the
// embedded client certificate, which the API's TLS config verifies.
func TestKubeconfigWithKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH; this test runs the real kubectl against a TLS server")
	}
	ca, foreign := newCA(t), newCA(t)
	srv := newAdminServer(t, ca)
	adminCert, adminKey, err := ca.IssueClient("system:admin", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	aliceCert, aliceKey, err := ca.IssueClient("alice", []string{"dev"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	strangerCert, strangerKey, err := foreign.IssueClient("system:admin", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name            string
		caPEM           []byte
		certPEM, keyPEM []byte
		wantOut         string // the whole output when the command succeeds, else a part of it
		wantErr         bool
	}{
		{"admin", ca.CertPEM(), adminCert, adminKey, versionBody, false},
		{"not admin", ca.CertPEM(), aliceCert, aliceKey, "You must be logged in to the server", true},
		{"client certificate of a foreign CA", ca.CertPEM(), strangerCert, strangerKey, "tls: unknown certificate authority", true},
		{"server not trusted", foreign.CertPEM(), adminCert, adminKey, "certificate signed by unknown authority", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "admin.kubeconfig")
			if err := pki.WriteKubeconfig(path, srv.URL, tt.caPEM, tt.certPEM, tt.keyPEM, "skiff", "admin", "skiff"); err != nil {
				t.Fatalf("WriteKubeconfig: %v", err)
			}

			out, err := kubectl(t, path, "config", "view", "--raw", "-o", "jsonpath={.users[0].user.client-certificate-data}")
			if err != nil {
				t.Fatalf("kubectl config view: %v: %s", err, out)
			}
			if want := base64.StdEncoding.EncodeToString(tt.certPEM); out != want {
				t.Errorf("kubectl config view client-certificate-data: got %q, want %q", out, want)
			}

			out, err = kubectl(t, path, "get", "--raw", "/version")
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("kubectl get --raw /version: got error %v, want error %v; output:\n%s", err, tt.wantErr, out)
			}
			if !tt.wantErr && out != tt.wantOut || tt.wantErr && !strings.Contains(out, tt.wantOut) {
				t.Errorf("kubectl get --raw /version: got output %q, want %q", out, tt.wantOut)
			}
			t.Logf("kubectl get --raw /version: %s", out)
		})
	}
	t.Cleanup(func() {
		// The dispatcher asks /version, learns minor 32, and runs kubectl 1.32,
		// both with the admin certificate.
		agents := srv.userAgents()
		t.Logf("User-Agents answered: %q", agents)
		if !slices.ContainsFunc(agents, func(a string) bool { return strings.HasPrefix(a, "kubectl/v1.32") }) {
			t.Errorf("User-Agents answered: got %q, want one of kubectl/v1.32", agents)
		}
	})
}

func TestKubeconfig(t *testing.T) {
	ca := newCA(t)
	certPEM, keyPEM, err := ca.IssueClient("system:admin", []string{"system:masters"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data, err := pki.Kubeconfig("https://10.0.0.1:6443", ca.CertPEM(), certPEM, keyPEM, "skiff", "admin", "skiff-admin")
	if err != nil {
		t.Fatalf("Kubeconfig: %v", err)
	}
	var cfg struct {
		APIVersion     string `json:"apiVersion"`
		Kind           string `json:"kind"`
		CurrentContext string `json:"current-context"`
		Clusters       []struct {
			Name    string `json:"name"`
			Cluster struct {
				Server string `json:"server"`
				CAData []byte `json:"certificate-authority-data"`
			} `json:"cluster"`
		} `json:"clusters"`
		Users []struct {
			Name string `json:"name"`
			User struct {
				CertData []byte `json:"client-certificate-data"`
				KeyData  []byte `json:"client-key-data"`
			} `json:"user"`
		} `json:"users"`
		Contexts []struct {
			Name    string `json:"name"`
			Context struct {
				Cluster string `json:"cluster"`
				User    string `json:"user"`
			} `json:"context"`
		} `json:"contexts"`
	}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatalf("parse kubeconfig: %v\n%s", err, data)
	}
	if len(cfg.Clusters) != 1 || len(cfg.Users) != 1 || len(cfg.Contexts) != 1 {
		t.Fatalf("kubeconfig: got %d clusters, %d users, %d contexts, want 1 each:\n%s", len(cfg.Clusters), len(cfg.Users), len(cfg.Contexts), data)
	}
	for _, c := range []struct{ field, got, want string }{
		{"apiVersion", cfg.APIVersion, "v1"},
		{"kind", cfg.Kind, "Config"},
		{"current-context", cfg.CurrentContext, "skiff-admin"},
		{"clusters[0].name", cfg.Clusters[0].Name, "skiff"},
		{"clusters[0].cluster.server", cfg.Clusters[0].Cluster.Server, "https://10.0.0.1:6443"},
		{"clusters[0].cluster.certificate-authority-data", string(cfg.Clusters[0].Cluster.CAData), string(ca.CertPEM())},
		{"users[0].name", cfg.Users[0].Name, "admin"},
		{"users[0].user.client-certificate-data", string(cfg.Users[0].User.CertData), string(certPEM)},
		{"users[0].user.client-key-data", string(cfg.Users[0].User.KeyData), string(keyPEM)},
		{"contexts[0].name", cfg.Contexts[0].Name, "skiff-admin"},
		{"contexts[0].context.cluster", cfg.Contexts[0].Context.Cluster, "skiff"},
		{"contexts[0].context.user", cfg.Contexts[0].Context.User, "admin"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.field, c.got, c.want)
		}
	}

	otherCert, otherKey, err := ca.IssueClient("alice", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name                   string
		server                 string
		caPEM, certPEM, keyPEM []byte
		cluster                string
	}{
		{"http server", "http://10.0.0.1:6443", ca.CertPEM(), certPEM, keyPEM, "skiff"},
		{"no host", "https://", ca.CertPEM(), certPEM, keyPEM, "skiff"},
		{"empty cluster name", "https://10.0.0.1:6443", ca.CertPEM(), certPEM, keyPEM, ""},
		{"no CA", "https://10.0.0.1:6443", nil, certPEM, keyPEM, "skiff"},
		{"key of another certificate", "https://10.0.0.1:6443", ca.CertPEM(), certPEM, otherKey, "skiff"},
		{"certificate without key", "https://10.0.0.1:6443", ca.CertPEM(), otherCert, nil, "skiff"},
	}
	for _, tt := range bad {
		if _, err := pki.Kubeconfig(tt.server, tt.caPEM, tt.certPEM, tt.keyPEM, tt.cluster, "admin", "skiff"); err == nil {
			t.Errorf("Kubeconfig(%s): got nil error, want one", tt.name)
		}
	}
}

func TestWriteKubeconfig(t *testing.T) {
	ca := newCA(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.kubeconfig")
	if err := os.WriteFile(path, []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"first", "second"} {
		certPEM, keyPEM, err := ca.IssueClient(user, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.WriteKubeconfig(path, "https://127.0.0.1:6443", ca.CertPEM(), certPEM, keyPEM, "skiff", "admin", "skiff"); err != nil {
			t.Fatalf("WriteKubeconfig(%s): %v", user, err)
		}
		want, err := pki.Kubeconfig("https://127.0.0.1:6443", ca.CertPEM(), certPEM, keyPEM, "skiff", "admin", "skiff")
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got file\n%s\nwant\n%s", user, got, want)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode(), os.FileMode(0o600); got != want {
			t.Errorf("%s: got mode %v, want %v", user, got, want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 1 {
			t.Errorf("%s: got %d files in the directory (%v), want only the kubeconfig", user, len(entries), entries)
		}
	}
	// An invalid kubeconfig leaves the file as it was.
	before, _ := os.ReadFile(path)
	if err := pki.WriteKubeconfig(path, "http://127.0.0.1:6443", ca.CertPEM(), nil, nil, "skiff", "admin", "skiff"); err == nil {
		t.Errorf("WriteKubeconfig with an http server: got nil error, want one")
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
		t.Errorf("kubeconfig after a failed write: got it changed, want it unchanged")
	}
	if err := pki.WriteKubeconfig(filepath.Join(dir, "missing", "kc"), "https://127.0.0.1:6443", ca.CertPEM(), nil, nil, "skiff", "admin", "skiff"); err == nil {
		t.Errorf("WriteKubeconfig into a missing directory: got nil error, want one")
	}
}

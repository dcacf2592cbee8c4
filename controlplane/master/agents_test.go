package master

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPodLogsThroughAgent: `kubectl logs` reaches the agent of the pod's
// node through the API server, which presents its own client certificate
// of the cluster CA and verifies the agent's.
func TestPodLogsThroughAgent(t *testing.T) {
	dataDir, _ := startMaster(t)
	ca, err := LoadCA(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServing([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	agent := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := r.TLS.VerifiedChains[0][0].Subject.CommonName
		fmt.Fprintf(w, "hello from the agent to %s at %s\n", user, r.URL.Path)
	}))
	agent.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool()}
	agent.StartTLS()
	t.Cleanup(agent.Close)
	_, port, _ := net.SplitHostPort(agent.Listener.Addr().String())

	kc := KubeconfigPath(dataDir)
	manifest := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(`apiVersion: v1
kind: Node
metadata: {name: n1}
status:
  addresses: [{type: InternalIP, address: 127.0.0.1}]
  daemonEndpoints: {kubeletEndpoint: {Port: %s}}
---
apiVersion: v1
kind: Pod
metadata: {name: p1, namespace: default}
spec:
  nodeName: n1
  containers: [{name: main, image: busybox}]
`, port)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := kubectl(t, kc, "create", "-f", manifest); err != nil {
		t.Fatalf("kubectl create: %v\n%s", err, out)
	}
	out, err := kubectl(t, kc, "logs", "p1")
	if err != nil || !strings.Contains(out, "hello from the agent to "+APIServerUser+" at /containerLogs/default/p1/main") {
		t.Fatalf("kubectl logs: %v\n%s", err, out)
	}
}

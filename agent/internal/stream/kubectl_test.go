package stream

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fakeAPIServer is the least of an API server that kubectl needs for
// logs, exec and port-forward of pod default/p1: legacy discovery, GET of
// the pod, and the pod subresources proxied to the agent at the kubelet's
// paths with the API server's client certificate, as
// controlplane/internal/apiserver's proxyToAgent does. It returns a
// kubeconfig path.
func fakeAPIServer(t *testing.T, e *env) string {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:      e.pki.pool,
		Certificates: []tls.Certificate{e.pki.tlsCert(t, DefaultAllowedUser, false)},
	}}
	t.Cleanup(tr.CloseIdleConnections)
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "p1", Namespace: "default", UID: "u1"},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "main", Image: "busybox", Stdin: true}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	writeJSON := func(w http.ResponseWriter, v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	const podPath = "/api/v1/namespaces/default/pods/p1"
	api := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case p == "/api":
			writeJSON(w, &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
		case p == "/apis":
			writeJSON(w, &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}})
		case p == "/api/v1":
			writeJSON(w, &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: "v1", APIResources: []metav1.APIResource{
				{Name: "pods", Namespaced: true, Kind: "Pod", Verbs: metav1.Verbs{"get", "list"}},
				{Name: "pods/exec", Namespaced: true, Kind: "PodExecOptions", Verbs: metav1.Verbs{"create", "get"}},
				{Name: "pods/log", Namespaced: true, Kind: "Pod", Verbs: metav1.Verbs{"get"}},
				{Name: "pods/portforward", Namespaced: true, Kind: "PodPortForwardOptions", Verbs: metav1.Verbs{"create", "get"}},
			}})
		case p == podPath:
			writeJSON(w, pod)
		case strings.HasPrefix(p, podPath+"/"):
			q := r.URL.Query()
			agentPath := map[string]string{
				"log": "/containerLogs/default/p1/main", "exec": "/exec/default/p1/main",
				"attach": "/attach/default/p1/main", "portforward": "/portForward/default/p1",
			}[strings.TrimPrefix(p, podPath+"/")]
			q.Del("container")
			target := &url.URL{Scheme: "https", Host: e.addr, Path: agentPath, RawQuery: q.Encode()}
			(&httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					pr.Out.URL = target
					pr.Out.Host = e.addr
					pr.Out.Header.Del("Authorization")
				},
				Transport:     tr,
				FlushInterval: -1,
			}).ServeHTTP(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	api.StartTLS()
	t.Cleanup(api.Close)
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	err := os.WriteFile(kc, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u, namespace: default}}]
current-context: c
`, api.URL)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return kc
}

func kubectlCmd(t *testing.T, kc string, args ...string) *exec.Cmd {
	home := t.TempDir()
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kc, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "HOME="+home, "KUBECONFIG=")
	return cmd
}

// TestKubectl: the real kubectl (which tries WebSocket first for exec and
// port-forward) through an API-server-like proxy.
func TestKubectl(t *testing.T) {
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	netns := testNetNS(t)
	podPort := echoServerIn(t, netns)
	b := &fakeBackend{logDir: t.TempDir(), netns: netns}
	e := startServer(t, b)
	kc := fakeAPIServer(t, e)
	writeRecords(t, filepath.Join(b.logDir, "default_p1", "main", "1.log"), line(time.Now(), "one"), line(time.Now(), "two"))

	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		cmd := kubectlCmd(t, kc, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		name, stdin string
		args        []string
		want        string
		exitCode    int
	}{
		{"logs", "", []string{"logs", "p1"}, "one\ntwo\n", 0},
		{"logs tail", "", []string{"logs", "p1", "--tail=1"}, "two\n", 0},
		{"exec", "", []string{"exec", "p1", "--", "echo", "hi", "there"}, "hi there\n", 0},
		{"exec stdin", "typed in\n", []string{"exec", "-i", "p1", "--", "cat"}, "typed in\n", 0},
		{"exec exit code", "", []string{"exec", "p1", "--", "exit", "7"}, "bye\ncommand terminated with exit code 7\n", 7},
		{"attach", "hello\n", []string{"attach", "-i", "p1"}, "attached\nhello\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(tc.stdin, tc.args...)
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.exitCode || !strings.Contains(out, tc.want) {
				t.Fatalf("got exit %d, output %q; want exit %d, output with %q", code, out, tc.exitCode, tc.want)
			}
		})
	}

	t.Run("logs -f", func(t *testing.T) {
		b.mu.Lock()
		b.active = true
		b.mu.Unlock()
		cmd := kubectlCmd(t, kc, "logs", "-f", "--tail=1", "p1")
		stdout, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdout.Close()
		cmd.Stdout = pw
		err = cmd.Start()
		pw.Close()
		if err != nil {
			t.Fatal(err)
		}
		exited, done := make(chan error, 1), make(chan struct{})
		go func() {
			defer close(done)
			exited <- cmd.Wait()
		}()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-done
		})
		r := bufio.NewReader(stdout)
		expect := func(want string) {
			t.Helper()
			if got, err := r.ReadString('\n'); err != nil || got != want {
				t.Fatalf("got %q, %v; want %q", got, err, want)
			}
		}
		expect("two\n")
		writeRecords(t, filepath.Join(b.logDir, "default_p1", "main", "1.log"), line(time.Now(), "three"))
		expect("three\n")
		// The container exits: kubectl logs -f ends by itself.
		b.mu.Lock()
		b.active = false
		b.mu.Unlock()
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("kubectl logs -f: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("kubectl logs -f did not end after the container exited")
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		cmd := kubectlCmd(t, kc, "port-forward", "--address=127.0.0.1", "pod/p1", fmt.Sprintf(":%d", podPort))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
		})
		lines := bufio.NewScanner(stdout)
		re := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) ->`)
		var local string
		for lines.Scan() {
			if m := re.FindStringSubmatch(lines.Text()); m != nil {
				local = m[1]
				break
			}
		}
		if local == "" {
			t.Fatal("kubectl port-forward did not say where it listens")
		}
		go io.Copy(io.Discard, stdout)
		c, err := net.Dial("tcp", "127.0.0.1:"+local)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintln(c, "ping")
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != "pod says: ping\n" {
			t.Fatalf("got %q, %v; want %q", got, err, "pod says: ping\n")
		}
	})
}

package apiserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/controlplane/internal/registry"
	"github.com/skiff-sh/skiff/raftstore"
)

// startServer runs a single-node raftstore, a registry over it and the API
// server on an httptest server, with the "default" namespace created once
// the store has a leader.
func startServer(t *testing.T) *httptest.Server {
	t.Helper()
	_, ts := startAPIServer(t)
	return ts
}

// startAPIServer is startServer that also returns the Server.
func startAPIServer(t *testing.T) (*Server, *httptest.Server) {
	t.Helper()
	return startAPIServerWith(t, nil)
}

// startAPIServerWith is startAPIServer with a Config changed by configure.
func startAPIServerWith(t *testing.T, configure func(*Config)) (*Server, *httptest.Server) {
	t.Helper()
	cfg := raftstore.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.BindAddr, cfg.Bootstrap = "solo", t.TempDir(), "127.0.0.1:0", true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 200*time.Millisecond, 200*time.Millisecond, 100*time.Millisecond
	rs, err := raftstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rs.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("store Run: %v", err)
		}
	})

	scheme := NewScheme()
	st, err := registry.New(registry.Config{KV: rs, Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	scfg := DefaultConfig()
	scfg.Store, scfg.Scheme = st, scheme
	if configure != nil {
		configure(&scfg)
	}
	srv, err := New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	nsRes := srv.byGV["v1"]["namespaces"].reg
	deadline := time.Now().Add(15 * time.Second)
	for {
		cctx, ccancel := context.WithTimeout(t.Context(), time.Second)
		_, err := st.Create(cctx, nsRes, "", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, registry.CreateOptions{})
		ccancel()
		// AlreadyExists: an earlier attempt timed out here but was applied.
		if err == nil || apierrors.IsAlreadyExists(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating namespace default: %v after 15s, want success", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return srv, ts
}

// kubectl runs the real kubectl against a server, with its home, kubeconfig
// and discovery cache in temporary directories.
type kubectl struct {
	home, kubeconfig, cache string
}

func newKubectl(t *testing.T, server string) *kubectl {
	t.Helper()
	if _, err := exec.LookPath("kubectl"); err != nil {
		t.Skip("kubectl is not on PATH")
	}
	dir := t.TempDir()
	k := &kubectl{home: filepath.Join(dir, "home"), kubeconfig: filepath.Join(dir, "kubeconfig"), cache: filepath.Join(dir, "cache")}
	if err := os.Mkdir(k.home, 0o700); err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
users:
- name: test
  user: {}
contexts:
- name: test
  context:
    cluster: test
    user: test
    namespace: default
current-context: test
`, server)
	if err := os.WriteFile(k.kubeconfig, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return k
}

// kubectlStep is one kubectl command of a scripted test and what it must print.
type kubectlStep struct {
	args     []string
	wantCode int
	wantOut  []string // regular expressions stdout must match
	wantErr  string   // a substring of stderr
}

// runSteps runs the steps in order; a wrong exit code ends the test.
func (k *kubectl) runSteps(t *testing.T, steps []kubectlStep) {
	t.Helper()
	for _, s := range steps {
		out, errOut, code := k.run(t, s.args...)
		cmd := "kubectl " + strings.Join(s.args, " ")
		if code != s.wantCode {
			t.Fatalf("%s: got exit code %d, want %d\nstdout: %s\nstderr: %s", cmd, code, s.wantCode, out, errOut)
		}
		for _, re := range s.wantOut {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("%s: got stdout %q, want it to match %q (stderr %q)", cmd, out, re, errOut)
			}
		}
		if !strings.Contains(errOut, s.wantErr) {
			t.Errorf("%s: got stderr %q, want it to contain %q", cmd, errOut, s.wantErr)
		}
	}
}

func (k *kubectl) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", k.kubeconfig, "--cache-dir", k.cache}, args...)...)
	cmd.Env = []string{"HOME=" + k.home, "PATH=" + os.Getenv("PATH")}
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	default:
		t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// TestKubectl drives the server with the real kubectl, one step after the
// other: each step's output must match its patterns.
func TestKubectl(t *testing.T) {
	ts := startServer(t)
	k := newKubectl(t, ts.URL)
	manifest := filepath.Join(t.TempDir(), "cm.yaml")
	if err := os.WriteFile(manifest, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c2\n  namespace: t1\ndata:\n  k: v\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	steps := []kubectlStep{
		{args: []string{"version"}, wantOut: []string{`Server Version: v1\.32\.4`}},
		{args: []string{"create", "namespace", "t1"}, wantOut: []string{`namespace/t1 created`}},
		{args: []string{"get", "ns", "t1", "-o", "jsonpath={.status.phase}"}, wantOut: []string{`^Active$`}},
		{args: []string{"get", "ns"}, wantOut: []string{`NAME\s+STATUS\s+AGE`, `\nt1\s+Active\s+\d+s`}},
		{args: []string{"-n", "t1", "create", "configmap", "c1", "--from-literal=a=b"}, wantOut: []string{`configmap/c1 created`}},
		{args: []string{"-n", "t1", "get", "configmap", "c1", "-o", "json"}, wantOut: []string{`"a": "b"`, `"kind": "ConfigMap"`, `"resourceVersion": "\d+"`}},
		{args: []string{"-n", "t1", "get", "cm"}, wantOut: []string{`NAME\s+DATA\s+AGE`, `\nc1\s+1\s+\d+s`}},
		{args: []string{"-n", "t1", "label", "cm", "c1", "x=y"}, wantOut: []string{`configmap/c1 labeled`}},
		{args: []string{"-n", "t1", "annotate", "cm", "c1", "note=hi"}, wantOut: []string{`configmap/c1 annotated`}},
		{args: []string{"-n", "t1", "get", "cm", "-l", "x=y", "-o", "name"}, wantOut: []string{`^configmap/c1\n$`}},
		{args: []string{"-n", "t1", "get", "cm", "-l", "x=z", "-o", "name"}, wantOut: []string{`^$`}},
		{args: []string{"get", "cm", "-A", "--field-selector", "metadata.name=c1", "--show-labels"}, wantOut: []string{`NAMESPACE\s+NAME\s+DATA\s+AGE\s+LABELS`, `t1\s+c1\s+1\s+\d+s\s+x=y`}},
		{args: []string{"apply", "--validate=false", "-f", manifest}, wantOut: []string{`configmap/c2 created`}},
		{args: []string{"apply", "--validate=false", "-f", manifest}, wantOut: []string{`configmap/c2 unchanged`}},
		{args: []string{"-n", "t1", "patch", "cm", "c2", "--type=merge", "-p", `{"data":{"k":"merged"}}`}, wantOut: []string{`configmap/c2 patched`}},
		{args: []string{"-n", "t1", "patch", "cm", "c2", "--type=json", "-p", `[{"op":"add","path":"/data/j","value":"json"}]`}, wantOut: []string{`configmap/c2 patched`}},
		{args: []string{"-n", "t1", "get", "cm", "c2", "-o", "jsonpath={.data.k},{.data.j}"}, wantOut: []string{`^merged,json$`}},
		{args: []string{"-n", "t1", "create", "configmap", "c2"}, wantCode: 1, wantErr: `configmaps "c2" already exists`},
		{args: []string{"create", "namespace", "t1"}, wantCode: 1, wantErr: `Error from server (AlreadyExists): namespaces "t1" already exists`},
		{args: []string{"-n", "nope", "create", "configmap", "c3"}, wantCode: 1, wantErr: `namespaces "nope" not found`},
		{args: []string{"-n", "t1", "create", "deployment", "web", "--image=nginx:1.26"}, wantOut: []string{`deployment.apps/web created`}},
		{args: []string{"-n", "t1", "get", "deploy", "web"}, wantOut: []string{`NAME\s+READY\s+UP-TO-DATE\s+AVAILABLE\s+AGE`, `\nweb\s+0/1\s+0\s+0\s+\d+s`}},
		{args: []string{"-n", "t1", "get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"}, wantOut: []string{`^1$`}},
		{args: []string{"-n", "t1", "set", "image", "deploy/web", "nginx=nginx:1.27"}, wantOut: []string{`deployment.apps/web image updated`}},
		{args: []string{"-n", "t1", "get", "deploy", "web", "-o", "jsonpath={.metadata.generation}"}, wantOut: []string{`^2$`}},
		{args: []string{"-n", "t1", "create", "secret", "generic", "s1", "--from-literal=p=q"}, wantOut: []string{`secret/s1 created`}},
		{args: []string{"-n", "t1", "get", "secret", "s1"}, wantOut: []string{`NAME\s+TYPE\s+DATA\s+AGE`, `\ns1\s+Opaque\s+1\s+\d+s`}},
		{args: []string{"-n", "t1", "get", "sa"}, wantErr: `No resources found in t1 namespace.`},
		{args: []string{"-n", "t1", "delete", "cm", "c1"}, wantOut: []string{`configmap "c1" deleted`}},
		{args: []string{"-n", "t1", "get", "cm", "c1"}, wantCode: 1, wantErr: `Error from server (NotFound): configmaps "c1" not found`},
		{args: []string{"-n", "t1", "delete", "deploy", "web", "--cascade=orphan", "--wait=false"}, wantOut: []string{`deployment.apps "web" deleted`}},
		{args: []string{"get", "foo"}, wantCode: 1, wantErr: `the server doesn't have a resource type "foo"`},
		{args: []string{"api-resources"}, wantOut: []string{`\nconfigmaps\s+cm\s+v1\s+true\s+ConfigMap\n`, `\ndeployments\s+deploy\s+apps/v1\s+true\s+Deployment\n`, `\nnamespaces\s+ns\s+v1\s+false\s+Namespace\n`}},
		{args: []string{"api-versions"}, wantOut: []string{`^apps/v1\nauthentication.k8s.io/v1\nauthorization.k8s.io/v1\nbatch/v1\ncoordination.k8s.io/v1\ndiscovery.k8s.io/v1\npolicy/v1\nrbac.authorization.k8s.io/v1\nv1\n$`}},
	}
	k.runSteps(t, steps)
}

// do sends one request and returns the status code and body.
func do(t *testing.T, method, url, contentType, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// mustDo is do that fails the test unless the code is want; it decodes the
// body into out when out is not nil.
func mustDo(t *testing.T, want int, method, url, contentType, body string, out any) {
	t.Helper()
	code, _, b := do(t, method, url, contentType, body)
	if code != want {
		t.Fatalf("%s %s: got %d %s, want %d", method, url, code, b, want)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: decoding %s: %v", method, url, b, err)
		}
	}
}

func TestErrors(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	var cm corev1.ConfigMap
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"e1"},"data":{"a":"1"}}`, &cm)
	mustDo(t, http.StatusOK, "PUT", cms+"/e1", "application/json",
		fmt.Sprintf(`{"metadata":{"name":"e1","resourceVersion":%q},"data":{"a":"2"}}`, cm.ResourceVersion), nil)

	big := `{"metadata":{"name":"big"},"data":{"a":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}}`
	tests := []struct {
		name, method, path, contentType, body string
		accept                                string
		wantCode                              int
		wantReason                            metav1.StatusReason
		wantMessage                           string // a substring
		wantRetryAfter                        string // the Retry-After header
	}{
		{name: "stale resourceVersion", method: "PUT", path: "/api/v1/namespaces/default/configmaps/e1", contentType: "application/json",
			body:     fmt.Sprintf(`{"metadata":{"name":"e1","resourceVersion":%q},"data":{"a":"3"}}`, cm.ResourceVersion),
			wantCode: 409, wantReason: metav1.StatusReasonConflict, wantMessage: `Operation cannot be fulfilled on configmaps "e1": the object has been modified`},
		{name: "body too large", method: "POST", path: "/api/v1/namespaces/default/configmaps", contentType: "application/json", body: big,
			wantCode: 413, wantReason: metav1.StatusReasonRequestEntityTooLarge, wantMessage: "Request entity too large: limit is 3145728"},
		{name: "malformed JSON", method: "POST", path: "/api/v1/namespaces/default/configmaps", contentType: "application/json", body: `{"metadata":`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMessage: `the object provided is unrecognized (must be of type ConfigMap): couldn't get version/kind; json parse error: unexpected end of JSON input ({"metadata":)`},
		{name: "malformed YAML", method: "POST", path: "/api/v1/namespaces/default/configmaps", contentType: "application/yaml", body: "metadata: [\n",
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMessage: `the object provided is unrecognized (must be of type ConfigMap): yaml: line 1: did not find expected node content (6d657461646174613a205b0a)`},
		{name: "strict unknown field", method: "POST", path: "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", contentType: "application/json",
			body: `{"metadata":{"name":"s1"},"bogusField":1}`, wantCode: 400, wantReason: metav1.StatusReasonBadRequest,
			wantMessage: `ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "bogusField"`},
		{name: "wrong kind", method: "POST", path: "/api/v1/namespaces/default/configmaps", contentType: "application/json",
			body: `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s1"}}`, wantCode: 400, wantReason: metav1.StatusReasonBadRequest,
			wantMessage: `Secret in version "v1" cannot be handled as a ConfigMap: converting (v1.Secret) to (core.ConfigMap): unknown conversion`},
		{name: "unsupported content type", method: "POST", path: "/api/v1/namespaces/default/configmaps", contentType: "text/plain", body: `x`,
			wantCode: 415, wantReason: metav1.StatusReasonUnsupportedMediaType, wantMessage: "the body of the request was in an unknown format"},
		{name: "invalid name", method: "POST", path: "/api/v1/namespaces/default/configmaps", contentType: "application/json", body: `{"metadata":{"name":"Bad_Name"}}`,
			wantCode: 422, wantReason: metav1.StatusReasonInvalid, wantMessage: `ConfigMap "Bad_Name" is invalid: metadata.name`},
		{name: "unknown resource", method: "GET", path: "/api/v1/namespaces/default/widgets",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMessage: "the server could not find the requested resource"},
		{name: "unknown group", method: "GET", path: "/apis/widgets.example.com/v1/widgets",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMessage: "the server could not find the requested resource"},
		{name: "unknown path", method: "GET", path: "/nothing/here",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMessage: "the server could not find the requested resource"},
		{name: "missing object", method: "GET", path: "/apis/apps/v1/namespaces/default/deployments/web",
			wantCode: 404, wantReason: metav1.StatusReasonNotFound, wantMessage: `deployments.apps "web" not found`},
		{name: "unsupported verb", method: "PUT", path: "/api/v1/namespaces/default/configmaps", contentType: "application/json", body: `{}`,
			wantCode: 405, wantReason: metav1.StatusReasonMethodNotAllowed, wantMessage: "the server does not allow this method"},
		{name: "unsupported field label", method: "GET", path: "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nodeName%3Dx",
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMessage: `"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"`},
		{name: "unsupported pod field label", method: "GET", path: "/api/v1/namespaces/default/pods?fieldSelector=spec.bogus%3Dx",
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMessage: "field label not supported: spec.bogus"},
		{name: "bad label selector", method: "GET", path: "/api/v1/namespaces/default/configmaps?labelSelector=a%20in",
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest, wantMessage: "unable to parse requirement"},
		{name: "sendInitialEvents without resourceVersionMatch", method: "GET", path: "/api/v1/namespaces/default/configmaps?watch=true&sendInitialEvents=true",
			wantCode: 422, wantReason: metav1.StatusReasonInvalid, wantMessage: "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"},
		{name: "resourceVersionMatch on a watch", method: "GET", path: "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&resourceVersionMatch=NotOlderThan",
			wantCode: 422, wantReason: metav1.StatusReasonInvalid, wantMessage: "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"},
		{name: "bad dryRun", method: "DELETE", path: "/api/v1/namespaces/default/configmaps/e1?dryRun=Some",
			wantCode: 422, wantReason: metav1.StatusReasonInvalid, wantMessage: `DeleteOptions.meta.k8s.io "" is invalid: dryRun: Unsupported value: ["Some"]: supported values: "All"`},
		{name: "bad fieldValidation", method: "POST", path: "/api/v1/namespaces/default/configmaps?fieldValidation=Bogus", contentType: "application/json", body: `{"metadata":{"name":"fv"}}`,
			wantCode: 422, wantReason: metav1.StatusReasonInvalid, wantMessage: `CreateOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "Bogus": supported values: "", "Ignore", "Strict", "Warn"`},
		{name: "uid precondition", method: "DELETE", path: "/api/v1/namespaces/default/configmaps/e1", contentType: "application/json",
			body:     `{"preconditions":{"uid":"not-the-uid"}}`,
			wantCode: 409, wantReason: metav1.StatusReasonConflict, wantMessage: `Precondition failed: UID in precondition: not-the-uid`},
		{name: "server-side apply in CBOR", method: "PATCH", path: "/api/v1/namespaces/default/configmaps/e1?fieldManager=m", contentType: "application/apply-patch+cbor", body: `{}`,
			wantCode: 415, wantReason: metav1.StatusReasonUnsupportedMediaType, wantMessage: "accepted media types include"},
		{name: "invalid JSON patch", method: "PATCH", path: "/api/v1/namespaces/default/configmaps/e1", contentType: "application/json-patch+json", body: `{`,
			wantCode: 400, wantReason: metav1.StatusReasonBadRequest},
		// client-go waits and retries only when the header is there.
		{name: "resourceVersion from the future", method: "GET", path: "/api/v1/namespaces/default/configmaps/e1?resourceVersion=999999999",
			wantCode: 504, wantReason: metav1.StatusReasonTimeout, wantMessage: "Too large resource version: 999999999", wantRetryAfter: "1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, header, body := do(t, tt.method, ts.URL+tt.path, tt.contentType, tt.body)
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("got body %q, want a Status: %v", body, err)
			}
			if code != tt.wantCode || st.Code != int32(tt.wantCode) || st.Reason != tt.wantReason || st.Kind != "Status" || st.Status != metav1.StatusFailure {
				t.Errorf("got %d %+v, want %d with code %d reason %s", code, st, tt.wantCode, tt.wantCode, tt.wantReason)
			}
			if !strings.Contains(st.Message, tt.wantMessage) {
				t.Errorf("got message %q, want it to contain %q", st.Message, tt.wantMessage)
			}
			if ct := header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("got Content-Type %q, want application/json", ct)
			}
			if ra := header.Get("Retry-After"); ra != tt.wantRetryAfter {
				t.Errorf("got Retry-After %q, want %q", ra, tt.wantRetryAfter)
			}
		})
	}

	// Nothing above changed e1 but the first PUT, and dry runs write nothing.
	mustDo(t, http.StatusOK, "DELETE", cms+"/e1?dryRun=All", "", "", nil)
	var got corev1.ConfigMap
	mustDo(t, http.StatusOK, "GET", cms+"/e1", "", "", &got)
	if got.Data["a"] != "2" {
		t.Errorf("got data %v after the errors, want a=2", got.Data)
	}
}

func TestWatch(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	mustDo(t, http.StatusCreated, "POST", cms, "application/json", `{"metadata":{"name":"before"}}`, nil)
	var list corev1.ConfigMapList
	mustDo(t, http.StatusOK, "GET", cms, "", "", &list)
	if list.Kind != "ConfigMapList" || len(list.Items) != 1 {
		t.Fatalf("got list kind %q with %d items, want ConfigMapList with 1", list.Kind, len(list.Items))
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", cms+"?watch=true&allowWatchBookmarks=true&resourceVersion="+list.ResourceVersion, nil)
	// Do returns once the headers arrive: before any event exists, so the
	// server must flush them at once.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/json" {
		t.Fatalf("got %d %q, want 200 application/json", resp.StatusCode, ct)
	}
	if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("got Transfer-Encoding %v, want chunked", resp.TransferEncoding)
	}

	lines := bufio.NewScanner(resp.Body)
	next := func() (string, corev1.ConfigMap) {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch ended: %v", lines.Err())
		}
		var ev struct {
			Type   string           `json:"type"`
			Object corev1.ConfigMap `json:"object"`
		}
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatalf("event %q: %v", lines.Bytes(), err)
		}
		return ev.Type, ev.Object
	}
	want := []struct {
		act       func()
		typ, data string
	}{
		{act: func() {
			mustDo(t, 201, "POST", cms, "application/json", `{"metadata":{"name":"w1"},"data":{"v":"1"}}`, nil)
		}, typ: "ADDED", data: "1"},
		{act: func() {
			mustDo(t, 200, "PATCH", cms+"/w1", "application/merge-patch+json", `{"data":{"v":"2"}}`, nil)
		}, typ: "MODIFIED", data: "2"},
		{act: func() {
			mustDo(t, 200, "PATCH", cms+"/w1", "application/strategic-merge-patch+json", `{"data":{"v":"3"}}`, nil)
		}, typ: "MODIFIED", data: "3"},
		{act: func() { mustDo(t, 200, "DELETE", cms+"/w1", "", "", nil) }, typ: "DELETED", data: "3"},
	}
	for _, w := range want {
		w.act()
		typ, obj := next()
		if typ != w.typ || obj.Name != "w1" || obj.Data["v"] != w.data || obj.Kind != "ConfigMap" || obj.APIVersion != "v1" {
			t.Errorf("got %s %s/%s v=%s, want %s w1 v=%s", typ, obj.Kind, obj.Name, obj.Data["v"], w.typ, w.data)
		}
	}
}

func TestWatchTimeout(t *testing.T) {
	ts := startServer(t)
	start := time.Now()
	code, _, body := do(t, "GET", ts.URL+"/api/v1/namespaces?watch=1&timeoutSeconds=1", "", "")
	if code != 200 {
		t.Fatalf("got %d %s, want 200", code, body)
	}
	// resourceVersion unset: the stream starts with the existing namespace.
	if !strings.Contains(string(body), `"type":"ADDED"`) || !strings.Contains(string(body), `"name":"default"`) {
		t.Errorf("got stream %s, want an ADDED event for namespace default", body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("watch with timeoutSeconds=1 lasted %v", d)
	}

	// With a Table Accept header, each event's object is a one-row Table.
	code, _, body = do(t, "GET", ts.URL+"/api/v1/namespaces?watch=1&timeoutSeconds=1", "", "",
		"Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	var ev struct {
		Type   string
		Object metav1.Table
	}
	if err := json.Unmarshal([]byte(strings.SplitN(string(body), "\n", 2)[0]), &ev); err != nil || code != 200 {
		t.Fatalf("got %d %s (%v), want a watch stream", code, body, err)
	}
	if ev.Type != "ADDED" || ev.Object.Kind != "Table" || len(ev.Object.ColumnDefinitions) != 3 || len(ev.Object.Rows) != 1 || ev.Object.Rows[0].Cells[1] != "Active" {
		t.Errorf("got first event %+v, want ADDED with a Table row: default Active", ev)
	}
}

func TestDiscovery(t *testing.T) {
	ts := startServer(t)
	var v struct{ Major, Minor, GitVersion string }
	mustDo(t, 200, "GET", ts.URL+"/version", "", "", &v)
	if v.Major != "1" || v.Minor != "32" {
		t.Errorf("got /version %+v, want major 1 minor 32", v)
	}
	var versions metav1.APIVersions
	mustDo(t, 200, "GET", ts.URL+"/api", "", "", &versions)
	if len(versions.Versions) != 1 || versions.Versions[0] != "v1" || len(versions.ServerAddressByClientCIDRs) != 1 {
		t.Errorf("got /api %+v, want v1 and one server address", versions)
	}
	var groups metav1.APIGroupList
	mustDo(t, 200, "GET", ts.URL+"/apis", "", "", &groups)
	var gvs []string
	for _, g := range groups.Groups {
		gvs = append(gvs, g.Name+"="+g.PreferredVersion.GroupVersion)
	}
	if got, want := strings.Join(gvs, " "), "apps=apps/v1 batch=batch/v1 policy=policy/v1 rbac.authorization.k8s.io=rbac.authorization.k8s.io/v1 discovery.k8s.io=discovery.k8s.io/v1 coordination.k8s.io=coordination.k8s.io/v1 authentication.k8s.io=authentication.k8s.io/v1 authorization.k8s.io=authorization.k8s.io/v1"; got != want {
		t.Errorf("got /apis groups %s, want %s", got, want)
	}
	tests := []struct {
		path, resource, kind, short string
		namespaced                  bool
	}{
		{"/api/v1", "configmaps", "ConfigMap", "cm", true},
		{"/api/v1", "namespaces", "Namespace", "ns", false},
		{"/api/v1", "nodes", "Node", "no", false},
		{"/apis/apps/v1", "deployments", "Deployment", "deploy", true},
		{"/apis/apps/v1", "daemonsets", "DaemonSet", "ds", true},
		{"/apis/apps/v1", "controllerrevisions", "ControllerRevision", "", true},
		{"/apis/discovery.k8s.io/v1", "endpointslices", "EndpointSlice", "", true},
		{"/apis/coordination.k8s.io/v1", "leases", "Lease", "", true},
	}
	for _, tt := range tests {
		var list metav1.APIResourceList
		mustDo(t, 200, "GET", ts.URL+tt.path, "", "", &list)
		var found *metav1.APIResource
		for i := range list.APIResources {
			if list.APIResources[i].Name == tt.resource {
				found = &list.APIResources[i]
			}
		}
		if found == nil {
			t.Errorf("%s: no %s in %+v", tt.path, tt.resource, list)
			continue
		}
		if found.Kind != tt.kind || found.Namespaced != tt.namespaced || strings.Join(found.ShortNames, ",") != tt.short ||
			!strings.Contains(strings.Join(found.Verbs, ","), "list") || !strings.Contains(strings.Join(found.Verbs, ","), "watch") {
			t.Errorf("%s: got %+v, want kind %s namespaced %v short %s with list and watch", tt.path, found, tt.kind, tt.namespaced, tt.short)
		}
	}
}

func TestTable(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	mustDo(t, 201, "POST", cms, "application/yaml", "metadata:\n  name: t1\n  labels: {a: b}\ndata:\n  x: one\n  z: two\n", nil)
	const accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
	tests := []struct {
		query, wantObjectKind string
	}{
		{"", "PartialObjectMetadata"},
		{"?includeObject=Object", "ConfigMap"},
		{"?includeObject=None", ""},
	}
	for _, tt := range tests {
		code, _, body := do(t, "GET", cms+tt.query, "", "", "Accept", accept)
		var tab metav1.Table
		if err := json.Unmarshal(body, &tab); err != nil || code != 200 {
			t.Fatalf("%s: got %d %s (%v), want a Table", tt.query, code, body, err)
		}
		var cols []string
		for _, c := range tab.ColumnDefinitions {
			cols = append(cols, c.Name)
		}
		if tab.Kind != "Table" || strings.Join(cols, ",") != "Name,Data,Age" || len(tab.Rows) != 1 || tab.ResourceVersion == "" {
			t.Fatalf("%s: got %s, want a Table with columns Name,Data,Age, one row and a resourceVersion", tt.query, body)
		}
		row := tab.Rows[0]
		if row.Cells[0] != "t1" || row.Cells[1] != float64(2) {
			t.Errorf("%s: got cells %v, want t1 2", tt.query, row.Cells)
		}
		var obj metav1.PartialObjectMetadata
		if len(row.Object.Raw) > 0 {
			if err := json.Unmarshal(row.Object.Raw, &obj); err != nil {
				t.Fatal(err)
			}
		}
		if obj.Kind != tt.wantObjectKind || (tt.wantObjectKind != "" && obj.Labels["a"] != "b") {
			t.Errorf("%s: got row object %s, want kind %q with the labels", tt.query, row.Object.Raw, tt.wantObjectKind)
		}
	}
}

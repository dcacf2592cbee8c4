package apiserver

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEviction(t *testing.T) {
	ts := startServer(t)
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"p1"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`, nil)

	code, _, body := do(t, "POST", pods+"/p1/eviction", "application/json", `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"other"}}`)
	if code != 400 || !strings.Contains(string(body), "name in URL does not match name in Eviction object") {
		t.Errorf("eviction with another name: got %d %s, want 400", code, body)
	}
	var st metav1.Status
	mustDo(t, 201, "POST", pods+"/p1/eviction", "application/json", `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p1","namespace":"default"},"deleteOptions":{}}`, &st)
	if st.Status != metav1.StatusSuccess {
		t.Errorf("eviction: got %+v, want Success", st)
	}
	mustDo(t, 404, "GET", pods+"/p1", "", "", nil)
	code, _, body = do(t, "POST", pods+"/p1/eviction", "application/json", `{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p1"}}`)
	if code != 404 || !strings.Contains(string(body), `pods \"p1\" not found`) {
		t.Errorf("eviction of a missing pod: got %d %s, want 404", code, body)
	}
}

func TestPodGracefulDelete(t *testing.T) {
	ts := startServer(t)
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"p1"},"spec":{"nodeName":"n1","containers":[{"name":"c","image":"busybox"}]}}`, nil)
	var p corev1.Pod
	mustDo(t, 200, "DELETE", pods+"/p1", "application/json", `{"propagationPolicy":"Background"}`, &p)
	if p.DeletionTimestamp == nil || p.DeletionGracePeriodSeconds == nil || *p.DeletionGracePeriodSeconds != 30 {
		t.Fatalf("delete of a pod on a node: got %+v, want it held with grace period 30", p.ObjectMeta)
	}
	mustDo(t, 200, "GET", pods+"/p1", "", "", nil)
	code, _, body := do(t, "DELETE", pods+"/p1", "application/json", `{"gracePeriodSeconds":-1}`)
	if code != 422 || !strings.Contains(string(body), "gracePeriodSeconds: Invalid value: -1: must be greater than or equal to 0") {
		t.Errorf("negative grace period: got %d %s, want 422", code, body)
	}
	// kubectl delete --force --grace-period=0
	mustDo(t, 200, "DELETE", pods+"/p1", "application/json", `{"gracePeriodSeconds":0,"propagationPolicy":"Background"}`, nil)
	mustDo(t, 404, "GET", pods+"/p1", "", "", nil)
}

// fakeAgent stands in for a node's agent: it answers the kubelet paths the
// API server proxies to, echoing what it got, and upgrades /exec/ requests
// to a raw stream that echoes bytes back.
func fakeAgent(t *testing.T) *httptest.Server {
	t.Helper()
	agent := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			http.Error(w, "the client's credentials leaked to the agent", http.StatusBadRequest)
			return
		}
		if strings.HasPrefix(r.URL.Path, "/exec/") && r.Header.Get("Upgrade") == "test-stream" {
			conn, rw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(rw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: test-stream\r\n\r\n")
			rw.Flush()
			line, _ := rw.ReadString('\n')
			fmt.Fprintf(rw, "echo %s %s", r.URL.Path, line)
			rw.Flush()
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "%s %s?%s", r.Method, r.URL.Path, r.URL.RawQuery)
	}))
	t.Cleanup(agent.Close)
	return agent
}

func TestPodStreamsProxiedToAgent(t *testing.T) {
	agent := fakeAgent(t)
	_, ts := startAPIServerWith(t, func(c *Config) { c.AgentTransport = agent.Client().Transport })
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(agent.URL, "https://"))
	mustDo(t, 201, "POST", ts.URL+"/api/v1/nodes", "application/json", fmt.Sprintf(
		`{"metadata":{"name":"n1"},"status":{"addresses":[{"type":"InternalIP","address":%q}],"daemonEndpoints":{"kubeletEndpoint":{"Port":%s}}}}`, host, port), nil)
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"one"},"spec":{"nodeName":"n1","containers":[{"name":"main","image":"busybox"}]}}`, nil)
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"two"},"spec":{"nodeName":"n1","containers":[{"name":"a","image":"busybox"},{"name":"b","image":"busybox"}]}}`, nil)
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"pending"},"spec":{"containers":[{"name":"main","image":"busybox"}]}}`, nil)
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"lost"},"spec":{"nodeName":"gone","containers":[{"name":"main","image":"busybox"}]}}`, nil)

	tests := []struct {
		method, path string
		wantCode     int
		want         string
	}{
		{"GET", "/one/log?follow=true&tailLines=2", 200, "GET /containerLogs/default/one/main?follow=true&tailLines=2"},
		{"GET", "/two/log?container=b", 200, "GET /containerLogs/default/two/b?"},
		{"GET", "/two/log", 400, "a container name must be specified for pod two, choose one of: [a b]"},
		{"GET", "/two/log?container=c", 400, "container c is not valid for pod two"},
		{"GET", "/pending/log", 200, ""},
		{"POST", "/pending/exec?command=ls", 400, "pod pending does not have a host assigned"},
		{"GET", "/lost/exec?command=ls", 404, `nodes \"gone\" not found`},
		{"GET", "/one/exec?command=ls&command=-l&stdout=true", 200, "GET /exec/default/one/main?command=ls&command=-l&stdout=true"},
		{"POST", "/one/attach?stdin=true", 200, "POST /attach/default/one/main?stdin=true"},
		{"GET", "/one/portforward?ports=80", 200, "GET /portForward/default/one?ports=80"},
		{"PUT", "/one/log", 405, ""},
		{"GET", "/nope/log", 404, `pods \"nope\" not found`},
	}
	for _, tt := range tests {
		code, _, body := do(t, tt.method, pods+tt.path, "", "", "Authorization", "Bearer secret")
		if code != tt.wantCode || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s: got %d %q, want %d with %q", tt.method, tt.path, code, body, tt.wantCode, tt.want)
		}
	}

	// An upgraded stream (exec over WebSocket or SPDY) passes through both ways.
	u, _ := url.Parse(ts.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /api/v1/namespaces/default/pods/one/exec?command=sh HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: test-stream\r\n\r\n", u.Host)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: got %d, want 101", resp.StatusCode)
	}
	fmt.Fprintf(conn, "hello\n")
	got, _ := io.ReadAll(br)
	if string(got) != "echo /exec/default/one/main hello\n" {
		t.Errorf("upgraded stream: got %q", got)
	}
}

func TestPodStreamsWithoutAgentCredentials(t *testing.T) {
	ts := startServer(t)
	mustDo(t, 201, "POST", ts.URL+"/api/v1/nodes", "application/json", `{"metadata":{"name":"n1"},"status":{"addresses":[{"type":"InternalIP","address":"127.0.0.1"}]}}`, nil)
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"one"},"spec":{"nodeName":"n1","containers":[{"name":"main","image":"busybox"}]}}`, nil)
	code, _, body := do(t, "GET", pods+"/one/log", "", "")
	if code != 503 || !strings.Contains(string(body), "no credentials for node agents") {
		t.Errorf("got %d %s, want 503", code, body)
	}
}

// TestPodAdmissionDefaults: what kube-apiserver's default admission sets on
// a new pod (service account, priority) and its QoS class.
func TestPodAdmissionDefaults(t *testing.T) {
	ts := startServer(t)
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	var p corev1.Pod
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"p1"},"spec":{"containers":[{"name":"c","image":"busybox","resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}}`, &p)
	if p.Spec.ServiceAccountName != "default" || p.Spec.DeprecatedServiceAccount != "default" || p.Spec.Priority == nil || *p.Spec.Priority != 0 ||
		p.Spec.PreemptionPolicy == nil || *p.Spec.PreemptionPolicy != corev1.PreemptLowerPriority || p.Status.QOSClass != corev1.PodQOSGuaranteed {
		t.Errorf("got serviceAccountName %q serviceAccount %q priority %v preemption %v qos %q, want default, default, 0, PreemptLowerPriority, Guaranteed",
			p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount, p.Spec.Priority, p.Spec.PreemptionPolicy, p.Status.QOSClass)
	}
	mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"p2"},"spec":{"serviceAccountName":"builder","containers":[{"name":"c","image":"busybox"}]}}`, &p)
	if p.Spec.ServiceAccountName != "builder" || p.Spec.DeprecatedServiceAccount != "builder" || p.Status.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("got serviceAccountName %q serviceAccount %q qos %q, want builder, builder, BestEffort", p.Spec.ServiceAccountName, p.Spec.DeprecatedServiceAccount, p.Status.QOSClass)
	}
}

// TestPodDefaultTolerations: DefaultTolerationSeconds admission adds the
// not-ready and unreachable NoExecute tolerations (30 s by default) unless
// the pod already tolerates that taint's NoExecute effect.
func TestPodDefaultTolerations(t *testing.T) {
	ts := startServer(t)
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	for _, tc := range []struct {
		name, tolerations string
		want              map[string]string // key → tolerationSeconds ("" = none)
	}{
		{"none", `[]`, map[string]string{NotReadyTaint: "30", UnreachableTaint: "30"}},
		{"own-unreachable", `[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":5}]`,
			map[string]string{NotReadyTaint: "30", UnreachableTaint: "5"}},
		{"any-effect", `[{"key":"node.kubernetes.io/not-ready","operator":"Exists"}]`, map[string]string{NotReadyTaint: "", UnreachableTaint: "30"}},
		{"everything", `[{"operator":"Exists"}]`, map[string]string{"": ""}},
		{"noschedule-only", `[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoSchedule"}]`,
			map[string]string{NotReadyTaint: "30", UnreachableTaint: "30"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p corev1.Pod
			mustDo(t, 201, "POST", pods, "application/json", `{"metadata":{"name":"tol-`+tc.name+`"},"spec":{"tolerations":`+tc.tolerations+`,"containers":[{"name":"c","image":"busybox"}]}}`, &p)
			got := map[string]string{}
			for _, tol := range p.Spec.Tolerations {
				if tol.Effect == corev1.TaintEffectNoSchedule {
					continue
				}
				s := ""
				if tol.TolerationSeconds != nil {
					s = fmt.Sprint(*tol.TolerationSeconds)
				}
				got[tol.Key] = s
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got NoExecute tolerations %v, want %v", got, tc.want)
			}
		})
	}
}

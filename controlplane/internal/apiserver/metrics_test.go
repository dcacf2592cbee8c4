package apiserver

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// metricValue returns the value of the sample line that starts with series
// in s's rendered metrics, or "" if there is none.
func metricValue(t *testing.T, s *Server, series string) string {
	t.Helper()
	var b strings.Builder
	if err := s.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(b.String()) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// waitMetric polls until series has value want, failing after 5s.
func waitMetric(t *testing.T, s *Server, series, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := metricValue(t, s, series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %q after 5s, want %q", series, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMetrics(t *testing.T) {
	srv, ts := startAPIServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	mustDo(t, 201, "POST", cms, mediaJSON, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"m"}}`, nil)
	mustDo(t, 200, "GET", cms+"/m", "", "", nil)
	mustDo(t, 404, "GET", cms+"/missing", "", "", nil)
	mustDo(t, 404, "GET", ts.URL+"/api/v1/nosuchresource", "", "", nil)
	mustDo(t, 200, "GET", ts.URL+"/api/v1/configmaps", "", "", nil)

	const cm = `group="",version="v1",resource="configmaps",subresource=""`
	watch := `apiserver_longrunning_requests{verb="watch",` + cm + `,scope="namespace"}`
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", cms+"?watch=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("watch: got %d, want 200", resp.StatusCode)
	}
	waitMetric(t, srv, watch, "1")
	// The watch streams through the recorder: an event reaches the client.
	mustDo(t, 201, "POST", cms, mediaJSON, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"n"}}`, nil)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, `"ADDED"`) {
		t.Fatalf("watch event: got %q, %v, want an ADDED event", line, err)
	}
	cancel()
	resp.Body.Close()
	waitMetric(t, srv, watch, "0")

	for _, c := range []struct{ series, want string }{
		{`apiserver_request_total{verb="create",` + cm + `,scope="namespace",code="201"}`, "2"},
		{`apiserver_request_total{verb="get",` + cm + `,scope="resource",code="200"}`, "1"},
		{`apiserver_request_total{verb="get",` + cm + `,scope="resource",code="404"}`, "1"},
		{`apiserver_request_total{verb="list",` + cm + `,scope="cluster",code="200"}`, "1"},
		{`apiserver_request_total{verb="watch",` + cm + `,scope="namespace",code="200"}`, "1"},
		{`apiserver_request_total{verb="get",group="",version="",resource="",subresource="",scope="",code="404"}`, "1"},
		{`apiserver_request_duration_seconds_count{verb="get",` + cm + `,scope="resource"}`, "2"},
		{`apiserver_request_duration_seconds_bucket{verb="get",` + cm + `,scope="resource",le="+Inf"}`, "2"},
		{`apiserver_request_duration_seconds_bucket{verb="get",` + cm + `,scope="resource",le="60"}`, "2"},
		// Watches last as long as the client wants: they are not timed.
		{`apiserver_request_duration_seconds_count{verb="watch",` + cm + `,scope="namespace"}`, ""},
	} {
		if got := metricValue(t, srv, c.series); got != c.want {
			t.Errorf("%s: got %q, want %q", c.series, got, c.want)
		}
	}
}

func TestRequestLabels(t *testing.T) {
	srv, _ := startAPIServer(t)
	for _, c := range []struct {
		method, url string
		want        requestLabels
	}{
		{"GET", "/api/v1/namespaces/default/pods?watch=1", requestLabels{"watch", "", "v1", "pods", "", "namespace"}},
		{"DELETE", "/api/v1/namespaces/default/pods", requestLabels{"deletecollection", "", "v1", "pods", "", "namespace"}},
		{"DELETE", "/api/v1/namespaces/default/pods/p", requestLabels{"delete", "", "v1", "pods", "", "resource"}},
		{"PATCH", "/apis/apps/v1/namespaces/ns/deployments/d/scale", requestLabels{"patch", "apps", "v1", "deployments", "scale", "resource"}},
		{"PUT", "/api/v1/namespaces/default/pods/p/status", requestLabels{"update", "", "v1", "pods", "status", "resource"}},
		{"GET", "/api/v1/namespaces/default", requestLabels{"get", "", "v1", "namespaces", "", "resource"}},
		{"GET", "/api/v1/nodes", requestLabels{"list", "", "v1", "nodes", "", "cluster"}},
		{"GET", "/api/v1/namespaces/default/pods/p/whatever", requestLabels{"get", "", "v1", "pods", "", "resource"}},
		{"GET", "/apis/nosuch/v1/things", requestLabels{verb: "get"}},
		{"POST", "/version", requestLabels{verb: "create"}},
	} {
		r, err := http.NewRequest(c.method, c.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := srv.requestLabels(r); got != c.want {
			t.Errorf("%s %s: got %+v, want %+v", c.method, c.url, got, c.want)
		}
	}
}

package apiserver

import (
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// TestAggregatedDiscovery: client-go's discovery client (kubectl's) learns
// every resource from /api and /apis alone, and what it learns is what the
// legacy per-group-version documents say.
func TestAggregatedDiscovery(t *testing.T) {
	srv, _ := startAPIServer(t)
	var mu sync.Mutex
	var paths []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)

	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: ts.URL})
	if err != nil {
		t.Fatal(err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	got := strings.Join(paths, " ")
	mu.Unlock()
	if got != "/api /apis" {
		t.Errorf("discovery requested %s, want only /api /apis", got)
	}

	// The same resources as the legacy documents, with subresources.
	// client-go fills in the group, version and singular name of
	// subresources where the legacy document leaves them implicit.
	describe := func(list *metav1.APIResourceList) []string {
		var out []string
		for _, r := range list.APIResources {
			if gv := r.Group + "/" + r.Version; gv == list.GroupVersion || "/"+list.GroupVersion == gv {
				r.Group, r.Version = "", ""
			}
			if strings.Contains(r.Name, "/") {
				r.SingularName = ""
			}
			out = append(out, strings.Join([]string{r.Name, r.Kind, r.Group, r.Version, strings.Join(r.Verbs, ","), strings.Join(r.ShortNames, ","), strings.Join(r.Categories, ","), boolString(r.Namespaced), r.SingularName}, "|"))
		}
		sort.Strings(out)
		return out
	}
	if len(lists) != len(srv.groups) {
		t.Errorf("got %d group versions, want %d", len(lists), len(srv.groups))
	}
	for _, agg := range lists {
		var legacy metav1.APIResourceList
		path := "/apis/" + agg.GroupVersion
		if agg.GroupVersion == "v1" {
			path = "/api/v1"
		}
		mustDo(t, 200, "GET", ts.URL+path, "", "", &legacy)
		a, l := describe(agg), describe(&legacy)
		if strings.Join(a, "\n") != strings.Join(l, "\n") {
			t.Errorf("%s: aggregated\n%s\nlegacy\n%s", agg.GroupVersion, strings.Join(a, "\n"), strings.Join(l, "\n"))
		}
	}

	// Clients that do not ask get the legacy document.
	code, header, _ := do(t, "GET", ts.URL+"/apis", "", "", "Accept", "application/json")
	if code != 200 || header.Get("Content-Type") != "application/json" {
		t.Errorf("plain /apis: got %d %s", code, header.Get("Content-Type"))
	}
	code, header, _ = do(t, "GET", ts.URL+"/api", "", "", "Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
	if code != 200 || header.Get("Content-Type") != aggregatedMediaType {
		t.Errorf("aggregated /api: got %d %s", code, header.Get("Content-Type"))
	}
}

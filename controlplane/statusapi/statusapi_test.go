package statusapi

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/raftstore"
	"github.com/skiff-sh/skiff/raftstore/storetest"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestEndpoints(t *testing.T) {
	s := storetest.Start(t, "")
	srv := httptest.NewServer(Handler(s, false))
	defer srv.Close()

	if code, body := get(t, srv.URL+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("/healthz = %d %q, want 200 ok", code, body)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get(t, srv.URL+"/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz = %d %q after 15s, want 200", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.Create(ctx, "/k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/k", []byte("v")); err == nil {
		t.Fatal("second Create succeeded")
	}

	code, body := get(t, srv.URL+"/status")
	var st raftstore.Status
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || st.ID != "solo" || st.State != "Leader" || st.Keys != 1 {
		t.Fatalf("/status = %d %s (%v), want solo leading with 1 key", code, body, err)
	}
	code, body = get(t, srv.URL+"/metrics")
	for _, want := range []string{
		"skiff_raft_is_leader 1\n",
		"skiff_store_records 1\n",
		`skiff_store_writes_total{outcome="ok"} 2` + "\n", // a failed compare is still an applied write
		`skiff_store_writes_total{outcome="unknown"} 0` + "\n",
		"skiff_store_write_duration_seconds_count 2\n",
		`skiff_store_write_duration_seconds_bucket{le="+Inf"} 2` + "\n",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q:\n%s", code, want, body)
		}
	}
	if code, _ := get(t, srv.URL+"/debug/pprof/"); code != 404 {
		t.Errorf("/debug/pprof/ with profiling off = %d, want 404", code)
	}
}

// Package statusapi serves a master's health and Raft status over HTTP:
// /healthz (the process is up), /readyz (this node knows a leader),
// /status (the node's view of the cluster as JSON) and /metrics (Prometheus
// text format). The Kubernetes API server will take over the listener;
// these paths stay.
//
//	mux.Handle("/", statusapi.Handler(store, profiling))
package statusapi

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/skiff-sh/skiff/raftstore"
)

// Handler returns the status endpoints of store, plus Go's profiling
// endpoints under /debug/pprof/ when profiling is set (as kube-apiserver's
// --profiling does).
func Handler(store *raftstore.Store, profiling bool) http.Handler {
	mux := http.NewServeMux()
	if profiling {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		st, err := store.Status(ctx)
		switch {
		case err != nil:
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
		case st.LeaderID == "":
			http.Error(w, "not ready: no leader", http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ok\n"))
		}
	})
	mux.HandleFunc("GET /metrics", metricsHandler(store))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		st, err := store.Status(ctx)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	})
	return mux
}

// Package apiserver owns Skiff's Kubernetes REST API: the HTTP handler that
// kubectl and client-go talk to. It routes /api/v1/... and
// /apis/{group}/{version}/... to the resources of its resource table, decodes
// request bodies (JSON, YAML, protobuf), applies patches (JSON patch, merge
// patch, strategic merge patch), streams watches, serves discovery, /version
// and the OpenAPI v3 documents (package openapi), and renders server-side Tables for kubectl get. Storage and
// Kubernetes object semantics (metadata, concurrency, finalizers, selectors,
// paging) are the registry's; this package only speaks the protocol.
//
// The master builds the scheme first, because the registry decodes with it,
// then the server, and mounts its handler on the API listener:
//
//	scheme := apiserver.NewScheme()
//	st, err := registry.New(registry.Config{KV: rs, Scheme: scheme})
//	cfg := apiserver.DefaultConfig()
//	cfg.Store, cfg.Scheme = st, scheme
//	srv, err := apiserver.New(cfg)
//	http.Serve(ln, srv.Handler())
//
// Handler counts every request; Server.WriteMetrics renders the counts in
// the Prometheus text format, for the master to append to its /metrics.
//
// Authentication and TLS are the listener's concern, not this package's.
// The Server has no goroutines of its own: every request, including a watch,
// runs on the goroutine net/http gives it and ends when the client goes away.
package apiserver

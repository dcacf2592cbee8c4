package apiserver

import (
	"net/http"
	"reflect"
	"strings"

	"github.com/skiff-sh/skiff/controlplane/internal/openapi"
)

// newOpenAPI builds the OpenAPI v3 documents of the served resources and
// their lists.
func newOpenAPI(rs []*resource) (*openapi.Documents, error) {
	var kinds []openapi.Kind
	for _, r := range rs {
		kinds = append(kinds, openapi.Kind{GVK: r.reg.Kind, Type: reflect.TypeOf(r.reg.New()).Elem(), Resource: r.gvr.Resource, Namespaced: r.namespaced, CreateOnly: r.review != nil})
		if r.reg.NewList != nil {
			kinds = append(kinds, openapi.Kind{GVK: r.reg.Kind.GroupVersion().WithKind(r.kind + "List"), Type: reflect.TypeOf(r.reg.NewList()).Elem()})
		}
	}
	return openapi.New(kinds)
}

// serveOpenAPI answers GET /openapi/v3 with the index and
// /openapi/v3/{api/v1|apis/{group}/{version}} with a group version's
// document. kubectl caches documents by URL, and the URL carries the hash of
// the content, so a request with the current hash may be cached for good.
func (s *Server) serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/openapi/v3"), "/")
	if path == "" {
		writeRaw(w, s.openapi.Index())
		return
	}
	body, hash, ok := s.openapi.Document(path)
	if !ok {
		writeError(w, notFound())
		return
	}
	if r.URL.Query().Get("hash") == hash {
		w.Header().Set("Cache-Control", "public, immutable")
	}
	w.Header().Set("Etag", `"`+hash+`"`)
	writeRaw(w, body)
}

// writeRaw writes an encoded JSON body with code 200.
func writeRaw(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body) // a client that went away is not an error of ours
}

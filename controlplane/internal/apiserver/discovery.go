package apiserver

import (
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// serveAPIVersions answers GET /api with the legacy (non-aggregated)
// APIVersions; kubectl then asks /api/v1 for the resources.
func (s *Server) serveAPIVersions(w http.ResponseWriter, r *http.Request) {
	addr := s.cfg.Address
	if addr == "" {
		addr = r.Host
	}
	writeJSON(w, http.StatusOK, &metav1.APIVersions{
		TypeMeta:                   metav1.TypeMeta{Kind: "APIVersions"},
		Versions:                   []string{"v1"},
		ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: addr}},
	})
}

// apiGroup returns the discovery entry of a named group; ok is false for
// groups not served.
func (s *Server) apiGroup(name string) (metav1.APIGroup, bool) {
	g := metav1.APIGroup{TypeMeta: metav1.TypeMeta{Kind: "APIGroup", APIVersion: "v1"}, Name: name}
	for _, gv := range s.groups {
		if gv.Group != name || name == "" {
			continue
		}
		v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
		g.Versions = append(g.Versions, v)
		if g.PreferredVersion.Version == "" {
			g.PreferredVersion = v
		}
	}
	return g, len(g.Versions) > 0
}

// serveAPIGroupList answers GET /apis: every named group.
func (s *Server) serveAPIGroupList(w http.ResponseWriter) {
	list := &metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{}}
	seen := map[string]bool{}
	for _, gv := range s.groups {
		if gv.Group == "" || seen[gv.Group] {
			continue
		}
		seen[gv.Group] = true
		g, _ := s.apiGroup(gv.Group)
		g.TypeMeta = metav1.TypeMeta{}
		list.Groups = append(list.Groups, g)
	}
	writeJSON(w, http.StatusOK, list)
}

// serveAPIGroup answers GET /apis/{group}.
func (s *Server) serveAPIGroup(w http.ResponseWriter, r *http.Request, name string) {
	g, ok := s.apiGroup(name)
	if !ok {
		writeError(w, notFound())
		return
	}
	writeJSON(w, http.StatusOK, &g)
}

// serveResourceList answers GET /api/v1 and /apis/{group}/{version}.
func (s *Server) serveResourceList(w http.ResponseWriter, gv schema.GroupVersion) {
	list := &metav1.APIResourceList{
		TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
		GroupVersion: gv.String(),
	}
	for _, r := range s.all {
		if r.gvr.GroupVersion() != gv {
			continue
		}
		list.APIResources = append(list.APIResources, metav1.APIResource{
			Name: r.gvr.Resource, SingularName: r.singular, Namespaced: r.namespaced, Kind: r.kind,
			Verbs: r.verbs, ShortNames: r.shortNames, Categories: r.categories,
		})
		list.APIResources = append(list.APIResources, subresourceDiscovery(r)...)
	}
	writeJSON(w, http.StatusOK, list)
}

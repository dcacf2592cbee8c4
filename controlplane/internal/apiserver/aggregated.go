package apiserver

// Aggregated discovery (apidiscovery.k8s.io/v2): /api and /apis describe
// every resource in one answer when the client asks for it, which saves
// kubectl and client-go one request per group version on a cold cache.

import (
	"mime"
	"net/http"
	"strings"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// aggregatedMediaType is the Content-Type of an aggregated discovery answer.
const aggregatedMediaType = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

// wantsAggregated reports whether the Accept header prefers aggregated
// discovery v2 in JSON: the first acceptable media type decides, as for
// Tables. Clients that do not ask get the legacy documents.
func wantsAggregated(accept string) bool {
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if params["as"] == "APIGroupDiscoveryList" {
			if mt == "application/json" && params["g"] == "apidiscovery.k8s.io" && params["v"] == "v2" {
				return true
			}
			continue // v2beta1, or another encoding: the next choice decides
		}
		return false
	}
	return false
}

// serveAggregated answers GET /api (core, legacy true) or /apis (every
// named group) in the aggregated format.
func (s *Server) serveAggregated(w http.ResponseWriter, legacy bool) {
	list := &apidiscoveryv2.APIGroupDiscoveryList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupDiscoveryList", APIVersion: "apidiscovery.k8s.io/v2"},
		Items:    []apidiscoveryv2.APIGroupDiscovery{},
	}
	byGroup := map[string]int{}
	for _, gv := range s.groups {
		if (gv.Group == "") != legacy {
			continue
		}
		i, ok := byGroup[gv.Group]
		if !ok {
			i = len(list.Items)
			byGroup[gv.Group] = i
			list.Items = append(list.Items, apidiscoveryv2.APIGroupDiscovery{ObjectMeta: metav1.ObjectMeta{Name: gv.Group}})
		}
		list.Items[i].Versions = append(list.Items[i].Versions, apidiscoveryv2.APIVersionDiscovery{
			Version: gv.Version, Resources: s.resourceDiscovery(gv), Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
		})
	}
	writeJSONAs(w, http.StatusOK, aggregatedMediaType, list)
}

// resourceDiscovery describes the resources of gv and their subresources.
func (s *Server) resourceDiscovery(gv schema.GroupVersion) []apidiscoveryv2.APIResourceDiscovery {
	var out []apidiscoveryv2.APIResourceDiscovery
	for _, r := range s.all {
		if r.gvr.GroupVersion() != gv {
			continue
		}
		scope := apidiscoveryv2.ScopeCluster
		if r.namespaced {
			scope = apidiscoveryv2.ScopeNamespace
		}
		kind := gv.WithKind(r.kind)
		d := apidiscoveryv2.APIResourceDiscovery{
			Resource: r.gvr.Resource, ResponseKind: gvkOf(kind), Scope: scope, SingularResource: r.singular,
			Verbs: r.verbs, ShortNames: r.shortNames, Categories: r.categories,
		}
		for _, sub := range subresources(r) {
			k := kind
			if !sub.kind.Empty() {
				k = sub.kind
			}
			d.Subresources = append(d.Subresources, apidiscoveryv2.APISubresourceDiscovery{Subresource: sub.name, ResponseKind: gvkOf(k), Verbs: sub.verbs})
		}
		out = append(out, d)
	}
	return out
}

func gvkOf(k schema.GroupVersionKind) *metav1.GroupVersionKind {
	return &metav1.GroupVersionKind{Group: k.Group, Version: k.Version, Kind: k.Kind}
}

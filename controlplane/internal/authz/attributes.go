package authz

import (
	"net/http"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/validate/content"
	"k8s.io/apimachinery/pkg/fields"
)

// User is who asks: a name and groups, as authentication established them.
type User struct {
	Name   string
	Groups []string
}

// Attributes are what a request asks to do, in the terms of Kubernetes'
// authorization: a verb on a resource (ResourceRequest) or on a URL path.
type Attributes struct {
	User User
	// Verb is get, list, watch, create, update, patch, delete or
	// deletecollection for a resource (or a special verb such as
	// impersonate, bind, escalate); the lower-case HTTP method for a path.
	Verb            string
	ResourceRequest bool
	// Path is the request's URL path (non-resource requests).
	Path string
	// APIGroup ("" for the core group), Resource, Subresource, Namespace
	// and Name say what a resource request is about.
	APIGroup, Resource, Subresource, Namespace, Name string
}

// namespaceSubresources are the subresources of a namespace, which
// /api/v1/namespaces/NAME/ is followed by instead of a resource.
var namespaceSubresources = map[string]bool{"status": true, "finalize": true}

// RequestAttributes reads r's URL and method as kube-apiserver's request
// info does: /api/v1/... and /apis/GROUP/VERSION/... are resource
// requests (the verb from the method: a GET without a name is a list, or a
// watch with ?watch=true; a DELETE without a name a deletecollection);
// anything else, /api and /apis/GROUP/VERSION included, is a path. The
// user is left empty.
//
// A GET of pods/exec, pods/attach or pods/portforward (kubectl's
// WebSocket upgrade) is a create, as kube-apiserver checks it.
func RequestAttributes(r *http.Request) Attributes {
	a := Attributes{Path: r.URL.Path, Verb: strings.ToLower(r.Method)}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) < 3 || (parts[0] != "api" && parts[0] != "apis") {
		return a
	}
	prefix := parts[0]
	parts = parts[1:]
	if prefix == "apis" {
		if len(parts) < 3 {
			return a
		}
		a.APIGroup, parts = parts[0], parts[1:]
	}
	parts = parts[1:] // the version
	a.ResourceRequest = true
	byMethod := true
	if parts[0] == "watch" || parts[0] == "proxy" {
		if len(parts) < 2 {
			// kube-apiserver cannot tell what such a path is about either.
			a.ResourceRequest, a.Verb = false, strings.ToLower(r.Method)
			return a
		}
		a.Verb, parts, byMethod = parts[0], parts[1:], false
	} else {
		switch r.Method {
		case http.MethodPost:
			a.Verb = "create"
		case http.MethodGet, http.MethodHead:
			a.Verb = "get"
		case http.MethodPut:
			a.Verb = "update"
		case http.MethodPatch:
			a.Verb = "patch"
		case http.MethodDelete:
			a.Verb = "delete"
		default:
			a.Verb = ""
		}
	}
	if parts[0] == "namespaces" && len(parts) > 1 {
		a.Namespace = parts[1]
		if len(parts) > 2 && !namespaceSubresources[parts[2]] {
			parts = parts[2:]
		}
	}
	a.Resource = parts[0]
	if len(parts) >= 2 {
		a.Name = parts[1]
	}
	if len(parts) >= 3 && a.Verb != "proxy" {
		a.Subresource = parts[2]
	}
	if !byMethod {
		return a
	}
	q := r.URL.Query()
	switch {
	case a.Name == "" && a.Verb == "get":
		a.Verb = "list"
		if w, err := strconv.ParseBool(q.Get("watch")); err == nil && w {
			a.Verb = "watch"
		}
		// A list or watch of one object by name is about that object, as
		// kube-apiserver decides (so resourceNames rules apply).
		if sel, err := fields.ParseSelector(q.Get("fieldSelector")); err == nil {
			if name, ok := sel.RequiresExactMatch("metadata.name"); ok && len(content.IsPathSegmentName(name)) == 0 {
				a.Name = name
			}
		}
	case a.Name == "" && a.Verb == "delete":
		a.Verb = "deletecollection"
	case a.Verb == "get" && a.Resource == "pods" && (a.Subresource == "exec" || a.Subresource == "attach" || a.Subresource == "portforward"):
		a.Verb = "create"
	}
	return a
}

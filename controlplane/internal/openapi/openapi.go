package openapi

import (
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Kind is one kind to document.
type Kind struct {
	GVK schema.GroupVersionKind
	// Type is the Go struct of the kind (corev1.Pod, not *corev1.Pod).
	Type reflect.Type
	// Resource is the plural REST name of the kind. Empty for kinds with no
	// endpoints of their own, such as lists: they get a schema, no paths.
	Resource string
	// Namespaced puts the paths under /namespaces/{namespace}.
	Namespaced bool
	// CreateOnly kinds (reviews) have a collection path with POST only.
	CreateOnly bool
}

// Documents are the OpenAPI v3 documents of a set of kinds: an index and
// one document per group version.
type Documents struct {
	index []byte
	docs  map[string]document
}

type document struct {
	body []byte
	hash string
}

// openAPI is the JSON shape of an OpenAPI v3 document.
type openAPI struct {
	OpenAPI    string               `json:"openapi"`
	Info       info                 `json:"info"`
	Paths      map[string]*pathItem `json:"paths"`
	Components components           `json:"components"`
}

type info struct {
	Title   string `json:"title"`
	Version string `json:"version"`
}

type components struct {
	Schemas map[string]*Schema `json:"schemas"`
}

type pathItem struct {
	Get        *operation  `json:"get,omitempty"`
	Put        *operation  `json:"put,omitempty"`
	Post       *operation  `json:"post,omitempty"`
	Delete     *operation  `json:"delete,omitempty"`
	Patch      *operation  `json:"patch,omitempty"`
	Parameters []parameter `json:"parameters,omitempty"`
}

type operation struct {
	OperationID string               `json:"operationId"`
	Description string               `json:"description,omitempty"`
	Parameters  []parameter          `json:"parameters,omitempty"`
	RequestBody *requestBody         `json:"requestBody,omitempty"`
	Responses   map[string]*response `json:"responses"`
	Action      string               `json:"x-kubernetes-action"`
	GVK         GVK                  `json:"x-kubernetes-group-version-kind"`
}

type parameter struct {
	Name        string  `json:"name"`
	In          string  `json:"in"`
	Description string  `json:"description,omitempty"`
	Required    bool    `json:"required,omitempty"`
	Schema      *Schema `json:"schema"`
}

type requestBody struct {
	Content  map[string]mediaType `json:"content"`
	Required bool                 `json:"required"`
}

type mediaType struct {
	Schema *Schema `json:"schema"`
}

type response struct {
	Description string               `json:"description"`
	Content     map[string]mediaType `json:"content,omitempty"`
}

// GroupVersionPath is the key of a group version in the index and in
// Document: "api/v1" for the core group, "apis/{group}/{version}" otherwise.
func GroupVersionPath(gv schema.GroupVersion) string {
	if gv.Group == "" {
		return "api/" + gv.Version
	}
	return "apis/" + gv.Group + "/" + gv.Version
}

// New builds the documents of kinds. It fails on a Type that is not a
// struct.
func New(kinds []Kind) (*Documents, error) {
	byGV := map[string][]Kind{}
	var order []string
	for _, k := range kinds {
		if k.Type == nil || k.Type.Kind() != reflect.Struct {
			return nil, fmt.Errorf("openapi: kind %s: type %v is not a struct", k.GVK, k.Type)
		}
		p := GroupVersionPath(k.GVK.GroupVersion())
		if byGV[p] == nil {
			order = append(order, p)
		}
		byGV[p] = append(byGV[p], k)
	}
	d := &Documents{docs: map[string]document{}}
	type entry struct {
		URL string `json:"serverRelativeURL"`
	}
	index := struct {
		Paths map[string]entry `json:"paths"`
	}{Paths: map[string]entry{}}
	for _, p := range order {
		body, err := json.Marshal(build(byGV[p]))
		if err != nil {
			return nil, fmt.Errorf("openapi: encoding %s: %w", p, err)
		}
		sum := sha512.Sum512(body)
		doc := document{body: body, hash: strings.ToUpper(hex.EncodeToString(sum[:]))}
		d.docs[p] = doc
		index.Paths[p] = entry{URL: "/openapi/v3/" + p + "?hash=" + doc.hash}
	}
	var err error
	if d.index, err = json.Marshal(index); err != nil {
		return nil, fmt.Errorf("openapi: encoding the index: %w", err)
	}
	return d, nil
}

// Index returns the JSON of GET /openapi/v3: every group version with the
// URL of its document, whose hash query parameter changes with its content.
func (d *Documents) Index() []byte { return d.index }

// Document returns the JSON document of a group version path
// ("apis/apps/v1") and its hash; ok is false for a group version not
// documented.
func (d *Documents) Document(path string) (body []byte, hash string, ok bool) {
	doc, ok := d.docs[path]
	return doc.body, doc.hash, ok
}

// build returns the document of the kinds of one group version.
func build(kinds []Kind) *openAPI {
	g := newGenerator()
	doc := &openAPI{
		OpenAPI: "3.0.0", Info: info{Title: "Kubernetes", Version: "v1.32.4"},
		Paths: map[string]*pathItem{}, Components: components{Schemas: g.schemas},
	}
	patchName := g.component(reflect.TypeFor[patchBody]())
	for _, k := range kinds {
		name := g.component(k.Type)
		s := g.schemas[name]
		s.GroupVersionKinds = append(s.GroupVersionKinds, toGVK(k.GVK))
		if k.Resource != "" {
			addPaths(doc, k, name, patchName)
		}
	}
	return doc
}

// patchBody stands for the body of a PATCH request, whatever its type.
type patchBody struct{}

func (patchBody) OpenAPIModelName() string { return "io.k8s.apimachinery.pkg.apis.meta.v1.Patch" }

func (patchBody) SwaggerDoc() map[string]string {
	return map[string]string{"": "Patch is provided to give a concrete name and type to the Kubernetes PATCH request body."}
}

// addPaths adds the collection and item paths of k. Each operation carries
// the kind's x-kubernetes-group-version-kind; the write operations list the
// query parameters the server honours, fieldValidation among them, which is
// what kubectl's strict validation looks for on PATCH.
func addPaths(doc *openAPI, k Kind, schemaName, patchName string) {
	gv := k.GVK.GroupVersion()
	collection := "/" + GroupVersionPath(gv)
	var scope []parameter
	if k.Namespaced {
		collection += "/namespaces/{namespace}"
		scope = append(scope, pathParam("namespace", "object name and auth scope, such as for teams and projects"))
	}
	collection += "/" + k.Resource
	item := collection + "/{name}"

	group := gv.Group
	if group == "" {
		group = "core"
	}
	group, _, _ = strings.Cut(group, ".")
	idSuffix := upperFirst(group) + upperFirst(gv.Version)
	if k.Namespaced {
		idSuffix += "Namespaced"
	}
	idSuffix += k.GVK.Kind
	gvk := toGVK(k.GVK)
	ref := &Schema{Ref: RefPrefix + schemaName}
	body := func(types ...string) *requestBody {
		rb := &requestBody{Content: map[string]mediaType{}, Required: true}
		for _, t := range types {
			if strings.Contains(t, "patch") {
				rb.Content[t] = mediaType{Schema: &Schema{Ref: RefPrefix + patchName}}
			} else {
				rb.Content[t] = mediaType{Schema: ref}
			}
		}
		return rb
	}
	ok := func(codes ...string) map[string]*response {
		rs := map[string]*response{}
		for _, c := range codes {
			rs[c] = &response{Description: "OK", Content: map[string]mediaType{"application/json": {Schema: ref}}}
		}
		return rs
	}
	write := []parameter{
		queryParam("dryRun", "When present, indicates that modifications should not be persisted. The only valid value is All."),
		queryParam("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
		queryParam("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn (default) and Strict."),
	}
	op := func(verb, action, desc string, params []parameter, rb *requestBody, resp map[string]*response) *operation {
		return &operation{
			OperationID: verb + idSuffix, Description: desc, Parameters: params, RequestBody: rb,
			Responses: resp, Action: action, GVK: gvk,
		}
	}
	doc.Paths[collection] = &pathItem{
		Parameters: scope,
		Post:       op("create", "post", "create a "+k.GVK.Kind, write, body("application/json", "application/yaml"), ok("200", "201", "202")),
	}
	if k.CreateOnly {
		return
	}
	doc.Paths[collection].Get = op("list", "list", "list or watch objects of kind "+k.GVK.Kind, nil, nil, map[string]*response{"200": {Description: "OK"}})
	doc.Paths[item] = &pathItem{
		Parameters: append([]parameter{pathParam("name", "name of the "+k.GVK.Kind)}, scope...),
		Get:        op("read", "get", "read the specified "+k.GVK.Kind, nil, nil, ok("200")),
		Put:        op("replace", "put", "replace the specified "+k.GVK.Kind, write, body("application/json", "application/yaml"), ok("200", "201")),
		Patch: op("patch", "patch", "partially update the specified "+k.GVK.Kind, write,
			body("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"), ok("200")),
		Delete: op("delete", "delete", "delete a "+k.GVK.Kind, []parameter{write[0]}, nil,
			map[string]*response{"200": {Description: "OK"}, "202": {Description: "Accepted"}}),
	}
}

func pathParam(name, desc string) parameter {
	return parameter{Name: name, In: "path", Description: desc, Required: true, Schema: &Schema{Type: "string"}}
}

func queryParam(name, desc string) parameter {
	return parameter{Name: name, In: "query", Description: desc, Schema: &Schema{Type: "string"}}
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

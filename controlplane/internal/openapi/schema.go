package openapi

import (
	"encoding/json"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Schema is the subset of an OpenAPI v3 schema object the generator emits,
// with the Kubernetes vendor extensions kubectl reads.
type Schema struct {
	Ref                  string             `json:"$ref,omitempty"`
	AllOf                []*Schema          `json:"allOf,omitempty"`
	OneOf                []*Schema          `json:"oneOf,omitempty"`
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	Description          string             `json:"description,omitempty"`
	Default              any                `json:"default,omitempty"`
	Properties           map[string]*Schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	Items                *Schema            `json:"items,omitempty"`
	AdditionalProperties *Schema            `json:"additionalProperties,omitempty"`

	IntOrString       bool   `json:"x-kubernetes-int-or-string,omitempty"`
	PreserveUnknown   bool   `json:"x-kubernetes-preserve-unknown-fields,omitempty"`
	PatchStrategy     string `json:"x-kubernetes-patch-strategy,omitempty"`
	PatchMergeKey     string `json:"x-kubernetes-patch-merge-key,omitempty"`
	GroupVersionKinds []GVK  `json:"x-kubernetes-group-version-kind,omitempty"`
}

// GVK is the value of an x-kubernetes-group-version-kind extension.
type GVK struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

func toGVK(gvk schema.GroupVersionKind) GVK {
	return GVK{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind}
}

// RefPrefix is how a schema refers to a component schema.
const RefPrefix = "#/components/schemas/"

// The optional methods through which apimachinery types describe
// themselves; openapi-gen uses the same ones.
type (
	modelNamer      interface{ OpenAPIModelName() string }
	swaggerDocer    interface{ SwaggerDoc() map[string]string }
	schemaTyper     interface{ OpenAPISchemaType() []string }
	schemaFormatter interface{ OpenAPISchemaFormat() string }
	v3OneOfTyper    interface{ OpenAPIV3OneOfTypes() []string }
)

var jsonMarshaler = reflect.TypeFor[json.Marshaler]()

// generator collects the component schemas reachable from some types.
type generator struct {
	schemas map[string]*Schema
}

func newGenerator() *generator { return &generator{schemas: map[string]*Schema{}} }

// methods returns a value of *t, whose method set includes the value
// receiver methods of t.
func methods(t reflect.Type) any { return reflect.New(t).Interface() }

// SchemaName returns the component name of a named Go type, as
// kube-apiserver names it: the type's OpenAPIModelName() if it has one,
// otherwise its package path with the domain reversed
// ("k8s.io/api/core/v1".Pod is "io.k8s.api.core.v1.Pod").
func SchemaName(t reflect.Type) string {
	if n, ok := methods(t).(modelNamer); ok {
		return n.OpenAPIModelName()
	}
	path := t.PkgPath()
	first, rest, _ := strings.Cut(path, "/")
	domain := strings.Split(first, ".")
	for i, j := 0, len(domain)-1; i < j; i, j = i+1, j-1 {
		domain[i], domain[j] = domain[j], domain[i]
	}
	name := strings.Join(domain, ".")
	if rest != "" {
		name += "." + strings.ReplaceAll(rest, "/", ".")
	}
	return name + "." + t.Name()
}

// isComponent reports whether t gets a component schema of its own rather
// than being inlined: named structs and types that describe their own
// schema (Quantity, IntOrString, Time).
func isComponent(t reflect.Type) bool {
	if t.Name() == "" || t.PkgPath() == "" {
		return false
	}
	if _, ok := methods(t).(schemaTyper); ok {
		return true
	}
	return t.Kind() == reflect.Struct
}

// component adds the schema of t (a component type) and those it refers
// to, and returns its name.
func (g *generator) component(t reflect.Type) string {
	name := SchemaName(t)
	if _, ok := g.schemas[name]; ok {
		return name
	}
	s := &Schema{}
	g.schemas[name] = s // before the fields, so that recursive types end
	if d, ok := methods(t).(swaggerDocer); ok {
		s.Description = d.SwaggerDoc()[""]
	}
	m := methods(t)
	switch st, ok := m.(schemaTyper); {
	case ok:
		types := st.OpenAPISchemaType()
		if f, ok := m.(schemaFormatter); ok {
			s.Format = f.OpenAPISchemaFormat()
		}
		if o, ok := m.(v3OneOfTyper); ok && len(o.OpenAPIV3OneOfTypes()) > 0 {
			for _, typ := range o.OpenAPIV3OneOfTypes() {
				s.OneOf = append(s.OneOf, &Schema{Type: typ})
			}
		} else if len(types) > 0 {
			s.Type = types[0]
		}
		s.IntOrString = s.Format == "int-or-string"
	case reflect.PointerTo(t).Implements(jsonMarshaler):
		// RawExtension, FieldsV1: arbitrary JSON objects.
		s.Type = "object"
	default:
		s.Type = "object"
		g.fields(s, t)
	}
	return name
}

// fields adds the JSON fields of struct t, embedded ones included, to s.
func (g *generator) fields(s *Schema, t reflect.Type) {
	var doc map[string]string
	if d, ok := methods(t).(swaggerDocer); ok {
		doc = d.SwaggerDoc()
	}
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && (name == "" || opts == "inline" || strings.Contains(opts, "inline")) {
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.fields(s, ft)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if !ok || name == "" {
			name = f.Name
		}
		p := g.field(ft)
		p.Description = doc[name]
		p.PatchStrategy = f.Tag.Get("patchStrategy")
		p.PatchMergeKey = f.Tag.Get("patchMergeKey")
		if s.Properties == nil {
			s.Properties = map[string]*Schema{}
		}
		s.Properties[name] = p
		// Without +optional markers to go by, a field the encoder always
		// writes is taken as required.
		optional := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		if !optional {
			s.Required = append(s.Required, name)
		}
	}
}

// field returns the schema of a value of type t inside another schema: a
// reference for component types, an inline schema otherwise.
func (g *generator) field(t reflect.Type) *Schema {
	pointer := t.Kind() == reflect.Pointer
	if pointer {
		t = t.Elem()
	}
	if isComponent(t) {
		// A $ref cannot have siblings in OpenAPI 3.0, so the reference is
		// wrapped in allOf to carry a description, as kube-apiserver does.
		name := g.component(t)
		s := &Schema{AllOf: []*Schema{{Ref: RefPrefix + name}}}
		if c := g.schemas[name]; !pointer && c.Properties != nil {
			s.Default = map[string]any{}
		}
		return s
	}
	switch t.Kind() {
	case reflect.String:
		return &Schema{Type: "string"}
	case reflect.Bool:
		return &Schema{Type: "boolean"}
	case reflect.Int32, reflect.Int16, reflect.Int8, reflect.Uint16, reflect.Uint8:
		return &Schema{Type: "integer", Format: "int32"}
	case reflect.Int64, reflect.Int, reflect.Uint32, reflect.Uint64, reflect.Uint:
		return &Schema{Type: "integer", Format: "int64"}
	case reflect.Float64:
		return &Schema{Type: "number", Format: "double"}
	case reflect.Float32:
		return &Schema{Type: "number", Format: "float"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &Schema{Type: "string", Format: "byte"}
		}
		return &Schema{Type: "array", Items: g.field(t.Elem())}
	case reflect.Map:
		return &Schema{Type: "object", AdditionalProperties: g.field(t.Elem())}
	case reflect.Struct:
		// An anonymous struct.
		s := &Schema{Type: "object"}
		g.fields(s, t)
		return s
	default:
		// Interfaces and anything else: any JSON value.
		return &Schema{Type: "object", PreserveUnknown: true}
	}
}

package openapi

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func testKinds() []Kind {
	return []Kind{
		{GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMap"}, Type: reflect.TypeFor[corev1.ConfigMap](), Resource: "configmaps", Namespaced: true},
		{GVK: schema.GroupVersionKind{Version: "v1", Kind: "ConfigMapList"}, Type: reflect.TypeFor[corev1.ConfigMapList]()},
		{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, Type: reflect.TypeFor[corev1.Pod](), Resource: "pods", Namespaced: true},
		{GVK: schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, Type: reflect.TypeFor[corev1.Namespace](), Resource: "namespaces"},
		{GVK: appsv1.SchemeGroupVersion.WithKind("Deployment"), Type: reflect.TypeFor[appsv1.Deployment](), Resource: "deployments", Namespaced: true},
	}
}

// decoded is a document decoded back into the generator's types.
type decoded struct {
	OpenAPI    string
	Paths      map[string]*pathItem
	Components components
}

func mustDocument(t *testing.T, d *Documents, path string) decoded {
	t.Helper()
	body, hash, ok := d.Document(path)
	if !ok || hash == "" {
		t.Fatalf("Document(%q): got ok %v hash %q, want a document", path, ok, hash)
	}
	var doc decoded
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("Document(%q): %v", path, err)
	}
	return doc
}

// prop returns a property of a component schema, failing the test if
// either is missing.
func prop(t *testing.T, doc decoded, schemaName, name string) *Schema {
	t.Helper()
	s := doc.Components.Schemas[schemaName]
	if s == nil {
		t.Fatalf("no schema %s", schemaName)
	}
	p := s.Properties[name]
	if p == nil {
		t.Fatalf("schema %s: no property %q", schemaName, name)
	}
	return p
}

// refOf returns the component a property refers to through allOf.
func refOf(s *Schema) string {
	if len(s.AllOf) != 1 {
		return s.Ref
	}
	return s.AllOf[0].Ref
}

func TestIndex(t *testing.T) {
	d, err := New(testKinds())
	if err != nil {
		t.Fatal(err)
	}
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(d.Index(), &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Paths) != 2 {
		t.Errorf("got index paths %v, want api/v1 and apis/apps/v1", index.Paths)
	}
	for _, p := range []string{"api/v1", "apis/apps/v1"} {
		_, hash, _ := d.Document(p)
		if got, want := index.Paths[p].ServerRelativeURL, "/openapi/v3/"+p+"?hash="+hash; got != want {
			t.Errorf("index %s: got %q, want %q", p, got, want)
		}
	}
	if _, _, ok := d.Document("apis/batch/v1"); ok {
		t.Errorf("Document(apis/batch/v1): got ok, want no document")
	}
	_, core, _ := d.Document("api/v1")
	_, apps, _ := d.Document("apis/apps/v1")
	if core == apps {
		t.Errorf("got the same hash %s for different documents", core)
	}
	if _, err := New([]Kind{{GVK: schema.GroupVersionKind{Version: "v1", Kind: "X"}, Type: reflect.TypeFor[string]()}}); err == nil {
		t.Errorf("New with a string type: got no error, want one")
	}
}

func TestConfigMap(t *testing.T) {
	d, err := New(testKinds())
	if err != nil {
		t.Fatal(err)
	}
	doc := mustDocument(t, d, "api/v1")
	if doc.OpenAPI != "3.0.0" {
		t.Errorf("got openapi %q, want 3.0.0", doc.OpenAPI)
	}
	cm := doc.Components.Schemas["io.k8s.api.core.v1.ConfigMap"]
	if cm == nil {
		t.Fatal("no schema io.k8s.api.core.v1.ConfigMap")
	}
	if want := []GVK{{Version: "v1", Kind: "ConfigMap"}}; !reflect.DeepEqual(cm.GroupVersionKinds, want) {
		t.Errorf("ConfigMap: got GVKs %v, want %v", cm.GroupVersionKinds, want)
	}
	if !strings.HasPrefix(cm.Description, "ConfigMap holds configuration data") || len(cm.Required) != 0 {
		t.Errorf("ConfigMap: got description %q required %v, want the SwaggerDoc and nothing required", cm.Description, cm.Required)
	}
	// TypeMeta is inlined; ObjectMeta is a reference with a description.
	if k := prop(t, doc, "io.k8s.api.core.v1.ConfigMap", "kind"); k.Type != "string" || !strings.Contains(k.Description, "Kind is a string value") {
		t.Errorf("ConfigMap.kind: got %+v, want an inlined string with TypeMeta's doc", k)
	}
	if m := prop(t, doc, "io.k8s.api.core.v1.ConfigMap", "metadata"); refOf(m) != RefPrefix+"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta" || m.Description == "" {
		t.Errorf("ConfigMap.metadata: got %+v, want a described reference to ObjectMeta", m)
	}
	data := prop(t, doc, "io.k8s.api.core.v1.ConfigMap", "data")
	if data.Type != "object" || data.AdditionalProperties == nil || data.AdditionalProperties.Type != "string" {
		t.Errorf("ConfigMap.data: got %+v, want a map of strings", data)
	}
	if b := prop(t, doc, "io.k8s.api.core.v1.ConfigMap", "binaryData"); b.AdditionalProperties == nil || b.AdditionalProperties.Format != "byte" {
		t.Errorf("ConfigMap.binaryData: got %+v, want a map of byte strings", b)
	}
	if c := prop(t, doc, "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "creationTimestamp"); refOf(c) != RefPrefix+"io.k8s.apimachinery.pkg.apis.meta.v1.Time" {
		t.Errorf("ObjectMeta.creationTimestamp: got %+v, want a reference to Time", c)
	}
	if tm := doc.Components.Schemas["io.k8s.apimachinery.pkg.apis.meta.v1.Time"]; tm == nil || tm.Type != "string" || tm.Format != "date-time" {
		t.Errorf("Time: got %+v, want a date-time string", tm)
	}
	if l := doc.Components.Schemas["io.k8s.api.core.v1.ConfigMapList"]; l == nil || len(l.GroupVersionKinds) != 1 || !reflect.DeepEqual(l.Required, []string{"items"}) {
		t.Errorf("ConfigMapList: got %+v, want a kind with items required", l)
	}

	// kubectl's strict validation looks for fieldValidation on the PATCH
	// operation of the kind.
	patch := doc.Paths["/api/v1/namespaces/{namespace}/configmaps/{name}"].Patch
	if patch == nil || patch.GVK != (GVK{Version: "v1", Kind: "ConfigMap"}) || patch.OperationID != "patchCoreV1NamespacedConfigMap" {
		t.Fatalf("configmap item PATCH: got %+v, want patchCoreV1NamespacedConfigMap with the GVK", patch)
	}
	var params []string
	for _, p := range patch.Parameters {
		params = append(params, p.In+":"+p.Name)
	}
	if !strings.Contains(strings.Join(params, ","), "query:fieldValidation") {
		t.Errorf("configmap PATCH parameters: got %v, want query:fieldValidation", params)
	}
	if _, ok := patch.RequestBody.Content["application/strategic-merge-patch+json"]; !ok {
		t.Errorf("configmap PATCH: got body types %v, want strategic merge patch", patch.RequestBody.Content)
	}
	if ns := doc.Paths["/api/v1/namespaces/{name}"]; ns == nil || ns.Patch == nil || ns.Patch.OperationID != "patchCoreV1Namespace" {
		t.Errorf("namespace item path: got %+v, want a cluster-scoped patchCoreV1Namespace", ns)
	}
	if doc.Paths["/api/v1/namespaces/{namespace}/configmaps"].Post == nil {
		t.Errorf("configmap collection: no POST")
	}
}

func TestPodContainers(t *testing.T) {
	d, err := New(testKinds())
	if err != nil {
		t.Fatal(err)
	}
	doc := mustDocument(t, d, "api/v1")
	containers := prop(t, doc, "io.k8s.api.core.v1.PodSpec", "containers")
	if containers.Type != "array" || refOf(containers.Items) != RefPrefix+"io.k8s.api.core.v1.Container" ||
		containers.PatchStrategy != "merge" || containers.PatchMergeKey != "name" || !strings.HasPrefix(containers.Description, "List of containers") {
		t.Errorf("PodSpec.containers: got %+v, want a described array of Container merged by name", containers)
	}
	spec := doc.Components.Schemas["io.k8s.api.core.v1.PodSpec"]
	if !reflect.DeepEqual(spec.Required, []string{"containers"}) {
		t.Errorf("PodSpec: got required %v, want [containers]", spec.Required)
	}
	if c := doc.Components.Schemas["io.k8s.api.core.v1.Container"]; !reflect.DeepEqual(c.Required, []string{"name"}) {
		t.Errorf("Container: got required %v, want [name]", c.Required)
	}

	limits := prop(t, doc, "io.k8s.api.core.v1.ResourceRequirements", "limits")
	if limits.Type != "object" || limits.AdditionalProperties == nil || refOf(limits.AdditionalProperties) != RefPrefix+"io.k8s.apimachinery.pkg.api.resource.Quantity" {
		t.Errorf("ResourceRequirements.limits: got %+v, want a map of Quantity", limits)
	}
	q := doc.Components.Schemas["io.k8s.apimachinery.pkg.api.resource.Quantity"]
	if q == nil || len(q.OneOf) != 2 || q.OneOf[0].Type != "string" || q.OneOf[1].Type != "number" || q.Properties != nil {
		t.Errorf("Quantity: got %+v, want oneOf string, number", q)
	}

	port := prop(t, doc, "io.k8s.api.core.v1.ContainerPort", "containerPort")
	if port.Type != "integer" || port.Format != "int32" {
		t.Errorf("ContainerPort.containerPort: got %+v, want an int32", port)
	}
	target := prop(t, doc, "io.k8s.api.core.v1.HTTPGetAction", "port")
	ios := doc.Components.Schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]
	if refOf(target) != RefPrefix+"io.k8s.apimachinery.pkg.util.intstr.IntOrString" || ios == nil || !ios.IntOrString || ios.Format != "int-or-string" {
		t.Errorf("HTTPGetAction.port: got %+v referring to %+v, want an x-kubernetes-int-or-string", target, ios)
	}
}

func TestDeployment(t *testing.T) {
	d, err := New(testKinds())
	if err != nil {
		t.Fatal(err)
	}
	doc := mustDocument(t, d, "apis/apps/v1")
	dep := doc.Components.Schemas["io.k8s.api.apps.v1.Deployment"]
	if dep == nil || !reflect.DeepEqual(dep.GroupVersionKinds, []GVK{{Group: "apps", Version: "v1", Kind: "Deployment"}}) {
		t.Fatalf("Deployment: got %+v, want the apps/v1 Deployment kind", dep)
	}
	if doc.Components.Schemas["io.k8s.api.core.v1.Pod"] != nil {
		t.Errorf("apps/v1 document: got a Pod schema, want only what Deployment refers to")
	}
	if r := prop(t, doc, "io.k8s.api.apps.v1.DeploymentSpec", "replicas"); r.Type != "integer" || r.Format != "int32" || !strings.HasPrefix(r.Description, "Number of desired pods") {
		t.Errorf("DeploymentSpec.replicas: got %+v, want a described int32", r)
	}
	if tpl := prop(t, doc, "io.k8s.api.apps.v1.DeploymentSpec", "template"); refOf(tpl) != RefPrefix+"io.k8s.api.core.v1.PodTemplateSpec" {
		t.Errorf("DeploymentSpec.template: got %+v, want a reference to PodTemplateSpec", tpl)
	}
	if spec := doc.Components.Schemas["io.k8s.api.apps.v1.DeploymentSpec"]; !reflect.DeepEqual(spec.Required, []string{"selector", "template"}) {
		t.Errorf("DeploymentSpec: got required %v, want [selector template]", spec.Required)
	}
	if p := doc.Paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]; p == nil || p.Patch == nil || p.Patch.OperationID != "patchAppsV1NamespacedDeployment" {
		t.Errorf("deployment item path: got %+v, want patchAppsV1NamespacedDeployment", p)
	}
}

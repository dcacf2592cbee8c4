package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const webDeployment = `{"metadata":{"name":"web","labels":{"app":"web"}},"spec":{"replicas":2,
	"selector":{"matchLabels":{"app":"web"}},
	"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}`

// TestKubectlScale scales with the real kubectl: a PATCH of the Scale, and
// with --current-replicas a GET and a PUT of it.
func TestKubectlScale(t *testing.T) {
	ts := startServer(t)
	k := newKubectl(t, ts.URL)
	k.runSteps(t, []kubectlStep{
		{args: []string{"create", "deployment", "web", "--image=nginx:1.26"}, wantOut: []string{`deployment.apps/web created`}},
		{args: []string{"scale", "deployment", "web", "--replicas=5"}, wantOut: []string{`deployment.apps/web scaled`}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"}, wantOut: []string{`^5$`}},
		{args: []string{"scale", "deployment", "web", "--current-replicas=5", "--replicas=4"}, wantOut: []string{`deployment.apps/web scaled`}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas} {.metadata.generation}"}, wantOut: []string{`^4 3$`}},
		{args: []string{"get", "deploy", "web", "--subresource=status", "-o", "jsonpath={.kind}"}, wantOut: []string{`^Deployment$`}},
	})
	// The client checks --current-replicas against the Scale it read.
	_, errOut, code := k.run(t, "scale", "deployment", "web", "--current-replicas=5", "--replicas=1")
	if code != 1 || !strings.Contains(errOut, "Expected replicas to be 5, was 4") {
		t.Errorf("kubectl scale --current-replicas=5: got exit code %d stderr %q, want 1 and the expected-replicas error", code, errOut)
	}
}

// TestStatusSubresource writes status through /status in each patch type and
// with PUT: only status, labels and annotations change; and the main
// resource keeps the status it is sent.
func TestStatusSubresource(t *testing.T) {
	ts := startServer(t)
	deploys := ts.URL + "/apis/apps/v1/namespaces/default/deployments"
	var created appsv1.Deployment
	mustDo(t, http.StatusCreated, "POST", deploys, "application/json", webDeployment, &created)

	tests := []struct {
		name, method, contentType, body string
		wantReplicas                    int32 // status.replicas
		wantLabel                       string
	}{
		{name: "put", method: "PUT", contentType: "application/json",
			body: `{"metadata":{"name":"web","labels":{"app":"web","put":"yes"},"finalizers":["x/y"]},
				"spec":{"replicas":9,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"nginx","image":"nginx:2"}]}}},
				"status":{"replicas":1}}`,
			wantReplicas: 1, wantLabel: "put"},
		{name: "merge patch", method: "PATCH", contentType: "application/merge-patch+json",
			body: `{"metadata":{"labels":{"merge":"yes"}},"spec":{"replicas":9},"status":{"replicas":2}}`, wantReplicas: 2, wantLabel: "merge"},
		{name: "json patch", method: "PATCH", contentType: "application/json-patch+json",
			body:         `[{"op":"replace","path":"/spec/replicas","value":9},{"op":"add","path":"/status/replicas","value":3},{"op":"add","path":"/metadata/labels/json","value":"yes"}]`,
			wantReplicas: 3, wantLabel: "json"},
		{name: "strategic merge patch", method: "PATCH", contentType: "application/strategic-merge-patch+json",
			body: `{"metadata":{"labels":{"smp":"yes"}},"spec":{"replicas":9},"status":{"replicas":4}}`, wantReplicas: 4, wantLabel: "smp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got, stored appsv1.Deployment
			mustDo(t, http.StatusOK, tt.method, deploys+"/web/status", tt.contentType, tt.body, &got)
			mustDo(t, http.StatusOK, "GET", deploys+"/web/status", "", "", &stored)
			for _, d := range []appsv1.Deployment{got, stored} {
				if d.Status.Replicas != tt.wantReplicas || d.Labels[tt.wantLabel] != "yes" {
					t.Errorf("got status.replicas %d labels %v, want %d with %s=yes", d.Status.Replicas, d.Labels, tt.wantReplicas, tt.wantLabel)
				}
				if *d.Spec.Replicas != 2 || d.Spec.Template.Spec.Containers[0].Image != "nginx:1.26" || d.Generation != 1 || len(d.Finalizers) != 0 {
					t.Errorf("got spec.replicas %d image %s generation %d finalizers %v, want the spec and metadata unchanged: 2 nginx:1.26 1 []",
						*d.Spec.Replicas, d.Spec.Template.Spec.Containers[0].Image, d.Generation, d.Finalizers)
				}
			}
		})
	}

	// The main resource changes spec, never status.
	var got appsv1.Deployment
	mustDo(t, http.StatusOK, "PATCH", deploys+"/web", "application/merge-patch+json", `{"spec":{"replicas":3},"status":{"replicas":7}}`, &got)
	if *got.Spec.Replicas != 3 || got.Status.Replicas != 4 || got.Generation != 2 {
		t.Errorf("main resource patch: got spec.replicas %d status.replicas %d generation %d, want 3 4 2", *got.Spec.Replicas, got.Status.Replicas, got.Generation)
	}
	got.Status.Replicas = 8
	body := mustJSON(t, &got)
	mustDo(t, http.StatusOK, "PUT", deploys+"/web", "application/json", body, &got)
	if got.Status.Replicas != 4 {
		t.Errorf("main resource put: got status.replicas %d, want the stored 4", got.Status.Replicas)
	}

	// Status of the core resources.
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	mustDo(t, http.StatusCreated, "POST", pods, "application/json", `{"metadata":{"name":"p1"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`, nil)
	var pod corev1.Pod
	mustDo(t, http.StatusOK, "PATCH", pods+"/p1/status", "application/strategic-merge-patch+json",
		`{"spec":{"nodeName":"n1"},"status":{"phase":"Running","podIP":"10.0.0.5"}}`, &pod)
	if pod.Status.Phase != corev1.PodRunning || pod.Status.PodIP != "10.0.0.5" || pod.Spec.NodeName != "" {
		t.Errorf("pod status patch: got phase %s podIP %s nodeName %q, want Running 10.0.0.5 and no node", pod.Status.Phase, pod.Status.PodIP, pod.Spec.NodeName)
	}
	mustDo(t, http.StatusCreated, "POST", ts.URL+"/api/v1/nodes", "application/json", `{"metadata":{"name":"n1"}}`, nil)
	var node corev1.Node
	mustDo(t, http.StatusOK, "PATCH", ts.URL+"/api/v1/nodes/n1/status", "application/merge-patch+json",
		`{"spec":{"unschedulable":true},"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"}]}}`, &node)
	if len(node.Status.Addresses) != 1 || node.Spec.Unschedulable {
		t.Errorf("node status patch: got addresses %v unschedulable %v, want one address and schedulable", node.Status.Addresses, node.Spec.Unschedulable)
	}
	mustDo(t, http.StatusOK, "PATCH", ts.URL+"/api/v1/nodes/n1", "application/merge-patch+json", `{"status":{"addresses":null}}`, &node)
	if len(node.Status.Addresses) != 1 {
		t.Errorf("node patch: got addresses %v, want the stored one kept", node.Status.Addresses)
	}
}

// TestScaleSubresource reads and writes the Scale of each workload kind
// over HTTP.
func TestScaleSubresource(t *testing.T) {
	ts := startServer(t)
	apps := ts.URL + "/apis/apps/v1/namespaces/default/"
	tmpl := `"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}`
	for _, plural := range []string{"deployments", "replicasets", "statefulsets"} {
		t.Run(plural, func(t *testing.T) {
			mustDo(t, http.StatusCreated, "POST", apps+plural, "application/json", `{"metadata":{"name":"web"},"spec":{"replicas":2,`+tmpl+`}}`, nil)
			var scale autoscalingv1.Scale
			mustDo(t, http.StatusOK, "GET", apps+plural+"/web/scale", "", "", &scale)
			if scale.Kind != "Scale" || scale.APIVersion != "autoscaling/v1" || scale.Name != "web" || scale.Namespace != "default" ||
				scale.UID == "" || scale.Spec.Replicas != 2 || scale.Status.Selector != "app=web" || scale.ResourceVersion == "" {
				t.Fatalf("got %+v, want autoscaling/v1 Scale default/web with uid, rv, 2 replicas and selector app=web", scale)
			}
			stale := scale.ResourceVersion

			var patched autoscalingv1.Scale
			mustDo(t, http.StatusOK, "PATCH", apps+plural+"/web/scale", "application/merge-patch+json", `{"spec":{"replicas":5}}`, &patched)
			if patched.Spec.Replicas != 5 || patched.ResourceVersion == stale {
				t.Errorf("patch: got replicas %d rv %s, want 5 and a new rv (old %s)", patched.Spec.Replicas, patched.ResourceVersion, stale)
			}
			scale.Spec.Replicas = 7
			code, _, body := do(t, "PUT", apps+plural+"/web/scale", "application/json", mustJSON(t, &scale))
			if code != http.StatusConflict || !strings.Contains(string(body), `the object has been modified`) {
				t.Errorf("put with stale rv %s: got %d %s, want 409 Conflict", stale, code, body)
			}
			scale.ResourceVersion = patched.ResourceVersion
			mustDo(t, http.StatusOK, "PUT", apps+plural+"/web/scale", "application/json", mustJSON(t, &scale), &patched)
			scale.Spec.Replicas = -1
			scale.ResourceVersion = ""
			mustDo(t, http.StatusUnprocessableEntity, "PUT", apps+plural+"/web/scale", "application/json", mustJSON(t, &scale), nil)

			var parent struct {
				Metadata metav1.ObjectMeta `json:"metadata"`
				Spec     struct{ Replicas int32 }
			}
			mustDo(t, http.StatusOK, "GET", apps+plural+"/web", "", "", &parent)
			if parent.Spec.Replicas != 7 || parent.Metadata.Generation != 3 || patched.Spec.Replicas != 7 || patched.ResourceVersion != parent.Metadata.ResourceVersion {
				t.Errorf("got %s replicas %d generation %d rv %s (scale %d rv %s), want 7, generation 3 and the scale's rv",
					plural, parent.Spec.Replicas, parent.Metadata.Generation, parent.Metadata.ResourceVersion, patched.Spec.Replicas, patched.ResourceVersion)
			}
		})
	}
	mustDo(t, http.StatusCreated, "POST", apps+"daemonsets", "application/json", `{"metadata":{"name":"web"},"spec":{`+tmpl+`}}`, nil)
	mustDo(t, http.StatusNotFound, "GET", apps+"daemonsets/web/scale", "", "", nil)
	mustDo(t, http.StatusNotFound, "GET", apps+"deployments/missing/scale", "", "", nil)
}

func TestBindingAndFinalize(t *testing.T) {
	ts := startServer(t)
	pods := ts.URL + "/api/v1/namespaces/default/pods"
	mustDo(t, http.StatusCreated, "POST", pods, "application/json", `{"metadata":{"name":"p1"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}`, nil)
	binding := `{"apiVersion":"v1","kind":"Binding","metadata":{"name":"p1","annotations":{"by":"test"}},"target":{"kind":"Node","name":"n1"}}`
	var st metav1.Status
	mustDo(t, http.StatusCreated, "POST", pods+"/p1/binding", "application/json", binding, &st)
	if st.Status != metav1.StatusSuccess {
		t.Errorf("got %+v, want a Success status", st)
	}
	var pod corev1.Pod
	mustDo(t, http.StatusOK, "GET", pods+"/p1", "", "", &pod)
	if pod.Spec.NodeName != "n1" || pod.Annotations["by"] != "test" || len(pod.Status.Conditions) != 1 || pod.Status.Conditions[0].Type != corev1.PodScheduled {
		t.Errorf("got nodeName %q annotations %v conditions %v, want n1, by=test and PodScheduled", pod.Spec.NodeName, pod.Annotations, pod.Status.Conditions)
	}
	code, _, body := do(t, "POST", pods+"/p1/binding", "application/json", strings.Replace(binding, "n1", "n2", 1))
	if want := `pod p1 is already assigned to node \"n1\"`; code != http.StatusConflict || !strings.Contains(string(body), want) {
		t.Errorf("second binding: got %d %s, want 409 with %s", code, body, want)
	}
	mustDo(t, http.StatusNotFound, "POST", pods+"/missing/binding", "application/json", `{"metadata":{"name":"missing"},"target":{"name":"n1"}}`, nil)
	mustDo(t, http.StatusMethodNotAllowed, "GET", pods+"/p1/binding", "", "", nil)

	var ns corev1.Namespace
	mustDo(t, http.StatusCreated, "POST", ts.URL+"/api/v1/namespaces", "application/json", `{"metadata":{"name":"gone"}}`, &ns)
	mustDo(t, http.StatusOK, "PUT", ts.URL+"/api/v1/namespaces/gone/finalize", "application/json",
		`{"metadata":{"name":"gone","labels":{"ignored":"yes"}},"spec":{"finalizers":["example.com/x"]},"status":{"phase":"Terminating"}}`, &ns)
	if fmt.Sprint(ns.Spec.Finalizers) != "[example.com/x]" || ns.Labels["ignored"] != "" || ns.Status.Phase != corev1.NamespaceActive {
		t.Errorf("finalize: got finalizers %v labels %v phase %s, want only the finalizers changed", ns.Spec.Finalizers, ns.Labels, ns.Status.Phase)
	}
	var emptied corev1.Namespace
	mustDo(t, http.StatusOK, "PUT", ts.URL+"/api/v1/namespaces/gone/finalize", "application/json", `{"metadata":{"name":"gone"},"spec":{}}`, &emptied)
	if len(emptied.Spec.Finalizers) != 0 || emptied.Name != "gone" {
		t.Errorf("finalize: got %s with finalizers %v, want gone without finalizers", emptied.Name, emptied.Spec.Finalizers)
	}
}

func TestSubresourceRouting(t *testing.T) {
	ts := startServer(t)
	mustDo(t, http.StatusCreated, "POST", ts.URL+"/api/v1/namespaces/default/configmaps", "application/json", `{"metadata":{"name":"c1"}}`, nil)
	tests := []struct {
		method, path string
		wantCode     int
	}{
		{"GET", "/api/v1/namespaces/default/configmaps/c1/status", http.StatusNotFound},
		{"GET", "/api/v1/namespaces/default/pods/p1/bogus", http.StatusNotFound},
		{"GET", "/api/v1/namespaces/default/configmaps/c1/status/more", http.StatusNotFound},
		{"DELETE", "/api/v1/namespaces/default/configmaps/c1/status", http.StatusNotFound},
		{"DELETE", "/api/v1/namespaces/default/status", http.StatusMethodNotAllowed},
		{"POST", "/api/v1/namespaces/default/finalize", http.StatusMethodNotAllowed},
		{"GET", "/api/v1/namespaces/default/status", http.StatusOK},
	}
	for _, tt := range tests {
		code, _, body := do(t, tt.method, ts.URL+tt.path, "", "")
		if code != tt.wantCode || (code == http.StatusNotFound && !strings.Contains(string(body), `"kind":"Status"`)) {
			t.Errorf("%s %s: got %d %s, want %d", tt.method, tt.path, code, body, tt.wantCode)
		}
	}

	// Discovery lists the subresources after their resource, as kube-apiserver does.
	want := map[string][]string{
		"/api/v1": {"namespaces/finalize v1 Namespace update", "namespaces/status v1 Namespace get,patch,update",
			"pods/binding v1 Binding create", "pods/status v1 Pod get,patch,update", "nodes/status v1 Node get,patch,update",
			"services/status v1 Service get,patch,update"},
		"/apis/apps/v1": {"deployments/scale autoscaling/v1 Scale get,patch,update", "deployments/status apps/v1 Deployment get,patch,update",
			"replicasets/scale autoscaling/v1 Scale get,patch,update", "statefulsets/scale autoscaling/v1 Scale get,patch,update",
			"daemonsets/status apps/v1 DaemonSet get,patch,update"},
	}
	for path, entries := range want {
		var list metav1.APIResourceList
		mustDo(t, http.StatusOK, "GET", ts.URL+path, "", "", &list)
		got := map[string]string{}
		for _, r := range list.APIResources {
			gv := list.GroupVersion
			if r.Group != "" || r.Version != "" {
				gv = r.Group + "/" + r.Version
			}
			got[r.Name] = strings.Join([]string{r.Name, gv, r.Kind, strings.Join(r.Verbs, ",")}, " ")
		}
		for _, e := range entries {
			name := strings.Fields(e)[0]
			if got[name] != e {
				t.Errorf("%s: got entry %q, want %q", path, got[name], e)
			}
		}
	}
}

// mustJSON marshals v for a request body.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestScaleOwnsReplicas: a write through /scale takes ownership of
// spec.replicas, so a later server-side apply of another replica count by
// another manager conflicts instead of silently undoing the scale.
func TestScaleOwnsReplicas(t *testing.T) {
	ts := startServer(t)
	deploys := ts.URL + "/apis/apps/v1/namespaces/default/deployments"
	const manifest = `{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}`
	mustDo(t, 201, "PATCH", deploys+"/web?fieldManager=applier", "application/apply-patch+yaml", manifest, nil)
	mustDo(t, 200, "PATCH", deploys+"/web/scale?fieldManager=scaler", "application/merge-patch+json", `{"spec":{"replicas":3}}`, nil)
	code, _, body := do(t, "PATCH", deploys+"/web?fieldManager=applier", "application/apply-patch+yaml", manifest)
	if code != 409 || !strings.Contains(string(body), `conflict with \"scaler\"`) || !strings.Contains(string(body), ".spec.replicas") {
		t.Fatalf("apply after scale: got %d %s, want 409 naming scaler and .spec.replicas", code, body)
	}
}

// TestNamespaceFinalizersKept: an ordinary update of a namespace neither
// drops nor re-adds spec.finalizers; only namespaces/finalize writes them.
func TestNamespaceFinalizersKept(t *testing.T) {
	ts := startServer(t)
	nss := ts.URL + "/api/v1/namespaces"
	var ns corev1.Namespace
	mustDo(t, 201, "POST", nss, "application/json", `{"metadata":{"name":"keep"}}`, &ns)
	if len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != corev1.FinalizerKubernetes {
		t.Fatalf("created with finalizers %v, want [kubernetes]", ns.Spec.Finalizers)
	}
	mustDo(t, 200, "PUT", nss+"/keep", "application/json", `{"metadata":{"name":"keep","labels":{"a":"b"}},"spec":{"finalizers":[]}}`, &ns)
	if len(ns.Spec.Finalizers) != 1 {
		t.Errorf("after an update without finalizers: got %v, want [kubernetes] kept", ns.Spec.Finalizers)
	}
	mustDo(t, 200, "PUT", nss+"/keep/finalize", "application/json", `{"metadata":{"name":"keep"},"spec":{"finalizers":[]}}`, &ns)
	var after corev1.Namespace // a fresh one: decoding keeps fields the JSON lacks
	mustDo(t, 200, "PUT", nss+"/keep", "application/json", `{"metadata":{"name":"keep","labels":{"a":"c"}}}`, &after)
	if len(after.Spec.Finalizers) != 0 {
		t.Errorf("after finalize and an update: got %v, want none (not re-added)", after.Spec.Finalizers)
	}
}

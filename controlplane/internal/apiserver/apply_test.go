package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const applyType = "application/apply-patch+yaml"

// configMapYAML is an apply configuration of the ConfigMap cfg; data is
// the YAML flow mapping of its data.
func configMapYAML(data string) string {
	return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata: " + data + "\n"
}

// managers returns the managedFields of obj as "manager/operation/subresource" → fieldsV1.
func managers(t *testing.T, obj metav1.Object) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, e := range obj.GetManagedFields() {
		if e.FieldsType != "FieldsV1" || e.APIVersion == "" || e.FieldsV1 == nil {
			t.Errorf("managedFields entry %+v: want apiVersion, fieldsType FieldsV1 and fieldsV1", e)
			continue
		}
		out[e.Manager+"/"+string(e.Operation)+"/"+e.Subresource] = e.FieldsV1.GetRawString()
	}
	return out
}

func statusOf(t *testing.T, body []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("got body %s, want a Status (%v)", body, err)
	}
	return st
}

// TestServerSideApplyHTTP drives server-side apply and managedFields
// tracking through the HTTP API, step by step.
func TestServerSideApplyHTTP(t *testing.T) {
	ts := startServer(t)
	cms := ts.URL + "/api/v1/namespaces/default/configmaps"
	cfg := cms + "/cfg"

	t.Run("errors before anything is stored", func(t *testing.T) {
		tests := []struct {
			name, url, contentType, body string
			wantCode                     int
			wantReason                   metav1.StatusReason
			wantMessage                  string
		}{
			{"apply without manager", cfg, applyType, configMapYAML("{a: '1'}"), 422, metav1.StatusReasonInvalid,
				`PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch`},
			{"force on merge patch", cfg + "?force=true", "application/merge-patch+json", `{}`, 422, metav1.StatusReasonInvalid,
				`PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch`},
			{"apply in CBOR", cfg + "?fieldManager=m", "application/apply-patch+cbor", "\xa0", 415, metav1.StatusReasonUnsupportedMediaType,
				"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"},
			{"unknown patch type", cfg, "text/plain", "x", 415, metav1.StatusReasonUnsupportedMediaType,
				"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"},
			{"missing namespace", ts.URL + "/api/v1/namespaces/nope/configmaps/cfg?fieldManager=m", applyType, configMapYAML("{a: '1'}"), 404, metav1.StatusReasonNotFound,
				`namespaces "nope" not found`},
			{"name mismatch", cms + "/other?fieldManager=m", applyType, configMapYAML("{a: '1'}"), 400, metav1.StatusReasonBadRequest,
				"the name of the object (cfg) does not match the name on the URL (other)"},
			{"uid on create", cfg + "?fieldManager=m", applyType, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg, uid: u1}\n", 409, metav1.StatusReasonConflict,
				`Operation cannot be fulfilled on configmaps "cfg": uid mismatch: the provided object specified uid u1, and no existing object was found`},
			{"wrong kind", cfg + "?fieldManager=m", applyType, "apiVersion: v1\nkind: Secret\nmetadata: {name: cfg}\n", 400, metav1.StatusReasonBadRequest,
				"invalid object type: /v1, Kind=Secret"},
			{"unknown field", cfg + "?fieldManager=m", applyType, configMapYAML("{a: '1'}") + "bogus: 1\n", 400, metav1.StatusReasonBadRequest,
				"failed to create typed patch object (/cfg; /v1, Kind=ConfigMap): .bogus: field not declared in schema"},
			{"duplicate field, strict", cfg + "?fieldManager=m&fieldValidation=Strict", applyType, configMapYAML("{a: '1', a: '2'}"), 400, metav1.StatusReasonBadRequest,
				`error strict decoding YAML: error converting YAML to JSON: yaml: unmarshal errors:`},
			{"manager too long", cfg + "?fieldManager=" + strings.Repeat("m", 129), applyType, configMapYAML("{}"), 422, metav1.StatusReasonInvalid,
				`PatchOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes`},
			{"create manager too long", cms + "?fieldManager=" + strings.Repeat("m", 129), "application/json", `{"metadata":{"name":"x"}}`, 422, metav1.StatusReasonInvalid,
				`CreateOptions.meta.k8s.io "" is invalid: fieldManager: Too long: may not be more than 128 bytes`},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				method := "PATCH"
				if strings.HasPrefix(tt.name, "create") {
					method = "POST"
				}
				code, _, body := do(t, method, tt.url, tt.contentType, tt.body)
				st := statusOf(t, body)
				if code != tt.wantCode || int(st.Code) != tt.wantCode || st.Reason != tt.wantReason || !strings.Contains(st.Message, tt.wantMessage) {
					t.Errorf("got %d %s %q, want %d %s containing %q", code, st.Reason, st.Message, tt.wantCode, tt.wantReason, tt.wantMessage)
				}
			})
		}
		mustDo(t, http.StatusNotFound, "GET", cfg, "", "", nil)
	})

	t.Run("dry run creates nothing", func(t *testing.T) {
		var cm corev1.ConfigMap
		mustDo(t, http.StatusCreated, "PATCH", cfg+"?fieldManager=tool&dryRun=All", applyType, configMapYAML("{a: '1'}"), &cm)
		if cm.Data["a"] != "1" || cm.ResourceVersion != "" || managers(t, &cm)["tool/Apply/"] == "" {
			t.Errorf("got %+v, want data a=1, no resourceVersion and tool's Apply entry", cm)
		}
		mustDo(t, http.StatusNotFound, "GET", cfg, "", "", nil)
	})

	var created corev1.ConfigMap
	t.Run("apply creates", func(t *testing.T) {
		mustDo(t, http.StatusCreated, "PATCH", cfg+"?fieldManager=tool&fieldValidation=Strict", applyType, configMapYAML("{a: '1', b: '2'}"), &created)
		if created.UID == "" || created.ResourceVersion == "" || created.Data["a"] != "1" || created.Data["b"] != "2" {
			t.Errorf("got %+v, want a stored ConfigMap with a=1 b=2", created)
		}
		if got, want := managers(t, &created), `{"f:data":{"f:a":{},"f:b":{}}}`; len(got) != 1 || got["tool/Apply/"] != want {
			t.Errorf("got managedFields %v, want tool/Apply owning %s", got, want)
		}
		var got corev1.ConfigMap
		mustDo(t, http.StatusOK, "GET", cfg, "", "", &got)
		if got.ResourceVersion != created.ResourceVersion || len(got.ManagedFields) != 1 || got.ManagedFields[0].Time == nil {
			t.Errorf("GET: got %+v, want the created object with its managedFields and their time", got)
		}
	})

	t.Run("same apply writes nothing", func(t *testing.T) {
		var again corev1.ConfigMap
		mustDo(t, http.StatusOK, "PATCH", cfg+"?fieldManager=tool", applyType, configMapYAML("{a: '1', b: '2'}"), &again)
		if again.ResourceVersion != created.ResourceVersion {
			t.Errorf("got resourceVersion %s, want %s unchanged", again.ResourceVersion, created.ResourceVersion)
		}
	})

	t.Run("conflict and force", func(t *testing.T) {
		code, _, body := do(t, "PATCH", cfg+"?fieldManager=other", applyType, configMapYAML("{a: 'x'}"))
		st := statusOf(t, body)
		want := `Apply failed with 1 conflict: conflict with "tool": .data.a`
		if code != http.StatusConflict || st.Reason != metav1.StatusReasonConflict || st.Message != want {
			t.Fatalf("got %d %s %q, want 409 Conflict %q", code, st.Reason, st.Message, want)
		}
		if st.Details == nil || len(st.Details.Causes) != 1 || st.Details.Causes[0].Type != metav1.CauseTypeFieldManagerConflict || st.Details.Causes[0].Field != ".data.a" {
			t.Errorf("got details %+v, want one FieldManagerConflict cause on .data.a", st.Details)
		}
		var forced corev1.ConfigMap
		mustDo(t, http.StatusOK, "PATCH", cfg+"?fieldManager=other&force=true", applyType, configMapYAML("{a: 'x'}"), &forced)
		got := managers(t, &forced)
		if forced.Data["a"] != "x" || forced.Data["b"] != "2" || got["other/Apply/"] != `{"f:data":{"f:a":{}}}` || got["tool/Apply/"] != `{"f:data":{"f:b":{}}}` {
			t.Errorf("got data %v managers %v, want a=x owned by other, b=2 by tool", forced.Data, got)
		}
	})

	t.Run("dropped field is removed", func(t *testing.T) {
		var cm corev1.ConfigMap
		mustDo(t, http.StatusOK, "PATCH", cfg+"?fieldManager=tool", applyType, configMapYAML("{c: '3'}"), &cm)
		if got, want := fmt.Sprint(cm.Data), "map[a:x c:3]"; got != want {
			t.Errorf("got data %s, want %s (b dropped by its only manager, a kept by other)", got, want)
		}
	})

	t.Run("other writes are tracked", func(t *testing.T) {
		var cm corev1.ConfigMap
		mustDo(t, http.StatusOK, "PATCH", cfg+"?fieldManager=editor", "application/merge-patch+json", `{"data":{"c":"edited"}}`, &cm)
		if got := managers(t, &cm); got["editor/Update/"] != `{"f:data":{"f:c":{}}}` || strings.Contains(got["tool/Apply/"], "f:c") {
			t.Errorf("got managers %v, want editor owning data.c, taken from tool", got)
		}
		// tool now conflicts on c.
		code, _, body := do(t, "PATCH", cfg+"?fieldManager=tool", applyType, configMapYAML("{c: '3'}"))
		if st := statusOf(t, body); code != http.StatusConflict || !strings.Contains(st.Message, `conflict with "editor" using v1: .data.c`) {
			t.Errorf("got %d %q, want 409 naming editor", code, st.Message)
		}
		// No ?fieldManager=: the User-Agent names the manager.
		code, _, body = do(t, "PATCH", cfg, "application/strategic-merge-patch+json", `{"data":{"d":"4"}}`, "User-Agent", "mytool/1.2 (linux/amd64)")
		if code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", code, body)
		}
		if err := json.Unmarshal(body, &cm); err != nil {
			t.Fatal(err)
		}
		if got := managers(t, &cm); got["mytool/Update/"] != `{"f:data":{"f:d":{}}}` {
			t.Errorf("got managers %v, want mytool owning data.d", got)
		}
		cm.Data["e"] = "5"
		cm.ManagedFields = nil // a client that does not send them keeps them
		put, _ := json.Marshal(&cm)
		mustDo(t, http.StatusOK, "PUT", cfg+"?fieldManager=replacer", "application/json", string(put), &cm)
		// (tool owns nothing any more: it gave up b, editor took c.)
		if got := managers(t, &cm); got["replacer/Update/"] != `{"f:data":{"f:e":{}}}` || len(got) != 4 {
			t.Errorf("got managers %v, want replacer owning data.e beside other, editor and mytool", got)
		}
		var posted corev1.ConfigMap
		code, _, body = do(t, "POST", cms, "application/json", `{"metadata":{"name":"posted"},"data":{"k":"v"}}`, "User-Agent", "kubectl/v1.32.4 (linux/amd64) kubernetes/abc")
		if code != http.StatusCreated {
			t.Fatalf("POST: got %d %s, want 201", code, body)
		}
		if err := json.Unmarshal(body, &posted); err != nil {
			t.Fatal(err)
		}
		if got := managers(t, &posted); len(got) != 1 || got["kubectl/Update/"] != `{"f:data":{".":{},"f:k":{}}}` {
			t.Errorf("POST: got managers %v, want kubectl owning data.k", got)
		}
	})

	t.Run("concurrent appliers all land", func(t *testing.T) {
		const n = 6
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  labels: {l%d: v}\n", i)
				code, _, b := do(t, "PATCH", fmt.Sprintf("%s?fieldManager=m%d", cfg, i), applyType, body)
				if code != http.StatusOK {
					errs <- fmt.Sprintf("m%d: got %d %s, want 200", i, code, b)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		var cm corev1.ConfigMap
		mustDo(t, http.StatusOK, "GET", cfg, "", "", &cm)
		got := managers(t, &cm)
		for i := range n {
			if cm.Labels[fmt.Sprintf("l%d", i)] != "v" || got[fmt.Sprintf("m%d/Apply/", i)] == "" {
				t.Errorf("got labels %v managers %v, want label l%d and manager m%d", cm.Labels, got, i, i)
			}
		}
	})
}

// TestServerSideApplyWorkloads applies a Deployment: defaults and the
// status subresource stay out of the applier's fields, status writes are
// recorded with their subresource.
func TestServerSideApplyWorkloads(t *testing.T) {
	ts := startServer(t)
	web := ts.URL + "/apis/apps/v1/namespaces/default/deployments/web"
	manifest := `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: nginx, image: "nginx:1.26"}]
status: {replicas: 7}
`
	var d struct {
		metav1.ObjectMeta `json:"metadata"`
		Spec              struct {
			Replicas int32 `json:"replicas"`
		} `json:"spec"`
		Status struct {
			Replicas int32 `json:"replicas"`
		} `json:"status"`
	}
	mustDo(t, http.StatusNotFound, "PATCH", web+"/status?fieldManager=kubectl", applyType, manifest, nil)
	mustDo(t, http.StatusCreated, "PATCH", web+"?fieldManager=kubectl", applyType, manifest, &d)
	got := managers(t, &d)
	if d.Spec.Replicas != 2 || d.Generation != 1 || d.Status.Replicas != 0 {
		t.Errorf("got replicas %d generation %d status.replicas %d, want 2, 1 and no status", d.Spec.Replicas, d.Generation, d.Status.Replicas)
	}
	if e := got["kubectl/Apply/"]; !strings.Contains(e, `"f:replicas":{}`) || strings.Contains(e, "f:status") {
		t.Errorf("got kubectl's fields %s, want spec.replicas but no status", e)
	}

	mustDo(t, http.StatusOK, "PATCH", web+"/status?fieldManager=controller", "application/merge-patch+json", `{"status":{"replicas":2}}`, &d)
	if e := managers(t, &d)["controller/Update/status"]; d.Status.Replicas != 2 || e != `{"f:status":{"f:replicas":{}}}` {
		t.Errorf("got status.replicas %d and controller's entry %q, want 2 owned through status", d.Status.Replicas, e)
	}
	// The status apply of a controller.
	mustDo(t, http.StatusOK, "PATCH", web+"/status?fieldManager=ctrl2&force=true", applyType,
		"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nstatus: {replicas: 3}\n", &d)
	if e := managers(t, &d)["ctrl2/Apply/status"]; d.Status.Replicas != 3 || e != `{"f:status":{"f:replicas":{}}}` {
		t.Errorf("got status.replicas %d and ctrl2's entry %q, want 3 owned through status", d.Status.Replicas, e)
	}
}

// TestKubectlServerSideApply drives server-side apply with the real kubectl.
func TestKubectlServerSideApply(t *testing.T) {
	ts := startServer(t)
	k := newKubectl(t, ts.URL)
	dir := t.TempDir()
	write := func(name string, replicas int, data string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		manifest := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: %d
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.26
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data: {%s}
`, replicas, data)
		if err := os.WriteFile(p, []byte(manifest), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	v1 := write("v1.yaml", 2, "a: '1'")
	v2 := write("v2.yaml", 3, "a: '1', b: '2'")
	other := write("other.yaml", 5, "a: '1'")
	k.runSteps(t, []kubectlStep{
		{args: []string{"apply", "--server-side", "-f", v1}, wantOut: []string{`deployment.apps/web serverside-applied`, `configmap/cfg serverside-applied`}},
		{args: []string{"get", "deploy", "web", "-o", "yaml", "--show-managed-fields"},
			wantOut: []string{`managedFields:`, `manager: kubectl\n`, `operation: Apply`, `apiVersion: apps/v1`, `fieldsType: FieldsV1`, `f:replicas: \{\}`, `time: "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"`}},
		{args: []string{"apply", "--server-side", "-f", v2}, wantOut: []string{`deployment.apps/web serverside-applied`, `configmap/cfg serverside-applied`}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"}, wantOut: []string{`^3$`}},
		{args: []string{"get", "cm", "cfg", "-o", "jsonpath={.data.b}"}, wantOut: []string{`^2$`}},
		// kubectl diff exits 1 when there are differences; b would go.
		{args: []string{"diff", "--server-side", "-f", v1}, wantCode: 1, wantOut: []string{`(?m)^-  replicas: 3$`, `(?m)^\+  replicas: 2$`, `(?m)^-  b: "2"$`}},
		{args: []string{"diff", "--server-side", "-f", v2}, wantCode: 0, wantOut: []string{`^$`}},
		{args: []string{"apply", "--server-side", "--field-manager=other", "-f", other}, wantCode: 1,
			wantErr: `Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas`},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"}, wantOut: []string{`^3$`}},
		{args: []string{"apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", other}, wantOut: []string{`deployment.apps/web serverside-applied`}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"}, wantOut: []string{`^5$`}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.metadata.managedFields[*].manager}"}, wantOut: []string{`^kubectl other$`}},
		{args: []string{"diff", "--server-side", "--force-conflicts", "-f", v2}, wantCode: 1, wantOut: []string{`(?m)^-  replicas: 5$`, `(?m)^\+  replicas: 3$`}},
		{args: []string{"diff", "--server-side", "--field-manager=other", "-f", other}, wantCode: 0, wantOut: []string{`^$`}},
		{args: []string{"get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"}, wantOut: []string{`^5$`}},
	})
}

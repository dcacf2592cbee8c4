package history

import (
	"bytes"
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
)

func template(image string) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "a"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: image}}},
	}
}

// TestPatchIsKubectls checks the data against what kubectl computes from a
// set to compare with a revision (spec.template of the set's JSON with
// "$patch":"replace"), and that applying it restores the template.
func TestPatchIsKubectls(t *testing.T) {
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: appsv1.DaemonSetSpec{Template: template("x:1")}}
	raw, err := json.Marshal(ds)
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	tmpl := obj["spec"].(map[string]any)["template"].(map[string]any)
	tmpl["$patch"] = "replace"
	want, err := json.Marshal(map[string]any{"spec": map[string]any{"template": tmpl}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := Patch(ds.Spec.Template)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Patch:\n got %s\nwant %s", got, want)
	}

	changed := ds.DeepCopy()
	changed.Spec.Template = template("x:2")
	changed.Spec.Template.Labels["extra"] = "y"
	cur, err := json.Marshal(changed)
	if err != nil {
		t.Fatal(err)
	}
	back, err := strategicpatch.StrategicMergePatch(cur, got, &appsv1.DaemonSet{})
	if err != nil {
		t.Fatal(err)
	}
	var restored appsv1.DaemonSet
	if err := json.Unmarshal(back, &restored); err != nil {
		t.Fatal(err)
	}
	if img, lbls := restored.Spec.Template.Spec.Containers[0].Image, restored.Spec.Template.Labels; img != "x:1" || len(lbls) != 1 {
		t.Errorf("patched template: image %s labels %v, want x:1 and only app", img, lbls)
	}
}

func TestHash(t *testing.T) {
	a, b := []byte(`{"a":1}`), []byte(`{"a":2}`)
	for _, c := range []struct {
		name string
		x, y string
		same bool
	}{
		{"same data", Hash(a, 0), Hash(a, 0), true},
		{"other data", Hash(a, 0), Hash(b, 0), false},
		{"a collision", Hash(a, 0), Hash(a, 1), false},
	} {
		if (c.x == c.y) != c.same {
			t.Errorf("%s: %s vs %s, want same=%v", c.name, c.x, c.y, c.same)
		}
	}
	if got := Name("web", "abc"); got != "web-abc" {
		t.Errorf("Name: got %s, want web-abc", got)
	}
}

func TestSync(t *testing.T) {
	cs := kubernetes.NewForConfigOrDie(apitest.Start(t))
	ctx := t.Context()
	owner, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gvk := appsv1.SchemeGroupVersion.WithKind("DaemonSet")
	list := func() []*appsv1.ControllerRevision {
		l, err := cs.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var all []*appsv1.ControllerRevision
		for i := range l.Items {
			all = append(all, &l.Items[i])
		}
		return Owned(owner, all)
	}
	sync := func(image string, collisions int32) (*appsv1.ControllerRevision, int32) {
		t.Helper()
		r, n, err := For(cs, owner, gvk, template(image)).Sync(ctx, list(), collisions)
		if err != nil {
			t.Fatal(err)
		}
		return r, n
	}

	r1, _ := sync("x:1", 0)
	if r1.Revision != 1 || r1.Labels["app"] != "a" || r1.Labels[HashLabel] == "" || r1.Name != Name("owner", r1.Labels[HashLabel]) {
		t.Fatalf("first revision: %+v", r1.ObjectMeta)
	}
	if again, _ := sync("x:1", 0); again.Name != r1.Name || again.Revision != 1 {
		t.Errorf("same template again: got %s #%d, want %s #1", again.Name, again.Revision, r1.Name)
	}
	r2, _ := sync("x:2", 0)
	if r2.Revision != 2 {
		t.Errorf("second template: got #%d, want #2", r2.Revision)
	}
	back, _ := sync("x:1", 0)
	if back.Name != r1.Name || back.Revision != 3 {
		t.Errorf("first template again: got %s #%d, want %s renumbered #3", back.Name, back.Revision, r1.Name)
	}
	if n := len(list()); n != 2 {
		t.Errorf("%d revisions, want 2", n)
	}

	// A name taken by other data is a collision: the next name is tried.
	data, err := Patch(template("x:3"))
	if err != nil {
		t.Fatal(err)
	}
	squatter := &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{Name: Name("owner", Hash(data, 0)), Namespace: "default"},
		Data:       runtime.RawExtension{Raw: []byte(`{"other":true}`)},
		Revision:   1,
	}
	if _, err := cs.AppsV1().ControllerRevisions("default").Create(ctx, squatter, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r3, collisions := sync("x:3", 0)
	if collisions != 1 || r3.Name != Name("owner", Hash(data, 1)) || r3.Revision != 4 {
		t.Errorf("after a collision: got %s #%d with %d collisions, want %s #4 with 1", r3.Name, r3.Revision, collisions, Name("owner", Hash(data, 1)))
	}

	// Truncate keeps the live ones and the newest up to the limit.
	if err := Truncate(ctx, cs, list(), map[string]bool{r3.Name: true}, 1); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range list() {
		names = append(names, r.Name)
	}
	if len(names) != 2 || names[0] != r1.Name || names[1] != r3.Name {
		t.Errorf("after Truncate: %v, want [%s %s] (#3 and the live #4)", names, r1.Name, r3.Name)
	}
}

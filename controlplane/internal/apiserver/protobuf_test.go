package apiserver

import (
	"net/http"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// contentTypes records the Content-Type of every response.
type contentTypes struct {
	mu   sync.Mutex
	seen map[string]int
	next http.RoundTripper
}

func (c *contentTypes) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		c.seen[resp.Header.Get("Content-Type")]++
		c.mu.Unlock()
	}
	return resp, err
}

// TestProtobufResponses: client-go's typed clients asking for protobuf get
// protobuf answers that decode to what was stored, and clients asking for
// JSON still get JSON.
func TestProtobufResponses(t *testing.T) {
	ts := startServer(t)
	ct := &contentTypes{seen: map[string]int{}, next: http.DefaultTransport}
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host: ts.URL, Transport: ct,
		ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf", AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	created, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "pb", Labels: map[string]string{"a": "b"}}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if created.UID == "" || created.ResourceVersion == "" || created.Data["k"] != "v" || created.Labels["a"] != "b" {
		t.Errorf("created: got %+v", created)
	}
	got, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "pb", metav1.GetOptions{})
	if err != nil || got.UID != created.UID || got.ResourceVersion != created.ResourceVersion {
		t.Fatalf("get: got %+v, %v", got, err)
	}
	got.Data["k"] = "w"
	upd, err := cs.CoreV1().ConfigMaps("default").Update(ctx, got, metav1.UpdateOptions{})
	if err != nil || upd.Data["k"] != "w" {
		t.Fatalf("update: got %+v, %v", upd, err)
	}
	list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.ResourceVersion == "" || list.Items[0].Data["k"] != "w" {
		t.Fatalf("list: got %+v, %v", list, err)
	}
	labels := map[string]string{"app": "web"}
	d, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: labels},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}}},
	}}, metav1.CreateOptions{})
	if err != nil || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Template.Spec.Containers[0].ImagePullPolicy != corev1.PullAlways {
		t.Fatalf("deployment: got %+v, %v", d, err)
	}
	// Errors stay JSON Status objects, which client-go reads.
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "nope", metav1.GetOptions{}); err == nil || err.Error() != `configmaps "nope" not found` {
		t.Errorf("missing: got %v", err)
	}
	ct.mu.Lock()
	pb, js := ct.seen["application/vnd.kubernetes.protobuf"], ct.seen["application/json"]
	ct.mu.Unlock()
	if pb != 5 || js != 1 {
		t.Errorf("got %d protobuf and %d JSON responses (%v), want 5 and 1 (the error)", pb, js, ct.seen)
	}

	// A JSON client is answered in JSON.
	code, header, _ := do(t, "GET", ts.URL+"/api/v1/namespaces/default/configmaps/pb", "", "", "Accept", "application/json, application/vnd.kubernetes.protobuf")
	if code != 200 || header.Get("Content-Type") != "application/json" {
		t.Errorf("JSON first: got %d %s", code, header.Get("Content-Type"))
	}
}

// TestProtobufWatch: a typed client-go watch asking for protobuf gets the
// length-delimited protobuf stream and decodes every event.
func TestProtobufWatch(t *testing.T) {
	ts := startServer(t)
	ct := &contentTypes{seen: map[string]int{}, next: http.DefaultTransport}
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host: ts.URL, Transport: ct,
		ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf", AcceptContentTypes: "application/vnd.kubernetes.protobuf,application/json"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	w, err := cs.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: "1", AllowWatchBookmarks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w1"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []watch.EventType{watch.Added, watch.Deleted} {
		select {
		case ev := <-w.ResultChan():
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if ev.Type != want || !ok || cm.Name != "w1" || cm.Data["k"] != "v" {
				t.Fatalf("got %s %#v, want %s of w1", ev.Type, ev.Object, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s event", want)
		}
	}
	ct.mu.Lock()
	defer ct.mu.Unlock()
	if ct.seen["application/vnd.kubernetes.protobuf;stream=watch"] != 1 {
		t.Errorf("response types %v, want one protobuf watch stream", ct.seen)
	}
}

package master

import (
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// recorder counts what an informer's handlers saw, per object and event.
type recorder struct {
	mu     sync.Mutex
	events map[string]int // "add ns/name", "update ns/name value", "delete ns/name"
}

func (r *recorder) record(what string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events[what]++
}

func (r *recorder) snapshot() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int, len(r.events))
	for k, v := range r.events {
		out[k] = v
	}
	return out
}

// TestSharedInformer runs a client-go SharedInformerFactory on configmaps
// against the master and checks that it sees every create, update and delete
// exactly once.
func TestSharedInformer(t *testing.T) {
	dataDir, _ := startMaster(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", KubeconfigPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const ns = "default"
	// Objects that exist before the informer starts arrive as adds from its list.
	if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}, Data: map[string]string{"v": "0"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	rec := &recorder{events: map[string]int{}}
	// The leader's kube-root-ca.crt is not this test's.
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name!=kube-root-ca.crt" }))
	inf := factory.Core().V1().ConfigMaps().Informer()
	key := func(obj any) string {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		cm := obj.(*corev1.ConfigMap)
		return cm.Namespace + "/" + cm.Name
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { rec.record("add " + key(obj)) },
		UpdateFunc: func(old, obj any) {
			rec.record(fmt.Sprintf("update %s %s", key(obj), obj.(*corev1.ConfigMap).Data["v"]))
		},
		DeleteFunc: func(obj any) { rec.record("delete " + key(obj)) },
	}); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	defer func() {
		close(stop)        // stop the informers first,
		factory.Shutdown() // then wait for them
	}()
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("informer cache never synced")
	}

	want := map[string]int{"add default/before": 1}
	for i := range 10 {
		name := fmt.Sprintf("cm%d", i)
		cm, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": "0"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		want["add default/"+name]++
		for v := 1; v <= 2; v++ {
			cm.Data["v"] = fmt.Sprint(v)
			if cm, err = cs.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			want[fmt.Sprintf("update default/%s %d", name, v)]++
		}
		if i%2 == 0 {
			if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			want["delete default/"+name]++
		}
	}

	deadline := time.Now().Add(15 * time.Second)
	for {
		got := rec.snapshot()
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("informer saw %v\nwant exactly %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The informer's store agrees with the server.
	list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name!=kube-root-ca.crt"})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(inf.GetStore().List()); got != len(list.Items) {
		t.Fatalf("informer store has %d configmaps, server %d", got, len(list.Items))
	}
}

package sharedinformers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// TestOneFactoryPerTerm: the components of a term get the same factory,
// which starts only once all of them have registered (so an indexer added
// last still works), and a new term gets a new one.
func TestOneFactoryPerTerm(t *testing.T) {
	client := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}})
	p := New(client, 2)
	ctx, cancel := context.WithCancel(t.Context())
	f1, start1, release1 := p.Join(ctx)
	f2, start2, release2 := p.Join(ctx)
	if f1 != f2 {
		t.Fatal("two components of one term got different factories")
	}
	inf := f1.Core().V1().Pods().Informer()
	start1()
	// Not started yet: the second component may still add an indexer.
	if err := inf.AddIndexers(cache.Indexers{"x": cache.MetaNamespaceIndexFunc}); err != nil {
		t.Fatalf("indexer before the last start: %v", err)
	}
	start2()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		t.Fatal("not synced")
	}
	if got := len(inf.GetStore().List()); got != 1 {
		t.Errorf("got %d pods, want 1", got)
	}
	next, cancelNext := context.WithCancel(t.Context())
	defer cancelNext()
	if f3, _, release3 := p.Join(next); f3 == f1 {
		t.Error("a new term got the old factory")
	} else {
		release3()
	}
	cancel()
	var wg sync.WaitGroup
	wg.Go(release1)
	wg.Go(release2)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("releases did not return")
	}
}

// TestReleaseWithoutStart: a component that fails before start releases
// without waiting, and the factory never starts.
func TestReleaseWithoutStart(t *testing.T) {
	p := New(fake.NewClientset(), 1)
	_, _, release := p.Join(t.Context())
	done := make(chan struct{})
	go func() { release(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("release blocked")
	}
}

// TestLocal: with Local set, the informers of the types it knows read
// through it (with the namespace index), every group the controllers use
// reaches it, and the other types still read through the client.
func TestLocal(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "from-client"}})
	p := New(client, 1)
	var asked []string
	p.Local = func(obj runtime.Object) (*cache.ListWatch, bool) {
		asked = append(asked, fmt.Sprintf("%T", obj))
		if _, ok := obj.(*corev1.Pod); !ok {
			return nil, false
		}
		pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "from-local", Namespace: "shop", ResourceVersion: "5"}}
		return &cache.ListWatch{
			ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
				return &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "5"}, Items: []corev1.Pod{pod}}, nil
			},
			// As the registry answers a watch-list (client-go's reflector
			// asks for one): the pods, then the bookmark that ends them.
			WatchFuncWithContext: func(_ context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				w := watch.NewFakeWithChanSize(2, false)
				if opts.SendInitialEvents != nil && *opts.SendInitialEvents {
					w.Add(pod.DeepCopy())
					w.Action(watch.Bookmark, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{ResourceVersion: "5",
						Annotations: map[string]string{metav1.InitialEventsAnnotationKey: "true"}}})
				}
				return w, nil
			},
		}, true
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	f, start, release := p.Join(ctx)
	defer release()
	pods, nodes := f.Core().V1().Pods(), f.Core().V1().Nodes()
	pods.Informer()
	nodes.Informer()
	f.Apps().V1().Deployments().Informer()
	f.Batch().V1().Jobs().Informer()
	f.Coordination().V1().Leases().Informer()
	f.Discovery().V1().EndpointSlices().Informer()
	f.Policy().V1().PodDisruptionBudgets().Informer()
	f.Rbac().V1().Roles().Informer()
	start()
	if !cache.WaitForCacheSync(ctx.Done(), pods.Informer().HasSynced, nodes.Informer().HasSynced) {
		t.Fatal("not synced")
	}
	if got, err := pods.Lister().Pods("shop").List(labels.Everything()); err != nil || len(got) != 1 || got[0].Name != "from-local" {
		t.Errorf("pods in shop (namespace index): %v, %v; want from-local", got, err)
	}
	if got, err := nodes.Lister().List(labels.Everything()); err != nil || len(got) != 1 || got[0].Name != "from-client" {
		t.Errorf("nodes: %v, %v; want from-client", got, err)
	}
	want := []string{"*v1.Pod", "*v1.Node", "*v1.Deployment", "*v1.Job", "*v1.Lease", "*v1.EndpointSlice", "*v1.PodDisruptionBudget", "*v1.Role"}
	if !slices.Equal(asked, want) {
		t.Errorf("Local asked for %v, want %v", asked, want)
	}
}

func TestAs(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}
	if got, ok := As[*corev1.Pod](pod); !ok || got != pod {
		t.Errorf("As of a pod: %v, %v", got, ok)
	}
	if got, ok := As[*corev1.Pod](cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod}); !ok || got != pod {
		t.Errorf("As of a tombstone: %v, %v", got, ok)
	}
	if got, ok := As[metav1.Object](cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod}); !ok || got.GetName() != "p" {
		t.Errorf("As of a tombstone as metav1.Object: %v, %v", got, ok)
	}
	if _, ok := As[*corev1.Node](pod); ok {
		t.Error("As took a pod for a node")
	}
	if _, ok := As[*corev1.Pod](cache.DeletedFinalStateUnknown{Key: "ns/n", Obj: &corev1.Node{}}); ok {
		t.Error("As took a tombstone's node for a pod")
	}
}

package sharedinformers

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

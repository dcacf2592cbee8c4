// Package sharedinformers lets the leader-only components of one
// leadership term share one client-go informer per resource, as the
// controllers inside kube-controller-manager do: every pod event is then
// watched, decoded and cached once for the scheduler and all the
// controllers, instead of once for each.
//
//	p := sharedinformers.New(client, n) // n: how many components use p
//	// in each component's Run(ctx), ctx being the term's context:
//	factory, start, release := p.Join(ctx)
//	defer release()
//	inf := factory.Core().V1().Pods().Informer() // informers, indexers, handlers
//	start()                                      // this component has registered all it needs
//	cache.WaitForCacheSync(ctx.Done(), inf.HasSynced)
//
// The factory of a term is started once all n components have called
// start, so that every indexer is added before any informer runs (client-go
// refuses indexers on a started informer). It stops at the last release,
// which waits for its goroutines. Components of one
// term must be given the same context (the leadership runner's errgroup
// gives them one); each new context is a new term with a new factory.
//
// A component run alone (in tests) uses New(client, 1).
package sharedinformers

import (
	"context"
	"sync"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Provider hands out one informer factory per term. It is safe for
// concurrent use.
type Provider struct {
	client kubernetes.Interface
	users  int

	mu    sync.Mutex
	terms map[<-chan struct{}]*term
}

// term is one term's factory and its users' progress.
type term struct {
	factory           informers.SharedInformerFactory
	stop              chan struct{} // closed by the last release
	started, released int
}

// New returns a Provider for users components reaching the API through
// client.
func New(client kubernetes.Interface, users int) *Provider {
	return &Provider{client: client, users: max(users, 1), terms: map[<-chan struct{}]*term{}}
}

// Join returns the factory of ctx's term. start says that the caller has
// asked for every informer and indexer it needs; release that it no longer
// uses the factory (call it once, when its Run returns).
func (p *Provider) Join(ctx context.Context) (factory informers.SharedInformerFactory, start, release func()) {
	done := ctx.Done()
	p.mu.Lock()
	t, ok := p.terms[done]
	if !ok {
		t = &term{factory: informers.NewSharedInformerFactory(p.client, 0), stop: make(chan struct{})}
		p.terms[done] = t
	}
	p.mu.Unlock()
	var once, onceRelease sync.Once
	start = func() {
		once.Do(func() {
			p.mu.Lock()
			t.started++
			all := t.started == p.users
			p.mu.Unlock()
			if all {
				t.factory.Start(t.stop)
			}
		})
	}
	release = func() {
		onceRelease.Do(func() {
			p.mu.Lock()
			t.released++
			last := t.released == p.users
			if last {
				delete(p.terms, done)
			}
			p.mu.Unlock()
			if last {
				close(t.stop)
				t.factory.Shutdown() // waits for the informers' goroutines
			}
		})
	}
	return t.factory, start, release
}

// Join is p.Join(ctx); a nil p (a component run on its own, as in its
// tests) gets informers of its own from client.
func Join(ctx context.Context, p *Provider, client kubernetes.Interface) (factory informers.SharedInformerFactory, start, release func()) {
	if p == nil {
		p = New(client, 1)
	}
	return p.Join(ctx)
}

// As returns the object an informer event handler got as a T. A delete
// handler may get a tombstone (cache.DeletedFinalStateUnknown) instead of
// the object when the watch missed the delete: As unwraps it. ok is false
// for anything else.
func As[T any](obj any) (T, bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tomb.Obj
	}
	t, ok := obj.(T)
	return t, ok
}

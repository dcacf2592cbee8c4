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
//
// On a master, the informers read the API in process (Provider.Local):
// the API server's own list and watch, without a connection.
package sharedinformers

import (
	"context"
	"reflect"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/informers/apps"
	"k8s.io/client-go/informers/batch"
	"k8s.io/client-go/informers/coordination"
	"k8s.io/client-go/informers/core"
	"k8s.io/client-go/informers/discovery"
	"k8s.io/client-go/informers/internalinterfaces"
	"k8s.io/client-go/informers/policy"
	"k8s.io/client-go/informers/rbac"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Local returns the ListerWatcher the informer of obj's type (a
// *corev1.Pod for pods) lists and watches through instead of the client,
// or ok false for a type the client serves.
type Local func(obj runtime.Object) (lw *cache.ListWatch, ok bool)

// Provider hands out one informer factory per term. It is safe for
// concurrent use.
type Provider struct {
	client kubernetes.Interface
	users  int
	// Local, when set before the first Join, is where the informers of
	// the types it knows read the API (see Local).
	Local Local

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
		var f informers.SharedInformerFactory = informers.NewSharedInformerFactory(p.client, 0)
		if p.Local != nil {
			f = &localFactory{SharedInformerFactory: f, local: p.Local, asked: map[reflect.Type]bool{}}
		}
		t = &term{factory: f, stop: make(chan struct{})}
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

// localFactory is a factory whose informers of the types local knows
// list and watch through it. The groups the controllers use are reached
// through the factory itself (Core, Apps, ...), so that their informers
// are made by its InformerFor.
type localFactory struct {
	informers.SharedInformerFactory
	local Local

	mu    sync.Mutex
	asked map[reflect.Type]bool // the types local was asked for
}

// InformerFor returns the factory's informer of obj's type, made with
// newFunc or, for a type local knows, over local's ListerWatcher, with
// the namespace index the factory's own informers have.
func (f *localFactory) InformerFor(obj runtime.Object, newFunc internalinterfaces.NewInformerFunc) cache.SharedIndexInformer {
	// Every Informer() and Lister() comes here; the factory makes an
	// informer of a type once, so local is asked once.
	f.mu.Lock()
	defer f.mu.Unlock()
	if t := reflect.TypeOf(obj); !f.asked[t] {
		f.asked[t] = true
		if lw, ok := f.local(obj); ok {
			newFunc = func(_ kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
				return cache.NewSharedIndexInformerWithOptions(lw, obj, cache.SharedIndexInformerOptions{
					ResyncPeriod: resync, Indexers: cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
				})
			}
		}
	}
	return f.SharedInformerFactory.InformerFor(obj, newFunc)
}

func (f *localFactory) Apps() apps.Interface   { return apps.New(f, metav1.NamespaceAll, nil) }
func (f *localFactory) Batch() batch.Interface { return batch.New(f, metav1.NamespaceAll, nil) }
func (f *localFactory) Coordination() coordination.Interface {
	return coordination.New(f, metav1.NamespaceAll, nil)
}
func (f *localFactory) Core() core.Interface { return core.New(f, metav1.NamespaceAll, nil) }
func (f *localFactory) Discovery() discovery.Interface {
	return discovery.New(f, metav1.NamespaceAll, nil)
}
func (f *localFactory) Policy() policy.Interface { return policy.New(f, metav1.NamespaceAll, nil) }
func (f *localFactory) Rbac() rbac.Interface     { return rbac.New(f, metav1.NamespaceAll, nil) }

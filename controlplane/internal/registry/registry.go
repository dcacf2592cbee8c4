// Package registry owns the storage of Kubernetes API objects in raftstore
// with Kubernetes semantics: keys, encoding, server-owned metadata (uid,
// creationTimestamp, generation, resourceVersion, deletionTimestamp),
// optimistic concurrency, finalizers, dry run, label and field selectors,
// paged lists with continue tokens, and watches, with the error values
// (k8s.io/apimachinery/pkg/api/errors) and wording of kube-apiserver. It is
// resource-agnostic: each served resource is described by a Resource, whose
// strategy hooks add the type-specific rules.
//
// The API server builds one Store over the node's raftstore and calls it per
// request:
//
//	st, err := registry.New(registry.Config{KV: rs, Scheme: scheme})
//	obj, err := st.Create(ctx, pods, "default", pod, registry.CreateOptions{})
//	obj, err = st.Get(ctx, pods, "default", "web", registry.GetOptions{})
//	list, err := st.List(ctx, pods, "default", registry.ListOptions{Limit: 500})
//	obj, err = st.Update(ctx, pods, "default", "web", changed, registry.UpdateOptions{})
//	obj, err = st.GuaranteedUpdate(ctx, pods, "default", "web", mutate) // patch, subresources
//	obj, err = st.Delete(ctx, pods, "default", "web", registry.DeleteOptions{})
//	w, err := st.Watch(ctx, pods, "default", registry.ListOptions{ResourceVersion: rv})
//
// Every decision (uid, timestamps, generated names) is made here before a
// write is proposed, so the replicated state machine stays deterministic.
// All methods are safe for concurrent use.
package registry

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/skiff-sh/skiff/raftstore"
)

// KV is the part of raftstore the registry uses; *raftstore.Store implements it.
type KV interface {
	Create(ctx context.Context, key string, value []byte) (int64, error)
	Update(ctx context.Context, key string, value []byte, expected int64) (raftstore.KeyValue, error)
	Delete(ctx context.Context, key string, expected int64) (raftstore.KeyValue, int64, error)
	Get(ctx context.Context, key string, o raftstore.ReadOptions) (*raftstore.KeyValue, int64, error)
	List(ctx context.Context, prefix string, o raftstore.ListOptions) (raftstore.ListResult, error)
	Watch(ctx context.Context, prefix string, from int64) (*raftstore.Watcher, error)
	Txn(ctx context.Context, txn *raftstore.Txn) (*raftstore.TxnResult, error)
	// Revision is the last revision applied on the local replica.
	Revision() int64
}

var _ KV = (*raftstore.Store)(nil)

// Resource describes one served resource. Hooks may be nil. Hooks receive
// objects the registry owns (copies): they may modify them in place.
type Resource struct {
	// GroupResource names the resource in keys and errors, e.g.
	// {Group: "apps", Resource: "deployments"}.
	GroupResource schema.GroupResource
	// Kind is the stored group, version and kind, e.g. apps/v1 Deployment.
	// Objects are stored and returned in this version, with TypeMeta set.
	Kind       schema.GroupVersionKind
	Namespaced bool
	// Generation says the objects count their spec changes in
	// metadata.generation, starting at 1 (workloads, as in kube-apiserver;
	// PrepareForUpdate bumps it). Other objects have none.
	Generation bool
	// New and NewList return empty objects of the Kind and its list type.
	New     func() runtime.Object
	NewList func() runtime.Object

	// ValidateName checks metadata.name (and generateName); nil means
	// validation.NameIsDNSSubdomain.
	ValidateName validation.ValidateNameFunc
	// Default fills defaulted fields on create and update, before the other hooks.
	Default func(obj runtime.Object)
	// PrepareForCreate clears or sets fields the user may not set on create
	// (for example status on the main resource).
	PrepareForCreate func(obj runtime.Object)
	// PrepareNamed finishes a new object once its name (generated from
	// generateName or not) and uid are set, before validation: a Job's
	// generated selector names its uid.
	PrepareNamed func(obj runtime.Object)
	// PrepareForUpdate does the same on update, and may bump
	// metadata.generation when the spec changed; old is the stored object.
	PrepareForUpdate func(obj, old runtime.Object)
	// Validate and ValidateUpdate add type-specific validation to the
	// registry's metadata checks. Any error fails the write with 422 Invalid.
	Validate       func(obj runtime.Object) field.ErrorList
	ValidateUpdate func(obj, old runtime.Object) field.ErrorList
	// Reservations, when set, are what the objects hold beyond their key
	// (see Reservations).
	Reservations *Reservations
	// Finalizing reports whether obj has finalizers of its kind's own
	// beyond metadata.finalizers (a namespace's spec.finalizers): a delete
	// holds such an object as one with finalizers, and it goes when an
	// update leaves it with neither.
	Finalizing func(obj runtime.Object) bool
	// PrepareForDelete changes an object a delete holds (finalizers, a
	// grace period), when it is first marked for deletion: a namespace
	// becomes Terminating.
	PrepareForDelete func(obj runtime.Object)
	// GracePeriod returns the grace period in seconds of a delete of obj
	// whose client asked for requested (nil: did not say). A positive one
	// keeps the object, with deletionTimestamp and
	// deletionGracePeriodSeconds set, until a delete with grace period 0
	// (for pods: the node's agent, once the containers stopped) removes it.
	// Nil means every delete is immediate (finalizers aside).
	GracePeriod func(obj runtime.Object, requested *int64) int64
	// OrphanByDefault makes a delete that names no propagation policy
	// orphan the object's dependents, as kube-apiserver does for batch/v1
	// Jobs; otherwise such a delete is Background.
	OrphanByDefault bool
	// Fields returns the selectable fields beyond metadata.name and
	// metadata.namespace, e.g. spec.nodeName for pods.
	Fields func(obj runtime.Object) fields.Set
	// Admit, when set, decides whether the request in ctx may write obj,
	// valid and about to be stored: created (old nil) or replacing old.
	// An error refuses the write (RBAC's escalation check).
	Admit func(ctx context.Context, obj, old runtime.Object) error
}

// Config configures a Store.
type Config struct {
	KV KV
	// Scheme knows every Kind served; it creates objects while decoding.
	Scheme *runtime.Scheme
	// Now is the clock for creationTimestamp and deletionTimestamp; time.Now if nil.
	Now func() time.Time
	// BookmarkInterval is how often a quiet watch that allows bookmarks gets
	// a BOOKMARK event with the revision it has seen up to; 0 means
	// DefaultBookmarkInterval.
	BookmarkInterval time.Duration
}

// DefaultBookmarkInterval is the bookmark period of kube-apiserver's watch cache.
const DefaultBookmarkInterval = time.Minute

// Store stores Kubernetes objects in a KV. See the package comment.
type Store struct {
	kv               KV
	codec            *codec
	now              func() time.Time
	bookmarkInterval time.Duration
	events           eventCache
}

// New returns a Store over cfg.KV.
func New(cfg Config) (*Store, error) {
	if cfg.KV == nil || cfg.Scheme == nil {
		return nil, errors.New("registry: config: KV and Scheme are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BookmarkInterval <= 0 {
		cfg.BookmarkInterval = DefaultBookmarkInterval
	}
	return &Store{kv: cfg.KV, codec: newCodec(cfg.Scheme), now: cfg.Now, bookmarkInterval: cfg.BookmarkInterval}, nil
}

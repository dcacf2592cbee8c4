package registry

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skiff-sh/skiff/raftstore"
)

// GetOptions modify a Get.
type GetOptions struct {
	// ResourceVersion: "" reads the latest state (linearizable), "0" the
	// local replica, a revision any state not older than it.
	ResourceVersion string
}

// ListOptions select and page a List, and select the events of a Watch.
type ListOptions struct {
	// LabelSelector and FieldSelector filter objects; nil selects all.
	// Fields are metadata.name, metadata.namespace (namespaced resources)
	// and those of Resource.Fields.
	LabelSelector labels.Selector
	FieldSelector fields.Selector
	// Limit caps the items of a List page (0: no cap); Continue resumes
	// the list where the previous page's metadata.continue says.
	Limit    int64
	Continue string
	// ResourceVersion and ResourceVersionMatch choose the state a List
	// reads, as in kube-apiserver: "" the latest (linearizable); "0" the
	// local replica; a revision with Exact that revision, with NotOlderThan
	// any state not older; a revision without a match is Exact when Limit
	// is set and NotOlderThan otherwise. For a Watch, ResourceVersion is
	// the revision after which events are sent; see Watch.
	ResourceVersion      string
	ResourceVersionMatch metav1.ResourceVersionMatch

	// AllowBookmarks and SendInitialEvents are watch options; see Watch.
	AllowBookmarks    bool
	SendInitialEvents *bool
}

// Get returns the object ns/name, or 404 NotFound.
func (s *Store) Get(ctx context.Context, res *Resource, ns, name string, opts GetOptions) (runtime.Object, error) {
	if !res.Namespaced {
		ns = ""
	}
	k, err := objectKey(res, ns, name)
	if err != nil {
		return nil, err
	}
	ro, minRev, err := s.notOlderThan(opts.ResourceVersion)
	if err != nil {
		return nil, err
	}
	kv, rev, err := s.kv.Get(ctx, k, ro)
	if err != nil {
		return nil, storeError(res, name, expiredList, err)
	}
	if rev < minRev {
		return nil, tooLargeRV(minRev, rev)
	}
	if kv == nil {
		return nil, apierrors.NewNotFound(res.GroupResource, name)
	}
	return s.decode(res, kv.Value, kv.ModRevision)
}

// notOlderThan returns the read options for a read that must see revision
// rv or later ("" the latest, "0" anything): the local replica when it is
// recent enough, else a linearizable read, which the caller must check
// against the returned minimum.
func (s *Store) notOlderThan(rv string) (raftstore.ReadOptions, int64, error) {
	switch rv {
	case "":
		return raftstore.ReadOptions{}, 0, nil
	case "0":
		return raftstore.ReadOptions{Stale: true}, 0, nil
	}
	n, err := parseRV(rv)
	if err != nil {
		return raftstore.ReadOptions{}, 0, err
	}
	return raftstore.ReadOptions{Stale: s.kv.Revision() >= n}, n, nil
}

// List returns the objects of res in ns ("" for all namespaces) that match
// the selectors, as res.NewList's type with metadata.resourceVersion set to
// the revision read and metadata.continue when more items may follow. Every
// page of a paged list reads the revision of the first page; a page whose
// revision has been compacted is 410 Expired.
func (s *Store) List(ctx context.Context, res *Resource, ns string, opts ListOptions) (runtime.Object, error) {
	if !res.Namespaced {
		ns = ""
	}
	p := prefix(res, ns)
	ro, minRev, after, expired, err := s.listRead(p, opts)
	if err != nil {
		return nil, err
	}
	items, rev, last, more, err := s.list(ctx, res, p, ro, after, newFilter(opts), opts.Limit, expired)
	if err != nil {
		return nil, err
	}
	if rev < minRev {
		return nil, tooLargeRV(minRev, rev)
	}
	list := res.NewList()
	if err := meta.SetList(list, items); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	lm.SetResourceVersion(formatRV(rev))
	if more {
		lm.SetContinue(encodeContinue(last, p, rev))
	}
	return list, nil
}

// listRead interprets the revision options of a List of prefix p: the read
// options, the minimum revision the read must reach, the key to list after,
// and the message for a compacted revision.
func (s *Store) listRead(p string, opts ListOptions) (ro raftstore.ReadOptions, minRev int64, after, expired string, err error) {
	expired = expiredList
	rv, match := opts.ResourceVersion, opts.ResourceVersionMatch
	if opts.Continue != "" {
		if rv != "" && rv != "0" {
			return ro, 0, "", "", apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
		}
		after, rev, err := decodeContinue(opts.Continue, p)
		if err != nil {
			return ro, 0, "", "", apierrors.NewBadRequest(fmt.Sprintf("invalid continue token: %v", err))
		}
		return raftstore.ReadOptions{Revision: rev}, 0, after, continueExpired, nil
	}
	switch {
	case match != "" && match != metav1.ResourceVersionMatchExact && match != metav1.ResourceVersionMatchNotOlderThan:
		return ro, 0, "", "", apierrors.NewBadRequest(fmt.Sprintf("unknown ResourceVersionMatch value: %v", match))
	case rv == "" && match != "":
		return ro, 0, "", "", apierrors.NewBadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
	case rv == "0" && match == metav1.ResourceVersionMatchExact:
		return ro, 0, "", "", apierrors.NewBadRequest(`resourceVersionMatch "exact" is forbidden for resourceVersion "0"`)
	case rv == "" || rv == "0" || match == metav1.ResourceVersionMatchNotOlderThan || (match == "" && opts.Limit <= 0):
		ro, minRev, err = s.notOlderThan(rv)
		return ro, minRev, "", expired, err
	}
	n, err := parseRV(rv)
	if err != nil {
		return ro, 0, "", "", err
	}
	return raftstore.ReadOptions{Revision: n}, 0, "", expired, nil
}

// list reads up to limit (0: all) matching objects of prefix p after the key
// after, and returns them with the revision read, the last key examined and
// whether keys after it remain.
func (s *Store) list(ctx context.Context, res *Resource, p string, ro raftstore.ReadOptions, after string, f filter, limit int64, expired string) (items []runtime.Object, rev int64, last string, more bool, err error) {
	for {
		lr, err := s.kv.List(ctx, p, raftstore.ListOptions{ReadOptions: ro, Limit: int(limit), After: after})
		if err != nil {
			return nil, 0, "", false, storeError(res, "", expired, err)
		}
		// Later chunks read the state the first one read.
		ro = raftstore.ReadOptions{Revision: lr.Revision}
		if items == nil {
			items = make([]runtime.Object, 0, len(lr.KVs))
		}
		for i := range lr.KVs {
			kv := &lr.KVs[i]
			obj, err := s.decode(res, kv.Value, kv.ModRevision)
			if err != nil {
				return nil, 0, "", false, err
			}
			after = kv.Key
			if !f.matches(res, obj) {
				continue
			}
			items = append(items, obj)
			if limit > 0 && int64(len(items)) == limit {
				return items, lr.Revision, after, i < len(lr.KVs)-1 || lr.More, nil
			}
		}
		if !lr.More {
			return items, lr.Revision, after, false, nil
		}
	}
}

// filter is the label and field selection of a List or Watch.
type filter struct {
	label labels.Selector
	field fields.Selector
}

func newFilter(opts ListOptions) filter {
	f := filter{label: opts.LabelSelector, field: opts.FieldSelector}
	if f.label != nil && f.label.Empty() {
		f.label = nil
	}
	if f.field != nil && f.field.Empty() {
		f.field = nil
	}
	return f
}

func (f filter) empty() bool { return f.label == nil && f.field == nil }

func (f filter) matches(res *Resource, obj runtime.Object) bool {
	if f.empty() {
		return true
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	if f.label != nil && !f.label.Matches(labels.Set(m.GetLabels())) {
		return false
	}
	if f.field != nil {
		set := fields.Set{}
		if res.Fields != nil {
			set = res.Fields(obj)
			if set == nil {
				set = fields.Set{}
			}
		}
		set["metadata.name"] = m.GetName()
		if res.Namespaced {
			set["metadata.namespace"] = m.GetNamespace()
		}
		return f.field.Matches(set)
	}
	return true
}

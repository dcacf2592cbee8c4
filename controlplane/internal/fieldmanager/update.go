package fieldmanager

import (
	"reflect"
	"sort"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
)

// maxUpdateManagers is how many Update entries the full pipeline keeps
// before it merges the oldest (managedfields.DefaultMaxUpdateManagers).
const maxUpdateManagers = 10

// updateFast is update's path for the commonest write: an update of an
// object whose managedFields are all of the Manager's version, in the
// canonical encoding this package writes, and fewer than the cap. It
// computes what the full pipeline computes (TestUpdateFastPath compares
// the two over many writes), but decodes each distinct FieldsV1 once
// (setCache), keeps the encoding of the entries the write does not change
// instead of re-encoding every set, and checks each distinct set against
// the schema once instead of reconciling it every time. The comparison of the two objects,
// the bulk of the work, is the same. ok is false when the fast path cannot
// tell; update then takes the full pipeline.
//
// The steps, as the pipeline's layers take them: the writer's fields are
// those the write added or changed (less what the subresource cannot set
// and the metadata no entry holds); every other entry loses them, and the
// fields the write removed; an entry left empty goes; the writer's own
// Update entry gains them and the current time, if there are any.
func (m *Manager) updateFast(live, obj runtime.Object, manager string) (runtime.Object, bool) {
	lm, om := objectMeta(live), objectMeta(obj)
	if lm == nil || om == nil {
		return nil, false
	}
	entries := lm.GetManagedFields()
	if own := om.GetManagedFields(); len(own) > 0 && (m.subresource == "" && !reflect.DeepEqual(own, entries)) {
		return nil, false // the client set managedFields: the pipeline decides
	}
	if len(entries) == 0 {
		return nil, false // not tracked (the pipeline skips such objects)
	}
	version := m.gvk.GroupVersion().String()
	sets := make([]*fieldpath.Set, len(entries))
	updates := 0
	for i := range entries {
		e := &entries[i]
		if e.APIVersion != version || e.FieldsType != "FieldsV1" || e.FieldsV1 == nil ||
			(e.Operation != metav1.ManagedFieldsOperationUpdate && e.Operation != metav1.ManagedFieldsOperationApply) {
			return nil, false
		}
		if e.Operation == metav1.ManagedFieldsOperationUpdate {
			updates++
		}
		for j := range i {
			if sameManager(&entries[j], e) {
				return nil, false
			}
		}
		set, ok := m.cachedSet(e.FieldsV1.GetRawString())
		if !ok {
			return nil, false
		}
		sets[i] = set
	}
	if updates >= maxUpdateManagers {
		return nil, false
	}

	// Compare as updateSkipping does: the field the subresource cannot
	// set is zeroed in a copy of live and, while compared, in the copy of
	// obj that is returned.
	l, n := live.DeepCopyObject(), obj.DeepCopyObject()
	l.GetObjectKind().SetGroupVersionKind(m.gvk)
	n.GetObjectKind().SetGroupVersionKind(m.gvk)
	objectMeta(n).SetManagedFields(nil)
	if m.skip >= 0 {
		reflect.ValueOf(l).Elem().Field(m.skip).SetZero()
		field := reflect.ValueOf(n).Elem().Field(m.skip)
		kept := reflect.New(field.Type()).Elem()
		kept.Set(field)
		field.SetZero()
		defer field.Set(kept)
	}
	lt, err := m.types.ObjectToTyped(l, typed.AllowDuplicates)
	if err != nil {
		return nil, false
	}
	nt, err := m.types.ObjectToTyped(n, typed.AllowDuplicates)
	if err != nil {
		return nil, false
	}
	cmp, err := lt.Compare(nt)
	if err != nil {
		return nil, false
	}
	filtered := cmp
	if m.reset != nil {
		filtered = cmp.FilterFields(m.reset)
	}
	taken := filtered.Modified.Union(filtered.Added)
	mine := cmp.Modified.Union(cmp.Added)
	if m.reset != nil {
		mine = m.reset.Filter(mine)
	}
	mine = mine.Difference(stripped)

	self := metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: version, Subresource: m.subresource}
	if self.Manager == "" {
		self.Manager = "unknown"
	}
	out := make([]metav1.ManagedFieldsEntry, 0, len(entries)+1)
	var selfSet *fieldpath.Set
	for i, e := range entries {
		set := sets[i]
		changed := false
		if !set.Intersection(taken).Empty() {
			set, changed = set.Difference(taken), true
		}
		if !filtered.Removed.Empty() && !set.Intersection(filtered.Removed).Empty() {
			set, changed = set.Difference(filtered.Removed), true
		}
		if set.Empty() {
			continue // the pipeline drops an entry left without fields
		}
		if !mine.Empty() && sameManager(&e, &self) {
			selfSet = set
			continue // rewritten below
		}
		if changed {
			raw, err := set.ToJSON()
			if err != nil {
				return nil, false
			}
			e.FieldsV1 = metav1.NewFieldsV1(string(raw))
		}
		out = append(out, e)
	}
	if !mine.Empty() {
		if selfSet != nil {
			mine = mine.Union(selfSet)
		}
		raw, err := mine.ToJSON()
		if err != nil {
			return nil, false
		}
		now := metav1.Now()
		self.Time, self.FieldsType, self.FieldsV1 = &now, "FieldsV1", metav1.NewFieldsV1(string(raw))
		out = append(out, self)
	}
	sortEntries(out)
	if len(out) == 0 {
		out = nil
	}
	objectMeta(n).SetManagedFields(out)
	return n, true // with its skipped field back (deferred above)
}

// sameManager reports whether two entries are one manager's, as the
// pipeline's manager identifier tells them apart: by manager, operation,
// subresource and, for Update, apiVersion.
func sameManager(a, b *metav1.ManagedFieldsEntry) bool {
	return a.Manager == b.Manager && a.Operation == b.Operation && a.Subresource == b.Subresource &&
		(a.Operation == metav1.ManagedFieldsOperationApply || a.APIVersion == b.APIVersion)
}

// sortEntries orders entries as the pipeline writes them: by operation,
// time (in seconds), manager, apiVersion and subresource.
func sortEntries(es []metav1.ManagedFieldsEntry) {
	sort.Slice(es, func(i, j int) bool {
		p, q := es[i], es[j]
		if p.Operation != q.Operation {
			return p.Operation < q.Operation
		}
		var ps, qs int64
		if p.Time != nil {
			ps = p.Time.Unix()
		}
		if q.Time != nil {
			qs = q.Time.Unix()
		}
		if ps != qs {
			return ps < qs
		}
		if p.Manager != q.Manager {
			return p.Manager < q.Manager
		}
		if p.APIVersion != q.APIVersion {
			return p.APIVersion < q.APIVersion
		}
		return p.Subresource < q.Subresource
	})
}

// setCacheSize bounds the decoded FieldsV1 a Manager keeps; the cache is
// emptied when full. The writes of one kind repeat a few shapes (the
// fields a client creates, a scheduler binds, a kubelet reports).
const setCacheSize = 1024

// setCache holds decoded FieldsV1 by their encoding: the set, or nil for
// an encoding the fast path leaves to the pipeline. Cached sets are never
// modified.
type setCache struct {
	mu   sync.Mutex
	sets map[string]*fieldpath.Set
}

// cachedSet returns the set raw encodes. ok is false when raw does not
// decode, is not canonical (does not encode back to itself, as this
// package's encodings do), or would change in the schema reconciliation
// the pipeline does before each update (a set recorded under an older
// schema, where a field now atomic was granular; the reconciliation reads
// the schema only, not the object).
func (m *Manager) cachedSet(raw string) (*fieldpath.Set, bool) {
	c := &m.cache
	c.mu.Lock()
	set, known := c.sets[raw]
	c.mu.Unlock()
	if known {
		return set, set != nil
	}
	set = &fieldpath.Set{}
	if err := set.FromJSON(strings.NewReader(raw)); err != nil {
		set = nil
	} else if again, err := set.ToJSON(); err != nil || string(again) != raw {
		set = nil
	} else if zero := m.zero(); zero == nil {
		set = nil
	} else if r, err := typed.ReconcileFieldSetWithSchema(set, zero); err != nil || r != nil {
		set = nil
	}
	c.mu.Lock()
	if len(c.sets) >= setCacheSize || c.sets == nil {
		c.sets = map[string]*fieldpath.Set{}
	}
	c.sets[raw] = set
	c.mu.Unlock()
	return set, set != nil
}

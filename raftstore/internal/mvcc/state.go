// Package mvcc is the replicated state of Skiff's store: an ordered,
// revisioned key-value map with per-key history, as a pure and deterministic
// data structure. It knows nothing of Raft.
//
// One goroutine (the Raft FSM) owns a State and is its only writer: it calls
// ApplyTxn, ApplyCompact and Advance in log order, then Publish once per batch.
// Any number of goroutines read the published View, a copy-on-write snapshot
// that writes never disturb, so reads and snapshots never block Apply.
//
//	st := mvcc.New()
//	res, events, err := st.ApplyTxn(index, &txn) // from the FSM, in log order
//	st.Publish()                                 // readers now see index
//	kvs, more, err := st.View().Range("/a/", "/a0", 0, 100)
//
// Revisions are Raft log indexes. They grow strictly but have gaps, so nothing
// here computes one revision from another by arithmetic.
package mvcc

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/google/btree"
)

// ErrDuplicateKey is returned by ApplyTxn when one branch of a Txn writes the
// same key twice. The txn changes nothing.
var ErrDuplicateKey = errors.New("mvcc: duplicate key in txn branch")

// CompactedError is returned for a read or compaction at a revision whose
// history has been compacted away.
type CompactedError struct {
	// Requested is the revision asked for.
	Requested int64
	// Compacted is the store's compact revision: the oldest revision still readable.
	Compacted int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("mvcc: revision %d has been compacted (oldest available %d)", e.Requested, e.Compacted)
}

// FutureRevisionError is returned for a read or compaction at a revision the
// store has not reached yet.
type FutureRevisionError struct {
	Requested int64
	Current   int64
}

func (e *FutureRevisionError) Error() string {
	return fmt.Sprintf("mvcc: revision %d is in the future (current %d)", e.Requested, e.Current)
}

// version is one version of a key. A tombstone (the key deleted at mod) has ver 0.
type version struct {
	value  []byte
	create int64
	mod    int64
	ver    int64
}

func (v *version) tombstone() bool { return v.ver == 0 }

// record is a key with its history. A record in a tree is never modified:
// writes replace it with a new record.
type record struct {
	key string
	// versions is ascending by mod, never empty. Only the last one may be
	// read at the head revision; older ones serve reads at older revisions.
	versions []version
}

func (r *record) latest() *version { return &r.versions[len(r.versions)-1] }

// at returns the version visible at rev, or nil if the key did not exist then.
func (r *record) at(rev int64) *version {
	for i := len(r.versions) - 1; i >= 0; i-- {
		v := &r.versions[i]
		if v.mod <= rev {
			if v.tombstone() {
				return nil
			}
			return v
		}
	}
	return nil
}

func (r *record) kv(v *version) KeyValue {
	return KeyValue{Key: r.key, Value: v.value, CreateRevision: v.create, ModRevision: v.mod, Version: v.ver}
}

func lessRecord(a, b *record) bool { return a.key < b.key }

const btreeDegree = 32

// State is the writer's side of the store. Its methods other than View must be
// called from one goroutine at a time.
type State struct {
	tree    *btree.BTreeG[*record]
	rev     int64
	compact int64
	// history names the keys whose record holds more than one version or a
	// tombstone: the only records a compaction has to visit. Derived state,
	// rebuilt on restore; never part of a snapshot.
	history map[string]struct{}
	view    atomic.Pointer[View]
}

// New returns an empty state at revision 0.
func New() *State {
	s := &State{tree: btree.NewG(btreeDegree, lessRecord), history: map[string]struct{}{}}
	s.Publish()
	return s
}

// Rev returns the revision of the last applied entry.
func (s *State) Rev() int64 { return s.rev }

// View returns the last published view. Safe for concurrent use.
func (s *State) View() *View { return s.view.Load() }

// Publish makes everything applied so far visible to readers of View.
func (s *State) Publish() {
	s.view.Store(&View{tree: s.tree.Clone(), rev: s.rev, compact: s.compact})
}

// Advance moves the revision to index for a log entry that changes no key
// (a Raft configuration change, say). index must be greater than Rev.
func (s *State) Advance(index int64) {
	s.checkIndex(index)
	s.rev = index
}

func (s *State) checkIndex(index int64) {
	if index <= s.rev {
		panic(fmt.Sprintf("mvcc: entry index %d is not after the current revision %d", index, s.rev))
	}
}

// get returns the key's live latest version, or nil.
func (s *State) get(key string) (*record, *version) {
	r, ok := s.tree.Get(&record{key: key})
	if !ok {
		return nil, nil
	}
	v := r.latest()
	if v.tombstone() {
		return r, nil
	}
	return r, v
}

func (c *Compare) holds(v *version) bool {
	var got int64
	if v != nil {
		switch c.Target {
		case TargetModRevision:
			got = v.mod
		case TargetCreateRevision:
			got = v.create
		case TargetVersion:
			got = v.ver
		}
	}
	switch c.Result {
	case Equal:
		return got == c.Value
	case NotEqual:
		return got != c.Value
	case Less:
		return got < c.Value
	case Greater:
		return got > c.Value
	}
	return false
}

func duplicateKey(reqs []Request) bool {
	if len(reqs) < 2 {
		return false
	}
	seen := make(map[string]struct{}, len(reqs))
	for _, r := range reqs {
		if _, ok := seen[r.Key]; ok {
			return true
		}
		seen[r.Key] = struct{}{}
	}
	return false
}

// ApplyTxn applies the txn of the log entry at index and returns its result
// and the events it produced, in request order. A txn that is invalid
// (ErrDuplicateKey) changes no key but still moves the revision to index.
func (s *State) ApplyTxn(index int64, t *Txn) (*TxnResult, []Event, error) {
	s.checkIndex(index)
	s.rev = index
	if duplicateKey(t.Success) || duplicateKey(t.Failure) {
		return nil, nil, ErrDuplicateKey
	}
	res := &TxnResult{Revision: index, Succeeded: true}
	if len(t.Compares) > 0 {
		res.Current = make([]*KeyValue, len(t.Compares))
	}
	for i := range t.Compares {
		c := &t.Compares[i]
		r, v := s.get(c.Key)
		if v != nil {
			kv := r.kv(v)
			res.Current[i] = &kv
		}
		if !c.holds(v) {
			res.Succeeded = false
		}
	}
	branch := t.Success
	if !res.Succeeded {
		branch = t.Failure
	}
	if len(branch) == 0 {
		return res, nil, nil
	}
	res.PrevKVs = make([]*KeyValue, len(branch))
	events := make([]Event, 0, len(branch))
	for i := range branch {
		req := &branch[i]
		r, prev := s.get(req.Key)
		var prevKV *KeyValue
		if prev != nil {
			kv := r.kv(prev)
			prevKV = &kv
		}
		res.PrevKVs[i] = prevKV
		switch req.Type {
		case RequestPut:
			nv := version{value: req.Value, create: index, mod: index, ver: 1}
			if prev != nil {
				nv.create, nv.ver = prev.create, prev.ver+1
			}
			nr := s.write(r, req.Key, nv)
			events = append(events, Event{Type: EventPut, KV: nr.kv(nr.latest()), PrevKV: prevKV})
		case RequestDelete:
			if prev == nil {
				continue
			}
			s.write(r, req.Key, version{mod: index})
			events = append(events, Event{Type: EventDelete, KV: KeyValue{Key: req.Key, ModRevision: index}, PrevKV: prevKV})
		default:
			panic(fmt.Sprintf("mvcc: entry %d: unknown request type %d", index, req.Type))
		}
	}
	if len(events) == 0 {
		events = nil
	}
	return res, events, nil
}

// write stores v as the newest version of key, whose current record is r (nil if none).
func (s *State) write(r *record, key string, v version) *record {
	nr := &record{key: key}
	if r == nil {
		nr.versions = []version{v}
	} else {
		nr.versions = make([]version, len(r.versions), len(r.versions)+1)
		copy(nr.versions, r.versions)
		nr.versions = append(nr.versions, v)
	}
	if len(nr.versions) > 1 || v.tombstone() {
		s.history[key] = struct{}{}
	}
	s.tree.ReplaceOrInsert(nr)
	return nr
}

// ApplyCompact applies the compaction of the log entry at index. Compacting
// to a revision at or below the current compact revision fails with a
// CompactedError, beyond the current revision with a FutureRevisionError;
// either way the revision still moves to index.
func (s *State) ApplyCompact(index int64, c Compact) error {
	s.checkIndex(index)
	cur := s.rev
	s.rev = index
	if c.Revision <= s.compact {
		return &CompactedError{Requested: c.Revision, Compacted: s.compact}
	}
	if c.Revision > cur {
		return &FutureRevisionError{Requested: c.Revision, Current: cur}
	}
	s.compact = c.Revision
	for key := range s.history {
		r, ok := s.tree.Get(&record{key: key})
		if !ok {
			panic(fmt.Sprintf("mvcc: key %q in history index but not in tree", key))
		}
		nr, keep := compactRecord(r, c.Revision)
		switch {
		case nr == nil:
			s.tree.Delete(r)
			delete(s.history, key)
		case nr != r:
			s.tree.ReplaceOrInsert(nr)
			if !keep {
				delete(s.history, key)
			}
		}
	}
	return nil
}

// compactRecord drops the versions of r that no read at rev or later can see.
// It returns nil when nothing is left, r itself when nothing changed, and
// whether the result still has history.
func compactRecord(r *record, rev int64) (*record, bool) {
	// Find the newest version at or below rev: the one reads at rev see.
	idx := -1
	for i := len(r.versions) - 1; i >= 0; i-- {
		if r.versions[i].mod <= rev {
			idx = i
			break
		}
	}
	if idx >= 0 && r.versions[idx].tombstone() {
		idx++ // nobody can read the delete itself any more
	}
	if idx <= 0 {
		return r, hasHistory(r.versions)
	}
	if idx == len(r.versions) {
		return nil, false
	}
	nr := &record{key: r.key, versions: append([]version(nil), r.versions[idx:]...)}
	h := hasHistory(nr.versions)
	return nr, h
}

func hasHistory(vs []version) bool { return len(vs) > 1 || vs[0].tombstone() }

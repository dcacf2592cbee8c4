package mvcc

import "github.com/google/btree"

// View is an immutable snapshot of the state as of one published revision.
// It is safe for concurrent use and never blocks, nor is blocked by, writes.
type View struct {
	tree    *btree.BTreeG[*record]
	rev     int64
	compact int64
}

// Rev returns the revision the view was published at.
func (v *View) Rev() int64 { return v.rev }

// CompactRev returns the oldest revision the view can read.
func (v *View) CompactRev() int64 { return v.compact }

// Len returns the number of records (live keys plus deleted keys whose
// history is kept), a cheap size estimate.
func (v *View) Len() int { return v.tree.Len() }

// resolve maps a requested revision to the one to read: 0 means the view's own.
func (v *View) resolve(rev int64) (int64, error) {
	switch {
	case rev == 0:
		return v.rev, nil
	case rev < v.compact:
		return 0, &CompactedError{Requested: rev, Compacted: v.compact}
	case rev > v.rev:
		return 0, &FutureRevisionError{Requested: rev, Current: v.rev}
	}
	return rev, nil
}

// Get returns key as of rev (0: the view's revision); ok is false when the
// key did not exist then.
func (v *View) Get(key string, rev int64) (kv KeyValue, ok bool, err error) {
	rev, err = v.resolve(rev)
	if err != nil {
		return KeyValue{}, false, err
	}
	r, found := v.tree.Get(&record{key: key})
	if !found {
		return KeyValue{}, false, nil
	}
	ver := r.at(rev)
	if ver == nil {
		return KeyValue{}, false, nil
	}
	return r.kv(ver), true, nil
}

// ascend calls fn for every record with start <= key < end; end "" means no bound.
func (v *View) ascend(start, end string, fn func(*record) bool) {
	if end == "" {
		v.tree.AscendGreaterOrEqual(&record{key: start}, fn)
		return
	}
	v.tree.AscendRange(&record{key: start}, &record{key: end}, fn)
}

// Range returns the keys in [start, end) that existed at rev (0: the view's
// revision), in key order, at most limit of them (limit <= 0: all). more
// reports whether keys beyond the last returned one exist in the range.
func (v *View) Range(start, end string, rev int64, limit int) (kvs []KeyValue, more bool, err error) {
	rev, err = v.resolve(rev)
	if err != nil {
		return nil, false, err
	}
	v.ascend(start, end, func(r *record) bool {
		ver := r.at(rev)
		if ver == nil {
			return true
		}
		if limit > 0 && len(kvs) == limit {
			more = true
			return false
		}
		kvs = append(kvs, r.kv(ver))
		return true
	})
	return kvs, more, nil
}

// Count returns how many keys in [start, end) existed at rev (0: the view's revision).
func (v *View) Count(start, end string, rev int64) (int64, error) {
	rev, err := v.resolve(rev)
	if err != nil {
		return 0, err
	}
	var n int64
	v.ascend(start, end, func(r *record) bool {
		if r.at(rev) != nil {
			n++
		}
		return true
	})
	return n, nil
}

// PrefixEnd returns the smallest key greater than every key with the given
// prefix, for use as a Range end; "" (no bound) if there is none.
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

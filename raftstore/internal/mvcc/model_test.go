package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"testing"
)

// model is the plain, obviously-correct version of State: every version of
// every key forever, a linear scan for every read.
type model struct {
	hist    map[string][]KeyValue // Version 0 marks a delete
	rev     int64
	compact int64
}

func newModel() *model { return &model{hist: map[string][]KeyValue{}} }

func (m *model) at(key string, rev int64) *KeyValue {
	var found *KeyValue
	for i := range m.hist[key] {
		if m.hist[key][i].ModRevision <= rev {
			found = &m.hist[key][i]
		}
	}
	if found == nil || found.Version == 0 {
		return nil
	}
	kv := *found
	return &kv
}

func (m *model) applyTxn(index int64, t *Txn) (*TxnResult, []Event, error) {
	m.rev = index
	if duplicateKey(t.Success) || duplicateKey(t.Failure) {
		return nil, nil, ErrDuplicateKey
	}
	res := &TxnResult{Revision: index, Succeeded: true}
	if len(t.Compares) > 0 {
		res.Current = make([]*KeyValue, len(t.Compares))
	}
	for i, c := range t.Compares {
		cur := m.at(c.Key, index)
		res.Current[i] = cur
		var got int64
		if cur != nil {
			got = map[Target]int64{TargetModRevision: cur.ModRevision, TargetCreateRevision: cur.CreateRevision, TargetVersion: cur.Version}[c.Target]
		}
		ok := map[CompareResult]bool{Equal: got == c.Value, NotEqual: got != c.Value, Less: got < c.Value, Greater: got > c.Value}[c.Result]
		if !ok {
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
	var events []Event
	for i, r := range branch {
		prev := m.at(r.Key, index)
		res.PrevKVs[i] = prev
		switch r.Type {
		case RequestPut:
			kv := KeyValue{Key: r.Key, Value: r.Value, CreateRevision: index, ModRevision: index, Version: 1}
			if prev != nil {
				kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
			}
			m.hist[r.Key] = append(m.hist[r.Key], kv)
			events = append(events, Event{Type: EventPut, KV: kv, PrevKV: prev})
		case RequestDelete:
			if prev != nil {
				m.hist[r.Key] = append(m.hist[r.Key], KeyValue{Key: r.Key, ModRevision: index})
				events = append(events, Event{Type: EventDelete, KV: KeyValue{Key: r.Key, ModRevision: index}, PrevKV: prev})
			}
		}
	}
	return res, events, nil
}

func (m *model) applyCompact(index int64, c Compact) error {
	cur := m.rev
	m.rev = index
	if c.Revision <= m.compact {
		return &CompactedError{Requested: c.Revision, Compacted: m.compact}
	}
	if c.Revision > cur {
		return &FutureRevisionError{Requested: c.Revision, Current: cur}
	}
	m.compact = c.Revision
	return nil
}

func (m *model) rangeAt(start, end string, rev int64) []KeyValue {
	var keys []string
	for k := range m.hist {
		if k >= start && (end == "" || k < end) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var out []KeyValue
	for _, k := range keys {
		if kv := m.at(k, rev); kv != nil {
			out = append(out, *kv)
		}
	}
	return out
}

// entry is one logged operation, so a log can be replayed.
type entry struct {
	index   int64
	txn     *Txn
	compact *Compact
}

var keys = []string{"/a", "/a/1", "/a/2", "/a/3", "/b", "/b/1", "/c", "/c/x/y", "/d"}

func randomTxn(rng *rand.Rand, m *model) *Txn {
	t := &Txn{}
	for range rng.IntN(3) {
		key := keys[rng.IntN(len(keys))]
		c := Compare{Key: key, Target: Target(1 + rng.IntN(3)), Result: CompareResult(1 + rng.IntN(4))}
		if cur := m.at(key, m.rev); cur != nil && rng.IntN(3) > 0 {
			c.Value = map[Target]int64{TargetModRevision: cur.ModRevision, TargetCreateRevision: cur.CreateRevision, TargetVersion: cur.Version}[c.Target]
		} else if rng.IntN(2) == 0 {
			c.Value = 0
		} else {
			c.Value = rng.Int64N(m.rev + 2)
		}
		t.Compares = append(t.Compares, c)
	}
	branch := func() []Request {
		var reqs []Request
		for range rng.IntN(4) {
			r := Request{Type: RequestType(1 + rng.IntN(2)), Key: keys[rng.IntN(len(keys))]}
			if r.Type == RequestPut {
				r.Value = []byte(fmt.Sprintf("v%d", rng.IntN(1000)))
			}
			reqs = append(reqs, r)
		}
		// Mostly valid txns; a duplicate key now and then.
		if rng.IntN(10) > 0 {
			seen := map[string]bool{}
			out := reqs[:0]
			for _, r := range reqs {
				if !seen[r.Key] {
					seen[r.Key] = true
					out = append(out, r)
				}
			}
			reqs = out
		}
		return reqs
	}
	t.Success = branch()
	if rng.IntN(2) == 0 {
		t.Failure = branch()
	}
	return t
}

func randomLog(rng *rand.Rand, n int) []entry {
	m := newModel()
	var log []entry
	index := int64(0)
	for range n {
		index += 1 + rng.Int64N(3) // revisions have gaps
		if rng.IntN(15) == 0 && m.rev > 0 {
			c := &Compact{Revision: m.compact + rng.Int64N(m.rev-m.compact+2)}
			log = append(log, entry{index: index, compact: c})
			_ = m.applyCompact(index, *c)
			continue
		}
		t := randomTxn(rng, m)
		log = append(log, entry{index: index, txn: t})
		_, _, _ = m.applyTxn(index, t)
	}
	return log
}

func normalize(kvs []KeyValue) []KeyValue {
	for i := range kvs {
		if len(kvs[i].Value) == 0 {
			kvs[i].Value = nil
		}
	}
	return kvs
}

func checkReads(t *testing.T, s *State, m *model, rng *rand.Rand) {
	t.Helper()
	v := s.View()
	if v.Rev() != m.rev || v.CompactRev() != m.compact {
		t.Fatalf("view at rev %d compact %d, want %d %d", v.Rev(), v.CompactRev(), m.rev, m.compact)
	}
	revs := []int64{0, m.rev, m.compact}
	for range 3 {
		revs = append(revs, m.compact+rng.Int64N(m.rev-m.compact+1))
	}
	ranges := [][2]string{{"", ""}, {"/a", PrefixEnd("/a")}, {"/a/", PrefixEnd("/a/")}, {"/b", "/c"}, {"/c/", ""}}
	for _, rev := range revs {
		at := rev
		if at == 0 {
			at = m.rev
		}
		for _, r := range ranges {
			got, more, err := v.Range(r[0], r[1], rev, 0)
			if err != nil {
				t.Fatalf("Range(%q,%q,%d): %v", r[0], r[1], rev, err)
			}
			want := m.rangeAt(r[0], r[1], at)
			if more || !reflect.DeepEqual(normalize(got), normalize(want)) {
				t.Fatalf("Range(%q,%q,%d) = %v (more %v), want %v", r[0], r[1], rev, got, more, want)
			}
			n, err := v.Count(r[0], r[1], rev)
			if err != nil || n != int64(len(want)) {
				t.Fatalf("Count(%q,%q,%d) = %d, %v, want %d", r[0], r[1], rev, n, err, len(want))
			}
			// Paging with a limit gives the same keys.
			var paged []KeyValue
			start := r[0]
			for {
				page, more, err := v.Range(start, r[1], rev, 2)
				if err != nil {
					t.Fatal(err)
				}
				paged = append(paged, page...)
				if !more {
					break
				}
				start = page[len(page)-1].Key + "\x00"
			}
			if !reflect.DeepEqual(normalize(paged), normalize(want)) {
				t.Fatalf("paged Range(%q,%q,%d) = %v, want %v", r[0], r[1], rev, paged, want)
			}
		}
		for _, k := range keys {
			got, ok, err := v.Get(k, rev)
			want := m.at(k, at)
			if err != nil || ok != (want != nil) || (ok && !reflect.DeepEqual(normalize([]KeyValue{got}), normalize([]KeyValue{*want}))) {
				t.Fatalf("Get(%q,%d) = %v %v %v, want %v", k, rev, got, ok, err, want)
			}
		}
	}
	if m.compact > 1 { // revision 0 means "current"
		var ce *CompactedError
		if _, _, err := v.Get("/a", m.compact-1); !errors.As(err, &ce) || ce.Compacted != m.compact {
			t.Fatalf("Get below compact revision: got %v, want CompactedError{%d}", err, m.compact)
		}
	}
	var fe *FutureRevisionError
	if _, _, err := v.Range("", "", m.rev+1, 0); !errors.As(err, &fe) {
		t.Fatalf("Range beyond revision: got %v, want FutureRevisionError", err)
	}
}

func apply(s *State, e entry) (*TxnResult, []Event, error) {
	if e.compact != nil {
		return nil, nil, s.ApplyCompact(e.index, *e.compact)
	}
	return s.ApplyTxn(e.index, e.txn)
}

func snapshotBytes(t *testing.T, v *View) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := v.WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo = %d, %v; wrote %d bytes", n, err, buf.Len())
	}
	return buf.Bytes()
}

// TestStateMatchesModel applies random operation sequences to a State and to
// the model, and checks every result, every event and every read at many
// revisions against the model.
func TestStateMatchesModel(t *testing.T) {
	for seed := range uint64(40) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			log := randomLog(rng, 400)
			s, m := New(), newModel()
			for i, e := range log {
				gotRes, gotEv, gotErr := apply(s, e)
				var wantRes *TxnResult
				var wantEv []Event
				var wantErr error
				if e.compact != nil {
					wantErr = m.applyCompact(e.index, *e.compact)
				} else {
					wantRes, wantEv, wantErr = m.applyTxn(e.index, e.txn)
				}
				if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
					t.Fatalf("entry %d: error %v, want %v", e.index, gotErr, wantErr)
				}
				if !reflect.DeepEqual(gotRes, wantRes) {
					t.Fatalf("entry %d: result %+v, want %+v", e.index, gotRes, wantRes)
				}
				if !reflect.DeepEqual(gotEv, wantEv) {
					t.Fatalf("entry %d: events %+v, want %+v", e.index, gotEv, wantEv)
				}
				if i%7 == 0 || i == len(log)-1 {
					s.Publish()
					checkReads(t, s, m, rng)
				}
			}
			// Snapshot -> restore gives the same state, and writes the same bytes.
			snap := snapshotBytes(t, s.View())
			r, err := Restore(bytes.NewReader(snap))
			if err != nil {
				t.Fatalf("Restore: %v", err)
			}
			checkReads(t, r, m, rng)
			if again := snapshotBytes(t, r.View()); !bytes.Equal(again, snap) {
				t.Fatalf("snapshot of restored state differs: %d bytes vs %d", len(again), len(snap))
			}
			// The same log applied again gives a byte-identical snapshot.
			s2 := New()
			for _, e := range log {
				_, _, _ = apply(s2, e)
			}
			s2.Publish()
			if again := snapshotBytes(t, s2.View()); !bytes.Equal(again, snap) {
				t.Fatalf("replayed log snapshot differs: %d bytes vs %d", len(again), len(snap))
			}
			// The restored state keeps applying like the original.
			more := randomLog(rand.New(rand.NewPCG(seed, 7)), 50)
			for _, e := range more {
				e.index += m.rev
				a1, ev1, err1 := apply(s, e)
				a2, ev2, err2 := apply(r, e)
				if fmt.Sprint(err1) != fmt.Sprint(err2) || !reflect.DeepEqual(a1, a2) || !reflect.DeepEqual(ev1, ev2) {
					t.Fatalf("entry %d after restore: %v %v %v, original %v %v %v", e.index, a2, ev2, err2, a1, ev1, err1)
				}
			}
			s.Publish()
			r.Publish()
			if !bytes.Equal(snapshotBytes(t, s.View()), snapshotBytes(t, r.View())) {
				t.Fatal("original and restored states diverged")
			}
		})
	}
}

func TestViewIsolatedFromLaterWrites(t *testing.T) {
	s := New()
	put := func(index int64, key, val string) {
		t.Helper()
		if _, _, err := s.ApplyTxn(index, &Txn{Success: []Request{{Type: RequestPut, Key: key, Value: []byte(val)}}}); err != nil {
			t.Fatal(err)
		}
	}
	put(1, "/k", "one")
	s.Publish()
	v := s.View()
	put(2, "/k", "two")
	put(3, "/j", "new")
	kvs, _, err := v.Range("", "", 0, 0)
	if err != nil || len(kvs) != 1 || string(kvs[0].Value) != "one" {
		t.Fatalf("old view reads %v %v, want only /k=one", kvs, err)
	}
	if v.Rev() != 1 {
		t.Fatalf("old view rev %d, want 1", v.Rev())
	}
}

func TestRestoreRejectsCorruption(t *testing.T) {
	s := New()
	for i := int64(1); i <= 20; i++ {
		if _, _, err := s.ApplyTxn(i, &Txn{Success: []Request{{Type: RequestPut, Key: fmt.Sprintf("/k/%02d", i%7), Value: []byte("value")}}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Publish()
	snap := snapshotBytes(t, s.View())
	for i := range len(snap) {
		bad := bytes.Clone(snap)
		bad[i] ^= 0x41
		if _, err := Restore(bytes.NewReader(bad)); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("flipped byte %d: got %v, want ErrBadSnapshot", i, err)
		}
	}
	for _, n := range []int{0, 5, len(snap) / 2, len(snap) - 1} {
		if _, err := Restore(bytes.NewReader(snap[:n])); !errors.Is(err, ErrBadSnapshot) {
			t.Fatalf("truncated to %d: got %v, want ErrBadSnapshot", n, err)
		}
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want string }{{"/a/", "/a0"}, {"a\xff", "b"}, {"\xff\xff", ""}, {"", ""}} {
		if got := PrefixEnd(tc.in); got != tc.want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func BenchmarkApplyPut(b *testing.B) {
	s := New()
	val := make([]byte, 1024)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		txn := &Txn{Success: []Request{{Type: RequestPut, Key: fmt.Sprintf("/registry/pods/default/p%08d", i), Value: val}}}
		if _, _, err := s.ApplyTxn(int64(i+1), txn); err != nil {
			b.Fatal(err)
		}
		if i%64 == 0 {
			s.Publish()
		}
	}
}

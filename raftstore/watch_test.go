package raftstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// eventString renders every field of an event, for comparisons and messages.
func eventString(ev *Event) string {
	return fmt.Sprintf("%v %s prev=[%s]", ev.Type, kvString(&ev.KV), kvString(ev.PrevKV))
}

// collector reads a watcher on its own goroutine and keeps what it saw.
type collector struct {
	node string
	rev  atomic.Int64 // the watcher's Rev after its last Next
	done chan struct{}

	mu     sync.Mutex
	events []Event
	err    error
}

// collect reads w until the test ends or Next fails.
func collect(t *testing.T, node string, w *Watcher) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	col := &collector{node: node, done: make(chan struct{})}
	col.rev.Store(w.Rev())
	go func() {
		defer close(col.done)
		for {
			evs, rev, err := w.Next(ctx)
			col.mu.Lock()
			col.events = append(col.events, evs...)
			if err != nil && ctx.Err() == nil {
				col.err = err
			}
			col.mu.Unlock()
			col.rev.Store(rev)
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-col.done
	})
	return col
}

// waitRev waits until the watcher has seen everything up to rev, and returns
// what it saw.
func (col *collector) waitRev(t *testing.T, rev int64) []Event {
	t.Helper()
	waitFor(t, 15*time.Second, fmt.Sprintf("the watcher on %s to reach revision %d", col.node, rev), func() error {
		col.mu.Lock()
		err := col.err
		col.mu.Unlock()
		if err != nil {
			t.Fatalf("watcher on %s: Next: %v", col.node, err)
		}
		if got := col.rev.Load(); got < rev {
			return fmt.Errorf("at revision %d", got)
		}
		return nil
	})
	col.mu.Lock()
	defer col.mu.Unlock()
	return slices.Clone(col.events)
}

// checkEvents fails unless got, the events a watcher returned, are exactly
// want, in order. Events with revisions above upTo are ignored.
func checkEvents(t *testing.T, who string, got, want []Event, upTo int64) {
	t.Helper()
	var prev int64
	for i := range got {
		if r := got[i].KV.ModRevision; r < prev {
			t.Errorf("%s: event #%d has revision %d after %d, want revision order", who, i, r, prev)
		} else {
			prev = r
		}
	}
	var kept []Event
	for _, ev := range got {
		if ev.KV.ModRevision <= upTo {
			kept = append(kept, ev)
		}
	}
	for i := 0; i < len(kept) || i < len(want); i++ {
		g, w := "<none>", "<none>"
		if i < len(kept) {
			g = eventString(&kept[i])
		}
		if i < len(want) {
			w = eventString(&want[i])
		}
		if g != w {
			t.Errorf("%s: %d events up to revision %d, want %d; event #%d: got %s, want %s", who, len(kept), upTo, len(want), i, g, w)
			return
		}
	}
}

// keyLife is one key's writes: create, then update, then (maybe) delete, each
// conditional on the previous one's revision, so no write can apply twice or
// out of order. A write that fails ends the key's life.
type keyLife struct {
	key    string
	via    string
	revs   []int64 // revision of each applied write, in order: the acknowledged ones, then the failed one if resolve found it applied
	failed error   // the error of the write that ended the key's life early, if any
	landed bool    // whether resolve found that write applied
	// del is whether the key's life ends with a delete.
	del bool
}

func (k *keyLife) value(i int) []byte { return fmt.Appendf(nil, "%s#%d", k.key, i) }

// version returns the i-th version of the key (0: create, 1: update) at rev.
func (k *keyLife) version(i int, rev int64) *KeyValue {
	return &KeyValue{Key: k.key, Value: k.value(i), CreateRevision: k.revs[0], ModRevision: rev, Version: int64(i + 1)}
}

// run performs the key's writes through s.
func (k *keyLife) run(s *Store) {
	k.via = s.NodeID()
	write := func(i int) (int64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		switch i {
		case 0:
			return s.Create(ctx, k.key, k.value(0))
		case 1:
			kv, err := s.Update(ctx, k.key, k.value(1), k.revs[0])
			return kv.ModRevision, err
		}
		prev, rev, err := s.Delete(ctx, k.key, k.revs[1])
		if err == nil && kvString(&prev) != kvString(k.version(1, k.revs[1])) {
			err = fmt.Errorf("delete returned previous version %s, want %s", kvString(&prev), kvString(k.version(1, k.revs[1])))
		}
		return rev, err
	}
	n := 2
	if k.del {
		n = 3
	}
	for i := range n {
		rev, err := write(i)
		if err != nil {
			k.failed = err
			return
		}
		k.revs = append(k.revs, rev)
	}
}

// resolve finds out, from node s's replica as of rev, whether the write that
// ended the key's life early was applied at or before rev, and if so appends
// its revision to revs. It fails the test for a write applied despite an
// error that says it was not, for any other unexpected error, and unless the
// key at rev is the version its last applied write left.
func (k *keyLife) resolve(t *testing.T, s *Store, rev int64) {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	get := func(at int64) *KeyValue {
		kv, _, err := s.Get(ctx, k.key, ReadOptions{Revision: at, Stale: true})
		if err != nil {
			t.Fatalf("Get(%s) at %d on %s: %v", k.key, at, s.NodeID(), err)
		}
		return kv
	}
	kv := get(rev)
	if i := len(k.revs); k.failed != nil {
		var landed int64
		switch i {
		case 0:
			if kv != nil {
				landed = kv.ModRevision
			}
		case 1:
			if kv != nil && kv.ModRevision != k.revs[0] {
				landed = kv.ModRevision
			}
		case 2:
			if kv == nil { // deleted: find the first revision without the key
				landed = int64(sort.Search(int(rev-k.revs[1]), func(j int) bool {
					return get(k.revs[1]+1+int64(j)) == nil
				})) + k.revs[1] + 1
			}
		}
		switch {
		case !errors.Is(k.failed, ErrNoLeader) && !errors.Is(k.failed, ErrUnknownOutcome):
			t.Errorf("write #%d of %s through %s: got %v, want nil, ErrNoLeader or ErrUnknownOutcome", i, k.key, k.via, k.failed)
		case landed != 0 && errors.Is(k.failed, ErrNoLeader):
			t.Errorf("write #%d of %s through %s failed with %v, but got it applied at revision %d", i, k.key, k.via, k.failed, landed)
		}
		if landed != 0 {
			k.revs, k.landed = append(k.revs, landed), true
		}
	}
	var want *KeyValue
	switch n := len(k.revs); n {
	case 1, 2:
		want = k.version(n-1, k.revs[n-1])
	}
	if kvString(kv) != kvString(want) {
		t.Errorf("%s at revision %d after %d applied writes: got %s, want %s", k.key, rev, len(k.revs), kvString(kv), kvString(want))
	}
}

// events returns the events the key's applied writes produced.
func (k *keyLife) events() []Event {
	var out []Event
	for i, rev := range k.revs {
		switch i {
		case 0:
			out = append(out, Event{Type: EventPut, KV: *k.version(0, rev)})
		case 1:
			out = append(out, Event{Type: EventPut, KV: *k.version(1, rev), PrevKV: k.version(0, k.revs[0])})
		case 2:
			out = append(out, Event{Type: EventDelete, KV: KeyValue{Key: k.key, ModRevision: rev}, PrevKV: k.version(1, k.revs[1])})
		}
	}
	return out
}

// lifeStream runs key lives on writer goroutines, one per target store.
type lifeStream struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	acked atomic.Int64 // acknowledged writes

	mu    sync.Mutex
	lives []*keyLife
	once  sync.Once
}

// startLives starts one writer per target store. Each lives keys
// prefix<writer>-<seq> one after the other, every other one ending with a
// delete, until finish. The stream is finished at cleanup if the test has not.
func startLives(t *testing.T, prefix string, targets []*Store) *lifeStream {
	ls := &lifeStream{stop: make(chan struct{})}
	for w, s := range targets {
		ls.wg.Add(1)
		go func() {
			defer ls.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-ls.stop:
					return
				default:
				}
				k := &keyLife{key: fmt.Sprintf("%s%02d-%04d", prefix, w, i), del: i%2 == 0}
				k.run(s)
				ls.acked.Add(int64(len(k.revs)))
				ls.mu.Lock()
				ls.lives = append(ls.lives, k)
				ls.mu.Unlock()
			}
		}()
	}
	t.Cleanup(func() { ls.finish() })
	return ls
}

// waitAcked waits until at least n writes have been acknowledged.
func (ls *lifeStream) waitAcked(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d acknowledged writes", n), func() error {
		if got := ls.acked.Load(); got < n {
			return fmt.Errorf("%d acknowledged", got)
		}
		return nil
	})
}

// finish stops the writers, waits for the keys they are writing and returns every key's life.
func (ls *lifeStream) finish() []*keyLife {
	ls.once.Do(func() { close(ls.stop) })
	ls.wg.Wait()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return slices.Clone(ls.lives)
}

// wantEvents resolves every key's life as of rev on s and returns the events
// all the applied writes produced up to rev, in revision order.
func wantEvents(t *testing.T, s *Store, lives []*keyLife, rev int64) []Event {
	t.Helper()
	var want []Event
	for _, k := range lives {
		k.resolve(t, s, rev)
		for _, ev := range k.events() {
			if ev.KV.ModRevision <= rev {
				want = append(want, ev)
			}
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i].KV.ModRevision < want[j].KV.ModRevision })
	return want
}

// TestWatchAcrossLeaderChange watches from both followers while writers
// create, update and delete keys through them, and kills the leader midway.
// Each watcher sees every applied write exactly once, in revision order,
// with the previous version for updates and deletes: the same stream on
// both replicas, across the change of leader.
func TestWatchAcrossLeaderChange(t *testing.T) {
	c := newCluster(t, 3, nil)
	old := c.leader()
	fs := c.followers(old)
	start := c.readRev(fs[0])
	c.waitApplied(start)
	var cols []*collector
	for _, id := range fs {
		w, err := c.node(id).Watch(ctxT(t, time.Second), "/wl/", start)
		if err != nil {
			t.Fatalf("Watch on %s: %v", id, err)
		}
		cols = append(cols, collect(t, id, w))
	}
	ls := startLives(t, "/wl/", c.stores(fs[0], fs[1], fs[0], fs[1]))
	ls.waitAcked(t, 60)

	c.stop(old)
	leader := c.leader(fs...)
	t.Logf("leader %s stopped, %s elected", old, leader)
	ls.waitAcked(t, ls.acked.Load()+60)
	lives := ls.finish()

	rev := c.readRev(fs[0])
	want := wantEvents(t, c.node(fs[0]), lives, rev)
	failed := map[string]int{}
	for _, k := range lives {
		switch {
		case k.failed == nil:
		case k.landed:
			failed["applied"]++
		default:
			failed["not applied"]++
		}
	}
	t.Logf("%d keys, %d events up to revision %d; failed writes: %v", len(lives), len(want), rev, failed)
	for _, col := range cols {
		checkEvents(t, "watcher on "+col.node, col.waitRev(t, rev), want, rev)
	}
}

// TestWatchResume stops reading a watcher in the middle of a stream of
// writes, at revision R, and starts a new watcher from R, on the same node
// or another: the first saw exactly the writes up to R, the second sees
// exactly the ones after.
func TestWatchResume(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.leader()
	fs := c.followers(leader)
	tests := []struct {
		name                 string
		first, second        string
		writeThrough         string
		eventsBeforeStopping int
	}{
		{name: "same node", first: fs[0], second: fs[0], writeThrough: leader, eventsBeforeStopping: 30},
		{name: "other node", first: fs[0], second: fs[1], writeThrough: fs[1], eventsBeforeStopping: 30},
		{name: "from the leader to a follower", first: leader, second: fs[1], writeThrough: fs[0], eventsBeforeStopping: 1},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := fmt.Sprintf("/wr/%d/", i)
			ctx := ctxT(t, 30*time.Second)
			start := c.readRev(tt.first)
			c.waitApplied(start)
			w1, err := c.node(tt.first).Watch(ctx, prefix, start)
			if err != nil {
				t.Fatal(err)
			}
			// One writer puts to a few keys, so most events have a PrevKV.
			// It writes half, then waits for the first watcher to stop, so
			// that there is always something left to resume. want is the
			// test's once the writer has reported.
			var (
				want []Event
				prev = map[string]*KeyValue{}
			)
			writer, stopped := make(chan error, 1), make(chan struct{})
			s := c.node(tt.writeThrough)
			go func() {
				for j := range 80 {
					if j == 40 {
						select {
						case <-stopped:
						case <-ctx.Done():
							writer <- ctx.Err()
							return
						}
					}
					key := fmt.Sprintf("%sk%d", prefix, j%7)
					val := fmt.Appendf(nil, "v%d", j)
					rev, old, err := s.Put(ctx, key, val)
					if err != nil {
						writer <- fmt.Errorf("Put(%s) through %s: %w", key, tt.writeThrough, err)
						return
					}
					if kvString(old) != kvString(prev[key]) {
						writer <- fmt.Errorf("Put(%s) replaced %s, want %s", key, kvString(old), kvString(prev[key]))
						return
					}
					kv := &KeyValue{Key: key, Value: val, CreateRevision: rev, ModRevision: rev, Version: 1}
					if old != nil {
						kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
					}
					want = append(want, Event{Type: EventPut, KV: *kv, PrevKV: prev[key]})
					prev[key] = kv
				}
				writer <- nil
			}()

			var first []Event
			for len(first) < tt.eventsBeforeStopping {
				evs, _, err := w1.Next(ctx)
				if err != nil {
					t.Fatalf("Next on %s: %v", tt.first, err)
				}
				first = append(first, evs...)
			}
			r := w1.Rev()
			close(stopped)
			if err := <-writer; err != nil {
				t.Fatal(err)
			}
			last := want[len(want)-1].KV.ModRevision
			w2, err := c.node(tt.second).Watch(ctx, prefix, r)
			if err != nil {
				t.Fatalf("Watch on %s from %d: %v", tt.second, r, err)
			}
			var second []Event
			for w2.Rev() < last {
				evs, _, err := w2.Next(ctx)
				if err != nil {
					t.Fatalf("Next on %s: %v", tt.second, err)
				}
				second = append(second, evs...)
			}
			split := sort.Search(len(want), func(j int) bool { return want[j].KV.ModRevision > r })
			t.Logf("stopped at revision %d after %d of %d events", r, split, len(want))
			checkEvents(t, "first watcher on "+tt.first, first, want[:split], r)
			checkEvents(t, "second watcher on "+tt.second, second, want[split:], last)
			if n := len(second); n > 0 && second[n-1].KV.ModRevision > last {
				t.Errorf("second watcher: got an event at revision %d after the last write %d", second[n-1].KV.ModRevision, last)
			}
		})
	}
}

// TestWatchCompacted compacts the history to revision C, then watches from
// around C on every node: from below C fails with a CompactedError at C,
// from C on sees exactly the later events, and a watcher that was behind C
// when the compaction applied fails from Next.
func TestWatchCompacted(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.leader()
	ctx := ctxT(t, 30*time.Second)
	s := c.node(leader)
	start := c.readRev(leader)
	c.waitApplied(start)
	behind := map[string]*Watcher{}
	for _, id := range c.ids() {
		w, err := c.node(id).Watch(ctx, "/wc/", start)
		if err != nil {
			t.Fatal(err)
		}
		behind[id] = w
	}
	var revs []int64
	for i := range 20 {
		rev, _, err := s.Put(ctx, fmt.Sprintf("/wc/k%d", i%4), fmt.Appendf(nil, "v%d", i))
		if err != nil {
			t.Fatalf("Put: %v", err)
		}
		revs = append(revs, rev)
	}
	compact := revs[9]
	if err := s.Compact(ctx, compact); err != nil {
		t.Fatalf("Compact(%d): %v", compact, err)
	}
	c.waitApplied(c.readRev(leader))

	tests := []struct {
		name string
		from int64
		// wantErr is whether Watch fails with a CompactedError at compact.
		wantErr bool
		// want is how many of the 20 puts the watcher sees (the last ones).
		want int
	}{
		{name: "from the first write", from: revs[0], wantErr: true},
		{name: "from just below the compaction", from: compact - 1, wantErr: true},
		{name: "from the compaction", from: compact, want: 10},
		{name: "from after the compaction", from: revs[15], want: 4},
	}
	for _, id := range c.ids() {
		t.Run(id, func(t *testing.T) {
			var ce *CompactedError
			if _, _, err := behind[id].Next(ctx); !errors.As(err, &ce) || ce.Compacted != compact || ce.Requested != start {
				t.Errorf("Next of a watcher from %d: got %v, want a CompactedError at %d", start, err, compact)
			}
			for _, tt := range tests {
				w, err := c.node(id).Watch(ctx, "/wc/", tt.from)
				if tt.wantErr {
					if !errors.As(err, &ce) || ce.Compacted != compact || ce.Requested != tt.from {
						t.Errorf("%s: Watch from %d: got %v, want a CompactedError{Requested: %d, Compacted: %d}", tt.name, tt.from, err, tt.from, compact)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s: Watch from %d: %v", tt.name, tt.from, err)
					continue
				}
				var got []int64
				for w.Rev() < revs[len(revs)-1] {
					evs, _, err := w.Next(ctx)
					if err != nil {
						t.Fatalf("%s: Next: %v", tt.name, err)
					}
					for _, ev := range evs {
						got = append(got, ev.KV.ModRevision)
					}
				}
				if want := revs[len(revs)-tt.want:]; !slices.Equal(got, want) {
					t.Errorf("%s: got events at revisions %v, want %v", tt.name, got, want)
				}
			}
		})
	}
}

// TestWatchFallsBehind keeps a small watch history: a watcher that does not
// read while more events than that are written fails from Next with a
// CompactedError at the newest dropped event; one from within the kept
// history sees exactly the events after it.
func TestWatchFallsBehind(t *testing.T) {
	const history = 50
	c := newCluster(t, 1, func(cfg *Config) { cfg.WatchHistory = history })
	s := c.node(c.leader())
	ctx := ctxT(t, 30*time.Second)
	start := c.readRev("n1")
	slow, err := s.Watch(ctx, "/wb/", start)
	if err != nil {
		t.Fatal(err)
	}
	var revs []int64
	for i := range 2*history + 20 {
		rev, err := s.Create(ctx, fmt.Sprintf("/wb/%03d", i), []byte("v"))
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		revs = append(revs, rev)
	}
	// Each write is one event in its own revision: the hub keeps the last
	// history of them and has dropped everything up to the one before.
	dropped := revs[len(revs)-history-1]
	var ce *CompactedError
	if _, _, err := slow.Next(ctx); !errors.As(err, &ce) || ce.Requested != start || ce.Compacted != dropped {
		t.Fatalf("Next of a watcher from %d: got %v, want a CompactedError{Requested: %d, Compacted: %d}", start, err, start, dropped)
	}
	if _, err := s.Watch(ctx, "/wb/", dropped-1); !errors.As(err, &ce) || ce.Compacted != dropped {
		t.Fatalf("Watch from %d: got %v, want a CompactedError at %d", dropped-1, err, dropped)
	}
	w, err := s.Watch(ctx, "/wb/", dropped)
	if err != nil {
		t.Fatalf("Watch from %d: %v", dropped, err)
	}
	evs, _, err := w.Next(ctx)
	var got []int64
	for _, ev := range evs {
		got = append(got, ev.KV.ModRevision)
	}
	if want := revs[len(revs)-history:]; err != nil || !slices.Equal(got, want) {
		t.Fatalf("Next of a watcher from %d: got %v, %v; want revisions %v", dropped, got, err, want)
	}
}

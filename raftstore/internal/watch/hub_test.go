package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
)

func put(rev int64, key string) mvcc.Event {
	return mvcc.Event{Type: mvcc.EventPut, KV: mvcc.KeyValue{Key: key, Value: []byte("v"), CreateRevision: rev, ModRevision: rev, Version: 1}}
}

func del(rev int64, key string) mvcc.Event {
	return mvcc.Event{Type: mvcc.EventDelete, KV: mvcc.KeyValue{Key: key, ModRevision: rev}}
}

// ids renders events as rev:key, in the order given.
func ids(evs []mvcc.Event) []string {
	out := []string{}
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%d:%s", ev.KV.ModRevision, ev.KV.Key))
	}
	return out
}

// drain returns every event the watcher can have without waiting, in the
// batches Next returned them: Next with a cancelled context still returns
// events that are there, and advances the cursor over the ones that are not
// the watcher's.
func drain(t *testing.T, w *Watcher) [][]mvcc.Event {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var batches [][]mvcc.Event
	for {
		evs, rev, err := w.Next(ctx)
		if rev != w.Rev() {
			t.Fatalf("Next returned revision %d, but Rev is %d", rev, w.Rev())
		}
		if errors.Is(err, context.Canceled) {
			if len(evs) > 0 {
				t.Fatalf("Next returned %d events with %v", len(evs), err)
			}
			return batches
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		if len(evs) == 0 {
			t.Fatalf("Next returned no events and no error")
		}
		batches = append(batches, evs)
	}
}

func drainAll(t *testing.T, w *Watcher) []mvcc.Event {
	t.Helper()
	return slices.Concat(drain(t, w)...)
}

// sample returns a hub that has published revisions 1..8: 1, 5 and 8 without
// events (a Raft configuration change, say), 4 with two.
func sample() *Hub {
	h := New(100)
	h.Publish(1, nil)
	h.Publish(2, []mvcc.Event{put(2, "/a/1")})
	h.Publish(3, []mvcc.Event{put(3, "/b/1")})
	h.Publish(5, []mvcc.Event{put(4, "/a/2"), put(4, "/a/3")})
	h.Publish(6, []mvcc.Event{del(6, "/a/1")})
	h.Publish(8, []mvcc.Event{put(7, "/ab")})
	return h
}

// TestWatcherOrderAndPrefix checks that a watcher sees the events of its
// prefix after its revision, in order, and then the ones published later.
func TestWatcherOrderAndPrefix(t *testing.T) {
	tests := []struct {
		prefix string
		from   int64
		want   []string
	}{
		{prefix: "", from: 1, want: []string{"2:/a/1", "3:/b/1", "4:/a/2", "4:/a/3", "6:/a/1", "7:/ab"}},
		{prefix: "/a/", from: 1, want: []string{"2:/a/1", "4:/a/2", "4:/a/3", "6:/a/1"}},
		{prefix: "/a", from: 1, want: []string{"2:/a/1", "4:/a/2", "4:/a/3", "6:/a/1", "7:/ab"}},
		{prefix: "/a/3", from: 1, want: []string{"4:/a/3"}},
		{prefix: "/c/", from: 1, want: []string{}},
		{prefix: "/b/", from: 2, want: []string{"3:/b/1"}},
		{prefix: "/b/", from: 3, want: []string{}},
		{prefix: "/a/", from: 3, want: []string{"4:/a/2", "4:/a/3", "6:/a/1"}},
		{prefix: "/a/", from: 4, want: []string{"6:/a/1"}},
		{prefix: "/a/", from: 5, want: []string{"6:/a/1"}},
		{prefix: "", from: 7, want: []string{}},
		{prefix: "", from: 8, want: []string{}},
		{prefix: "", from: 0, want: []string{}}, // from now
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q from %d", tt.prefix, tt.from), func(t *testing.T) {
			h := sample()
			w, err := h.Watch(tt.prefix, tt.from)
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			if got := ids(drainAll(t, w)); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if w.Rev() != 8 {
				t.Errorf("got Rev %d after draining, want 8 (the last published revision)", w.Rev())
			}
			// Later events arrive after the earlier ones.
			h.Publish(9, []mvcc.Event{put(9, tt.prefix+"z")})
			if got, want := ids(drainAll(t, w)), []string{"9:" + tt.prefix + "z"}; !slices.Equal(got, want) {
				t.Errorf("after one more publish: got %v, want %v", got, want)
			}
		})
	}
}

// TestWatchFromNow checks that from 0 means the revision published last.
func TestWatchFromNow(t *testing.T) {
	h := New(100)
	fresh, err := h.Watch("", 0)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.Rev() != 0 {
		t.Fatalf("got Rev %d for a watcher of a new hub, want 0", fresh.Rev())
	}
	h.Publish(1, []mvcc.Event{put(1, "/a")})
	h.Publish(2, []mvcc.Event{put(2, "/b")})
	now, err := h.Watch("", 0)
	if err != nil {
		t.Fatal(err)
	}
	if now.Rev() != 2 || h.Rev() != 2 {
		t.Fatalf("got watcher Rev %d and hub Rev %d, want 2 and 2", now.Rev(), h.Rev())
	}
	h.Publish(3, []mvcc.Event{put(3, "/c")})
	for _, tt := range []struct {
		name string
		w    *Watcher
		want []string
	}{
		{"watcher of a new hub", fresh, []string{"1:/a", "2:/b", "3:/c"}},
		{"watcher from now", now, []string{"3:/c"}},
	} {
		if got := ids(drainAll(t, tt.w)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestWatchFromTheFuture checks that a watcher from a revision the hub has
// not reached skips everything up to it.
func TestWatchFromTheFuture(t *testing.T) {
	h := New(100)
	h.Publish(1, []mvcc.Event{put(1, "/a")})
	w, err := h.Watch("", 3)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(2, []mvcc.Event{put(2, "/b")})
	h.Publish(3, []mvcc.Event{put(3, "/c")})
	h.Publish(4, []mvcc.Event{put(4, "/d")})
	if got, want := ids(drainAll(t, w)), []string{"4:/d"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

// TestNextBatches checks that Next returns at most MaxBatch events of the
// watcher's, except that it never splits a revision.
func TestNextBatches(t *testing.T) {
	// run is n revisions from first with per events each, keys under prefix.
	type run struct {
		first  int64
		n, per int
		prefix string
	}
	tests := []struct {
		name   string
		runs   []run
		prefix string
		// want is the size of each batch.
		want []int
	}{
		{name: "fewer than the limit", runs: []run{{1, 10, 1, "/a/"}}, want: []int{10}},
		{name: "exactly the limit", runs: []run{{1, MaxBatch, 1, "/a/"}}, want: []int{MaxBatch}},
		{name: "one more than the limit", runs: []run{{1, MaxBatch + 1, 1, "/a/"}}, want: []int{MaxBatch, 1}},
		{name: "two and a half batches", runs: []run{{1, 2*MaxBatch + MaxBatch/2, 1, "/a/"}}, want: []int{MaxBatch, MaxBatch, MaxBatch / 2}},
		{
			name: "a revision straddles the limit",
			runs: []run{{1, MaxBatch - 2, 1, "/a/"}, {MaxBatch - 1, 1, 5, "/a/"}, {MaxBatch, 10, 1, "/a/"}},
			want: []int{MaxBatch + 3, 10},
		},
		{
			name: "a revision starts right at the limit",
			runs: []run{{1, MaxBatch, 1, "/a/"}, {MaxBatch + 1, 1, 7, "/a/"}},
			want: []int{MaxBatch, 7},
		},
		{name: "one revision larger than the limit", runs: []run{{1, 1, 2*MaxBatch + 3, "/a/"}}, want: []int{2*MaxBatch + 3}},
		{
			name:   "other keys do not count",
			runs:   []run{{1, MaxBatch, 1, "/b/"}, {MaxBatch + 1, MaxBatch / 2, 1, "/a/"}, {MaxBatch + 1 + MaxBatch/2, MaxBatch, 1, "/b/"}},
			prefix: "/a/",
			want:   []int{MaxBatch / 2},
		},
		{
			name:   "other keys inside the revision that fills the batch",
			runs:   []run{{1, MaxBatch - 1, 1, "/a/"}, {MaxBatch, 1, 3, "/b/"}, {MaxBatch + 1, 1, 2, "/a/"}, {MaxBatch + 2, 4, 1, "/a/"}},
			prefix: "/a/",
			want:   []int{MaxBatch + 1, 4},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(1 << 20)
			w, err := h.Watch(tt.prefix, 0) // everything: the hub is at revision 0
			if err != nil {
				t.Fatal(err)
			}
			var last int64
			for _, r := range tt.runs {
				for i := range r.n {
					rev := r.first + int64(i)
					var evs []mvcc.Event
					for j := range r.per {
						evs = append(evs, put(rev, fmt.Sprintf("%s%d-%d", r.prefix, rev, j)))
					}
					h.Publish(rev, evs)
					last = rev
				}
			}
			var sizes []int
			var prevRev int64
			for i, b := range drain(t, w) {
				sizes = append(sizes, len(b))
				if b[0].KV.ModRevision == prevRev {
					t.Errorf("batch #%d starts with revision %d, which the previous batch ended with", i, prevRev)
				}
				for j := 1; j < len(b); j++ {
					if b[j].KV.ModRevision < b[j-1].KV.ModRevision {
						t.Errorf("batch #%d: event #%d has revision %d after %d", i, j, b[j].KV.ModRevision, b[j-1].KV.ModRevision)
					}
				}
				prevRev = b[len(b)-1].KV.ModRevision
			}
			if !slices.Equal(sizes, tt.want) {
				t.Errorf("got batches of %v events, want %v", sizes, tt.want)
			}
			if w.Rev() != last {
				t.Errorf("got Rev %d after the last batch, want %d", w.Rev(), last)
			}
		})
	}
}

// TestBoundedHistory checks that a hub keeps about max events, dropping
// whole revisions, oldest first.
func TestBoundedHistory(t *testing.T) {
	tests := []struct {
		name string
		max  int
		// per is the number of events of each of revisions 1..len(per).
		per []int
		// floor is the newest dropped revision; kept the revisions kept.
		floor int64
		kept  []int64
	}{
		{name: "under the bound", max: 5, per: []int{1, 1, 1}, floor: 0, kept: []int64{1, 2, 3}},
		{name: "at the bound", max: 3, per: []int{1, 1, 1}, floor: 0, kept: []int64{1, 2, 3}},
		{name: "one over the bound", max: 3, per: []int{1, 1, 1, 1}, floor: 1, kept: []int64{2, 3, 4}},
		{name: "over the bound", max: 3, per: []int{1, 1, 1, 1, 1}, floor: 2, kept: []int64{3, 4, 5}},
		{name: "drops a whole revision", max: 3, per: []int{1, 2, 1, 1}, floor: 2, kept: []int64{3, 4}},
		{name: "one revision above the bound", max: 2, per: []int{1, 3}, floor: 2, kept: nil},
		{name: "keeps the newest revision whole", max: 4, per: []int{2, 2, 3}, floor: 2, kept: []int64{3, 3, 3}},
		{name: "revisions without events", max: 2, per: []int{1, 0, 1, 0, 1, 0, 1, 0}, floor: 3, kept: []int64{5, 7}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(tt.max)
			all, err := h.Watch("", 0)
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range tt.per {
				rev := int64(i + 1)
				var evs []mvcc.Event
				for j := range n {
					evs = append(evs, put(rev, fmt.Sprintf("/k%d", j)))
				}
				h.Publish(rev, evs)
			}
			last := int64(len(tt.per))
			var ce *mvcc.CompactedError
			if tt.floor > 0 {
				if _, _, err := all.Next(cancelled()); !errors.As(err, &ce) || ce.Requested != 0 || ce.Compacted != tt.floor {
					t.Errorf("Next of a watcher from 0: got %v, want a CompactedError{Requested: 0, Compacted: %d}", err, tt.floor)
				}
			}
			if tt.floor > 1 { // from 0 would mean from now
				if _, err := h.Watch("", tt.floor-1); !errors.As(err, &ce) || ce.Requested != tt.floor-1 || ce.Compacted != tt.floor {
					t.Errorf("Watch from %d: got %v, want a CompactedError{Requested: %d, Compacted: %d}", tt.floor-1, err, tt.floor-1, tt.floor)
				}
			}
			w := all // from 0 would mean from now
			if tt.floor > 0 {
				if w, err = h.Watch("", tt.floor); err != nil {
					t.Fatalf("Watch from %d: %v", tt.floor, err)
				}
			}
			var got []int64
			for _, ev := range drainAll(t, w) {
				got = append(got, ev.KV.ModRevision)
			}
			if !slices.Equal(got, tt.kept) {
				t.Errorf("Watch from %d: got events at %v, want %v", tt.floor, got, tt.kept)
			}
			if w.Rev() != last {
				t.Errorf("got Rev %d, want %d", w.Rev(), last)
			}
		})
	}
}

// TestCompact checks that Compact forgets the events at and below its
// revision: watching from below fails, from it on works, and a watcher that
// had not read past it fails from Next.
func TestCompact(t *testing.T) {
	tests := []struct {
		name string
		// cursor is where the existing watcher has read up to at the compaction.
		cursor int64
		// compacts are the Compact calls, in order.
		compacts []int64
		floor    int64
		wantErr  bool
	}{
		{name: "watcher behind", cursor: 2, compacts: []int64{4}, floor: 4, wantErr: true},
		{name: "watcher at the compaction", cursor: 4, compacts: []int64{4}, floor: 4},
		{name: "watcher ahead", cursor: 6, compacts: []int64{4}, floor: 4},
		{name: "lower compaction later keeps the floor", cursor: 3, compacts: []int64{4, 2}, floor: 4, wantErr: true},
		{name: "compaction between events", cursor: 5, compacts: []int64{5}, floor: 5},
		{name: "compaction to the last revision", cursor: 7, compacts: []int64{8}, floor: 8, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(100)
			h.Publish(1, nil)
			for rev := int64(2); rev <= 8; rev++ {
				if rev == 5 {
					h.Publish(rev, nil)
					continue
				}
				h.Publish(rev, []mvcc.Event{put(rev, fmt.Sprintf("/k%d", rev))})
			}
			w, err := h.Watch("", tt.cursor) // a watcher that has read up to cursor
			if err != nil {
				t.Fatal(err)
			}
			for _, rev := range tt.compacts {
				h.Compact(rev)
			}
			var ce *mvcc.CompactedError
			_, _, err = w.Next(cancelled())
			if tt.wantErr {
				if !errors.As(err, &ce) || ce.Requested != tt.cursor || ce.Compacted != tt.floor {
					t.Errorf("Next of a watcher at %d: got %v, want a CompactedError{Requested: %d, Compacted: %d}", tt.cursor, err, tt.cursor, tt.floor)
				}
			} else if errors.As(err, &ce) {
				t.Errorf("Next of a watcher at %d: got %v, want it to carry on", tt.cursor, err)
			}
			if _, err := h.Watch("", tt.floor-1); !errors.As(err, &ce) || ce.Requested != tt.floor-1 || ce.Compacted != tt.floor {
				t.Errorf("Watch from %d: got %v, want a CompactedError{Requested: %d, Compacted: %d}", tt.floor-1, err, tt.floor-1, tt.floor)
			}
			w2, err := h.Watch("", tt.floor)
			if err != nil {
				t.Fatalf("Watch from %d: %v", tt.floor, err)
			}
			var got, want []int64
			for _, ev := range drainAll(t, w2) {
				got = append(got, ev.KV.ModRevision)
			}
			for rev := tt.floor + 1; rev <= 8; rev++ {
				if rev != 5 {
					want = append(want, rev)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("Watch from %d: got events at %v, want %v", tt.floor, got, want)
			}
		})
	}
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// TestReset checks the hub after a snapshot restore at revision 10: watchers
// that had not seen everything up to 10 fail, the others carry on with the
// events published after the reset.
func TestReset(t *testing.T) {
	tests := []struct {
		name    string
		cursor  int64
		wantErr bool
	}{
		{name: "watcher behind the snapshot", cursor: 3, wantErr: true},
		{name: "watcher just behind the snapshot", cursor: 9, wantErr: true},
		{name: "watcher at the snapshot", cursor: 10},
		{name: "watcher past the snapshot", cursor: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(100)
			for rev := int64(1); rev <= 4; rev++ {
				h.Publish(rev, []mvcc.Event{put(rev, "/k")})
			}
			w, err := h.Watch("", tt.cursor)
			if err != nil {
				t.Fatal(err)
			}
			h.Reset(10)
			if h.Rev() != 10 {
				t.Errorf("got hub Rev %d after Reset(10), want 10", h.Rev())
			}
			h.Publish(11, []mvcc.Event{put(11, "/k")})
			h.Publish(12, []mvcc.Event{put(12, "/k")})
			var ce *mvcc.CompactedError
			if tt.wantErr {
				if _, _, err := w.Next(cancelled()); !errors.As(err, &ce) || ce.Requested != tt.cursor || ce.Compacted != 10 {
					t.Errorf("Next: got %v, want a CompactedError{Requested: %d, Compacted: 10}", err, tt.cursor)
				}
				return
			}
			var got, want []int64
			for _, ev := range drainAll(t, w) {
				got = append(got, ev.KV.ModRevision)
			}
			for rev := max(tt.cursor, 10) + 1; rev <= 12; rev++ {
				want = append(want, rev)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got events at %v, want %v", got, want)
			}
		})
	}
	t.Run("new watchers", func(t *testing.T) {
		h := New(100)
		h.Publish(1, []mvcc.Event{put(1, "/k")})
		h.Reset(10)
		var ce *mvcc.CompactedError
		if _, err := h.Watch("", 9); !errors.As(err, &ce) || ce.Compacted != 10 {
			t.Errorf("Watch from 9: got %v, want a CompactedError at 10", err)
		}
		now, err := h.Watch("", 0)
		if err != nil || now.Rev() != 10 {
			t.Fatalf("Watch from now: got Rev %v, %v; want 10", now, err)
		}
		h.Publish(11, []mvcc.Event{put(11, "/k")})
		if got, want := ids(drainAll(t, now)), []string{"11:/k"}; !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	})
}

// nextResult is what one Next call returned.
type nextResult struct {
	events []mvcc.Event
	rev    int64
	err    error
}

// waitingCtx reports, by closing waiting, the first time Next asks for its
// Done channel: Next does that only once it has found nothing to return and
// is about to block, with the hub's wake channel already in hand.
type waitingCtx struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func (c *waitingCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// goNext calls w.Next on a goroutine, waits until it blocks, and returns a
// channel for its result.
func goNext(t *testing.T, ctx context.Context, w *Watcher) <-chan nextResult {
	t.Helper()
	wctx := &waitingCtx{Context: ctx, waiting: make(chan struct{})}
	ch := make(chan nextResult, 1)
	go func() {
		evs, rev, err := w.Next(wctx)
		ch <- nextResult{evs, rev, err}
	}()
	select {
	case <-wctx.waiting:
	case r := <-ch:
		t.Fatalf("Next returned %d events at %d, %v; want it to block", len(r.events), r.rev, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not block within 10s")
	}
	return ch
}

func await(t *testing.T, ch <-chan nextResult) nextResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not return within 10s")
		return nextResult{}
	}
}

// TestNextWakes checks that a blocked Next returns when an event of its
// keys is published, and when a reset makes it fail; and that it keeps
// waiting through events of other keys.
func TestNextWakes(t *testing.T) {
	t.Run("publish", func(t *testing.T) {
		h := New(100)
		w, _ := h.Watch("/a/", 0)
		ch := goNext(t, context.Background(), w)
		h.Publish(1, []mvcc.Event{put(1, "/b/x")}) // not the watcher's
		h.Publish(2, nil)
		h.Publish(3, []mvcc.Event{put(3, "/a/x")})
		r := await(t, ch)
		if got, want := ids(r.events), []string{"3:/a/x"}; r.err != nil || !slices.Equal(got, want) || r.rev != 3 {
			t.Errorf("got %v at %d, %v; want %v at 3", got, r.rev, r.err, want)
		}
	})
	t.Run("reset", func(t *testing.T) {
		h := New(100)
		w, _ := h.Watch("/a/", 0)
		ch := goNext(t, context.Background(), w)
		h.Reset(5)
		r := await(t, ch)
		var ce *mvcc.CompactedError
		if !errors.As(r.err, &ce) || ce.Compacted != 5 {
			t.Errorf("got %v, want a CompactedError at 5", r.err)
		}
	})
}

// TestNextContext checks that Next gives up when its context ends, with the
// context's error, and that the watcher stays usable.
func TestNextContext(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		// cancelAfterStart cancels the context once Next is running.
		cancelAfterStart bool
		want             error
	}{
		{name: "cancelled before", ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, want: context.Canceled},
		{name: "cancelled while waiting", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, cancelAfterStart: true, want: context.Canceled},
		{name: "deadline", ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 20*time.Millisecond)
		}, want: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(100)
			h.Publish(1, []mvcc.Event{put(1, "/b/x")})
			w, _ := h.Watch("/a/", 0)
			ctx, cancel := tt.ctx()
			defer cancel()
			var r nextResult
			if tt.cancelAfterStart {
				ch := goNext(t, ctx, w)
				cancel()
				r = await(t, ch)
			} else {
				r.events, r.rev, r.err = w.Next(ctx)
			}
			if !errors.Is(r.err, tt.want) || len(r.events) != 0 || r.rev != 1 {
				t.Errorf("got %d events at %d, %v; want none at 1, %v", len(r.events), r.rev, r.err, tt.want)
			}
			h.Publish(2, []mvcc.Event{put(2, "/a/x")})
			if got, want := ids(drainAll(t, w)), []string{"2:/a/x"}; !slices.Equal(got, want) {
				t.Errorf("after giving up: got %v, want %v", got, want)
			}
		})
	}
}

// TestConcurrentWatchers publishes from one goroutine while watchers of
// different prefixes read on others: each sees its events exactly once, in
// order. Run with -race.
func TestConcurrentWatchers(t *testing.T) {
	const revs = 3000
	h := New(revs * 2)
	prefixes := []string{"", "/a/", "/b/", "/a/1"}
	var wg sync.WaitGroup
	got := make([][]string, len(prefixes))
	for i, p := range prefixes {
		w, err := h.Watch(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			for w.Rev() < revs {
				evs, _, err := w.Next(ctx)
				if err != nil {
					got[i] = append(got[i], "error: "+err.Error())
					return
				}
				got[i] = append(got[i], ids(evs)...)
			}
		}()
	}
	want := make([][]string, len(prefixes))
	for rev := int64(1); rev <= revs; rev++ {
		var evs []mvcc.Event
		for j := range int(rev % 3) {
			key := fmt.Sprintf("/%c/%d", "ab"[(int(rev)+j)%2], j)
			evs = append(evs, put(rev, key))
			for i, p := range prefixes {
				if strings.HasPrefix(key, p) {
					want[i] = append(want[i], fmt.Sprintf("%d:%s", rev, key))
				}
			}
		}
		h.Publish(rev, evs)
	}
	wg.Wait()
	for i, p := range prefixes {
		if !slices.Equal(got[i], want[i]) {
			t.Errorf("watcher of %q: got %d events, want %d (first: got %v, want %v)", p, len(got[i]), len(want[i]), first(got[i]), first(want[i]))
		}
	}
}

func first(s []string) []string { return s[:min(len(s), 3)] }

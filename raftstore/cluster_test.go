package raftstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// created is the outcome of one Create of a workload.
type created struct {
	key, value string
	// via is the node the write was sent to.
	via string
	rev int64
	err error
}

// createStream is a workload of Creates of fresh keys, each of which is
// written exactly once: the value is the key itself, so a key in the store
// identifies the write that put it there.
type createStream struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	acked atomic.Int64

	mu   sync.Mutex
	outs []created
	once sync.Once
}

// startCreates starts one writer per target store. Each writes
// prefix<writer>-<seq> with Create until finish, a request at a time, with a
// 5s deadline per request. The stream is finished at cleanup if the test has
// not.
func startCreates(t *testing.T, prefix string, targets []*Store) *createStream {
	t.Helper()
	ws := &createStream{stop: make(chan struct{})}
	for w, s := range targets {
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-ws.stop:
					return
				default:
				}
				key := fmt.Sprintf("%s%02d-%05d", prefix, w, i)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				rev, err := s.Create(ctx, key, []byte(key))
				cancel()
				ws.mu.Lock()
				ws.outs = append(ws.outs, created{key: key, value: key, via: s.NodeID(), rev: rev, err: err})
				ws.mu.Unlock()
				if err == nil {
					ws.acked.Add(1)
				}
			}
		}()
	}
	t.Cleanup(func() { ws.finish() })
	return ws
}

// waitAcked waits until at least n writes have been acknowledged.
func (ws *createStream) waitAcked(t *testing.T, n int64) {
	t.Helper()
	waitFor(t, 20*time.Second, fmt.Sprintf("%d acknowledged writes", n), func() error {
		if got := ws.acked.Load(); got < n {
			return fmt.Errorf("%d acknowledged", got)
		}
		return nil
	})
}

// finish stops the writers, waits for their last requests and returns every outcome.
func (ws *createStream) finish() []created {
	ws.once.Do(func() { close(ws.stop) })
	ws.wg.Wait()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return slices.Clone(ws.outs)
}

// createN writes n fresh keys prefix<seq> through s, one at a time; every
// write must succeed.
func createN(t *testing.T, s *Store, prefix string, n int) []created {
	t.Helper()
	var outs []created
	for i := range n {
		key := fmt.Sprintf("%s%05d", prefix, i)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		rev, err := s.Create(ctx, key, []byte(key))
		cancel()
		if err != nil {
			t.Fatalf("Create(%s) through %s: %v", key, s.NodeID(), err)
		}
		outs = append(outs, created{key: key, value: key, via: s.NodeID(), rev: rev})
	}
	return outs
}

// creates tallies what checkCreates found.
type creates struct {
	acked, noLeader, unknownApplied, unknownLost int
}

// checkCreates compares the outcomes of Creates of distinct keys with kvs,
// the state of their prefix read at a revision after all of them returned:
//   - an acknowledged create is there, exactly as written, at its revision;
//   - a create that failed with ErrNoLeader is not there;
//   - a create that failed with ErrUnknownOutcome may be there, as written;
//   - no other error happens, and no key is there that no create wrote.
func checkCreates(t *testing.T, outs []created, kvs []KeyValue) creates {
	t.Helper()
	have := map[string]*KeyValue{}
	for i := range kvs {
		have[kvs[i].Key] = &kvs[i]
	}
	var n creates
	for _, o := range outs {
		got := have[o.key]
		delete(have, o.key)
		switch {
		case o.err == nil:
			n.acked++
			want := KeyValue{Key: o.key, Value: []byte(o.value), CreateRevision: o.rev, ModRevision: o.rev, Version: 1}
			if kvString(got) != kvString(&want) {
				t.Errorf("acknowledged create through %s: got %s, want %s", o.via, kvString(got), kvString(&want))
			}
		case errors.Is(o.err, ErrNoLeader):
			n.noLeader++
			if got != nil {
				t.Errorf("create of %s through %s failed with %v, but got %s in the store, want no key", o.key, o.via, o.err, kvString(got))
			}
		case errors.Is(o.err, ErrUnknownOutcome):
			if got == nil {
				n.unknownLost++
				continue
			}
			n.unknownApplied++
			if string(got.Value) != o.value || got.Version != 1 || got.CreateRevision != got.ModRevision {
				t.Errorf("create of %s with unknown outcome: got %s, want value %q, version 1", o.key, kvString(got), o.value)
			}
		default:
			t.Errorf("create of %s through %s: got error %v, want nil, ErrNoLeader or ErrUnknownOutcome", o.key, o.via, o.err)
		}
	}
	for _, kv := range have {
		t.Errorf("got %s in the store, want only keys that some create wrote", kvString(kv))
	}
	return n
}

// TestClusterLeaderFailure kills the leader in the middle of a stream of
// writes sent through the followers: the survivors elect a new leader and the
// writes carry on; every acknowledged write survives on every node, no failed
// one appears; the old leader, restarted from its data directory, catches up.
func TestClusterLeaderFailure(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", n), func(t *testing.T) {
			c := newCluster(t, n, nil)
			old := c.leader()
			survivors := c.followers(old)
			ws := startCreates(t, "/lf/", c.stores(survivors...))
			ws.waitAcked(t, 40)

			c.stop(old)
			leader := c.leader(survivors...)
			t.Logf("leader %s stopped, %s elected", old, leader)
			ws.waitAcked(t, ws.acked.Load()+40) // acknowledged by the new leader
			outs := ws.finish()

			rev := c.readRev(survivors[0])
			kvs := c.agree("/lf/", rev)
			got := checkCreates(t, outs, kvs)
			t.Logf("%d writes: %+v", len(outs), got)

			c.restart(old)
			c.leader()
			if d := diffKVs(c.agree("/lf/", rev), kvs); d != "" {
				t.Fatalf("after %s restarted: %s", old, d)
			}
			ctx := ctxT(t, 10*time.Second)
			if _, err := c.node(old).Create(ctx, "/lf/after-restart", []byte("x")); err != nil {
				t.Fatalf("Create through restarted %s: %v", old, err)
			}
		})
	}
}

// TestClusterMinorityPartition cuts the leader and one follower off from the
// other three nodes of five. The majority elects a leader and keeps
// accepting writes; writes sent to the minority side after that never
// succeed. Once healed, all five hold the same data, and each write whose
// outcome was unknown is either on every node or on none.
func TestClusterMinorityPartition(t *testing.T) {
	c := newCluster(t, 5, nil)
	old := c.leader()
	fs := c.followers(old)
	minority, majority := []string{old, fs[0]}, fs[1:]
	outs := createN(t, c.node(old), "/mp/before/", 10)

	c.net.Partition(minority, majority)
	leader := c.leader(majority...)
	t.Logf("partitioned %v from %v; majority elected %s", minority, majority, leader)

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		minorOut []created
	)
	t.Cleanup(wg.Wait) // before the nodes stop, should the test fail early
	for i := range 4 {
		s := c.node(minority[i%2])
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("/mp/minority/%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			rev, err := s.Create(ctx, key, []byte(key))
			mu.Lock()
			minorOut = append(minorOut, created{key: key, value: key, via: s.NodeID(), rev: rev, err: err})
			mu.Unlock()
		}()
	}
	for i, id := range majority {
		outs = append(outs, createN(t, c.node(id), fmt.Sprintf("/mp/majority/%d/", i), 10)...)
	}
	wg.Wait()
	for _, o := range minorOut {
		if o.err == nil {
			t.Errorf("create of %s through %s on the minority side: got success at revision %d, want ErrNoLeader or ErrUnknownOutcome", o.key, o.via, o.rev)
		} else if !errors.Is(o.err, ErrNoLeader) && !errors.Is(o.err, ErrUnknownOutcome) {
			t.Errorf("create of %s through %s on the minority side: got %v, want ErrNoLeader or ErrUnknownOutcome", o.key, o.via, o.err)
		}
	}

	c.net.Heal()
	c.leader()
	rev := c.readRev(minority[1])
	kvs := c.agree("/mp/", rev) // one state on all five: an unknown write is on all or none
	got := checkCreates(t, append(outs, minorOut...), kvs)
	if got.acked != len(outs) {
		t.Errorf("got %d acknowledged writes, want %d", got.acked, len(outs))
	}
	t.Logf("writes: %+v", got)
	ctx := ctxT(t, 10*time.Second)
	if _, err := c.node(old).Create(ctx, "/mp/after-heal", []byte("x")); err != nil {
		t.Fatalf("Create through healed %s: %v", old, err)
	}
}

// TestClusterSnapshotInstall stops a follower while the leader writes enough
// to snapshot and truncate its log past the follower's last entry. Restarted,
// the follower can only catch up by installing the leader's snapshot, and
// then holds every key.
func TestClusterSnapshotInstall(t *testing.T) {
	const trailing = 32
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 64
		cfg.TrailingLogs = trailing
		cfg.SnapshotInterval = 100 * time.Millisecond
	})
	leader := c.leader()
	lagger := c.followers(leader)[0]
	outs := createN(t, c.node(leader), "/snap/a/", 5)
	c.waitApplied(outs[len(outs)-1].rev)
	st, err := c.node(lagger).Status(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	c.stop(lagger)

	// A snapshot past st.LastIndex+trailing truncates the leader's log
	// beyond the lagger's last entry. Waiting for the snapshot after it makes
	// sure that truncation, which follows the snapshot, is done.
	beyond := st.LastIndex + trailing
	for batch := 0; ; batch++ {
		outs = append(outs, createN(t, c.node(leader), fmt.Sprintf("/snap/b%02d/", batch), 64)...)
		var past []uint64
		for _, idx := range c.snapshotIndexes(leader) {
			if idx > beyond {
				past = append(past, idx)
			}
		}
		if len(past) >= 2 {
			t.Logf("leader %s has snapshots %v; %s stopped at index %d", leader, past, lagger, st.LastIndex)
			break
		}
		if batch == 40 {
			t.Fatalf("leader %s has snapshots %v after %d writes, want two past index %d", leader, c.snapshotIndexes(leader), len(outs), beyond)
		}
	}
	leaderSnaps := c.snapshotIndexes(leader)

	c.restart(lagger)
	rev := c.readRev(leader)
	kvs := c.agree("/snap/", rev)
	if got := checkCreates(t, outs, kvs); got.acked != len(outs) {
		t.Errorf("got %d acknowledged writes, want %d", got.acked, len(outs))
	}
	// A replica restored from a snapshot keeps no watch history before the
	// snapshot's revision; one that replayed the log would have it all. The
	// revision may be below the snapshot's index: Raft's no-op and barrier
	// entries never reach the FSM.
	_, err = c.node(lagger).Watch(ctxT(t, time.Second), "/snap/", st.AppliedIndex)
	var ce *CompactedError
	if !errors.As(err, &ce) || uint64(ce.Compacted) <= beyond {
		t.Fatalf("Watch on %s from %d: got %v, want a CompactedError past index %d, where the leader's log starts", lagger, st.AppliedIndex, err, beyond)
	}
	leaderSnaps = append(leaderSnaps, c.snapshotIndexes(leader)...)
	lagSnaps := c.snapshotIndexes(lagger)
	if !slices.ContainsFunc(lagSnaps, func(i uint64) bool { return i >= uint64(ce.Compacted) && slices.Contains(leaderSnaps, i) }) {
		t.Errorf("%s has snapshots %v, want among them the one it installed: one of the leader's %v, at or past %d", lagger, lagSnaps, leaderSnaps, ce.Compacted)
	}
}

// TestClusterFullRestart stops every node and starts them all again from
// their data directories: they elect a leader, every key comes back with the
// same revisions on every node, and writes work again.
func TestClusterFullRestart(t *testing.T) {
	tests := []struct {
		name string
		tune func(*Config)
		// snapshot waits for every node to have a snapshot before the stop.
		snapshot bool
	}{
		{name: "log replay"},
		{name: "snapshot and log", snapshot: true, tune: func(cfg *Config) {
			cfg.SnapshotThreshold = 32
			cfg.TrailingLogs = 16
			cfg.SnapshotInterval = 100 * time.Millisecond
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, 3, tt.tune)
			leader := c.leader()
			ctx := ctxT(t, 30*time.Second)
			s := c.node(leader)
			outs := createN(t, s, "/fr/", 60)
			// Give the state some history: updates and deletes too.
			for i, o := range outs[:20] {
				if i%2 == 0 {
					if _, err := s.Update(ctx, o.key, []byte("updated"), o.rev); err != nil {
						t.Fatalf("Update(%s): %v", o.key, err)
					}
				} else if _, _, err := s.Delete(ctx, o.key, o.rev); err != nil {
					t.Fatalf("Delete(%s): %v", o.key, err)
				}
			}
			rev := c.readRev(leader)
			before := c.agree("/fr/", rev)
			if len(before) != 50 {
				t.Fatalf("got %d keys before the restart, want 50", len(before))
			}
			if tt.snapshot {
				waitFor(t, 20*time.Second, "a snapshot on every node", func() error {
					for _, id := range c.ids() {
						if len(c.snapshotIndexes(id)) == 0 {
							return fmt.Errorf("no snapshot on %s", id)
						}
					}
					return nil
				})
			}

			ids := c.ids()
			for _, id := range ids {
				c.stop(id)
			}
			for _, id := range ids {
				c.restart(id)
			}
			t.Logf("restarted %v, leader %s", ids, c.leader())
			if d := diffKVs(c.agree("/fr/", rev), before); d != "" {
				t.Fatalf("after the restart: %s", d)
			}
			if tt.snapshot {
				// Each node started from its snapshot: no watch history before it.
				for _, id := range ids {
					var ce *CompactedError
					if _, err := c.node(id).Watch(ctx, "/fr/", 1); !errors.As(err, &ce) {
						t.Errorf("Watch on %s from 1 after restoring a snapshot: got %v, want a CompactedError", id, err)
					}
				}
			}
			for _, id := range ids {
				if _, err := c.node(id).Create(ctx, "/fr/after/"+id, []byte(id)); err != nil {
					t.Fatalf("Create through %s after the restart: %v", id, err)
				}
			}
		})
	}
}

// TestClusterJoinRemove admits a fourth node through a follower, checks it
// receives all data, removes it, and checks the cluster is back to three
// voters: with the fourth gone and one more follower stopped, the remaining
// two are a majority and still accept writes.
func TestClusterJoinRemove(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.leader()
	fs := c.followers(leader)
	outs := createN(t, c.node(leader), "/jr/", 30)

	c.start("n4", false, []string{fs[0]})
	c.waitMembers(4)
	outs = append(outs, createN(t, c.node("n4"), "/jr/n4/", 5)...)
	rev := c.readRev("n4")
	if got := checkCreates(t, outs, c.agree("/jr/", rev)); got.acked != len(outs) {
		t.Errorf("got %d acknowledged writes, want %d", got.acked, len(outs))
	}

	ctx := ctxT(t, 20*time.Second)
	if err := c.node(fs[1]).Remove(ctx, "n4"); err != nil {
		t.Fatalf("Remove(n4) through %s: %v", fs[1], err)
	}
	three := []string{leader, fs[0], fs[1]}
	waitFor(t, 15*time.Second, "n4 gone from every node's configuration", func() error {
		for _, id := range three {
			st, err := c.node(id).Status(ctx)
			if err != nil {
				return err
			}
			var servers []string
			for _, srv := range st.Servers {
				servers = append(servers, fmt.Sprintf("%s voter=%v", srv.ID, srv.Voter))
			}
			slices.Sort(servers)
			if want := []string{"n1 voter=true", "n2 voter=true", "n3 voter=true"}; !slices.Equal(servers, want) {
				return fmt.Errorf("%s has servers %v, want %v", id, servers, want)
			}
		}
		return nil
	})
	c.stop("n4")
	c.stop(fs[0])
	wctx := ctxT(t, 5*time.Second)
	if _, err := c.node(fs[1]).Create(wctx, "/jr/after-remove", []byte("x")); err != nil {
		t.Fatalf("Create with %s and %s up: got %v, want success from a majority of three", leader, fs[1], err)
	}
}

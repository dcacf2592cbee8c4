package raftstore

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestBasicOperations exercises every operation through a follower and the
// leader of a 3-node cluster.
func TestBasicOperations(t *testing.T) {
	c := newCluster(t, 3, nil)
	leader := c.leader()
	var follower string
	for _, id := range c.ids() {
		if id != leader {
			follower = id
			break
		}
	}
	for _, id := range []string{follower, leader} {
		t.Run(map[bool]string{true: "leader", false: "follower"}[id == leader], func(t *testing.T) {
			s := c.node(id)
			ctx := ctxT(t, 20*time.Second)
			p := "/" + id + "/"
			rev, err := s.Create(ctx, p+"a", []byte("1"))
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if _, err := s.Create(ctx, p+"a", []byte("x")); !errors.Is(err, ErrKeyExists) {
				t.Fatalf("second Create: got %v, want ErrKeyExists", err)
			}
			kv, err := s.Update(ctx, p+"a", []byte("2"), rev)
			if err != nil || kv.Version != 2 || kv.CreateRevision != rev || kv.ModRevision <= rev {
				t.Fatalf("Update = %+v, %v; want version 2 created at %d", kv, err, rev)
			}
			var ce *ConflictError
			if _, err := s.Update(ctx, p+"a", []byte("3"), rev); !errors.As(err, &ce) || ce.Current.ModRevision != kv.ModRevision {
				t.Fatalf("stale Update: got %v, want ConflictError with current rev %d", err, kv.ModRevision)
			}
			if _, err := s.Update(ctx, p+"nope", []byte("3"), 0); !errors.Is(err, ErrKeyNotFound) {
				t.Fatalf("Update of missing key: got %v, want ErrKeyNotFound", err)
			}
			got, _, err := s.Get(ctx, p+"a", ReadOptions{})
			if err != nil || got == nil || string(got.Value) != "2" {
				t.Fatalf("Get = %v, %v; want value 2", got, err)
			}
			old, _, err := s.Get(ctx, p+"a", ReadOptions{Revision: rev})
			if err != nil || old == nil || string(old.Value) != "1" {
				t.Fatalf("Get at rev %d = %v, %v; want value 1", rev, old, err)
			}
			for i := range 5 {
				if _, err := s.Create(ctx, fmt.Sprintf("%sl/%d", p, i), []byte("v")); err != nil {
					t.Fatal(err)
				}
			}
			page, err := s.List(ctx, p+"l/", ListOptions{Limit: 2})
			if err != nil || len(page.KVs) != 2 || !page.More {
				t.Fatalf("List page 1 = %+v, %v; want 2 keys and more", page, err)
			}
			// Writes after the first page do not show in later pages.
			if _, err := s.Create(ctx, p+"l/9", []byte("late")); err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, kv := range page.KVs {
				keys = append(keys, kv.Key)
			}
			for page.More {
				page, err = s.List(ctx, p+"l/", ListOptions{Limit: 2, After: keys[len(keys)-1], ReadOptions: ReadOptions{Revision: page.Revision}})
				if err != nil {
					t.Fatal(err)
				}
				for _, kv := range page.KVs {
					keys = append(keys, kv.Key)
				}
			}
			if want := fmt.Sprint([]string{p + "l/0", p + "l/1", p + "l/2", p + "l/3", p + "l/4"}); fmt.Sprint(keys) != want {
				t.Fatalf("paged keys %v, want %v", keys, want)
			}
			n, _, err := s.Count(ctx, p+"l/", ReadOptions{})
			if err != nil || n != 6 {
				t.Fatalf("Count = %d, %v; want 6", n, err)
			}
			prev, _, err := s.Delete(ctx, p+"a", 0)
			if err != nil || string(prev.Value) != "2" {
				t.Fatalf("Delete = %+v, %v; want previous value 2", prev, err)
			}
			if _, _, err := s.Delete(ctx, p+"a", 0); !errors.Is(err, ErrKeyNotFound) {
				t.Fatalf("second Delete: got %v, want ErrKeyNotFound", err)
			}
			if _, err := s.Txn(ctx, &Txn{Success: []Request{{Type: RequestPut, Key: "k"}, {Type: RequestPut, Key: "k"}}}); !errors.Is(err, ErrDuplicateKey) {
				t.Fatalf("duplicate-key Txn: got %v, want ErrDuplicateKey", err)
			}
		})
	}
}

// TestRemoteClient drives a cluster from a Client through every endpoint.
func TestRemoteClient(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := ctxT(t, 20*time.Second)
	cl, err := NewClient(ClientConfig{Endpoints: c.ids(), Network: c.net.Node("client")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for i, id := range c.ids() {
		e := cl.Endpoint(i)
		key := "/client/" + id
		rev, err := e.Create(ctx, key, []byte(id))
		if err != nil {
			t.Fatalf("Create via %s: %v", id, err)
		}
		if _, err := e.Create(ctx, key, []byte(id)); !errors.Is(err, ErrKeyExists) {
			t.Fatalf("second Create via %s: got %v, want ErrKeyExists", id, err)
		}
		kv, _, err := e.Get(ctx, key, ReadOptions{})
		if err != nil || kv == nil || string(kv.Value) != id || kv.ModRevision != rev {
			t.Fatalf("Get via %s = %+v, %v; want %s at %d", id, kv, err, id, rev)
		}
		st, err := e.Status(ctx)
		if err != nil || st.ID != id || len(st.Servers) != 3 {
			t.Fatalf("Status via %s = %+v, %v", id, st, err)
		}
	}
	res, err := cl.List(ctx, "/client/", ListOptions{})
	if err != nil || len(res.KVs) != 3 {
		t.Fatalf("List = %+v, %v; want 3 keys", res, err)
	}
	n, _, err := cl.Count(ctx, "/client/", ReadOptions{})
	if err != nil || n != 3 {
		t.Fatalf("Count = %d, %v; want 3", n, err)
	}
	var ce *CompactedError
	if err := c.node(c.leader()).Compact(ctx, res.Revision); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	if _, _, err := cl.Get(ctx, "/client/n1", ReadOptions{Revision: res.Revision - 1}); !errors.As(err, &ce) {
		t.Fatalf("Get below compaction: got %v, want CompactedError", err)
	}
}

// TestInvalidTxnRejected checks that malformed txns are refused before they
// reach the log, locally and remotely, and that the store stays healthy.
func TestInvalidTxnRejected(t *testing.T) {
	c := newCluster(t, 1, nil)
	ctx := ctxT(t, 10*time.Second)
	s := c.node("n1")
	cl, err := NewClient(ClientConfig{Endpoints: c.ids(), Network: c.net.Node("client")})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tc := range []struct {
		name string
		txn  *Txn
		want error
	}{
		{"unknown target", &Txn{Compares: []Compare{{Key: "k", Target: 9, Result: Equal}}}, ErrInvalidTxn},
		{"unknown result", &Txn{Compares: []Compare{{Key: "k", Target: TargetVersion, Result: 0}}}, ErrInvalidTxn},
		{"unknown request", &Txn{Success: []Request{{Type: 7, Key: "k"}}}, ErrInvalidTxn},
		{"duplicate key", &Txn{Failure: []Request{{Type: RequestPut, Key: "k"}, {Type: RequestDelete, Key: "k"}}}, ErrDuplicateKey},
	} {
		before := s.Revision()
		for name, txner := range map[string]txner{"store": s, "client": cl} {
			if _, err := txner.Txn(ctx, tc.txn); !errors.Is(err, tc.want) {
				t.Errorf("%s via %s: got %v, want %v", tc.name, name, err, tc.want)
			}
		}
		if after := s.Revision(); after != before {
			t.Errorf("%s: revision moved from %d to %d, want nothing logged", tc.name, before, after)
		}
	}
	if _, err := s.Create(ctx, "/still/works", nil); err != nil {
		t.Fatalf("Create after rejected txns: %v", err)
	}
}

// TestReadIndexIsCommitIndex is the regression test of a stale read: a
// follower may apply a committed write before the leader's state machine
// does. A linearizable read anywhere after the write became visible must see
// it, so the read index must be the leader's commit index, not what the
// leader has applied.
func TestReadIndexIsCommitIndex(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := ctxT(t, 20*time.Second)
	leader := c.leader()
	followers := c.followers(leader)
	ls, f1, f2 := c.node(leader), c.node(followers[0]), c.node(followers[1])
	if _, err := ls.Create(ctx, "/r/k", []byte("old")); err != nil {
		t.Fatal(err)
	}
	c.waitApplied(ls.Revision())
	// A first linearizable read makes the leader commit its barrier of the
	// term, which needs its state machine.
	if _, _, err := f2.Get(ctx, "/r/k", ReadOptions{}); err != nil {
		t.Fatal(err)
	}

	// Hold the state machines of the leader and of f2: the next write
	// commits and reaches f1's state machine while theirs lag behind.
	type gate struct {
		f    *fsm
		ch   chan struct{}
		done bool
	}
	hold := func(f *fsm) *gate {
		g := &gate{f: f, ch: make(chan struct{})}
		wait := func() { <-g.ch }
		f.beforeApply.Store(&wait)
		return g
	}
	release := func(g *gate) {
		if !g.done {
			g.done = true
			g.f.beforeApply.Store(nil)
			close(g.ch)
		}
	}
	lg, f2g := hold(ls.fsm), hold(f2.fsm)
	defer release(lg)
	defer release(f2g)
	write := make(chan error, 1)
	go func() {
		_, err := ls.Update(ctx, "/r/k", []byte("new"), 0)
		write <- err
	}()
	waitFor(t, 10*time.Second, "the write to reach a follower", func() error {
		kv, _, err := f1.Get(ctx, "/r/k", ReadOptions{Stale: true})
		if err != nil || kv == nil || string(kv.Value) != "new" {
			return fmt.Errorf("follower reads %v, %v", kv, err)
		}
		return nil
	})
	// The write is visible on f1. A linearizable read on f2 must see it:
	// it has to wait for f2's state machine. A read that answers while f2
	// is still held answered from stale state.
	read := make(chan *KeyValue, 1)
	go func() {
		kv, _, _ := f2.Get(ctx, "/r/k", ReadOptions{})
		read <- kv
	}()
	select {
	case kv := <-read:
		t.Fatalf("linearizable read on a lagging follower answered %v before catching up; want it to wait for the new value", kv)
	case <-time.After(300 * time.Millisecond):
	}
	release(f2g)
	if kv := <-read; kv == nil || string(kv.Value) != "new" {
		t.Fatalf("linearizable read on the other follower = %v; want the new value", kv)
	}
	// On the leader the read waits for its own state machine.
	go func() {
		kv, _, _ := ls.Get(ctx, "/r/k", ReadOptions{})
		read <- kv
	}()
	release(lg)
	if kv := <-read; kv == nil || string(kv.Value) != "new" {
		t.Fatalf("linearizable read on the leader = %v; want the new value", kv)
	}
	if err := <-write; err != nil {
		t.Fatalf("write: %v", err)
	}
}

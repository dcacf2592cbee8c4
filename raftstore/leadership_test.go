package raftstore

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// leadershipLog records what one node's Leadership channel delivered, and
// the revision the node had applied when each true arrived.
type leadershipLog struct {
	mu     sync.Mutex
	values []bool
	revs   []int64 // applied revision at each true
	closed bool
}

func followLeadership(t *testing.T, s *Store) *leadershipLog {
	t.Helper()
	l := &leadershipLog{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	ch := s.Leadership(ctx)
	go func() {
		defer close(done)
		for v := range ch {
			rev := s.fsm.appliedRev()
			l.mu.Lock()
			l.values = append(l.values, v)
			if v {
				l.revs = append(l.revs, rev)
			}
			l.mu.Unlock()
		}
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
	}()
	return l
}

func (l *leadershipLog) snapshot() (values []bool, revs []int64, closed bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.values), slices.Clone(l.revs), l.closed
}

// leading reports whether the last value delivered was true.
func (l *leadershipLog) leading() bool {
	v, _, _ := l.snapshot()
	return len(v) > 0 && v[len(v)-1]
}

// checkAlternates fails the test unless values alternate, starting with true.
func checkAlternates(t *testing.T, id string, values []bool) {
	t.Helper()
	for i, v := range values {
		if v != (i%2 == 0) {
			t.Errorf("node %s: leadership values %v: value %d is %v, want alternating values starting with true", id, values, i, v)
			return
		}
	}
}

// TestLeadershipFollowsLeader follows Leadership on every node of three
// while the leader is killed and then cut off: exactly the node that leads
// reports true, having applied every write acknowledged before it (even
// when its state machine lags behind its log); the
// killed leader reports false and closes its channel; the cut-off one
// reports false and never true again while it is cut off.
func TestLeadershipFollowsLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	logs := map[string]*leadershipLog{}
	for _, id := range c.ids() {
		logs[id] = followLeadership(t, c.node(id))
	}
	// onlyLeader waits until leader, and no other running node, reports true.
	onlyLeader := func(leader string) {
		t.Helper()
		waitFor(t, 15*time.Second, leader+" alone reporting leadership", func() error {
			for _, id := range c.ids() {
				if got, want := logs[id].leading(), id == leader; got != want {
					return fmt.Errorf("node %s reports leading=%v, want %v", id, got, want)
				}
			}
			return nil
		})
	}
	old := c.leader()
	onlyLeader(old)

	// The followers' state machines stop applying: the entries written now
	// commit, but a new leader has them in its log only, until released.
	createN(t, c.node(old), "/lead/before/", 5)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	hold := func() { <-release }
	for _, id := range c.followers(old) {
		c.node(id).fsm.beforeApply.Store(&hold)
	}
	outs := createN(t, c.node(old), "/lead/held/", 20)
	last := outs[len(outs)-1].rev
	c.stop(old)
	next := c.leader(c.followers(old)...)
	if logs[next].leading() {
		t.Errorf("new leader %s reported leading before applying the entries of the old term", next)
	}
	unblock()
	onlyLeader(next)
	waitFor(t, 5*time.Second, old+"'s channel closed", func() error {
		if _, _, closed := logs[old].snapshot(); !closed {
			return fmt.Errorf("still open")
		}
		return nil
	})
	values, _, _ := logs[old].snapshot()
	if want := []bool{true, false}; !slices.Equal(values, want) {
		t.Errorf("killed leader %s: got values %v, want %v", old, values, want)
	}
	_, revs, _ := logs[next].snapshot()
	if len(revs) != 1 || revs[0] < last {
		t.Errorf("new leader %s: applied revisions when it reported leading %v, want one at or after %d (the last acknowledged write)", next, revs, last)
	}

	// Cut the leader off once the restarted node has caught up: the other two
	// elect one of them; the cut-off leader steps down and says so.
	c.restart(old)
	logs[old] = followLeadership(t, c.node(old))
	c.waitApplied(c.readRev(next))
	c.net.Isolate(next)
	third := ""
	waitFor(t, 15*time.Second, "a leader among the connected nodes", func() error {
		for _, id := range c.followers(next) {
			if logs[id].leading() {
				third = id
				return nil
			}
		}
		return fmt.Errorf("none reports leading")
	})
	waitFor(t, 15*time.Second, next+" reporting it lost leadership", func() error {
		if logs[next].leading() {
			return fmt.Errorf("still reports leading")
		}
		return nil
	})
	c.net.Heal()
	c.leader()
	onlyLeader(c.leader())
	t.Logf("leaders: %s, killed; %s, cut off; %s", old, next, third)
	for id, l := range logs {
		values, _, _ := l.snapshot()
		checkAlternates(t, id, values)
	}
}

// TestLeadershipContextEnds: a subscriber whose context ends gets its
// channel closed, without a value it would have to receive.
func TestLeadershipContextEnds(t *testing.T) {
	c := newCluster(t, 1, nil)
	s := c.node(c.leader())
	ctx, cancel := context.WithCancel(t.Context())
	ch := s.Leadership(ctx)
	select {
	case v := <-ch:
		if !v {
			t.Fatalf("first value: got false, want true")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no leadership reported by a single-node cluster within 10s")
	}
	cancel()
	select {
	case v, ok := <-ch:
		if ok {
			t.Fatalf("after the context ended: got %v, want the channel closed", v)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("channel not closed within 10s of its context ending")
	}
}

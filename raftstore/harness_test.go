package raftstore

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/raftstore/internal/faultnet"
)

// cluster is an in-process cluster over real loopback TCP with faults on
// demand. Every node keeps its data directory across restarts.
type cluster struct {
	t     *testing.T
	net   *faultnet.Net
	dir   string
	tune  func(*Config)
	mu    sync.Mutex
	nodes map[string]*node
}

type node struct {
	id     string
	store  *Store
	cancel context.CancelFunc
	done   chan error
}

func testConfig(id, dir string) Config {
	cfg := DefaultConfig()
	cfg.NodeID = id
	cfg.DataDir = dir
	cfg.BindAddr = id
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	cfg.CommitTimeout = 5 * time.Millisecond
	cfg.RequestTimeout = 5 * time.Second
	cfg.CompactInterval = 0
	cfg.Logger = testLogger()
	return cfg
}

func testLogger() *slog.Logger {
	if os.Getenv("RAFTSTORE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// newCluster starts n nodes named n1..nN: n1 bootstraps, the others join it.
// tune, if not nil, adjusts every node's config.
func newCluster(t *testing.T, n int, tune func(*Config)) *cluster {
	t.Helper()
	c := &cluster{t: t, net: faultnet.New(), dir: t.TempDir(), tune: tune, nodes: map[string]*node{}}
	t.Cleanup(c.stopAll)
	c.start("n1", true, nil)
	for i := 2; i <= n; i++ {
		c.start(fmt.Sprintf("n%d", i), false, []string{"n1"})
	}
	c.waitMembers(n)
	return c
}

func (c *cluster) start(id string, bootstrap bool, join []string) *node {
	c.t.Helper()
	cfg := testConfig(id, filepath.Join(c.dir, id))
	cfg.Network = c.net.Node(id)
	cfg.Bootstrap = bootstrap
	cfg.Join = join
	if c.tune != nil {
		c.tune(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		c.t.Fatalf("New(%s): %v", id, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd := &node{id: id, store: s, cancel: cancel, done: make(chan error, 1)}
	go func() { nd.done <- s.Run(ctx) }()
	select {
	case <-s.ready:
	case err := <-nd.done:
		cancel()
		c.t.Fatalf("node %s stopped at start: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = nd
	c.mu.Unlock()
	return nd
}

// stop shuts node id down and waits for it.
func (c *cluster) stop(id string) {
	c.t.Helper()
	c.mu.Lock()
	nd := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if nd == nil {
		return
	}
	nd.cancel()
	select {
	case err := <-nd.done:
		if err != nil {
			c.t.Errorf("node %s: Run: %v", id, err)
		}
	case <-time.After(30 * time.Second):
		c.t.Fatalf("node %s did not stop within 30s", id)
	}
}

// restart starts a stopped node again from its data directory.
func (c *cluster) restart(id string) *node {
	c.t.Helper()
	return c.start(id, false, nil)
}

func (c *cluster) stopAll() {
	for _, id := range c.ids() {
		c.stop(id)
	}
}

func (c *cluster) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ids []string
	for id := range c.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (c *cluster) node(id string) *Store {
	c.mu.Lock()
	defer c.mu.Unlock()
	if nd := c.nodes[id]; nd != nil {
		return nd.store
	}
	c.t.Fatalf("node %s is not running", id)
	return nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leader waits until the running nodes among ids (all running nodes when
// empty) agree on one leader among them, and returns its ID.
func (c *cluster) leader(ids ...string) string {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.ids()
	}
	var leader string
	waitFor(c.t, 15*time.Second, "a leader", func() error {
		leader = ""
		for _, id := range ids {
			st, err := c.node(id).Status(context.Background())
			if err != nil {
				return err
			}
			if st.LeaderID == "" {
				return fmt.Errorf("%s sees no leader", id)
			}
			if leader != "" && st.LeaderID != leader {
				return fmt.Errorf("%s sees leader %s, others %s", id, st.LeaderID, leader)
			}
			leader = st.LeaderID
		}
		for _, id := range ids {
			if id == leader {
				return nil
			}
		}
		return fmt.Errorf("leader %s is not among %v", leader, ids)
	})
	return leader
}

// waitMembers waits until the leader's configuration has n voters.
func (c *cluster) waitMembers(n int) {
	c.t.Helper()
	waitFor(c.t, 15*time.Second, fmt.Sprintf("%d voters", n), func() error {
		st, err := c.node(c.leader()).Status(context.Background())
		if err != nil {
			return err
		}
		if len(st.Servers) != n {
			return fmt.Errorf("%d servers: %v", len(st.Servers), st.Servers)
		}
		return nil
	})
}

// waitApplied waits until every running node has applied rev.
func (c *cluster) waitApplied(rev int64) {
	c.t.Helper()
	for _, id := range c.ids() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := c.node(id).fsm.waitApplied(ctx, rev)
		cancel()
		if err != nil {
			c.t.Fatalf("node %s did not apply revision %d: %v", id, rev, err)
		}
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// stores returns the running stores of ids.
func (c *cluster) stores(ids ...string) []*Store {
	c.t.Helper()
	out := make([]*Store, len(ids))
	for i, id := range ids {
		out[i] = c.node(id)
	}
	return out
}

// followers returns the running nodes other than leader, in ID order.
func (c *cluster) followers(leader string) []string {
	var out []string
	for _, id := range c.ids() {
		if id != leader {
			out = append(out, id)
		}
	}
	return out
}

// readRev returns a revision at or after every write acknowledged before the
// call, from a linearizable read through node id.
func (c *cluster) readRev(id string) int64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, rev, err := c.node(id).Get(ctx, "/no such key", ReadOptions{})
	if err != nil {
		c.t.Fatalf("linearizable read through %s: %v", id, err)
	}
	return rev
}

// agree waits until every running node has applied rev, then reads the keys
// under prefix as of rev from each node's own replica. It fails the test
// unless every replica holds exactly the same versions, and returns them.
func (c *cluster) agree(prefix string, rev int64) []KeyValue {
	c.t.Helper()
	c.waitApplied(rev)
	var (
		want   []KeyValue
		wantID string
	)
	for _, id := range c.ids() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		res, err := c.node(id).List(ctx, prefix, ListOptions{ReadOptions: ReadOptions{Revision: rev, Stale: true}})
		cancel()
		if err != nil {
			c.t.Fatalf("node %s: List(%q) at revision %d: %v", id, prefix, rev, err)
		}
		if wantID == "" {
			want, wantID = res.KVs, id
			continue
		}
		if d := diffKVs(res.KVs, want); d != "" {
			c.t.Fatalf("at revision %d, node %s and node %s disagree on %q: %s", rev, id, wantID, prefix, d)
		}
	}
	return want
}

// kvString renders every field of a version, for comparisons and messages.
func kvString(kv *KeyValue) string {
	if kv == nil {
		return "<none>"
	}
	return fmt.Sprintf("%s=%q create=%d mod=%d ver=%d", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
}

// diffKVs describes the first difference between got and want, "" if none.
func diffKVs(got, want []KeyValue) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		var g, w *KeyValue
		if i < len(got) {
			g = &got[i]
		}
		if i < len(want) {
			w = &want[i]
		}
		if kvString(g) != kvString(w) {
			return fmt.Sprintf("%d keys vs %d; key #%d: got %s, want %s", len(got), len(want), i, kvString(g), kvString(w))
		}
	}
	return ""
}

// snapshotIndexes returns the log indexes of the completed snapshots in node
// id's data directory, ascending. The node need not be running.
func (c *cluster) snapshotIndexes(id string) []uint64 {
	c.t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.dir, id, "snapshots"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		c.t.Fatalf("read snapshots of %s: %v", id, err)
	}
	var out []uint64
	for _, e := range entries {
		// Completed snapshots are named term-index-millis; ".tmp" ones are in progress.
		var term, index, ms uint64
		if !e.IsDir() || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if _, err := fmt.Sscanf(e.Name(), "%d-%d-%d", &term, &index, &ms); err != nil {
			c.t.Fatalf("snapshot directory %q of %s: %v", e.Name(), id, err)
		}
		out = append(out, index)
	}
	slices.Sort(out)
	return out
}

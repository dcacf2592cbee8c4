package e2e

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/raftstore"
)

// The store's acceptance tests with real processes: three `skiff server`
// masters on loopback take writes from concurrent clients while masters are
// killed with SIGKILL and restarted; afterwards every master must hold every
// acknowledged write, no write that was reported as not applied, and nothing
// that was never written, and all masters must hold the same data.

const (
	// processWriters is how many goroutines write concurrently.
	processWriters = 8
	// writeTimeout bounds one Create.
	writeTimeout = 3 * time.Second
	// failoverTimeout bounds how long writes may stall after a kill or a
	// restart: an election takes a few seconds with skiff's default timeouts
	// (1s heartbeat and election timeout).
	failoverTimeout = 15 * time.Second
)

// TestProcessKillLeader kills the leader with SIGKILL during writes, checks
// that writes go on through a new leader, restarts the killed master from
// its data dir and waits until it has caught up; three rounds, each killing
// whichever master leads then. Afterwards every master must hold every
// acknowledged write.
func TestProcessKillLeader(t *testing.T) {
	ms := startMasters(t, 3)
	wl := startWrites(t, ms, "/e2e/kill-leader/", processWriters)
	wl.waitAcked(t, time.Time{}, 200, 15*time.Second, "acknowledged writes before the first kill")

	for round := 1; round <= 3; round++ {
		leader := ms.waitLeader(t)
		ms.kill(t, leader)
		killed := time.Now() // once reaped: no write started later can reach it
		t.Logf("round %d: killed leader %s with SIGKILL (%s)", round, ms.nodes[leader].name, wl.summary())

		// A write started after the kill can only be acknowledged by a new leader.
		first := wl.waitAcked(t, killed, 100, failoverTimeout, "acknowledged writes through a new leader")
		if next := ms.waitLeader(t); next == leader {
			t.Fatalf("round %d: got leader %s after killing it, want another", round, ms.nodes[next].name)
		}
		t.Logf("round %d: first write started after the kill was acknowledged %v after it", round, first.Sub(killed).Round(time.Millisecond))

		ms.restart(t, leader)
		restarted := time.Now()
		ms.waitCaughtUp(t, leader)
		wl.waitAcked(t, restarted, 100, failoverTimeout, "acknowledged writes after the restart")
		t.Logf("round %d: %s restarted and caught up in %v", round, ms.nodes[leader].name, time.Since(restarted).Round(time.Millisecond))
	}
	wl.stop(t)
	t.Logf("writes: %s", wl.summary())
	checkReplicas(t, ms, wl)
}

// TestProcessKillAll kills every master with SIGKILL during writes and
// restarts them all, twice, and checks that every acknowledged write
// survived on every master: Raft acknowledges a write only once a majority
// has it in its log on disk.
func TestProcessKillAll(t *testing.T) {
	ms := startMasters(t, 3)
	wl := startWrites(t, ms, "/e2e/kill-all/", processWriters)
	wl.waitAcked(t, time.Time{}, 300, 15*time.Second, "acknowledged writes before the first kill")

	for round := 1; round <= 2; round++ {
		ms.kill(t, 0, 1, 2)
		killed := time.Now()
		t.Logf("round %d: killed every master with SIGKILL (%s)", round, wl.summary())
		ms.restartAll(t)
		restarted := time.Now()
		ms.waitLeader(t)
		wl.waitAcked(t, restarted, 200, failoverTimeout, "acknowledged writes after the restart")
		t.Logf("round %d: every master ready %v after the kill; 200 writes acknowledged %v later",
			round, restarted.Sub(killed).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
	}
	wl.stop(t)
	t.Logf("writes: %s", wl.summary())
	checkReplicas(t, ms, wl)
}

// writeOutcome is what a Create's error says about whether it was applied.
type writeOutcome int

const (
	writePending    writeOutcome = iota // in flight: not returned yet
	writeAcked                          // nil: the key must exist with the value written
	writeUnknown                        // ErrUnknownOutcome: the key may or may not exist
	writeNotApplied                     // ErrNoLeader: the key must not exist
	writeKeyExists                      // ErrKeyExists on a key written once only: a bug
	writeOther                          // an error the client does not document for a write
)

func (o writeOutcome) String() string {
	return [...]string{"in flight", "acknowledged", "unknown outcome", "not applied", "key exists", "other error"}[o]
}

// write is one Create of a key that no other write touches.
type write struct {
	key, value string
	start, end time.Time
	outcome    writeOutcome
	rev        int64 // the revision Create returned, when acknowledged
	err        error
}

// writeLoad runs writers that each Create new keys under prefix until
// stopped, and records every attempt with its outcome.
type writeLoad struct {
	prefix string
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	writes  map[string]*write
	changed chan struct{} // closed and replaced when a write returns
}

// startWrites starts n writers. Writer w uses a client whose endpoint list
// starts at master w%3, so writes enter through followers as well as the
// leader and each client fails over on its own.
func startWrites(t *testing.T, ms *masters, prefix string, n int) *writeLoad {
	t.Helper()
	var clients []*raftstore.Client
	addrs := ms.peerAddrs()
	for i := range addrs {
		cl, err := raftstore.NewClient(raftstore.ClientConfig{
			Endpoints:      append(slices.Clone(addrs[i:]), addrs[:i]...),
			RequestTimeout: writeTimeout,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		clients = append(clients, cl)
	}
	ctx, cancel := context.WithCancel(t.Context())
	wl := &writeLoad{prefix: prefix, cancel: cancel, writes: map[string]*write{}, changed: make(chan struct{})}
	t.Cleanup(wl.halt)
	for w := range n {
		cl := clients[w%len(clients)]
		wl.wg.Add(1)
		go func() {
			defer wl.wg.Done()
			for seq := 0; ctx.Err() == nil; seq++ {
				wl.create(t.Context(), cl, fmt.Sprintf("%sw%02d/%07d", prefix, w, seq))
			}
		}()
	}
	return wl
}

// create writes key once and records the outcome. The write's own context
// is not the one that stops the writers, so stopping never turns a write in
// flight into an unknown outcome.
func (wl *writeLoad) create(ctx context.Context, cl *raftstore.Client, key string) {
	w := &write{key: key, start: time.Now()}
	w.value = fmt.Sprintf("%s@%d", key, w.start.UnixNano())
	wl.mu.Lock()
	wl.writes[key] = w
	wl.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	rev, err := cl.Create(ctx, key, []byte(w.value))
	cancel()

	wl.mu.Lock()
	defer wl.mu.Unlock()
	w.end, w.rev, w.err = time.Now(), rev, err
	switch {
	case err == nil:
		w.outcome = writeAcked
	case errors.Is(err, raftstore.ErrUnknownOutcome):
		w.outcome = writeUnknown
	case errors.Is(err, raftstore.ErrNoLeader):
		w.outcome = writeNotApplied
	case errors.Is(err, raftstore.ErrKeyExists):
		w.outcome = writeKeyExists
	default:
		w.outcome = writeOther
	}
	close(wl.changed)
	wl.changed = make(chan struct{})
}

// halt stops the writers and waits for them, without checks; for t.Cleanup.
func (wl *writeLoad) halt() {
	wl.cancel()
	wl.wg.Wait()
}

// stop stops the writers, waits until their last writes have returned, and
// fails the test for writes whose result breaks the client's contract.
func (wl *writeLoad) stop(t *testing.T) {
	t.Helper()
	wl.cancel()
	done := make(chan struct{})
	go func() {
		wl.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2*writeTimeout + 5*time.Second):
		t.Fatalf("writers did not return within %v of being stopped", 2*writeTimeout+5*time.Second)
	}
	wl.mu.Lock()
	defer wl.mu.Unlock()
	var bad []string
	for _, w := range wl.writes {
		switch w.outcome {
		case writeKeyExists:
			bad = append(bad, fmt.Sprintf("Create(%s): got ErrKeyExists for a key only this call wrote, want success or an error saying whether it applied", w.key))
		case writeOther:
			bad = append(bad, fmt.Sprintf("Create(%s): got error %v, want nil, ErrUnknownOutcome or ErrNoLeader", w.key, w.err))
		}
	}
	reportSome(t, "write results", bad)
}

// waitAcked waits until at least n writes that started after since have
// been acknowledged, and returns when the first of them was.
func (wl *writeLoad) waitAcked(t *testing.T, since time.Time, n int, timeout time.Duration, what string) time.Time {
	t.Helper()
	deadline := time.After(timeout)
	for {
		wl.mu.Lock()
		got, first, changed := 0, time.Time{}, wl.changed
		for _, w := range wl.writes {
			if w.outcome == writeAcked && w.start.After(since) {
				got++
				if first.IsZero() || w.end.Before(first) {
					first = w.end
				}
			}
		}
		wl.mu.Unlock()
		if got >= n {
			return first
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s: got %d, want %d (writes: %s)", timeout, what, got, n, wl.summary())
		case <-t.Context().Done():
			t.Fatalf("waiting for %s: %v", what, t.Context().Err())
		}
	}
}

// count returns how many writes have outcome o.
func (wl *writeLoad) count(o writeOutcome) int {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	n := 0
	for _, w := range wl.writes {
		if w.outcome == o {
			n++
		}
	}
	return n
}

// summary counts the writes by outcome.
func (wl *writeLoad) summary() string {
	var parts []string
	for o := writePending; o <= writeOther; o++ {
		if n := wl.count(o); n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	return strings.Join(parts, ", ")
}

// checkReplicas checks every master against the recorded writes, once the
// writers have stopped. First each master, through a linearizable list
// served from its own replica, must hold every acknowledged write with its
// value and revision, no write reported as not applied, and no key that was
// never written. Then, once all have applied the same index, stale lists of
// the three replicas must be identical.
func checkReplicas(t *testing.T, ms *masters, wl *writeLoad) {
	t.Helper()
	wl.mu.Lock()
	writes := wl.writes
	wl.mu.Unlock()
	cl, err := raftstore.NewClient(raftstore.ClientConfig{Endpoints: ms.peerAddrs(), RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	acked := 0
	for _, w := range writes {
		if w.outcome == writeAcked {
			acked++
		}
	}
	for i, m := range ms.nodes {
		kvs, _, err := listAll(t.Context(), cl.Endpoint(i), wl.prefix, false)
		if err != nil {
			t.Fatalf("%s: linearizable List(%s): %v", m.name, wl.prefix, err)
		}
		reportSome(t, m.name+" (linearizable read)", checkAgainstWrites(kvs, writes))
		unknownPresent, unknown := 0, 0
		for _, w := range writes {
			if w.outcome == writeUnknown {
				unknown++
				if _, ok := kvs[w.key]; ok {
					unknownPresent++
				}
			}
		}
		t.Logf("%s holds %d keys: all %d acknowledged writes checked, %d of %d unknown-outcome writes applied", m.name, len(kvs), acked, unknownPresent, unknown)
	}

	// Stale lists of the three replicas, read once all have applied the
	// same index, must be identical. The masters' own background entries
	// (a new leader's barriers, its controllers) may still land between
	// the reads: then the replicas are read again.
	type replica struct {
		kvs map[string]raftstore.KeyValue
		rev int64
	}
	var (
		replicas []replica
		applied  int64
	)
	waitUntil(t, 20*time.Second, "stale lists of every replica at one revision", func(ctx context.Context) error {
		applied = ms.waitSameApplied(t)
		replicas = replicas[:0]
		for i, m := range ms.nodes {
			kvs, rev, err := listAll(ctx, cl.Endpoint(i), wl.prefix, true)
			if err != nil {
				return fmt.Errorf("%s: stale List(%s): %w", m.name, wl.prefix, err)
			}
			if len(replicas) > 0 && rev != replicas[0].rev {
				return fmt.Errorf("%s: got stale list revision %d, want %d as on %s (all were at applied index %d)", m.name, rev, replicas[0].rev, ms.nodes[0].name, applied)
			}
			replicas = append(replicas, replica{kvs, rev})
		}
		return nil
	})
	for i, m := range ms.nodes {
		reportSome(t, m.name+" (stale read)", checkAgainstWrites(replicas[i].kvs, writes))
		if i > 0 {
			reportSome(t, fmt.Sprintf("%s vs %s (stale read at revision %d)", m.name, ms.nodes[0].name, replicas[0].rev), diffReplicas(replicas[i].kvs, replicas[0].kvs, ms.nodes[0].name))
		}
	}
}

// checkAgainstWrites returns the ways one replica's keys contradict the writes.
func checkAgainstWrites(kvs map[string]raftstore.KeyValue, writes map[string]*write) []string {
	var bad []string
	for _, w := range writes {
		kv, ok := kvs[w.key]
		switch w.outcome {
		case writeAcked:
			switch {
			case !ok:
				bad = append(bad, fmt.Sprintf("acknowledged write %s (revision %d, acknowledged at %s) is missing", w.key, w.rev, w.end.Format("15:04:05.000")))
			case string(kv.Value) != w.value || kv.ModRevision != w.rev || kv.CreateRevision != w.rev:
				bad = append(bad, fmt.Sprintf("%s: got value %q at create/mod revision %d/%d, want %q at revision %d as acknowledged", w.key, kv.Value, kv.CreateRevision, kv.ModRevision, w.value, w.rev))
			}
		case writeNotApplied:
			if ok {
				bad = append(bad, fmt.Sprintf("%s: got the key at revision %d, want it absent: its Create returned %v", w.key, kv.ModRevision, w.err))
			}
		}
	}
	for key, kv := range kvs {
		w := writes[key]
		switch {
		case w == nil:
			bad = append(bad, fmt.Sprintf("%s: got a key that was never written (value %q)", key, kv.Value))
		case string(kv.Value) != w.value:
			bad = append(bad, fmt.Sprintf("%s: got value %q, want %q, the only value written", key, kv.Value, w.value))
		}
	}
	slices.Sort(bad)
	return bad
}

// diffReplicas returns the differences of replica kvs from ref.
func diffReplicas(kvs, ref map[string]raftstore.KeyValue, refName string) []string {
	var bad []string
	for key, want := range ref {
		got, ok := kvs[key]
		switch {
		case !ok:
			bad = append(bad, fmt.Sprintf("%s: missing, %s has it at revision %d", key, refName, want.ModRevision))
		case string(got.Value) != string(want.Value) || got.CreateRevision != want.CreateRevision || got.ModRevision != want.ModRevision || got.Version != want.Version:
			bad = append(bad, fmt.Sprintf("%s: got %q create/mod/version %d/%d/%d, want %q %d/%d/%d as on %s",
				key, got.Value, got.CreateRevision, got.ModRevision, got.Version, want.Value, want.CreateRevision, want.ModRevision, want.Version, refName))
		}
	}
	for key, got := range kvs {
		if _, ok := ref[key]; !ok {
			bad = append(bad, fmt.Sprintf("%s: got the key at revision %d, %s does not have it", key, got.ModRevision, refName))
		}
	}
	slices.Sort(bad)
	return bad
}

// listAll lists every key under prefix from one endpoint in pages read at
// the first page's revision, and returns them by key with that revision.
func listAll(ctx context.Context, cl *raftstore.Client, prefix string, stale bool) (map[string]raftstore.KeyValue, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	kvs := map[string]raftstore.KeyValue{}
	opts := raftstore.ListOptions{ReadOptions: raftstore.ReadOptions{Stale: stale}, Limit: 1000}
	for {
		res, err := cl.List(ctx, prefix, opts)
		if err != nil {
			return nil, 0, err
		}
		if opts.Revision == 0 {
			opts.Revision = res.Revision
		} else if res.Revision != opts.Revision {
			return nil, 0, fmt.Errorf("page after %q: got revision %d, want %d", opts.After, res.Revision, opts.Revision)
		}
		for _, kv := range res.KVs {
			if _, dup := kvs[kv.Key]; dup || !strings.HasPrefix(kv.Key, prefix) {
				return nil, 0, fmt.Errorf("page after %q: got key %q again or outside the prefix", opts.After, kv.Key)
			}
			kvs[kv.Key] = kv
		}
		if !res.More {
			return kvs, opts.Revision, nil
		}
		if len(res.KVs) == 0 {
			return nil, 0, fmt.Errorf("page after %q: got no keys and More", opts.After)
		}
		opts.After = res.KVs[len(res.KVs)-1].Key
	}
}

// reportSome fails the test with the first problems of a list and their count.
func reportSome(t *testing.T, what string, problems []string) {
	t.Helper()
	if len(problems) == 0 {
		return
	}
	const show = 20
	more := ""
	if len(problems) > show {
		more = fmt.Sprintf("\n... and %d more", len(problems)-show)
	}
	t.Errorf("%s: %d problems:\n%s%s", what, len(problems), strings.Join(problems[:min(show, len(problems))], "\n"), more)
}

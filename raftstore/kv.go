package raftstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-sh/skiff/raftstore/internal/command"
	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
	"github.com/skiff-sh/skiff/raftstore/internal/rpc"
)

// ReadOptions choose the consistency and revision of a read.
type ReadOptions struct {
	// Revision reads the state as of that revision; 0 reads the latest.
	Revision int64
	// Stale reads the local replica without confirming with the leader:
	// fast, but it may miss the latest writes.
	Stale bool
}

// ListOptions page a List.
type ListOptions struct {
	ReadOptions
	// Limit caps the number of keys returned; 0 means no cap.
	Limit int
	// After resumes a paged list: only keys greater than After are returned.
	// Pass the Revision of the first page too, so every page reads one state.
	After string
}

// ListResult is one page of a List.
type ListResult struct {
	KVs []KeyValue
	// Revision is the revision the list was read at.
	Revision int64
	// More reports whether keys beyond the last returned one match.
	More bool
}

// Txn applies txn atomically through Raft and returns its result. A txn
// with an unknown compare target, compare result or request type fails with
// ErrInvalidTxn; one that writes a key twice in a branch with ErrDuplicateKey.
func (s *Store) Txn(ctx context.Context, txn *Txn) (*TxnResult, error) {
	if err := validateTxn(txn); err != nil {
		return nil, err
	}
	return s.propose(ctx, command.EncodeTxn(txn))
}

// validateTxn rejects what must never reach the log.
func validateTxn(txn *Txn) error {
	for i, c := range txn.Compares {
		if c.Target < TargetModRevision || c.Target > TargetVersion || c.Result < Equal || c.Result > Greater {
			return fmt.Errorf("%w: compare %d on %q: target %d, result %d", ErrInvalidTxn, i, c.Key, c.Target, c.Result)
		}
	}
	for _, branch := range [][]Request{txn.Success, txn.Failure} {
		seen := make(map[string]bool, len(branch))
		for i, r := range branch {
			if r.Type != RequestPut && r.Type != RequestDelete {
				return fmt.Errorf("%w: request %d on %q: type %d", ErrInvalidTxn, i, r.Key, r.Type)
			}
			if seen[r.Key] {
				return fmt.Errorf("%w: key %q", ErrDuplicateKey, r.Key)
			}
			seen[r.Key] = true
		}
	}
	return nil
}

// Create writes key only if it does not exist and returns the revision of the
// write, or ErrKeyExists.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	return create(ctx, s, key, value)
}

// Put writes key whether or not it exists and returns the revision of the
// write and the version it replaced (nil if none).
func (s *Store) Put(ctx context.Context, key string, value []byte) (int64, *KeyValue, error) {
	return put(ctx, s, key, value)
}

// Update replaces the value of an existing key. With expected > 0 it succeeds
// only if the key's mod revision is expected (compare-and-swap). It returns
// the new version, or ErrKeyNotFound, or a *ConflictError.
func (s *Store) Update(ctx context.Context, key string, value []byte, expected int64) (KeyValue, error) {
	return update(ctx, s, key, value, expected)
}

// Delete removes an existing key, with the same expected-revision rule as
// Update, and returns the deleted version and the revision of the delete.
func (s *Store) Delete(ctx context.Context, key string, expected int64) (KeyValue, int64, error) {
	return del(ctx, s, key, expected)
}

// txner is what the single-key writes are built on: a Store or a Client.
type txner interface {
	Txn(ctx context.Context, txn *Txn) (*TxnResult, error)
}

func create(ctx context.Context, t txner, key string, value []byte) (int64, error) {
	res, err := t.Txn(ctx, &Txn{
		Compares: []Compare{{Key: key, Target: TargetModRevision, Result: Equal, Value: 0}},
		Success:  []Request{{Type: RequestPut, Key: key, Value: value}},
	})
	if err != nil {
		return 0, err
	}
	if !res.Succeeded {
		return res.Revision, ErrKeyExists
	}
	return res.Revision, nil
}

func put(ctx context.Context, t txner, key string, value []byte) (int64, *KeyValue, error) {
	res, err := t.Txn(ctx, &Txn{Success: []Request{{Type: RequestPut, Key: key, Value: value}}})
	if err != nil {
		return 0, nil, err
	}
	return res.Revision, res.PrevKVs[0], nil
}

// casCompare is the condition of Update and Delete: the key exists, with mod
// revision expected unless expected is 0.
func casCompare(key string, expected int64) Compare {
	if expected == 0 {
		return Compare{Key: key, Target: TargetModRevision, Result: Greater, Value: 0}
	}
	return Compare{Key: key, Target: TargetModRevision, Result: Equal, Value: expected}
}

func casFailure(key string, expected int64, res *TxnResult) error {
	cur := res.Current[0]
	if cur == nil {
		return ErrKeyNotFound
	}
	return &ConflictError{Key: key, Expected: expected, Current: *cur}
}

func update(ctx context.Context, t txner, key string, value []byte, expected int64) (KeyValue, error) {
	res, err := t.Txn(ctx, &Txn{
		Compares: []Compare{casCompare(key, expected)},
		Success:  []Request{{Type: RequestPut, Key: key, Value: value}},
	})
	if err != nil {
		return KeyValue{}, err
	}
	if !res.Succeeded {
		return KeyValue{}, casFailure(key, expected, res)
	}
	prev := res.PrevKVs[0]
	return KeyValue{Key: key, Value: value, CreateRevision: prev.CreateRevision, ModRevision: res.Revision, Version: prev.Version + 1}, nil
}

func del(ctx context.Context, t txner, key string, expected int64) (KeyValue, int64, error) {
	res, err := t.Txn(ctx, &Txn{
		Compares: []Compare{casCompare(key, expected)},
		Success:  []Request{{Type: RequestDelete, Key: key}},
	})
	if err != nil {
		return KeyValue{}, 0, err
	}
	if !res.Succeeded {
		return KeyValue{}, 0, casFailure(key, expected, res)
	}
	return *res.PrevKVs[0], res.Revision, nil
}

// Compact drops the history at and below rev across the cluster.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	_, err := s.propose(ctx, command.EncodeCompact(mvcc.Compact{Revision: rev}))
	return err
}

// propose commits one encoded entry through the leader and returns its result.
// Errors: ErrNoLeader (not applied), ErrUnknownOutcome, or the rule the FSM
// rejected the entry with.
func (s *Store) propose(ctx context.Context, entry []byte) (res *TxnResult, err error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	start := time.Now()
	defer func() { s.metrics.observeWrite(time.Since(start), err) }()
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for backoff := 2 * time.Millisecond; ; backoff = min(2*backoff, 100*time.Millisecond) {
		res, err := s.proposeOnce(ctx, entry)
		var nl *notLeaderError
		if !errors.As(err, &nl) && !errors.Is(err, rpc.ErrNotSent) && !errors.Is(err, errRetry) {
			return res, err
		}
		// Nothing was applied: wait for a leader and try again.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %v (last: %v)", ErrNoLeader, ctx.Err(), err)
		case <-s.stopped:
			return nil, ErrStopped
		case <-time.After(backoff):
		}
	}
}

// errRetry marks a local failure that happened before the entry was appended.
var errRetry = errors.New("raftstore: not appended")

func (s *Store) proposeOnce(ctx context.Context, entry []byte) (*TxnResult, error) {
	if s.raft.State() == raft.Leader {
		return s.applyLocal(ctx, entry)
	}
	leader, _ := s.raft.LeaderWithID()
	if leader == "" {
		return nil, errRetry
	}
	s.metrics.forwarded.Add(1)
	resp, err := s.peer(string(leader)).Call(ctx, methodPropose, entry)
	if err != nil {
		var re *rpc.RemoteError
		switch {
		case errors.As(err, &re):
			return nil, decodeError(re.Payload)
		case errors.Is(err, rpc.ErrNotSent):
			return nil, err
		}
		return nil, fmt.Errorf("%w: forwarding to %s: %v", ErrUnknownOutcome, leader, err)
	}
	return command.DecodeTxnResult(resp)
}

// applyLocal appends entry on this node, which believes it is the leader,
// and waits for it to be applied.
func (s *Store) applyLocal(ctx context.Context, entry []byte) (*TxnResult, error) {
	f := s.raft.Apply(entry, time.Second)
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		switch {
		case err == nil:
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrEnqueueTimeout):
			leader, _ := s.raft.LeaderWithID()
			return nil, &notLeaderError{Leader: string(leader)}
		default: // leadership lost, shutdown, restore: the entry may commit later.
			return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, err)
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %v", ErrUnknownOutcome, ctx.Err())
	}
	r := f.Response().(applyResult)
	return r.txn, r.err
}

// linearize returns once the local replica holds every write acknowledged
// before the call: it gets a read index from the leader and waits until the
// local replica has applied it.
func (s *Store) linearize(ctx context.Context) error {
	for backoff := 2 * time.Millisecond; ; backoff = min(2*backoff, 100*time.Millisecond) {
		idx, err := s.readIndex(ctx)
		if err == nil {
			return s.waitLogApplied(ctx, idx)
		}
		var nl *notLeaderError
		// A read index that failed changed nothing: any failure that a new
		// leader may not repeat is worth another try (a remote ErrStopped is
		// the old leader shutting down; this node stopping ends the loop below).
		if !errors.As(err, &nl) && !errors.Is(err, rpc.ErrNotSent) && !errors.Is(err, errRetry) &&
			!errors.Is(err, rpc.ErrConnLost) && !errors.Is(err, ErrStopped) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v (last: %v)", ErrNoLeader, ctx.Err(), err)
		case <-s.stopped:
			return ErrStopped
		case <-time.After(backoff):
		}
	}
}

func (s *Store) readIndex(ctx context.Context) (int64, error) {
	if s.raft.State() == raft.Leader {
		return s.readIndexLocal(ctx)
	}
	leader, _ := s.raft.LeaderWithID()
	if leader == "" {
		return 0, errRetry
	}
	resp, err := s.peer(string(leader)).Call(ctx, methodReadIndex, nil)
	if err != nil {
		var re *rpc.RemoteError
		if errors.As(err, &re) {
			return 0, decodeError(re.Payload)
		}
		return 0, err
	}
	d := decoder{b: resp}
	idx := d.varint()
	return idx, d.err
}

// readIndexLocal is the leader's side of a read index: its commit index,
// taken before leadership is confirmed. Every write acknowledged before the
// read began is committed at or below it (a new leader first commits a
// barrier of its own term, see ensureBarrier, so its commit index covers its
// predecessors' entries), and the confirmation shows that no other leader
// can have committed anything newer.
//
// The leader's own applied state is no read index: a follower may apply a
// committed entry before the leader's state machine does, and a read there
// followed by a read here must not go back in time.
func (s *Store) readIndexLocal(ctx context.Context) (int64, error) {
	term, err := s.ensureBarrier(ctx)
	if err != nil {
		return 0, err
	}
	idx := int64(s.raft.CommitIndex())
	if err := s.verifier.Verify(ctx); err != nil {
		return 0, err
	}
	// Leadership confirmed in another term would say nothing about the
	// entries of the terms in between: the caller retries.
	if s.raft.CurrentTerm() != term {
		return 0, &notLeaderError{}
	}
	return idx, nil
}

// waitLogApplied blocks until the state machine reflects every log entry up
// to index. Raft hands only commands and configuration changes to the state
// machine, so the state machine's own revision may never reach an index that
// is a no-op or a barrier: first wait until Raft has dispatched every entry
// up to index, then wait for the last of them that the state machine sees.
func (s *Store) waitLogApplied(ctx context.Context, index int64) error {
	for wait := 50 * time.Microsecond; ; wait = min(2*wait, 2*time.Millisecond) {
		if s.fsm.appliedRev() >= index {
			return nil
		}
		if int64(s.raft.AppliedIndex()) >= index {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stopped:
			return ErrStopped
		case <-s.fsm.wakeCh():
		case <-time.After(wait):
		}
	}
	return s.fsm.waitApplied(ctx, s.lastFSMIndex(index))
}

// lastFSMIndex returns the index of the last entry at or below index that
// the state machine applies (a command or a configuration change). Raft must
// have dispatched every entry up to index already.
func (s *Store) lastFSMIndex(index int64) int64 {
	applied := s.fsm.appliedRev()
	for i := index; i > applied; i-- {
		var l raft.Log
		if err := s.logs.GetLog(uint64(i), &l); err != nil {
			// Compacted into a snapshot, which the state machine took
			// after applying everything the snapshot covers.
			return applied
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return i
		}
	}
	return applied
}

// ensureBarrier makes sure this leader has applied every entry committed
// before its term, once per term, and returns that term.
func (s *Store) ensureBarrier(ctx context.Context) (uint64, error) {
	term := s.raft.CurrentTerm()
	if s.barrierTerm.Load() == term {
		return term, nil
	}
	s.barrierMu.Lock()
	defer s.barrierMu.Unlock()
	if s.barrierTerm.Load() == term {
		return term, nil
	}
	timeout := s.cfg.RequestTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := s.raft.Barrier(timeout).Error(); err != nil {
		leader, _ := s.raft.LeaderWithID()
		return 0, &notLeaderError{Leader: string(leader)}
	}
	s.barrierTerm.Store(term)
	return term, nil
}

func (s *Store) verifyLeader() error {
	if err := s.raft.VerifyLeader().Error(); err != nil {
		leader, _ := s.raft.LeaderWithID()
		return &notLeaderError{Leader: string(leader)}
	}
	return nil
}

// readView returns the view to serve a read with the given options from,
// after linearizing when the options call for it.
func (s *Store) readView(ctx context.Context, o ReadOptions) (*mvcc.View, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	if !o.Stale && (o.Revision == 0 || o.Revision > s.fsm.appliedRev()) {
		ctx, cancel := s.withTimeout(ctx)
		defer cancel()
		s.metrics.reads.Add(1)
		if err := s.linearize(ctx); err != nil {
			s.metrics.readFailures.Add(1)
			return nil, err
		}
	}
	return s.fsm.view(), nil
}

// Get returns key (nil if it does not exist) and the revision it was read at.
func (s *Store) Get(ctx context.Context, key string, o ReadOptions) (*KeyValue, int64, error) {
	v, err := s.readView(ctx, o)
	if err != nil {
		return nil, 0, err
	}
	kv, ok, err := v.Get(key, o.Revision)
	if err != nil || !ok {
		return nil, readRev(v, o), err
	}
	return &kv, readRev(v, o), nil
}

func readRev(v *mvcc.View, o ReadOptions) int64 {
	if o.Revision != 0 {
		return o.Revision
	}
	return v.Rev()
}

// List returns the keys starting with prefix, in key order, paged by o.
func (s *Store) List(ctx context.Context, prefix string, o ListOptions) (ListResult, error) {
	v, err := s.readView(ctx, o.ReadOptions)
	if err != nil {
		return ListResult{}, err
	}
	return listView(v, prefix, o)
}

func listView(v *mvcc.View, prefix string, o ListOptions) (ListResult, error) {
	start := prefix
	if o.After != "" && o.After >= prefix {
		start = o.After + "\x00"
	}
	kvs, more, err := v.Range(start, mvcc.PrefixEnd(prefix), o.Revision, o.Limit)
	if err != nil {
		return ListResult{}, err
	}
	return ListResult{KVs: kvs, Revision: readRev(v, o.ReadOptions), More: more}, nil
}

// Count returns how many keys start with prefix and the revision counted at.
func (s *Store) Count(ctx context.Context, prefix string, o ReadOptions) (int64, int64, error) {
	v, err := s.readView(ctx, o)
	if err != nil {
		return 0, 0, err
	}
	n, err := v.Count(prefix, mvcc.PrefixEnd(prefix), o.Revision)
	return n, readRev(v, o), err
}

// Watch returns a watcher of the keys starting with prefix that sees every
// event with a revision greater than from, from this node's replica; from 0
// means from now. It fails with a *CompactedError when events after from are
// no longer kept.
func (s *Store) Watch(ctx context.Context, prefix string, from int64) (*Watcher, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.fsm.hub.Watch(prefix, from)
}

// Revision returns the revision of the last entry applied on this node.
func (s *Store) Revision() int64 { return s.fsm.appliedRev() }

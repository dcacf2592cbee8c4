package raftstore

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"

	"github.com/skiff-sh/skiff/raftstore/internal/command"
	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
	"github.com/skiff-sh/skiff/raftstore/internal/watch"
)

// applyResult is what the FSM returns for one command: the txn result, or
// the rule that failed (a value, never a panic).
type applyResult struct {
	txn *mvcc.TxnResult
	err error
}

// fsm is the Raft state machine. Raft calls ApplyBatch, Snapshot and Restore
// from its one FSM goroutine; FSMSnapshot.Persist runs beside later applies.
// Readers use view() and waitApplied from any goroutine.
type fsm struct {
	state atomic.Pointer[mvcc.State]
	hub   *watch.Hub
	// beforeApply, when set (by tests only), runs before each batch is applied.
	beforeApply atomic.Pointer[func()]

	mu sync.Mutex
	// applied is the revision of the last applied entry, published to readers.
	applied int64
	// wake is closed and replaced whenever applied moves.
	wake chan struct{}
}

func newFSM(history int) *fsm {
	f := &fsm{hub: watch.New(history), wake: make(chan struct{})}
	f.state.Store(mvcc.New())
	return f
}

// view returns the latest published view.
func (f *fsm) view() *mvcc.View { return f.state.Load().View() }

// Apply implements raft.FSM.
func (f *fsm) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM. It applies the entries in order,
// then publishes the new state, then the events: a reader never sees an
// event before the state that contains it.
func (f *fsm) ApplyBatch(logs []*raft.Log) []any {
	if hook := f.beforeApply.Load(); hook != nil {
		(*hook)()
	}
	st := f.state.Load()
	out := make([]any, len(logs))
	var events []mvcc.Event
	compacted := int64(0)
	for i, l := range logs {
		index := int64(l.Index)
		if l.Type != raft.LogCommand {
			st.Advance(index)
			continue
		}
		e, err := command.Decode(l.Data)
		if err != nil {
			// Every replica applies the same bytes: an entry that does not
			// decode means a bug or corruption, never bad user input.
			panic(fmt.Sprintf("raftstore: log entry %d does not decode: %v", l.Index, err))
		}
		switch e.Op {
		case command.OpTxn:
			res, evs, err := st.ApplyTxn(index, e.Txn)
			out[i] = applyResult{txn: res, err: err}
			events = append(events, evs...)
		case command.OpCompact:
			err := st.ApplyCompact(index, *e.Compact)
			if err == nil {
				compacted = e.Compact.Revision
			}
			out[i] = applyResult{txn: &mvcc.TxnResult{Revision: index, Succeeded: true}, err: err}
		default:
			panic(fmt.Sprintf("raftstore: log entry %d has unknown op %d", l.Index, e.Op))
		}
	}
	st.Publish()
	f.hub.Publish(st.Rev(), events)
	if compacted > 0 {
		f.hub.Compact(compacted)
	}
	f.setApplied(st.Rev())
	return out
}

func (f *fsm) setApplied(rev int64) {
	f.mu.Lock()
	f.applied = rev
	close(f.wake)
	f.wake = make(chan struct{})
	f.mu.Unlock()
}

// wakeCh returns a channel that is closed when the applied revision next moves.
func (f *fsm) wakeCh() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.wake
}

// appliedRev returns the revision of the last applied entry.
func (f *fsm) appliedRev() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// waitApplied blocks until the entry at rev has been applied, or ctx ends.
func (f *fsm) waitApplied(ctx context.Context, rev int64) error {
	for {
		f.mu.Lock()
		done, wake := f.applied >= rev, f.wake
		f.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Snapshot implements raft.FSM: it captures the published view, which later
// applies never modify.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{view: f.view()}, nil
}

// Restore implements raft.FSM: it builds a new state from the snapshot, then
// swaps it in. Watchers that had not seen the snapshot's revision lose events
// and get a compacted error.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	st, err := mvcc.Restore(rc)
	if err != nil {
		return fmt.Errorf("raftstore: restore snapshot: %w", err)
	}
	f.state.Store(st)
	f.hub.Reset(st.Rev())
	f.setApplied(st.Rev())
	return nil
}

type fsmSnapshot struct{ view *mvcc.View }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.view.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("raftstore: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}

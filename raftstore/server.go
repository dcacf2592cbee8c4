package raftstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/skiff-sh/skiff/raftstore/internal/command"
	"github.com/skiff-sh/skiff/raftstore/internal/rpc"
)

// RPC methods. Part of the wire protocol: append only.
const (
	methodPropose   byte = 1 // entry -> TxnResult; leader only
	methodReadIndex byte = 2 // -> varint index; leader only
	methodJoin      byte = 3 // id, addr -> (); forwarded to the leader
	methodRemove    byte = 4 // id -> (); forwarded to the leader
	methodStatus    byte = 5 // -> JSON Status of the serving node
	methodRange     byte = 6 // range request -> range response; any node
	methodWrite     byte = 7 // entry -> TxnResult; any node, forwarded to the leader
)

// serveRPC accepts RPC connections until ctx ends and returns after every
// connection handler has finished.
func (s *Store) serveRPC(ctx context.Context) error {
	srv := &rpc.Server{Handler: rpcHandler{s}}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := s.mux.AcceptRPC(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("raftstore: accept rpc: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.ServeConn(ctx, conn)
		}()
	}
}

type rpcHandler struct{ s *Store }

func (h rpcHandler) EncodeError(err error) []byte { return encodeError(err) }

func (h rpcHandler) Serve(ctx context.Context, method byte, p []byte) ([]byte, error) {
	s := h.s
	switch method {
	case methodPropose:
		if _, err := command.Decode(p); err != nil {
			// Never propose what the FSM could not decode.
			return nil, fmt.Errorf("%w: %v", ErrInvalidTxn, err)
		}
		if s.raft.State() != raft.Leader {
			leader, _ := s.raft.LeaderWithID()
			return nil, &notLeaderError{Leader: string(leader)}
		}
		ctx, cancel := s.withTimeout(ctx)
		defer cancel()
		res, err := s.applyLocal(ctx, p)
		if err != nil {
			return nil, err
		}
		return command.AppendTxnResult(nil, res), nil
	case methodWrite:
		if _, err := command.Decode(p); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidTxn, err)
		}
		res, err := s.propose(ctx, p)
		if err != nil {
			return nil, err
		}
		return command.AppendTxnResult(nil, res), nil
	case methodReadIndex:
		if s.raft.State() != raft.Leader {
			leader, _ := s.raft.LeaderWithID()
			return nil, &notLeaderError{Leader: string(leader)}
		}
		ctx, cancel := s.withTimeout(ctx)
		defer cancel()
		idx, err := s.readIndexLocal(ctx)
		if err != nil {
			if ctx.Err() != nil { // this node is shutting down: the caller asks the next leader
				return nil, ErrStopped
			}
			return nil, err
		}
		return binary.AppendVarint(nil, idx), nil
	case methodJoin:
		d := decoder{b: p}
		id, addr := d.string(), d.string()
		if d.err != nil {
			return nil, d.err
		}
		return nil, s.Join(ctx, id, addr)
	case methodRemove:
		d := decoder{b: p}
		id := d.string()
		if d.err != nil {
			return nil, d.err
		}
		return nil, s.Remove(ctx, id)
	case methodStatus:
		st, err := s.Status(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(st)
	case methodRange:
		req, err := decodeRangeRequest(p)
		if err != nil {
			return nil, err
		}
		return s.serveRange(ctx, req)
	}
	return nil, fmt.Errorf("raftstore: unknown rpc method %d", method)
}

// rangeRequest is a remote client's Get (prefix is the key), List or Count.
type rangeRequest struct {
	prefix string
	count  bool
	get    bool
	opts   ListOptions
}

func (r *rangeRequest) encode() []byte {
	var flags uint64
	if r.opts.Stale {
		flags |= 1
	}
	if r.count {
		flags |= 2
	}
	if r.get {
		flags |= 4
	}
	b := binary.AppendUvarint(nil, flags)
	b = binary.AppendVarint(b, r.opts.Revision)
	b = binary.AppendVarint(b, int64(r.opts.Limit))
	b = appendString(b, r.prefix)
	return appendString(b, r.opts.After)
}

func decodeRangeRequest(p []byte) (*rangeRequest, error) {
	d := decoder{b: p}
	flags := d.uvarint()
	r := &rangeRequest{count: flags&2 != 0, get: flags&4 != 0}
	r.opts.Stale = flags&1 != 0
	r.opts.Revision = d.varint()
	r.opts.Limit = int(d.varint())
	r.prefix = d.string()
	r.opts.After = d.string()
	return r, d.err
}

// serveRange answers: revision, more, count, then the key-values.
func (s *Store) serveRange(ctx context.Context, req *rangeRequest) (_ []byte, err error) {
	if req.count {
		n, rev, err := s.Count(ctx, req.prefix, req.opts.ReadOptions)
		if err != nil {
			return nil, err
		}
		return binary.AppendVarint(binary.AppendVarint(binary.AppendUvarint(nil, 0), rev), n), nil
	}
	var res ListResult
	if req.get {
		kv, rev, err := s.Get(ctx, req.prefix, req.opts.ReadOptions)
		if err != nil {
			return nil, err
		}
		res.Revision = rev
		if kv != nil {
			res.KVs = []KeyValue{*kv}
		}
	} else if res, err = s.List(ctx, req.prefix, req.opts); err != nil {
		return nil, err
	}
	more := uint64(0)
	if res.More {
		more = 1
	}
	b := binary.AppendVarint(binary.AppendUvarint(nil, more), res.Revision)
	b = binary.AppendVarint(b, int64(len(res.KVs)))
	for i := range res.KVs {
		b = command.AppendKeyValue(b, &res.KVs[i])
	}
	return b, nil
}

// Server is one member of the Raft configuration.
type Server struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Status describes one node's view of the cluster.
type Status struct {
	ID            string   `json:"id"`
	Address       string   `json:"address"`
	State         string   `json:"state"`
	LeaderID      string   `json:"leaderID"`
	LeaderAddress string   `json:"leaderAddress"`
	Term          uint64   `json:"term"`
	CommitIndex   uint64   `json:"commitIndex"`
	AppliedIndex  int64    `json:"appliedIndex"`
	LastIndex     uint64   `json:"lastIndex"`
	CompactRev    int64    `json:"compactRevision"`
	Keys          int      `json:"keys"`
	Servers       []Server `json:"servers"`
}

// Status returns this node's view of the cluster.
func (s *Store) Status(ctx context.Context) (Status, error) {
	if err := s.wait(ctx); err != nil {
		return Status{}, err
	}
	state := s.raft.State()
	leaderAddr, leaderID := s.raft.LeaderWithID()
	if state == raft.Leader && leaderID == "" {
		// Raft records its own leadership a moment after it takes the
		// state: say what the state says.
		leaderAddr, leaderID = raft.ServerAddress(s.addr), raft.ServerID(s.cfg.NodeID)
	}
	v := s.fsm.view()
	st := Status{
		ID: s.cfg.NodeID, Address: s.addr, State: state.String(),
		LeaderID: string(leaderID), LeaderAddress: string(leaderAddr),
		Term: s.raft.CurrentTerm(), CommitIndex: s.raft.CommitIndex(), AppliedIndex: s.fsm.appliedRev(),
		LastIndex: s.raft.LastIndex(), CompactRev: v.CompactRev(), Keys: v.Len(),
	}
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return Status{}, fmt.Errorf("raftstore: configuration: %w", err)
	}
	for _, srv := range f.Configuration().Servers {
		st.Servers = append(st.Servers, Server{ID: string(srv.ID), Address: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return st, nil
}

// Join admits node id at addr as a voter. Any member may be asked; followers
// forward to the leader. Joining again with the same address is a no-op.
func (s *Store) Join(ctx context.Context, id, addr string) error {
	if id == "" || addr == "" {
		return errors.New("raftstore: join needs a node ID and an address")
	}
	return s.changeMembership(ctx, methodJoin, appendString(appendString(nil, id), addr), func(timeout time.Duration) raft.IndexFuture {
		return s.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// Remove takes node id out of the cluster. Any member may be asked.
func (s *Store) Remove(ctx context.Context, id string) error {
	return s.changeMembership(ctx, methodRemove, appendString(nil, id), func(timeout time.Duration) raft.IndexFuture {
		return s.raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (s *Store) changeMembership(ctx context.Context, method byte, payload []byte, change func(time.Duration) raft.IndexFuture) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	ctx, cancel := s.withTimeout(ctx)
	defer cancel()
	for backoff := 5 * time.Millisecond; ; backoff = min(2*backoff, 200*time.Millisecond) {
		var err error
		if s.raft.State() == raft.Leader {
			timeout := time.Second
			if dl, ok := ctx.Deadline(); ok {
				timeout = time.Until(dl)
			}
			err = change(timeout).Error()
			if err == nil {
				return nil
			}
			if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
				return fmt.Errorf("raftstore: membership change: %w", err)
			}
		} else if leader, _ := s.raft.LeaderWithID(); leader != "" {
			_, err = s.peer(string(leader)).Call(ctx, method, payload)
			var re *rpc.RemoteError
			if errors.As(err, &re) {
				err = decodeError(re.Payload)
			}
			if err == nil {
				return nil
			}
			var nl *notLeaderError
			if !errors.As(err, &nl) && !errors.Is(err, rpc.ErrNotSent) && !errors.Is(err, rpc.ErrConnLost) {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: membership change: %v (last: %v)", ErrNoLeader, ctx.Err(), err)
		case <-time.After(backoff):
		}
	}
}

// joinLoop asks the configured members to admit this node until one does.
func (s *Store) joinLoop(ctx context.Context) error {
	payload := appendString(appendString(nil, s.cfg.NodeID), s.addr)
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		for _, addr := range s.cfg.Join {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := s.peer(addr).Call(cctx, methodJoin, payload)
			cancel()
			if err == nil {
				s.log.Info("joined the cluster", "via", addr)
				return nil
			}
			var re *rpc.RemoteError
			if errors.As(err, &re) {
				err = decodeError(re.Payload)
			}
			s.log.Warn("join attempt failed", "via", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
	}
}

// compactLoop, on the leader, compacts history every CompactInterval to the
// revision that was current one interval before.
func (s *Store) compactLoop(ctx context.Context) error {
	t := time.NewTicker(s.cfg.CompactInterval)
	defer t.Stop()
	var mark int64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if s.raft.State() != raft.Leader {
			mark = 0
			continue
		}
		if mark > s.fsm.view().CompactRev() {
			cctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
			err := s.Compact(cctx, mark)
			cancel()
			var ce *CompactedError
			if err != nil && !errors.As(err, &ce) {
				s.log.Warn("compaction failed", "rev", mark, "err", err)
			}
		}
		mark = s.fsm.appliedRev()
	}
}

// leaderVerifier batches leadership confirmations: a caller joins the next
// round that has not started yet, so one heartbeat round serves every read
// that arrived while the previous round was in flight.
type leaderVerifier struct {
	verify func() error

	mu      sync.Mutex
	next    *verifyRound
	running bool
}

type verifyRound struct {
	done chan struct{}
	err  error
}

// Verify returns nil once leadership has been confirmed by a round that
// started after the call.
func (lv *leaderVerifier) Verify(ctx context.Context) error {
	lv.mu.Lock()
	if lv.next == nil {
		lv.next = &verifyRound{done: make(chan struct{})}
	}
	r := lv.next
	if !lv.running {
		lv.running = true
		lv.next = nil
		go lv.run(r)
	}
	lv.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run executes rounds back to back while callers keep joining.
func (lv *leaderVerifier) run(r *verifyRound) {
	for r != nil {
		r.err = lv.verify()
		close(r.done)
		lv.mu.Lock()
		r, lv.next = lv.next, nil
		if r == nil {
			lv.running = false
		}
		lv.mu.Unlock()
	}
}

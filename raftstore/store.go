// Package raftstore is Skiff's cluster database: an ordered, revisioned
// key-value store replicated with Raft (hashicorp/raft, log and stable store
// in raft-boltdb, file snapshots), in place of etcd.
//
// Every node serves reads and accepts writes; followers forward writes to the
// leader. Reads are linearizable unless ReadOptions.Stale asks for the local
// replica. Watches are served by every node from its own replica, in revision
// order, each event once. A revision is the Raft log index of the entry that
// wrote it.
//
//	s, err := raftstore.New(cfg)    // cfg from DefaultConfig, then adjusted
//	go s.Run(ctx)                   // opens storage, joins or bootstraps, serves
//	rev, err := s.Create(ctx, "/registry/pods/default/web", data)
//
// Methods may be called as soon as New returns; until Run has opened the
// store they wait for it (or for their context). Leader-only work follows
// Leadership, which reports this node's terms as leader, each after a barrier.
package raftstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"

	"github.com/skiff-sh/skiff/raftstore/internal/mvcc"
	"github.com/skiff-sh/skiff/raftstore/internal/netmux"
	"github.com/skiff-sh/skiff/raftstore/internal/rpc"
	"github.com/skiff-sh/skiff/raftstore/internal/watch"
)

// KeyValue is one version of a key. Callers must not modify Value.
type KeyValue = mvcc.KeyValue

// Event is one change to a key, as a watcher sees it.
type Event = mvcc.Event

// Event types.
const (
	EventPut    = mvcc.EventPut
	EventDelete = mvcc.EventDelete
)

// Txn, Compare, Request and TxnResult describe a multi-key transaction.
type (
	Txn       = mvcc.Txn
	Compare   = mvcc.Compare
	Request   = mvcc.Request
	TxnResult = mvcc.TxnResult
)

// Compare targets and results, and request types, for building a Txn.
const (
	TargetModRevision    = mvcc.TargetModRevision
	TargetCreateRevision = mvcc.TargetCreateRevision
	TargetVersion        = mvcc.TargetVersion
	Equal                = mvcc.Equal
	NotEqual             = mvcc.NotEqual
	Less                 = mvcc.Less
	Greater              = mvcc.Greater
	RequestPut           = mvcc.RequestPut
	RequestDelete        = mvcc.RequestDelete
)

// Watcher reads the events of one key prefix; see Store.Watch.
type Watcher = watch.Watcher

// Network opens the raw connections between nodes. The default is plain TCP;
// tests substitute one that can cut links.
type Network interface {
	Listen(addr string) (net.Listener, error)
	Dial(ctx context.Context, addr string) (net.Conn, error)
}

// Config configures a Store.
type Config struct {
	// NodeID names this node in the Raft configuration; stable across restarts.
	NodeID string
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// BindAddr is the peer listener (Raft and RPC share it).
	BindAddr string
	// AdvertiseAddr is how other nodes reach this one; BindAddr when empty.
	AdvertiseAddr string
	// Bootstrap starts a new single-node cluster when DataDir holds no state.
	Bootstrap bool
	// Join lists addresses of existing members to ask for admission when
	// DataDir holds no state. Tried in turn until one admits this node.
	Join []string
	// Network defaults to TCP.
	Network Network
	// ServerTLS and ClientTLS, when set, secure every peer connection
	// (mutual TLS: ServerTLS should require client certificates).
	ServerTLS, ClientTLS *tls.Config
	Logger               *slog.Logger
	// RaftLogLevel is the level of hashicorp/raft's own log lines kept.
	RaftLogLevel slog.Level

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotInterval, SnapshotThreshold and TrailingLogs: see raft.Config.
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// SnapshotsRetained is how many snapshot files to keep.
	SnapshotsRetained int

	// WatchHistory is about how many events each node keeps for watches
	// (besides compaction, which drops older ones). A watcher that falls
	// further behind gets a CompactedError and starts over. Kept events pin
	// the values they replaced, so this bounds that memory.
	WatchHistory int
	// CompactInterval: every interval the leader compacts history to the
	// revision current one interval earlier. Zero disables compaction.
	CompactInterval time.Duration
	// RequestTimeout bounds a request whose context has no deadline.
	RequestTimeout time.Duration
}

// DefaultConfig returns the production defaults.
func DefaultConfig() Config {
	return Config{
		BindAddr:           ":6444",
		Logger:             slog.Default(),
		RaftLogLevel:       slog.LevelWarn,
		HeartbeatTimeout:   1000 * time.Millisecond,
		ElectionTimeout:    1000 * time.Millisecond,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		// Followers learn the commit index at least this often, which bounds
		// how long a linearizable read on an idle follower waits.
		CommitTimeout:     10 * time.Millisecond,
		SnapshotInterval:  30 * time.Second,
		SnapshotThreshold: 16384,
		TrailingLogs:      10240,
		SnapshotsRetained: 2,
		WatchHistory:      20000,
		CompactInterval:   5 * time.Minute,
		RequestTimeout:    10 * time.Second,
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("raftstore: config: NodeID is required")
	case c.DataDir == "":
		return errors.New("raftstore: config: DataDir is required")
	case c.BindAddr == "":
		return errors.New("raftstore: config: BindAddr is required")
	case c.Bootstrap && len(c.Join) > 0:
		return errors.New("raftstore: config: Bootstrap and Join are exclusive")
	case (c.ServerTLS == nil) != (c.ClientTLS == nil):
		return errors.New("raftstore: config: set both ServerTLS and ClientTLS, or neither")
	case c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaderLeaseTimeout <= 0 || c.CommitTimeout <= 0:
		return errors.New("raftstore: config: Raft timeouts must be positive")
	case c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return errors.New("raftstore: config: LeaderLeaseTimeout must not exceed HeartbeatTimeout")
	case c.WatchHistory < 1:
		return errors.New("raftstore: config: WatchHistory must be at least 1")
	case c.RequestTimeout <= 0:
		return errors.New("raftstore: config: RequestTimeout must be positive")
	case c.SnapshotThreshold == 0 || c.SnapshotInterval <= 0 || c.SnapshotsRetained < 1:
		return errors.New("raftstore: config: snapshot settings must be positive")
	}
	return nil
}

// Store is one node of the replicated store.
type Store struct {
	cfg Config
	log *slog.Logger
	fsm *fsm

	ready   chan struct{} // closed once Run has started Raft
	stopped chan struct{} // closed when Run is shutting down
	started atomic.Bool

	// Set by Run before ready is closed; read-only afterwards.
	raft *raft.Raft
	logs raft.LogStore
	mux  *netmux.Mux
	addr string

	peersMu sync.Mutex
	peers   map[string]*rpc.Client

	metrics     metrics
	verifier    leaderVerifier
	barrierMu   sync.Mutex
	barrierTerm atomic.Uint64
	leader      *leadership
}

// New validates cfg and returns a store that Run will open.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Network == nil {
		cfg.Network = tcpNetwork{}
	}
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = cfg.BindAddr
	}
	s := &Store{
		cfg:     cfg,
		log:     cfg.Logger.With("node", cfg.NodeID),
		fsm:     newFSM(cfg.WatchHistory),
		ready:   make(chan struct{}),
		stopped: make(chan struct{}),
		peers:   map[string]*rpc.Client{},
		leader:  newLeadership(),
	}
	s.verifier.verify = s.verifyLeader
	return s, nil
}

type tcpNetwork struct{}

func (tcpNetwork) Listen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func (tcpNetwork) Dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// Run opens the data directory, starts Raft, bootstraps or joins when the
// directory is new, and serves peers until ctx ends. Then it shuts Raft down
// cleanly and returns after every goroutine it started has exited. A Store
// runs once.
func (s *Store) Run(ctx context.Context) (err error) {
	if s.started.Swap(true) {
		return errors.New("raftstore: Run called twice")
	}
	defer close(s.stopped)
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("raftstore: data dir: %w", err)
	}
	hlog := newHCLogger(s.log, s.cfg.RaftLogLevel)
	bolt, err := raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(s.cfg.DataDir, "raft.db"),
		// The freelist is rebuilt on open instead of written on every
		// commit: fewer pages per fsync on the write path, as etcd does.
		BoltOptions: &bbolt.Options{Timeout: time.Second, NoFreelistSync: true, FreelistType: bbolt.FreelistMapType},
	})
	if err != nil {
		return fmt.Errorf("raftstore: open raft.db: %w", err)
	}
	defer bolt.Close()
	logs, err := raft.NewLogCache(1024, bolt)
	if err != nil {
		return fmt.Errorf("raftstore: log cache: %w", err)
	}
	s.logs = logs
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, s.cfg.SnapshotsRetained, hlog)
	if err != nil {
		return fmt.Errorf("raftstore: snapshot store: %w", err)
	}
	ln, err := s.cfg.Network.Listen(s.cfg.BindAddr)
	if err != nil {
		return fmt.Errorf("raftstore: listen on %s: %w", s.cfg.BindAddr, err)
	}
	advertise := s.cfg.AdvertiseAddr
	if strings.HasSuffix(advertise, ":0") { // an ephemeral port: advertise the real one
		advertise = ln.Addr().String()
	}
	s.addr = advertise
	s.mux = netmux.New(netmux.Config{
		Listener: ln, Dial: s.cfg.Network.Dial, Advertise: advertise,
		ServerTLS: s.cfg.ServerTLS, ClientTLS: s.cfg.ClientTLS, Logger: s.log,
	})
	transport := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: s.mux.RaftLayer(), MaxPool: 4, Timeout: 10 * time.Second, Logger: hlog,
	})
	defer transport.Close()

	hasState, err := raft.HasExistingState(logs, bolt, snaps)
	if err != nil {
		return fmt.Errorf("raftstore: inspect state: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.NodeID)
	rc.Logger = hlog
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.TrailingLogs = s.cfg.TrailingLogs
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	r, err := raft.NewRaft(rc, s.fsm, logs, bolt, snaps, transport)
	if err != nil {
		return fmt.Errorf("raftstore: start raft: %w", err)
	}
	s.raft = r
	raftDown := false
	shutdownRaft := func() {
		if raftDown {
			return
		}
		raftDown = true
		if serr := r.Shutdown().Error(); serr != nil && err == nil {
			err = fmt.Errorf("raftstore: shut down raft: %w", serr)
		}
	}
	defer shutdownRaft()
	if !hasState && s.cfg.Bootstrap {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(advertise)}}}
		if err := r.BootstrapCluster(cfg).Error(); err != nil {
			return fmt.Errorf("raftstore: bootstrap: %w", err)
		}
		s.log.Info("bootstrapped a new cluster", "addr", advertise)
	}
	close(s.ready)
	s.log.Info("store running", "addr", advertise, "existing_state", hasState)

	// The mux outlives Raft: it stops only after Raft has shut down, so Raft
	// never sees its listener vanish underneath it.
	muxCtx, stopMux := context.WithCancel(context.WithoutCancel(ctx))
	muxDone := make(chan error, 1)
	go func() { muxDone <- s.mux.Run(muxCtx) }()
	defer func() {
		shutdownRaft()
		stopMux()
		if merr := <-muxDone; merr != nil && err == nil {
			err = merr
		}
	}()

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.serveRPC(gctx) })
	g.Go(func() error { return s.leadershipLoop(gctx) })
	if !hasState && len(s.cfg.Join) > 0 {
		g.Go(func() error { return s.joinLoop(gctx) })
	}
	if s.cfg.CompactInterval > 0 {
		g.Go(func() error { return s.compactLoop(gctx) })
	}
	err = g.Wait()
	s.closePeers()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		err = nil
	}
	return err
}

// Addr returns the address other nodes reach this one at, once running.
func (s *Store) Addr() string {
	<-s.ready
	return s.addr
}

// NodeID returns the node's Raft server ID.
func (s *Store) NodeID() string { return s.cfg.NodeID }

// wait blocks until Run has started Raft; ErrStopped once Run is ending.
func (s *Store) wait(ctx context.Context) error {
	select {
	case <-s.stopped:
		return ErrStopped
	default:
	}
	select {
	case <-s.ready:
		return nil
	case <-s.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// withTimeout applies the default request timeout to a context without a deadline.
func (s *Store) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

func (s *Store) peer(addr string) *rpc.Client {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	c := s.peers[addr]
	if c == nil {
		c = rpc.NewClient(func(ctx context.Context) (net.Conn, error) {
			return s.mux.Dial(ctx, addr, netmux.RPC)
		})
		s.peers[addr] = c
	}
	return c
}

func (s *Store) closePeers() {
	s.peersMu.Lock()
	defer s.peersMu.Unlock()
	for addr, c := range s.peers {
		c.Close()
		delete(s.peers, addr)
	}
}

// newHCLogger adapts slog for hashicorp/raft's hclog, keeping lines at or above level.
func newHCLogger(l *slog.Logger, level slog.Level) hclog.Logger {
	lv := hclog.Warn
	switch {
	case level <= slog.LevelDebug:
		lv = hclog.Debug
	case level <= slog.LevelInfo:
		lv = hclog.Info
	case level >= slog.LevelError:
		lv = hclog.Error
	}
	return hclog.New(&hclog.LoggerOptions{Name: "raft", Level: lv, Output: slogWriter{l}, DisableTime: true})
}

type slogWriter struct{ l *slog.Logger }

// Write logs one hclog line ("[WARN]  raft: message: k=v") at its level.
func (w slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for prefix, lv := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[TRACE]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERROR]": slog.LevelError} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			line, level = strings.TrimSpace(rest), lv
			break
		}
	}
	w.l.Log(context.Background(), level, line, "component", "raft")
	return len(p), nil
}

var _ io.Writer = slogWriter{}

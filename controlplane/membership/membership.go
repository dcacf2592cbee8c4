// Package membership is Skiff's gossip pool (hashicorp/memberlist): masters
// and workers are members of one encrypted pool, each announcing what it is
// in its metadata (Meta). Agents find the API servers from it; the masters
// learn within seconds when a worker dies (DESIGN.md: liveness lives in
// memory, transitions in Raft).
//
//	p, err := membership.New(cfg) // cfg from DefaultConfig: Name, BindAddr, Key, Meta, Peers
//	go p.Run(ctx)                 // joins, re-joins every RejoinInterval, stops when ctx ends
//	p.Members()                   // the pool as this member sees it
//	p.Alive("worker-1")           // the worker's state, for the node lifecycle controller
//	p.Join(ctx, addrs)            // an explicit join that reports why it failed (ErrKeyRefused)
//	p.SetMeta(meta)               // new metadata (a worker's pod CIDR), gossiped to the others
//
// The pool is encrypted with a 32-byte AES key every member shares; a
// member without it cannot join. Run re-joins Peers periodically, so a pool
// split by a long partition heals. The member states Alive reports are kept
// from memberlist's join and leave notifications: a member that left or
// died stays known as dead until it joins again.
package membership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Meta is what a member announces about itself. It must encode within
// memberlist's 512-byte metadata limit.
type Meta struct {
	// Master and Worker say which roles the member runs (a single-node
	// cluster runs both).
	Master bool `json:"master,omitempty"`
	Worker bool `json:"worker,omitempty"`
	// API is the URL of the member's Kubernetes API (masters).
	API string `json:"api,omitempty"`
	// NodeIP and PodCIDR are a worker's address and pod range.
	NodeIP  string `json:"nodeIP,omitempty"`
	PodCIDR string `json:"podCIDR,omitempty"`
}

// Member is one member of the pool as this member sees it.
type Member struct {
	Name string
	// Addr is the member's gossip address, host:port.
	Addr  string
	Meta  Meta
	Alive bool
}

// Config configures a Pool.
type Config struct {
	// Name identifies the member: a worker's is its Node's name.
	Name string
	// BindAddr is the gossip listener, host:port (TCP and UDP); port 0
	// picks one.
	BindAddr string
	// AdvertiseAddr is the address other members reach this one at; empty
	// means the listener's.
	AdvertiseAddr string
	// Key is the pool's 32-byte encryption key.
	Key  []byte
	Meta Meta
	// Peers returns gossip addresses of members to join; it is called at
	// the start and every RejoinInterval. An empty answer starts a pool of
	// one.
	Peers func(ctx context.Context) ([]string, error)
	// RejoinInterval is how often Peers are joined again.
	RejoinInterval time.Duration
	// Fast uses memberlist's local-network timings (a dead member is
	// noticed 3 to 6 seconds after a probe of it fails, instead of 5 to 30).
	Fast   bool
	Logger *slog.Logger
}

// DefaultConfig returns a Config without Name, BindAddr, Key and Peers.
func DefaultConfig() Config {
	return Config{RejoinInterval: 30 * time.Second, Fast: true, Logger: slog.Default()}
}

// KeySize is the length of Config.Key.
const KeySize = 32

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("membership: config: Name is required")
	case len(c.Key) != KeySize:
		return fmt.Errorf("membership: config: Key must be %d bytes, got %d", KeySize, len(c.Key))
	case c.Peers == nil || c.Logger == nil:
		return errors.New("membership: config: Peers and Logger are required")
	case c.RejoinInterval <= 0:
		return fmt.Errorf("membership: config: RejoinInterval %v must be positive", c.RejoinInterval)
	}
	if _, _, err := splitAddr(c.BindAddr); err != nil {
		return fmt.Errorf("membership: config: BindAddr: %w", err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := splitAddr(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("membership: config: AdvertiseAddr: %w", err)
		}
	}
	if b, _ := json.Marshal(c.Meta); len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("membership: config: Meta encodes to %d bytes, more than %d", len(b), memberlist.MetaMaxSize)
	}
	return nil
}

// Pool is this process's membership of the gossip pool. Its methods are
// safe for concurrent use; Members and Alive answer from memory.
type Pool struct {
	cfg Config

	mu      sync.Mutex
	meta    Meta                   // this member's, set by New and SetMeta
	list    *memberlist.Memberlist // nil until Run has started it
	addr    string
	members map[string]Member // by name, from memberlist's notifications
	// apis are the live masters' API hosts (host:port), recomputed when a
	// member changes and replaced, never modified, so readers share it.
	apis    []string
	changed chan struct{}
	started chan struct{}
}

// New returns a Pool for cfg; Run starts it.
func New(cfg Config) (*Pool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Pool{cfg: cfg, meta: cfg.Meta, members: map[string]Member{}, changed: make(chan struct{}, 1), started: make(chan struct{})}, nil
}

// Run joins the pool and stays in it until ctx ends, then stops and
// returns nil. It fails only when the listener cannot be opened.
func (p *Pool) Run(ctx context.Context) error {
	host, port, _ := splitAddr(p.cfg.BindAddr)
	mc := memberlist.DefaultLANConfig()
	if p.cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
	}
	mc.Name, mc.BindAddr, mc.BindPort = p.cfg.Name, host, port
	if p.cfg.AdvertiseAddr != "" {
		mc.AdvertiseAddr, mc.AdvertisePort, _ = splitAddr(p.cfg.AdvertiseAddr)
	}
	mc.SecretKey = p.cfg.Key
	if p.cfg.Fast {
		// A suspect member is declared dead after 3 s once another member
		// confirms the suspicion, and after at most twice that without a
		// confirmation (memberlist's default waits six times as long, 18 s,
		// which in a pool of a master and two workers is what a lost
		// worker costs whenever the other worker is slow to probe it).
		mc.SuspicionMaxTimeoutMult = 2
	}
	// A dead member's name may come back at once from another address (a
	// worker restarted with a new IP or port).
	mc.DeadNodeReclaimTime = time.Nanosecond
	mc.Delegate, mc.Events = delegate{p}, events{p}
	mc.Logger = log.New(logWriter{p.cfg.Logger.With("component", "gossip")}, "", 0)
	list, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	local := list.LocalNode()
	p.mu.Lock()
	p.list, p.addr = list, net.JoinHostPort(local.Addr.String(), strconv.Itoa(int(local.Port)))
	want, _ := json.Marshal(p.meta)
	p.mu.Unlock()
	// A SetMeta between Create and here found no list to update.
	if string(want) != string(local.Meta) {
		if err := list.UpdateNode(metaUpdateTimeout); err != nil {
			p.cfg.Logger.Warn("gossip: announcing metadata", "err", err)
		}
	}
	close(p.started)
	p.cfg.Logger.Info("gossip pool started", "addr", p.addr)
	defer func() {
		// No Leave: to the others a stopped member is a dead one, noticed
		// in seconds, and an agent restarted within those seconds is never
		// missed (its pods stay Ready behind their Services).
		if err := list.Shutdown(); err != nil {
			p.cfg.Logger.Debug("gossip: shutdown", "err", err)
		}
	}()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		p.join(ctx, list)
		t.Reset(p.cfg.RejoinInterval)
	}
}

// join joins the peers that are not live members already.
func (p *Pool) join(ctx context.Context, list *memberlist.Memberlist) {
	peers, err := p.cfg.Peers(ctx)
	if err != nil {
		p.cfg.Logger.Warn("gossip: finding peers", "err", err)
		return
	}
	known := map[string]bool{p.addr: true}
	for _, m := range p.Members() {
		known[m.Addr] = m.Alive
	}
	var todo []string
	for _, a := range peers {
		if !known[a] {
			todo = append(todo, a)
		}
	}
	if len(todo) == 0 {
		return
	}
	if n, err := list.Join(todo); err != nil {
		p.cfg.Logger.Warn("gossip: joining peers", "peers", todo, "joined", n, "err", err)
	}
}

// Join joins the members at the gossip addresses addrs, once Run has
// started the pool, and returns how many it reached. Unlike the joins Run
// makes, which it only logs, the caller sees why a join failed: a member
// that does not answer, or a pool with another key (ErrKeyRefused).
func (p *Pool) Join(ctx context.Context, addrs []string) (int, error) {
	select {
	case <-p.started:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	p.mu.Lock()
	list := p.list
	p.mu.Unlock()
	n, err := list.Join(addrs)
	switch {
	case err == nil:
		return n, nil
	case strings.Contains(err.Error(), keyRefused):
		return n, fmt.Errorf("%w: join %v: %v", ErrKeyRefused, addrs, err)
	}
	return n, fmt.Errorf("membership: join %v: %w", addrs, err)
}

// ErrKeyRefused is returned by Join when a member answered in a pool
// encrypted with another key than this member's.
var ErrKeyRefused = errors.New("membership: the pool's key is not this member's")

// keyRefused is how memberlist (v0.5) reports a message it cannot decrypt
// with its keys; it exports no error value for it.
const keyRefused = "no installed keys could decrypt"

// metaUpdateTimeout bounds how long SetMeta waits for the update to be
// broadcast.
const metaUpdateTimeout = 5 * time.Second

// SetMeta replaces this member's metadata (a worker's PodCIDR, once it has
// one). Before Run has started the pool it only changes what Run will
// announce; afterwards the other members learn it by gossip within about a
// second. It fails when m does not encode within memberlist's limit, and
// when the update could not be broadcast in time (the new metadata is kept
// and spreads with later gossip all the same).
func (p *Pool) SetMeta(m Meta) error {
	if b, _ := json.Marshal(m); len(b) > memberlist.MetaMaxSize {
		return fmt.Errorf("membership: metadata encodes to %d bytes, more than %d", len(b), memberlist.MetaMaxSize)
	}
	p.mu.Lock()
	p.meta = m
	list := p.list
	p.mu.Unlock()
	if list == nil {
		return nil
	}
	if err := list.UpdateNode(metaUpdateTimeout); err != nil {
		return fmt.Errorf("membership: announce metadata: %w", err)
	}
	return nil
}

// Meta returns this member's metadata.
func (p *Pool) Meta() Meta {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.meta
}

// Addr returns the pool's gossip address once Run has started it.
func (p *Pool) Addr(ctx context.Context) (string, error) {
	select {
	case <-p.started:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr, nil
}

// Members returns the live members and those known dead, sorted by name
// (none before Run has started).
func (p *Pool) Members() []Member {
	p.mu.Lock()
	out := make([]Member, 0, len(p.members))
	for _, m := range p.members {
		out = append(out, m)
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Alive reports whether the member named is alive; known is false for a
// name the pool has never seen.
func (p *Pool) Alive(name string) (alive, known bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, known := p.members[name]
	return m.Alive, known
}

// Member returns the member named, live or known dead.
func (p *Pool) Member(name string) (Member, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.members[name]
	return m, ok
}

// MasterAPIs returns the API hosts (host:port) of the live masters, sorted.
// It is kept as members change, so calling it costs nothing; the caller
// must not modify the slice.
func (p *Pool) MasterAPIs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.apis
}

// masterAPIs computes MasterAPIs from the members.
func masterAPIs(members map[string]Member) []string {
	var apis []string
	for _, m := range members {
		if !m.Alive || !m.Meta.Master {
			continue
		}
		if u, err := url.Parse(m.Meta.API); err == nil && u.Host != "" {
			apis = append(apis, u.Host)
		}
	}
	slices.Sort(apis)
	return apis
}

// Changed receives a value whenever a member joins, leaves, dies or
// changes its metadata. Values are coalesced: one pending value stands for
// any number of changes.
func (p *Pool) Changed() <-chan struct{} { return p.changed }

// set records what memberlist reports of n. It copies n at once: memberlist
// changes its nodes in place later, under its own lock.
func (p *Pool) set(n *memberlist.Node, alive bool) {
	m := Member{Name: n.Name, Addr: net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port))), Alive: alive}
	_ = json.Unmarshal(n.Meta, &m.Meta) // a member that sends junk shows no roles
	p.mu.Lock()
	p.members[n.Name] = m
	p.apis = masterAPIs(p.members)
	p.mu.Unlock()
	p.cfg.Logger.Debug("gossip: member", "member", m.Name, "addr", m.Addr, "alive", alive)
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

// delegate gives memberlist this member's metadata.
type delegate struct{ p *Pool }

func (d delegate) NodeMeta(limit int) []byte {
	b, _ := json.Marshal(d.p.Meta()) // Validate and SetMeta checked the size
	return b
}
func (delegate) NotifyMsg([]byte)                           {}
func (delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (delegate) LocalState(join bool) []byte                { return nil }
func (delegate) MergeRemoteState(buf []byte, join bool)     {}

// events records member states.
type events struct{ p *Pool }

func (e events) NotifyJoin(n *memberlist.Node)   { e.p.set(n, true) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.p.set(n, false) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.p.set(n, true) }

// logWriter turns memberlist's log lines ("[INFO] memberlist: Suspect w1
// has failed, no acks received") into records at their level, so that
// suspicions and failures show in the log and chatter stays at debug.
type logWriter struct{ l *slog.Logger }

// logLevels maps memberlist's prefixes to levels; its errors are about
// other members, warnings here.
var logLevels = []struct {
	prefix string
	level  slog.Level
}{{"[ERR] ", slog.LevelWarn}, {"[WARN] ", slog.LevelWarn}, {"[INFO] ", slog.LevelInfo}, {"[DEBUG] ", slog.LevelDebug}}

func (w logWriter) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	level := slog.LevelDebug
	for _, l := range logLevels {
		if rest, ok := strings.CutPrefix(msg, l.prefix); ok {
			msg, level = strings.TrimPrefix(rest, "memberlist: "), l.level
			break
		}
	}
	w.l.Log(context.Background(), level, msg)
	return len(b), nil
}

// splitAddr splits host:port; the host may be empty (every address).
func splitAddr(addr string) (string, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("bad port in %q", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, n, nil
}

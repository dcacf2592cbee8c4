// Package join owns how a worker becomes part of the cluster and stays
// reachable to it: it joins the gossip pool with the key from a join token
// (controlplane/bootstrap), finds the masters' API servers from the pool's
// metadata, has a master sign the node's client and serving certificates
// (verifying the master against the CA hash in the token, never trusting
// anything unverified), keeps those credentials in the data directory for
// restarts, and then keeps the node's member of the pool running.
//
//	a, err := join.New(cfg)   // cfg from DefaultConfig: Join, Token, NodeName, NodeIP, DataDir
//	go a.Run(ctx)             // joins, then stays in the pool until ctx ends
//	<-a.Ready()               // closed once joined with valid credentials (or Run returned)
//	a.RESTConfig()            // client certificate; each request to a live master, failing over
//	a.StreamTLS()             // the stream endpoint's serving certificate, clients of the cluster CA
//	a.SetPodCIDR(cidr)        // announces the node's pod CIDR in the pool
//	a.Pool()                  // the node's running member of the gossip pool
//
// Credentials live in DataDir/pki (see the *File constants), written 0600.
// On restart they are reused without a join token while they are valid for
// the node's name and IP for longer than Config.RenewBefore; otherwise the
// worker needs a join token again. A wrong token is refused with a message
// that says which part was wrong: ErrGossipKeyRefused (another cluster's or
// a stale token), ErrTokenRejected (the bearer token is expired or
// unknown), bootstrap.ErrCAMismatch (the API server is not the cluster's).
package join

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/controlplane/bootstrap"
	"github.com/skiff-sh/skiff/controlplane/membership"
)

var (
	// ErrGossipKeyRefused is returned by Run when the master at Config.Join
	// keeps the gossip pool with another key than the join token's.
	ErrGossipKeyRefused = errors.New("the gossip pool refused the token's key")
	// ErrNoMaster is returned by Run when no master's API server was found
	// through Config.Join within Config.Timeout.
	ErrNoMaster = errors.New("join: no master found")
	// ErrTokenRejected is returned by Run when the API server refuses the
	// join token's bearer token (401).
	ErrTokenRejected = errors.New("join: join token rejected by the API server: expired or unknown")
	// ErrTokenRequired is returned by Run when the data directory holds no
	// valid credentials and Config.Token is empty.
	ErrTokenRequired = errors.New("join: a join token is required")
)

// Config configures an Agent.
type Config struct {
	// Join is a master's gossip address, host:port (`skiff agent --join`).
	Join string
	// Token is a join token (`skiff token create --join`). It may be empty
	// when DataDir holds valid credentials from an earlier join.
	Token    string
	NodeName string
	// NodeIP is the node's address: its member of the pool announces it
	// and its serving certificate is for it.
	NodeIP netip.Addr
	// GossipAddr is the node's gossip listener, host:port (TCP and UDP).
	// On every address (":7946") the member advertises NodeIP, so the port
	// must be fixed.
	GossipAddr string
	// DataDir is the agent's data directory; credentials go in DataDir/pki.
	DataDir string
	// Timeout bounds how long Run waits for a master through Join before it
	// fails with ErrNoMaster; with valid saved credentials, Run only warns
	// every Timeout and waits on (the masters may be down for a while).
	Timeout time.Duration
	// RenewBefore: saved certificates that expire within it are renewed by
	// joining again, with a join token.
	RenewBefore time.Duration
	// RejoinInterval is how often the pool re-joins the masters
	// (membership.Config's).
	RejoinInterval time.Duration
	// Pool, if set, is a running pool to use instead of joining one: the
	// master's own member in `skiff up`, with Worker in its metadata. Join
	// and GossipAddr are then ignored, Run does not stop it, and the token's
	// gossip key is not checked.
	Pool   *membership.Pool
	Logger *slog.Logger
}

// DefaultConfig returns a Config without Join, Token, NodeName, NodeIP and
// DataDir.
func DefaultConfig() Config {
	return Config{
		GossipAddr:     ":7946",
		Timeout:        time.Minute,
		RenewBefore:    30 * 24 * time.Hour,
		RejoinInterval: membership.DefaultConfig().RejoinInterval,
		Logger:         slog.Default(),
	}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	if errs := validation.IsDNS1123Subdomain(c.NodeName); len(errs) > 0 {
		return fmt.Errorf("join: config: NodeName %q: %v", c.NodeName, errs)
	}
	switch {
	case !c.NodeIP.IsValid() || c.NodeIP.IsUnspecified():
		return fmt.Errorf("join: config: NodeIP %v must be a host's address", c.NodeIP)
	case c.DataDir == "":
		return errors.New("join: config: DataDir is required")
	case c.Timeout <= 0 || c.RenewBefore < 0 || c.RejoinInterval <= 0:
		return errors.New("join: config: Timeout and RejoinInterval must be positive, RenewBefore not negative")
	case c.Logger == nil:
		return errors.New("join: config: Logger is required")
	}
	if c.Token != "" {
		if _, err := bootstrap.Parse(c.Token); err != nil {
			return fmt.Errorf("join: config: Token: %w", err)
		}
	}
	if c.Pool != nil {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.Join); err != nil {
		return fmt.Errorf("join: config: Join %q: want a master's gossip address, host:port: %w", c.Join, err)
	}
	host, port, err := net.SplitHostPort(c.GossipAddr)
	if err != nil {
		return fmt.Errorf("join: config: GossipAddr %q: %w", c.GossipAddr, err)
	}
	if ip := net.ParseIP(host); (host == "" || (ip != nil && ip.IsUnspecified())) && port == "0" {
		return fmt.Errorf("join: config: GossipAddr %q: a listener on every address needs a fixed port to advertise", c.GossipAddr)
	}
	return nil
}

// Agent is a worker's membership of the cluster.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	dir   string
	ready chan struct{}

	// Set once before ready is closed; read-only afterwards.
	pool    *membership.Pool
	rest    *rest.Config
	masters *masterSet // what RESTConfig's transports share
	stream  *tls.Config

	runOnce sync.Once
}

// New validates cfg.
func New(cfg Config) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Agent{cfg: cfg, log: cfg.Logger, dir: filepath.Join(cfg.DataDir, "pki"), ready: make(chan struct{})}, nil
}

// Ready is closed once Run has joined the pool and holds valid credentials;
// the accessors answer from then on. It is not closed when Run fails
// before.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Pool returns the node's member of the gossip pool once Ready, else nil.
// It runs until Run returns.
func (a *Agent) Pool() *membership.Pool {
	if !a.isReady() {
		return nil
	}
	return a.pool
}

// RESTConfig returns a new client configuration for the Kubernetes API once
// Ready, else nil: the node's client certificate (system:node:NodeName in
// system:nodes) and the cluster CA, with a transport that sends each
// request to a live master from the pool, trying the next one when a
// master cannot be reached.
func (a *Agent) RESTConfig() *rest.Config {
	if !a.isReady() {
		return nil
	}
	return rest.CopyConfig(a.rest)
}

// StreamTLS returns a new TLS configuration for the node's stream endpoint
// once Ready, else nil: its serving certificate, and client certificates
// required and verified against the cluster CA.
func (a *Agent) StreamTLS() *tls.Config {
	if !a.isReady() {
		return nil
	}
	return a.stream.Clone()
}

// SetPodCIDR announces the node's pod CIDR in its pool metadata, once
// Ready.
func (a *Agent) SetPodCIDR(cidr string) error {
	if !a.isReady() {
		return errors.New("join: SetPodCIDR before Ready")
	}
	m := a.pool.Meta()
	m.Worker, m.PodCIDR = true, cidr
	if m.NodeIP == "" {
		m.NodeIP = a.cfg.NodeIP.String()
	}
	return a.pool.SetMeta(m)
}

func (a *Agent) isReady() bool {
	select {
	case <-a.ready:
		return true
	default:
		return false
	}
}

// Run joins the cluster: it loads the saved credentials, joins the gossip
// pool, waits for a master's API, has a master sign new credentials when
// the saved ones are missing or expiring, and closes Ready. Then it keeps
// the pool running until ctx ends, and returns nil. A failure before Ready
// is returned (see the package's errors). Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	first := false
	a.runOnce.Do(func() { first = true })
	if !first {
		return errors.New("join: Run called twice")
	}
	creds, tok, err := a.startingPoint()
	if err != nil {
		return err
	}
	key := creds.gossipKey()
	if tok != nil {
		key = tok.GossipKey
	}

	pool, poolDone, stopPool, err := a.startPool(ctx, key)
	if err != nil {
		return err
	}
	defer stopPool()
	hosts, err := a.waitForMaster(ctx, pool, poolDone, creds != nil)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if creds == nil {
		if creds, err = a.requestCredentials(ctx, tok, hosts); err != nil {
			return err
		}
		if err := creds.save(a.dir); err != nil {
			return err
		}
		a.log.Info("joined the cluster: credentials signed and saved", "node", a.cfg.NodeName, "dir", a.dir)
	} else {
		a.log.Info("joined the gossip pool with saved credentials", "node", a.cfg.NodeName, "dir", a.dir, "expires", creds.expires())
	}
	a.rest, a.masters = creds.restConfig(a.cfg.NodeName, pool, hosts, a.log)
	if a.stream, err = creds.streamTLS(); err != nil {
		return err
	}
	a.pool = pool
	if a.cfg.Pool == nil {
		a.saveMasters(pool)
	}
	close(a.ready)

	select {
	case <-ctx.Done():
		return nil
	case err := <-poolDone:
		if err != nil {
			return err
		}
		return errors.New("join: the gossip pool stopped")
	}
}

// startingPoint returns the saved credentials if they are good for
// another RenewBefore (nil otherwise), and the parsed join token (nil when
// none is given). It fails when neither lets the node join.
func (a *Agent) startingPoint() (*credentials, *bootstrap.Token, error) {
	var tok *bootstrap.Token
	if a.cfg.Token != "" {
		t, err := bootstrap.Parse(a.cfg.Token)
		if err != nil {
			return nil, nil, err
		}
		tok = &t
	}
	creds, err := loadCredentials(a.dir)
	if err == nil {
		err = creds.check(a.cfg.NodeName, a.cfg.NodeIP, time.Now().Add(a.cfg.RenewBefore))
	}
	switch {
	case err == nil && tok != nil && bootstrap.HashCA(creds.ca) != tok.CAHash:
		return nil, nil, fmt.Errorf("join: the credentials saved in %s are of another cluster than the join token's; remove the directory to join this one", a.dir)
	case err == nil:
		return creds, tok, nil
	case tok == nil && errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("%w: no saved credentials in %s", ErrTokenRequired, a.dir)
	case tok == nil:
		return nil, nil, fmt.Errorf("%w: the credentials in %s cannot be used (%v)", ErrTokenRequired, a.dir, err)
	}
	a.log.Info("joining with the join token", "reason", err.Error())
	return nil, tok, nil
}

// startPool starts the node's member of the pool (or adopts Config.Pool)
// and returns it with the channel its Run's result arrives on and a
// function that stops it and waits.
func (a *Agent) startPool(ctx context.Context, key []byte) (*membership.Pool, <-chan error, func(), error) {
	if a.cfg.Pool != nil {
		// Never closed: the owner of the pool stops it.
		return a.cfg.Pool, make(chan error), func() {}, nil
	}
	cfg := membership.DefaultConfig()
	cfg.Name, cfg.BindAddr, cfg.Key, cfg.Logger = a.cfg.NodeName, a.cfg.GossipAddr, key, a.log
	cfg.RejoinInterval = a.cfg.RejoinInterval
	cfg.Meta = membership.Meta{Worker: true, NodeIP: a.cfg.NodeIP.String()}
	if host, port, _ := net.SplitHostPort(a.cfg.GossipAddr); host == "" || net.ParseIP(host).IsUnspecified() {
		cfg.AdvertiseAddr = net.JoinHostPort(a.cfg.NodeIP.String(), port)
	}
	var pool *membership.Pool
	// Every master the node has seen, so that a pool split by a partition
	// heals even when the master at Join is gone.
	cfg.Peers = func(context.Context) ([]string, error) { return a.seeds(pool), nil }
	pool, err := membership.New(cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("join: %w", err)
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	stopped := make(chan struct{})
	var result error
	go func() {
		result = pool.Run(pctx)
		done <- result
		close(stopped)
	}()
	return pool, done, func() { cancel(); <-stopped }, nil
}

// retryInterval is how often waitForMaster joins again.
const retryInterval = 500 * time.Millisecond

// waitForMaster returns the API hosts of the live masters once the pool
// knows one. It joins Config.Join explicitly to learn why a join fails:
// a refused key ends the wait at once, other failures are retried until
// Config.Timeout; a patient wait (a node with saved credentials, whose
// masters may be down for a while) only warns then, and goes on until ctx
// ends.
func (a *Agent) waitForMaster(ctx context.Context, pool *membership.Pool, poolDone <-chan error, patient bool) ([]string, error) {
	deadline := time.NewTimer(a.cfg.Timeout)
	defer deadline.Stop()
	var lastErr error
	for {
		if hosts := pool.MasterAPIs(); len(hosts) > 0 {
			return hosts, nil
		}
		if a.cfg.Pool == nil {
			for _, addr := range a.seeds(pool) {
				if _, err := pool.Join(ctx, []string{addr}); errors.Is(err, membership.ErrKeyRefused) {
					return nil, fmt.Errorf("join: the join token does not match the cluster at %s (%w)", addr, ErrGossipKeyRefused)
				} else if err != nil {
					lastErr = err
					a.log.Debug("joining the gossip pool", "addr", addr, "err", err)
				} else {
					break
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-deadline.C:
			if lastErr == nil {
				lastErr = errors.New("no member announces an API server")
			}
			// memberlist's errors span lines.
			err := fmt.Errorf("%w through %s within %v: %s", ErrNoMaster, a.cfg.Join, a.cfg.Timeout, strings.Join(strings.Fields(lastErr.Error()), " "))
			if !patient {
				return nil, err
			}
			a.log.Warn("still waiting for a master", "err", err)
			deadline.Reset(a.cfg.Timeout)
		case err := <-poolDone:
			return nil, fmt.Errorf("join: the gossip pool stopped: %w", err)
		case <-pool.Changed():
		case <-time.After(retryInterval):
		}
	}
}

// seeds returns the gossip addresses to join: Config.Join, the masters the
// pool knows (alive or not, so that a pool split by a partition heals even
// when the master at Join is gone), and the masters saved at the last join.
func (a *Agent) seeds(pool *membership.Pool) []string {
	out := []string{a.cfg.Join}
	add := func(addr string) {
		if addr != "" && !slices.Contains(out, addr) {
			out = append(out, addr)
		}
	}
	for _, m := range pool.Members() {
		if m.Meta.Master {
			add(m.Addr)
		}
	}
	if b, err := os.ReadFile(filepath.Join(a.dir, MastersFile)); err == nil {
		for _, addr := range strings.Fields(string(b)) {
			add(addr)
		}
	}
	return out
}

// saveMasters keeps the masters' gossip addresses for the next start.
func (a *Agent) saveMasters(pool *membership.Pool) {
	var addrs []string
	for _, m := range pool.Members() {
		if m.Meta.Master && m.Alive {
			addrs = append(addrs, m.Addr+"\n")
		}
	}
	if err := writeFile(filepath.Join(a.dir, MastersFile), []byte(strings.Join(addrs, ""))); err != nil {
		a.log.Warn("saving the masters' gossip addresses", "err", err)
	}
}

package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
	"github.com/skiff-sh/skiff/controlplane/internal/satoken"
	"github.com/skiff-sh/skiff/raftstore"
)

var (
	// ErrNoCredentials is returned by AuthenticateRequest for a request with
	// neither a verified client certificate nor an Authorization header: an
	// anonymous request.
	ErrNoCredentials = errors.New("authn: no credentials")
	// ErrInvalidToken is returned for an Authorization header that is not
	// "Bearer <token>", and for a token that is unknown, deleted or expired.
	ErrInvalidToken = errors.New("authn: invalid bearer token")
)

// errUnknownToken is ErrInvalidToken for a token the copy does not hold.
var errUnknownToken = fmt.Errorf("%w: unknown", ErrInvalidToken)

// maxTokenLen bounds the tokens worth hashing; ours are 47 bytes long.
const maxTokenLen = 1024

// Source is the part of the store the Authenticator reads: *raftstore.Store.
type Source interface {
	List(ctx context.Context, prefix string, o raftstore.ListOptions) (raftstore.ListResult, error)
	Watch(ctx context.Context, prefix string, from int64) (*raftstore.Watcher, error)
}

// Config configures an Authenticator.
type Config struct {
	// Store holds the token records, under TokenPrefix.
	Store Source
	// Now is the clock that expiry is checked against.
	Now    func() time.Time
	Logger *slog.Logger
	// RetryInterval is the longest wait between failed attempts to load the
	// tokens (the first waits are shorter).
	RetryInterval time.Duration
	// ServiceAccounts, if set, authenticates service account tokens
	// (JWTs, satoken.LooksLikeToken); an error refuses the request.
	ServiceAccounts func(ctx context.Context, token string) (name string, groups []string, err error)
}

// DefaultConfig returns a Config without Store.
func DefaultConfig() Config {
	return Config{Now: time.Now, Logger: slog.Default(), RetryInterval: time.Second}
}

// Validate reports the first problem with the configuration.
func (c *Config) Validate() error {
	switch {
	case c.Store == nil:
		return errors.New("authn: config: Store is required")
	case c.Now == nil:
		return errors.New("authn: config: Now is required")
	case c.RetryInterval <= 0:
		return errors.New("authn: config: RetryInterval must be positive")
	}
	return nil
}

// Authenticator tells who a request to the API comes from. It answers for
// bearer tokens from an in-memory copy of the token records, which Run loads
// with a linearizable list and then keeps current with a watch of this
// master's replica: a token deleted (or created) through any master stops
// (or starts) working here as soon as this replica applies the change, and
// a request with a known token costs no read of the store (an unknown one
// is looked up again; see AuthenticateRequest). Its methods are safe for
// concurrent use.
type Authenticator struct {
	cfg Config
	log *slog.Logger

	mu sync.RWMutex
	// byHash holds the current token records by their Hash, idHash maps
	// each ID to its Hash (a delete event carries only the key).
	byHash map[string]Token
	idHash map[string]string

	synced     chan struct{}
	syncedOnce sync.Once

	// Unknown tokens are looked up again in a fresh list (see fresh):
	// loading lets one list run at a time; next is the list the misses
	// arriving meanwhile wait for, not started yet.
	loading sync.Mutex
	nextMu  sync.Mutex
	next    *freshList
}

// freshList is one linearizable list of the token records for the misses
// that wait on it; done is closed once toks and err are set.
type freshList struct {
	done chan struct{}
	toks map[string]Token // by Hash
	err  error
}

// New validates cfg.
func New(cfg Config) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{
		cfg:    cfg,
		log:    cfg.Logger,
		byHash: map[string]Token{},
		idHash: map[string]string{},
		synced: make(chan struct{}),
	}, nil
}

// Synced returns a channel that is closed once Run has loaded the tokens for
// the first time. Until then no token authenticates.
func (a *Authenticator) Synced() <-chan struct{} { return a.synced }

// Run loads the token records (waiting for the store to have a leader) and
// follows their changes until ctx ends, then returns nil. When the watch
// falls behind the store's kept history it loads them again, keeping the
// previous copy in use meanwhile.
func (a *Authenticator) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		rev, err := a.load(ctx)
		if err == nil {
			backoff = 50 * time.Millisecond
			err = a.follow(ctx, rev)
		}
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("reloading bearer tokens", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, a.cfg.RetryInterval)
	}
}

// load replaces the copy with every token record, read linearizably, and
// returns the revision it was read at.
func (a *Authenticator) load(ctx context.Context) (int64, error) {
	byHash, idHash := map[string]Token{}, map[string]string{}
	toks, rev, err := listTokens(ctx, a.cfg.Store, raftstore.ReadOptions{}, func(key string, err error) {
		a.log.Error("ignoring a token record that does not decode", "key", key, "err", err)
	})
	if err != nil {
		return 0, err
	}
	for _, tok := range toks {
		byHash[tok.Hash], idHash[tok.ID] = tok, tok.Hash
	}
	a.mu.Lock()
	a.byHash, a.idHash = byHash, idHash
	a.mu.Unlock()
	a.syncedOnce.Do(func() { close(a.synced) })
	a.log.Debug("loaded bearer tokens", "count", len(toks), "rev", rev)
	return rev, nil
}

// follow applies the changes after rev until the watch fails or ctx ends.
func (a *Authenticator) follow(ctx context.Context, rev int64) error {
	w, err := a.cfg.Store.Watch(ctx, TokenPrefix, rev)
	if err != nil {
		return fmt.Errorf("authn: watch tokens from %d: %w", rev, err)
	}
	for {
		events, _, err := w.Next(ctx)
		if err != nil {
			return fmt.Errorf("authn: watch tokens: %w", err)
		}
		a.mu.Lock()
		for _, ev := range events {
			a.apply(ev)
		}
		a.mu.Unlock()
	}
}

// apply updates the copy with one event; the caller holds mu.
func (a *Authenticator) apply(ev raftstore.Event) {
	id := strings.TrimPrefix(ev.KV.Key, TokenPrefix)
	if h, ok := a.idHash[id]; ok {
		delete(a.byHash, h)
		delete(a.idHash, id)
	}
	if ev.Type != raftstore.EventPut {
		return
	}
	tok, err := decodeToken(ev.KV)
	if err != nil {
		// The old record is gone already: a record we cannot read authenticates nobody.
		a.log.Error("ignoring a token record that does not decode", "key", ev.KV.Key, "rev", ev.KV.ModRevision, "err", err)
		return
	}
	a.byHash[tok.Hash], a.idHash[tok.ID] = tok, tok.Hash
}

// AuthenticateToken returns the user of a bearer token: one of a stored
// record that has not expired. Otherwise it returns ErrInvalidToken.
func (a *Authenticator) AuthenticateToken(token string) (User, error) {
	if token == "" || len(token) > maxTokenLen {
		return User{}, fmt.Errorf("%w: malformed", ErrInvalidToken)
	}
	// The map is keyed by the hash, which reveals nothing about the token,
	// so a lookup's timing does not either; the final comparison is
	// constant-time all the same.
	a.mu.RLock()
	tok, ok := a.byHash[pki.HashToken(token)]
	a.mu.RUnlock()
	if !ok || !pki.TokenMatches(tok.Hash, token) {
		return User{}, errUnknownToken
	}
	if tok.Expired(a.cfg.Now()) {
		return User{}, fmt.Errorf("%w: token %s expired at %s", ErrInvalidToken, tok.ID, tok.Expires.Format(time.RFC3339))
	}
	return NewUser(tok.User, tok.Groups), nil
}

// AuthenticateRequest returns the user of r: the one of its verified client
// certificate (pki.Authenticate) if it has one, else the one of its bearer
// token (a service account token's through Config.ServiceAccounts). It returns ErrNoCredentials for a request with neither, and
// ErrInvalidToken when the Authorization header does not hold a valid
// bearer token.
//
// A token the copy does not know is looked for again in a linearizable list
// of the records before it is refused: a token created through another
// master a moment ago (`skiff token create`, then a join through this one)
// works at once, however far this replica lags. Concurrent misses share
// one list, so unknown tokens cost the store one read at a time.
func (a *Authenticator) AuthenticateRequest(r *http.Request) (User, error) {
	if name, groups, ok := pki.Authenticate(r.TLS); ok {
		return NewUser(name, groups), nil
	}
	header := r.Header.Get("Authorization")
	if header == "" {
		return User{}, ErrNoCredentials
	}
	token, err := BearerToken(header)
	if err != nil {
		return User{}, err
	}
	if a.cfg.ServiceAccounts != nil && satoken.LooksLikeToken(token) {
		name, groups, err := a.cfg.ServiceAccounts(r.Context(), token)
		if err != nil {
			return User{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
		}
		return NewUser(name, groups), nil
	}
	u, err := a.AuthenticateToken(token)
	if !errors.Is(err, errUnknownToken) {
		return u, err
	}
	return a.authenticateFresh(r.Context(), token, err)
}

// freshTimeout bounds the wait for a fresh list of the tokens.
const freshTimeout = 5 * time.Second

// authenticateFresh authenticates token against a linearizable list of the
// records that starts after the call; miss is the copy's error, returned
// when the list fails too.
func (a *Authenticator) authenticateFresh(ctx context.Context, token string, miss error) (User, error) {
	ctx, cancel := context.WithTimeout(ctx, freshTimeout)
	defer cancel()
	l := a.fresh()
	select {
	case <-l.done:
	case <-ctx.Done():
		return User{}, miss
	}
	if l.err != nil {
		a.log.Warn("listing the bearer tokens for an unknown token", "err", l.err)
		return User{}, miss
	}
	tok, ok := l.toks[pki.HashToken(token)]
	if !ok || !pki.TokenMatches(tok.Hash, token) {
		return User{}, miss
	}
	if tok.Expired(a.cfg.Now()) {
		return User{}, fmt.Errorf("%w: token %s expired at %s", ErrInvalidToken, tok.ID, tok.Expires.Format(time.RFC3339))
	}
	return NewUser(tok.User, tok.Groups), nil
}

// fresh returns a list that has not started yet, starting it if no other
// caller has: once it runs (after any list in flight), the callers that
// share it have all called fresh before it read the store.
func (a *Authenticator) fresh() *freshList {
	a.nextMu.Lock()
	defer a.nextMu.Unlock()
	if a.next != nil {
		return a.next
	}
	l := &freshList{done: make(chan struct{})}
	a.next = l
	go func() {
		a.loading.Lock()
		defer a.loading.Unlock()
		a.nextMu.Lock()
		a.next = nil // later misses wait for the next list
		a.nextMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), freshTimeout)
		defer cancel()
		toks, _, err := listTokens(ctx, a.cfg.Store, raftstore.ReadOptions{}, func(string, error) {})
		l.toks, l.err = make(map[string]Token, len(toks)), err
		for _, tok := range toks {
			l.toks[tok.Hash] = tok
		}
		close(l.done)
	}()
	return l
}

// BearerToken returns the token of an Authorization header value of the form
// "Bearer <token>" (the scheme is case-insensitive), or ErrInvalidToken.
func BearerToken(header string) (string, error) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", fmt.Errorf("%w: the Authorization header is not \"Bearer <token>\"", ErrInvalidToken)
	}
	token = strings.TrimSpace(token)
	if token == "" || strings.ContainsAny(token, " \t") {
		return "", fmt.Errorf("%w: malformed bearer token", ErrInvalidToken)
	}
	return token, nil
}

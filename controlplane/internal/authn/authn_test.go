package authn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/apitest"
	"github.com/skiff-sh/skiff/controlplane/internal/pki"
	"github.com/skiff-sh/skiff/raftstore"
	"github.com/skiff-sh/skiff/raftstore/storetest"
)

// clock is a settable clock for expiry tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// startAuthenticator runs an Authenticator over src until the test ends and
// waits until it has loaded the tokens.
func startAuthenticator(t *testing.T, src Source, now func() time.Time) *Authenticator {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Store, cfg.Now, cfg.RetryInterval = src, now, 100*time.Millisecond
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Authenticator.Run: %v", err)
		}
	})
	select {
	case <-a.Synced():
	case err := <-done:
		t.Fatalf("Authenticator.Run returned before loading the tokens: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the Authenticator did not load the tokens within 20s")
	}
	return a
}

var waitFor = apitest.WaitFor

func TestCreateListDeleteTokens(t *testing.T) {
	s := storetest.Start(t, "")
	ctx := t.Context()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

	secret, tok, err := CreateToken(ctx, s, TokenSpec{User: " jane ", Groups: []string{"dev", " ops", "dev"}, TTL: time.Hour, Description: "for CI"}, now)
	if err != nil {
		t.Fatalf("CreateToken: %v", err)
	}
	if !strings.HasPrefix(secret, pki.TokenPrefix) {
		t.Errorf("CreateToken: got token %q, want the prefix %q", secret, pki.TokenPrefix)
	}
	want := Token{ID: tok.ID, Hash: pki.HashToken(secret), User: "jane", Groups: []string{"dev", "ops"}, Description: "for CI", Created: now, Expires: now.Add(time.Hour)}
	if !tokenEqual(tok, want) {
		t.Errorf("CreateToken: got record %+v, want %+v", tok, want)
	}
	if !validID(tok.ID) {
		t.Errorf("CreateToken: got ID %q, want %d hex digits", tok.ID, 2*idBytes)
	}
	forever, tok2, err := CreateToken(ctx, s, TokenSpec{User: "bot"}, now)
	if err != nil {
		t.Fatalf("CreateToken without TTL: %v", err)
	}
	if !tok2.Expires.IsZero() || tok2.Expired(now.Add(100*365*24*time.Hour)) {
		t.Errorf("CreateToken without TTL: got expiry %v, want none", tok2.Expires)
	}
	if forever == secret || tok2.ID == tok.ID || tok2.Hash == tok.Hash {
		t.Errorf("two CreateToken calls: got the same token, ID or hash (%s, %s)", tok.ID, tok2.ID)
	}

	// Only the hash is at rest: no stored value anywhere holds either token,
	// or the random part of it.
	all, err := s.List(ctx, "", raftstore.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var records int
	for _, kv := range all.KVs {
		for _, sec := range []string{secret, forever} {
			if strings.Contains(string(kv.Value), strings.TrimPrefix(sec, pki.TokenPrefix)) || strings.Contains(kv.Key, strings.TrimPrefix(sec, pki.TokenPrefix)) {
				t.Errorf("stored key %s holds a raw token: %q", kv.Key, kv.Value)
			}
		}
		if strings.HasPrefix(kv.Key, TokenPrefix) {
			records++
			if !strings.Contains(string(kv.Value), `"hash":"`) {
				t.Errorf("stored record %s = %q, want a hash field", kv.Key, kv.Value)
			}
		}
	}
	if records != 2 {
		t.Errorf("got %d records under %s, want 2", records, TokenPrefix)
	}

	got, err := ListTokens(ctx, s)
	if err != nil {
		t.Fatalf("ListTokens: %v", err)
	}
	wantList := []Token{want, tok2}
	slices.SortFunc(wantList, func(a, b Token) int { return strings.Compare(a.ID, b.ID) })
	if !slices.EqualFunc(got, wantList, tokenEqual) {
		t.Errorf("ListTokens: got %+v, want %+v", got, wantList)
	}

	if err := DeleteToken(ctx, s, tok.ID); err != nil {
		t.Fatalf("DeleteToken: %v", err)
	}
	for _, id := range []string{tok.ID, "000000000000", "../../ca", "", strings.ToUpper(tok2.ID)} {
		if err := DeleteToken(ctx, s, id); !errors.Is(err, ErrTokenNotFound) {
			t.Errorf("DeleteToken(%q): got %v, want ErrTokenNotFound", id, err)
		}
	}
	if got, err := ListTokens(ctx, s); err != nil || len(got) != 1 || got[0].ID != tok2.ID {
		t.Errorf("ListTokens after delete: got %+v, %v; want only %s", got, err, tok2.ID)
	}

	for _, spec := range []TokenSpec{{User: ""}, {User: "  "}, {User: "x", TTL: -time.Second}, {User: "x", Groups: []string{"a", " "}}} {
		if _, _, err := CreateToken(ctx, s, spec, now); !errors.Is(err, ErrInvalidTokenSpec) {
			t.Errorf("CreateToken(%+v): got %v, want ErrInvalidTokenSpec", spec, err)
		}
	}
	if got, _ := ListTokens(ctx, s); len(got) != 1 {
		t.Errorf("refused specs wrote records: got %d tokens, want 1", len(got))
	}

	// A record that does not decode is reported, and the others still listed.
	if _, err := s.Create(ctx, TokenPrefix+"0123456789ab", []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if got, err := ListTokens(ctx, s); err == nil || len(got) != 1 {
		t.Errorf("ListTokens with a broken record: got %d tokens, %v; want 1 token and an error", len(got), err)
	}
}

func tokenEqual(a, b Token) bool {
	return a.ID == b.ID && a.Hash == b.Hash && a.User == b.User && slices.Equal(a.Groups, b.Groups) &&
		a.Description == b.Description && a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires)
}

func TestAuthenticateToken(t *testing.T) {
	s := storetest.Start(t, "")
	ctx := t.Context()
	clk := &clock{now: time.Now()}
	jane, _, err := CreateToken(ctx, s, TokenSpec{User: "jane", Groups: []string{"dev"}}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	short, shortTok, err := CreateToken(ctx, s, TokenSpec{User: "temp", TTL: time.Minute}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := startAuthenticator(t, s, clk.Now)

	check := func(token string, wantUser string, wantGroups ...string) {
		t.Helper()
		u, err := a.AuthenticateToken(token)
		if wantUser == "" {
			if !errors.Is(err, ErrInvalidToken) {
				t.Errorf("AuthenticateToken(%.12q...): got %+v, %v; want ErrInvalidToken", token, u, err)
			}
			return
		}
		if err != nil || u.Name != wantUser || !slices.Equal(u.Groups, wantGroups) {
			t.Errorf("AuthenticateToken(%.12q...): got %+v, %v; want %s in %v", token, u, err, wantUser, wantGroups)
		}
	}
	check(jane, "jane", "dev", GroupAuthenticated)
	check(short, "temp", GroupAuthenticated)
	check(pki.NewToken(), "")      // wrong: a token of the right form that was never issued
	check(jane+"x", "")            // a suffix
	check(jane[:len(jane)-1], "")  // truncated
	check(pki.HashToken(jane), "") // the stored hash is not a credential
	check("", "")
	check(strings.Repeat("a", maxTokenLen+1), "")

	// Expiry is checked against the clock at each request.
	clk.Advance(time.Minute - time.Second)
	check(short, "temp", GroupAuthenticated)
	clk.Advance(time.Second)
	if _, err := a.AuthenticateToken(short); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), shortTok.ID) {
		t.Errorf("AuthenticateToken(expired): got %v, want ErrInvalidToken naming %s", err, shortTok.ID)
	}
	check(jane, "jane", "dev", GroupAuthenticated)

	// A token created after the load starts working; a deleted one stops,
	// through the watch.
	late, lateTok, err := CreateToken(ctx, s, TokenSpec{User: "late"}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a new token to authenticate", func() error {
		_, err := a.AuthenticateToken(late)
		return err
	})
	if err := DeleteToken(ctx, s, lateTok.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Second, "a deleted token to stop authenticating", func() error {
		if _, err := a.AuthenticateToken(late); !errors.Is(err, ErrInvalidToken) {
			return errors.New("still accepted")
		}
		return nil
	})
	check(jane, "jane", "dev", GroupAuthenticated)

	// A record rewritten with garbage authenticates nobody.
	janeRec, err := ListTokens(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range janeRec {
		if tok.User == "jane" {
			if _, _, err := s.Put(ctx, TokenPrefix+tok.ID, []byte("garbage")); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, 2*time.Second, "a garbled record to stop authenticating", func() error {
		if _, err := a.AuthenticateToken(jane); !errors.Is(err, ErrInvalidToken) {
			return errors.New("still accepted")
		}
		return nil
	})
}

func TestAuthenticateRequest(t *testing.T) {
	s := storetest.Start(t, "")
	ctx := t.Context()
	secret, _, err := CreateToken(ctx, s, TokenSpec{User: "jane", Groups: []string{"dev"}}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := startAuthenticator(t, s, time.Now)
	cert := clientCert(t, "cert-user", "ops")

	tests := []struct {
		name    string
		header  []string
		tls     *tls.ConnectionState
		want    string
		wantErr error
	}{
		{"bearer token", []string{"Bearer " + secret}, nil, "jane", nil},
		{"scheme in lower case", []string{"bearer " + secret}, nil, "jane", nil},
		{"anonymous", nil, nil, "", ErrNoCredentials},
		{"TLS without a certificate", nil, &tls.ConnectionState{}, "", ErrNoCredentials},
		{"unknown token", []string{"Bearer " + pki.NewToken()}, nil, "", ErrInvalidToken},
		{"no token", []string{"Bearer"}, nil, "", ErrInvalidToken},
		{"blank token", []string{"Bearer   "}, nil, "", ErrInvalidToken},
		{"two tokens", []string{"Bearer " + secret + " " + secret}, nil, "", ErrInvalidToken},
		{"basic auth", []string{"Basic amFuZTpwdw=="}, nil, "", ErrInvalidToken},
		{"token without scheme", []string{secret}, nil, "", ErrInvalidToken},
		{"certificate", nil, cert, "cert-user", nil},
		// The certificate decides, as with kube-apiserver's union of authenticators.
		{"certificate and a bogus token", []string{"Bearer nope"}, cert, "cert-user", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/api", nil)
			for _, h := range tt.header {
				r.Header.Add("Authorization", h)
			}
			r.TLS = tt.tls
			u, err := a.AuthenticateRequest(r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %+v, %v; want %v", u, err, tt.wantErr)
				}
				return
			}
			if err != nil || u.Name != tt.want || !slices.Contains(u.Groups, GroupAuthenticated) {
				t.Fatalf("got %+v, %v; want %s in %s", u, err, tt.want, GroupAuthenticated)
			}
			ctx := WithUser(context.Background(), u)
			if got, ok := UserFrom(ctx); !ok || got.Name != u.Name {
				t.Fatalf("UserFrom(WithUser(%+v)) = %+v, %v", u, got, ok)
			}
		})
	}
	if u, ok := UserFrom(context.Background()); ok {
		t.Errorf("UserFrom(Background) = %+v, true; want false", u)
	}
}

// clientCert returns the connection state of a handshake that verified a
// client certificate for user in group.
func clientCert(t *testing.T, user, group string) *tls.ConnectionState {
	t.Helper()
	certPEM, keyPEM, err := pki.GenerateCA()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	leafPEM, _, err := ca.IssueClient(user, []string{group}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(leafPEM)
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{leaf, ca.Certificate()}}}
}

// gatedSource holds the first Watch until gate is closed.
type gatedSource struct {
	*raftstore.Store
	gate    chan struct{}
	watches chan int64
}

func (g *gatedSource) Watch(ctx context.Context, prefix string, from int64) (*raftstore.Watcher, error) {
	select {
	case g.watches <- from:
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	default:
	}
	return g.Store.Watch(ctx, prefix, from)
}

// TestReloadAfterLostHistory: when the changes after the load are no longer
// kept by the time the watch starts, the Authenticator loads the tokens again
// rather than keep a deleted one.
func TestReloadAfterLostHistory(t *testing.T) {
	cfg := storetest.Config(t.TempDir())
	cfg.WatchHistory = 1
	s, err := raftstore.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("raftstore Run: %v", err)
		}
	})
	ctx := t.Context()
	secret, tok, err := CreateToken(ctx, s, TokenSpec{User: "jane"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	src := &gatedSource{Store: s, gate: make(chan struct{}), watches: make(chan int64, 1)}
	a := startAuthenticator(t, src, time.Now)
	if _, err := a.AuthenticateToken(secret); err != nil {
		t.Fatalf("AuthenticateToken after load: %v", err)
	}
	var from int64
	select {
	case from = <-src.watches:
	case <-time.After(5 * time.Second):
		t.Fatal("the Authenticator did not start watching within 5s")
	}
	if err := DeleteToken(ctx, s, tok.ID); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, _, err := s.Put(ctx, "/other", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Watch(ctx, TokenPrefix, from); err == nil {
		t.Fatalf("a watch from %d still works; the test needs that history gone", from)
	}
	close(src.gate)
	waitFor(t, 5*time.Second, "the deleted token to stop authenticating after a reload", func() error {
		if _, err := a.AuthenticateToken(secret); !errors.Is(err, ErrInvalidToken) {
			return errors.New("still accepted")
		}
		return nil
	})
}

// deaf is a token source whose watches see nothing: an Authenticator over
// it keeps the copy of its first load, like one on a replica that lags.
type deaf struct {
	*raftstore.Store
	lists atomic.Int32
}

func (d *deaf) Watch(ctx context.Context, _ string, from int64) (*raftstore.Watcher, error) {
	return d.Store.Watch(ctx, "/authn-test-nothing/", from)
}

func (d *deaf) List(ctx context.Context, prefix string, o raftstore.ListOptions) (raftstore.ListResult, error) {
	d.lists.Add(1)
	return d.Store.List(ctx, prefix, o)
}

// TestAuthenticateRequestUnknownToken: a token this replica's copy does not
// know yet (created through another master a moment ago) authenticates a
// request, after a linearizable list; a token no one issued, and an
// expired one, still do not. Concurrent misses share lists.
func TestAuthenticateRequestUnknownToken(t *testing.T) {
	s := storetest.Start(t, "")
	ctx := t.Context()
	clk := &clock{now: time.Now()}
	src := &deaf{Store: s}
	a := startAuthenticator(t, src, clk.Now)

	late, _, err := CreateToken(ctx, s, TokenSpec{User: "late", Groups: []string{"dev"}}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	short, shortTok, err := CreateToken(ctx, s, TokenSpec{User: "temp", TTL: time.Minute}, clk.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AuthenticateToken(late); !errors.Is(err, ErrInvalidToken) {
		t.Fatalf("the copy knows the new token (%v): the test needs one that lags", err)
	}
	request := func(token string) (User, error) {
		r := httptest.NewRequest("GET", "/api", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		return a.AuthenticateRequest(r)
	}
	if u, err := request(late); err != nil || u.Name != "late" || !slices.Equal(u.Groups, []string{"dev", GroupAuthenticated}) {
		t.Errorf("a token created after the load: got %+v, %v; want late in [dev %s]", u, err, GroupAuthenticated)
	}
	if u, err := request(pki.NewToken()); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("a token never issued: got %+v, %v; want ErrInvalidToken", u, err)
	}
	clk.Advance(time.Minute)
	if _, err := request(short); !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), shortTok.ID) {
		t.Errorf("an expired token the copy does not know: got %v, want ErrInvalidToken naming %s", err, shortTok.ID)
	}

	before := src.lists.Load()
	const misses = 32
	var wg sync.WaitGroup
	for range misses {
		wg.Go(func() {
			if _, err := request(pki.NewToken()); !errors.Is(err, ErrInvalidToken) {
				t.Errorf("a token never issued: got %v, want ErrInvalidToken", err)
			}
		})
	}
	wg.Wait()
	lists := src.lists.Load() - before
	t.Logf("%d concurrent unknown tokens: %d lists", misses, lists)
	if lists < 1 || lists > misses {
		t.Errorf("%d concurrent unknown tokens made %d lists, want between 1 and %d", misses, lists, misses)
	}
}

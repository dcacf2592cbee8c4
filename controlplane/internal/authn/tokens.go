// Package authn owns who a request to the Kubernetes API comes from: the
// bearer tokens kept in the replicated store (only their hashes, under
// TokenPrefix), the Authenticator that answers for them from an in-memory
// copy of that prefix kept current by a watch, and the User that the API
// server records in each request's context.
//
// Admin verbs manage tokens through any KV (a *raftstore.Store or a remote
// *raftstore.Client):
//
//	secret, tok, err := authn.CreateToken(ctx, kv, authn.TokenSpec{User: "jane", TTL: time.Hour}, time.Now())
//	toks, err := authn.ListTokens(ctx, kv)
//	err = authn.DeleteToken(ctx, kv, tok.ID)
//
// A master authenticates with an Authenticator over its own store:
//
//	a, err := authn.New(cfg)           // cfg from DefaultConfig, with Store set
//	go a.Run(ctx)                      // loads the tokens, then follows changes
//	<-a.Synced()                       // closed once the first load is done
//	user, err := a.AuthenticateRequest(r)
//	r = r.WithContext(authn.WithUser(r.Context(), user))
package authn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
	"github.com/skiff-sh/skiff/raftstore"
)

// TokenPrefix is the store prefix under which every token record lives, keyed
// by its ID.
const TokenPrefix = "/skiff/tokens/"

var (
	// ErrTokenNotFound is returned by DeleteToken when no token has the ID.
	ErrTokenNotFound = errors.New("authn: no such token")
	// ErrInvalidTokenSpec is returned by CreateToken for a spec it refuses
	// (empty user, negative TTL, bad group); nothing is written.
	ErrInvalidTokenSpec = errors.New("authn: invalid token")
)

// Token is the stored record of a bearer token. It holds the token's
// pki.HashToken, never the token itself.
type Token struct {
	// ID names the token in `skiff token list` and `skiff token delete`;
	// it is not secret.
	ID string `json:"id"`
	// Hash is the hex SHA-256 of the token (pki.HashToken).
	Hash        string    `json:"hash"`
	User        string    `json:"user"`
	Groups      []string  `json:"groups,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// Expires is when the token stops authenticating; zero means never.
	Expires time.Time `json:"expires,omitzero"`
}

// Expired reports whether the token no longer authenticates at now.
func (t *Token) Expired(now time.Time) bool {
	return !t.Expires.IsZero() && !now.Before(t.Expires)
}

// TokenSpec is what CreateToken is asked for.
type TokenSpec struct {
	User   string
	Groups []string
	// TTL is how long the token authenticates; 0 means forever.
	TTL         time.Duration
	Description string
}

// KV is the part of the store that token management uses; *raftstore.Store
// and *raftstore.Client both provide it.
type KV interface {
	Create(ctx context.Context, key string, value []byte) (int64, error)
	List(ctx context.Context, prefix string, o raftstore.ListOptions) (raftstore.ListResult, error)
	Delete(ctx context.Context, key string, expected int64) (raftstore.KeyValue, int64, error)
}

// idBytes is how many random bytes a token ID has (twice as many hex digits).
const idBytes = 6

// CreateToken makes a new token for spec, created at now, stores its record
// and returns the token (the only time it exists outside the client) and the
// record. A write whose outcome is unknown returns raftstore.ErrUnknownOutcome:
// list the tokens to see whether it landed, and delete it if so.
func CreateToken(ctx context.Context, kv KV, spec TokenSpec, now time.Time) (string, Token, error) {
	user := strings.TrimSpace(spec.User)
	if user == "" {
		return "", Token{}, fmt.Errorf("%w: the user name is empty", ErrInvalidTokenSpec)
	}
	if spec.TTL < 0 {
		return "", Token{}, fmt.Errorf("%w: negative TTL %v", ErrInvalidTokenSpec, spec.TTL)
	}
	var groups []string
	for _, g := range spec.Groups {
		if g = strings.TrimSpace(g); g == "" {
			return "", Token{}, fmt.Errorf("%w: an empty group name", ErrInvalidTokenSpec)
		}
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	secret := pki.NewToken()
	tok := Token{
		Hash:        pki.HashToken(secret),
		User:        user,
		Groups:      groups,
		Description: spec.Description,
		Created:     now.UTC().Truncate(time.Second),
	}
	if spec.TTL > 0 {
		tok.Expires = now.Add(spec.TTL).UTC().Truncate(time.Second)
	}
	// IDs are random; on the rare collision, draw another.
	for attempt := 0; ; attempt++ {
		var b [idBytes]byte
		rand.Read(b[:]) // crypto/rand.Read never fails; it crashes the program instead.
		tok.ID = hex.EncodeToString(b[:])
		value, err := json.Marshal(tok)
		if err != nil {
			return "", Token{}, fmt.Errorf("authn: encode token: %w", err)
		}
		_, err = kv.Create(ctx, TokenPrefix+tok.ID, value)
		if errors.Is(err, raftstore.ErrKeyExists) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", Token{}, fmt.Errorf("authn: store token %s: %w", tok.ID, err)
		}
		return secret, tok, nil
	}
}

// ListTokens returns every stored token record in ID order, expired ones
// included. The read is linearizable. Records that do not decode are left
// out and reported in the error, next to the records that do.
func ListTokens(ctx context.Context, kv KV) ([]Token, error) {
	var bad []error
	toks, _, err := listTokens(ctx, kv, raftstore.ReadOptions{}, func(_ string, err error) { bad = append(bad, err) })
	if err != nil {
		return nil, err
	}
	return toks, errors.Join(bad...)
}

// DeleteToken removes the token with the given ID, or returns
// ErrTokenNotFound. Once the delete has been applied on a master, that master
// no longer accepts the token.
func DeleteToken(ctx context.Context, kv KV, id string) error {
	if !validID(id) {
		return fmt.Errorf("%w: %q is not a token ID", ErrTokenNotFound, id)
	}
	if _, _, err := kv.Delete(ctx, TokenPrefix+id, 0); err != nil {
		if errors.Is(err, raftstore.ErrKeyNotFound) {
			return fmt.Errorf("%w: %s", ErrTokenNotFound, id)
		}
		return fmt.Errorf("authn: delete token %s: %w", id, err)
	}
	return nil
}

// validID reports whether id has the form of the IDs CreateToken draws, so
// that no argument addresses a key outside one token record.
func validID(id string) bool {
	if len(id) != 2*idBytes {
		return false
	}
	_, err := hex.DecodeString(id)
	return err == nil && strings.ToLower(id) == id
}

// lister is the read that listTokens needs.
type lister interface {
	List(ctx context.Context, prefix string, o raftstore.ListOptions) (raftstore.ListResult, error)
}

// listTokens reads every token record with o, paging through the prefix, and
// returns them with the revision they were read at. It passes each record
// that does not decode to bad and leaves it out.
func listTokens(ctx context.Context, l lister, o raftstore.ReadOptions, bad func(key string, err error)) ([]Token, int64, error) {
	var toks []Token
	lo := raftstore.ListOptions{ReadOptions: o, Limit: 500}
	for {
		page, err := l.List(ctx, TokenPrefix, lo)
		if err != nil {
			return nil, 0, fmt.Errorf("authn: list tokens: %w", err)
		}
		for _, kv := range page.KVs {
			tok, err := decodeToken(kv)
			if err != nil {
				bad(kv.Key, err)
				continue
			}
			toks = append(toks, tok)
		}
		if !page.More || len(page.KVs) == 0 {
			return toks, page.Revision, nil
		}
		lo.Revision, lo.After = page.Revision, page.KVs[len(page.KVs)-1].Key
	}
}

// decodeToken reads a stored token record and checks that its key and ID agree.
func decodeToken(kv raftstore.KeyValue) (Token, error) {
	var tok Token
	if err := json.Unmarshal(kv.Value, &tok); err != nil {
		return Token{}, fmt.Errorf("authn: token record %s: %w", kv.Key, err)
	}
	if TokenPrefix+tok.ID != kv.Key {
		return Token{}, fmt.Errorf("authn: token record %s: holds ID %q", kv.Key, tok.ID)
	}
	return tok, nil
}

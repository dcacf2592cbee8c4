package pki_test

import (
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/controlplane/internal/pki"
)

func TestTokens(t *testing.T) {
	const n = 50
	tokens := make([]string, n)
	hashes := make([]string, n)
	seen := map[string]bool{}
	for i := range tokens {
		tok := pki.NewToken()
		if !strings.HasPrefix(tok, pki.TokenPrefix) || len(tok) != len(pki.TokenPrefix)+43 {
			t.Fatalf("NewToken: got %q, want %q and 43 base64url characters", tok, pki.TokenPrefix)
		}
		if seen[tok] {
			t.Fatalf("NewToken: got %q twice, want distinct tokens", tok)
		}
		seen[tok] = true
		tokens[i], hashes[i] = tok, pki.HashToken(tok)
		if strings.Contains(hashes[i], tok[len(pki.TokenPrefix):]) {
			t.Fatalf("HashToken(%q): got %q, which contains the token", tok, hashes[i])
		}
	}
	for i, h := range hashes {
		for j, tok := range tokens {
			if got, want := pki.TokenMatches(h, tok), i == j; got != want {
				t.Errorf("TokenMatches(hash %d, token %d): got %v, want %v", i, j, got, want)
			}
		}
	}

	tok, h := tokens[0], hashes[0]
	tests := []struct {
		name         string
		stored, cand string
	}{
		{"empty token", h, ""},
		{"token without its last character", h, tok[:len(tok)-1]},
		{"token with a suffix", h, tok + "x"},
		{"token itself stored instead of its hash", tok, tok},
		{"truncated hash", h[:32], tok},
		{"not hex", strings.Repeat("z", 64), tok},
		{"empty hash", "", ""},
	}
	for _, tt := range tests {
		if pki.TokenMatches(tt.stored, tt.cand) {
			t.Errorf("TokenMatches(%s): got true, want false", tt.name)
		}
	}
	if got, want := pki.HashToken(tok), pki.HashToken(tok); got != want {
		t.Errorf("HashToken twice: got %q, want %q", got, want)
	}
}

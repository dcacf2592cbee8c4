package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
)

// TokenPrefix starts every token NewToken returns, so that a leaked token is
// recognizable (secret scanners, logs).
const TokenPrefix = "skf_"

// NewToken returns a new bearer or join token: TokenPrefix followed by 32
// random bytes in unpadded base64url. Store only its HashToken.
func NewToken() string {
	var b [32]byte
	rand.Read(b[:]) // crypto/rand.Read never fails; it crashes the program instead.
	return TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// HashToken returns the hex SHA-256 of token: the only form in which a token
// is stored. Tokens are 256-bit random, so an unsalted fast hash suffices.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// TokenMatches reports whether presented is the token whose HashToken is
// storedHash. It compares the hashes in constant time; a storedHash that is
// not a hex SHA-256 matches nothing.
func TokenMatches(storedHash, presented string) bool {
	want, err := hex.DecodeString(storedHash)
	if err != nil || len(want) != sha256.Size {
		return false
	}
	got := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(got[:], want) == 1
}

// Package auth holds the dashboard's credentials: argon2id password hashes
// (RFC 9106, stored as PHC strings), TOTP second factors (RFC 6238) and
// random session tokens. It knows nothing of HTTP or of the store.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Argon2id parameters: RFC 9106's second recommended option (64 MiB, 3
// passes, 4 lanes). A login costs about 50 ms of one core; an attacker
// with a copy of the database pays the same per guess.
const (
	argonMemory  = 64 * 1024 // KiB
	argonTime    = 3
	argonThreads = 4
	argonKeyLen  = 32
	argonSaltLen = 16
)

// Password length limits: short ones are guessed; very long ones would let
// a caller make argon2 hash megabytes.
const (
	MinPasswordLength = 12
	MaxPasswordLength = 256
)

// ErrMismatch: the password is not the one hashed.
var ErrMismatch = errors.New("password does not match")

// CheckPasswordPolicy says what is wrong with a new password, if anything.
func CheckPasswordPolicy(p string) error {
	n := utf8.RuneCountInString(p)
	switch {
	case n < MinPasswordLength:
		return fmt.Errorf("password: want at least %d characters", MinPasswordLength)
	case len(p) > MaxPasswordLength:
		return fmt.Errorf("password: want at most %d bytes", MaxPasswordLength)
	case strings.TrimSpace(p) == "":
		return errors.New("password: blank")
	}
	return nil
}

// HashPassword returns the PHC string of an argon2id hash of p with a
// fresh salt.
func HashPassword(p string) (string, error) {
	if err := CheckPasswordPolicy(p); err != nil {
		return "", err
	}
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	sum := argon2.IDKey([]byte(p), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

// VerifyPassword checks p against a PHC string made by HashPassword (with
// whatever parameters it was made). ErrMismatch when p is wrong.
func VerifyPassword(phc, p string) error {
	if len(p) > MaxPasswordLength {
		return ErrMismatch
	}
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return errors.New("password hash: not an argon2id PHC string")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return fmt.Errorf("password hash: version %q not supported", parts[2])
	}
	var mem, t uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &threads); err != nil {
		return fmt.Errorf("password hash: parameters %q: %w", parts[3], err)
	}
	// Refuse parameters no hash of ours has: a tampered row must not make
	// a login allocate gigabytes.
	if mem < 8*1024 || mem > 1024*1024 || t < 1 || t > 16 || threads < 1 {
		return fmt.Errorf("password hash: parameters %q out of range", parts[3])
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return errors.New("password hash: bad salt")
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 64 {
		return errors.New("password hash: bad hash")
	}
	got := argon2.IDKey([]byte(p), salt, t, mem, threads, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}

// dummyHash is verified against when a login names no known user, so that
// an unknown email takes as long as a wrong password (no user enumeration
// by timing).
const dummyHash = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$0000000000000000000000000000000000000000000"

// BurnPasswordCheck spends the time of one password check.
func BurnPasswordCheck(p string) { _ = VerifyPassword(dummyHash, p) }

// NewToken returns n random bytes, base64url without padding: session
// cookies and CSRF tokens.
func NewToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Package seal encrypts secrets at rest (AES-256-GCM): the control plane
// seals bots' target URIs, which carry passwords, before they reach the
// store.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

// EnvKey names the environment variable that may hold the key (base64), so
// that replicas share one key without a file.
const EnvKey = "EMSIGN_CP_SECRET_KEY"

// version prefixes every sealed value, so that the format can change.
const version byte = 1

// Sealer seals and opens values with one key.
type Sealer struct {
	aead cipher.AEAD
}

// New makes a Sealer from a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext bound to aad (e.g. the owning object's ID: a value
// copied onto another object does not open there).
func (s *Sealer) Seal(plaintext, aad []byte) ([]byte, error) {
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	out := append([]byte{version}, nonce...)
	return s.aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts what Seal made with the same aad.
func (s *Sealer) Open(sealed, aad []byte) ([]byte, error) {
	n := s.aead.NonceSize()
	if len(sealed) < 1+n+s.aead.Overhead() || sealed[0] != version {
		return nil, errors.New("open sealed value: not a sealed value")
	}
	p, err := s.aead.Open(nil, sealed[1:1+n], sealed[1+n:], aad)
	if err != nil {
		return nil, errors.New("open sealed value: wrong key or altered data")
	}
	return p, nil
}

// LoadKey returns the key: from envValue (the base64 content of EnvKey) when
// it is not empty, else from the file at path, which is created (mode 0600,
// 32 random bytes) when it does not exist.
func LoadKey(path, envValue string) ([]byte, error) {
	if envValue = strings.TrimSpace(envValue); envValue != "" {
		k, err := base64.StdEncoding.DecodeString(envValue)
		if err != nil {
			return nil, fmt.Errorf("%s: not base64: %w", EnvKey, err)
		}
		if len(k) != KeySize {
			return nil, fmt.Errorf("%s: %d bytes, want %d", EnvKey, len(k), KeySize)
		}
		return k, nil
	}
	k, err := os.ReadFile(path)
	if err == nil {
		if len(k) != KeySize {
			return nil, fmt.Errorf("secret key %s: %d bytes, want %d", path, len(k), KeySize)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	k = make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("secret key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, fs.ErrExist) { // another process made it first
			return LoadKey(path, "")
		}
		return nil, fmt.Errorf("secret key: %w", err)
	}
	if _, err := f.Write(k); err != nil {
		f.Close()
		return nil, fmt.Errorf("secret key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("secret key %s: %w", path, err)
	}
	return k, nil
}

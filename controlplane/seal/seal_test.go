package seal

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
)

func TestSealOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.key")
	k, err := LoadKey(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	again, err := LoadKey(path, "")
	if err != nil || !bytes.Equal(k, again) {
		t.Fatalf("key not kept: %v", err)
	}
	fromEnv, err := LoadKey(filepath.Join(dir, "absent"), base64.StdEncoding.EncodeToString(k))
	if err != nil || !bytes.Equal(k, fromEnv) {
		t.Fatalf("key from env: %v", err)
	}
	s, err := New(k)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New(bytes.Repeat([]byte{7}, KeySize))
	sealed, err := s.Seal([]byte("password=hunter2"), []byte("bot-1"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("plaintext in the sealed value")
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	tests := []struct {
		name   string
		s      *Sealer
		sealed []byte
		aad    string
		ok     bool
	}{
		{"right", s, sealed, "bot-1", true},
		{"other object", s, sealed, "bot-2", false},
		{"other key", other, sealed, "bot-1", false},
		{"tampered", s, tampered, "bot-1", false},
		{"truncated", s, sealed[:10], "bot-1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.s.Open(tt.sealed, []byte(tt.aad))
			if tt.ok != (err == nil) || tt.ok && string(p) != "password=hunter2" {
				t.Fatalf("%q %v", p, err)
			}
		})
	}
	for _, bad := range []string{"not base64!", base64.StdEncoding.EncodeToString([]byte("short"))} {
		if _, err := LoadKey(path, bad); err == nil {
			t.Errorf("env key %q accepted", bad)
		}
	}
	if _, err := New([]byte("short")); err == nil {
		t.Error("short key accepted")
	}
}

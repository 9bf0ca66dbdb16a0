package state

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func activationFixture(t *testing.T) Activation {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bot-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return Activation{
		Settings: Settings{URL: "https://cp.example", BotID: "bot-1", Account: "1234567890", ActivatedAt: time.Now().UTC()},
		Key:      key, CertPEM: certPEM, CABundlePEM: certPEM,
	}
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	a := activationFixture(t)
	if err := Save(dir, a); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.Settings.BotID != "bot-1" || s.SpoolPath() != filepath.Join(dir, SpoolDir) || len(s.TLSConfig().Certificates) != 1 {
		t.Errorf("loaded %+v", s.Settings)
	}
	if runtime.GOOS != "windows" {
		st, _ := os.Stat(dir)
		if st.Mode().Perm() != DirMode {
			t.Errorf("dir mode %v", st.Mode().Perm())
		}
	}
	// A second save replaces the first, leaving no temporary files.
	a.Settings.BotID = "bot-2"
	if err := Save(dir, a); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 4 {
		t.Errorf("%d files after a second save", len(entries))
	}
}

func TestLoadAndSaveErrors(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"empty directory", func(*testing.T, string) {}, "not activated"},
		{"settings not JSON", func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, SettingsFile), []byte("{"), 0o600)
		}, SettingsFile},
		{"settings without https", func(t *testing.T, dir string) {
			_ = os.WriteFile(filepath.Join(dir, SettingsFile), []byte(`{"url":"http://x","bot_id":"b","account":"1"}`), 0o600)
		}, "https"},
		{"no key", func(t *testing.T, dir string) {
			if err := Save(dir, activationFixture(t)); err != nil {
				t.Fatal(err)
			}
			_ = os.Remove(filepath.Join(dir, KeyFile))
		}, "client certificate"},
		{"empty CA bundle", func(t *testing.T, dir string) {
			if err := Save(dir, activationFixture(t)); err != nil {
				t.Fatal(err)
			}
			_ = os.WriteFile(filepath.Join(dir, CAFile), nil, 0o600)
		}, "no certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Load(t.TempDir()); !errors.Is(err, ErrNotActivated) {
		t.Errorf("not ErrNotActivated: %v", err)
	}
	a := activationFixture(t)
	a.CABundlePEM = []byte("junk")
	if err := Save(t.TempDir(), a); err == nil {
		t.Error("saved a junk CA bundle")
	}
	a = activationFixture(t)
	a.Settings.BotID = ""
	if err := Save(t.TempDir(), a); err == nil {
		t.Error("saved settings without a bot id")
	}
	if DefaultDir() == "" {
		t.Error("no default directory")
	}
}

func TestSaveSettings(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	a := activationFixture(t)
	if err := SaveSettings(dir, a.Settings); !errors.Is(err, ErrNotActivated) {
		t.Errorf("before activation: %v", err)
	}
	if err := Save(dir, a); err != nil {
		t.Fatal(err)
	}
	s := a.Settings
	s.Proxy, s.Via, s.Listen = "http://u:pw@proxy:3128", "10.0.0.9:7443", 7443
	if err := SaveSettings(dir, s); err != nil {
		t.Fatal(err)
	}
	st, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Settings.Proxy != s.Proxy || st.Settings.Via != s.Via || st.Settings.Listen != 7443 || st.Settings.BotID != a.Settings.BotID {
		t.Errorf("settings %+v", st.Settings)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(filepath.Join(dir, SettingsFile))
		if err != nil || fi.Mode().Perm() != FileMode {
			t.Errorf("settings mode %v %v", fi.Mode(), err)
		}
	}
	bad := s
	bad.URL = "http://cp.example"
	if err := SaveSettings(dir, bad); err == nil {
		t.Error("an invalid URL was saved")
	}
	if got, err := LoadSettings(dir); err != nil || !reflect.DeepEqual(got, st.Settings) {
		t.Errorf("LoadSettings %+v %v", got, err)
	}
}

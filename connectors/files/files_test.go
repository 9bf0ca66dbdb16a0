package files

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/protocol"
)

// expectations is testdata/expected.json, written by testdata/gen.sh
// together with the corpus.
type expectations struct {
	Password     string `json:"password"`
	Certificates []struct {
		Location     string `json:"location"`
		SHA256       string `json:"sha256"`
		Format       string `json:"format"`
		KeyAlgorithm string `json:"key_algorithm"`
		KeyBits      int    `json:"key_bits"`
		// RecordError is part of the error protocol.NewRecord gives a
		// certificate Go's parser refuses.
		RecordError string `json:"record_error"`
	} `json:"certificates"`
	Errors []struct {
		Path     string `json:"path"`
		Contains string `json:"contains"`
	} `json:"errors"`
}

func loadExpectations(t testing.TB) expectations {
	t.Helper()
	b, err := os.ReadFile("testdata/expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var e expectations
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

func corpusDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("testdata/corpus")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

var fixedNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newSource(t testing.TB, cfg Config) *Source {
	t.Helper()
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return fixedNow }
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func target(t testing.TB, raw string) protocol.Target {
	t.Helper()
	tg, err := protocol.ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

// uri makes the target URI of a local path.
func uri(scheme, osPath string) string {
	return scheme + "://" + protocol.FileToURIPath(osPath)
}

// collect runs a discovery and returns its findings keyed by location
// relative to base ("pem/bundle.pem#0", "pem/truncated.pem").
func collect(t testing.TB, s *Source, tg protocol.Target, base string) map[string]protocol.Finding {
	t.Helper()
	got := map[string]protocol.Finding{}
	err := s.Discover(context.Background(), tg, func(f protocol.Finding) error {
		key := relLocation(t, f.Location, base)
		if _, dup := got[key]; dup {
			t.Errorf("location %s emitted twice", key)
		}
		got[key] = f
		return nil
	})
	if err != nil {
		t.Fatalf("Discover: %v", err)
	}
	return got
}

func relLocation(t testing.TB, l protocol.Location, base string) string {
	t.Helper()
	rel, err := filepath.Rel(base, protocol.URIPathToFile(l.Path))
	if err != nil {
		t.Fatal(err)
	}
	rel = filepath.ToSlash(rel)
	if l.Entry != "" {
		rel += "#" + l.Entry
	}
	return rel
}

func TestCorpus(t *testing.T) {
	exp := loadExpectations(t)
	dir := corpusDir(t)
	s := newSource(t, Config{Passwords: []protocol.Secret{protocol.NewSecret(exp.Password)}})
	got := collect(t, s, target(t, uri("file", dir)), dir)

	wantErr := map[string][]string{}
	for _, e := range exp.Errors {
		wantErr[e.Path] = append(wantErr[e.Path], e.Contains)
	}
	for _, c := range exp.Certificates {
		t.Run(c.Location, func(t *testing.T) {
			f, ok := got[c.Location]
			if !ok {
				t.Fatalf("not found")
			}
			if len(f.Chain) == 0 {
				t.Fatalf("no certificate; error %q", f.Error)
			}
			if fp := protocol.Fingerprint(f.Chain[0]); fp != c.SHA256 {
				t.Errorf("fingerprint %s, want %s", fp, c.SHA256)
			}
			if f.Format != c.Format {
				t.Errorf("format %q, want %q", f.Format, c.Format)
			}
			if f.Source != protocol.SchemeFile || f.Location.Scheme != protocol.SchemeFile {
				t.Errorf("source %q, scheme %q", f.Source, f.Location.Scheme)
			}
			if !f.SeenAt.Equal(fixedNow) {
				t.Errorf("seen at %v", f.SeenAt)
			}
			switch {
			case c.KeyAlgorithm == "" && f.Key != nil:
				t.Errorf("key %+v, want none", *f.Key)
			case c.KeyAlgorithm != "" && f.Key == nil:
				t.Errorf("no key, want %s/%d", c.KeyAlgorithm, c.KeyBits)
			case c.KeyAlgorithm != "" && (f.Key.Algorithm != c.KeyAlgorithm || f.Key.Bits != c.KeyBits):
				t.Errorf("key %s/%d, want %s/%d", f.Key.Algorithm, f.Key.Bits, c.KeyAlgorithm, c.KeyBits)
			}
			if f.Error != "" {
				t.Errorf("error %q on a certificate", f.Error)
			}
			if r := protocol.NewRecord(f); c.RecordError == "" && r.Error != "" || !strings.Contains(r.Error, c.RecordError) {
				t.Errorf("record error %q, want %q", r.Error, c.RecordError)
			}
		})
	}
	for path, subs := range wantErr {
		f, ok := got[path]
		if !ok {
			t.Errorf("%s: no error reported, want %q", path, subs)
			continue
		}
		for _, sub := range subs {
			if !strings.Contains(f.Error, sub) {
				t.Errorf("%s: error %q does not contain %q", path, f.Error, sub)
			}
		}
		if file, _, _ := strings.Cut(path, "#"); !strings.Contains(f.Error, filepath.Base(file)) {
			t.Errorf("%s: error %q does not name the file", path, f.Error)
		}
	}
	// Nothing beyond what is expected: not the text, the binary, the lone
	// key, nor a second visit through the links.
	want := map[string]bool{}
	for _, c := range exp.Certificates {
		want[c.Location] = true
	}
	for path := range wantErr {
		want[path] = true
	}
	for loc, f := range got {
		if !want[loc] {
			t.Errorf("unexpected finding %s: error %q", loc, f.Error)
		}
	}
}

func TestJKSTargetReadsOnlyKeystores(t *testing.T) {
	exp := loadExpectations(t)
	dir := corpusDir(t)
	s := newSource(t, Config{Passwords: []protocol.Secret{protocol.NewSecret(exp.Password)}})
	got := collect(t, s, target(t, uri("jks", dir)), dir)
	for _, c := range exp.Certificates {
		isKeystore := c.Format == protocol.FormatJKS || c.Format == protocol.FormatJCEKS || c.Format == protocol.FormatPKCS12
		f, found := got[c.Location]
		if found != isKeystore {
			t.Errorf("%s (%s): found %v", c.Location, c.Format, found)
			continue
		}
		if found && (f.Location.Scheme != protocol.SchemeJKS || f.Source != protocol.SchemeJKS) {
			t.Errorf("%s: scheme %q source %q, want jks", c.Location, f.Location.Scheme, f.Source)
		}
	}
	for loc := range got {
		if strings.HasPrefix(loc, "junk/") || strings.HasPrefix(loc, "pem/") {
			t.Errorf("jks target reported %s", loc)
		}
	}
	if f := got["p12/wrong-password.p12"]; !strings.Contains(f.Error, noPasswordFits) {
		t.Errorf("wrong-password.p12: error %q", f.Error)
	}
}

func TestPasswords(t *testing.T) {
	dir := corpusDir(t)
	file := filepath.Join(dir, "jks", "wrong-password.jks")
	for _, tc := range []struct {
		name     string
		config   []string
		target   string
		wantBits int
		wantErr  string
	}{
		{name: "none fits", config: []string{"changeit"}, wantErr: noPasswordFits},
		{name: "target password", target: "?password=s3cret", wantBits: 2048},
		{name: "config password after others", config: []string{"nope", "s3cret"}, wantBits: 2048},
		{name: "target first, then config", config: []string{"s3cret"}, target: "?password=wrong", wantBits: 2048},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pws []protocol.Secret
			for _, p := range tc.config {
				pws = append(pws, protocol.NewSecret(p))
			}
			s := newSource(t, Config{Passwords: pws})
			got := collect(t, s, target(t, uri("jks", file)+tc.target), dir)
			leaf, ok := got["jks/wrong-password.jks#server"]
			if !ok || leaf.Key == nil {
				t.Fatalf("server entry: %+v", leaf)
			}
			if leaf.Key.Bits != tc.wantBits {
				t.Errorf("key bits %d, want %d", leaf.Key.Bits, tc.wantBits)
			}
			if len(leaf.Chain) != 2 {
				t.Errorf("chain of %d, want 2", len(leaf.Chain))
			}
			e := got["jks/wrong-password.jks"].Error
			if tc.wantErr == "" && e != "" || !strings.Contains(e, tc.wantErr) {
				t.Errorf("error %q, want %q", e, tc.wantErr)
			}
		})
	}
}

func TestMaxSize(t *testing.T) {
	dir := corpusDir(t)
	bundle := filepath.Join(dir, "pem", "bundle.pem")
	check := func(t *testing.T, got map[string]protocol.Finding, cap string) {
		t.Helper()
		f, ok := got["pem/bundle.pem"]
		if !ok {
			t.Fatalf("no error for the oversize file; got %v", keys(got))
		}
		if want := "larger than the " + cap + " cap"; !strings.Contains(f.Error, want) || !strings.Contains(f.Error, "not read") {
			t.Errorf("error %q, want %q", f.Error, want)
		}
		if _, ok := got["pem/bundle.pem#0"]; ok {
			t.Error("the oversize file was read")
		}
	}
	t.Run("config", func(t *testing.T) {
		s := newSource(t, Config{MaxSize: 1 << 10})
		check(t, collect(t, s, target(t, uri("file", bundle)), dir), "1 KiB")
	})
	t.Run("target overrides config", func(t *testing.T) {
		s := newSource(t, Config{MaxSize: 1 << 30})
		check(t, collect(t, s, target(t, uri("file", bundle)+"?max_size=2KiB"), dir), "2 KiB")
	})
	t.Run("walk: big text without PEM is skipped in silence", func(t *testing.T) {
		tmp := t.TempDir()
		if err := os.WriteFile(filepath.Join(tmp, "big.log"), bytes.Repeat([]byte("log line\n"), 1000), 0o644); err != nil {
			t.Fatal(err)
		}
		s := newSource(t, Config{MaxSize: 1 << 10})
		if got := collect(t, s, target(t, uri("file", tmp)), tmp); len(got) != 0 {
			t.Errorf("got %v", keys(got))
		}
	})
	t.Run("default is 10 MiB", func(t *testing.T) {
		if formatSize(DefaultMaxSize) != "10 MiB" {
			t.Errorf("%s", formatSize(DefaultMaxSize))
		}
	})
}

func keys(m map[string]protocol.Finding) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSymlinks(t *testing.T) {
	t.Run("corpus links folder", func(t *testing.T) {
		// Walked from links/, loop (-> ..) points outside the root and is
		// followed once; inside it, links/ itself is not walked again.
		dir := corpusDir(t)
		links := filepath.Join(dir, "links")
		s := newSource(t, Config{Passwords: []protocol.Secret{protocol.NewSecret("changeit")}})
		got := collect(t, s, target(t, uri("file", links)), links)
		for _, want := range []string{"leaf-link.pem#0", "loop/pem/bundle.pem#1", "loop/jks/keystore.jks#server"} {
			if _, ok := got[want]; !ok {
				t.Errorf("missing %s", want)
			}
		}
		for loc := range got {
			if strings.Contains(loc, "loop/links/") {
				t.Errorf("walked the root again: %s", loc)
			}
		}
	})
	t.Run("loops of every kind terminate", func(t *testing.T) {
		tmp := t.TempDir()
		a := filepath.Join(tmp, "a", "b")
		if err := os.MkdirAll(a, 0o755); err != nil {
			t.Fatal(err)
		}
		pemBytes, err := os.ReadFile(filepath.Join(corpusDir(t), "pem", "leaf-rsa.pem"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(a, "c.pem"), pemBytes, 0o644); err != nil {
			t.Fatal(err)
		}
		for link, to := range map[string]string{"a/b/self": ".", "a/b/up": "..", "a/b/root": tmp, "a/b/x": "y", "a/b/y": "x"} {
			if err := os.Symlink(to, filepath.Join(tmp, link)); err != nil {
				t.Fatal(err)
			}
		}
		s := newSource(t, Config{})
		done := make(chan map[string]protocol.Finding)
		go func() { done <- collect(t, s, target(t, uri("file", a)), tmp) }()
		select {
		case got := <-done:
			if _, ok := got["a/b/c.pem#0"]; !ok {
				t.Errorf("got %v", keys(got))
			}
			if len(got) > 3 {
				t.Errorf("walked too much: %v", keys(got))
			}
		case <-time.After(30 * time.Second):
			t.Fatal("walk did not end")
		}
	})
}

// TestSecretsNeverOut checks that no private key and no password reaches a
// finding, a record or the log.
func TestSecretsNeverOut(t *testing.T) {
	dir := corpusDir(t)
	var logs bytes.Buffer
	s := newSource(t, Config{
		Passwords: []protocol.Secret{protocol.NewSecret("changeit")},
		Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	var out bytes.Buffer
	err := s.Discover(context.Background(), target(t, uri("file", dir)+"?password=s3cret"), func(f protocol.Finding) error {
		fmt.Fprintf(&out, "%+v %#v\n", f, f)
		b, err := json.Marshal(protocol.NewRecord(f))
		if err != nil {
			return err
		}
		out.Write(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if logs.Len() == 0 {
		t.Error("no debug log at all: the test would prove nothing about it")
	}
	all := append(out.Bytes(), logs.Bytes()...)
	for _, pw := range []string{"changeit", "s3cret"} {
		if bytes.Contains(all, []byte(pw)) {
			t.Errorf("password %q in the output", pw)
		}
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "pem", "lonely.key"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(keyPEM)
	priv, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := x509.MarshalPKCS1PrivateKey(priv.(*rsa.PrivateKey))
	for name, secret := range map[string][]byte{"PKCS#8": b.Bytes, "PKCS#1": pkcs1, "base64": []byte(base64.StdEncoding.EncodeToString(b.Bytes[40:80]))} {
		if bytes.Contains(all, secret) {
			t.Errorf("the private key (%s) is in the output", name)
		}
	}
}

func TestCancel(t *testing.T) {
	dir := corpusDir(t)
	s := newSource(t, Config{})
	t.Run("before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		n := 0
		err := s.Discover(ctx, target(t, uri("file", dir)), func(protocol.Finding) error { n++; return nil })
		if !errors.Is(err, context.Canceled) || n != 0 {
			t.Errorf("err %v after %d findings", err, n)
		}
	})
	t.Run("during", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		n := 0
		err := s.Discover(ctx, target(t, uri("file", dir)), func(protocol.Finding) error {
			n++
			if n == 3 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v", err)
		}
		// The file being read when ctx ended may still emit its entries.
		if n > 6 {
			t.Errorf("%d findings after cancel", n)
		}
	})
	t.Run("emit error ends the walk", func(t *testing.T) {
		stop := errors.New("receiver gave up")
		n := 0
		err := s.Discover(context.Background(), target(t, uri("file", dir)), func(protocol.Finding) error { n++; return stop })
		if !errors.Is(err, stop) || n != 1 {
			t.Errorf("err %v after %d findings", err, n)
		}
	})
}

func TestOtherSchemes(t *testing.T) {
	s := newSource(t, Config{})
	err := s.Discover(context.Background(), target(t, "tls://127.0.0.1:443"), func(protocol.Finding) error { return nil })
	if err == nil {
		t.Error("tls target accepted")
	}
}

func TestScanFile(t *testing.T) {
	dir := corpusDir(t)
	s := newSource(t, Config{})
	var got []protocol.Finding
	path := filepath.Join(dir, "jks", "keystore.jks")
	err := s.ScanFile(context.Background(), "certstore", path, []protocol.Secret{protocol.NewSecret("changeit")}, func(f protocol.Finding) error {
		got = append(got, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d findings: %+v", len(got), got)
	}
	for _, f := range got {
		if f.Location.Scheme != "certstore" || f.Source != "certstore" || f.Error != "" {
			t.Errorf("%s source %q error %q", f.Location, f.Source, f.Error)
		}
	}
	if got[0].Location.String() != uri("certstore", path)+"#server" {
		t.Errorf("location %s", got[0].Location)
	}
	// A named file that holds nothing is reported, whatever its name.
	var errs []string
	_ = s.ScanFile(context.Background(), "file", filepath.Join(dir, "junk", "notes.txt"), nil, func(f protocol.Finding) error {
		errs = append(errs, f.Error)
		return nil
	})
	if len(errs) != 1 || !strings.Contains(errs[0], "notes.txt: no certificate found") {
		t.Errorf("notes.txt: %q", errs)
	}
}

func TestParseNotCertificates(t *testing.T) {
	for _, data := range [][]byte{
		nil,
		[]byte("hello\n"),
		[]byte("0123 starts like DER\n"),
		[]byte("-----BEGIN CERTIFICATE-----\nonly mentioned\n"),
		{0x30, 0x03, 0x01, 0x01, 0x00},
		{0xfe, 0xed, 0xfe},
	} {
		if _, err := Parse(data, nil); !errors.Is(err, ErrNotCertificate) {
			t.Errorf("%q: %v", data, err)
		}
	}
	// A JKS whose lengths lie is reported, not trusted.
	bad := []byte{0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0xff, 0xff}
	entries, err := Parse(bad, nil)
	if err != nil || len(entries) != 1 || !strings.Contains(entries[0].Err, "does not parse") {
		t.Errorf("lying JKS: %v %+v", err, entries)
	}
}

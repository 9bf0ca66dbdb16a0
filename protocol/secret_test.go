package protocol

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"testing"
)

const secretValue = "s3cr3t-Value-42"

// oneVerb is a format with fewer verbs than arguments, kept in a variable so
// that vet lets the test make that mistake on purpose.
var oneVerb = "%v"

// Shapes a secret may be nested in.
type (
	withExported struct {
		Name string
		PW   Secret
	}
	withUnexported struct {
		name string
		pw   Secret
	}
	withPointer struct {
		PW *Secret
	}
	withEmbedded struct {
		Secret
		Name string
	}
	deepNest struct {
		Outer    withExported
		Hidden   withUnexported
		hidden   withUnexported
		List     []Secret
		ByName   map[string]Secret
		Ptr      *withExported
		Any      any
		Pointers []*Secret
	}
)

// secretShapes are values that hold secretValue somewhere inside.
func secretShapes() map[string]any {
	s := NewSecret(secretValue)
	return map[string]any{
		"value":      s,
		"pointer":    &s,
		"exported":   withExported{Name: "db", PW: s},
		"unexported": withUnexported{name: "db", pw: s},
		"struct ptr": &withUnexported{name: "db", pw: s},
		"field ptr":  withPointer{PW: &s},
		"embedded":   withEmbedded{Secret: s, Name: "db"},
		"slice":      []Secret{s, s},
		"array":      [1]Secret{s},
		"map value":  map[string]Secret{"pw": s},
		"map key":    map[Secret]int{s: 1},
		"any":        []any{s, &s},
		"target":     Target{Scheme: SchemeJKS, Path: "/ks.jks", Secrets: map[string][]Secret{ParamPassword: {s}}},
		"deep": deepNest{
			Outer:    withExported{PW: s},
			Hidden:   withUnexported{pw: s},
			hidden:   withUnexported{pw: s},
			List:     []Secret{s},
			ByName:   map[string]Secret{"a": s},
			Ptr:      &withExported{PW: s},
			Any:      withUnexported{pw: s},
			Pointers: []*Secret{&s},
		},
	}
}

func TestSecretFormatVerbs(t *testing.T) {
	s := NewSecret(secretValue)
	for verb, want := range map[string]string{
		"%v":   "REDACTED",
		"%+v":  "REDACTED",
		"%#v":  "REDACTED",
		"%s":   "REDACTED",
		"%q":   `"REDACTED"`,
		"%x":   "REDACTED",
		"%X":   "REDACTED",
		"%d":   "REDACTED",
		"%10s": "REDACTED",
		"%-8v": "REDACTED",
		"%t":   "REDACTED",
		"%e":   "REDACTED",
	} {
		if got := fmt.Sprintf(verb, s); got != want {
			t.Errorf("Sprintf(%q) = %q, want %q", verb, got, want)
		}
		if got := fmt.Sprintf(verb, &s); got != want {
			t.Errorf("Sprintf(%q, &s) = %q, want %q", verb, got, want)
		}
	}
	for name, got := range map[string]string{
		"String":   s.String(),
		"GoString": s.GoString(),
		"Sprint":   fmt.Sprint(s),
		"Sprintln": fmt.Sprintln(s),
		"Errorf":   fmt.Errorf("login with %v failed", s).Error(),
		"Errorf w": fmt.Errorf("wrapped: %w", errors.New(fmt.Sprint(s))).Error(),
	} {
		if !strings.Contains(got, "REDACTED") || strings.Contains(got, secretValue) {
			t.Errorf("%s = %q", name, got)
		}
	}
}

// Whatever a secret is nested in, and however it is printed, its value does
// not show.
func TestSecretNestedNeverPrints(t *testing.T) {
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%p", "%T", "%d", "%10.3v"}
	for name, v := range secretShapes() {
		for _, verb := range verbs {
			got := fmt.Sprintf(verb, v)
			if strings.Contains(got, secretValue) || strings.Contains(got, fmt.Sprintf("%x", secretValue)) {
				t.Errorf("%s: Sprintf(%q) = %s", name, verb, got)
			}
		}
		for _, got := range []string{fmt.Sprint(v), fmt.Sprintln(v), fmt.Sprint("x", v, 1)} {
			if strings.Contains(got, secretValue) {
				t.Errorf("%s: Sprint = %s", name, got)
			}
		}
		// Wrong argument counts print the arguments too.
		if got := fmt.Sprintf(oneVerb, "only one", v); strings.Contains(got, secretValue) {
			t.Errorf("%s: EXTRA = %s", name, got)
		}
		var buf bytes.Buffer
		log.New(&buf, "", 0).Printf("%+v", v)
		if strings.Contains(buf.String(), secretValue) {
			t.Errorf("%s: log = %s", name, buf.String())
		}
	}
	// Where it is printed directly, it says so.
	for name, v := range map[string]any{"value": NewSecret(secretValue), "exported": withExported{PW: NewSecret(secretValue)}} {
		if got := fmt.Sprintf("%+v", v); !strings.Contains(got, "REDACTED") {
			t.Errorf("%s: %%+v = %s, want REDACTED in it", name, got)
		}
	}
}

func TestSecretSlog(t *testing.T) {
	for _, handler := range []string{"text", "json"} {
		for name, v := range secretShapes() {
			var buf bytes.Buffer
			var h slog.Handler
			if handler == "text" {
				h = slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
			} else {
				h = slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
			}
			logger := slog.New(h)
			logger.Info("as any", "v", v)
			logger.Info("as attr", slog.Any("v", v))
			logger.With("with", v).Warn("with")
			logger.WithGroup("g").Error("group", slog.Group("inner", "v", v))
			logger.LogAttrs(context.Background(), slog.LevelDebug, "attrs", slog.Any("v", v))
			logger.Info("formatted " + fmt.Sprint(v))
			if strings.Contains(buf.String(), secretValue) {
				t.Errorf("%s handler, %s: %s", handler, name, buf.String())
			}
		}
		// A secret logged on its own reads REDACTED.
		var buf bytes.Buffer
		var h slog.Handler = slog.NewTextHandler(&buf, nil)
		if handler == "json" {
			h = slog.NewJSONHandler(&buf, nil)
		}
		slog.New(h).Info("login", "password", NewSecret(secretValue))
		if !strings.Contains(buf.String(), "REDACTED") {
			t.Errorf("%s handler: %s, want REDACTED", handler, buf.String())
		}
		if handler == "json" {
			var m map[string]any
			if err := json.Unmarshal(buf.Bytes(), &m); err != nil || m["password"] != "REDACTED" {
				t.Errorf("json handler: password = %v (%v)", m["password"], err)
			}
		} else if !strings.Contains(buf.String(), "password=REDACTED") {
			t.Errorf("text handler: %s, want password=REDACTED", buf.String())
		}
	}
	if got := NewSecret(secretValue).LogValue(); got.Kind() != slog.KindString || got.String() != "REDACTED" {
		t.Errorf("LogValue = %v", got)
	}
}

func TestSecretJSON(t *testing.T) {
	for name, v := range secretShapes() {
		b, err := json.Marshal(v)
		if err != nil {
			t.Errorf("%s: json.Marshal: %v", name, err)
			continue
		}
		if strings.Contains(string(b), secretValue) {
			t.Errorf("%s: JSON = %s", name, b)
		}
		b, _ = json.MarshalIndent(v, "", "  ")
		if strings.Contains(string(b), secretValue) {
			t.Errorf("%s: indented JSON = %s", name, b)
		}
	}
	s := NewSecret(secretValue)
	for v, want := range map[any]string{
		&s:                    `"REDACTED"`,
		s:                     `"REDACTED"`,
		withExported{PW: s}:   `{"Name":"","PW":"REDACTED"}`,
		withPointer{PW: &s}:   `{"PW":"REDACTED"}`,
		withPointer{}:         `{"PW":null}`,
		withUnexported{pw: s}: `{}`,
	} {
		b, err := json.Marshal(v)
		if err != nil || string(b) != want {
			t.Errorf("json.Marshal(%T) = %s, %v; want %s", v, b, err, want)
		}
	}
	b, err := json.Marshal(map[string][]Secret{"password": {s, s}})
	if err != nil || string(b) != `{"password":["REDACTED","REDACTED"]}` {
		t.Errorf("json.Marshal(map) = %s, %v", b, err)
	}
	b, err = json.Marshal(map[Secret]int{s: 1})
	if err != nil || string(b) != `{"REDACTED":1}` {
		t.Errorf("json.Marshal(map key) = %s, %v", b, err)
	}
}

func TestSecretXML(t *testing.T) {
	type doc struct {
		PW   Secret `xml:"pw"`
		Attr Secret `xml:"attr,attr"`
	}
	s := NewSecret(secretValue)
	b, err := xml.Marshal(doc{PW: s, Attr: s})
	if err != nil {
		t.Fatal(err)
	}
	if want := `<doc attr="REDACTED"><pw>REDACTED</pw></doc>`; string(b) != want {
		t.Errorf("xml = %s, want %s", b, want)
	}
}

func TestSecretRevealAndZero(t *testing.T) {
	s := NewSecret(secretValue)
	if s.Reveal() != secretValue {
		t.Errorf("Reveal = %q", s.Reveal())
	}
	if s.IsZero() {
		t.Error("IsZero for a set secret")
	}
	var zero Secret
	if !zero.IsZero() || zero.Reveal() != "" || zero.String() != "REDACTED" {
		t.Errorf("zero Secret: IsZero %v, Reveal %q, String %q", zero.IsZero(), zero.Reveal(), zero.String())
	}
	if e := NewSecret(""); !e.IsZero() || e.Reveal() != "" {
		t.Errorf("NewSecret(\"\"): IsZero %v, Reveal %q", e.IsZero(), e.Reveal())
	}
	// A copy reveals the same value.
	c := s
	if c.Reveal() != secretValue {
		t.Errorf("copy reveals %q", c.Reveal())
	}
	// Reading a secret never changes another.
	other := NewSecret("other")
	if s.Reveal() != secretValue || other.Reveal() != "other" {
		t.Error("secrets share a value")
	}
	var nilPtr *Secret
	if got := fmt.Sprintf("%v", nilPtr); strings.Contains(got, secretValue) {
		t.Errorf("nil *Secret prints %q", got)
	}
}

// A TransitSecret crosses the wire in a job body (B9: an HSM PIN, a
// keystore password) and reads back, yet never prints or logs.
func TestTransitSecret(t *testing.T) {
	const pin = "transit-pin-4471"
	spec := PKCS11Key{Module: "softhsm2", PIN: NewTransitSecret(pin), Label: "web"}
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	var back PKCS11Key
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.PIN.Reveal() != pin {
		t.Errorf("round trip gave %q", back.PIN.Reveal())
	}
	var logged bytes.Buffer
	job := Job{ID: "j1", Kind: JobRotate, Rotation: &Rotation{OrderID: "o1", Key: KeySpec{Where: KeyWherePKCS11, PKCS11: &spec},
		Deploy: DeploySpec{Kind: DeployJKS, KeystorePassword: NewTransitSecret(pin), Target: "ldap://u:" + pin + "@h"}}}
	for _, h := range []slog.Handler{slog.NewJSONHandler(&logged, nil), slog.NewTextHandler(&logged, nil)} {
		slog.New(h).Info("job", "spec", spec, "pin", spec.PIN, "job", job, "rotation", *job.Rotation, "deploy", job.Rotation.Deploy, "key", job.Rotation.Key)
	}
	if !strings.Contains(logged.String(), "o1") {
		t.Errorf("the log lost the order: %s", logged.String())
	}
	for _, s := range []string{fmt.Sprint(spec), fmt.Sprintf("%+v %#v %q %s", spec, spec, spec.PIN, spec.PIN), logged.String(), back.PIN.Secret().String()} {
		if strings.Contains(s, pin) {
			t.Errorf("the PIN leaked: %s", s)
		}
	}
	if err := json.Unmarshal([]byte(`{"pin":5}`), &back); err == nil || strings.Contains(err.Error(), "5") {
		t.Errorf("a non-string PIN: %v", err)
	}
	var d DeploySpec
	if b, _ := json.Marshal(d); strings.Contains(string(b), "keystore_password") {
		t.Errorf("an empty keystore password is sent: %s", b)
	}
}

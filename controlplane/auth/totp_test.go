package auth

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"image/png"
	"net/url"
	"strings"
	"testing"
	"time"
)

// rfcSecret is RFC 6238 appendix B's SHA-1 seed, "12345678901234567890".
var rfcSecret = base32.StdEncoding.EncodeToString([]byte("12345678901234567890"))

// TestTOTPRFC6238 checks the SHA-1 vectors of RFC 6238 appendix B. The RFC
// gives 8 digits; a 6-digit code is the same value modulo 10^6, i.e. its
// last six digits.
func TestTOTPRFC6238(t *testing.T) {
	tests := []struct {
		unix int64
		step int64
		code string // the RFC's 8 digits
	}{
		{59, 0x1, "94287082"},
		{1111111109, 0x23523EC, "07081804"},
		{1111111111, 0x23523ED, "14050471"},
		{1234567890, 0x273EF07, "89005924"},
		{2000000000, 0x3F940AA, "69279037"},
		{20000000000, 0x27BC86AA, "65353130"},
	}
	for _, tt := range tests {
		now := time.Unix(tt.unix, 0)
		if got := TOTPStep(now); got != tt.step {
			t.Errorf("step(%d) = %x, want %x", tt.unix, got, tt.step)
		}
		want := tt.code[2:]
		got, err := TOTPCode(rfcSecret, tt.step)
		if err != nil || got != want {
			t.Errorf("code(%d) = %q, %v; want %q", tt.unix, got, err, want)
		}
		step, err := ValidateTOTP(rfcSecret, want, now)
		if err != nil || step != tt.step {
			t.Errorf("validate(%d) = %d, %v; want %d", tt.unix, step, err, tt.step)
		}
	}
}

func TestValidateTOTPSkew(t *testing.T) {
	base := time.Unix(1234567890, 0) // step 0x273EF07
	cur := TOTPStep(base)
	code := func(step int64) string {
		c, err := TOTPCode(rfcSecret, step)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name     string
		code     string
		wantStep int64
		wantErr  bool
	}{
		{"current", code(cur), cur, false},
		{"one step late", code(cur - 1), cur - 1, false},
		{"one step early", code(cur + 1), cur + 1, false},
		{"two steps late", code(cur - 2), 0, true},
		{"two steps early", code(cur + 2), 0, true},
		{"spaces allowed", code(cur)[:3] + " " + code(cur)[3:], cur, false},
		{"too short", code(cur)[:5], 0, true},
		{"letters", "12a456", 0, true},
		{"empty", "", 0, true},
		{"seven digits", code(cur) + "1", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, err := ValidateTOTP(rfcSecret, tt.code, base)
			if tt.wantErr {
				if !errors.Is(err, ErrTOTPCode) {
					t.Fatalf("got step %d, err %v; want ErrTOTPCode", step, err)
				}
				return
			}
			if err != nil || step != tt.wantStep {
				t.Fatalf("got %d, %v; want %d", step, err, tt.wantStep)
			}
		})
	}
}

func TestValidateTOTPBadSecret(t *testing.T) {
	for _, s := range []string{"not base32!", "GEZDGNBV"} {
		if _, err := ValidateTOTP(s, "123456", time.Unix(59, 0)); err == nil || errors.Is(err, ErrTOTPCode) {
			t.Errorf("secret %q: err %v, want a secret error", s, err)
		}
	}
}

func TestNewTOTP(t *testing.T) {
	k, err := NewTOTP("ana@example.com")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := decodeSecret(k.Secret())
	if err != nil || len(raw) != totpSecretSize {
		t.Fatalf("secret %q: %d bytes, %v", k.Secret(), len(raw), err)
	}
	u, err := url.Parse(k.URL())
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "otpauth" || u.Host != "totp" || q.Get("issuer") != TOTPIssuer || q.Get("secret") != k.Secret() ||
		q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" ||
		!strings.Contains(u.Path, "ana@example.com") {
		t.Fatalf("url %s", k.URL())
	}
	k2, err := NewTOTP("ana@example.com")
	if err != nil || k2.Secret() == k.Secret() {
		t.Fatalf("two secrets alike: %v", err)
	}

	// The key rebuilt from the secret is the same key.
	again, err := TOTPKeyFor("ana@example.com", k.Secret())
	if err != nil || again.URL() != k.URL() {
		t.Fatalf("rebuilt %q, %v; want %q", again.URL(), err, k.URL())
	}
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	c, err := TOTPCode(k.Secret(), TOTPStep(now))
	if err != nil {
		t.Fatal(err)
	}
	if step, err := ValidateTOTP(k.Secret(), c, now); err != nil || step != TOTPStep(now) {
		t.Fatalf("own code refused: %d, %v", step, err)
	}
}

func TestTOTPQRCode(t *testing.T) {
	k, err := NewTOTP("ana@example.com")
	if err != nil {
		t.Fatal(err)
	}
	p, err := k.QRCodePNG(200)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(p))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 200 || b.Dy() != 200 {
		t.Fatalf("size %v", b)
	}
	uri, err := k.QRCodeDataURI(200)
	if err != nil {
		t.Fatal(err)
	}
	enc, ok := strings.CutPrefix(uri, "data:image/png;base64,")
	if !ok {
		t.Fatalf("uri %.40s", uri)
	}
	if dec, err := base64.StdEncoding.DecodeString(enc); err != nil || !bytes.Equal(dec, p) {
		t.Fatalf("data uri does not hold the png: %v", err)
	}
}

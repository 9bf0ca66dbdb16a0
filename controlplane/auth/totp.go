package auth

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP parameters (RFC 6238 as every authenticator app reads it): HMAC-SHA-1,
// six digits, 30-second steps, a 160-bit secret (RFC 4226's recommendation).
const (
	TOTPIssuer     = "emSign Bot"
	TOTPPeriod     = 30
	TOTPDigits     = 6
	totpSecretSize = 20
	// totpSkew is how many steps either side of now a code may be from:
	// one covers a phone's clock a little off and a code typed as it
	// changed.
	totpSkew = 1
)

// ErrTOTPCode: the one-time code is not one of the accepted steps'.
var ErrTOTPCode = errors.New("one-time code does not match")

// TOTPKey is a second factor being enrolled: the secret (base32, no
// padding) and the otpauth:// URL an authenticator app scans.
type TOTPKey struct {
	key *otp.Key
}

// NewTOTP makes a fresh random secret for the user with this email.
func NewTOTP(email string) (TOTPKey, error) {
	k, err := totp.Generate(totp.GenerateOpts{Issuer: TOTPIssuer, AccountName: email, Period: TOTPPeriod,
		SecretSize: totpSecretSize, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return TOTPKey{}, fmt.Errorf("totp secret: %w", err)
	}
	return TOTPKey{key: k}, nil
}

// TOTPKeyFor rebuilds the key of an existing secret (a pending enrolment
// shown again).
func TOTPKeyFor(email, secret string) (TOTPKey, error) {
	raw, err := decodeSecret(secret)
	if err != nil {
		return TOTPKey{}, err
	}
	k, err := totp.Generate(totp.GenerateOpts{Issuer: TOTPIssuer, AccountName: email, Period: TOTPPeriod,
		Secret: raw, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return TOTPKey{}, fmt.Errorf("totp key: %w", err)
	}
	return TOTPKey{key: k}, nil
}

// Secret is the base32 secret, for people who type it in.
func (k TOTPKey) Secret() string { return k.key.Secret() }

// URL is the otpauth:// URL the QR code holds.
func (k TOTPKey) URL() string { return k.key.URL() }

// QRCodePNG draws the URL as a size×size PNG.
func (k TOTPKey) QRCodePNG(size int) ([]byte, error) {
	img, err := k.key.Image(size, size)
	if err != nil {
		return nil, fmt.Errorf("totp qr code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("totp qr code: %w", err)
	}
	return buf.Bytes(), nil
}

// QRCodeDataURI is the PNG as a data: URI for an <img src> (the CSP
// allows data: images and nothing external).
func (k TOTPKey) QRCodeDataURI(size int) (string, error) {
	p, err := k.QRCodePNG(size)
	if err != nil {
		return "", err
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(p), nil
}

// TOTPStep is the RFC 6238 time step of t.
func TOTPStep(t time.Time) int64 {
	u := t.Unix()
	if u < 0 {
		return (u - TOTPPeriod + 1) / TOTPPeriod
	}
	return u / TOTPPeriod
}

// TOTPCode is the code of secret at time step step.
func TOTPCode(secret string, step int64) (string, error) {
	if step < 0 {
		return "", errors.New("totp: negative time step")
	}
	if _, err := decodeSecret(secret); err != nil {
		return "", err
	}
	c, err := hotp.GenerateCodeCustom(secret, uint64(step), hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", fmt.Errorf("totp code: %w", err)
	}
	return c, nil
}

// ValidateTOTP checks code against secret at now, accepting the step
// before and after as well, and returns the step it matched. The caller
// must refuse a step already used (store.UseTOTPStep) so that a code seen
// over someone's shoulder cannot be replayed. ErrTOTPCode when no step
// matches.
func ValidateTOTP(secret, code string, now time.Time) (int64, error) {
	code = strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, code)
	if len(code) != TOTPDigits || strings.Trim(code, "0123456789") != "" {
		return 0, ErrTOTPCode
	}
	if _, err := decodeSecret(secret); err != nil {
		return 0, err
	}
	cur := TOTPStep(now)
	// Check every candidate step, not just until the first match, so that
	// the time taken says nothing about which one matched.
	var found int64 = -1
	for _, step := range []int64{cur, cur - totpSkew, cur + totpSkew} {
		if step < 0 {
			continue
		}
		ok, err := hotp.ValidateCustom(code, uint64(step), secret, hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err != nil {
			return 0, fmt.Errorf("totp: %w", err)
		}
		if ok && found < 0 {
			found = step
		}
	}
	if found < 0 {
		return 0, ErrTOTPCode
	}
	return found, nil
}

// decodeSecret checks that a secret is base32 (case and padding as
// authenticator apps write it) of at least 80 bits (RFC 4226's minimum).
func decodeSecret(secret string) ([]byte, error) {
	s := strings.ToUpper(strings.TrimRight(strings.TrimSpace(secret), "="))
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(s)
	if err != nil {
		return nil, errors.New("totp secret: not base32")
	}
	if len(raw) < 10 {
		return nil, errors.New("totp secret: shorter than 80 bits")
	}
	return raw, nil
}

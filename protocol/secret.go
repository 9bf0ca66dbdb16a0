package protocol

import (
	"encoding/json"
	"fmt"
	"log/slog"
)

// redacted is what a Secret prints as, wherever it ends up.
const redacted = "REDACTED"

// Secret holds a password, PIN, token or API key. It prints, formats, logs
// and marshals as REDACTED, so it cannot leak by accident; Reveal is the one
// deliberate way to read it.
type Secret struct {
	// value is behind a pointer: fmt prints a Secret held in an unexported
	// field (where it cannot call Format) or under %p by its fields, and
	// would show a string; it shows only the address of a pointer.
	value *string
}

// NewSecret wraps a value.
func NewSecret(v string) Secret { return Secret{value: &v} }

// Reveal returns the secret's value. Call it only where the value is used.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

func (s Secret) String() string   { return redacted }
func (s Secret) GoString() string { return redacted }

// Format makes %v, %+v, %#v, %s and %q all print REDACTED.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", redacted)
		return
	}
	fmt.Fprint(f, redacted)
}

// LogValue keeps the secret out of slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText keeps the secret out of JSON, XML and any text encoder.
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// TransitSecret is a secret that must cross the wire: a PIN or a keystore
// password inside a rotation job, sent only over the bot API's mutual TLS
// and kept by the control plane only sealed. Unlike Secret it marshals its
// value into JSON and reads it back; like Secret it prints, formats and
// logs as REDACTED. Use it for nothing that is stored or answered to a user.
type TransitSecret struct{ s Secret }

// NewTransitSecret wraps a value for the wire.
func NewTransitSecret(v string) TransitSecret { return TransitSecret{s: NewSecret(v)} }

// Reveal returns the value. Call it only where the value is used.
func (t TransitSecret) Reveal() string { return t.s.Reveal() }

// Secret is the value as a Secret, which never marshals it.
func (t TransitSecret) Secret() Secret { return t.s }

// IsZero reports whether the secret is empty (for omitzero).
func (t TransitSecret) IsZero() bool { return t.s.IsZero() }

func (t TransitSecret) String() string                { return redacted }
func (t TransitSecret) GoString() string              { return redacted }
func (t TransitSecret) Format(f fmt.State, verb rune) { t.s.Format(f, verb) }
func (t TransitSecret) LogValue() slog.Value          { return t.s.LogValue() }

// MarshalJSON writes the value: the one deliberate way a secret leaves a
// process, and only in a job body.
func (t TransitSecret) MarshalJSON() ([]byte, error) { return json.Marshal(t.s.Reveal()) }

// UnmarshalJSON reads the value back.
func (t *TransitSecret) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("secret: want a JSON string")
	}
	*t = NewTransitSecret(v)
	return nil
}

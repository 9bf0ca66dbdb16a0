package protocol

import (
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

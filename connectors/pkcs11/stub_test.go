//go:build !cgo

package pkcs11

import (
	"context"
	"strings"
	"testing"

	"github.com/emsign/bot/protocol"
)

func TestStubSaysBuildWithCgo(t *testing.T) {
	// New succeeds so that the bot's other connectors still run.
	s, err := New(Config{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	err = s.Discover(context.Background(), protocol.Target{Scheme: protocol.SchemePKCS11}, func(protocol.Finding) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "x86_64-w64-mingw32-gcc") {
		t.Fatalf("Discover: %v, want the no-cgo error", err)
	}
	if !strings.Contains(err.Error(), "CGO_ENABLED=1") {
		t.Fatalf("Discover: %v, want the no-cgo error", err)
	}
}

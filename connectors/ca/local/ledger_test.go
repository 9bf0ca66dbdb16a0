package local

import "testing"

// P7: the ledger rules every implementation keeps (the store's SQL ledger
// runs the same checks).
func TestMemoryLedgerConformance(t *testing.T) {
	LedgerConformance(t, func() Ledger { return NewMemoryLedger() })
}

package client

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/protocol"
)

// TestOrderCSR (B9): the CSR goes to the order's path as OrderCSR; a
// pending answer carries its RetryAfter, an error answer its text.
func TestOrderCSR(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req protocol.OrderCSR
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&req) != nil {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		switch r.URL.Path {
		case protocol.OrderCSRPath("o-pending"):
			_ = json.NewEncoder(w).Encode(protocol.OrderCertificate{Status: protocol.OrderPending, RetryAfter: protocol.Duration(7 * time.Second)})
		case protocol.OrderCSRPath("o-issued"):
			_ = json.NewEncoder(w).Encode(protocol.OrderCertificate{Status: protocol.OrderIssued, Certificate: "CERT for " + req.CSR})
		default:
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(protocol.ErrorResponse{Error: "order o-x was cancelled"})
		}
	}))
	defer srv.Close()
	c, err := New(Config{URL: srv.URL, TLS: &tls.Config{RootCAs: poolOf(srv)}, Version: "1", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tests := []struct {
		order, want, wantErr string
		retry                time.Duration
	}{
		{"o-pending", protocol.OrderPending, "", 7 * time.Second},
		{"o-issued", protocol.OrderIssued, "", 0},
		{"o-x", "", "order o-x was cancelled", 0},
	}
	for _, tc := range tests {
		oc, err := c.OrderCSR(ctx, tc.order, []byte("PEM"))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !IsPermanent(err) {
				t.Errorf("%s: %v, want %q", tc.order, err, tc.wantErr)
			}
			continue
		}
		if err != nil || oc.Status != tc.want || time.Duration(oc.RetryAfter) != tc.retry {
			t.Errorf("%s: %+v %v", tc.order, oc, err)
		}
		if tc.want == protocol.OrderIssued && oc.Certificate != "CERT for PEM" {
			t.Errorf("certificate %q", oc.Certificate)
		}
	}
}

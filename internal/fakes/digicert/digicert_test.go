package digicert

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestStrictBodies checks the fake refuses what a careless client would
// send, so that a connector bug shows as a failed test.
func TestStrictBodies(t *testing.T) {
	f := Start(t)
	tests := []struct {
		name, method, path, ctype, body, key string
		status                               int
		code                                 string
	}{
		{"unknown field", "POST", "/order/certificate/ssl_basic", "application/json",
			`{"certificate":{"common_name":"a.example","csr":"x","signature_hash":"sha256","bogus":1},"organization":{"id":123456}}`, APIKey, 400, "bad_request_format"},
		{"trailing data", "POST", "/order/certificate/ssl_basic", "application/json", `{} {}`, APIKey, 400, "bad_request_format"},
		{"not json", "POST", "/order/certificate/ssl_basic", "text/plain", `{}`, APIKey, 415, "bad_request_format"},
		{"bad csr", "POST", "/order/certificate/ssl_basic", "application/json",
			`{"certificate":{"common_name":"a.example","csr":"x","signature_hash":"sha256"},"organization":{"id":123456},"order_validity":{"years":1}}`, APIKey, 400, "csr_invalid_cannot_parse"},
		{"unknown product", "POST", "/order/certificate/nope", "application/json", `{}`, APIKey, 404, "not_found|product"},
		{"no key", "GET", "/order/certificate/1", "", "", "", 401, "invalid_api_key"},
		{"unknown order", "GET", "/order/certificate/1", "", "", APIKey, 404, "not_found|order"},
		{"revoke unknown certificate", "PUT", "/certificate/1/revoke", "application/json", `{"reason":"x"}`, APIKey, 404, "not_found|certificate"},
		{"route", "GET", "/user/me", "", "", APIKey, 404, "not_found|route"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, f.URL()+tt.path, strings.NewReader(tt.body))
			if tt.ctype != "" {
				req.Header.Set("Content-Type", tt.ctype)
			}
			if tt.key != "" {
				req.Header.Set("X-DC-DEVKEY", tt.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status || !strings.Contains(string(b), `"code":"`+tt.code+`"`) {
				t.Errorf("%d %s, want %d %s", resp.StatusCode, b, tt.status, tt.code)
			}
		})
	}
}

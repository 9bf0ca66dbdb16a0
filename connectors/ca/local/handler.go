package local

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/crypto/ocsp"
)

// maxOCSPRequest bounds a POSTed request; a real one is a few hundred
// bytes.
const maxOCSPRequest = 64 << 10

// Handler serves the CA's revocation information, to be mounted by the
// control plane (under a prefix with http.StripPrefix):
//
//	GET  /crl               the current CRL, DER, application/pkix-crl
//	POST /ocsp              an OCSP request in the body (RFC 6960 A.1)
//	GET  /ocsp/{base64}     an OCSP request, base64 then URL-escaped
//
// OCSP answers are application/ocsp-response. The mux is hand-written
// because http.ServeMux cleans paths, and a base64 request may hold "//".
func (a *CA) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.EscapedPath()
		switch {
		case path == "/crl":
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				methodNotAllowed(w, "GET, HEAD")
				return
			}
			a.serveCRL(w, r)
		case path == "/ocsp" || path == "/ocsp/":
			if r.Method != http.MethodPost {
				methodNotAllowed(w, "POST")
				return
			}
			body, err := io.ReadAll(io.LimitReader(r.Body, maxOCSPRequest+1))
			if err != nil || len(body) > maxOCSPRequest {
				a.writeOCSP(w, ocsp.MalformedRequestErrorResponse, false)
				return
			}
			a.serveOCSP(w, r, body, false)
		case strings.HasPrefix(path, "/ocsp/"):
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				methodNotAllowed(w, "GET, HEAD")
				return
			}
			raw, err := url.PathUnescape(strings.TrimPrefix(path, "/ocsp/"))
			if err != nil {
				a.writeOCSP(w, ocsp.MalformedRequestErrorResponse, false)
				return
			}
			req, err := decodeBase64(raw)
			if err != nil {
				a.writeOCSP(w, ocsp.MalformedRequestErrorResponse, false)
				return
			}
			a.serveOCSP(w, r, req, true)
		default:
			http.NotFound(w, r)
		}
	})
}

func (a *CA) serveCRL(w http.ResponseWriter, r *http.Request) {
	der, err := a.CRL(r.Context())
	if err != nil {
		a.log.Error("local ca: crl", "error", err)
		http.Error(w, "crl unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Content-Length", fmt.Sprint(len(der)))
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(der)
}

func (a *CA) serveOCSP(w http.ResponseWriter, r *http.Request, req []byte, get bool) {
	resp, err := a.OCSP(r.Context(), req)
	if err != nil {
		a.log.Error("local ca: ocsp", "error", err)
		a.writeOCSP(w, ocsp.InternalErrorErrorResponse, false)
		return
	}
	a.writeOCSP(w, resp, get)
}

// writeOCSP sends an OCSP response; a signed answer to a GET may be cached
// for its validity (RFC 5019 6.2), an error response never.
func (a *CA) writeOCSP(w http.ResponseWriter, resp []byte, cacheable bool) {
	w.Header().Set("Content-Type", "application/ocsp-response")
	w.Header().Set("Content-Length", fmt.Sprint(len(resp)))
	// An unsigned error response is the 5-byte OCSPResponse with only a
	// status; only a signed answer is worth caching.
	if cacheable && len(resp) > 5 {
		w.Header().Set("Cache-Control", fmt.Sprintf("max-age=%d, public, no-transform, must-revalidate", int(a.cfg.OCSPValidity.Seconds())))
	} else {
		w.Header().Set("Cache-Control", "no-store")
	}
	_, _ = w.Write(resp)
}

func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
}

// decodeBase64 takes the standard alphabet (what RFC 6960 A.1 says) and,
// for lenient clients, the URL-safe one, padded or not.
func decodeBase64(s string) ([]byte, error) {
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		var b []byte
		if b, err = enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, err
}

package acme

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
)

// ChallengePath is where HTTP-01 tokens are served (RFC 8555 8.3).
const ChallengePath = "/.well-known/acme-challenge/"

// HTTPSolver is a ChallengeSolver that serves the key authorizations
// itself: mount it (it is an http.Handler) on the listener that answers
// port 80 for the names ordered. Tokens are kept in memory, by token
// (unique per challenge), whichever Host is asked. Safe for concurrent
// use.
type HTTPSolver struct {
	mu     sync.RWMutex
	tokens map[string]string
}

// NewHTTPSolver returns an HTTPSolver serving nothing yet.
func NewHTTPSolver() *HTTPSolver { return &HTTPSolver{tokens: map[string]string{}} }

var _ ChallengeSolver = (*HTTPSolver)(nil)

// validToken: a token is base64url (RFC 8555 8.1); anything else could
// escape the path or the handler's assumptions.
func validToken(t string) bool {
	if t == "" || len(t) > 256 {
		return false
	}
	return strings.Trim(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == ""
}

// Present serves keyAuthorization at ChallengePath+token.
func (s *HTTPSolver) Present(_ context.Context, _, token, keyAuthorization string) error {
	if !validToken(token) {
		return errors.New("acme solver: the token is not base64url")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = keyAuthorization
	return nil
}

// CleanUp stops serving token.
func (s *HTTPSolver) CleanUp(_ context.Context, _, token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
	return nil
}

// Len is the number of tokens served, for tests and metrics.
func (s *HTTPSolver) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.tokens)
}

// ServeHTTP answers GET and HEAD of ChallengePath+token with the key
// authorization as text/plain; 404 for anything else.
func (s *HTTPSolver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.URL.Path, ChallengePath)
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		http.NotFound(w, r)
		return
	}
	s.mu.RLock()
	ka, ok := s.tokens[token]
	s.mu.RUnlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(ka))
}

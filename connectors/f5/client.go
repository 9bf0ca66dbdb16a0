package f5

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/emsign/bot/protocol"
)

// maxBody bounds what one answer may hold; a BIG-IP list page is far
// smaller.
const maxBody = 32 << 20

const loginPath = "/mgmt/shared/authn/login"

// statusError is an answer other than 2xx.
type statusError struct {
	Method, Path string
	Code         int
	Status       string
	Message      string // the "message" of an iControl REST error body
}

func (e *statusError) Error() string {
	s := fmt.Sprintf("%s %s: %s", e.Method, e.Path, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// authError is a refused login or a refused request: the whole target
// fails with it.
type authError struct {
	user string
	err  *statusError
}

func (e *authError) Error() string {
	s := fmt.Sprintf("login as %s: %d %s", e.user, e.err.Code, strings.TrimSpace(strings.TrimPrefix(e.err.Status, strconv.Itoa(e.err.Code))))
	if e.err.Path != loginPath {
		s += " (" + e.err.Method + " " + e.err.Path + ")"
	}
	return s
}
func (e *authError) Unwrap() error { return e.err }

// client talks to one BIG-IP's iControl REST API.
type client struct {
	http     *http.Client
	base     string // https://HOST[:PORT]
	user     string
	password protocol.Secret
	token    string // X-F5-Auth-Token, or "" for basic auth
	log      *slog.Logger
	retries  int
	maxWait  time.Duration
	backoff  time.Duration
	// noBash is set once util/bash was refused: the scan reads the
	// certificates from the ssl-cert objects only.
	noBash bool
}

// login gets a token (POST /mgmt/shared/authn/login). A device without the
// token service (404) is used with basic auth instead.
func (c *client) login(ctx context.Context) error {
	body, err := json.Marshal(map[string]string{
		"username":          c.user,
		"password":          c.password.Reveal(),
		"loginProviderName": "tmos",
	})
	if err != nil {
		return err
	}
	var out struct {
		Token struct {
			Token string `json:"token"`
		} `json:"token"`
	}
	err = c.do(ctx, http.MethodPost, loginPath, body, &out, false)
	var se *statusError
	switch {
	case errors.As(err, &se) && se.Code == http.StatusNotFound:
		c.log.Debug("f5: no token login service, using basic auth")
		return nil
	case err != nil:
		return err
	case out.Token.Token == "":
		return errors.New("POST " + loginPath + ": the answer holds no token")
	}
	c.token = out.Token.Token
	return nil
}

// get reads path (which may carry a query) into out.
func (c *client) get(ctx context.Context, path string, out any) error {
	return c.do(ctx, http.MethodGet, path, nil, out, true)
}

// do sends one request, retrying 429 (after Retry-After, bounded) and 5xx
// answers and transport errors a few times.
func (c *client) do(ctx context.Context, method, path string, body []byte, out any, auth bool) error {
	var last error
	for attempt := 0; ; attempt++ {
		wait, err := c.once(ctx, method, path, body, out, auth)
		if err == nil {
			return nil
		}
		last = err
		if wait < 0 || attempt >= c.retries || ctx.Err() != nil {
			break
		}
		if wait == 0 {
			wait = c.backoff * time.Duration(1<<attempt)
		}
		c.log.Debug("f5: retrying", "method", method, "path", shortPath(path), "after", wait, "error", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return last
}

// once sends the request. wait < 0 means the error is final; 0 means retry
// after the usual backoff; > 0 is the server's Retry-After.
func (c *client) once(ctx context.Context, method, path string, body []byte, out any, auth bool) (time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return -1, fmt.Errorf("%s %s: %w", method, shortPath(path), err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if auth {
		if c.token != "" {
			req.Header.Set("X-F5-Auth-Token", c.token)
		} else {
			req.SetBasicAuth(c.user, c.password.Reveal())
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return -1, ctx.Err()
		}
		// The url.Error names the URL, which holds no secret.
		return 0, fmt.Errorf("%s %s: %w", method, shortPath(path), unwrapURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return 0, fmt.Errorf("%s %s: reading the answer: %w", method, shortPath(path), err)
	}
	if len(data) > maxBody {
		return -1, fmt.Errorf("%s %s: the answer is larger than %d bytes", method, shortPath(path), maxBody)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		se := &statusError{Method: method, Path: shortPath(path), Code: resp.StatusCode, Status: resp.Status, Message: errorMessage(data)}
		switch {
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return -1, &authError{user: c.user, err: se}
		case resp.StatusCode == http.StatusTooManyRequests:
			return retryAfter(resp.Header.Get("Retry-After"), c.maxWait), se
		case resp.StatusCode >= 500:
			return 0, se
		}
		return -1, se
	}
	if out == nil {
		return -1, nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return -1, fmt.Errorf("%s %s: malformed JSON answer: %w", method, shortPath(path), err)
	}
	return -1, nil
}

// retryAfter reads a Retry-After header (seconds or an HTTP date), capped
// at max; 0 (the usual backoff) when absent or unreadable.
func retryAfter(v string, max time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(v); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	}
	if d <= 0 {
		return 0
	}
	return min(d, max)
}

// errorMessage reads the message of an iControl REST error body
// ({"code":404,"message":"..."}), shortened.
func errorMessage(data []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	m := strings.TrimSpace(e.Message)
	if len(m) > 200 {
		m = m[:200] + "..."
	}
	return m
}

// shortPath drops the query, which is long and says nothing an error
// reader needs.
func shortPath(p string) string {
	p, _, _ = strings.Cut(p, "?")
	return p
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// Package fakecp is a fake control plane for the bot's tests, built from
// the contract in protocol/botapi.go only: HTTPS with its own little CA,
// activation that signs the bot's CSR, mTLS on every other call, config
// with ETags, a job long poll, scans counted by (scan, seq). Switches make
// it go down, refuse the bot (401) or lose acknowledgements.
package fakecp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emsign/bot/protocol"
)

// Key identifies a findings batch.
type Key struct {
	Scan string
	Seq  int64
}

// Server is a running fake control plane.
type Server struct {
	URL string
	// CAPEM is the CA that signed the server's certificate and signs the
	// bots' certificates: the bot's --ca-file and its CA bundle.
	CAPEM []byte

	srv    *httptest.Server
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey

	mu       sync.Mutex
	tokens   map[string]string // token → account
	serial   int64
	jobsWake chan struct{}

	// Everything below is guarded by mu; read it through Lock/Unlock or
	// the accessors.
	Activations   []protocol.ActivateRequest
	RawBodies     [][]byte
	Config        protocol.BotConfig
	ConfigGets    int
	NotModified   int
	Jobs          []protocol.Job
	Starts        map[string]protocol.ScanStart
	StartPosts    int
	Batches       map[Key]protocol.FindingsBatch
	BatchPosts    map[Key]int
	Completes     map[string]protocol.ScanComplete
	CompletePosts map[string]int
	Results       map[string]protocol.JobResult
	// Order lists what arrived, first posts only: "start S", "batch S N",
	// "complete S", "job J".
	Order []string
	// Versions are the X-Emsign-Bot-Version headers seen on mTLS calls.
	Versions map[string]bool

	// Down makes every call fail without an answer (connection closed).
	Down bool
	// Refuse answers every mTLS call with 401 and this message.
	Refuse string
	// LoseAcks makes the next N findings posts be recorded but answered
	// by a dropped connection, as when the network fails after the write.
	LoseAcks int
	// OnBatch runs (without mu held) after a batch is recorded, before
	// it is answered; when it returns true the answer is lost (the
	// connection is dropped).
	OnBatch func(Key) (loseAck bool)
	// CSRs holds every rotation CSR posted (PathOrderCSR), per order.
	CSRs map[string][]string
	// OnOrderCSR answers a rotation's CSR (called without mu held); a
	// non-empty error string answers 400 with it. nil answers 404.
	OnOrderCSR func(order string, csrPEM []byte) (protocol.OrderCertificate, string)
}

// New starts a fake control plane; it stops with the test.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		tokens:        map[string]string{},
		jobsWake:      make(chan struct{}),
		Starts:        map[string]protocol.ScanStart{},
		Batches:       map[Key]protocol.FindingsBatch{},
		BatchPosts:    map[Key]int{},
		Completes:     map[string]protocol.ScanComplete{},
		CompletePosts: map[string]int{},
		Results:       map[string]protocol.JobResult{},
		Versions:      map[string]bool{},
		CSRs:          map[string][]string{},
		Config:        protocol.BotConfig{Status: protocol.BotActive, Schedule: protocol.Schedule{Kind: protocol.ScheduleOnDemand}, Version: "v1"},
	}
	var err error
	s.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fake control plane CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, s.caKey.Public(), s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	s.caCert, _ = x509.ParseCertificate(caDER)
	s.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, s.caCert, srvKey.Public(), s.caKey)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.caCert)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER, caDER}, PrivateKey: srvKey}},
		// Activation comes without a client certificate; every other
		// path insists on one (checked in serve).
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  pool,
		MinVersion: tls.VersionTLS12,
	}
	s.srv.StartTLS()
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Close stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	select {
	case <-s.jobsWake:
	default:
		close(s.jobsWake)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// AddToken creates a one-time bot token for account.
func (s *Server) AddToken(account, token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[token] = account
}

// Do runs f with the server's state locked.
func (s *Server) Do(f func(s *Server)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// SetConfig replaces the configuration (its Version is the ETag).
func (s *Server) SetConfig(c protocol.BotConfig) { s.Do(func(s *Server) { s.Config = c }) }

// AddJob queues a job and wakes a waiting long poll.
func (s *Server) AddJob(j protocol.Job) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Jobs = append(s.Jobs, j)
	close(s.jobsWake)
	s.jobsWake = make(chan struct{})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, protocol.ErrorResponse{Error: msg})
}

func hangUp(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		hangUp(w)
		return
	}
	s.mu.Lock()
	down := s.Down
	s.RawBodies = append(s.RawBodies, body)
	s.mu.Unlock()
	if down {
		hangUp(w)
		return
	}
	if r.URL.Path == protocol.PathActivate && r.Method == http.MethodPost {
		s.activate(w, body)
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		writeErr(w, http.StatusUnauthorized, "client certificate required")
		return
	}
	s.mu.Lock()
	s.Versions[r.Header.Get(protocol.HeaderBotVersion)] = true
	refuse := s.Refuse
	s.mu.Unlock()
	if refuse != "" {
		writeErr(w, http.StatusUnauthorized, refuse)
		return
	}
	p := r.URL.Path
	switch {
	case p == protocol.PathConfig && r.Method == http.MethodGet:
		s.config(w, r)
	case p == protocol.PathJobs && r.Method == http.MethodGet:
		s.jobs(w, r)
	case p == protocol.PathScans && r.Method == http.MethodPost:
		var st protocol.ScanStart
		if json.Unmarshal(body, &st) != nil || st.ScanID == "" {
			writeErr(w, http.StatusBadRequest, "bad scan start")
			return
		}
		s.mu.Lock()
		s.StartPosts++
		if _, ok := s.Starts[st.ScanID]; !ok {
			s.Starts[st.ScanID] = st
			s.Order = append(s.Order, "start "+st.ScanID)
		}
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, struct{}{})
	case strings.HasPrefix(p, protocol.PathScans+"/") && strings.HasSuffix(p, "/findings") && r.Method == http.MethodPost:
		s.findings(w, strings.TrimSuffix(strings.TrimPrefix(p, protocol.PathScans+"/"), "/findings"), body)
	case strings.HasPrefix(p, protocol.PathScans+"/") && strings.HasSuffix(p, "/complete") && r.Method == http.MethodPost:
		scan := strings.TrimSuffix(strings.TrimPrefix(p, protocol.PathScans+"/"), "/complete")
		var c protocol.ScanComplete
		if json.Unmarshal(body, &c) != nil {
			writeErr(w, http.StatusBadRequest, "bad scan complete")
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.Starts[scan]; !ok {
			writeErr(w, http.StatusNotFound, "no such scan")
			return
		}
		s.CompletePosts[scan]++
		if _, ok := s.Completes[scan]; !ok {
			s.Completes[scan] = c
			s.Order = append(s.Order, "complete "+scan)
		}
		writeJSON(w, http.StatusOK, struct{}{})
	case strings.HasPrefix(p, protocol.BotAPIPrefix+"/orders/") && strings.HasSuffix(p, "/csr") && r.Method == http.MethodPost:
		s.orderCSR(w, strings.TrimSuffix(strings.TrimPrefix(p, protocol.BotAPIPrefix+"/orders/"), "/csr"), body)
	case strings.HasPrefix(p, protocol.BotAPIPrefix+"/jobs/") && r.Method == http.MethodPost:
		id := strings.TrimPrefix(p, protocol.BotAPIPrefix+"/jobs/")
		var res protocol.JobResult
		if json.Unmarshal(body, &res) != nil {
			writeErr(w, http.StatusBadRequest, "bad job result")
			return
		}
		s.mu.Lock()
		if _, ok := s.Results[id]; !ok {
			s.Order = append(s.Order, "job "+id)
		}
		s.Results[id] = res
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, struct{}{})
	default:
		writeErr(w, http.StatusNotFound, "no such path")
	}
}

func (s *Server) activate(w http.ResponseWriter, body []byte) {
	var req protocol.ActivateRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeErr(w, http.StatusBadRequest, "bad request")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Activations = append(s.Activations, req)
	if acct, ok := s.tokens[req.Token]; !ok || acct != req.Account {
		writeErr(w, http.StatusForbidden, "unknown account or token, or the token was already used")
		return
	}
	b, _ := pem.Decode([]byte(req.CSR))
	if b == nil {
		writeErr(w, http.StatusBadRequest, "csr is not PEM")
		return
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil || csr.CheckSignature() != nil {
		writeErr(w, http.StatusBadRequest, "bad csr")
		return
	}
	delete(s.tokens, req.Token)
	s.serial++
	botID := fmt.Sprintf("bot-%d", s.serial)
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(100 + s.serial), Subject: pkix.Name{CommonName: botID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, s.caCert, csr.PublicKey, s.caKey)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, protocol.ActivateResponse{
		BotID:       botID,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		CABundle:    string(s.CAPEM),
	})
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.ConfigGets++
	cfg := s.Config
	etag := `"` + cfg.Version + `"`
	if r.Header.Get("If-None-Match") == etag {
		s.NotModified++
		s.mu.Unlock()
		w.Header().Set("ETag", etag)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) jobs(w http.ResponseWriter, r *http.Request) {
	wait, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil || wait < 0 || wait > time.Minute {
		writeErr(w, http.StatusBadRequest, "wait: want a duration up to 1m")
		return
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		s.mu.Lock()
		jobs, wake, down := s.Jobs, s.jobsWake, s.Down
		if len(jobs) > 0 && !down {
			s.Jobs = nil
		}
		s.mu.Unlock()
		if down {
			hangUp(w)
			return
		}
		if len(jobs) > 0 {
			writeJSON(w, http.StatusOK, protocol.JobsResponse{Jobs: jobs})
			return
		}
		select {
		case <-wake:
		case <-timer.C:
			writeJSON(w, http.StatusOK, protocol.JobsResponse{Jobs: []protocol.Job{}})
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (s *Server) findings(w http.ResponseWriter, scan string, body []byte) {
	var b protocol.FindingsBatch
	if err := json.Unmarshal(body, &b); err != nil || b.Seq < 1 {
		writeErr(w, http.StatusBadRequest, "bad findings batch")
		return
	}
	k := Key{scan, b.Seq}
	s.mu.Lock()
	if _, ok := s.Starts[scan]; !ok {
		s.mu.Unlock()
		writeErr(w, http.StatusNotFound, "no such scan")
		return
	}
	s.BatchPosts[k]++
	_, dup := s.Batches[k]
	if !dup {
		s.Batches[k] = b
		s.Order = append(s.Order, fmt.Sprintf("batch %s %d", scan, b.Seq))
	}
	lose := s.LoseAcks > 0
	if lose {
		s.LoseAcks--
	}
	hook := s.OnBatch
	s.mu.Unlock()
	if hook != nil && hook(k) {
		lose = true
	}
	if lose {
		hangUp(w)
		return
	}
	writeJSON(w, http.StatusOK, protocol.FindingsAck{Seq: b.Seq, Duplicate: dup})
}

func (s *Server) orderCSR(w http.ResponseWriter, order string, body []byte) {
	var req protocol.OrderCSR
	if err := json.Unmarshal(body, &req); err != nil || req.CSR == "" {
		writeErr(w, http.StatusBadRequest, "bad order csr")
		return
	}
	s.mu.Lock()
	s.CSRs[order] = append(s.CSRs[order], req.CSR)
	hook := s.OnOrderCSR
	s.mu.Unlock()
	if hook == nil {
		writeErr(w, http.StatusNotFound, "no such order")
		return
	}
	oc, refuse := hook(order, []byte(req.CSR))
	if refuse != "" {
		writeErr(w, http.StatusBadRequest, refuse)
		return
	}
	writeJSON(w, http.StatusOK, oc)
}

// FindingsOf returns the findings received for a scan, in seq order, and
// whether the seqs run 1..n without a gap.
func (s *Server) FindingsOf(scan string) (fs []protocol.Finding, gapless bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := int64(0)
	for k := range s.Batches {
		if k.Scan == scan {
			n++
		}
	}
	gapless = true
	for seq := int64(1); seq <= n; seq++ {
		b, ok := s.Batches[Key{scan, seq}]
		if !ok {
			gapless = false
			continue
		}
		fs = append(fs, b.Findings...)
	}
	return fs, gapless
}

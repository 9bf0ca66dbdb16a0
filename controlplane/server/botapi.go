package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// errActivationRefused is the one answer to every refused activation, so
// that a caller learns nothing about which part was wrong.
const errActivationRefused = "activation refused"

func (s *Server) activate(w http.ResponseWriter, r *http.Request) {
	var req protocol.ActivateRequest
	if err := readJSON(w, r, &req, maxBody, false); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case req.Account == "":
		writeError(w, http.StatusBadRequest, "account: required")
		return
	case req.Token == "":
		writeError(w, http.StatusBadRequest, "token: required")
		return
	case req.CSR == "":
		writeError(w, http.StatusBadRequest, "csr: required")
		return
	}
	refuse := func(why string) {
		// The reason goes to the log (never the token), not to the caller.
		s.log.Warn("activation refused", "account", req.Account, "hostname", req.Hostname, "reason", why, "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, errActivationRefused)
	}
	b, hash, ok, err := admin.FindTokenHolder(r.Context(), s.st, req.Account, req.Token)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if !ok {
		refuse("no bot of the account holds this token")
		return
	}
	if b.Status != protocol.BotActivationPending {
		refuse("bot is " + b.Status)
		return
	}
	cert, certPEM, err := s.ca.SignBot(req.CSR, b.ID, s.now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	err = s.st.ActivateBot(r.Context(), req.Account, b.ID, hash, store.Activation{
		Hostname: req.Hostname, OS: req.OS, Arch: req.Arch, IPs: req.IPs, Version: req.Version, Path: capPath(req.Path),
		Capability: req.Capability, CertSerial: pki.SerialString(cert),
	})
	if errors.Is(err, store.ErrNotFound) {
		refuse("token used concurrently")
		return
	}
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	s.log.Info("bot activated", "account", req.Account, "bot", b.ID, "hostname", req.Hostname)
	writeJSON(w, http.StatusOK, protocol.ActivateResponse{BotID: b.ID, Certificate: string(certPEM), CABundle: string(s.ca.PEM())})
}

type botKey struct{}

// bot authenticates a bot by its client certificate: issued by our CA (the
// TLS layer checked that), and the bot's current one; the bot active.
func (s *Server) bot(h func(http.ResponseWriter, *http.Request, store.Bot)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 || len(r.TLS.VerifiedChains) == 0 {
			writeError(w, http.StatusUnauthorized, "client certificate required")
			return
		}
		c := r.TLS.PeerCertificates[0]
		b, err := s.st.BotByCertificate(r.Context(), c.Subject.CommonName, pki.SerialString(c))
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusUnauthorized, "client certificate revoked: activate again")
			return
		}
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		// The path is the bot's word, kept as given (capped); written only
		// when it changed, with last seen.
		path := capPath(r.Header.Get(protocol.HeaderBotPath))
		if path == b.Path {
			path = ""
		}
		if err := s.st.TouchBot(r.Context(), b.ID, s.now(), r.Header.Get(protocol.HeaderBotVersion), path); err != nil {
			s.log.Warn("last seen not recorded", "bot", b.ID, "err", err)
		} else if path != "" {
			b.Path = path
		}
		// A bot upgraded in place says so on every call; a lower or
		// malformed number changes nothing.
		if c, err := strconv.Atoi(r.Header.Get(protocol.HeaderBotCapability)); err == nil && c > b.Capability {
			if err := s.st.RaiseBotCapability(r.Context(), b.ID, c); err != nil {
				s.log.Warn("capability not recorded", "bot", b.ID, "err", err)
			} else {
				b.Capability = c
			}
		}
		if b.Status != protocol.BotActive {
			writeError(w, http.StatusForbidden, "bot is "+b.Status)
			return
		}
		h(w, r, b)
	})
}

// maxPathLen caps the path a bot reports (ActivateRequest.Path and
// protocol.HeaderBotPath): "via " and a host name and port fit well within.
const maxPathLen = 300

// capPath cuts a reported path to maxPathLen bytes, on a character
// boundary; otherwise it is kept as the bot gave it.
func capPath(p string) string {
	if len(p) <= maxPathLen {
		return p
	}
	n := maxPathLen
	for n > 0 && !utf8.RuneStart(p[n]) {
		n--
	}
	return p[:n]
}

// BotConfig is what GET /bot/v1/config answers for b, with its version.
func (s *Server) BotConfig(b store.Bot) (protocol.BotConfig, error) {
	targets, err := s.ops.OpenTargets(b)
	if err != nil {
		return protocol.BotConfig{}, err
	}
	cfg := protocol.BotConfig{
		BotID: b.ID, Status: b.Status, Targets: targets, Schedule: b.Targets.Schedule,
		Threads: b.Targets.Threads, MaxRuntime: protocol.Duration(b.Targets.MaxRuntime),
	}
	if cfg.Schedule.Kind == "" {
		cfg.Schedule.Kind = protocol.ScheduleOnDemand
	}
	// The version is a digest of the content: it changes exactly when the
	// content does, on every replica alike.
	j, err := json.Marshal(cfg)
	if err != nil {
		return protocol.BotConfig{}, err
	}
	sum := sha256.Sum256(j)
	cfg.Version = hex.EncodeToString(sum[:12])
	return cfg, nil
}

func (s *Server) botConfig(w http.ResponseWriter, r *http.Request, b store.Bot) {
	cfg, err := s.BotConfig(b)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	etag := `"` + cfg.Version + `"`
	w.Header().Set("ETag", etag)
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		for tag := range strings.SplitSeq(inm, ",") {
			if t := strings.TrimSpace(tag); t == etag || t == "W/"+etag || t == "*" {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	}
	writeJSON(w, http.StatusOK, cfg)
}

func (s *Server) botScanStart(w http.ResponseWriter, r *http.Request, b store.Bot) {
	var st protocol.ScanStart
	if err := readJSON(w, r, &st, maxBody, false); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := checkID("scan_id", st.ScanID); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.st.StartScan(r.Context(), b.Account, b.ID, st); err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ScanID string `json:"scan_id"`
	}{st.ScanID})
}

// idPattern is the form of the IDs bots make (protocol.IDPattern).
var idPattern = regexp.MustCompile(protocol.IDPattern)

// checkID checks an ID a bot made.
func checkID(field, id string) error {
	if id == "" {
		return fmt.Errorf("%s: required", field)
	}
	if !idPattern.MatchString(id) {
		return fmt.Errorf("%s: want at most 128 letters, digits, '.', '_' or '-', starting with a letter or digit", field)
	}
	return nil
}

func (s *Server) botFindings(w http.ResponseWriter, r *http.Request, b store.Bot) {
	scanID := r.PathValue("scan")
	var batch protocol.FindingsBatch
	if err := readJSON(w, r, &batch, maxFindingsBody, false); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if batch.Seq < 1 {
		writeError(w, http.StatusBadRequest, "seq: want 1 or more")
		return
	}
	dup, err := s.st.Ingest(r.Context(), b.Account, b.ID, scanID, batch)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, protocol.FindingsAck{Seq: batch.Seq, Duplicate: dup})
}

func (s *Server) botScanComplete(w http.ResponseWriter, r *http.Request, b store.Bot) {
	var c protocol.ScanComplete
	if err := readJSON(w, r, &c, maxBody, false); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.st.CompleteScan(r.Context(), b.Account, b.ID, r.PathValue("scan"), c); err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ScanID string `json:"scan_id"`
	}{r.PathValue("scan")})
}

func (s *Server) botJobs(w http.ResponseWriter, r *http.Request, b store.Bot) {
	var wait time.Duration
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			writeError(w, http.StatusBadRequest, "wait: want a duration such as 30s")
			return
		}
		wait = min(d, s.maxWait)
	}
	// Subscribe before looking, so that a job queued in between wakes us.
	wake, cancel := s.ops.Notifier().Subscribe(b.ID)
	defer cancel()
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		jobs, err := s.st.TakeJobs(r.Context(), b.ID)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		if len(jobs) > 0 || wait == 0 {
			writeJSON(w, http.StatusOK, s.jobsResponse(r.Context(), b, jobs))
			return
		}
		select {
		case <-wake:
			continue
		case <-timer.C:
		case <-s.closing:
		case <-r.Context().Done():
			return
		}
		// One last look: a job may have come with the deadline.
		jobs, err = s.st.TakeJobs(context.WithoutCancel(r.Context()), b.ID)
		if err != nil {
			s.storeError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, s.jobsResponse(r.Context(), b, jobs))
		return
	}
}

// jobsResponse converts the jobs taken for delivery. A rotate job carries
// its rotation, opened here; one whose payload cannot be opened (the
// sealing key changed, a bot of capability 1) is not delivered: the job
// and its order fail with the reason.
func (s *Server) jobsResponse(ctx context.Context, b store.Bot, jobs []store.Job) protocol.JobsResponse {
	out := protocol.JobsResponse{Jobs: []protocol.Job{}}
	for _, j := range jobs {
		pj := protocol.Job{ID: j.ID, Kind: j.Kind, ScanID: j.ScanID}
		if j.Kind == protocol.JobRotate {
			var err error
			if s.ordering == nil {
				err = errors.New("ordering is not configured on this control plane")
			} else if b.Capability < 2 {
				err = fmt.Errorf("bot speaks protocol %d: upgrade it to rotate", b.Capability)
			} else {
				pj.Rotation, err = s.ordering.JobRotation(ctx, j)
			}
			if err != nil {
				s.failJob(ctx, b, j, err)
				continue
			}
		}
		out.Jobs = append(out.Jobs, pj)
	}
	return out
}

// failJob ends a job that cannot be delivered, and its order.
func (s *Server) failJob(ctx context.Context, b store.Bot, j store.Job, why error) {
	ctx = context.WithoutCancel(ctx)
	s.log.Error("rotate job not delivered", "bot", b.ID, "job", j.ID, "order", j.OrderID, "err", why)
	if s.ordering != nil {
		if err := s.ordering.FailJob(ctx, j, why); err != nil {
			s.log.Error("order not failed", "order", j.OrderID, "err", err)
		}
	}
	if err := s.st.FinishJob(ctx, b.ID, j.ID, store.JobFailed, why.Error()); err != nil {
		s.log.Error("job not failed", "job", j.ID, "err", err)
	}
}

func (s *Server) botJobResult(w http.ResponseWriter, r *http.Request, b store.Bot) {
	var res protocol.JobResult
	if err := readJSON(w, r, &res, maxBody, false); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if res.Status != protocol.JobDone && res.Status != protocol.JobFailed {
		writeError(w, http.StatusBadRequest, "status: want done or failed")
		return
	}
	// A rotation's result is recorded on its order first: should the
	// job's own update fail, the bot posts again (it spools results) and
	// RotationFinished changes nothing the second time.
	if res.Rotation != nil || s.isRotation(r.Context(), b, r.PathValue("id")) {
		if s.ordering == nil {
			writeError(w, http.StatusServiceUnavailable, "ordering is not configured")
			return
		}
		j := store.Job{ID: r.PathValue("id"), Account: b.Account, BotID: b.ID, Kind: protocol.JobRotate}
		if err := s.ordering.RotationFinished(r.Context(), b, j, res); err != nil {
			s.storeError(w, r, err)
			return
		}
	}
	if err := s.st.FinishJob(r.Context(), b.ID, r.PathValue("id"), res.Status, res.Error); err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		ID string `json:"id"`
	}{r.PathValue("id")})
}

// isRotation says whether a job whose result has no rotation part is a
// rotate job (the bot failed before it read the order): the store has no
// read of one job, so its open orders are looked through.
func (s *Server) isRotation(ctx context.Context, b store.Bot, jobID string) bool {
	if s.ordering == nil {
		return false
	}
	return s.ordering.HasOpenOrder(ctx, b, jobID)
}

package protocol

import (
	"encoding/json"
	"fmt"
	"time"
)

// Bot API paths (HTTPS, JSON bodies). Every call after activation is made
// with the bot's client certificate (mTLS); the certificate names the bot.
const (
	BotAPIPrefix = "/bot/v1"
	// PathActivate: POST ActivateRequest → ActivateResponse. The only call
	// without a client certificate.
	PathActivate = BotAPIPrefix + "/activate"
	// PathConfig: GET → BotConfig, with ETag / If-None-Match (304).
	PathConfig = BotAPIPrefix + "/config"
	// PathScans: POST ScanStart → 200 (idempotent by scan ID).
	PathScans = BotAPIPrefix + "/scans"
	// PathFindings: POST FindingsBatch → FindingsAck (idempotent by scan and
	// seq). Use FindingsPath to fill in the scan.
	PathFindings = BotAPIPrefix + "/scans/{scan}/findings"
	// PathScanComplete: POST ScanComplete → 200. Use ScanCompletePath.
	PathScanComplete = BotAPIPrefix + "/scans/{scan}/complete"
	// PathJobs: GET ?wait=30s → JobsResponse (long poll; an empty list when
	// nothing came in the wait).
	PathJobs = BotAPIPrefix + "/jobs"
	// PathJobResult: POST JobResult → 200. Use JobResultPath.
	PathJobResult = BotAPIPrefix + "/jobs/{id}"
)

// FindingsPath is PathFindings for one scan.
func FindingsPath(scan string) string { return BotAPIPrefix + "/scans/" + scan + "/findings" }

// ScanCompletePath is PathScanComplete for one scan.
func ScanCompletePath(scan string) string { return BotAPIPrefix + "/scans/" + scan + "/complete" }

// JobResultPath is PathJobResult for one job.
func JobResultPath(id string) string { return BotAPIPrefix + "/jobs/" + id }

// HeaderBotVersion carries the bot's version on every call; with the call
// itself it is the heartbeat (last seen).
const HeaderBotVersion = "X-Emsign-Bot-Version"

// HeaderBotCapability carries the bot's CapabilityVersion on every call,
// so that a bot upgraded in place (activated under an older protocol) is
// offered what its new version understands, such as rotations.
const HeaderBotCapability = "X-Emsign-Bot-Capability"

// HeaderBotPath carries, with the heartbeat, how the bot reaches the
// control plane now: "direct", "proxy" or "via HOST:PORT" (as
// ActivateRequest.Path; it changes with emsign-bot configure).
const HeaderBotPath = "X-Emsign-Bot-Path"

// ActivateRequest is a bot's first call: the account number and one-time
// token prove who it is, the CSR carries the public half of the key it made
// and keeps (B2).
type ActivateRequest struct {
	Account string `json:"account"`
	// Token is the one-time bot token (a UUID). It travels only here, over
	// TLS; the control plane keeps only its hash.
	Token    string   `json:"token"`
	Hostname string   `json:"hostname"`
	OS       string   `json:"os"`
	Arch     string   `json:"arch"`
	IPs      []string `json:"ips"`
	Version  string   `json:"version"`
	// CSR is a PEM certificate request for the bot's client key.
	CSR string `json:"csr"`
	// Capability is the bot's CapabilityVersion.
	Capability int `json:"capability"`
	// Path says how the bot reaches the control plane: "direct", "proxy",
	// "via HOST:PORT" (the isolated-networks issue).
	Path string `json:"path,omitempty"`
}

// ActivateResponse gives the bot its identity.
type ActivateResponse struct {
	BotID string `json:"bot_id"`
	// Certificate is the bot's client certificate, PEM.
	Certificate string `json:"certificate"`
	// CABundle is the control plane's CA, PEM: the bot trusts the server
	// through it from now on.
	CABundle string `json:"ca_bundle"`
}

// BotConfig is what a bot runs: its targets with their secrets (sent only
// over mTLS, never stored by the bot), the schedule and the limits.
type BotConfig struct {
	BotID    string   `json:"bot_id"`
	Status   string   `json:"status"`
	Targets  []string `json:"targets"`
	Schedule Schedule `json:"schedule"`
	// Threads is the scan's worker count; 0 means the bot's default.
	Threads int `json:"threads,omitempty"`
	// MaxRuntime bounds one scan; 0 means no bound.
	MaxRuntime Duration `json:"max_runtime,omitempty"`
	// Version changes whenever anything above does (it is also the ETag).
	Version string `json:"version"`
}

// Bot statuses (B2, B8).
const (
	BotActivationPending = "activation_pending"
	BotActive            = "active"
	BotSuspended         = "suspended"
	BotInactive          = "inactive"
)

// ScanStart opens a scan. Scans started by the control plane carry the ID of
// their job; scheduled scans get an ID (a UUID) from the bot. Posting the
// same start twice is harmless.
type ScanStart struct {
	ScanID  string    `json:"scan_id"`
	Trigger string    `json:"trigger"` // TriggerSchedule or TriggerJob
	Started time.Time `json:"started"`
	Targets int       `json:"targets"`
}

// Scan triggers.
const (
	TriggerSchedule = "schedule"
	TriggerJob      = "job"
)

// IDs (bots, scans, jobs) are at most 128 characters of letters, digits,
// '.', '_' and '-', starting with a letter or digit, so that they can go
// into paths and file names as they are.
const IDPattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`

// FindingsBatch carries findings in order. Seq starts at 1 for each scan
// and grows by one per batch; a batch posted twice is counted once.
type FindingsBatch struct {
	Seq      int64     `json:"seq"`
	Findings []Finding `json:"findings"`
}

// FindingsAck acknowledges a batch: once it is received the bot may delete
// the batch from its spool.
type FindingsAck struct {
	Seq int64 `json:"seq"`
	// Duplicate is true when the batch had already been received.
	Duplicate bool `json:"duplicate,omitempty"`
}

// ScanComplete closes a scan. When Complete is true (every target ran to its
// end), locations of this bot that the scan no longer reported are marked
// no longer present; a scan stopped early closes nothing.
type ScanComplete struct {
	Finished time.Time `json:"finished"`
	// Batches is the seq of the last batch sent, so the control plane can
	// tell whether any is missing.
	Batches      int64 `json:"batches"`
	Certificates int   `json:"certificates"`
	Errors       int   `json:"errors"`
	Complete     bool  `json:"complete"`
	// Stopped says why a scan ended early ("max runtime of 2h reached").
	Stopped string `json:"stopped,omitempty"`
}

// Job kinds.
const (
	JobScan          = "scan"
	JobConfigChanged = "config_changed"
)

// Job is work the control plane sends a bot.
type Job struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	ScanID string `json:"scan_id,omitempty"`
	// Rotation is set for JobRotate (capability 2).
	Rotation *Rotation `json:"rotation,omitempty"`
}

// JobsResponse answers a long poll.
type JobsResponse struct {
	Jobs []Job `json:"jobs"`
}

// Job results.
const (
	JobDone   = "done"
	JobFailed = "failed"
)

// JobResult reports how a job ended.
type JobResult struct {
	Status string `json:"status"` // JobDone or JobFailed
	Error  string `json:"error,omitempty"`
	// Rotation reports a JobRotate job (set whether it succeeded or not,
	// once the bot got as far as knowing the order).
	Rotation *RotationResult `json:"rotation,omitempty"`
}

// ErrorResponse is every error answer of both APIs: {"error":"..."}.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Duration is a time.Duration written as "2h30m" in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) {
	if d == 0 {
		return []byte(`""`), nil
	}
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "2h30m" (or "" for none).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return fmt.Errorf("duration %q: want a positive duration such as 2h30m", s)
	}
	*d = Duration(v)
	return nil
}

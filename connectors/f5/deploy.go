package f5

// Deploy target (P8): put a rotated certificate on a BIG-IP and switch a
// client-ssl profile to it, through iControl REST:
//
//  1. POST /mgmt/shared/file-transfer/uploads/NAME (application/octet-stream,
//     Content-Range START-END/TOTAL, 512 KiB chunks) puts the PEM in
//     /var/config/rest/downloads/NAME;
//  2. POST /mgmt/tm/sys/crypto/cert and /key {"command":"install","name":...,
//     "from-local-file":"/var/config/rest/downloads/NAME"} make the
//     sys file ssl-cert / ssl-key objects (and the chain, as a cert);
//  3. POST /mgmt/tm/util/unix-rm {"command":"run","utilCmdArgs":PATH}
//     removes the uploaded files (the key must not stay in the download
//     folder);
//  4. PATCH /mgmt/tm/ltm/profile/client-ssl/~P~NAME {"certKeyChain":[...]}
//     switches the profile; POST /mgmt/tm/sys/config {"command":"save"}
//     makes it survive a reboot.
//
// The old objects are never touched, so the rollback is the PATCH back to
// the old certKeyChain and the deletion of the new objects.

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/emsign/bot/agent/deploy"
	"github.com/emsign/bot/protocol"
)

// Paths of the write API.
const (
	uploadPath   = "/mgmt/shared/file-transfer/uploads/"
	downloadsDir = "/var/config/rest/downloads/"
	cryptoCert   = "/mgmt/tm/sys/crypto/cert"
	cryptoKey    = "/mgmt/tm/sys/crypto/key"
	unixRmPath   = "/mgmt/tm/util/unix-rm"
	configPath   = "/mgmt/tm/sys/config"
	profilePath  = "/mgmt/tm/ltm/profile/client-ssl/"
	fileCertPath = "/mgmt/tm/sys/file/ssl-cert/"
	fileKeyPath  = "/mgmt/tm/sys/file/ssl-key/"
	// uploadChunk is the chunk size F5's own tools use.
	uploadChunk = 512 << 10
)

// Deployer installs a certificate and key on a BIG-IP and switches one
// client-ssl profile to them. It is a deploy.Target; build it with
// NewDeployer.
type Deployer struct {
	src     *Source
	spec    protocol.DeploySpec
	env     deploy.Env
	log     *slog.Logger
	profile string // full path of the client-ssl profile
	cert    string // full path of the certificate whose certKeyChain entry is replaced; "" for the only one
	verify  []deploy.Endpoint
}

var _ deploy.Target = (*Deployer)(nil)

// NewDeployer builds the BIG-IP target of a rotation job: spec.Kind is
// protocol.DeployF5, spec.Target the f5:// discovery target (user,
// password, ca_file), spec.Object the client-ssl profile's full path
// ("/Common/clientssl-web"), or "CERT#PROFILE" ("/Common/web.crt#/Common/clientssl-web")
// to name the certKeyChain entry of a profile that has several. It
// validates and does no I/O.
func NewDeployer(spec protocol.DeploySpec, env deploy.Env) (deploy.Target, error) {
	return NewDeployerConfig(spec, env, Config{})
}

// NewDeployerConfig is NewDeployer with the connector's Config (HTTP
// client, timeout, retry backoff); its Logger and Now default to env's.
func NewDeployerConfig(spec protocol.DeploySpec, env deploy.Env, cfg Config) (*Deployer, error) {
	env, eps, err := deploy.CheckService(spec, env, protocol.DeployF5, protocol.SchemeF5, "a BIG-IP runs no command; the profile switch takes effect by itself")
	if err != nil {
		return nil, fmt.Errorf("f5: %w", err)
	}
	cert, profile, err := parseObject(spec.Object)
	if err != nil {
		return nil, fmt.Errorf("f5: deploy object: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = env.Logger
	}
	if cfg.Now == nil {
		cfg.Now = env.Now
	}
	src, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return &Deployer{src: src, spec: spec, env: env, log: env.Logger, profile: profile, cert: cert, verify: eps}, nil
}

// parseObject reads PROFILE or CERT#PROFILE, both full paths.
func parseObject(obj string) (cert, profile string, err error) {
	profile = obj
	if c, p, ok := strings.Cut(obj, "#"); ok {
		cert, profile = c, p
		if err := checkPath(cert); err != nil {
			return "", "", fmt.Errorf("certificate %q: %w", cert, err)
		}
	}
	if err := checkPath(profile); err != nil {
		return "", "", fmt.Errorf("client-ssl profile %q: %w (want /PARTITION/PROFILE or /PARTITION/CERT#/PARTITION/PROFILE)", profile, err)
	}
	return cert, profile, nil
}

func checkPath(p string) error {
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if !strings.HasPrefix(p, "/") || len(parts) < 2 {
		return errors.New("not a full path /PARTITION/NAME")
	}
	for _, s := range parts {
		if !safeSegment.MatchString(s) {
			return fmt.Errorf("segment %q has characters a BIG-IP name cannot have", s)
		}
	}
	return nil
}

// entry is one certKeyChain element of a client-ssl profile, as the
// device gives it (unknown fields kept).
type entry map[string]any

func (e entry) str(k string) string {
	s, _ := e[k].(string)
	if s != "" && s != "none" && !strings.HasPrefix(s, "/") {
		s = "/Common/" + s
	}
	return s
}

// writable drops the read-only *Reference links the device adds.
func (e entry) writable() entry {
	out := entry{}
	for k, v := range e {
		if !strings.HasSuffix(k, "Reference") {
			out[k] = v
		}
	}
	return out
}

// plan is what one Deploy changes.
type plan struct {
	profile  map[string]any // the GET answer
	entries  []entry        // the profile's certKeyChain as it was
	index    int            // the entry replaced
	newCert  string         // full paths of the new objects
	newKey   string
	newChain string // "" when the material has no chain
	oldFP    string // the old certificate's SHA-256, "" when unknown
	// created are the objects installed so far, as "cert PATH" or "key PATH".
	created []string
	patched bool
}

func (p *plan) old() entry { return p.entries[p.index] }

// Deploy installs m on the BIG-IP and switches the profile to it: prepare
// (GET the profile: its current cert/key names, kept as the backup),
// backup (the profile written to the backup directory), write (upload,
// install, PATCH certKeyChain, save), verify (GET shows the new names; the
// job's endpoints serve the new certificate), rollback on a failure after
// the first install (PATCH the old names back, delete the new objects).
func (d *Deployer) Deploy(ctx context.Context, m deploy.Material, report func(deploy.Step)) (*deploy.Result, error) {
	r := &deploy.Steps{Result: &deploy.Result{}, Report: report, Logger: d.log, Now: d.env.Now, LogPrefix: "f5: deploy "}
	keyPEM, err := deploy.SoftwareKeyPEM(m)
	if err != nil {
		return r.Refuse("f5", err)
	}
	newFP := deploy.Fingerprint(m.Certificate)
	r.Result.Fingerprint = newFP
	t, err := protocol.ParseTarget(d.spec.Target)
	if err != nil {
		return r.Refuse("f5", fmt.Errorf("target: %w", err))
	}
	c, err := d.src.client(t)
	if err != nil {
		return r.Refuse("f5", err)
	}
	if err := c.login(ctx); err != nil {
		return r.Refuse("f5", err)
	}
	p, err := d.prepare(ctx, c, len(m.Chain) > 0)
	if err != nil {
		return r.Refuse("f5", err)
	}
	r.Result.OldFingerprint = p.oldFP
	old := p.old()
	if p.oldFP == newFP {
		r.Add(deploy.StepPrepare, true, "already deployed: profile %s already uses certificate %s (%s); nothing installed, only verified", d.profile, old.str("cert"), deploy.ShortFingerprint(newFP))
		if err := d.verifyAll(ctx, r, c, p, newFP, true); err != nil {
			r.Result.Outcome = deploy.OutcomeFailed
			return r.Result, fmt.Errorf("f5: already deployed, but %w", err)
		}
		r.Result.Outcome = deploy.OutcomeAlreadyDeployed
		return r.Result, nil
	}
	msg := fmt.Sprintf("client-ssl profile %s entry %q uses cert %s, key %s, chain %s; it will use cert %s, key %s",
		d.profile, old["name"], old.str("cert"), old.str("key"), orNone(old.str("chain")), p.newCert, p.newKey)
	if p.newChain != "" {
		msg += ", chain " + p.newChain
	}
	r.Add(deploy.StepPrepare, true, "%s (certificate %s)", msg, deploy.ShortFingerprint(newFP))

	dir, err := d.backup(p)
	r.Result.BackupDir = dir
	if err != nil {
		r.Result.Outcome = deploy.OutcomeFailed
		r.Add(deploy.StepBackup, false, "%v", err)
		return r.Result, fmt.Errorf("f5: backup: %w", err)
	}
	r.Add(deploy.StepBackup, true, "profile %s saved to %s; its old certificate and key objects stay on the device", d.profile, dir)

	note, err := d.write(ctx, c, p, m, keyPEM)
	if err != nil {
		r.Add(deploy.StepWrite, false, "%v", err)
		if len(p.created) == 0 && !p.patched {
			r.Result.Outcome = deploy.OutcomeFailed
			return r.Result, fmt.Errorf("f5: write (nothing installed): %w", err)
		}
		return d.rollback(ctx, r, c, p, fmt.Errorf("write: %w", err))
	}
	r.Add(deploy.StepWrite, true, "installed %s; profile %s switched to them; configuration saved%s", strings.Join(p.created, ", "), d.profile, note)

	if err := d.verifyAll(ctx, r, c, p, newFP, false); err != nil {
		return d.rollback(ctx, r, c, p, err)
	}
	r.Result.Outcome = deploy.OutcomeDeployed
	return r.Result, nil
}

// prepare reads the profile, picks the entry to replace and names the new
// objects.
func (d *Deployer) prepare(ctx context.Context, c *client, chain bool) (*plan, error) {
	p := &plan{}
	if err := c.get(ctx, profilePath+tmName(d.profile), &p.profile); err != nil {
		var se *statusError
		if errors.As(err, &se) && se.Code == http.StatusNotFound {
			return nil, fmt.Errorf("client-ssl profile %s not found on the device", d.profile)
		}
		return nil, err
	}
	raw, _ := json.Marshal(p.profile["certKeyChain"])
	if err := json.Unmarshal(raw, &p.entries); err != nil || len(p.entries) == 0 {
		return nil, fmt.Errorf("client-ssl profile %s has no certKeyChain", d.profile)
	}
	p.index = -1
	var certs []string
	for i, e := range p.entries {
		certs = append(certs, e.str("cert"))
		if d.cert != "" && e.str("cert") == d.cert {
			p.index = i
		}
	}
	switch {
	case d.cert != "" && p.index < 0:
		return nil, fmt.Errorf("client-ssl profile %s does not use certificate %s (its certKeyChain has %s)", d.profile, d.cert, strings.Join(certs, ", "))
	case d.cert == "" && len(p.entries) > 1:
		return nil, fmt.Errorf("client-ssl profile %s has %d certKeyChain entries (%s): name the one to replace as CERT#PROFILE", d.profile, len(p.entries), strings.Join(certs, ", "))
	case p.index < 0:
		p.index = 0
	}
	folder := d.profile[:strings.LastIndex(d.profile, "/")+1]
	base := folder + d.profile[len(folder):] + "-emsign-" + d.env.Now().UTC().Format("20060102150405")
	p.newCert, p.newKey = base, base
	if chain {
		p.newChain = base + "-chain"
	}
	// The old certificate's fingerprint (SHA256/AB:CD:...) tells an
	// already deployed certificate, and what a rollback must serve again.
	if oc := p.old().str("cert"); oc != "" {
		var ci struct {
			Fingerprint string `json:"fingerprint"`
		}
		if err := c.get(ctx, fileCertPath+tmName(oc), &ci); err == nil {
			p.oldFP = parseFingerprint(ci.Fingerprint)
		} else {
			d.log.Debug("f5: old certificate's fingerprint unknown", "cert", oc, "error", err)
		}
	}
	return p, nil
}

// parseFingerprint turns SHA256/AB:CD:... into lowercase hex ("" when it
// is not a SHA-256 fingerprint).
func parseFingerprint(s string) string {
	h, ok := strings.CutPrefix(strings.ToUpper(s), "SHA256/")
	if !ok {
		return ""
	}
	b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
	if err != nil || len(b) != 32 {
		return ""
	}
	return hex.EncodeToString(b)
}

// write uploads and installs the new objects, removes the uploaded files,
// switches the profile and saves the configuration. The returned note
// says what could not be cleaned up.
func (d *Deployer) write(ctx context.Context, c *client, p *plan, m deploy.Material, keyPEM []byte) (string, error) {
	type object struct {
		kind, path, api string
		data            []byte
	}
	objs := []object{{"cert", p.newCert, cryptoCert, m.CertPEM()}, {"key", p.newKey, cryptoKey, keyPEM}}
	if p.newChain != "" {
		objs = append(objs, object{"cert", p.newChain, cryptoCert, m.ChainPEM()})
	}
	file := func(o object) string {
		name := o.path[strings.LastIndex(o.path, "/")+1:]
		if o.kind == "key" {
			return name + ".key"
		}
		return name + ".crt"
	}
	var uploaded []string
	var note string
	cleanup := func() {
		for _, f := range uploaded {
			if err := c.do(ctx, http.MethodPost, unixRmPath, mustJSON(map[string]string{"command": "run", "utilCmdArgs": downloadsDir + f}), nil, true); err != nil {
				note += fmt.Sprintf("; could not remove the uploaded %s%s (%v): remove it by hand", downloadsDir, f, err)
			}
		}
		uploaded = nil
	}
	defer cleanup()
	for _, o := range objs {
		if err := c.upload(ctx, file(o), o.data); err != nil {
			return "", err
		}
		uploaded = append(uploaded, file(o))
	}
	for _, o := range objs {
		body := mustJSON(map[string]string{"command": "install", "name": o.path, "from-local-file": downloadsDir + file(o)})
		if err := c.do(ctx, http.MethodPost, o.api, body, nil, true); err != nil {
			return "", fmt.Errorf("install %s %s: %w", o.kind, o.path, err)
		}
		p.created = append(p.created, o.kind+" "+o.path)
	}
	cleanup()

	entries := make([]entry, len(p.entries))
	for i, e := range p.entries {
		entries[i] = e.writable()
	}
	ne := entries[p.index]
	delete(ne, "passphrase") // the new key is installed unencrypted
	ne["cert"], ne["key"], ne["chain"] = p.newCert, p.newKey, orNone(p.newChain)
	if err := c.do(ctx, http.MethodPatch, profilePath+tmName(d.profile), mustJSON(map[string]any{"certKeyChain": entries}), nil, true); err != nil {
		// A 4xx is the device refusing the change: the profile is as it
		// was. Anything else (5xx, no answer) may hide a done switch.
		var se *statusError
		p.patched = !errors.As(err, &se) || se.Code >= 500
		return "", fmt.Errorf("switch profile %s: %w", d.profile, err)
	}
	p.patched = true
	if err := save(ctx, c); err != nil {
		return "", err
	}
	return note, nil
}

func save(ctx context.Context, c *client) error {
	if err := c.do(ctx, http.MethodPost, configPath, mustJSON(map[string]string{"command": "save"}), nil, true); err != nil {
		return fmt.Errorf("save the configuration: %w", err)
	}
	return nil
}

// verifyAll checks that the profile names the new objects (or, for an
// already deployed certificate, still the same), then the job's endpoints.
func (d *Deployer) verifyAll(ctx context.Context, r *deploy.Steps, c *client, p *plan, fp string, same bool) error {
	var prof map[string]any
	if err := c.get(ctx, profilePath+tmName(d.profile), &prof); err != nil {
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	var entries []entry
	raw, _ := json.Marshal(prof["certKeyChain"])
	_ = json.Unmarshal(raw, &entries)
	want := entry{"cert": p.newCert, "key": p.newKey, "chain": orNone(p.newChain)}
	if same {
		want = p.old()
	}
	var got entry
	for _, e := range entries {
		if e["name"] == p.old()["name"] {
			got = e
		}
	}
	if got == nil || got.str("cert") != want.str("cert") || got.str("key") != want.str("key") || orNone(got.str("chain")) != orNone(want.str("chain")) {
		err := fmt.Errorf("profile %s entry %q uses cert %s, key %s, chain %s; want %s, %s, %s", d.profile, p.old()["name"],
			got.str("cert"), got.str("key"), orNone(got.str("chain")), want.str("cert"), want.str("key"), orNone(want.str("chain")))
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(deploy.StepVerify, true, "profile %s uses cert %s, key %s", d.profile, got.str("cert"), got.str("key"))
	if len(d.verify) == 0 {
		return nil
	}
	msg, err := deploy.VerifyEndpoints(ctx, d.verify, fp, time.Duration(d.spec.VerifyTimeout), 0)
	if err != nil {
		r.Add(deploy.StepVerify, false, "%v", err)
		return fmt.Errorf("verify: %w", err)
	}
	r.Add(deploy.StepVerify, true, "%s", msg)
	return nil
}

// rollback switches the profile back to the old objects, deletes the new
// ones, saves, and checks that the endpoints serve the old certificate.
func (d *Deployer) rollback(ctx context.Context, r *deploy.Steps, c *client, p *plan, cause error) (*deploy.Result, error) {
	// The job's context may be what failed: the rollback gets its own.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deploy.RollbackBudget)
	defer cancel()
	var problems []string
	if p.patched {
		entries := make([]entry, len(p.entries))
		for i, e := range p.entries {
			entries[i] = e.writable()
		}
		if err := c.do(ctx, http.MethodPatch, profilePath+tmName(d.profile), mustJSON(map[string]any{"certKeyChain": entries}), nil, true); err != nil {
			problems = append(problems, fmt.Sprintf("switch profile %s back: %v", d.profile, err))
		}
	}
	deleted := 0
	if len(problems) == 0 {
		// Only once the profile no longer names them can they go.
		for _, o := range slices.Backward(p.created) {
			kind, path, _ := strings.Cut(o, " ")
			api := fileCertPath
			if kind == "key" {
				api = fileKeyPath
			}
			if err := c.do(ctx, http.MethodDelete, api+tmName(path), nil, nil, true); err != nil {
				problems = append(problems, fmt.Sprintf("delete %s: %v", o, err))
				continue
			}
			deleted++
		}
		if err := save(ctx, c); err != nil {
			problems = append(problems, err.Error())
		}
	}
	verifyMsg := ""
	if len(problems) == 0 && len(d.verify) > 0 {
		if p.oldFP == "" {
			verifyMsg = "; the old certificate's fingerprint is unknown, so the endpoints were not checked"
		} else if msg, err := deploy.VerifyEndpoints(ctx, d.verify, p.oldFP, time.Duration(d.spec.VerifyTimeout), 0); err != nil {
			problems = append(problems, "old certificate not served again: "+err.Error())
		} else {
			verifyMsg = "; " + msg
		}
	}
	old := p.old()
	if len(problems) > 0 {
		r.Result.Outcome = deploy.OutcomeRollbackFailed
		r.Add(deploy.StepRollback, false, "ROLLBACK FAILED after %v: %s. Profile %s must use cert %s, key %s, chain %s (saved in %s/profile.json); the new objects to delete are %s",
			cause, strings.Join(problems, "; "), d.profile, old.str("cert"), old.str("key"), orNone(old.str("chain")), r.Result.BackupDir, strings.Join(p.created, ", "))
		return r.Result, fmt.Errorf("f5: %w (%s; backup in %s) after: %w", deploy.ErrRollbackFailed, strings.Join(problems, "; "), r.Result.BackupDir, cause)
	}
	r.Result.Outcome = deploy.OutcomeRolledBack
	what := "nothing was switched"
	if p.patched {
		what = fmt.Sprintf("profile %s uses cert %s, key %s again", d.profile, old.str("cert"), old.str("key"))
	}
	r.Add(deploy.StepRollback, true, "rolled back after %v: %s; %d new objects deleted%s", cause, what, deleted, verifyMsg)
	return r.Result, fmt.Errorf("f5: %w: %w", deploy.ErrRolledBack, cause)
}

// backup writes the profile as the device gave it, and a manifest of the
// old and new names, to a new directory under the backup directory.
func (d *Deployer) backup(p *plan) (string, error) {
	dir, err := deploy.NewBackupDir(d.env.BackupDir, "f5", d.env.Now())
	if err != nil {
		return dir, err
	}
	prof, err := json.MarshalIndent(p.profile, "", "  ")
	if err != nil {
		return dir, err
	}
	old := p.old()
	manifest, _ := json.MarshalIndent(map[string]string{
		"kind": protocol.DeployF5, "profile": d.profile, "entry": fmt.Sprint(old["name"]),
		"old_cert": old.str("cert"), "old_key": old.str("key"), "old_chain": orNone(old.str("chain")),
		"new_cert": p.newCert, "new_key": p.newKey, "new_chain": orNone(p.newChain),
		"note": "the old objects stay on the device: to restore, PATCH the profile's certKeyChain as in profile.json",
	}, "", "  ")
	for _, f := range []struct {
		name string
		data []byte
	}{{"profile.json", append(prof, '\n')}, {"manifest.json", append(manifest, '\n')}} {
		if err := deploy.WriteFileAtomic(filepath.Join(dir, f.name), f.data, 0o600); err != nil {
			return dir, err
		}
	}
	return dir, nil
}

// upload sends data to /mgmt/shared/file-transfer/uploads/NAME in chunks,
// each with its Content-Range; the device keeps it as
// /var/config/rest/downloads/NAME.
func (c *client) upload(ctx context.Context, name string, data []byte) error {
	for start := 0; start < len(data) || start == 0; {
		end := min(start+uploadChunk, len(data))
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+uploadPath+name, bytes.NewReader(data[start:end]))
		if err != nil {
			return fmt.Errorf("upload %s: %w", name, err)
		}
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Content-Range", fmt.Sprintf("%d-%d/%d", start, end-1, len(data)))
		req.Header.Set("Accept", "application/json")
		if c.token != "" {
			req.Header.Set("X-F5-Auth-Token", c.token)
		} else {
			req.SetBasicAuth(c.user, c.password.Reveal())
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return fmt.Errorf("upload %s: %w", name, unwrapURLError(err))
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			se := &statusError{Method: http.MethodPost, Path: uploadPath + name, Code: resp.StatusCode, Status: resp.Status, Message: errorMessage(body)}
			if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
				return &authError{user: c.user, err: se}
			}
			return se
		}
		start = end
		if end >= len(data) {
			return nil
		}
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // maps of strings always marshal
	}
	return b
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

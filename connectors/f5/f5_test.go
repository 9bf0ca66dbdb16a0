package f5

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	fakef5 "github.com/emsign/bot/internal/fakes/f5"
	"github.com/emsign/bot/protocol"
)

type run struct {
	findings []protocol.Finding
	err      error
	logs     string
}

func (r run) byPath() map[string]protocol.Finding {
	m := map[string]protocol.Finding{}
	for _, f := range r.findings {
		m[f.Location.Path] = f
	}
	return m
}

func target(t *testing.T, f *fakef5.Fake, extra string) protocol.Target {
	t.Helper()
	raw := "f5://" + f.Host() + "?user=" + fakef5.User + "&password=" + url.QueryEscape(fakef5.Password) + "&ca_file=" + url.QueryEscape(f.CAFile())
	if extra != "" {
		raw += "&" + extra
	}
	tg, err := protocol.ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	return tg
}

func discover(t *testing.T, tg protocol.Target, cfg Config) run {
	t.Helper()
	var logs bytes.Buffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if cfg.RetryBackoff == 0 {
		cfg.RetryBackoff = time.Millisecond
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var r run
	r.err = s.Discover(ctx, tg, func(f protocol.Finding) error {
		r.findings = append(r.findings, f)
		return nil
	})
	r.logs = logs.String()
	// The password is never in what the connector says.
	all := r.logs
	if r.err != nil {
		all += r.err.Error()
	}
	for _, f := range r.findings {
		all += f.Error + f.Location.String()
		for k, v := range f.Attributes {
			all += k + v
		}
	}
	if strings.Contains(all, fakef5.Password) {
		t.Fatalf("the password leaked: %s", all)
	}
	return r
}

func TestTokenLoginAllPartitions(t *testing.T) {
	f := fakef5.Start(t)
	r := discover(t, target(t, f, ""), Config{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := r.byPath()
	want := []string{"/Common/default.crt", "/Common/site.crt", "/Common/bundle.crt", "/Tenant/app.crt", "/Common/gone.crt"}
	if len(r.findings) != len(want) {
		t.Fatalf("got %d findings, want %d: %+v", len(r.findings), len(want), r.findings)
	}
	for _, p := range want {
		fd, ok := got[p]
		if !ok {
			t.Fatalf("no finding for %s", p)
		}
		if fd.Source != "f5" || fd.Format != "pem" || fd.Location.Scheme != "f5" || fd.Location.Host != f.Host() {
			t.Errorf("%s: bad finding %+v", p, fd)
		}
		if fd.Attributes[AttrFailover] != "active" {
			t.Errorf("%s: failover = %q", p, fd.Attributes[AttrFailover])
		}
		if p == "/Common/gone.crt" {
			if fd.Error == "" || !strings.Contains(fd.Error, "404") || len(fd.Chain) != 0 {
				t.Errorf("gone.crt: want a 404 location error, got %+v", fd)
			}
			continue
		}
		if fd.Error != "" {
			t.Errorf("%s: %s", p, fd.Error)
		}
		if !slices.EqualFunc(fd.Chain, f.Certs()[p], bytes.Equal) {
			t.Errorf("%s: chain of %d certs does not match the device's %d", p, len(fd.Chain), len(f.Certs()[p]))
		}
	}
	if s := got["/Common/site.crt"].Location.String(); s != "f5://"+f.Host()+"/Common/site.crt" {
		t.Errorf("location = %s", s)
	}
	// Token auth: no request after the login carried basic auth (the fake
	// accepts either, so check the login happened).
	if !slices.Contains(f.Requests(), "POST "+loginPath) {
		t.Errorf("no token login: %v", f.Requests())
	}
	if n := f.BasicAuthCount(); n != 0 {
		t.Errorf("%d requests used basic auth after a token login", n)
	}
}

func TestVIPMapping(t *testing.T) {
	f := fakef5.Start(t)
	r := discover(t, target(t, f, ""), Config{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	got := r.byPath()
	cases := map[string][2]string{
		"/Common/site.crt":    {"/Common/site_ssl", "/Common/vs_https@10.0.0.10:443,/Common/vs_https_v6@2001:db8::10.443"},
		"/Common/bundle.crt":  {"/Common/site_ssl", "/Common/vs_https@10.0.0.10:443,/Common/vs_https_v6@2001:db8::10.443"},
		"/Common/default.crt": {"/Common/clientssl", ""},
		"/Tenant/app.crt":     {"/Tenant/app_ssl", "/Tenant/vs_app@10.1.0.20:8443"},
	}
	for p, w := range cases {
		a := got[p].Attributes
		if a[AttrProfiles] != w[0] || a[AttrVIPs] != w[1] {
			t.Errorf("%s: profiles=%q vips=%q, want %q %q", p, a[AttrProfiles], a[AttrVIPs], w[0], w[1])
		}
	}
	if _, ok := got["/Common/gone.crt"].Attributes[AttrVIPs]; ok {
		t.Error("gone.crt has vips")
	}
}

func TestPartition(t *testing.T) {
	f := fakef5.Start(t)
	r := discover(t, target(t, f, "partition=Tenant"), Config{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.findings) != 1 || r.findings[0].Location.Path != "/Tenant/app.crt" {
		t.Fatalf("partition=Tenant: %+v", r.findings)
	}
}

func TestBasicAuthFallback(t *testing.T) {
	f := fakef5.Start(t)
	f.SetNoLogin(true)
	r := discover(t, target(t, f, ""), Config{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.findings) != 5 || r.byPath()["/Common/site.crt"].Error != "" {
		t.Fatalf("basic auth: %+v", r.findings)
	}
	if f.BasicAuthCount() == 0 {
		t.Error("no request used basic auth")
	}
}

func TestPaging(t *testing.T) {
	f := fakef5.Start(t)
	r := discover(t, target(t, f, ""), Config{PageSize: 2})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.findings) != 5 {
		t.Fatalf("got %d findings over pages, want 5", len(r.findings))
	}
	var certPages int
	for _, s := range f.Requests() {
		if strings.HasPrefix(s, "GET /mgmt/tm/sys/file/ssl-cert?") {
			certPages++
		}
	}
	if certPages != 3 {
		t.Errorf("ssl-cert pages fetched = %d, want 3: %v", certPages, f.Requests())
	}
	if got := r.byPath()["/Tenant/app.crt"].Attributes[AttrVIPs]; got != "/Tenant/vs_app@10.1.0.20:8443" {
		t.Errorf("vips over pages = %q", got)
	}
}

func TestFailoverStandby(t *testing.T) {
	f := fakef5.Start(t)
	f.SetFailover("Failover standby for 0d 00:01:02\n")
	r := discover(t, target(t, f, ""), Config{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := r.findings[0].Attributes[AttrFailover]; got != "standby" {
		t.Fatalf("failover = %q", got)
	}
	f2 := fakef5.Start(t)
	f2.SetFault("/mgmt/tm/sys/failover", fakef5.Fault{Status: 404})
	r = discover(t, target(t, f2, ""), Config{})
	if r.err != nil || r.findings[0].Attributes[AttrFailover] != "unknown" {
		t.Fatalf("failover 404: err=%v attrs=%v", r.err, r.findings[0].Attributes)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		name string
		path string
		ft   fakef5.Fault
		// noBash refuses util/bash (a user without the Administrator
		// role), so the certificate's PEM is read from its ssl-cert object.
		noBash bool
		want   string // in the target error; "" means success
		check  func(*testing.T, run)
	}{
		{name: "login 401", path: loginPath, ft: fakef5.Fault{Status: 401}, want: "f5: login as admin: 401 Unauthorized"},
		{name: "login 403", path: loginPath, ft: fakef5.Fault{Status: 403}, want: "f5: login as admin: 403 Forbidden"},
		{name: "list 403", path: "/mgmt/tm/ltm/virtual", ft: fakef5.Fault{Status: 403}, want: "f5: login as admin: 403 Forbidden (GET /mgmt/tm/ltm/virtual)"},
		{name: "detail 401", path: "/mgmt/tm/sys/file/ssl-cert/~Common~site.crt", noBash: true, ft: fakef5.Fault{Status: 401}, want: "login as admin: 401"},
		{name: "list 500", path: "/mgmt/tm/sys/file/ssl-cert", ft: fakef5.Fault{Status: 500}, want: "f5: GET /mgmt/tm/sys/file/ssl-cert: 500 Internal Server Error"},
		{name: "500 then ok", path: "/mgmt/tm/sys/file/ssl-cert", ft: fakef5.Fault{Status: 500, Times: 2}},
		{name: "429 then ok", path: "/mgmt/tm/ltm/profile/client-ssl", ft: fakef5.Fault{Status: 429, RetryAfter: "1", Times: 1}, check: func(t *testing.T, r run) {
			if !strings.Contains(r.logs, "retrying") {
				t.Error("no retry logged")
			}
		}},
		{name: "garbage list", path: "/mgmt/tm/sys/file/ssl-cert", ft: fakef5.Fault{Garbage: true}, want: "f5: GET /mgmt/tm/sys/file/ssl-cert: malformed JSON answer"},
		{name: "garbage failover", path: "/mgmt/tm/sys/failover", ft: fakef5.Fault{Garbage: true}, check: func(t *testing.T, r run) {
			if r.findings[0].Attributes[AttrFailover] != "unknown" {
				t.Error("failover not unknown")
			}
		}},
		{name: "garbage detail", path: "/mgmt/tm/sys/file/ssl-cert/~Common~site.crt", noBash: true, ft: fakef5.Fault{Garbage: true}, check: func(t *testing.T, r run) {
			if e := r.byPath()["/Common/site.crt"].Error; !strings.Contains(e, "malformed JSON") {
				t.Errorf("site.crt error = %q", e)
			}
			if len(r.findings) != 5 {
				t.Errorf("%d findings", len(r.findings))
			}
		}},
		{name: "detail 404", path: "/mgmt/tm/sys/file/ssl-cert/~Common~site.crt", noBash: true, ft: fakef5.Fault{Status: 404}, check: func(t *testing.T, r run) {
			if e := r.byPath()["/Common/site.crt"].Error; !strings.Contains(e, "404 Not Found") || !strings.Contains(e, "was not found") {
				t.Errorf("site.crt error = %q", e)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := fakef5.Start(t)
			f.SetFault(c.path, c.ft)
			if c.noBash {
				f.SetFault(bashPath, fakef5.Fault{Status: 401})
				f.SetCertificateText(true)
			}
			r := discover(t, target(t, f, ""), Config{})
			switch {
			case c.want == "" && r.err != nil:
				t.Fatalf("unexpected error: %v", r.err)
			case c.want != "" && (r.err == nil || !strings.Contains(r.err.Error(), c.want)):
				t.Fatalf("error = %v, want %q", r.err, c.want)
			}
			if c.check != nil {
				c.check(t, r)
			}
		})
	}
}

func TestWrongPassword(t *testing.T) {
	f := fakef5.Start(t)
	raw := "f5://" + f.Host() + "?user=admin&password=wrong-pw&ca_file=" + url.QueryEscape(f.CAFile())
	tg, err := protocol.ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	r := discover(t, tg, Config{})
	if r.err == nil || r.err.Error() != "f5: login as admin: 401 Unauthorized" {
		t.Fatalf("error = %v", r.err)
	}
	if strings.Contains(r.err.Error()+r.logs, "wrong-pw") {
		t.Fatal("password leaked")
	}
	// Basic fallback with a wrong password: the first GET is refused.
	f.SetNoLogin(true)
	r = discover(t, tg, Config{})
	if r.err == nil || !strings.Contains(r.err.Error(), "f5: login as admin: 401 Unauthorized") {
		t.Fatalf("basic: error = %v", r.err)
	}
}

func TestRetryAfterCancelled(t *testing.T) {
	f := fakef5.Start(t)
	f.SetFault("/mgmt/tm/sys/file/ssl-cert", fakef5.Fault{Status: 429, RetryAfter: "30"})
	s, _ := New(Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.Discover(ctx, target(t, f, ""), func(protocol.Finding) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}

func TestTrust(t *testing.T) {
	f := fakef5.Start(t)
	raw := "f5://" + f.Host() + "?user=admin&password=" + fakef5.Password
	tg, err := protocol.ParseTarget(raw)
	if err != nil {
		t.Fatal(err)
	}
	r := discover(t, tg, Config{})
	if r.err == nil || !strings.Contains(r.err.Error(), "certificate") {
		t.Fatalf("untrusted server: error = %v", r.err)
	}
	if len(f.Requests()) != 0 {
		t.Fatalf("requests reached an untrusted server: %v", f.Requests())
	}
	tg, err = protocol.ParseTarget(raw + "&insecure=true")
	if err != nil {
		t.Fatal(err)
	}
	if r := discover(t, tg, Config{}); r.err != nil || len(r.findings) != 5 {
		t.Fatalf("insecure: %v, %d findings", r.err, len(r.findings))
	}
}

func TestEmitErrorStops(t *testing.T) {
	f := fakef5.Start(t)
	s, _ := New(Config{})
	stop := errors.New("stop")
	n := 0
	err := s.Discover(context.Background(), target(t, f, ""), func(protocol.Finding) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("err = %v after %d emits", err, n)
	}
}

func TestNotF5(t *testing.T) {
	s, _ := New(Config{})
	tg, _ := protocol.ParseTarget("tls://127.0.0.1:443")
	if err := s.Discover(context.Background(), tg, func(protocol.Finding) error { return nil }); err == nil {
		t.Fatal("want an error for a tls target")
	}
	if _, err := New(Config{Timeout: -1}); err == nil {
		t.Fatal("want an error for a negative timeout")
	}
}

// countPrefix counts the requests that start with prefix.
func countPrefix(reqs []string, prefix string) int {
	n := 0
	for _, s := range reqs {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestPEMViaBash(t *testing.T) {
	f := fakef5.Start(t)
	r := discover(t, target(t, f, ""), Config{})
	if r.err != nil {
		t.Fatal(r.err)
	}
	for p, want := range f.Certs() {
		if got := r.byPath()[p]; got.Error != "" || !slices.EqualFunc(got.Chain, want, bytes.Equal) {
			t.Errorf("%s: error %q, %d certs", p, got.Error, len(got.Chain))
		}
	}
	reqs := f.Requests()
	if n := countPrefix(reqs, "POST "+bashPath); n != 5 {
		t.Errorf("util/bash requests = %d, want 5: %v", n, reqs)
	}
	// Only the certificate without a file is looked up as an object.
	if n := countPrefix(reqs, "GET /mgmt/tm/sys/file/ssl-cert/"); n != 1 || !slices.Contains(reqs, "GET /mgmt/tm/sys/file/ssl-cert/~Common~gone.crt") {
		t.Errorf("object requests: %v", reqs)
	}
	if e := r.byPath()["/Common/gone.crt"].Error; !strings.Contains(e, "404") {
		t.Errorf("gone.crt error = %q", e)
	}
}

func TestPEMFallbackCertificateText(t *testing.T) {
	for _, status := range []int{401, 403, 404} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			f := fakef5.Start(t)
			f.SetFault(bashPath, fakef5.Fault{Status: status})
			f.SetCertificateText(true)
			r := discover(t, target(t, f, ""), Config{})
			if r.err != nil {
				t.Fatalf("a refused util/bash failed the target: %v", r.err)
			}
			for p, want := range f.Certs() {
				if got := r.byPath()[p]; got.Error != "" || !slices.EqualFunc(got.Chain, want, bytes.Equal) {
					t.Errorf("%s: error %q, %d certs", p, got.Error, len(got.Chain))
				}
			}
			if n := countPrefix(f.Requests(), "POST "+bashPath); n != 1 {
				t.Errorf("util/bash tried %d times, want once", n)
			}
			if !strings.Contains(r.logs, "util/bash") {
				t.Error("the fallback is not logged")
			}
		})
	}
}

func TestPEMNoRoute(t *testing.T) {
	f := fakef5.Start(t)
	f.SetFault(bashPath, fakef5.Fault{Status: 403})
	r := discover(t, target(t, f, ""), Config{})
	if r.err != nil || len(r.findings) != 5 {
		t.Fatalf("err = %v, %d findings", r.err, len(r.findings))
	}
	fd := r.byPath()["/Common/site.crt"]
	if len(fd.Chain) != 0 || !strings.Contains(fd.Error, "no PEM") || !strings.Contains(fd.Error, bashPath) {
		t.Errorf("site.crt: error %q, %d certs", fd.Error, len(fd.Chain))
	}
}

func TestBashCatCommand(t *testing.T) {
	got := bashCatCommand("/Common/site.crt")
	want := `-c 'cat "$(ls -1t /config/filestore/files_d/Common_d/certificate_d/:Common:site.crt_[0-9]*_[0-9]* | head -n 1)"'`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := bashCatCommand("/Common/app/site.crt"); !strings.Contains(got, "/Common_d/certificate_d/:Common:app:site.crt_") {
		t.Errorf("folder: %s", got)
	}
	for _, bad := range []string{"/Common/a'b.crt", "/Common/$(reboot).crt", "/Common/a b.crt", "site.crt", "/Common/-x.crt"} {
		if got := bashCatCommand(bad); got != "" {
			t.Errorf("%q: %s", bad, got)
		}
	}
}

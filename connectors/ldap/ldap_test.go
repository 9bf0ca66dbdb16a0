package ldap

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	ber "github.com/go-asn1-ber/asn1-ber"
	goldap "github.com/go-ldap/ldap/v3"
	"github.com/smallstep/pkcs7"

	"github.com/emsign/bot/protocol"
)

// These tests need no server and run under -short.

func TestNew(t *testing.T) {
	if _, err := New(Config{DialTimeout: -1}); err == nil {
		t.Error("negative timeout accepted")
	}
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.DialTimeout != DefaultDialTimeout || s.cfg.PageTimeout != DefaultPageTimeout || s.cfg.Now == nil || s.log == nil {
		t.Errorf("defaults not filled: %+v", s.cfg)
	}
	tg, _ := protocol.ParseTarget("file:///tmp")
	if err := s.Discover(context.Background(), tg, func(protocol.Finding) error { return nil }); err == nil {
		t.Error("file target accepted")
	}
}

func TestAttrKind(t *testing.T) {
	for name, k := range map[string]kind{
		"userCertificate": kindCert, "userCertificate;binary": kindCert, "USERCERTIFICATE;Binary": kindCert,
		"cACertificate;binary": kindCert, "cacertificate": kindCert,
		"crossCertificatePair;binary": kindPair, "crossCertificatePair": kindPair,
		"userSMIMECertificate": kindSMIME, "userSMIMECertificate;binary": kindSMIME,
		"cn": kindNone, "userCertificateX": kindNone, "": kindNone,
	} {
		if got := attrKind(name); got != k {
			t.Errorf("%q: %v, want %v", name, got, k)
		}
	}
}

func TestDecodeValue(t *testing.T) {
	ca := newTestCA()
	a, b := ca.leaf("a"), ca.leaf("b")
	p7, err := pkcs7.DegenerateCertificate(append(slices.Clone(a), b...))
	if err != nil {
		t.Fatal(err)
	}
	wrap := func(tag int, der []byte) asn1.RawValue {
		return asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: tag, IsCompound: true, Bytes: der}
	}
	both, _ := asn1.Marshal(struct{ F, R asn1.RawValue }{wrap(0, a), wrap(1, b)})
	rev, _ := asn1.Marshal(struct{ R asn1.RawValue }{wrap(1, b)})
	empty, _ := asn1.Marshal(struct{}{})
	badHalf, _ := asn1.Marshal(struct{ F asn1.RawValue }{wrap(0, []byte{0x30, 0x00})})

	type out struct {
		entry, format string
		der           []byte
		err           string
	}
	for _, c := range []struct {
		name string
		k    kind
		v    []byte
		want []out
	}{
		{"der", kindCert, a, []out{{"3", "der", a, ""}}},
		{"garbage", kindCert, []byte("nope"), []out{{"3", "der", nil, "not an X.509 certificate"}}},
		{"trailing", kindCert, append(slices.Clone(a), 0), []out{{"3", "der", nil, "not an X.509 certificate"}}},
		{"pair", kindPair, both, []out{{"3.forward", "der", a, ""}, {"3.reverse", "der", b, ""}}},
		{"reverse only", kindPair, rev, []out{{"3.reverse", "der", b, ""}}},
		{"empty pair", kindPair, empty, []out{{"3", "der", nil, "neither forward nor reverse"}}},
		{"bad half", kindPair, badHalf, []out{{"3.forward", "der", nil, "not an X.509 certificate"}}},
		{"not a pair", kindPair, []byte{1, 2, 3}, []out{{"3", "der", nil, "not a certificate pair"}}},
		{"pair trailing", kindPair, append(slices.Clone(both), 0, 0), []out{{"3", "der", nil, "bytes after it"}}},
		{"smime pkcs7", kindSMIME, p7, []out{{"3.0", "pkcs7", a, ""}, {"3.1", "pkcs7", b, ""}}},
		{"smime der", kindSMIME, b, []out{{"3", "der", b, ""}}},
		{"smime garbage", kindSMIME, []byte("\x30\x03xyz"), []out{{"3", "pkcs7", nil, "neither PKCS#7 nor an X.509 certificate"}}},
		{"smime truncated", kindSMIME, p7[:len(p7)/2], []out{{"3", "pkcs7", nil, "neither PKCS#7"}}},
	} {
		got := decodeValue(c.k, 3, c.v)
		if len(got) != len(c.want) {
			t.Errorf("%s: %d results, want %d: %+v", c.name, len(got), len(c.want), got)
			continue
		}
		for i, w := range c.want {
			g := got[i]
			gotErr := ""
			if g.err != nil {
				gotErr = g.err.Error()
			}
			if g.entry != w.entry || g.format != w.format || !bytes.Equal(g.der, w.der) ||
				(w.err == "") != (gotErr == "") || !strings.Contains(gotErr, w.err) {
				t.Errorf("%s #%d: entry %q format %q err %q, want %q %q %q", c.name, i, g.entry, g.format, gotErr, w.entry, w.format, w.err)
			}
			if g.der != nil {
				if _, err := x509.ParseCertificate(g.der); err != nil {
					t.Errorf("%s: %v", c.name, err)
				}
			}
		}
	}
}

func TestPlan(t *testing.T) {
	s, _ := New(Config{})
	for _, c := range []struct {
		target, addr, base, filter string
		scope                      int
		page                       uint32
		tls, startTLS              bool
	}{
		{"ldap://dc1/dc=example,dc=com", "dc1:389", "dc=example,dc=com", certFilter, goldap.ScopeWholeSubtree, 500, false, false},
		{"ldaps://dc1/dc=x", "dc1:636", "dc=x", certFilter, goldap.ScopeWholeSubtree, 500, true, false},
		{"ldap://dc1:1389/dc=x?scope=one&page_size=50&starttls=true", "dc1:1389", "dc=x", certFilter, goldap.ScopeSingleLevel, 50, true, true},
		{"ldap://[::1]/dc=x?scope=base&filter=cn=web*", "[::1]:389", "dc=x", "(&" + certFilter + "(cn=web*))", goldap.ScopeBaseObject, 500, false, false},
		{"ldap://dc1/ou=a%20b,dc=x?filter=(objectClass=computer)", "dc1:389", "ou=a b,dc=x", "(&" + certFilter + "(objectClass=computer))", goldap.ScopeWholeSubtree, 500, false, false},
	} {
		tg, err := protocol.ParseTarget(c.target)
		if err != nil {
			t.Fatalf("%s: %v", c.target, err)
		}
		srv, q, err := s.plan(tg)
		if err != nil {
			t.Errorf("%s: %v", c.target, err)
			continue
		}
		if srv.addr != c.addr || q.base != c.base || q.filter != c.filter || q.scope != c.scope || q.pageSize != c.page ||
			(srv.tls != nil) != c.tls || srv.startTLS != c.startTLS || srv.host != tg.Host {
			t.Errorf("%s: %+v %+v", c.target, srv, q)
		}
		if srv.tls != nil && (srv.tls.InsecureSkipVerify || srv.tls.ServerName == "") {
			t.Errorf("%s: TLS config %+v", c.target, srv.tls)
		}
		if _, err := goldap.CompileFilter(q.filter); err != nil {
			t.Errorf("%s: filter %s: %v", c.target, q.filter, err)
		}
	}
	for _, bad := range []string{"ldap://dc1/dc=x?filter=(cn=a", "ldaps://dc1/dc=x?ca_file=/nonexistent/ca.pem"} {
		tg, err := protocol.ParseTarget(bad)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.plan(tg); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestReferralJob(t *testing.T) {
	plain := job{srv: server{scheme: "ldap", host: "dc1", addr: "dc1:389", bindDN: "cn=a"}, q: query{base: "dc=x", scope: goldap.ScopeWholeSubtree}}
	secure := plain
	secure.srv.scheme, secure.srv.addr = "ldaps", "dc1:636"
	secure.srv.tls, _ = tlsConfig("", false)
	for _, c := range []struct {
		ref             string
		from            job
		addr, base      string
		scope           int
		tls, startTLS   bool
		err             bool
		scheme, locHost string
	}{
		{"ldap://dc2/ou=y,dc=x??sub", plain, "dc2:389", "ou=y,dc=x", goldap.ScopeWholeSubtree, false, false, false, "ldap", "dc2"},
		{"ldap://dc2:3268/ou=y,dc=x??base", plain, "dc2:3268", "ou=y,dc=x", goldap.ScopeBaseObject, false, false, false, "ldap", "dc2:3268"},
		{"ldaps://dc2/ou=y,dc=x??one", plain, "dc2:636", "ou=y,dc=x", goldap.ScopeSingleLevel, true, false, false, "ldaps", "dc2"},
		// Never down to clear text: a TLS target's referral to ldap:// uses StartTLS.
		{"ldap://dc2/ou=y,dc=x", secure, "dc2:389", "ou=y,dc=x", goldap.ScopeWholeSubtree, true, true, false, "ldap", "dc2"},
		{"ldap://dc2", plain, "dc2:389", "dc=x", goldap.ScopeWholeSubtree, false, false, false, "ldap", "dc2"},
		{"http://dc2/x", plain, "", "", 0, false, false, true, "", ""},
		{"ldap:///dc=x", plain, "", "", 0, false, false, true, "", ""},
	} {
		j, err := referralJob(c.ref, c.from)
		if c.err {
			if err == nil {
				t.Errorf("%s accepted", c.ref)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", c.ref, err)
			continue
		}
		if j.srv.addr != c.addr || j.q.base != c.base || j.q.scope != c.scope || (j.srv.tls != nil) != c.tls ||
			j.srv.startTLS != c.startTLS || j.srv.scheme != c.scheme || j.srv.host != c.locHost || j.hops != 1 || j.srv.bindDN != "cn=a" {
			t.Errorf("%s: %+v %+v", c.ref, j.srv, j.q)
		}
		if j.srv.tls != nil && j.srv.tls.ServerName != "dc2" {
			t.Errorf("%s: server name %q", c.ref, j.srv.tls.ServerName)
		}
	}
}

func TestReferralURIs(t *testing.T) {
	// An LDAPResult with resultCode referral (10) and two URIs in [3].
	msg := asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true}
	body := []byte{0x0a, 0x01, 0x0a, 0x04, 0x00, 0x04, 0x00}
	uris := []byte{}
	for _, u := range []string{"ldap://a/dc=x", "ldap://b/dc=x"} {
		uris = append(uris, 0x04, byte(len(u)))
		uris = append(uris, u...)
	}
	body = append(body, 0xa3, byte(len(uris)))
	body = append(body, uris...)
	op := append([]byte{0x65, byte(len(body))}, body...) // [APPLICATION 5] SearchResultDone
	msg.Bytes = append([]byte{0x02, 0x01, 0x07}, op...)
	der, _ := asn1.Marshal(msg)
	packet, err := ber.DecodePacketErr(der)
	if err != nil {
		t.Fatal(err)
	}
	le, ok := goldap.GetLDAPError(packet).(*goldap.Error)
	if !ok || le.ResultCode != goldap.LDAPResultReferral {
		t.Fatalf("%v", goldap.GetLDAPError(packet))
	}
	if got := referralURIs(le); !slices.Equal(got, []string{"ldap://a/dc=x", "ldap://b/dc=x"}) {
		t.Errorf("%q", got)
	}
}

// stallServer accepts connections and never answers.
func stallServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return l.Addr().String()
}

func TestStalledServer(t *testing.T) {
	addr := stallServer(t)
	src, _ := New(Config{DialTimeout: 300 * time.Millisecond, PageTimeout: 300 * time.Millisecond})
	const pw = "St4ll-pw_Qx1"
	for _, c := range []struct{ target, want string }{
		{"ldap://" + addr + "/dc=x", "ldap: search dc=x on " + addr + ": no answer within 300ms"},
		{"ldap://" + addr + "/dc=x?bind_dn=cn=a&password=" + pw, "ldap: bind as cn=a: no answer within 300ms"},
		{"ldaps://" + addr + "/dc=x", "ldap: TLS with " + addr + ": no answer within 300ms"},
		{"ldap://" + addr + "/dc=x?starttls=true", "ldap: StartTLS with " + addr + ": no answer within 300ms"},
	} {
		tg, err := protocol.ParseTarget(c.target)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = src.Discover(context.Background(), tg, func(protocol.Finding) error { return nil })
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), pw) {
			t.Errorf("%s: %v, want %q", c.target, err, c.want)
		}
		t.Logf("%s: %v", c.target, err)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: took %v", c.target, d)
		}
	}

	// Cancelling ends a stalled search at once, whatever the timeouts.
	slow, _ := New(Config{})
	tg, _ := protocol.ParseTarget("ldap://" + addr + "/dc=x")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := slow.Discover(ctx, tg, func(protocol.Finding) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("cancelled: %v after %v", err, time.Since(start))
	}
}

func TestConnectRefused(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	src, _ := New(Config{})
	tg, _ := protocol.ParseTarget("ldap://" + addr + "/dc=x")
	err := src.Discover(context.Background(), tg, func(protocol.Finding) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "ldap: connect to "+addr+": ") {
		t.Errorf("%v", err)
	}
}

func TestClockPausesDuringEmit(t *testing.T) {
	fired := make(chan struct{})
	c := startClock(100*time.Millisecond, func() { close(fired) })
	c.pause()
	time.Sleep(200 * time.Millisecond)
	select {
	case <-fired:
		t.Fatal("fired while paused")
	default:
	}
	c.resume()
	select {
	case <-fired:
	case <-time.After(5 * time.Second):
		t.Fatal("did not fire after resume")
	}
	c.stop()
}

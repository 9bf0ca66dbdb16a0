package testsvc

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser trusts the one pinned server (a secure context, where a
// __Host- cookie works), refuses another server's certificate, and saves
// downloads where the test reads them.
func TestChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "__Host-s", Value: "1", Path: "/", Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>pinned</title><a id="dl" href="/file">file</a> <a id="echo" href="/echo">echo</a>`))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("__Host-s")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err != nil {
			_, _ = w.Write([]byte(`<p id="cookie">none</p>`))
			return
		}
		_, _ = w.Write([]byte(`<p id="cookie">` + c.Value + `</p>`))
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="hello.bin"`)
		_, _ = w.Write([]byte("hello, download"))
	})
	pinned := httptest.NewTLSServer(mux)
	defer pinned.Close()
	// httptest's servers all share one key: the other server gets its own.
	other := httptest.NewUnstartedServer(mux)
	other.TLS = &tls.Config{Certificates: []tls.Certificate{selfSignedLocal(t)}}
	other.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	other.StartTLS()
	defer other.Close()

	roots := x509.NewCertPool()
	roots.AddCert(pinned.Certificate())
	b := StartChromium(t, BrowserConfig{TrustAddr: pinned.Listener.Addr().String(), TrustRoots: roots})

	ctx, cancel := context.WithTimeout(b.Ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(pinned.URL+"/")); err != nil {
		t.Fatalf("the pinned server does not load: %v\n%s", err, b.Log())
	}
	secure, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.isSecureContext`))
	if err != nil || !secure {
		t.Errorf("the pinned page is not a secure context: %v %v", secure, err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(pinned.URL+"/echo")); err != nil {
		t.Fatal(err)
	}
	if got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#cookie"))); err != nil || got != "1" {
		t.Errorf("the __Host- cookie did not come back: %q %v", got, err)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(pinned.URL+"/")); err != nil {
		t.Fatal(err)
	}
	data, name, err := b.Download(chromedp.Click(chromedp.CSS("#dl")), 10*time.Second)
	if err != nil {
		t.Fatalf("download: %v", err)
	}
	if string(data) != "hello, download" || name != "hello.bin" {
		t.Errorf("downloaded %q as %q", data, name)
	}

	// Another server's key is not trusted: the pin is on the one server's
	// key, not "ignore every certificate error".
	err = chromedp.Do(ctx, chromedp.Navigate(other.URL+"/"))
	if err == nil || !strings.Contains(err.Error(), "CERT") {
		t.Errorf("a server with another key loaded (err %v)", err)
	}
}

// selfSignedLocal is a certificate for 127.0.0.1 with a key of its own.
func selfSignedLocal(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

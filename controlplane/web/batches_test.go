package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/store"
)

var batchLocationRE = regexp.MustCompile(`^/batches/([^/?#]+)$`)

// TestBatchPlanStartStop: a mass replacement planned through the form
// shows its dry-run plan by wave; Start runs it, the page refreshes and
// offers Stop; Stop stops it (P9).
func TestBatchPlanStartStop(t *testing.T) {
	e := newOrdEnv(t)
	adm, std := e.login("administrator"), e.login("standard_user")
	btWant(t, e.get(adm, "/batches/new?issuer=Test+Issuing"), http.StatusOK, `id="batch-form"`, `value="Test Issuing"`,
		"Local &lt;b&gt;CA&lt;/b&gt; (default)")
	form := url.Values{"name": {"<script>alert(3)</script> distrust"}, "issuer": {"Test Issuing"}, "template": {e.template},
		"action": {"rotate"}, "wave_size": {"1"}, "max_failures": {"0"}}
	w := e.post(adm, "/batches/new", form)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d\n%s", w.Code, btMain(w.Body.String()))
	}
	m := batchLocationRE.FindStringSubmatch(w.Header().Get("Location"))
	if m == nil {
		t.Fatalf("redirected to %q", w.Header().Get("Location"))
	}
	id := m[1]
	path := "/batches/" + id
	body := btWant(t, e.get(adm, path), http.StatusOK, `<strong id="batch-status" class="warn">planned</strong>`,
		`id="batch-dry-run"`, `id="batch-start"`, `<tbody data-wave="1">`, `<progress id="batch-progress"`,
		"&lt;script&gt;alert(3)&lt;/script&gt; distrust", ordFileURI)
	for _, bad := range []string{"<script>alert(3)", `http-equiv="refresh"`, `style=`} {
		if strings.Contains(body, bad) {
			t.Errorf("planned batch page has %q", bad)
		}
	}
	// The list shows it, escaped.
	btWant(t, e.get(std, "/batches"), http.StatusOK, `data-batch="`+id+`"`, "&lt;script&gt;alert(3)")
	// A viewer sees the plan without the buttons, and may not press them.
	if b := btWant(t, e.get(std, path), http.StatusOK); strings.Contains(b, `id="batch-start"`) {
		t.Error("a Standard User sees Start")
	}
	btWant(t, e.post(std, path+"/start", url.Values{}), http.StatusForbidden)

	w = e.post(adm, path+"/start", url.Values{})
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != path {
		t.Fatalf("start: %d to %q\n%s", w.Code, w.Header().Get("Location"), btMain(w.Body.String()))
	}
	b, err := e.st.Batch(context.Background(), e.account, id)
	if err != nil {
		t.Fatal(err)
	}
	if b.Status != store.BatchRunning && b.Status != store.BatchDone {
		t.Fatalf("status after start %q", b.Status)
	}
	if b.Status == store.BatchRunning {
		btWant(t, e.get(adm, path), http.StatusOK, `id="batch-status" class="warn">running</strong>`, `id="batch-stop"`,
			`<meta http-equiv="refresh" content="5">`)
		w = e.post(adm, path+"/stop", url.Values{})
		if w.Code != http.StatusSeeOther {
			t.Fatalf("stop: %d\n%s", w.Code, btMain(w.Body.String()))
		}
		b, err = e.st.Batch(context.Background(), e.account, id)
		if err != nil {
			t.Fatal(err)
		}
		if b.Status != store.BatchStopping && b.Status != store.BatchStopped {
			t.Errorf("status after stop %q", b.Status)
		}
	}
	btWant(t, e.get(adm, "/batches/no-such"), http.StatusNotFound)
}

// TestBatchFormErrors: bad input answers 400 with the form filled again
// and the field named.
func TestBatchFormErrors(t *testing.T) {
	e := newOrdEnv(t)
	adm := e.login("administrator")
	ok := url.Values{"name": {"n"}, "template": {e.template}, "action": {"rotate"}, "wave_size": {"10"}, "max_failures": {"0"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range ok {
			f[kk] = vv
		}
		f.Set(k, v)
		return f
	}
	tests := []struct {
		name string
		form url.Values
		want string
	}{
		{"no name", with("name", ""), "Name:"},
		{"renew is not a batch action", with("action", "renew"), "Action:"},
		{"wave of zero", with("wave_size", "0"), "Wave size:"},
		{"negative failures", with("max_failures", "-1"), "Maximum failures:"},
		{"bad date", with("expires_before", "soon"), "Expires before:"},
		{"empty filter: every certificate", ok, "Certificate filter:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			btWant(t, e.post(adm, "/batches/new", tc.form), http.StatusBadRequest, `id="batch-error"`, tc.want, `id="batch-form"`)
		})
	}
	bs, err := e.st.Batches(context.Background(), e.account)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 0 {
		t.Errorf("bad input planned %d batches", len(bs))
	}
}

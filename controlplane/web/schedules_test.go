package web

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emsign/bot/controlplane/store"
)

// TestSchedules: a schedule at a time and an auto-renewal are made
// through the form, listed, and canceled (P6).
func TestSchedules(t *testing.T) {
	e := newOrdEnv(t)
	ctx := context.Background()
	adm, std := e.login("administrator"), e.login("standard_user")
	at := e.now.Add(48 * time.Hour).Format(scheduleAtLayout)
	btWant(t, e.get(adm, "/schedules?fingerprint="+e.fp+"&location="+url.QueryEscape(ordFileURI)), http.StatusOK,
		`id="schedule-form"`, `value="`+e.fp+`"`, `value="`+ordFileURI+`"`)

	w := e.post(adm, "/schedules", url.Values{"action": {"rotate"}, "fingerprint": {e.fp}, "location": {ordFileURI},
		"template": {e.template}, "at": {at}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d\n%s", w.Code, btMain(w.Body.String()))
	}
	w = e.post(adm, "/schedules", url.Values{"action": {"renewal"}, "fingerprint": {e.xssFP}, "location": {ordXSSURI},
		"template": {e.template}, "auto_renew_days": {"30"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d\n%s", w.Code, btMain(w.Body.String()))
	}
	ss, err := e.st.Schedules(ctx, e.account)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss) != 2 {
		t.Fatalf("%d schedules, want 2", len(ss))
	}
	var timed store.Schedule
	for _, s := range ss {
		if s.AutoRenewDays == 0 {
			timed = s
		}
	}
	if want := e.now.Add(48 * time.Hour).Truncate(time.Minute); !timed.At.Equal(want) {
		t.Errorf("at %v, want %v (the form's time is UTC)", timed.At, want)
	}
	body := btWant(t, e.get(adm, "/schedules"), http.StatusOK, `id="schedules-pending"`, `data-schedule="`+timed.ID+`"`,
		"auto-renew 30 days before expiry", `class="inline schedule-cancel"`)
	if strings.Contains(body, "<script>") {
		t.Error("unescaped script")
	}
	// A Standard User reads the lists, without the form or the buttons.
	sb := btWant(t, e.get(std, "/schedules"), http.StatusOK, `data-schedule="`+timed.ID+`"`)
	if strings.Contains(sb, `id="schedule-form"`) || strings.Contains(sb, "schedule-cancel") {
		t.Error("a Standard User may change schedules")
	}
	btWant(t, e.post(std, "/schedules/"+timed.ID+"/cancel", url.Values{}), http.StatusForbidden)

	w = e.post(adm, "/schedules/"+timed.ID+"/cancel", url.Values{})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("cancel: %d\n%s", w.Code, btMain(w.Body.String()))
	}
	body = btWant(t, e.get(adm, "/schedules"), http.StatusOK)
	canceled := body[strings.Index(body, `id="schedules-canceled"`):]
	if !strings.Contains(canceled, `data-schedule="`+timed.ID+`"`) {
		t.Error("the canceled schedule is not in the canceled list")
	}
}

// TestScheduleFormErrors: bad input answers 400 naming the field.
func TestScheduleFormErrors(t *testing.T) {
	e := newOrdEnv(t)
	adm := e.login("administrator")
	at := e.now.Add(time.Hour).Format(scheduleAtLayout)
	ok := url.Values{"action": {"rotate"}, "fingerprint": {e.fp}, "location": {ordFileURI}, "template": {e.template}, "at": {at}}
	with := func(kv ...string) url.Values {
		f := url.Values{}
		for k, v := range ok {
			f[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			f.Set(kv[i], kv[i+1])
		}
		return f
	}
	tests := []struct {
		name string
		form url.Values
		want string
	}{
		{"bad action", with("action", "explode"), "Action:"},
		{"bad fingerprint", with("fingerprint", "abc"), "Certificate fingerprint:"},
		{"no time", with("at", ""), "At:"},
		{"both", with("auto_renew_days", "30"), "not both"},
		{"bad time", with("at", "tomorrow"), "At: want a date and time"},
		{"bad days", with("at", "", "auto_renew_days", "0"), "Auto-renew days:"},
		{"script location", with("location", "<script>x</script>\n"), "Location:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := btWant(t, e.post(adm, "/schedules", tc.form), http.StatusBadRequest, `id="schedule-error"`, tc.want)
			if strings.Contains(body, "<script>x") {
				t.Error("unescaped script")
			}
		})
	}
}

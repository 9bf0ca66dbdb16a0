package web

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// pageData is what every template gets: .V the viewer (nil on the login
// pages), .Title, .Flash (a message from the previous request), .Data the
// page's own data.
type pageData struct {
	V     *Viewer
	Title string
	Flash string
	Now   time.Time
	Data  any
}

// funcs are the template functions every page may use. A page needing
// more gives its data methods instead.
func funcs() template.FuncMap {
	return template.FuncMap{
		// when formats a time in UTC to the minute; "never" for nil or zero.
		"when": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				if v.IsZero() {
					return "never"
				}
				return v.UTC().Format("2006-01-02 15:04 UTC")
			case *time.Time:
				if v == nil || v.IsZero() {
					return "never"
				}
				return v.UTC().Format("2006-01-02 15:04 UTC")
			}
			return fmt.Sprint(t)
		},
		// date formats a time as YYYY-MM-DD (UTC).
		"date": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.UTC().Format("2006-01-02")
		},
		// daysLeft is the whole days from now to t (negative once past).
		"daysLeft": func(now, t time.Time) int { return int(t.Sub(now).Hours() / 24) },
		"join":     strings.Join,
		"lower":    strings.ToLower,
		"add":      func(a, b int) int { return a + b },
		"sub":      func(a, b int) int { return a - b },
		// pct is a as a percentage of b, 0 when b is 0.
		"pct": func(a, b int) int {
			if b == 0 {
				return 0
			}
			return a * 100 / b
		},
		// short cuts a long string (an ID, a fingerprint) for a table cell.
		"short": func(s string, n int) string {
			if len(s) <= n {
				return s
			}
			return s[:n] + "…"
		},
		"query": url.QueryEscape,
		"path":  url.PathEscape,
		// svg marks a chart the code drew (from escaped data) as safe.
		"svg": func(s SVG) template.HTML { return template.HTML(s) },
	}
}

// SVG is markup built by this package's chart code, every text in it
// escaped: the only HTML the templates take unescaped.
type SVG string

// parsePages parses templates/layout.html and templates/partials/*.html
// once, then each templates/*.html page on a clone of them.
func parsePages() (map[string]*template.Template, error) {
	base := template.New("layout").Funcs(funcs())
	if _, err := base.ParseFS(assets, "templates/layout.html"); err != nil {
		return nil, fmt.Errorf("web: layout: %w", err)
	}
	if partials, _ := fs.Glob(assets, "templates/partials/*.html"); len(partials) > 0 {
		if _, err := base.ParseFS(assets, partials...); err != nil {
			return nil, fmt.Errorf("web: partials: %w", err)
		}
	}
	files, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.Must(base.Clone()).ParseFS(assets, f)
		if err != nil {
			return nil, fmt.Errorf("web: page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes a page (templates/NAME.html) inside the layout. The page
// is rendered to memory first, so that a template error gives a clean 500
// rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, v *Viewer, status int, name, title string, data any) {
	t, ok := s.pages[name]
	if !ok {
		s.serverError(w, r, v, fmt.Errorf("web: no page %q", name))
		return
	}
	pd := pageData{V: v, Title: title, Flash: s.takeFlash(w, r), Now: s.now(), Data: data}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", pd); err != nil {
		s.serverError(w, r, v, fmt.Errorf("web: render %s: %w", name, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// fail renders the error page with a message for people.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, v *Viewer, status int, msg string) {
	s.render(w, r, v, status, "error", http.StatusText(status), errorData{Status: status, Message: msg})
}

type errorData struct {
	Status  int
	Message string
}

// serverError logs err and shows a page that does not repeat it.
func (s *Server) serverError(w http.ResponseWriter, r *http.Request, v *Viewer, err error) {
	s.log.Error("dashboard error", "path", r.URL.Path, "err", err)
	if _, ok := s.pages["error"]; !ok {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	pd := pageData{V: v, Title: "Error", Now: s.now(), Data: errorData{Status: 500, Message: "Something went wrong on our side; it has been logged."}}
	var buf bytes.Buffer
	if e := s.pages["error"].ExecuteTemplate(&buf, "layout", pd); e != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = w.Write(buf.Bytes())
}

// flashCookie carries a one-line message to the page after a redirect.
const flashCookie = "__Host-emsign_flash"

// redirect sends the browser to target (a path of this site) after a
// change, with a message shown once on the next page.
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, target, flash string) {
	if flash != "" {
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(flash), Path: "/", Secure: true,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: 60})
	}
	if !localPath(target) {
		target = "/"
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// localPath reports whether target is a path of this site: it starts
// with one "/" (browsers read "//host" and "/\\host" as another host) and
// holds no control character (browsers drop tabs and newlines, so "/\t/host"
// would become "//host").
func localPath(target string) bool {
	if !strings.HasPrefix(target, "/") || strings.HasPrefix(target, "//") || strings.HasPrefix(target, "/\\") {
		return false
	}
	for i := 0; i < len(target); i++ {
		if target[i] < 0x20 || target[i] == 0x7f {
			return false
		}
	}
	return true
}

func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return ""
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	msg, err := url.QueryUnescape(c.Value)
	if err != nil || len(msg) > 500 {
		return ""
	}
	return msg
}

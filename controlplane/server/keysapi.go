package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// The key inventory (P4):
//
//	GET /api/v1/keys?location=&bot=&limit=&offset=   KeysView   ViewCertificates
//
// Reading keys needs what reading the inventory needs: a key is part of
// what was discovered. The answer holds no key material (the control plane
// never has any) and no secret: a token key is named by its label.

// keyRoutes are the user API routes of the key inventory.
func (s *Server) keyRoutes(p string) []templateRoute {
	return []templateRoute{
		{"GET " + p + "/keys", rbac.ViewCertificates, "", s.listKeys},
	}
}

// maxKeyPage bounds limit.
const maxKeyPage = 1000

// KeysView is the key inventory's answer: one page of the keys scans
// found and of the keys rotations made (limit and offset page both),
// and the rotation history of the locations of the keys made.
type KeysView struct {
	Found     []FoundKeyView        `json:"found"`
	Made      []MadeKeyView         `json:"made"`
	Locations []LocationHistoryView `json:"locations"`
	Limit     int                   `json:"limit"`
	Offset    int                   `json:"offset"`
}

// FoundKeyView is a key a scan found.
type FoundKeyView struct {
	URI    string `json:"uri"`
	BotID  string `json:"bot_id"`
	Source string `json:"source"`
	// Class is private, public or secret-key; "" for the private key
	// found with a certificate.
	Class       string   `json:"class,omitempty"`
	Algorithm   string   `json:"algorithm"`
	Bits        int      `json:"bits,omitempty"`
	Label       string   `json:"label,omitempty"`
	KeyID       string   `json:"key_id,omitempty"`
	Extractable *bool    `json:"extractable,omitempty"`
	Sensitive   *bool    `json:"sensitive,omitempty"`
	Usage       []string `json:"usage,omitempty"`
	// Fingerprint is the certificate found with the key.
	Fingerprint string    `json:"fingerprint,omitempty"`
	FirstSeen   time.Time `json:"first_seen"`
	LastSeen    time.Time `json:"last_seen"`
	Present     bool      `json:"present"`
}

// MadeKeyView is a key a rotation made.
type MadeKeyView struct {
	OrderID string `json:"order_id"`
	Action  string `json:"action"`
	Status  string `json:"status"`
	BotID   string `json:"bot_id"`
	// Location is the location URI the key is for.
	Location string `json:"location"`
	// Algorithm is the keygen name (ecdsa-p256, rsa-2048, ...); Where is
	// software, pkcs12 (kept only inside the keystore) or pkcs11 (made on
	// the token); KeyRef the token key's label ("#" and its ID when set).
	Algorithm  string `json:"algorithm"`
	Where      string `json:"where"`
	KeyRef     string `json:"key_ref,omitempty"`
	DeployKind string `json:"deploy_kind,omitempty"`
	// Certificate is the certificate issued for the key ("" until issued).
	Certificate string `json:"certificate,omitempty"`
	// Replaced is the certificate the order replaced and ReplacedKey its
	// key ("RSA 2048"; "" when unknown).
	Replaced    string    `json:"replaced,omitempty"`
	ReplacedKey string    `json:"replaced_key,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
}

// LocationHistoryView is every order of one location, oldest first.
type LocationHistoryView struct {
	BotID    string             `json:"bot_id"`
	Location string             `json:"location"`
	Orders   []HistoryEntryView `json:"orders"`
}

// HistoryEntryView is one order of a location's history.
type HistoryEntryView struct {
	OrderID     string    `json:"order_id"`
	Action      string    `json:"action"`
	Status      string    `json:"status"`
	Algorithm   string    `json:"algorithm,omitempty"` // "" when the order kept the key
	Where       string    `json:"where,omitempty"`
	KeyRef      string    `json:"key_ref,omitempty"`
	Replaced    string    `json:"replaced,omitempty"`
	ReplacedKey string    `json:"replaced_key,omitempty"`
	Certificate string    `json:"certificate,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ViewKeys is the API's view of a key inventory page (the dashboard may
// use it too).
func ViewKeys(p store.KeyPage, f store.KeyFilter) KeysView {
	v := KeysView{Found: []FoundKeyView{}, Made: []MadeKeyView{}, Locations: []LocationHistoryView{}, Limit: f.Limit,
		Offset: f.Offset}
	for _, k := range p.Found {
		v.Found = append(v.Found, FoundKeyView{URI: k.URI, BotID: k.BotID, Source: k.Source, Class: k.Class,
			Algorithm: k.Algorithm, Bits: k.Bits, Label: k.Label, KeyID: k.KeyID, Extractable: k.Extractable,
			Sensitive: k.Sensitive, Usage: k.Usage, Fingerprint: k.Fingerprint, FirstSeen: k.FirstSeen, LastSeen: k.LastSeen,
			Present: k.Present})
	}
	for _, m := range p.Made {
		o := m.Order
		v.Made = append(v.Made, MadeKeyView{OrderID: o.ID, Action: o.Action, Status: o.Status, BotID: o.BotID,
			Location: o.Location, Algorithm: o.KeyAlgorithm, Where: o.KeyWhere, KeyRef: o.KeyRef, DeployKind: o.DeployKind,
			Certificate: o.NewFingerprint, Replaced: o.Fingerprint, ReplacedKey: KeyName(m.OldKeyAlgorithm, m.OldKeyBits),
			CreatedAt: o.CreatedAt})
	}
	for _, l := range p.Locations {
		h := LocationHistoryView{BotID: l.BotID, Location: l.URI, Orders: []HistoryEntryView{}}
		for _, ko := range l.Orders {
			o := ko.Order
			h.Orders = append(h.Orders, HistoryEntryView{OrderID: o.ID, Action: o.Action, Status: o.Status,
				Algorithm: o.KeyAlgorithm, Where: o.KeyWhere, KeyRef: o.KeyRef, Replaced: o.Fingerprint,
				ReplacedKey: KeyName(ko.OldKeyAlgorithm, ko.OldKeyBits), Certificate: o.NewFingerprint,
				CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt})
		}
		v.Locations = append(v.Locations, h)
	}
	return v
}

// KeyName names a certificate's key: "RSA 2048", "Ed25519", "" when
// unknown.
func KeyName(alg string, bits int) string {
	if alg == "" || bits <= 0 {
		return alg
	}
	return alg + " " + strconv.Itoa(bits)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request, k store.APIKey, _ ops.Actor) {
	inv := s.st
	q := r.URL.Query()
	f := store.KeyFilter{Location: q.Get("location"), BotID: q.Get("bot"), Limit: store.DefaultPageSize}
	for _, p := range []struct {
		name     string
		dst      *int
		min, max int
	}{{"limit", &f.Limit, 1, maxKeyPage}, {"offset", &f.Offset, 0, 1 << 30}} {
		if v := q.Get(p.name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < p.min || n > p.max {
				writeError(w, http.StatusBadRequest, p.name+": want a number from "+strconv.Itoa(p.min)+" to "+strconv.Itoa(p.max))
				return
			}
			*p.dst = n
		}
	}
	page, err := store.ReadKeyPage(r.Context(), inv, k.Account, f)
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, ViewKeys(page, f))
}

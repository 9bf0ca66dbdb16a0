package server

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/emsign/bot/controlplane/imports"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// importBundle is POST /api/v1/imports: the body is a bundle made by
// emsign-bot scan --export, imported into the API key's account. It answers
// protocol.ImportResult; a bundle imported before answers imported false.
func (s *Server) importBundle(w http.ResponseWriter, r *http.Request, k store.APIKey, a ops.Actor) {
	body := http.MaxBytesReader(w, r.Body, protocol.MaxBundleSize)
	data, err := io.ReadAll(body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, "bundle larger than 256 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	res, err := imports.Import(r.Context(), s.st, s.ca.Pool(), k.Account, data, s.now())
	if errors.Is(err, imports.ErrRefused) {
		writeError(w, http.StatusUnprocessableEntity, err.Error())
		return
	}
	if err != nil {
		s.storeError(w, r, err)
		return
	}
	if res.Imported {
		detail := fmt.Sprintf("scan %s: %d findings", res.ScanID, res.Findings)
		if err := s.ops.Record(r.Context(), a, "bundle.import", res.BotID, detail); err != nil {
			s.log.Error("audit entry not written", "account", a.Account, "actor", a.Name, "err", err)
		}
	}
	writeJSON(w, http.StatusOK, res)
}

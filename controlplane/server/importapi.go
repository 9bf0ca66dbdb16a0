package server

import (
	"errors"
	"io"
	"net/http"

	"github.com/emsign/bot/controlplane/imports"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// importBundle is POST /api/v1/imports: the body is a bundle made by
// emsign-bot scan --export, imported into the API key's account. It answers
// protocol.ImportResult; a bundle imported before answers imported false.
func (s *Server) importBundle(w http.ResponseWriter, r *http.Request, k store.APIKey) {
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
	writeJSON(w, http.StatusOK, res)
}

#!/usr/bin/env bash
# Installs the Go-built tools the tests run (from the Go module proxy) when
# they are missing: Pebble, Let's Encrypt's ACME test CA
# (connectors/ca/acme, internal/testsvc). The version matches
# internal/testsvc/pebble.go, which also reads Pebble's test certificates
# from the module cache that this install fills.
set -euo pipefail
GO=${GO:-go}
bin="$($GO env GOPATH)/bin"
certs="$($GO env GOMODCACHE)/github.com/letsencrypt/pebble/v2@v2.10.1/test/certs"
if [ ! -x "$bin/pebble" ] || [ ! -f "$certs/pebble.minica.pem" ]; then
	echo "installing: pebble v2.10.1" >&2
	# Outside the module, so go.mod and go.sum are left alone.
	(cd / && $GO install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.1)
fi

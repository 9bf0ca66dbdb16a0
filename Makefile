# The emSign Bot. `make run` scans this machine; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin

# The usual places certificates live on this machine, those that exist.
CERT_DIRS := $(foreach d,/etc/ssl /etc/pki /usr/local/share/ca-certificates,$(wildcard $(d)))

.PHONY: all build windows run test test-short vet bench fuzz fixtures clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/emsign-bot ./agent/cmd/emsign-bot

# The bot must build for Windows at all times.
windows:
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/emsign-bot.exe ./agent/cmd/emsign-bot

# Until the control plane exists: the inventory of this machine, TLS on every
# loopback port, the certificate folders and the OS store. changeit is the
# password every JDK ships its cacerts with.
run: build
	$(BIN)/emsign-bot scan --password changeit tls://127.0.0.1:1-65535 $(addprefix file://,$(CERT_DIRS)) certstore://

vet:
	@unformatted=$$(gofmt -l . | grep -v '^vendor/' || true); \
	if [ -n "$$unformatted" ]; then echo "not gofmt'ed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

test: vet windows
	./scripts/deps.sh openssl
	$(GO) test -count=1 ./...

# Fast tests that need nothing installed.
test-short:
	$(GO) test -short ./...

# Speed and memory, measured (never timed tests). See each benchmark's
# comment for the issue's targets.
bench:
	./scripts/deps.sh openssl nginx nmap
	./scripts/bench.sh

# Each fuzz target for 60 seconds.
FUZZTIME ?= 60s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# Regenerates the keystore and certificate fixtures with openssl and keytool.
fixtures:
	./scripts/deps.sh openssl keytool bcprov
	cd connectors/files/testdata && ./gen.sh

clean:
	rm -rf $(BIN) dist

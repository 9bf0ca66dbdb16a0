# The emSign Bot. `make run` starts the control plane and a local bot; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN := bin

# The usual places certificates live on this machine, those that exist.
CERT_DIRS := $(foreach d,/etc/ssl /etc/pki /usr/local/share/ca-certificates,$(wildcard $(d)))

.PHONY: all build windows run scan test test-short vet bench fuzz fixtures clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/emsign-bot ./agent/cmd/emsign-bot
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/emsign-cp ./controlplane/cmd/emsign-cp

# The bot must build for Windows at all times.
windows:
	GOOS=windows GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/emsign-bot.exe ./agent/cmd/emsign-bot

# The main job on the embedded defaults: emsign-cp on SQLite under ./.run,
# a demo account, API key and bot on first run, the local bot activated
# against it and scanning this machine. Stays up until Ctrl-C; a second run
# reuses the same data.
run: build
	./scripts/run.sh

# No control plane: the inventory of this machine printed as a table (TLS on
# every loopback port, the certificate folders, the OS store). changeit is
# the password every JDK ships its cacerts with.
scan: build
	$(BIN)/emsign-bot scan --password changeit tls://127.0.0.1:1-65535 $(addprefix file://,$(CERT_DIRS)) certstore://

vet:
	@unformatted=$$(gofmt -l . | grep -v '^vendor/' || true); \
	if [ -n "$$unformatted" ]; then echo "not gofmt'ed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	GOOS=windows GOARCH=amd64 $(GO) vet ./...

test: vet windows
	./scripts/deps.sh openssl keytool slapd ldapadd softhsm2-util pkcs11-tool sshd sudo tinyproxy chromium
	./scripts/gotools.sh
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
	rm -rf $(BIN) dist .run

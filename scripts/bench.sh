#!/usr/bin/env bash
# Speed and memory of discovery, measured by Go benchmarks (issue 2 targets:
# >= 3,000 ECDSA handshakes/s, a 65,535-port loopback sweep in <= 1.5 s,
# < 100 MB peak memory sweeping a /16 on three ports). nmap, when installed,
# is timed on the same sweep for comparison. Issue 7: every dashboard page
# renders in under 200 ms with 100,000 certificates (the *100k benchmarks
# of controlplane/web build that inventory once, which takes a minute).
# Issue 8: 10,000 locations replaced in under 15 minutes, through the real
# emsign-cp and four emsign-bot processes (e2e; EMSIGN_BENCH_LOCATIONS=500
# for a quick run).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== TLS discovery (connectors/tls), with the GC setting emsign-bot scan uses (GOGC=400)"
GOGC=400 go test -run '^$' -bench 'Handshakes|MinimalPool' -benchtime 20000x ./connectors/tls | tee -a "$out"
GOGC=400 go test -run '^$' -bench 'PortSweep' -benchtime 5x ./connectors/tls | tee -a "$out"
# Its own process, so that the peak memory is the sweep's alone.
GOGC=400 go test -run '^$' -bench 'Slash16' -benchtime 1x ./connectors/tls | tee -a "$out"

echo "== other benchmarks"
go test -run '^$' -bench . -benchtime 2s $(go list ./... | grep -v -e /connectors/tls -e /e2e) | grep -E '^(Benchmark|ok|FAIL)' | tee -a "$out"

echo "== mass replacement (issue 8: 10,000 locations < 15 min)"
go test -run '^$' -bench MassReplacement -benchtime 1x -timeout 60m ./e2e | tee -a "$out"

if command -v nmap >/dev/null; then
	echo "== for comparison: nmap -sT over the same 65,535 ports"
	/usr/bin/time -f 'nmap: %e s' nmap -sT -p1-65535 -n -Pn -T5 --min-rate 100000 127.0.0.1 >/dev/null
fi

echo
echo "== summary"
awk '/handshakes\/s/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "handshakes/s") printf "%-40s %8.0f handshakes/s\n", $1, $i
                                                  if ($(i+1) == "client-CPU-µs/handshake") printf "%-40s %8.0f µs client CPU a handshake\n", $1, $i } }
     /s\/sweep/      { for (i = 1; i <= NF; i++) if ($(i+1) == "s/sweep") printf "%-40s %8.2f s for 65,535 ports\n", $1, $i }
     /ms\/op/ && /100k|CertificateView/ { for (i = 1; i <= NF; i++) if ($(i+1) == "ms/op") printf "%-40s %8.1f ms a page\n", $1, $i }
     /s\/replacement-run/ { for (i = 1; i <= NF; i++) { if ($(i+1) == "s/replacement-run") s = $i; if ($(i+1) == "locations/s") r = $i; if ($(i+1) == "locations") n = $i
                                                         if ($(i+1) == "cp-peak-RSS-MB") m = $i; if ($(i+1) == "cp-CPU-ms/location") c = $i }
                            printf "%-40s %8.1f s to replace %d locations (%.1f locations/s; control plane %.0f ms CPU a location, peak RSS %.0f MB)\n", $1, s, n, r, c, m }
     /peak-RSS-MB/   { for (i = 1; i <= NF; i++) if ($(i+1) == "peak-RSS-MB") printf "%-40s %8.1f MB peak RSS\n", $1, $i }' "$out"

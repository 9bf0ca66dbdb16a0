#!/bin/sh
# restart-s_server.sh DIR PORT [refuse-issuer TEXT]
#
# The reload command of the rotation tests: (re)starts `openssl s_server`
# on 127.0.0.1:PORT serving DIR/cert.pem with DIR/key.pem, as
# `nginx -s reload` would make nginx read its files again. With
# "refuse-issuer TEXT" it plays a server that rejects its new
# configuration: when the certificate's issuer contains TEXT it exits 1 and
# leaves the running server alone.
set -eu
dir=$1 port=$2
if [ "${3:-}" = refuse-issuer ]; then
	if openssl x509 -in "$dir/cert.pem" -noout -issuer | grep -q -- "$4"; then
		echo "refusing the new certificate: issuer matches $4" >&2
		exit 1
	fi
fi
# The key must match the certificate, as a real server checks.
if [ "$(openssl x509 -in "$dir/cert.pem" -noout -pubkey)" != "$(openssl pkey -in "$dir/key.pem" -pubout)" ]; then
	echo "key does not match certificate" >&2
	exit 1
fi
if [ -f "$dir/pid" ]; then
	kill "$(cat "$dir/pid")" 2>/dev/null || true
	i=0
	while kill -0 "$(cat "$dir/pid")" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
fi
setsid openssl s_server -accept "127.0.0.1:$port" -cert "$dir/cert.pem" -key "$dir/key.pem" -www -quiet \
	</dev/null >>"$dir/s_server.log" 2>&1 &
echo $! >"$dir/pid"

#!/usr/bin/env bash
# make run: the control plane on embedded defaults (SQLite under ./.run) and a
# local bot reporting to it. The first run creates a demo account, API key and
# bot and activates the bot; later runs reuse them. Stays up until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

RUN=${RUN_DIR:-.run}
LISTEN=${LISTEN:-127.0.0.1:8443}
DATA=$RUN/cp
STATE=$RUN/bot
URL=https://$LISTEN
mkdir -p "$RUN"
chmod 700 "$RUN"

# json_field FIELD: the value of "FIELD":"..." in the JSON on stdin.
json_field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p" | head -1; }

pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

bin/emsign-cp serve --data "$DATA" --listen "$LISTEN" >>"$RUN/cp.log" 2>&1 &
pids+=($!)

# Admin commands work on the data directory directly; SQLite lets them run
# beside the server.
until [ -f "$DATA/ca.pem" ]; do sleep 0.2; done
if [ ! -f "$RUN/demo.env" ]; then
	ACCOUNT=$(bin/emsign-cp account create --data "$DATA" --name Demo | json_field account)
	created=$(bin/emsign-cp bot create --data "$DATA" --account "$ACCOUNT" --name "$(hostname)")
	BOT_ID=$(echo "$created" | json_field bot_id)
	token=$(echo "$created" | json_field token)
	# Only names are kept here: the control plane holds keys and tokens as
	# hashes, and nothing secret is written in clear.
	printf 'ACCOUNT=%s\nBOT_ID=%s\n' "$ACCOUNT" "$BOT_ID" >"$RUN/demo.env"
	fresh=1
fi
# shellcheck disable=SC1091
. "$RUN/demo.env"
if [ ! -f "$RUN/admin-password" ]; then
	# The dashboard's first user: a random password, kept in a file only
	# its owner can read (the control plane stores an argon2id hash).
	(umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$RUN/admin-password.tmp")
	bin/emsign-cp user create --data "$DATA" --account "$ACCOUNT" --email admin@demo.local \
		--role administrator --name "Demo administrator" --password-file "$RUN/admin-password.tmp" >/dev/null
	mv "$RUN/admin-password.tmp" "$RUN/admin-password"
fi
# A new API key each run, shown once below.
API_KEY=$(bin/emsign-cp apikey create --data "$DATA" --account "$ACCOUNT" --role administrator | json_field api_key)

api() { # METHOD PATH [BODY]
	curl -sS --fail-with-body --cacert "$DATA/ca.pem" -H "Authorization: Bearer $API_KEY" \
		-H 'Content-Type: application/json' -X "$1" "$URL/api/v1$2" ${3:+--data "$3"}
}
for _ in $(seq 1 150); do api GET /bots >/dev/null 2>&1 && break; sleep 0.2; done

if [ "${fresh:-}" = 1 ]; then
	bin/emsign-bot activate --state "$STATE" --account "$ACCOUNT" --token "$token" --url "$URL" --ca-file "$DATA/ca.pem"
	# A demo site to rotate (B9): a self-signed certificate and its key in
	# PEM files, found by the scan; rotating it from its page in the
	# dashboard orders from the account's private CA.
	site=$(cd "$RUN" && pwd)/demo-site
	mkdir -p "$site"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=demo.example.test \
		-addext subjectAltName=DNS:demo.example.test -keyout "$site/key.pem" -out "$site/cert.pem" 2>/dev/null
	api POST /provisioning-templates \
		'{"name":"Private CA","default":true,"key_pair":"new","keystore_password_type":"random","ca_connector":"local"}' >/dev/null
	dirs=",\"file://$site\""
	for d in /etc/ssl /etc/pki /usr/local/share/ca-certificates; do
		[ -d "$d" ] && dirs="$dirs,\"file://$d?password=changeit\""
	done
	api PUT "/bots/$BOT_ID/targets" \
		"{\"targets\":[\"tls://127.0.0.1:1-65535\"$dirs,\"certstore://\"],\"schedule\":{\"kind\":\"daily\",\"time\":\"02:30\",\"timezone\":\"UTC\"}}" >/dev/null
fi

bin/emsign-bot run --state "$STATE" >>"$RUN/bot.log" 2>&1 &
pids+=($!)

scan=$(api POST "/bots/$BOT_ID/scans" | json_field scan_id)
echo "scan $scan started; waiting for it to finish..."
for _ in $(seq 1 300); do
	finished=$(api GET "/bots/$BOT_ID/scans" | grep -o "\"id\":\"$scan\"[^}]*\"finished\":\"[^\"]*\"" || true)
	[ -n "$finished" ] && break
	sleep 1
done

certs=$(api GET "/certificates?limit=1000" | grep -o '"fingerprint_sha256"' | wc -l)
cat <<MSG

emSign control plane: $URL   (CA: $DATA/ca.pem)
dashboard: $URL/   log in as admin@demo.local, password in $RUN/admin-password
account:  $ACCOUNT
API key:  $API_KEY
bot:      $BOT_ID   (state: $STATE)
found:    $certs certificates so far (GET $URL/api/v1/certificates)
rotate:   open demo.example.test in the dashboard's Certificates, Rotate
          (its files are in $RUN/demo-site; the account's private CA issues)

  curl --cacert $DATA/ca.pem -H "Authorization: Bearer $API_KEY" $URL/api/v1/certificates

Logs: $RUN/cp.log, $RUN/bot.log. Ctrl-C stops both; make run again reuses the same data.
MSG
wait

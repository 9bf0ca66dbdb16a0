#!/bin/sh
# Regenerates the keystore fixtures with the real tools (keytool from a
# JRE, openssl): `sh gen.sh` in this folder. Every store's password is
# "changeit" (keypass.jks's key entry: "keypass1").
set -eu
cd "$(dirname "$0")"
rm -f *.jks *.p12 *.pem *.key
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# A CA whose certificate goes into server.jks as a trusted entry.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
	-subj "/CN=Fixture CA" -keyout "$tmp/ca.key" -out ca.pem 2>/dev/null

# server.jks: one key entry "server" (RSA 2048) and a trusted entry "testca".
keytool -genkeypair -noprompt -alias server -keyalg RSA -keysize 2048 -validity 3650 \
	-dname "CN=jks.example.com,O=Example" -ext SAN=dns:jks.example.com \
	-keystore server.jks -storetype JKS -storepass changeit -keypass changeit 2>/dev/null
keytool -importcert -noprompt -trustcacerts -alias testca -file ca.pem \
	-keystore server.jks -storetype JKS -storepass changeit 2>/dev/null

# two-keys.jks: two key entries, so a job must name the alias.
keytool -genkeypair -noprompt -alias server -keyalg EC -groupname secp256r1 -validity 3650 \
	-dname "CN=one.example.com" -keystore two-keys.jks -storetype JKS -storepass changeit -keypass changeit 2>/dev/null
keytool -genkeypair -noprompt -alias other -keyalg EC -groupname secp256r1 -validity 3650 \
	-dname "CN=two.example.com" -keystore two-keys.jks -storetype JKS -storepass changeit -keypass changeit 2>/dev/null

# keypass.jks: the key entry has its own password, keypass1.
keytool -genkeypair -noprompt -alias tomcat -keyalg EC -groupname secp256r1 -validity 3650 \
	-dname "CN=keypass.example.com" -keystore keypass.jks -storetype JKS -storepass changeit -keypass keypass1 2>/dev/null

# server.p12: openssl's PKCS#12 (AES, SHA-256 MAC) with friendlyName "tomcat"
# and the CA; server-legacy.p12 the same in the legacy RC2/3DES encoding.
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=p12.example.com" \
	-keyout "$tmp/p12.key" -out "$tmp/p12.pem" 2>/dev/null
openssl pkcs12 -export -in "$tmp/p12.pem" -inkey "$tmp/p12.key" -certfile ca.pem -name tomcat \
	-out server.p12 -passout pass:changeit
openssl pkcs12 -export -legacy -in "$tmp/p12.pem" -inkey "$tmp/p12.key" -name tomcat \
	-out server-legacy.p12 -passout pass:changeit

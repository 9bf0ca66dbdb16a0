#!/usr/bin/env bash
# Installs what the tests and benchmarks need when it is missing, so that
# `make test` works on a fresh Debian/Ubuntu machine. Each argument is a
# command to look for; the Debian package that provides it is installed.
set -euo pipefail

declare -A package_of=(
	[openssl]=openssl
	[keytool]=default-jre-headless
	[nginx]=nginx-light
	[nmap]=nmap
	[slapd]=slapd
	[ldapadd]=ldap-utils
	[softhsm2-util]=softhsm2
	[pkcs11-tool]=opensc
	[sshd]=openssh-server
	[sudo]=sudo
	[tinyproxy]=tinyproxy
	[update-ca-certificates]=ca-certificates
	[chromium]=chromium
)

missing=()
for cmd in "$@"; do
	if [ "$cmd" = bcprov ]; then
		# Bouncy Castle, a jar rather than a command: gen.sh writes BER PKCS#12 with it.
		[ -f /usr/share/java/bcprov.jar ] || missing+=(libbcprov-java)
		continue
	fi
	if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then
		missing+=("${package_of[$cmd]:?no package known for $cmd}")
	fi
done
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then
	echo "deps: ${missing[*]} missing and not root; install them with apt-get" >&2
	exit 1
fi
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
# slapd would otherwise ask for a domain and create a database of its own:
# the tests run throwaway servers with their own configuration.
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections
apt_get update -qq
apt_get install -y -qq --no-install-recommends "${missing[@]}"

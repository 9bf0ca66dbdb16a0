#!/usr/bin/env bash
# gen.sh makes the corpus the files connector is tested against, with the
# real tools that write these files in the field: openssl 3 and Java's
# keytool. It rewrites testdata/corpus/ and testdata/expected.json together
# (keys are random, so the fingerprints change with every run; the layout
# does not). Run it from anywhere: bash connectors/files/testdata/gen.sh
# Needs: openssl (3.x), keytool and java (any JDK 11+), Bouncy Castle's
# provider jar (Debian: libbcprov-java; another path with BCPROV=...),
# sha256sum, nothing else.
set -euo pipefail

bcprov=${BCPROV:-/usr/share/java/bcprov.jar}
[ -f "$bcprov" ] || { echo "gen.sh: $bcprov missing: apt-get install libbcprov-java, or set BCPROV" >&2; exit 1; }

here=$(cd "$(dirname "$0")" && pwd)
out=$here/corpus
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rm -rf "$out"
mkdir -p "$out"/{pem,der,p7,p12,jks,jceks,junk,links,nested/deeper}

pw=changeit       # the password the tests pass with --password
other=s3cret      # a password the tests never know

# fp FILE [FORM] prints the SHA-256 of a certificate's DER.
fp() { openssl x509 -in "$1" -inform "${2:-PEM}" -outform DER | sha256sum | cut -d' ' -f1; }

expected_certs=()
expected_errors=()
# cert LOCATION FINGERPRINT FORMAT [KEYALG KEYBITS [RECORD_ERROR]]
cert() { expected_certs+=("$(printf '{"location":"%s","sha256":"%s","format":"%s","key_algorithm":"%s","key_bits":%s,"record_error":"%s"}' "$1" "$2" "$3" "${4:-}" "${5:-0}" "${6:-}")"); }
# fail PATH SUBSTRING
fail() { expected_errors+=("$(printf '{"path":"%s","contains":"%s"}' "$1" "$2")"); }

cd "$work"

# ---- a test CA and leaves -------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3650 \
  -subj "/O=emSign test/CN=Test CA" -addext basicConstraints=critical,CA:TRUE \
  -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
cat > leaf.ext <<'X'
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:rsa.example.com
X
openssl req -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.csr -subj "/CN=rsa.example.com" 2>/dev/null
openssl x509 -req -in rsa.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -extfile leaf.ext -out rsa.pem 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -out ec.csr -subj "/CN=ec.example.com" 2>/dev/null
sed 's/rsa.example.com/ec.example.com/' leaf.ext > ec.ext
openssl x509 -req -in ec.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -extfile ec.ext -out ec.pem 2>/dev/null
CA=$(fp ca.pem); RSA=$(fp rsa.pem); EC=$(fp ec.pem)

# ---- PEM ------------------------------------------------------------------
cp rsa.pem "$out/pem/leaf-rsa.pem";                        cert pem/leaf-rsa.pem#0 "$RSA" pem
cat rsa.pem ca.pem > "$out/pem/bundle.pem";                cert pem/bundle.pem#0 "$RSA" pem; cert pem/bundle.pem#1 "$CA" pem
{ printf 'subject=CN=ec.example.com\nissuer=Test CA\n\n'; cat ec.pem; printf '\nsome notes a human left here\n\n'; cat ca.pem; printf 'trailing junk\n'; } \
  | sed 's/$/\r/' > "$out/pem/junk-crlf.pem";               cert pem/junk-crlf.pem#0 "$EC" pem; cert pem/junk-crlf.pem#1 "$CA" pem
# cert + matching key: PKCS#8 "PRIVATE KEY" (openssl's default form)
cat ec.pem ec.key > "$out/pem/ec-cert-key.pem";            cert pem/ec-cert-key.pem#0 "$EC" pem ECDSA 256
# key first, traditional "RSA PRIVATE KEY", then the chain
{ openssl rsa -in rsa.key -traditional 2>/dev/null; cat rsa.pem ca.pem; } > "$out/pem/rsa-key-chain.pem"
cert pem/rsa-key-chain.pem#0 "$RSA" pem RSA 2048; cert pem/rsa-key-chain.pem#1 "$CA" pem
# "EC PRIVATE KEY" (SEC 1)
{ cat ec.pem; openssl ec -in ec.key 2>/dev/null; } > "$out/pem/ec-sec1.pem"; cert pem/ec-sec1.pem#0 "$EC" pem ECDSA 256
# encrypted PKCS#8 key, password changeit: opened with --password changeit
{ cat rsa.pem; openssl pkcs8 -topk8 -in rsa.key -passout pass:$pw -v2 aes-256-cbc; } > "$out/pem/rsa-enckey.pem"
cert pem/rsa-enckey.pem#0 "$RSA" pem RSA 2048
# encrypted with a password nobody passes: the key exists, its size is unknown
{ cat ec.pem; openssl pkcs8 -topk8 -in ec.key -passout pass:$other -v2 aes-256-cbc; } > "$out/pem/ec-enckey-unknown.pem"
cert pem/ec-enckey-unknown.pem#0 "$EC" pem ECDSA 0
# openssl's TRUSTED CERTIFICATE (certificate DER + trust settings)
openssl x509 -in ca.pem -addtrust serverAuth -out "$out/pem/trusted.pem"; cert pem/trusted.pem#0 "$CA" pem
# truncated: a good block, a block with bad base64, a block cut off
{ cat rsa.pem; sed '3s/^..../!!!!/' ca.pem; head -n 8 ec.pem; } > "$out/pem/truncated.pem"
cert pem/truncated.pem#0 "$RSA" pem
fail pem/truncated.pem "at line $(( $(wc -l < rsa.pem) + 1 ))"   # where the bad-base64 block begins
fail pem/truncated.pem "BEGIN without END"
# a key alone is not a certificate file: skipped without a word
cp rsa.key "$out/pem/lonely.key"

# ---- DER ------------------------------------------------------------------
openssl x509 -in rsa.pem -outform DER -out "$out/der/rsa.cer";  cert der/rsa.cer#0 "$RSA" der
openssl x509 -in ec.pem -outform DER -out "$out/der/ec-no-extension"; cert der/ec-no-extension#0 "$EC" der
# a certificate Go's parser refuses (negative serial): still reported, its
# record says why it does not parse
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout neg.key -subj "/CN=negative serial" \
  -set_serial -5 -days 365 -outform DER -out "$out/der/negative-serial.cer" 2>/dev/null
cert der/negative-serial.cer#0 "$(fp "$out/der/negative-serial.cer" DER)" der "" 0 "negative serial number"
# not certificates, but well-formed: skipped without a word, .pem or not
openssl pkey -in ec.key -pubout -out "$out/pem/public-key.pem"
openssl req -new -key rsa.key -subj /CN=csr -outform DER -out "$out/der/request.der"

# ---- PKCS#7 ---------------------------------------------------------------
openssl crl2pkcs7 -nocrl -certfile rsa.pem -certfile ca.pem -out "$out/p7/bundle.p7b"
cert p7/bundle.p7b#0 "$RSA" pkcs7; cert p7/bundle.p7b#1 "$CA" pkcs7
openssl crl2pkcs7 -nocrl -certfile ec.pem -certfile ca.pem -outform DER -out "$out/p7/bundle-der.p7c"
cert p7/bundle-der.p7c#0 "$EC" pkcs7; cert p7/bundle-der.p7c#1 "$CA" pkcs7

# ---- PKCS#12 by openssl ---------------------------------------------------
# default: AES-256-CBC, PBKDF2, HMAC-SHA-256 MAC
openssl pkcs12 -export -in rsa.pem -inkey rsa.key -certfile ca.pem -name server -out "$out/p12/openssl-aes.p12" -passout pass:$pw
cert p12/openssl-aes.p12#server "$RSA" pkcs12 RSA 2048; cert p12/openssl-aes.p12#1 "$CA" pkcs12
# legacy: RC2-40 certificates, 3DES key, SHA-1 MAC (what old Windows needs)
openssl pkcs12 -export -legacy -in ec.pem -inkey ec.key -certfile ca.pem -name legacy -out "$out/p12/openssl-legacy.pfx" -passout pass:$pw
cert p12/openssl-legacy.pfx#legacy "$EC" pkcs12 ECDSA 256; cert p12/openssl-legacy.pfx#1 "$CA" pkcs12
# empty password
openssl pkcs12 -export -in ec.pem -inkey ec.key -name nopass -out "$out/p12/empty-password.p12" -passout pass:
cert p12/empty-password.p12#nopass "$EC" pkcs12 ECDSA 256
# no MAC, no encryption at all
openssl pkcs12 -export -in rsa.pem -inkey rsa.key -name plain -nomac -keypbe NONE -certpbe NONE -out "$out/p12/nomac.p12" -passout pass:
# (openssl puts everything in one safe here, a layout go-pkcs12 reads only
# without the bag attributes: the entry is the index, not the name)
cert p12/nomac.p12#0 "$RSA" pkcs12 RSA 2048
# a password nobody passes
openssl pkcs12 -export -in rsa.pem -inkey rsa.key -name server -out "$out/p12/wrong-password.p12" -passout pass:$other
fail p12/wrong-password.p12 "no password fits"
# certificates only, no key and no Java trust marker: go-pkcs12 has no API
# that reads this layout, so it is reported, not silently dropped
openssl pkcs12 -export -nokeys -in ca.pem -certfile rsa.pem -out "$out/p12/certs-only.p12" -passout pass:$pw
fail p12/certs-only.p12 "not supported"

# ---- keystores by keytool -------------------------------------------------
kt() { keytool -noprompt "$@" 2>/dev/null >/dev/null; }
# keystore STORETYPE FILE PASSWORD [KEYTOOL OPTIONS]: a key entry "server"
# whose chain is server <- Test CA, and a trusted entry "testca".
keystore() {
  local type=$1 file=$2 pass=$3; shift 3
  kt -genkeypair -alias server -keyalg RSA -keysize 2048 -validity 365 -dname "CN=jks.example.com,O=Example" \
     -ext SAN=dns:jks.example.com -keystore "$file" -storetype "$type" -storepass "$pass" -keypass "$pass" "$@"
  kt -certreq -alias server -keystore "$file" -storetype "$type" -storepass "$pass" -file "$file.csr" "$@"
  openssl x509 -req -in "$file.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 365 -copy_extensions copy -out "$file.crt" 2>/dev/null
  kt -importcert -trustcacerts -alias testca -file ca.pem -keystore "$file" -storetype "$type" -storepass "$pass" "$@"
  kt -importcert -alias server -file "$file.crt" -keystore "$file" -storetype "$type" -storepass "$pass" -keypass "$pass" "$@"
}
keystore JKS ks.jks $pw;            cp ks.jks "$out/jks/keystore.jks"
cert jks/keystore.jks#server "$(fp ks.jks.crt)" jks RSA 2048; cert jks/keystore.jks#testca "$CA" jks
keystore JKS other.jks $other;      cp other.jks "$out/jks/wrong-password.jks"
# the certificates of a JKS are stored in clear: reported even so
cert jks/wrong-password.jks#server "$(fp other.jks.crt)" jks RSA 0; cert jks/wrong-password.jks#testca "$CA" jks
fail jks/wrong-password.jks "no password fits"
keystore JCEKS ks.jceks $pw;        cp ks.jceks "$out/jceks/keystore.jceks"
cert jceks/keystore.jceks#server "$(fp ks.jceks.crt)" jceks RSA 2048; cert jceks/keystore.jceks#testca "$CA" jceks
keystore JCEKS other.jceks $other;  cp other.jceks "$out/jceks/wrong-password.jceks"
cert jceks/wrong-password.jceks#testca "$CA" jceks
fail jceks/wrong-password.jceks "no password fits"
# certigo's JCEKS reader hands out a key entry's chain only with its key
fail "jceks/wrong-password.jceks#server" "no password fits"
# PKCS#12 written by Java: a key entry and a trusted entry (Java marks it
# with its own trust attribute). go-pkcs12 reads these layouts only without
# the bag attributes, so the entries are the indexes of the certificate
# bags, in file order (as openssl lists them); the CA is there twice, once
# in the key entry's chain and once as the trusted entry.
keystore PKCS12 ks.p12 $pw;         cp ks.p12 "$out/p12/keytool.p12"
p12bags() { # FILE FORMAT KEYFP: one expected entry per certificate bag
  rm -f bag-*.pem
  openssl pkcs12 -legacy -in "$1" -nokeys -passin pass:$pw 2>/dev/null | awk '/BEGIN CERT/{f = "bag-" n++ ".pem"; on = 1} on {print > f} /END CERT/{close(f); on = 0}'
  local i=0
  while [ -f "bag-$i.pem" ]; do
    local f; f=$(fp "bag-$i.pem")
    if [ "$f" = "${3:-}" ]; then cert "$2#$i" "$f" pkcs12 RSA 2048; else cert "$2#$i" "$f" pkcs12; fi
    i=$((i + 1))
  done
}
p12bags ks.p12 p12/keytool.p12 "$(fp ks.p12.crt)"
# a Java trust store in PKCS#12: trusted entries only
kt -importcert -trustcacerts -alias testca -file ca.pem -keystore ts.p12 -storetype PKCS12 -storepass $pw
kt -importcert -trustcacerts -alias ecleaf -file ec.pem -keystore ts.p12 -storetype PKCS12 -storepass $pw
cp ts.p12 "$out/p12/keytool-truststore.p12"
p12bags ts.p12 p12/keytool-truststore.p12
# PKCS#12 written by Bouncy Castle (what EJBCA exports and Java applications
# that use BC write): BER throughout, indefinite lengths and OCTET STRINGs in
# 1000-byte chunks, in the PFX, in the AuthenticatedSafe the MAC covers and
# around the encrypted certificates; SHA-1 MAC, 3DES key, RC2-40
# certificates. Through keytool: the same two entries as keytool.p12, but
# BC stores the CA once, so two certificate bags.
bc=(-providername BC -providerclass org.bouncycastle.jce.provider.BouncyCastleProvider -providerpath "$bcprov")
keystore PKCS12 bc.p12 $pw "${bc[@]}"; cp bc.p12 "$out/p12/bouncycastle.p12"
p12bags bc.p12 p12/bouncycastle.p12 "$(fp bc.p12.crt)"
# ... and with the empty password, which BC turns into no bytes at all
# (openssl and go-pkcs12 use two zero bytes). keytool refuses short
# passwords, so a few lines of Java write it: the EC key of
# empty-password.p12, alias "nopass".
cat > BCStore.java <<'JAVA'
import java.io.*;
import java.security.*;
import java.util.*;

// BCStore SRC SRCPASS DST DSTPASS copies a PKCS#12 key store into one written by Bouncy Castle.
public class BCStore {
    public static void main(String[] a) throws Exception {
        Security.addProvider(new org.bouncycastle.jce.provider.BouncyCastleProvider());
        KeyStore src = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(a[0])) { src.load(in, a[1].toCharArray()); }
        KeyStore dst = KeyStore.getInstance("PKCS12", "BC");
        dst.load(null, null);
        char[] pw = a[3].toCharArray();
        for (String alias : Collections.list(src.aliases())) {
            if (src.isKeyEntry(alias)) dst.setKeyEntry(alias, src.getKey(alias, a[1].toCharArray()), pw, src.getCertificateChain(alias));
            else dst.setCertificateEntry(alias, src.getCertificate(alias));
        }
        try (OutputStream out = new FileOutputStream(a[2])) { dst.store(out, pw); }
    }
}
JAVA
java -cp "$bcprov" BCStore.java "$out/p12/empty-password.p12" "" "$out/p12/bouncycastle-nopass.p12" ""
cert p12/bouncycastle-nopass.p12#nopass "$EC" pkcs12 ECDSA 256
# both really are BER: an indefinite length right at the start
for f in bouncycastle.p12 bouncycastle-nopass.p12; do
  openssl asn1parse -inform DER -in "$out/p12/$f" > asn1.txt
  head -n 1 asn1.txt | grep -q 'l=inf' || { echo "gen.sh: $f is not BER" >&2; exit 1; }
done

# the keystore under a name that says nothing, and a .keystore one
cp ks.jks "$out/nested/deeper/app-store"
cert nested/deeper/app-store#server "$(fp ks.jks.crt)" jks RSA 2048; cert nested/deeper/app-store#testca "$CA" jks

# ---- not certificates -----------------------------------------------------
head -c 2048 /dev/urandom > "$out/junk/random.crt"
fail junk/random.crt "no certificate found"
printf 'just some text\nwith -----BEGIN nothing in particular\n' > "$out/junk/notes.txt"
{ printf '\x7fELF\x02\x01\x01'; head -c 4096 /dev/urandom; } > "$out/junk/program.bin"
: > "$out/junk/empty.pem"
fail junk/empty.pem "no certificate found"

# ---- links ----------------------------------------------------------------
ln -s ../pem/leaf-rsa.pem "$out/links/leaf-link.pem";   cert links/leaf-link.pem#0 "$RSA" pem
ln -s .. "$out/links/loop"                              # a loop: never followed twice
ln -s ../nested "$out/links/nested-link"                # a symlinked directory: followed once
ln -s does-not-exist.pem "$out/links/dangling.pem";    fail links/dangling.pem "does-not-exist.pem"

# ---- expected.json --------------------------------------------------------
{
  printf '{\n  "password": "%s",\n  "certificates": [\n' "$pw"
  for i in "${!expected_certs[@]}"; do
    sep=,; [ "$i" -eq $((${#expected_certs[@]} - 1)) ] && sep=
    printf '    %s%s\n' "${expected_certs[$i]}" "$sep"
  done
  printf '  ],\n  "errors": [\n'
  for i in "${!expected_errors[@]}"; do
    sep=,; [ "$i" -eq $((${#expected_errors[@]} - 1)) ] && sep=
    printf '    %s%s\n' "${expected_errors[$i]}" "$sep"
  done
  printf '  ]\n}\n'
} > "$here/expected.json"
echo "wrote $out and $here/expected.json"

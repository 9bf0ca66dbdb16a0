package files

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"hash"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gopkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/emsign/bot/protocol"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", ":", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readCorpus(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "corpus", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBERToDER(t *testing.T) {
	long := bytes.Repeat([]byte{0xab}, 300)
	for _, tc := range []struct{ name, in, want string }{
		{"DER unchanged", "30 06 02 01 05 04 01 aa", "30 06 02 01 05 04 01 aa"},
		{"indefinite lengths nested", "30 80 30 80 02 01 05 00 00 31 80 00 00 00 00", "30 07 30 03 02 01 05 31 00"},
		{"indefinite inside definite", "30 07 30 80 02 01 05 00 00", "30 05 30 03 02 01 05"},
		{"constructed OCTET STRING", "24 80 04 02 aa bb 04 01 cc 00 00", "04 03 aa bb cc"},
		{"definite constructed OCTET STRING", "24 06 04 01 aa 04 01 bb", "04 02 aa bb"},
		{"chunks of chunks", "24 80 24 80 04 01 aa 00 00 04 00 24 03 04 01 bb 00 00", "04 02 aa bb"},
		{"empty constructed OCTET STRING", "24 80 00 00", "04 00"},
		{"constructed BIT STRING", "23 80 03 02 00 aa 03 02 04 b0 00 00", "03 03 04 aa b0"},
		{"constructed BMPString", "3e 80 1e 02 00 61 1e 02 00 62 00 00", "1e 04 00 61 00 62"},
		{"OCTET STRING in a SEQUENCE in [0]", "a0 80 30 80 24 80 04 01 aa 00 00 00 00 00 00", "a0 05 30 03 04 01 aa"},
		{"[0] IMPLICIT constructed is kept", "a0 80 04 01 aa 04 01 bb 00 00", "a0 06 04 01 aa 04 01 bb"},
		{"high tag number", "bf 81 00 80 05 00 00 00", "bf 81 00 02 05 00"},
		{"long form when needed", "24 80 04 82 01 2c " + hex.EncodeToString(long) + " 00 00", "04 82 01 2c " + hex.EncodeToString(long)},
		{"non-minimal length made minimal", "04 81 01 aa", "04 01 aa"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := berToDER(unhex(t, tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.want); !bytes.Equal(got, want) {
				t.Errorf("got  % x\nwant % x", got, want)
			}
		})
	}
}

func TestBERToDERRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"empty", ""},
		{"one byte", "30"},
		{"truncated content", "04 05 aa"},
		{"missing end-of-contents", "30 80 02 01 05"},
		{"end-of-contents in a definite length", "30 04 02 01 05 00 00"},
		{"end-of-contents at the top", "00 00"},
		{"indefinite primitive", "04 80 aa 00 00"},
		{"child longer than its parent", "30 03 04 05 aa bb cc dd ee"},
		{"trailing bytes", "04 01 aa ff"},
		{"two elements", "05 00 05 00"},
		{"chunk of another type", "24 80 02 01 05 00 00"},
		{"BIT STRING chunk with unused bits not last", "23 80 03 02 04 a0 03 02 00 bb 00 00"},
		{"BIT STRING chunk without its unused-bits byte", "23 80 03 00 00 00"},
		{"length 0xff", "04 ff"},
		{"length of 5 bytes", "04 85 00 00 00 00 01 aa"},
		{"length beyond the input", "30 84 7f ff ff ff 05 00"},
		{"bad high tag", "1f 80 01 00"},
		{"endless high tag", "1f 81 81 81 81 81 81 81"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := berToDER(unhex(t, tc.in)); err == nil {
				t.Errorf("accepted: % x", got)
			}
		})
	}
}

// TestBERBounds: hostile input must not blow the stack (asn1-ber recurses
// once per level) nor memory (it copies each element into every ancestor).
func TestBERBounds(t *testing.T) {
	nested := func(depth int) []byte {
		return append(bytes.Repeat([]byte{0x30, 0x80}, depth), bytes.Repeat([]byte{0, 0}, depth)...)
	}
	if _, err := berToDER(nested(berMaxDepth)); err != nil {
		t.Errorf("depth %d: %v", berMaxDepth, err)
	}
	if _, err := berToDER(nested(berMaxDepth + 1)); !errors.Is(err, errBERBounds) {
		t.Errorf("depth %d: %v", berMaxDepth+1, err)
	}
	// a million levels, refused before anything recurses; likewise
	// definite lengths.
	if _, err := berToDER(nested(1 << 20)); !errors.Is(err, errBERBounds) {
		t.Errorf("deep: %v", err)
	}
	var deep []byte
	for range 100 {
		deep = append([]byte{0x30, 0x81, byte(len(deep))}, deep...)
		if len(deep) > 250 {
			break
		}
	}
	if _, err := berToDER(deep); !errors.Is(err, errBERBounds) {
		t.Errorf("deep definite: %v", err)
	}
	// Too many elements: a SEQUENCE of NULLs.
	elements := func(n int) []byte {
		b := []byte{0x30, 0x80}
		b = append(b, bytes.Repeat([]byte{0x05, 0x00}, n)...)
		return append(b, 0, 0)
	}
	if _, err := berToDER(elements(berMaxElements - 1)); err != nil {
		t.Errorf("%d elements: %v", berMaxElements, err)
	}
	if _, err := berToDER(elements(berMaxElements)); !errors.Is(err, errBERBounds) {
		t.Errorf("%d elements: %v", berMaxElements+1, err)
	}
	// Too much copying: a 2 MiB string is fine two levels down, not ten.
	str := append([]byte{0x04, 0x83, 0x20, 0x00, 0x00}, make([]byte, 2<<20)...)
	wrap := func(depth int) []byte {
		b := append(bytes.Repeat([]byte{0x30, 0x80}, depth), str...)
		return append(b, bytes.Repeat([]byte{0, 0}, depth)...)
	}
	if _, err := berToDER(wrap(2)); err != nil {
		t.Errorf("2 MiB at depth 2: %v", err)
	}
	if _, err := berToDER(wrap(10)); !errors.Is(err, errBERBounds) {
		t.Errorf("2 MiB at depth 10: %v", err)
	}
}

// TestBERToDERGarbage: random bytes and mutations of the Bouncy Castle file
// never panic, and whatever is accepted comes out as DER that
// encoding/asn1 reads and that normalising again leaves unchanged.
func TestBERToDERGarbage(t *testing.T) {
	bc := readCorpus(t, "p12/bouncycastle.p12")
	rng := mrand.New(mrand.NewPCG(1, 2))
	n := 3000
	if testing.Short() {
		n = 500
	}
	accepted := 0
	for i := range n {
		var in []byte
		if i%3 == 0 {
			in = make([]byte, rng.IntN(64))
			for j := range in {
				in[j] = byte(rng.UintN(256))
			}
		} else {
			in = bytes.Clone(bc)
			for range 1 + rng.IntN(4) {
				in[rng.IntN(len(in))] = byte(rng.UintN(256))
			}
		}
		out, err := berToDER(in)
		if err != nil {
			continue
		}
		accepted++
		var raw asn1.RawValue
		if rest, err := asn1.Unmarshal(out, &raw); err != nil || len(rest) > 0 {
			t.Fatalf("output is not one DER element (%v): % x", err, out)
		}
		again, err := berToDER(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent (%v)", err)
		}
	}
	if accepted == 0 {
		t.Error("no mutation was accepted: the test proves little")
	}
}

// TestPKCS12KDF checks the key derivation against openssl 3's PKCS12KDF
// (`openssl kdf -keylen N -kdfopt digest:D -kdfopt pass:P -kdfopt
// hexsalt:S -kdfopt iter:I -kdfopt id:ID PKCS12KDF`, which takes the
// password bytes as given); keys longer than one hash exercise the B.2
// step 6 update.
func TestPKCS12KDF(t *testing.T) {
	for _, tc := range []struct {
		h          func() hash.Hash
		v          int
		pass, salt string
		iter       int
		id         byte
		want       string
	}{
		{sha1.New, 64, "changeit", "0102030405060708", 1000, 1, "29:91:EC:97:A5:A0:C7:E7:72:25:0E:A6:10:0B:3A:5D:00:1C:63:EE:2C:78:0C:F6:9D:0B:54:3C:83:12:C3:5D:C8:D0:9E:DD:F9:18:7D:59"},
		{sha256.New, 64, "changeit", "0102030405060708090a", 3, 2, "FC:AE:17:48:52:66:83:BD:F7:8F:95:D6:F4:51:89:5F:27:B6:86:78:07:99:FD:A1:4B:F6:02:08:DE:EE:E2:8B:2C:FB:C5:5B:02:92:01:46:D2:66:B5:70:5F:CF:D3:EA:64:1F:FD:33:72:0A:38:60:10:76:38:93:75:C5:B9:F7:CE:85:E7:12:71:59:EA:33:A7:CA:A6:20:04:C1:FF:F0"},
		{sha512.New, 128, "Ünïcödé", "ff", 7, 3, "2B:FB:1E:2A:0D:19:E6:1D:E0:19:F5:E5:B6:93:21:57:A7:9C:B4:D4:C2:D2:65:1B:A7:72:E6:08:BE:97:39:F8:C6:96:EF:02:60:C7:82:F7:8D:EF:ED:53:9F:48:9D:2C:28:7B:FE:DD:73:CA:E5:88:4F:6E:D0:59:07:25:B5:69:B3:55:2C:46:A4:9C"},
		{sha1.New, 64, "", "0a0b", 2, 1, "25:DF:6E:A3:0C:FE:29:01:15:CE:E8:F8:AF:A4:9A:10:3E:08:84:F2:6B:B7:4D:06"},
	} {
		want := unhex(t, tc.want)
		got := pkcs12KDF(tc.h, tc.v, []byte(tc.pass), unhex(t, tc.salt), tc.iter, tc.id, len(want))
		if !bytes.Equal(got, want) {
			t.Errorf("%q id %d: got % x", tc.pass, tc.id, got)
		}
	}
}

// pfxParts returns the AuthenticatedSafe bytes and the MacData of a DER
// PKCS#12 file.
func pfxParts(t testing.TB, der []byte) ([]byte, *pkcs12MacData) {
	t.Helper()
	var pfx pkcs12PFX
	if err := unmarshalDER(der, &pfx); err != nil {
		t.Fatal(err)
	}
	var safe []byte
	if err := unmarshalDER(pfx.AuthSafe.Content.Bytes, &safe); err != nil {
		t.Fatal(err)
	}
	var mac pkcs12MacData
	if err := unmarshalDER(pfx.MacData.FullBytes, &mac); err != nil {
		t.Fatal(err)
	}
	return safe, &mac
}

// TestPKCS12MAC checks the MAC against files openssl and go-pkcs12 made,
// and that go-pkcs12 accepts a MAC made here (SHA-512, which no fixture
// has).
func TestPKCS12MAC(t *testing.T) {
	check := func(t *testing.T, der []byte, pw string, want []byte) {
		t.Helper()
		safe, mac := pfxParts(t, der)
		got, err := mac.check(safe, pw)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("password %q: % x, %v", pw, got, err)
		}
		if _, err := mac.check(safe, pw+"x"); !errors.Is(err, errPKCS12MAC) {
			t.Errorf("wrong password: %v", err)
		}
	}
	bmp := bmpZeroTerminated
	t.Run("openssl SHA-256", func(t *testing.T) { check(t, readCorpus(t, "p12/openssl-aes.p12"), "changeit", bmp("changeit")) })
	t.Run("openssl SHA-1", func(t *testing.T) { check(t, readCorpus(t, "p12/openssl-legacy.pfx"), "changeit", bmp("changeit")) })
	t.Run("openssl empty password", func(t *testing.T) { check(t, readCorpus(t, "p12/empty-password.p12"), "", bmp("")) })
	t.Run("Bouncy Castle empty password is no bytes", func(t *testing.T) {
		b, err := newBERPKCS12(readCorpus(t, "p12/bouncycastle-nopass.p12"))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := b.mac.check(b.authSafe, ""); err != nil || len(got) != 0 {
			t.Errorf("% x, %v", got, err)
		}
	})
	key, cert := testKeyAndCert(t)
	for name, enc := range map[string]*gopkcs12.Encoder{"go-pkcs12 SHA-1": gopkcs12.LegacyDES, "go-pkcs12 SHA-256": gopkcs12.Modern2023} {
		t.Run(name, func(t *testing.T) {
			der, err := enc.Encode(key, cert, nil, "pässword")
			if err != nil {
				t.Fatal(err)
			}
			check(t, der, "pässword", bmp("pässword"))
		})
	}
	t.Run("SHA-512 made here, checked by go-pkcs12", func(t *testing.T) {
		der, err := gopkcs12.Modern2023.Encode(key, cert, nil, "changeit")
		if err != nil {
			t.Fatal(err)
		}
		safe, mac := pfxParts(t, der)
		mac.Mac.Algorithm.Algorithm = oidSHA512
		mac.Iterations = 3
		if mac.Mac.Digest, err = pkcs12MAC(oidSHA512, safe, bmp("changeit"), mac.MacSalt, 3); err != nil {
			t.Fatal(err)
		}
		var pfx pkcs12PFX
		if err := unmarshalDER(der, &pfx); err != nil {
			t.Fatal(err)
		}
		if pfx.MacData.FullBytes, err = asn1.Marshal(*mac); err != nil {
			t.Fatal(err)
		}
		if der, err = asn1.Marshal(pfx); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := gopkcs12.DecodeChain(der, "changeit"); err != nil {
			t.Errorf("go-pkcs12: %v", err)
		}
		if _, _, _, err := gopkcs12.DecodeChain(der, "wrong"); !errors.Is(err, gopkcs12.ErrIncorrectPassword) {
			t.Errorf("go-pkcs12, wrong password: %v", err)
		}
	})
	t.Run("iterations bounded", func(t *testing.T) {
		safe, mac := pfxParts(t, readCorpus(t, "p12/openssl-aes.p12"))
		mac.Iterations = pkcs12MaxMacIterations + 1
		if _, err := mac.check(safe, "changeit"); err == nil || errors.Is(err, errPKCS12MAC) {
			t.Errorf("%v", err)
		}
	})
}

// testKeyAndCert is the key and certificate of the corpus's
// openssl-aes.p12.
func testKeyAndCert(t testing.TB) (any, *x509.Certificate) {
	t.Helper()
	key, cert, _, err := gopkcs12.DecodeChain(readCorpus(t, "p12/openssl-aes.p12"), "changeit")
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// indefinite re-encodes a DER SEQUENCE with an indefinite length.
func indefinite(t testing.TB, der []byte) []byte {
	t.Helper()
	var raw asn1.RawValue
	if _, err := asn1.Unmarshal(der, &raw); err != nil || !raw.IsCompound {
		t.Fatalf("not a constructed element: %v", err)
	}
	out := append([]byte{der[0], 0x80}, raw.Bytes...)
	return append(out, 0, 0)
}

// TestBERPKCS12 reads Bouncy Castle's files (gen.sh checks they are BER)
// and DER files made BER here.
func TestBERPKCS12(t *testing.T) {
	exp := loadExpectations(t)
	want := map[string]string{} // location -> fingerprint
	keys := map[string]bool{}
	for _, c := range exp.Certificates {
		if strings.HasPrefix(c.Location, "p12/bouncycastle") {
			want[c.Location] = c.SHA256
			keys[c.Location] = c.KeyAlgorithm != ""
		}
	}
	if len(want) < 3 {
		t.Fatalf("expected.json lists %d Bouncy Castle certificates", len(want))
	}
	changeit := []protocol.Secret{protocol.NewSecret("changeit")}
	for _, file := range []string{"p12/bouncycastle.p12", "p12/bouncycastle-nopass.p12"} {
		data := readCorpus(t, file)
		if data[1] != 0x80 {
			t.Fatalf("%s is not BER", file)
		}
		t.Run(file, func(t *testing.T) {
			pws := changeit
			if strings.Contains(file, "nopass") {
				pws = nil // the empty password is always tried
			}
			entries, err := ParseKeystore(data, pws)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, e := range entries {
				loc := file + "#" + e.Name
				if e.Err != "" || want[loc] == "" {
					t.Errorf("%s: unexpected, error %q", loc, e.Err)
					continue
				}
				n++
				if fp := protocol.Fingerprint(e.Chain[0]); fp != want[loc] {
					t.Errorf("%s: fingerprint %s, want %s", loc, fp, want[loc])
				}
				if (e.Key != nil) != keys[loc] {
					t.Errorf("%s: key %+v", loc, e.Key)
				}
				if e.Key != nil && len(e.Chain) < 2 && file == "p12/bouncycastle.p12" {
					t.Errorf("%s: chain of %d", loc, len(e.Chain))
				}
			}
			if n == 0 {
				t.Error("nothing found")
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		entries, _ := ParseKeystore(readCorpus(t, "p12/bouncycastle.p12"), []protocol.Secret{protocol.NewSecret("s3cret")})
		if len(entries) != 1 || !strings.Contains(entries[0].Err, noPasswordFits) {
			t.Errorf("%+v", entries)
		}
	})
	t.Run("tampered AuthenticatedSafe", func(t *testing.T) {
		data := readCorpus(t, "p12/bouncycastle.p12")
		data[200] ^= 1 // inside the key bag's encrypted key
		entries, _ := ParseKeystore(data, changeit)
		if len(entries) != 1 || !strings.Contains(entries[0].Err, noPasswordFits) {
			t.Errorf("%+v", entries)
		}
	})
	t.Run("only the PFX is BER", func(t *testing.T) {
		// The MAC still holds: go-pkcs12 checks it.
		entries, _ := ParseKeystore(indefinite(t, readCorpus(t, "p12/openssl-aes.p12")), changeit)
		if len(entries) != 2 || entries[0].Name != "server" || entries[0].Key == nil {
			t.Errorf("%+v", entries)
		}
		entries, _ = ParseKeystore(indefinite(t, readCorpus(t, "p12/openssl-aes.p12")), nil)
		if len(entries) != 1 || !strings.Contains(entries[0].Err, noPasswordFits) {
			t.Errorf("no password: %+v", entries)
		}
	})
	t.Run("BER without MAC", func(t *testing.T) {
		der := readCorpus(t, "p12/nomac.p12")
		safe, _ := pfxPartsNoMAC(t, der)
		ber := berPFX(t, indefinite(t, safe), nil)
		entries, _ := ParseKeystore(ber, nil)
		if len(entries) != 1 || entries[0].Key == nil {
			t.Errorf("%+v", entries)
		}
	})
	t.Run("BER AuthenticatedSafe, SHA-256 MAC", func(t *testing.T) {
		safe, mac := pfxParts(t, readCorpus(t, "p12/openssl-aes.p12"))
		ber := berPFX(t, indefinite(t, safe), mac)
		entries, _ := ParseKeystore(ber, changeit)
		if len(entries) != 2 || entries[0].Name != "server" || entries[0].Key == nil {
			t.Errorf("%+v", entries)
		}
		entries, _ = ParseKeystore(ber, []protocol.Secret{protocol.NewSecret("s3cret")})
		if len(entries) != 1 || !strings.Contains(entries[0].Err, noPasswordFits) {
			t.Errorf("wrong password: %+v", entries)
		}
	})
	t.Run("MAC algorithm not supported", func(t *testing.T) {
		safe, mac := pfxParts(t, readCorpus(t, "p12/openssl-aes.p12"))
		mac.Mac.Algorithm.Algorithm = asn1.ObjectIdentifier{1, 2, 3}
		entries, _ := ParseKeystore(berPFX(t, indefinite(t, safe), mac), changeit)
		if len(entries) != 1 || !strings.Contains(entries[0].Err, "BER-encoded") || !strings.Contains(entries[0].Err, "not supported") {
			t.Errorf("%+v", entries)
		}
	})
	t.Run("broken BER", func(t *testing.T) {
		data := readCorpus(t, "p12/bouncycastle.p12")
		entries, _ := ParseKeystore(data[:len(data)-2], changeit)
		if len(entries) != 1 || !strings.Contains(entries[0].Err, "BER-encoded PKCS#12 does not parse") {
			t.Errorf("%+v", entries)
		}
	})
}

func pfxPartsNoMAC(t testing.TB, der []byte) ([]byte, []byte) {
	t.Helper()
	var pfx pkcs12PFX
	if err := unmarshalDER(der, &pfx); err != nil {
		t.Fatal(err)
	}
	var safe []byte
	if err := unmarshalDER(pfx.AuthSafe.Content.Bytes, &safe); err != nil {
		t.Fatal(err)
	}
	return safe, pfx.MacData.FullBytes
}

// berPFX wraps an AuthenticatedSafe (BER or not) in a PFX with mac, in
// 1000-byte chunks as Bouncy Castle does.
func berPFX(t testing.TB, authSafe []byte, mac *pkcs12MacData) []byte {
	t.Helper()
	chunks := []byte{0x24, 0x80}
	for rest := authSafe; len(rest) > 0; {
		n := min(len(rest), 1000)
		c, err := asn1.Marshal(rest[:n])
		if err != nil {
			t.Fatal(err)
		}
		chunks = append(chunks, c...)
		rest = rest[n:]
	}
	chunks = append(chunks, 0, 0)
	oid, _ := asn1.Marshal(oidPKCS7Data)
	ci := append(append([]byte{0x30, 0x80}, oid...), 0xa0, 0x80)
	ci = append(append(ci, chunks...), 0, 0, 0, 0)
	out := append([]byte{0x30, 0x80, 0x02, 0x01, 0x03}, ci...)
	if mac != nil {
		if m, err := asn1.Marshal(*mac); err == nil {
			// the MAC over authSafe as given, with the password changeit
			if mac.Mac.Algorithm.Algorithm.Equal(oidSHA1) || mac.Mac.Algorithm.Algorithm.Equal(oidSHA256) {
				mac.Mac.Digest, _ = pkcs12MAC(mac.Mac.Algorithm.Algorithm, authSafe, bmpZeroTerminated("changeit"), mac.MacSalt, mac.Iterations)
				m, _ = asn1.Marshal(*mac)
			}
			out = append(out, m...)
		}
	}
	return append(out, 0, 0)
}

// TestDeepNestingDoesNotCrash: 10 MiB (the default size cap) of nested
// indefinite lengths. smallstep/pkcs7's BER conversion recurses once per
// level: unbounded, this overflowed the goroutine stack, a fatal error.
func TestDeepNestingDoesNotCrash(t *testing.T) {
	d := int(DefaultMaxSize / 4)
	in := append(bytes.Repeat([]byte{0x30, 0x80}, d), bytes.Repeat([]byte{0, 0}, d)...)
	for _, parse := range []func([]byte, []protocol.Secret) ([]Entry, error){Parse, ParseKeystore} {
		if entries, err := parse(in, nil); len(entries) > 0 {
			t.Errorf("%+v %v", entries, err)
		}
	}
	// the same as a PKCS#12 header
	in = append(append([]byte{0x30, 0x80, 0x02, 0x01, 0x03}, in...), 0, 0)
	if entries, _ := ParseKeystore(in, nil); len(entries) != 1 || !strings.Contains(entries[0].Err, "does not parse") {
		t.Errorf("%+v", entries)
	}
}

package files

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/youmark/pkcs8"
)

// TestEncryptedKeyLimits checks that the key-derivation settings of an
// encrypted key, which come from the file, are bounded before any work.
func TestEncryptedKeyLimits(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		kdf  pkcs8.KDFOpts
		want string
	}{
		{"pbkdf2 as openssl writes it", pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: 2048, HMACHash: crypto.SHA256}, ""},
		{"pbkdf2 with too many iterations", pkcs8.PBKDF2Opts{SaltSize: 16, IterationCount: maxPBKDF2Iterations + 1, HMACHash: crypto.SHA256}, "iterations"},
		{"scrypt", pkcs8.ScryptOpts{SaltSize: 16, CostParameter: 1 << 14, BlockSize: 8, ParallelizationParameter: 1}, "only PBES2 with PBKDF2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := pkcs8.MarshalPrivateKey(key, []byte("pw"), &pkcs8.Opts{Cipher: pkcs8.AES256CBC, KDFOpts: tc.kdf})
			if err != nil {
				t.Fatal(err)
			}
			_, err = decryptPKCS8(der, "pw")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

package auth

import (
	"errors"
	"strings"
	"testing"
)

func TestPassword(t *testing.T) {
	h, err := HashPassword("correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=65536,t=3,p=4$") {
		t.Fatalf("hash %q: not the PHC form", h)
	}
	h2, _ := HashPassword("correct horse battery")
	if h == h2 {
		t.Error("two hashes of one password are equal: the salt is not random")
	}
	for _, tc := range []struct {
		name, phc, pw string
		want          error // nil, ErrMismatch, or any other error (errOther)
	}{
		{"right", h, "correct horse battery", nil},
		{"wrong", h, "correct horse battery!", ErrMismatch},
		{"empty", h, "", ErrMismatch},
		{"too long", h, strings.Repeat("a", MaxPasswordLength+1), ErrMismatch},
		{"not argon2id", "$2y$10$abc", "x", errOther},
		{"huge memory", "$argon2id$v=19$m=99999999,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x", errOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyPassword(tc.phc, tc.pw)
			switch {
			case tc.want == nil && err != nil:
				t.Fatalf("err = %v, want nil", err)
			case tc.want == ErrMismatch && !errors.Is(err, ErrMismatch):
				t.Fatalf("err = %v, want ErrMismatch", err)
			case tc.want == errOther && (err == nil || errors.Is(err, ErrMismatch)):
				t.Fatalf("err = %v, want a hash format error", err)
			}
		})
	}
}

var errOther = errors.New("other")

func TestPasswordPolicy(t *testing.T) {
	for _, tc := range []struct {
		pw string
		ok bool
	}{
		{"short", false},
		{"            ", false},
		{"twelve chars", true},
		{strings.Repeat("é", 12), true},
		{strings.Repeat("a", MaxPasswordLength+1), false},
	} {
		if err := CheckPasswordPolicy(tc.pw); (err == nil) != tc.ok {
			t.Errorf("CheckPasswordPolicy(%q) = %v, want ok=%v", tc.pw, err, tc.ok)
		}
	}
	if _, err := HashPassword("short"); err == nil {
		t.Error("HashPassword accepted a short password")
	}
}

func TestBurnPasswordCheck(t *testing.T) {
	BurnPasswordCheck("anything") // must not panic on the dummy hash
}

func TestDummyHashIsVerified(t *testing.T) {
	// Unknown emails must cost a full argon2 check: the dummy hash parses.
	if err := VerifyPassword(dummyHash, "anything"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("dummy hash: %v, want ErrMismatch", err)
	}
}

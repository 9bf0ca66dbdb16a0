package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/store"
)

func TestUserCreate(t *testing.T) {
	dir := t.TempDir()
	acc := cli(t, exitOK, "account", "create", "--data", dir, "--name", "Acme")["account"].(string)
	writePassword := func(content string) string {
		p := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := writePassword("correct horse battery\n")
	base := func(email, role, file string) []string {
		return []string{"user", "create", "--data", dir, "--account", acc, "--email", email, "--role", role, "--password-file", file,
			"--name", "Ann Admin"}
	}

	out := cli(t, exitOK, base("Ann@Example.com", "administrator", good)...)
	if out["email"] != "ann@example.com" || out["user_id"] == "" {
		t.Fatalf("created %v", out)
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"bad role", base("bob@example.com", "king", good), "--role"},
		{"missing file", base("bob@example.com", "manager", filepath.Join(dir, "nope")), "--password-file"},
		{"short password", base("bob@example.com", "manager", writePassword("short\n")), "--password-file: want at least 12"},
		{"empty password", base("bob@example.com", "manager", writePassword("\n")), "--password-file: empty"},
		{"duplicate email", base("ANN@example.com", "manager", good), "--email: already in use"},
		{"bad email", base("not an email", "manager", good), "--email"},
		{"unknown account", []string{"user", "create", "--data", dir, "--account", "0000000000", "--email", "c@example.com",
			"--role", "manager", "--password-file", good}, "--account"},
		{"no password flag", append(base("d@example.com", "manager", good), "--password", "x"), "unknown flag"},
		{"missing flag", []string{"user", "create", "--data", dir, "--account", acc, "--email", "e@example.com", "--role", "manager"},
			"password-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if e := cli(t, exitUsage, tt.args...)["stderr"].(string); !strings.Contains(e, tt.want) {
				t.Fatalf("stderr %q, want %q", e, tt.want)
			}
		})
	}

	users := cli(t, exitOK, "user", "list", "--data", dir, "--account", acc)["users"].([]any)
	if len(users) != 1 {
		t.Fatalf("users %v", users)
	}
	u := users[0].(map[string]any)
	if u["email"] != "ann@example.com" || u["role"] != "administrator" || u["two_factor"] != false {
		t.Fatalf("user %v", u)
	}
	for k := range u {
		if strings.Contains(k, "password") || strings.Contains(k, "totp") {
			t.Errorf("user list shows %q", k)
		}
	}
	// The creations are audited as the OS user's, without the password.
	st, err := store.OpenSQLite(context.Background(), filepath.Join(dir, "cp.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	entries, _, err := st.Audit(context.Background(), acc, store.AuditFilter{})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, en := range entries {
		actions = append(actions, en.Action)
		if en.ActorKind != "cli" || en.Actor != osUser() || strings.Contains(en.Detail, "correct horse") {
			t.Errorf("entry %+v", en)
		}
	}
	if got := strings.Join(actions, " "); got != "user.create account.create" {
		t.Errorf("actions %q", got)
	}
	// The password is never stored in clear.
	b, err := os.ReadFile(filepath.Join(dir, "cp.db"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "correct horse battery") {
		t.Error("password in clear in the database")
	}
}

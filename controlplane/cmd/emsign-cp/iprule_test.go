package main

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/store"
)

// A4: an administrator shut out by an IP rule gets back in from the
// machine that holds the data.
func TestIPRuleCommands(t *testing.T) {
	dir := t.TempDir()
	acc := cli(t, exitOK, "account", "create", "--data", dir, "--name", "Acme")["account"].(string)

	// A rule made as the dashboard would (through ops, as the CLI actor).
	var ruleID int64
	err := withOps(context.Background(), &storeFlags{data: dir}, func(string) string { return "" },
		func(_ store.Store, o *ops.Ops) error {
			r, err := o.CreateIPRule(context.Background(), cliActor(acc), "", "10.0.0.1", "10.0.0.9", "office")
			ruleID = r.ID
			return err
		})
	if err != nil {
		t.Fatal(err)
	}
	id := func(n int64) string { return strconv.FormatInt(n, 10) }

	rules := cli(t, exitOK, "iprule", "list", "--data", dir, "--account", acc)["ip_rules"].([]any)
	if len(rules) != 1 || rules[0].(map[string]any)["start_ip"] != "10.0.0.1" || rules[0].(map[string]any)["enabled"] != true {
		t.Fatalf("list: %v", rules)
	}
	for _, tc := range []struct {
		verb, status string
		enabled      bool
	}{{"disable", "disabled", false}, {"enable", "enabled", true}} {
		out := cli(t, exitOK, "iprule", tc.verb, "--data", dir, "--account", acc, "--id", id(ruleID))
		if out["status"] != tc.status {
			t.Fatalf("%s: %v", tc.verb, out)
		}
		got := cli(t, exitOK, "iprule", "list", "--data", dir, "--account", acc)["ip_rules"].([]any)
		if got[0].(map[string]any)["enabled"] != tc.enabled {
			t.Fatalf("after %s: %v", tc.verb, got)
		}
	}
	if e := cli(t, exitUsage, "iprule", "delete", "--data", dir, "--account", acc, "--id", "999")["stderr"].(string); !strings.Contains(e, "--id 999: no such IP rule") {
		t.Fatalf("unknown id: %q", e)
	}
	cli(t, exitOK, "iprule", "delete", "--data", dir, "--account", acc, "--id", id(ruleID))
	if got := cli(t, exitOK, "iprule", "list", "--data", dir, "--account", acc)["ip_rules"].([]any); len(got) != 0 {
		t.Fatalf("after delete: %v", got)
	}
}

package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/store"
)

// ipRuleView is an IP restriction as the command line prints it.
type ipRuleView struct {
	ID          int64     `json:"id"`
	User        string    `json:"user"` // "" for all users and API keys
	StartIP     string    `json:"start_ip"`
	EndIP       string    `json:"end_ip"`
	Description string    `json:"description"`
	Enabled     bool      `json:"enabled"`
	CreatedAt   time.Time `json:"created_at"`
}

// newIPRuleCommand lists and lifts IP restrictions (A4) from the machine
// that holds the data: the way back in for an administrator whose own
// address a rule shut out (the dashboard refuses such a rule, but an
// address can change).
func newIPRuleCommand(stdout io.Writer, getenv func(string) string) *cobra.Command {
	c := &cobra.Command{Use: "iprule", Short: "List, disable, enable or delete IP restrictions (A4)"}

	var lf storeFlags
	var listAccount string
	list := &cobra.Command{
		Use:   "list --data DIR --account N",
		Short: `List the account's IP restrictions; prints {"ip_rules":[...]}`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), &lf, func(st store.Store) error {
				if err := accountExists(cmd.Context(), st, listAccount); err != nil {
					return err
				}
				rules, err := st.IPRules(cmd.Context(), listAccount)
				if err != nil {
					return err
				}
				out := make([]ipRuleView, 0, len(rules))
				for _, r := range rules {
					out = append(out, ipRuleView{ID: r.ID, User: r.UserID, StartIP: r.StartIP, EndIP: r.EndIP,
						Description: r.Description, Enabled: r.Enabled, CreatedAt: r.CreatedAt})
				}
				return printJSON(stdout, map[string]any{"ip_rules": out})
			})
		},
	}
	lf.add(list)
	list.Flags().StringVar(&listAccount, "account", "", "account number")
	required(list, "account")

	change := func(use, short, status string, fn func(cmd *cobra.Command, o *ops.Ops, a ops.Actor, id int64) error) *cobra.Command {
		var f storeFlags
		var account string
		var id int64
		cc := &cobra.Command{
			Use:   use + " --data DIR --account N --id ID",
			Short: short,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withOps(cmd.Context(), &f, getenv, func(st store.Store, o *ops.Ops) error {
					if err := accountExists(cmd.Context(), st, account); err != nil {
						return err
					}
					if err := fn(cmd, o, cliActor(account), id); err != nil {
						return flagError(notFoundFlag(err, id), nil)
					}
					return printJSON(stdout, map[string]any{"id": id, "status": status})
				})
			},
		}
		f.add(cc)
		cc.Flags().StringVar(&account, "account", "", "account number")
		cc.Flags().Int64Var(&id, "id", 0, "the rule's ID (see iprule list)")
		required(cc, "account", "id")
		return cc
	}
	disable := change("disable", "Disable an IP restriction", "disabled", func(cmd *cobra.Command, o *ops.Ops, a ops.Actor, id int64) error {
		return o.SetIPRuleEnabled(cmd.Context(), a, id, false)
	})
	enable := change("enable", "Enable an IP restriction", "enabled", func(cmd *cobra.Command, o *ops.Ops, a ops.Actor, id int64) error {
		return o.SetIPRuleEnabled(cmd.Context(), a, id, true)
	})
	del := change("delete", "Delete an IP restriction", "deleted", func(cmd *cobra.Command, o *ops.Ops, a ops.Actor, id int64) error {
		return o.DeleteIPRule(cmd.Context(), a, id)
	})
	c.AddCommand(list, disable, enable, del)
	return c
}

// notFoundFlag names the flag when the rule does not exist.
func notFoundFlag(err error, id int64) error {
	if errors.Is(err, store.ErrNotFound) {
		return usageError{fmt.Errorf("--id %d: no such IP rule in this account", id)}
	}
	return err
}

package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

func newAccountCommand(stdout io.Writer, getenv func(string) string) *cobra.Command {
	c := &cobra.Command{Use: "account", Short: "Create accounts, set their bot limit"}

	var cf storeFlags
	var name string
	create := &cobra.Command{
		Use:   "create --data DIR --name NAME",
		Short: `Create an account; prints {"account":"<10 digits>"}`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOps(cmd.Context(), &cf, getenv, func(st store.Store, o *ops.Ops) error {
				a, err := st.CreateAccount(cmd.Context(), name)
				if err != nil {
					return err
				}
				if err := o.Record(cmd.Context(), cliActor(a.ID), "account.create", a.ID, fmt.Sprintf("name %q", a.Name)); err != nil {
					return err
				}
				return printJSON(stdout, map[string]string{"account": a.ID})
			})
		},
	}
	cf.add(create)
	create.Flags().StringVar(&name, "name", "", "account name")
	required(create, "name")

	var lf storeFlags
	var account string
	var bots int
	limit := &cobra.Command{
		Use:   "set-limit --data DIR --account N --bots K",
		Short: "Set how many bots an account may have (B8; 1 by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if bots < 1 {
				return usageError{errors.New("--bots: want 1 or more")}
			}
			return withStore(cmd.Context(), &lf, func(st store.Store) error {
				if err := st.SetBotLimit(cmd.Context(), account, bots); err != nil {
					return err
				}
				return printJSON(stdout, map[string]any{"account": account, "bot_limit": bots})
			})
		},
	}
	lf.add(limit)
	limit.Flags().StringVar(&account, "account", "", "account number")
	limit.Flags().IntVar(&bots, "bots", 0, "the number of bots the account may have")
	required(limit, "account", "bots")

	c.AddCommand(create, limit)
	return c
}

func newAPIKeyCommand(stdout io.Writer, getenv func(string) string) *cobra.Command {
	c := &cobra.Command{Use: "apikey", Short: "Create REST API keys (A2)"}
	var f storeFlags
	var account, role string
	create := &cobra.Command{
		Use:   "create --data DIR --account N --role ROLE",
		Short: `Create an API key; prints {"api_key":"..."} (shown once, stored as a hash)`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOps(cmd.Context(), &f, getenv, func(st store.Store, o *ops.Ops) error {
				if err := accountExists(cmd.Context(), st, account); err != nil {
					return err
				}
				key, err := o.CreateAPIKey(cmd.Context(), cliActor(account), role)
				if err != nil {
					return flagError(err, map[string]string{"role": "role"})
				}
				return printJSON(stdout, map[string]string{"api_key": key, "account": account, "role": role})
			})
		},
	}
	f.add(create)
	create.Flags().StringVar(&account, "account", "", "account number")
	create.Flags().StringVar(&role, "role", "", "administrator, manager, finance_manager, standard_user, basic_user or discovery_user")
	required(create, "account", "role")
	c.AddCommand(create)
	return c
}

func newBotCommand(stdout io.Writer, getenv func(string) string) *cobra.Command {
	c := &cobra.Command{Use: "bot", Short: "Create, list, suspend, deactivate bots; regenerate their tokens"}

	// Each subcommand has its own flag values: cobra binds a variable per
	// flag set.
	type common struct {
		f       storeFlags
		account string
		bot     string
	}
	add := func(cmd *cobra.Command, o *common, withBot bool) {
		o.f.add(cmd)
		cmd.Flags().StringVar(&o.account, "account", "", "account number")
		required(cmd, "account")
		if withBot {
			cmd.Flags().StringVar(&o.bot, "bot", "", "bot ID")
			required(cmd, "bot")
		}
	}

	var co common
	var name, group string
	create := &cobra.Command{
		Use:   "create --data DIR --account N --name NAME [--group G]",
		Short: `Create a bot; prints {"bot_id":"...","token":"<UUID>"} (the token is shown once)`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOps(cmd.Context(), &co.f, getenv, func(_ store.Store, o *ops.Ops) error {
				id, token, err := o.CreateBot(cmd.Context(), cliActor(co.account), name, group)
				if err != nil {
					return flagError(err, map[string]string{"name": "name", "group": "group"})
				}
				return printJSON(stdout, map[string]string{"bot_id": id, "account": co.account, "token": token})
			})
		},
	}
	add(create, &co, false)
	create.Flags().StringVar(&name, "name", "", "bot name")
	create.Flags().StringVar(&group, "group", "", "bot group")
	required(create, "name")

	var lo common
	list := &cobra.Command{
		Use:   "list --data DIR --account N",
		Short: `List the account's bots; prints {"bots":[...]}`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), &lo.f, func(st store.Store) error {
				if _, err := st.Account(cmd.Context(), lo.account); err != nil {
					return err
				}
				bots, err := st.Bots(cmd.Context(), lo.account)
				if err != nil {
					return err
				}
				out := []admin.BotView{}
				for _, b := range bots {
					v, err := admin.ViewBot(cmd.Context(), st, b, time.Now())
					if err != nil {
						return err
					}
					out = append(out, v)
				}
				return printJSON(stdout, map[string]any{"bots": out})
			})
		},
	}
	add(list, &lo, false)

	status := func(use, status string) *cobra.Command {
		var o common
		cmd := &cobra.Command{
			Use:   use + " --data DIR --account N --bot ID",
			Short: fmt.Sprintf("Make a bot %s", status),
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				return withOps(cmd.Context(), &o.f, getenv, func(_ store.Store, op *ops.Ops) error {
					if err := op.SetBotStatus(cmd.Context(), cliActor(o.account), o.bot, status); err != nil {
						return err
					}
					return printJSON(stdout, map[string]string{"bot_id": o.bot, "status": status})
				})
			},
		}
		add(cmd, &o, true)
		return cmd
	}

	var to common
	token := &cobra.Command{
		Use:   "token --data DIR --account N --bot ID",
		Short: `Regenerate a bot's token; its certificate is revoked and it must activate again. Prints {"token":"..."}`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withOps(cmd.Context(), &to.f, getenv, func(_ store.Store, o *ops.Ops) error {
				t, err := o.RegenerateToken(cmd.Context(), cliActor(to.account), to.bot)
				if err != nil {
					return err
				}
				return printJSON(stdout, map[string]string{"bot_id": to.bot, "token": t})
			})
		},
	}
	add(token, &to, true)

	c.AddCommand(create, list, status("suspend", protocol.BotSuspended), status("deactivate", protocol.BotInactive), token)
	return c
}

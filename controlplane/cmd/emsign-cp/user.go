package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/ops"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/seal"
	"github.com/emsign/bot/controlplane/store"
)

// osUser names who runs the command, for the audit log.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}

// cliActor is whoever runs an admin command: they hold the data directory,
// so they are the account's administrator.
func cliActor(account string) ops.Actor {
	name := osUser()
	return ops.Actor{Account: account, Kind: ops.ActorCLI, ID: name, Name: name, Role: rbac.Administrator}
}

// openSealer loads the key that seals secrets, as serve does.
func openSealer(data string, getenv func(string) string) (*seal.Sealer, error) {
	key, err := seal.LoadKey(filepath.Join(data, secretKeyFile), getenv(seal.EnvKey))
	if err != nil {
		return nil, err
	}
	return seal.New(key)
}

// withOps runs fn with the store open and an Ops over it. The admin
// commands log nothing but errors: their answer is their JSON line.
func withOps(ctx context.Context, f *storeFlags, getenv func(string) string, fn func(store.Store, *ops.Ops) error) error {
	return withStore(ctx, f, func(st store.Store) error {
		sealer, err := openSealer(f.data, getenv)
		if err != nil {
			return err
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
		o, err := ops.New(ops.Config{Store: st, Sealer: sealer, Logger: log})
		if err != nil {
			return err
		}
		return fn(st, o)
	})
}

// flagError makes bad input a usage error naming the flag at fault
// (fields maps ops' field names to flag names).
func flagError(err error, fields map[string]string) error {
	var ie *ops.InvalidError
	if errors.As(err, &ie) {
		if flag, ok := fields[ie.Field]; ok {
			return usageError{fmt.Errorf("--%s: %s", flag, ie.Msg)}
		}
		return usageError{err}
	}
	return err
}

func accountExists(ctx context.Context, st store.Store, account string) error {
	_, err := st.Account(ctx, account)
	if errors.Is(err, store.ErrNotFound) {
		return usageError{fmt.Errorf("--account %s: no such account", account)}
	}
	return err
}

// maxPasswordFile bounds what --password-file reads.
const maxPasswordFile = 4096

// readPassword reads a password from a file ("-": stdin), without its
// trailing newline.
func readPassword(path string, stdin io.Reader) (string, error) {
	var r io.Reader
	if path == "-" {
		r = stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", usageError{fmt.Errorf("--password-file: %w", err)}
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(bufio.NewReader(r), maxPasswordFile+1))
	if err != nil {
		return "", usageError{fmt.Errorf("--password-file: %w", err)}
	}
	if len(b) > maxPasswordFile {
		return "", usageError{fmt.Errorf("--password-file: larger than %d bytes", maxPasswordFile)}
	}
	p := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if p == "" {
		return "", usageError{errors.New("--password-file: empty")}
	}
	return p, nil
}

func newUserCommand(stdout, _ io.Writer, getenv func(string) string) *cobra.Command {
	c := &cobra.Command{Use: "user", Short: "Create and list the dashboard's users"}

	var cf storeFlags
	var account, email, role, passwordFile, name string
	create := &cobra.Command{
		Use:   "create --data DIR --account N --email E --role ROLE --password-file F [--name NAME]",
		Short: `Create a dashboard user; prints {"user_id":"...","email":"..."}`,
		Long: `Create a dashboard user. The password is read from --password-file (its
trailing newline removed; "-" reads standard input), never from a flag, so
that it does not land in the shell's history or in ps. The user may log in
at once; the creation is audited as made by the operating-system user.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if _, err := rbac.ParseRole(role); err != nil {
				return usageError{fmt.Errorf("--role: %w", err)}
			}
			password, err := readPassword(passwordFile, cmd.InOrStdin())
			if err != nil {
				return err
			}
			return withOps(cmd.Context(), &cf, getenv, func(st store.Store, o *ops.Ops) error {
				if err := accountExists(cmd.Context(), st, account); err != nil {
					return err
				}
				u, err := o.CreateUser(cmd.Context(), cliActor(account), email, name, role, password)
				if err != nil {
					return flagError(err, map[string]string{"email": "email", "name": "name", "role": "role",
						"password": "password-file"})
				}
				return printJSON(stdout, map[string]string{"user_id": u.ID, "email": u.Email, "account": account, "role": u.Role})
			})
		},
	}
	cf.add(create)
	create.Flags().StringVar(&account, "account", "", "account number")
	create.Flags().StringVar(&email, "email", "", "the user's email address (their login)")
	create.Flags().StringVar(&role, "role", "", "administrator, manager, finance_manager, standard_user, basic_user or discovery_user")
	create.Flags().StringVar(&passwordFile, "password-file", "", `file holding the password ("-": standard input)`)
	create.Flags().StringVar(&name, "name", "", "the user's name")
	required(create, "account", "email", "role", "password-file")

	var lf storeFlags
	var listAccount string
	list := &cobra.Command{
		Use:   "list --data DIR --account N",
		Short: `List the account's users; prints {"users":[...]}`,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withStore(cmd.Context(), &lf, func(st store.Store) error {
				if err := accountExists(cmd.Context(), st, listAccount); err != nil {
					return err
				}
				users, err := st.Users(cmd.Context(), listAccount)
				if err != nil {
					return err
				}
				out := make([]admin.UserView, 0, len(users))
				for _, u := range users {
					out = append(out, admin.ViewUser(u))
				}
				return printJSON(stdout, map[string]any{"users": out})
			})
		},
	}
	lf.add(list)
	list.Flags().StringVar(&listAccount, "account", "", "account number")
	required(list, "account")

	c.AddCommand(create, list)
	return c
}

// Command emsign-cp is the emSign control plane: `serve` runs the HTTPS bot
// and user APIs and the dashboard; the admin commands (account, apikey,
// bot, user) work on the data directory directly, each print one JSON
// object, and their changes are audited as made by the OS user.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	_ "time/tzdata" // schedules name IANA zones; not every host has the database

	"github.com/spf13/cobra"

	"github.com/emsign/bot/controlplane/store"
)

// Exit codes, a contract for scripts.
const (
	exitOK       = 0
	exitInternal = 1
	exitUsage    = 2
)

// defaultDataDir holds the control plane's state unless --data says.
const defaultDataDir = "/var/lib/emsign-cp"

type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	root := &cobra.Command{
		Use:           "emsign-cp",
		Short:         "emSign control plane: bots report here, users ask here",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCommand(stdout, stderr, getenv), newAccountCommand(stdout, getenv),
		newAPIKeyCommand(stdout, getenv), newBotCommand(stdout, getenv), newImportCommand(stdout),
		newUserCommand(stdout, stderr, getenv), newIPRuleCommand(stdout, getenv))

	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "emsign-cp: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return exitUsage
	}
	return exitInternal
}

func isCobraUsage(err error) bool {
	for _, prefix := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least",
		"invalid argument", "required flag"} {
		if strings.HasPrefix(err.Error(), prefix) {
			return true
		}
	}
	return false
}

// storeFlags are --data and --db, on every command.
type storeFlags struct {
	data string
	db   string
}

func (f *storeFlags) add(c *cobra.Command) {
	c.Flags().StringVar(&f.data, "data", defaultDataDir, "data directory (CA, secret key, SQLite database)")
	c.Flags().StringVar(&f.db, "db", "", "database URL: sqlite://PATH (default DATA/cp.db)")
}

// open makes the data directory if needed and opens the store.
func (f *storeFlags) open(ctx context.Context) (store.Store, error) {
	if f.data == "" {
		return nil, usageError{errors.New("--data: empty")}
	}
	if err := os.MkdirAll(f.data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	path, err := f.sqlitePath()
	if err != nil {
		return nil, err
	}
	return store.OpenSQLite(ctx, path, store.Options{})
}

func (f *storeFlags) sqlitePath() (string, error) {
	switch {
	case f.db == "":
		return filepath.Join(f.data, "cp.db"), nil
	case strings.HasPrefix(f.db, "sqlite://"):
		p := strings.TrimPrefix(f.db, "sqlite://")
		if p == "" {
			return "", usageError{errors.New("--db sqlite://PATH: empty path")}
		}
		return p, nil
	case strings.HasPrefix(f.db, "postgres://"), strings.HasPrefix(f.db, "postgresql://"):
		return "", usageError{errors.New("--db: postgres is not supported yet; use sqlite://PATH")}
	default:
		return "", usageError{errors.New("--db: want sqlite://PATH")}
	}
}

// withStore runs fn with the store open.
func withStore(ctx context.Context, f *storeFlags, fn func(store.Store) error) error {
	st, err := f.open(ctx)
	if err != nil {
		return err
	}
	err = fn(st)
	if cerr := st.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close store: %w", cerr)
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

func required(c *cobra.Command, names ...string) {
	for _, n := range names {
		_ = c.MarkFlagRequired(n)
	}
}

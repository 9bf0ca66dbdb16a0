package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/controlplane/imports"
	"github.com/emsign/bot/controlplane/pki"
	"github.com/emsign/bot/controlplane/store"
	"github.com/emsign/bot/protocol"
)

// newImportCommand is `emsign-cp import --data DIR --account N FILE`: the
// air-gap side of emsign-bot scan --export.
func newImportCommand(stdout io.Writer) *cobra.Command {
	var f storeFlags
	var account string
	c := &cobra.Command{
		Use:   "import --data DIR --account N FILE",
		Short: `Import a bundle made by emsign-bot scan --export; prints {"scan_id":...,"findings":N,"imported":true|false}`,
		Long: `Import a bundle made by emsign-bot scan --export (carried across an air gap).

The bundle must be signed by a bot of the account whose certificate this
control plane issued and has not revoked. Importing the same bundle again
changes nothing and prints "imported": false.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if account == "" {
				return usageError{errors.New("--account: required")}
			}
			if f.data == "" {
				return usageError{errors.New("--data: empty")}
			}
			// The CA must already exist: an import never makes one.
			if _, err := os.Stat(filepath.Join(f.data, pki.CertFile)); errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("no CA in %s: run emsign-cp serve first", f.data)
			}
			ca, err := pki.LoadOrCreate(f.data, time.Now())
			if err != nil {
				return err
			}
			data, err := readBundle(args[0])
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), &f, func(st store.Store) error {
				if _, err := st.Account(cmd.Context(), account); err != nil {
					return err
				}
				res, err := imports.Import(cmd.Context(), st, ca.Pool(), account, data, time.Now())
				if err != nil {
					return err
				}
				return printJSON(stdout, res)
			})
		},
	}
	f.add(c)
	c.Flags().StringVar(&account, "account", "", "account number")
	required(c, "account")
	return c
}

func readBundle(path string) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, protocol.MaxBundleSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > protocol.MaxBundleSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, protocol.MaxBundleSize)
	}
	return data, nil
}

package main

import (
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/emsign/bot/protocol"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the bot's version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintf(stdout, "emsign-bot %s (protocol %d, %s/%s, %s)\n", version, protocol.CapabilityVersion, runtime.GOOS, runtime.GOARCH, runtime.Version())
			return err
		},
	}
}

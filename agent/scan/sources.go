package scan

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/emsign/bot/connectors"
	awsconn "github.com/emsign/bot/connectors/aws"
	"github.com/emsign/bot/connectors/certstore"
	"github.com/emsign/bot/connectors/cloudflare"
	"github.com/emsign/bot/connectors/f5"
	"github.com/emsign/bot/connectors/files"
	ldapconn "github.com/emsign/bot/connectors/ldap"
	"github.com/emsign/bot/connectors/pkcs11"
	sshconn "github.com/emsign/bot/connectors/ssh"
	tlsconn "github.com/emsign/bot/connectors/tls"
	"github.com/emsign/bot/protocol"
)

// SourceOptions are the settings connectors share in one scan.
type SourceOptions struct {
	Threads int
	// Timeout, when set, bounds each network step (connect, handshake).
	Timeout time.Duration
	// Passwords are tried on every keystore after the target's own.
	Passwords   []protocol.Secret
	PostQuantum bool
	Progress    *connectors.Progress
	Logger      *slog.Logger
	Now         func() time.Time
}

// NewRegistry builds the connectors the bot ships, one explicit table.
func NewRegistry(o SourceOptions) (Registry, error) {
	tlsSource, err := tlsconn.New(tlsconn.Config{
		Threads:          o.Threads,
		ConnectTimeout:   o.Timeout,
		HandshakeTimeout: o.Timeout,
		PostQuantum:      o.PostQuantum,
		Progress:         o.Progress,
		Logger:           o.Logger.With("connector", "tls"),
		Now:              o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("tls connector: %w", err)
	}
	fileSource, err := files.New(files.Config{
		Passwords: o.Passwords,
		Logger:    o.Logger.With("connector", "files"),
		Now:       o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("files connector: %w", err)
	}
	storeSource, err := certstore.New(certstore.Config{
		Logger: o.Logger.With("connector", "certstore"),
		Now:    o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("certstore connector: %w", err)
	}
	ldapSource, err := ldapconn.New(ldapconn.Config{
		Progress: o.Progress,
		Logger:   o.Logger.With("connector", "ldap"),
		Now:      o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("ldap connector: %w", err)
	}
	// Without cgo (the Windows cross-build) this is a stub that says how to
	// get PKCS#11 support.
	hsmSource, err := pkcs11.New(pkcs11.Config{
		Logger: o.Logger.With("connector", "pkcs11"),
		Now:    o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("pkcs11 connector: %w", err)
	}
	sshSource, err := sshconn.New(sshconn.Config{
		Passwords: o.Passwords,
		Logger:    o.Logger.With("connector", "ssh"),
		Now:       o.Now,
	})
	if err != nil {
		return nil, fmt.Errorf("ssh connector: %w", err)
	}
	f5Source, err := f5.New(f5.Config{Logger: o.Logger.With("connector", "f5"), Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("f5 connector: %w", err)
	}
	awsSource, err := awsconn.New(awsconn.Config{Logger: o.Logger.With("connector", "aws"), Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("aws connector: %w", err)
	}
	cfSource, err := cloudflare.New(cloudflare.Config{Logger: o.Logger.With("connector", "cloudflare"), Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("cloudflare connector: %w", err)
	}
	return Registry{
		protocol.SchemeSSH:        sshSource,
		protocol.SchemeF5:         f5Source,
		protocol.SchemeAWS:        awsSource,
		protocol.SchemeCloudflare: cfSource,
		protocol.SchemeLDAP:       ldapSource,
		protocol.SchemeLDAPS:      ldapSource,
		protocol.SchemePKCS11:     hsmSource,
		protocol.SchemeTLS:        tlsSource,
		protocol.SchemeFile:       fileSource,
		protocol.SchemeJKS:        fileSource,
		protocol.SchemeCertStore:  storeSource,
	}, nil
}

package main

import (
	"log/slog"

	"github.com/emsign/bot/agent/deploy/keystore"
	"github.com/emsign/bot/agent/rotate"
	"github.com/emsign/bot/connectors/aws"
	"github.com/emsign/bot/connectors/cloudflare"
	"github.com/emsign/bot/connectors/f5"
	"github.com/emsign/bot/connectors/ldap"
	"github.com/emsign/bot/connectors/pkcs11"
	"github.com/emsign/bot/connectors/ssh"
	"github.com/emsign/bot/protocol"
)

// deployTargets maps every deploy kind of the protocol (P8) to the package
// that deploys it; a kind missing here fails its rotation naming the kind.
func deployTargets() map[string]rotate.TargetFactory {
	t := rotate.DefaultTargets()
	t[protocol.DeployJKS] = keystore.NewJKSDeployer
	t[protocol.DeployPKCS12] = keystore.NewPKCS12Deployer
	t[protocol.DeployPKCS11] = pkcs11.NewDeployer
	t[protocol.DeployLDAP] = ldap.NewDeployer
	t[protocol.DeploySSH] = ssh.NewDeployer
	t[protocol.DeployACM] = aws.NewDeployer
	t[protocol.DeployF5] = f5.NewDeployer
	t[protocol.DeployCloudflare] = cloudflare.NewDeployer
	return t
}

// tokenKeys makes rotation keys inside PKCS#11 tokens (P3); on a build
// without PKCS#11 support its methods say so.
func tokenKeys(log *slog.Logger) rotate.TokenKeyMaker { return pkcs11.NewKeyMaker(log) }

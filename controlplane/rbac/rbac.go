// Package rbac says what each of the six roles (A1) may do. Every page of
// the dashboard, every user API route and every change made through
// controlplane/ops asks Can; nothing else decides access.
//
// The roles follow the product's documentation (seed:1102-1167), read for
// what this control plane does: Administrators do everything; Managers
// everything but the account's own settings; Finance Managers see the
// inventory, users and the audit log; Standard Users see the inventory and
// the bots; Basic Users see the inventory; Discovery Users run discovery
// (bots, targets, scans) and see what it found.
package rbac

import (
	"fmt"
	"slices"
)

// Role is one of the six roles of A1.
type Role string

// The six roles (A1).
const (
	Administrator  Role = "administrator"
	Manager        Role = "manager"
	FinanceManager Role = "finance_manager"
	StandardUser   Role = "standard_user"
	BasicUser      Role = "basic_user"
	DiscoveryUser  Role = "discovery_user"
)

// Roles lists the roles, most powerful first.
var roles = []Role{Administrator, Manager, FinanceManager, StandardUser, BasicUser, DiscoveryUser}

// Roles returns the six roles, most powerful first.
func Roles() []Role { return slices.Clone(roles) }

// Label is the role's name as people read it.
func (r Role) Label() string {
	switch r {
	case Administrator:
		return "Administrator"
	case Manager:
		return "Manager"
	case FinanceManager:
		return "Finance Manager"
	case StandardUser:
		return "Standard User"
	case BasicUser:
		return "Basic User"
	case DiscoveryUser:
		return "Discovery User"
	}
	return string(r)
}

// ParseRole accepts a role's name (administrator, finance_manager...).
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if slices.Contains(roles, r) {
		return r, nil
	}
	return "", fmt.Errorf("role %q: want one of administrator, manager, finance_manager, standard_user, basic_user, discovery_user", s)
}

// Permission is one thing a role may do.
type Permission string

// Permissions. A page or route needs exactly one.
const (
	// ViewDashboard: the dashboard's numbers and charts (S1-S6).
	ViewDashboard Permission = "dashboard.view"
	// ViewCertificates: the inventory, a certificate's view and its
	// download, exports (D1-D5).
	ViewCertificates Permission = "certificates.view"
	// ViewBots: the bots, their scans and (redacted) targets (D2, B8 view).
	ViewBots Permission = "bots.view"
	// ManageBots: create, edit, configure targets and schedules, import
	// targets, run scans, suspend, deactivate, regenerate tokens (B2-B8).
	ManageBots Permission = "bots.manage"
	// ImportBundles: upload an air-gapped bot's signed bundle.
	ImportBundles Permission = "imports.create"
	// ViewUsers: the account's users and API keys.
	ViewUsers Permission = "users.view"
	// ManageUsers: create, disable users, change their roles, reset their
	// two-factor enrolment; create and revoke API keys (A2). A role may
	// only grant roles whose permissions it has itself (CanGrant).
	ManageUsers Permission = "users.manage"
	// ViewAudit: the audit log (A2).
	ViewAudit Permission = "audit.view"
	// ManageAccount: the account's settings, such as enforcing two-factor
	// login for everyone (A4).
	ManageAccount Permission = "account.manage"
	// ViewTemplates: CSR templates, key profiles and provisioning
	// templates (P1-P3), secrets never shown.
	ViewTemplates Permission = "templates.view"
	// ManageTemplates: create, edit, clone, disable, delete them and set
	// an HSM PIN (P1-P3). Discovery Users have it: the product gives them
	// key management (seed:1102-1167).
	ManageTemplates Permission = "templates.manage"
	// ViewOrders: orders and their history, mass replacements, schedules
	// (D7, S5, P6, P9): everyone who sees what the inventory's
	// certificates became, except Basic Users, whose view is the
	// inventory alone.
	ViewOrders Permission = "orders.view"
	// ManageOrders: rotate, rekey, renew, revoke, suspend and resume a
	// certificate; run mass replacements and schedules (D7, P6, P9). It
	// changes live servers and spends CA credit: Administrators and
	// Managers only.
	ManageOrders Permission = "orders.manage"
)

var allPermissions = []Permission{ViewDashboard, ViewCertificates, ViewBots, ManageBots, ImportBundles,
	ViewUsers, ManageUsers, ViewAudit, ManageAccount, ViewTemplates, ManageTemplates, ViewOrders, ManageOrders}

var grants = map[Role][]Permission{
	Administrator: allPermissions,
	Manager: {ViewDashboard, ViewCertificates, ViewBots, ManageBots, ImportBundles, ViewUsers, ManageUsers, ViewAudit,
		ViewTemplates, ManageTemplates, ViewOrders, ManageOrders},
	FinanceManager: {ViewDashboard, ViewCertificates, ViewUsers, ManageUsers, ViewAudit, ViewOrders},
	StandardUser:   {ViewDashboard, ViewCertificates, ViewBots, ViewTemplates, ViewOrders},
	BasicUser:      {ViewDashboard, ViewCertificates},
	DiscoveryUser: {ViewDashboard, ViewCertificates, ViewBots, ManageBots, ImportBundles, ViewTemplates, ManageTemplates,
		ViewOrders},
}

// Can reports whether the role has the permission. An unknown role has
// none.
func Can(r Role, p Permission) bool {
	return slices.Contains(grants[r], p)
}

// Permissions lists what the role may do.
func Permissions(r Role) []Permission { return slices.Clone(grants[r]) }

// CanGrant reports whether a user of role granter may give role r to a
// user or an API key: only when r can do nothing granter cannot, so that
// nobody raises anyone (themselves included) above their own rights.
func CanGrant(granter, r Role) bool {
	if !Can(granter, ManageUsers) {
		return false
	}
	if _, ok := grants[r]; !ok {
		return false
	}
	for _, p := range grants[r] {
		if !Can(granter, p) {
			return false
		}
	}
	return true
}

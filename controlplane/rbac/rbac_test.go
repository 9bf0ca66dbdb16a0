package rbac

import "testing"

// A1: the matrix, as the dashboard and the API enforce it.
func TestCan(t *testing.T) {
	for _, tc := range []struct {
		role Role
		perm Permission
		want bool
	}{
		{Administrator, ManageAccount, true},
		{Manager, ManageAccount, false},
		{Manager, ManageBots, true},
		{FinanceManager, ViewAudit, true},
		{FinanceManager, ViewBots, false},
		{StandardUser, ViewBots, true},
		{StandardUser, ManageBots, false},
		{BasicUser, ViewCertificates, true},
		{BasicUser, ViewBots, false},
		{BasicUser, ViewAudit, false},
		{DiscoveryUser, ManageBots, true},
		{DiscoveryUser, ManageUsers, false},
		{Administrator, ManageTemplates, true},
		{Manager, ManageTemplates, true},
		{DiscoveryUser, ManageTemplates, true},
		{StandardUser, ViewTemplates, true},
		{StandardUser, ManageTemplates, false},
		{FinanceManager, ViewTemplates, false},
		{BasicUser, ViewTemplates, false},
		// Orders (D7, S5): seen by all but Basic Users, changed by
		// Administrators and Managers.
		{Administrator, ManageOrders, true},
		{Manager, ManageOrders, true},
		{Manager, ViewOrders, true},
		{FinanceManager, ViewOrders, true},
		{FinanceManager, ManageOrders, false},
		{StandardUser, ViewOrders, true},
		{StandardUser, ManageOrders, false},
		{BasicUser, ViewOrders, false},
		{DiscoveryUser, ViewOrders, true},
		{DiscoveryUser, ManageOrders, false},
		{Role("root"), ViewDashboard, false},
	} {
		if got := Can(tc.role, tc.perm); got != tc.want {
			t.Errorf("Can(%s, %s) = %v, want %v", tc.role, tc.perm, got, tc.want)
		}
	}
}

func TestCanGrant(t *testing.T) {
	for _, tc := range []struct {
		granter, role Role
		want          bool
	}{
		{Administrator, Administrator, true},
		{Manager, Administrator, false}, // no raising above oneself
		{Manager, Manager, true},
		{Manager, DiscoveryUser, true},
		{FinanceManager, BasicUser, true},
		{FinanceManager, StandardUser, false}, // standard users see bots
		{Manager, StandardUser, true},
		{FinanceManager, DiscoveryUser, false}, // discovery users manage bots; finance managers do not
		{FinanceManager, Manager, false},
		{DiscoveryUser, BasicUser, false}, // cannot manage users at all
		{Administrator, Role("root"), false},
	} {
		if got := CanGrant(tc.granter, tc.role); got != tc.want {
			t.Errorf("CanGrant(%s, %s) = %v, want %v", tc.granter, tc.role, got, tc.want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range Roles() {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	if _, err := ParseRole("Administrator"); err == nil {
		t.Error("ParseRole accepted a label instead of a name")
	}
}

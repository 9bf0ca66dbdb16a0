package ops

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"strings"

	"github.com/emsign/bot/controlplane/admin"
	"github.com/emsign/bot/controlplane/auth"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// maxEmailLen is RFC 5321's limit of a forward path.
const maxEmailLen = 254

// checkEmail accepts a bare address (no display name), lowercased.
func checkEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	if e == "" {
		return "", invalid("email", "required")
	}
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Address != e || addr.Name != "" || len(e) > maxEmailLen {
		return "", invalid("email", "not an email address such as name@example.com")
	}
	return e, nil
}

// hashPassword applies the password policy: its errors are InvalidError
// naming field.
func hashPassword(field, p string) (string, error) {
	if err := auth.CheckPasswordPolicy(p); err != nil {
		return "", invalid(field, "%s", strings.TrimPrefix(err.Error(), "password: "))
	}
	h, err := auth.HashPassword(p)
	if err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return h, nil
}

func parseRole(r string) (rbac.Role, error) {
	role, err := rbac.ParseRole(r)
	if err != nil {
		return "", invalid("role", "want one of administrator, manager, finance_manager, standard_user, basic_user, discovery_user")
	}
	return role, nil
}

// grant refuses to give a role with rights the actor lacks (rbac.CanGrant).
func (o *Ops) grant(ctx context.Context, a Actor, action, object string, r rbac.Role) error {
	if rbac.CanGrant(a.Role, r) {
		return nil
	}
	return o.deny(ctx, a, action, object, fmt.Sprintf("your role (%s) cannot grant the role %s", a.Role, r))
}

// CreateUser adds a user to the actor's account.
func (o *Ops) CreateUser(ctx context.Context, a Actor, email, name, role, password string) (store.User, error) {
	if err := o.allow(ctx, a, rbac.ManageUsers, "user.create", ""); err != nil {
		return store.User{}, err
	}
	r, err := parseRole(role)
	if err != nil {
		return store.User{}, err
	}
	if err := o.grant(ctx, a, "user.create", "", r); err != nil {
		return store.User{}, err
	}
	if email, err = checkEmail(email); err != nil {
		return store.User{}, err
	}
	name = strings.TrimSpace(name)
	if len(name) > maxNameLen {
		return store.User{}, invalid("name", "at most %d characters", maxNameLen)
	}
	hash, err := hashPassword("password", password)
	if err != nil {
		return store.User{}, err
	}
	u := store.User{ID: admin.NewID(), Account: a.Account, Email: email, Name: name, Role: string(r), Password: hash}
	if err := o.st.CreateUser(ctx, u); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return store.User{}, invalid("email", "already in use")
		}
		return store.User{}, err
	}
	o.audit(ctx, a, "user.create", u.ID, fmt.Sprintf("%s, role %s", email, r))
	u, err = o.st.User(ctx, a.Account, u.ID)
	if err != nil {
		return store.User{}, err
	}
	return u, nil
}

// other finds a user the actor changes: one whose role the actor could
// grant (a Manager does not touch an Administrator).
func (o *Ops) other(ctx context.Context, a Actor, action, userID string) (store.User, error) {
	if err := o.allow(ctx, a, rbac.ManageUsers, action, userID); err != nil {
		return store.User{}, err
	}
	u, err := o.st.User(ctx, a.Account, userID)
	if err != nil {
		return store.User{}, err
	}
	if !rbac.CanGrant(a.Role, rbac.Role(u.Role)) {
		return store.User{}, o.deny(ctx, a, action, userID,
			fmt.Sprintf("your role (%s) cannot change a user with the role %s", a.Role, u.Role))
	}
	return u, nil
}

func self(a Actor, userID string) bool { return a.Kind == ActorUser && a.ID == userID }

// lastAdministrator reports whether u is the account's only enabled
// Administrator: nobody could then manage the account's settings.
func (o *Ops) lastAdministrator(ctx context.Context, u store.User) (bool, error) {
	if u.Role != string(rbac.Administrator) || u.Disabled {
		return false, nil
	}
	users, err := o.st.Users(ctx, u.Account)
	if err != nil {
		return false, err
	}
	for _, v := range users {
		if v.ID != u.ID && v.Role == string(rbac.Administrator) && !v.Disabled {
			return false, nil
		}
	}
	return true, nil
}

// SetUserRole changes a user's role; their sessions end.
func (o *Ops) SetUserRole(ctx context.Context, a Actor, userID, role string) error {
	u, err := o.other(ctx, a, "user.role", userID)
	if err != nil {
		return err
	}
	r, err := parseRole(role)
	if err != nil {
		return err
	}
	if err := o.grant(ctx, a, "user.role", userID, r); err != nil {
		return err
	}
	if string(r) == u.Role {
		return nil
	}
	// Any change of one's own role lowers it (CanGrant forbids raising).
	if self(a, userID) {
		return invalid("role", "you cannot change your own role")
	}
	if last, err := o.lastAdministrator(ctx, u); err != nil {
		return err
	} else if last {
		return invalid("role", "%s is the account's last administrator: make another user administrator first", u.Email)
	}
	rs := string(r)
	if _, err := o.st.UpdateUser(ctx, a.Account, userID, store.UserPatch{Role: &rs}); err != nil {
		return err
	}
	if err := o.st.DeleteUserSessions(ctx, userID); err != nil {
		return err
	}
	o.audit(ctx, a, "user.role", userID, fmt.Sprintf("%s: role %s → %s", u.Email, u.Role, r))
	return nil
}

// SetUserDisabled disables (their sessions end) or enables a user.
func (o *Ops) SetUserDisabled(ctx context.Context, a Actor, userID string, disabled bool) error {
	action := "user.enable"
	if disabled {
		action = "user.disable"
	}
	u, err := o.other(ctx, a, action, userID)
	if err != nil {
		return err
	}
	if disabled {
		if self(a, userID) {
			return invalid("user", "you cannot disable yourself")
		}
		if last, err := o.lastAdministrator(ctx, u); err != nil {
			return err
		} else if last {
			return invalid("user", "%s is the account's last administrator: make another user administrator first", u.Email)
		}
	}
	if _, err := o.st.UpdateUser(ctx, a.Account, userID, store.UserPatch{Disabled: &disabled}); err != nil {
		return err
	}
	if err := o.st.DeleteUserSessions(ctx, userID); err != nil {
		return err
	}
	o.audit(ctx, a, action, userID, u.Email)
	return nil
}

// ResetUserTOTP removes a user's second factor (a lost phone); they enrol
// again at their next login if the account requires it.
func (o *Ops) ResetUserTOTP(ctx context.Context, a Actor, userID string) error {
	u, err := o.other(ctx, a, "user.totp_reset", userID)
	if err != nil {
		return err
	}
	var none []byte
	if _, err := o.st.UpdateUser(ctx, a.Account, userID, store.UserPatch{TOTPSealed: &none}); err != nil {
		return err
	}
	if err := o.st.DeleteUserSessions(ctx, userID); err != nil {
		return err
	}
	o.audit(ctx, a, "user.totp_reset", userID, u.Email)
	return nil
}

// ownUser is the actor as a user: only people change their own password
// or second factor.
func (o *Ops) ownUser(ctx context.Context, a Actor) (store.User, error) {
	if err := checkActor(a); err != nil {
		return store.User{}, err
	}
	if a.Kind != ActorUser || a.ID == "" {
		return store.User{}, fmt.Errorf("%w: only a logged-in user has a password or a second factor", ErrForbidden)
	}
	return o.st.User(ctx, a.Account, a.ID)
}

// ChangePassword changes the actor's own password; every session of
// theirs ends (the caller starts a new one).
func (o *Ops) ChangePassword(ctx context.Context, a Actor, oldPassword, newPassword string) error {
	u, err := o.ownUser(ctx, a)
	if err != nil {
		return err
	}
	if err := auth.VerifyPassword(u.Password, oldPassword); err != nil {
		if errors.Is(err, auth.ErrMismatch) {
			o.audit(ctx, a, ActionDenied, u.ID, "user.password: wrong current password")
			return invalid("current", "wrong password")
		}
		return err
	}
	if newPassword == oldPassword {
		return invalid("new", "same as the current password")
	}
	hash, err := hashPassword("new", newPassword)
	if err != nil {
		return err
	}
	if _, err := o.st.UpdateUser(ctx, a.Account, u.ID, store.UserPatch{Password: &hash}); err != nil {
		return err
	}
	if err := o.st.DeleteUserSessions(ctx, u.ID); err != nil {
		return err
	}
	o.audit(ctx, a, "user.password", u.ID, u.Email)
	return nil
}

// totpAAD binds a sealed TOTP secret to its user.
func totpAAD(userID string) []byte { return []byte("emsign-cp/totp/" + userID) }

// EnrolTOTP stores the actor's own TOTP secret (the caller has checked a
// code made with it), sealed.
func (o *Ops) EnrolTOTP(ctx context.Context, a Actor, secret string) error {
	u, err := o.ownUser(ctx, a)
	if err != nil {
		return err
	}
	if secret == "" || len(secret) > 256 {
		return invalid("secret", "want 1 to 256 characters")
	}
	sealed, err := o.sealer.Seal([]byte(secret), totpAAD(u.ID))
	if err != nil {
		return err
	}
	if _, err := o.st.UpdateUser(ctx, a.Account, u.ID, store.UserPatch{TOTPSealed: &sealed}); err != nil {
		return err
	}
	o.audit(ctx, a, "user.totp_enrol", u.ID, u.Email)
	return nil
}

// TOTPSecret unseals a user's TOTP secret, to check a code.
func (o *Ops) TOTPSecret(_ context.Context, u store.User) (string, error) {
	if len(u.TOTPSealed) == 0 {
		return "", fmt.Errorf("user %s: no second factor", u.ID)
	}
	p, err := o.sealer.Open(u.TOTPSealed, totpAAD(u.ID))
	if err != nil {
		return "", fmt.Errorf("user %s totp: %w", u.ID, err)
	}
	return string(p), nil
}

// CreateAPIKey makes an API key of the account with a role the actor may
// grant; the key is returned once.
func (o *Ops) CreateAPIKey(ctx context.Context, a Actor, role string) (string, error) {
	if err := o.allow(ctx, a, rbac.ManageUsers, "apikey.create", ""); err != nil {
		return "", err
	}
	r, err := parseRole(role)
	if err != nil {
		return "", err
	}
	if err := o.grant(ctx, a, "apikey.create", "", r); err != nil {
		return "", err
	}
	key, err := admin.CreateAPIKey(ctx, o.st, a.Account, string(r))
	if err != nil {
		return "", err
	}
	o.audit(ctx, a, "apikey.create", admin.APIKeyID(key), "role "+string(r))
	return key, nil
}

// RevokeAPIKey deletes one of the account's keys; a key of a role the
// actor could not grant stays.
func (o *Ops) RevokeAPIKey(ctx context.Context, a Actor, id string) error {
	if err := o.allow(ctx, a, rbac.ManageUsers, "apikey.revoke", id); err != nil {
		return err
	}
	k, err := o.st.APIKey(ctx, id)
	if err != nil {
		return err
	}
	if k.Account != a.Account {
		return fmt.Errorf("api key %s: %w", id, store.ErrNotFound)
	}
	if !rbac.CanGrant(a.Role, rbac.Role(k.Role)) {
		return o.deny(ctx, a, "apikey.revoke", id, fmt.Sprintf("your role (%s) cannot revoke a key with the role %s", a.Role, k.Role))
	}
	if err := o.st.RevokeAPIKey(ctx, a.Account, id); err != nil {
		return err
	}
	o.audit(ctx, a, "apikey.revoke", id, "role "+k.Role)
	return nil
}

// SetRequireTOTP makes two-factor login compulsory for the account's
// users, or optional (A4).
func (o *Ops) SetRequireTOTP(ctx context.Context, a Actor, require bool) error {
	if err := o.allow(ctx, a, rbac.ManageAccount, "account.require_totp", a.Account); err != nil {
		return err
	}
	if err := o.st.SetRequireTOTP(ctx, a.Account, require); err != nil {
		return err
	}
	detail := "two-factor login optional"
	if require {
		detail = "two-factor login required"
	}
	o.audit(ctx, a, "account.require_totp", a.Account, detail)
	return nil
}

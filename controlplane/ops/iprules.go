package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/emsign/bot/controlplane/iprules"
	"github.com/emsign/bot/controlplane/rbac"
	"github.com/emsign/bot/controlplane/store"
)

// IP restrictions (A4; permission ManageAccount):
//   CreateIPRule(ctx, a, userID, start, end, description string) (store.IPRule, error) // userID "" for all users
//   SetIPRuleEnabled(ctx, a, id int64, enabled bool) error
//   DeleteIPRule(ctx, a, id int64) error
//
// A change after which the actor's own address (a.Remote) would be
// refused is itself refused (InvalidError): an administrator cannot shut
// themselves out by a typo. The command line (no address) may do anything,
// which is how a locked-out account is repaired.

// Limits of IP rules.
const (
	// MaxIPRules bounds an account's rules: every dashboard page and API
	// call checks them all.
	MaxIPRules = 200
	// MaxIPRuleDescription bounds a rule's description (characters).
	MaxIPRuleDescription = 200
)

// CreateIPRule adds an enabled rule allowing start to end (both included)
// for one user of the account, or for all users ("").
func (o *Ops) CreateIPRule(ctx context.Context, a Actor, userID, start, end, description string) (store.IPRule, error) {
	if err := o.allow(ctx, a, rbac.ManageAccount, "ip_rule.create", ""); err != nil {
		return store.IPRule{}, err
	}
	rg, err := iprules.ParseRange(start, end)
	var rerr *iprules.Error
	if errors.As(err, &rerr) {
		return store.IPRule{}, invalid(rerr.Field, "%s", rerr.Msg)
	}
	if err != nil {
		return store.IPRule{}, err
	}
	description = strings.TrimSpace(description)
	if len([]rune(description)) > MaxIPRuleDescription {
		return store.IPRule{}, invalid("description", "at most %d characters", MaxIPRuleDescription)
	}
	if strings.ContainsFunc(description, unicode.IsControl) {
		return store.IPRule{}, invalid("description", "one line of text")
	}
	who, err := o.ruleUser(ctx, a.Account, userID)
	if err != nil {
		return store.IPRule{}, err
	}
	rules, err := o.st.IPRules(ctx, a.Account)
	if err != nil {
		return store.IPRule{}, err
	}
	if len(rules) >= MaxIPRules {
		return store.IPRule{}, invalid("rule", "the account already has %d rules, the most it may have: delete some first", len(rules))
	}
	r := store.IPRule{Account: a.Account, UserID: userID, StartIP: rg.Start.String(), EndIP: rg.End.String(),
		Description: description, Enabled: true, CreatedAt: o.now().UTC(), CreatedBy: a.Name}
	if err := lockout(a, append(rules, r), "this rule would lock you out: your address %s is not in it"); err != nil {
		return store.IPRule{}, err
	}
	r, err = o.st.CreateIPRule(ctx, r)
	if err != nil {
		return store.IPRule{}, err
	}
	o.audit(ctx, a, "ip_rule.create", ruleObject(r.ID), ruleDetail(rg.String(), who, description))
	return r, nil
}

// SetIPRuleEnabled enables or disables one of the account's rules.
func (o *Ops) SetIPRuleEnabled(ctx context.Context, a Actor, id int64, enabled bool) error {
	action := "ip_rule.disable"
	if enabled {
		action = "ip_rule.enable"
	}
	return o.changeIPRule(ctx, a, action, id,
		func(rules []store.IPRule, i int) []store.IPRule {
			rules[i].Enabled = enabled
			return rules
		},
		func() error { return o.st.SetIPRuleEnabled(ctx, a.Account, id, enabled) })
}

// DeleteIPRule deletes one of the account's rules.
func (o *Ops) DeleteIPRule(ctx context.Context, a Actor, id int64) error {
	return o.changeIPRule(ctx, a, "ip_rule.delete", id,
		func(rules []store.IPRule, i int) []store.IPRule { return slices.Delete(rules, i, i+1) },
		func() error { return o.st.DeleteIPRule(ctx, a.Account, id) })
}

// changeIPRule checks the permission, finds rule id, checks that the
// rules as after (given them and the rule's index) leaves them do not
// lock the actor out, then makes the change (do) and audits it.
func (o *Ops) changeIPRule(ctx context.Context, a Actor, action string, id int64,
	after func(rules []store.IPRule, i int) []store.IPRule, do func() error) error {
	object := ruleObject(id)
	if err := o.allow(ctx, a, rbac.ManageAccount, action, object); err != nil {
		return err
	}
	rules, err := o.st.IPRules(ctx, a.Account)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(rules, func(r store.IPRule) bool { return r.ID == id })
	if i < 0 {
		return fmt.Errorf("ip rule %d: %w", id, store.ErrNotFound)
	}
	r := rules[i]
	if err := lockout(a, after(slices.Clone(rules), i), "this change would lock you out: your address %s would no longer be allowed"); err != nil {
		return err
	}
	if err := do(); err != nil {
		return err
	}
	who, err := o.ruleUserName(ctx, a.Account, r.UserID)
	if err != nil {
		return err
	}
	detail := r.StartIP + " – " + r.EndIP
	if rg, ok := iprules.RuleRange(r); ok {
		detail = rg.String()
	}
	o.audit(ctx, a, action, object, ruleDetail(detail, who, r.Description))
	return nil
}

// lockout refuses rules under which the actor's own address would be
// refused (the command line, without address, is exempt). msg has one %s:
// the address.
func lockout(a Actor, rules []store.IPRule, msg string) error {
	if a.Remote == "" || a.Kind == ActorCLI {
		return nil
	}
	// An API key is held to the rules for all users only (iprules).
	userID := ""
	if a.Kind == ActorUser {
		userID = a.ID
	}
	if iprules.Allowed(rules, userID, a.Remote) {
		return nil
	}
	return invalid("rule", msg, a.Remote)
}

// ruleUser checks the user a new rule is for ("" for all users) and
// returns what the audit log names them by.
func (o *Ops) ruleUser(ctx context.Context, account, userID string) (string, error) {
	if userID == "" {
		return "all users", nil
	}
	u, err := o.st.User(ctx, account, userID)
	if errors.Is(err, store.ErrNotFound) {
		return "", invalid("user_id", "no such user in this account")
	}
	if err != nil {
		return "", err
	}
	return u.Email, nil
}

// ruleUserName is ruleUser for an existing rule, whose user may have gone:
// then their ID.
func (o *Ops) ruleUserName(ctx context.Context, account, userID string) (string, error) {
	who, err := o.ruleUser(ctx, account, userID)
	var inv *InvalidError
	if errors.As(err, &inv) {
		return "user " + userID, nil
	}
	return who, err
}

func ruleObject(id int64) string { return strconv.FormatInt(id, 10) }

// ruleDetail is the audit entry's detail: "10.0.0.0 – 10.0.0.255 for all
// users (office)".
func ruleDetail(rg, who, description string) string {
	d := rg + " for " + who
	if description != "" {
		d += " (" + description + ")"
	}
	return d
}

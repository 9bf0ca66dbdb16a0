package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ---- CSR templates (P1), key profiles (P3), provisioning templates (P2)

// accountExists is ErrNotFound for an unknown account, so that an object
// is never created for one.
func accountExists(ctx context.Context, tx *sql.Tx, account string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE id = ?`, account).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("account %s: %w", account, ErrNotFound)
	}
	return nil
}

// nameTaken is ErrConflict when another object of the table and account
// has the name (the UNIQUE constraint would refuse it with a driver error
// that is not portable to tell apart).
func nameTaken(ctx context.Context, tx *sql.Tx, table, what, account, id, name string) error {
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE account_id = ? AND name = ? AND id <> ?`,
		account, name, id).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return fmt.Errorf("a %s named %q already exists: %w", what, name, ErrConflict)
	}
	return nil
}

// stamps sets the creation and change times (microsecond precision, as
// stored).
func stamps(created, updated *time.Time, now time.Time) {
	if created.IsZero() {
		*created = now
	}
	if updated.IsZero() {
		*updated = *created
	}
	*created, *updated = fromUS(us(*created)), fromUS(us(*updated))
}

// checkUpdated is ErrNotFound when an UPDATE or DELETE touched nothing.
func checkUpdated(res sql.Result, what, id string) error {
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%s %s: %w", what, id, ErrNotFound)
	}
	return nil
}

// ---- CSR templates

const csrTemplateColumns = `id, account_id, name, signature_algorithm, key_algorithm, key_size, curve, subject, sans,
	copy_from_certificate, enabled, created_at, updated_at`

func scanCSRTemplate(r scanner) (CSRTemplate, error) {
	var t CSRTemplate
	var subject, sans string
	var cp, enabled int
	var created, updated int64
	if err := r.Scan(&t.ID, &t.Account, &t.Name, &t.SignatureAlgorithm, &t.KeyAlgorithm, &t.KeySize, &t.Curve, &subject,
		&sans, &cp, &enabled, &created, &updated); err != nil {
		return CSRTemplate{}, err
	}
	if err := json.Unmarshal([]byte(subject), &t.Subject); err != nil {
		return CSRTemplate{}, fmt.Errorf("csr template %s subject: %w", t.ID, err)
	}
	if err := json.Unmarshal([]byte(sans), &t.SANs); err != nil {
		return CSRTemplate{}, fmt.Errorf("csr template %s sans: %w", t.ID, err)
	}
	t.CopyFromCertificate, t.Enabled = cp == 1, enabled == 1
	t.CreatedAt, t.UpdatedAt = fromUS(created), fromUS(updated)
	return t, nil
}

// CreateCSRTemplate stores a new CSR template.
func (s *SQL) CreateCSRTemplate(ctx context.Context, t CSRTemplate) error {
	if t.ID == "" || t.Account == "" || t.Name == "" {
		return errors.New("create csr template: ID, account and name are required")
	}
	stamps(&t.CreatedAt, &t.UpdatedAt, s.now())
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, t.Account); err != nil {
			return fmt.Errorf("create csr template: %w", err)
		}
		if err := nameTaken(ctx, tx, "csr_templates", "CSR template", t.Account, t.ID, t.Name); err != nil {
			return fmt.Errorf("create csr template: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO csr_templates (`+csrTemplateColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Account, t.Name, t.SignatureAlgorithm, t.KeyAlgorithm, t.KeySize, t.Curve, jsonText(t.Subject),
			jsonText(t.SANs), boolInt(t.CopyFromCertificate), boolInt(t.Enabled), us(t.CreatedAt), us(t.UpdatedAt))
		if err != nil {
			return fmt.Errorf("create csr template: %w", err)
		}
		return nil
	})
}

// CSRTemplate reads one of the account's CSR templates.
func (s *SQL) CSRTemplate(ctx context.Context, account, id string) (CSRTemplate, error) {
	t, err := scanCSRTemplate(s.db.QueryRowContext(ctx, `SELECT `+csrTemplateColumns+` FROM csr_templates
		WHERE account_id = ? AND id = ?`, account, id))
	if err != nil {
		return CSRTemplate{}, notFound("csr template "+id, err)
	}
	return t, nil
}

// CSRTemplates lists the account's CSR templates by name.
func (s *SQL) CSRTemplates(ctx context.Context, account string) ([]CSRTemplate, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+csrTemplateColumns+` FROM csr_templates WHERE account_id = ?
		ORDER BY name, id`, account)
	if err != nil {
		return nil, fmt.Errorf("list csr templates: %w", err)
	}
	defer rows.Close()
	out := []CSRTemplate{}
	for rows.Next() {
		t, err := scanCSRTemplate(rows)
		if err != nil {
			return nil, fmt.Errorf("list csr templates: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list csr templates: %w", err)
	}
	return out, nil
}

// UpdateCSRTemplate replaces a CSR template's settings.
func (s *SQL) UpdateCSRTemplate(ctx context.Context, t CSRTemplate) error {
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = s.now()
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := nameTaken(ctx, tx, "csr_templates", "CSR template", t.Account, t.ID, t.Name); err != nil {
			return fmt.Errorf("update csr template: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE csr_templates SET name = ?, signature_algorithm = ?, key_algorithm = ?,
			key_size = ?, curve = ?, subject = ?, sans = ?, copy_from_certificate = ?, enabled = ?, updated_at = ?
			WHERE account_id = ? AND id = ?`,
			t.Name, t.SignatureAlgorithm, t.KeyAlgorithm, t.KeySize, t.Curve, jsonText(t.Subject), jsonText(t.SANs),
			boolInt(t.CopyFromCertificate), boolInt(t.Enabled), us(t.UpdatedAt), t.Account, t.ID)
		if err != nil {
			return fmt.Errorf("update csr template: %w", err)
		}
		return checkUpdated(res, "csr template", t.ID)
	})
}

// usedBy names the provisioning templates that use a CSR template or key
// profile (column csr_template_id or key_profile_id): ErrConflict when
// there are some.
func usedBy(ctx context.Context, tx *sql.Tx, column, what, account, id string) error {
	rows, err := tx.QueryContext(ctx, `SELECT name FROM provisioning_templates WHERE account_id = ? AND `+column+` = ?
		ORDER BY name`, account, id)
	if err != nil {
		return err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		names = append(names, fmt.Sprintf("%q", n))
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("%s %s is used by provisioning templates %s: %w", what, id, strings.Join(names, ", "), ErrConflict)
	}
	return nil
}

// DeleteCSRTemplate deletes a CSR template no provisioning template uses.
func (s *SQL) DeleteCSRTemplate(ctx context.Context, account, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := usedBy(ctx, tx, "csr_template_id", "CSR template", account, id); err != nil {
			return fmt.Errorf("delete csr template: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM csr_templates WHERE account_id = ? AND id = ?`, account, id)
		if err != nil {
			return fmt.Errorf("delete csr template: %w", err)
		}
		return checkUpdated(res, "csr template", id)
	})
}

// ---- key profiles

const keyProfileColumns = `id, account_id, name, kind, module_path, token_label, token_serial, slot, pin_sealed,
	path_pattern, password_min_length, enabled, created_at, updated_at`

func scanKeyProfile(r scanner) (KeyProfile, error) {
	var p KeyProfile
	var slot sql.NullInt64
	var enabled int
	var created, updated int64
	if err := r.Scan(&p.ID, &p.Account, &p.Name, &p.Kind, &p.ModulePath, &p.TokenLabel, &p.TokenSerial, &slot, &p.PINSealed,
		&p.PathPattern, &p.PasswordMinLength, &enabled, &created, &updated); err != nil {
		return KeyProfile{}, err
	}
	if slot.Valid {
		n := int(slot.Int64)
		p.Slot = &n
	}
	p.Enabled = enabled == 1
	p.CreatedAt, p.UpdatedAt = fromUS(created), fromUS(updated)
	return p, nil
}

func nullSlot(slot *int) any {
	if slot == nil {
		return nil
	}
	return *slot
}

// nullBytes stores an empty secret as NULL.
func nullBytes(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

// CreateKeyProfile stores a new key profile.
func (s *SQL) CreateKeyProfile(ctx context.Context, p KeyProfile) error {
	if p.ID == "" || p.Account == "" || p.Name == "" || p.Kind == "" {
		return errors.New("create key profile: ID, account, name and kind are required")
	}
	stamps(&p.CreatedAt, &p.UpdatedAt, s.now())
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, p.Account); err != nil {
			return fmt.Errorf("create key profile: %w", err)
		}
		if err := nameTaken(ctx, tx, "key_profiles", "key profile", p.Account, p.ID, p.Name); err != nil {
			return fmt.Errorf("create key profile: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO key_profiles (`+keyProfileColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			p.ID, p.Account, p.Name, p.Kind, p.ModulePath, p.TokenLabel, p.TokenSerial, nullSlot(p.Slot), nullBytes(p.PINSealed),
			p.PathPattern, p.PasswordMinLength, boolInt(p.Enabled), us(p.CreatedAt), us(p.UpdatedAt))
		if err != nil {
			return fmt.Errorf("create key profile: %w", err)
		}
		return nil
	})
}

// KeyProfile reads one of the account's key profiles.
func (s *SQL) KeyProfile(ctx context.Context, account, id string) (KeyProfile, error) {
	p, err := scanKeyProfile(s.db.QueryRowContext(ctx, `SELECT `+keyProfileColumns+` FROM key_profiles
		WHERE account_id = ? AND id = ?`, account, id))
	if err != nil {
		return KeyProfile{}, notFound("key profile "+id, err)
	}
	return p, nil
}

// KeyProfiles lists the account's key profiles by name.
func (s *SQL) KeyProfiles(ctx context.Context, account string) ([]KeyProfile, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+keyProfileColumns+` FROM key_profiles WHERE account_id = ?
		ORDER BY name, id`, account)
	if err != nil {
		return nil, fmt.Errorf("list key profiles: %w", err)
	}
	defer rows.Close()
	out := []KeyProfile{}
	for rows.Next() {
		p, err := scanKeyProfile(rows)
		if err != nil {
			return nil, fmt.Errorf("list key profiles: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list key profiles: %w", err)
	}
	return out, nil
}

// UpdateKeyProfile replaces a key profile's settings (its sealed PIN
// included).
func (s *SQL) UpdateKeyProfile(ctx context.Context, p KeyProfile) error {
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = s.now()
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := nameTaken(ctx, tx, "key_profiles", "key profile", p.Account, p.ID, p.Name); err != nil {
			return fmt.Errorf("update key profile: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE key_profiles SET name = ?, kind = ?, module_path = ?, token_label = ?,
			token_serial = ?, slot = ?, pin_sealed = ?, path_pattern = ?, password_min_length = ?, enabled = ?, updated_at = ?
			WHERE account_id = ? AND id = ?`,
			p.Name, p.Kind, p.ModulePath, p.TokenLabel, p.TokenSerial, nullSlot(p.Slot), nullBytes(p.PINSealed), p.PathPattern,
			p.PasswordMinLength, boolInt(p.Enabled), us(p.UpdatedAt), p.Account, p.ID)
		if err != nil {
			return fmt.Errorf("update key profile: %w", err)
		}
		return checkUpdated(res, "key profile", p.ID)
	})
}

// DeleteKeyProfile deletes a key profile no provisioning template uses.
func (s *SQL) DeleteKeyProfile(ctx context.Context, account, id string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := usedBy(ctx, tx, "key_profile_id", "key profile", account, id); err != nil {
			return fmt.Errorf("delete key profile: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM key_profiles WHERE account_id = ? AND id = ?`, account, id)
		if err != nil {
			return fmt.Errorf("delete key profile: %w", err)
		}
		return checkUpdated(res, "key profile", id)
	})
}

// ---- provisioning templates

const provisioningColumns = `id, account_id, name, origin, is_default, key_pair, keystore_password,
	keystore_password_sealed, csr_template_id, key_profile_id, ca_connector, ca_settings, enabled, created_at, updated_at`

func scanProvisioning(r scanner) (ProvisioningTemplate, error) {
	var t ProvisioningTemplate
	var def, enabled int
	var csr, kp sql.NullString
	var created, updated int64
	if err := r.Scan(&t.ID, &t.Account, &t.Name, &t.Origin, &def, &t.KeyPair, &t.KeystorePassword, &t.KeystorePasswordSealed,
		&csr, &kp, &t.CAConnector, &t.CASettings, &enabled, &created, &updated); err != nil {
		return ProvisioningTemplate{}, err
	}
	t.Default, t.Enabled = def == 1, enabled == 1
	t.CSRTemplateID, t.KeyProfileID = csr.String, kp.String
	t.CreatedAt, t.UpdatedAt = fromUS(created), fromUS(updated)
	return t, nil
}

func nullText(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// provisioningRefs checks that the template's CSR template and key profile
// are the account's, and clears the account's other default when the
// template is the default.
func provisioningRefs(ctx context.Context, tx *sql.Tx, t ProvisioningTemplate) error {
	for _, ref := range []struct{ table, what, id string }{
		{"csr_templates", "csr template", t.CSRTemplateID},
		{"key_profiles", "key profile", t.KeyProfileID},
	} {
		if ref.id == "" {
			continue
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+ref.table+` WHERE account_id = ? AND id = ?`,
			t.Account, ref.id).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%s %s: %w", ref.what, ref.id, ErrNotFound)
		}
	}
	if t.Default {
		if _, err := tx.ExecContext(ctx, `UPDATE provisioning_templates SET is_default = 0
			WHERE account_id = ? AND is_default = 1 AND id <> ?`, t.Account, t.ID); err != nil {
			return err
		}
	}
	return nil
}

// CreateProvisioningTemplate stores a new provisioning template.
func (s *SQL) CreateProvisioningTemplate(ctx context.Context, t ProvisioningTemplate) error {
	if t.ID == "" || t.Account == "" || t.Name == "" {
		return errors.New("create provisioning template: ID, account and name are required")
	}
	stamps(&t.CreatedAt, &t.UpdatedAt, s.now())
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := accountExists(ctx, tx, t.Account); err != nil {
			return fmt.Errorf("create provisioning template: %w", err)
		}
		if err := nameTaken(ctx, tx, "provisioning_templates", "provisioning template", t.Account, t.ID, t.Name); err != nil {
			return fmt.Errorf("create provisioning template: %w", err)
		}
		if err := provisioningRefs(ctx, tx, t); err != nil {
			return fmt.Errorf("create provisioning template: %w", err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO provisioning_templates (`+provisioningColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.Account, t.Name, t.Origin, boolInt(t.Default), t.KeyPair, t.KeystorePassword,
			nullBytes(t.KeystorePasswordSealed), nullText(t.CSRTemplateID), nullText(t.KeyProfileID), t.CAConnector,
			t.CASettings, boolInt(t.Enabled), us(t.CreatedAt), us(t.UpdatedAt))
		if err != nil {
			return fmt.Errorf("create provisioning template: %w", err)
		}
		return nil
	})
}

// ProvisioningTemplate reads one of the account's provisioning templates.
func (s *SQL) ProvisioningTemplate(ctx context.Context, account, id string) (ProvisioningTemplate, error) {
	t, err := scanProvisioning(s.db.QueryRowContext(ctx, `SELECT `+provisioningColumns+` FROM provisioning_templates
		WHERE account_id = ? AND id = ?`, account, id))
	if err != nil {
		return ProvisioningTemplate{}, notFound("provisioning template "+id, err)
	}
	return t, nil
}

// ProvisioningTemplates lists the account's provisioning templates by
// name.
func (s *SQL) ProvisioningTemplates(ctx context.Context, account string) ([]ProvisioningTemplate, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+provisioningColumns+` FROM provisioning_templates WHERE account_id = ?
		ORDER BY name, id`, account)
	if err != nil {
		return nil, fmt.Errorf("list provisioning templates: %w", err)
	}
	defer rows.Close()
	out := []ProvisioningTemplate{}
	for rows.Next() {
		t, err := scanProvisioning(rows)
		if err != nil {
			return nil, fmt.Errorf("list provisioning templates: %w", err)
		}
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list provisioning templates: %w", err)
	}
	return out, nil
}

// UpdateProvisioningTemplate replaces a provisioning template's settings.
func (s *SQL) UpdateProvisioningTemplate(ctx context.Context, t ProvisioningTemplate) error {
	if t.UpdatedAt.IsZero() {
		t.UpdatedAt = s.now()
	}
	return s.tx(ctx, func(tx *sql.Tx) error {
		if err := nameTaken(ctx, tx, "provisioning_templates", "provisioning template", t.Account, t.ID, t.Name); err != nil {
			return fmt.Errorf("update provisioning template: %w", err)
		}
		// The template must be the account's before another's default is
		// cleared on its behalf.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM provisioning_templates WHERE account_id = ? AND id = ?`,
			t.Account, t.ID).Scan(&n); err != nil {
			return fmt.Errorf("update provisioning template: %w", err)
		}
		if n == 0 {
			return fmt.Errorf("provisioning template %s: %w", t.ID, ErrNotFound)
		}
		if err := provisioningRefs(ctx, tx, t); err != nil {
			return fmt.Errorf("update provisioning template: %w", err)
		}
		res, err := tx.ExecContext(ctx, `UPDATE provisioning_templates SET name = ?, origin = ?, is_default = ?, key_pair = ?,
			keystore_password = ?, keystore_password_sealed = ?, csr_template_id = ?, key_profile_id = ?, ca_connector = ?,
			ca_settings = ?, enabled = ?, updated_at = ? WHERE account_id = ? AND id = ?`,
			t.Name, t.Origin, boolInt(t.Default), t.KeyPair, t.KeystorePassword, nullBytes(t.KeystorePasswordSealed),
			nullText(t.CSRTemplateID), nullText(t.KeyProfileID), t.CAConnector, t.CASettings, boolInt(t.Enabled),
			us(t.UpdatedAt), t.Account, t.ID)
		if err != nil {
			return fmt.Errorf("update provisioning template: %w", err)
		}
		return checkUpdated(res, "provisioning template", t.ID)
	})
}

// DeleteProvisioningTemplate deletes one of the account's provisioning
// templates.
func (s *SQL) DeleteProvisioningTemplate(ctx context.Context, account, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM provisioning_templates WHERE account_id = ? AND id = ?`, account, id)
	if err != nil {
		return fmt.Errorf("delete provisioning template: %w", err)
	}
	return checkUpdated(res, "provisioning template", id)
}

// dashTemplates counts the account's enabled CSR templates, provisioning
// templates and key profiles (S3).
func dashTemplates(ctx context.Context, tx *sql.Tx, account string, _ time.Time, d *Dashboard) error {
	return tx.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM csr_templates WHERE account_id = ? AND enabled = 1),
			(SELECT COUNT(*) FROM provisioning_templates WHERE account_id = ? AND enabled = 1),
			(SELECT COUNT(*) FROM key_profiles WHERE account_id = ? AND enabled = 1)`, account, account, account).
		Scan(&d.Templates.CSRTemplates, &d.Templates.ProvisioningTemplates, &d.Templates.KeyProfiles)
}

-- CSR templates (P1), key profiles (P3) and provisioning templates (P2).
-- Same conventions as 00001: times INTEGER Unix microseconds (UTC),
-- booleans INTEGER 0/1, JSON as TEXT; valid PostgreSQL with BYTEA for BLOB.
-- Secrets (an HSM PIN, a manual keystore password) are sealed by the
-- control plane before they reach these tables.

-- +goose Up
CREATE TABLE csr_templates (
    id                    TEXT PRIMARY KEY,   -- UUID
    account_id            TEXT NOT NULL REFERENCES accounts(id),
    name                  TEXT NOT NULL,
    signature_algorithm   TEXT NOT NULL,
    key_algorithm         TEXT NOT NULL,
    key_size              INTEGER NOT NULL DEFAULT 0,  -- RSA bits; 0 otherwise
    curve                 TEXT NOT NULL DEFAULT '',    -- ECDSA: P-256, P-384
    subject               TEXT NOT NULL DEFAULT '{}',  -- JSON CSRSubject
    sans                  TEXT NOT NULL DEFAULT '{}',  -- JSON CSRSANs
    copy_from_certificate INTEGER NOT NULL DEFAULT 1,
    enabled               INTEGER NOT NULL DEFAULT 1,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE key_profiles (
    id                  TEXT PRIMARY KEY,
    account_id          TEXT NOT NULL REFERENCES accounts(id),
    name                TEXT NOT NULL,
    kind                TEXT NOT NULL,              -- software, pkcs12, pkcs11
    module_path         TEXT NOT NULL DEFAULT '',   -- pkcs11
    token_label         TEXT NOT NULL DEFAULT '',
    token_serial        TEXT NOT NULL DEFAULT '',
    slot                INTEGER,                    -- NULL: found by label or serial
    pin_sealed          BLOB,                       -- NULL: no PIN
    path_pattern        TEXT NOT NULL DEFAULT '',   -- pkcs12
    password_min_length INTEGER NOT NULL DEFAULT 0,
    enabled             INTEGER NOT NULL DEFAULT 1,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE provisioning_templates (
    id                       TEXT PRIMARY KEY,
    account_id               TEXT NOT NULL REFERENCES accounts(id),
    name                     TEXT NOT NULL,
    origin                   TEXT NOT NULL DEFAULT '',
    is_default               INTEGER NOT NULL DEFAULT 0,
    key_pair                 TEXT NOT NULL,           -- new, existing
    keystore_password        TEXT NOT NULL,           -- random, manual
    keystore_password_sealed BLOB,                    -- manual only
    csr_template_id          TEXT REFERENCES csr_templates(id),  -- NULL: none
    key_profile_id           TEXT REFERENCES key_profiles(id),
    ca_connector             TEXT NOT NULL,
    ca_settings              TEXT NOT NULL DEFAULT '',
    enabled                  INTEGER NOT NULL DEFAULT 1,
    created_at               INTEGER NOT NULL,
    updated_at               INTEGER NOT NULL,
    UNIQUE (account_id, name)
);
-- At most one default per account, whatever the code does.
CREATE UNIQUE INDEX provisioning_templates_default ON provisioning_templates(account_id) WHERE is_default = 1;
-- Deleting a CSR template or key profile looks for its users.
CREATE INDEX provisioning_templates_csr ON provisioning_templates(csr_template_id);
CREATE INDEX provisioning_templates_key_profile ON provisioning_templates(key_profile_id);

-- +goose Down
DROP TABLE provisioning_templates;
DROP TABLE key_profiles;
DROP TABLE csr_templates;

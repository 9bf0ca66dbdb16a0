-- Dashboard users and their sessions, the audit log, the key objects scans
-- find, and the indexes the certificate list's sorts need (issue 4). Same
-- conventions as 00001: times INTEGER Unix microseconds (UTC), booleans
-- INTEGER 0/1, JSON as TEXT; valid PostgreSQL with BYTEA for BLOB.

-- +goose Up

-- A4: two-factor login compulsory for the account's users.
ALTER TABLE accounts ADD COLUMN require_totp INTEGER NOT NULL DEFAULT 0;

CREATE TABLE users (
    id             TEXT PRIMARY KEY,      -- UUID
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    email          TEXT NOT NULL UNIQUE,  -- lowercase; unique over all accounts: login asks for the email only
    name           TEXT NOT NULL DEFAULT '',
    role           TEXT NOT NULL,
    password       TEXT NOT NULL,         -- argon2id PHC string, never the password
    totp_sealed    BLOB,                  -- the TOTP secret sealed with the control plane's key; NULL: no second factor
    totp_last_step INTEGER NOT NULL DEFAULT 0, -- the last time step accepted: a code is never accepted twice
    disabled       INTEGER NOT NULL DEFAULT 0,
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER,
    created_at     INTEGER NOT NULL,
    last_login     INTEGER
);
CREATE INDEX users_account ON users(account_id);

-- Found by the SHA-256 of the cookie's value: a stolen database holds no
-- usable session.
CREATE TABLE sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    account_id TEXT NOT NULL,
    stage      TEXT NOT NULL,             -- totp, enrol, ok
    csrf       TEXT NOT NULL,
    remote     TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires    INTEGER NOT NULL
);
-- Ending every session of a user (password change, disabling).
CREATE INDEX sessions_user ON sessions(user_id);

-- A2: appended, never changed. The ID orders entries and is the page
-- cursor.
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY,       -- PostgreSQL: BIGINT GENERATED ALWAYS AS IDENTITY
    account_id TEXT NOT NULL,
    at         INTEGER NOT NULL,
    actor_kind TEXT NOT NULL,             -- user, apikey, cli
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    object     TEXT NOT NULL DEFAULT '',
    detail     TEXT NOT NULL DEFAULT '',
    remote     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_account ON audit_log(account_id, id);

-- Keys found by scans: key objects of their own (an HSM's keys, SSH public
-- keys) and the private keys found with certificates. One row per place,
-- kept up to date like locations.
CREATE TABLE keys (
    id           INTEGER PRIMARY KEY,
    account_id   TEXT NOT NULL,
    bot_id       TEXT NOT NULL REFERENCES bots(id),
    uri          TEXT NOT NULL,
    source       TEXT NOT NULL DEFAULT '',
    class        TEXT NOT NULL DEFAULT '', -- private, public, secret-key; '' for a private key found with a certificate
    algorithm    TEXT NOT NULL DEFAULT '',
    bits         INTEGER NOT NULL DEFAULT 0,
    label        TEXT NOT NULL DEFAULT '',
    key_id       TEXT NOT NULL DEFAULT '', -- hex, e.g. PKCS#11 CKA_ID
    extractable  INTEGER,                 -- NULL when unknown
    sensitive    INTEGER,                 -- NULL when unknown
    usage        TEXT NOT NULL DEFAULT '[]', -- JSON list
    fingerprint  TEXT NOT NULL DEFAULT '', -- the certificate found with the key; '' for a key object
    -- The key pair this key belongs to, within its bot, so that a pair
    -- counts once: a PKCS#11 private key is both its own object and the
    -- key of the certificate with the same CKA_ID, at two URIs. For a
    -- PKCS#11 key with an ID: the token part of its URI and the ID; else
    -- the URI.
    pair         TEXT NOT NULL,
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    present      INTEGER NOT NULL,
    last_scan_id TEXT NOT NULL DEFAULT '',
    UNIQUE (account_id, bot_id, uri)
);
-- The list (newest first) and the dashboard's counts of present keys.
CREATE INDEX keys_account_seen ON keys(account_id, last_seen);

-- Whether a certificate is still present in at least one location, kept
-- by ingestion and scan completion: the dashboard counts 100,000
-- certificates by presence, issuer, key and expiry from one index instead
-- of looking up each one's locations (about 200 ms; this is about 30).
ALTER TABLE certificates ADD COLUMN present INTEGER NOT NULL DEFAULT 1;
UPDATE certificates SET present = 0 WHERE NOT EXISTS (SELECT 1 FROM locations l
    WHERE l.account_id = certificates.account_id AND l.fingerprint = certificates.fingerprint AND l.present = 1);
-- The fingerprint a location held before a batch replaced it (a renewed
-- certificate at the same place), until the batch has rechecked whether
-- the old certificate is still present elsewhere. Nearly always '': the
-- partial index stays empty and costs ingestion nothing.
ALTER TABLE locations ADD COLUMN replaced TEXT NOT NULL DEFAULT '';
CREATE INDEX locations_replaced ON locations(account_id, replaced) WHERE replaced <> '';

-- The dashboard: certificates by presence, issuer, key and expiry (a
-- covering index: the counts read nothing else).
CREATE INDEX certificates_dashboard ON certificates(account_id, present, issuer, key_algorithm, key_bits, not_after);
-- The list's orders. Entries end with the primary key, so each index is
-- the order with ties broken by fingerprint: a page reads its rows and
-- stops, where a sort would read every match.
CREATE INDEX certificates_common_name ON certificates(account_id, common_name);
CREATE INDEX certificates_issuer ON certificates(account_id, issuer);
CREATE INDEX certificates_first_seen ON certificates(account_id, first_seen);
-- A certificate's locations with their presence and source: covers the
-- presence checks, and the dashboard's counts by source and of protected
-- endpoints read this index alone. Replaces locations_cert (of which it is
-- an extension). A separate (account_id, present, source, fingerprint)
-- index made those counts about twice as fast but ingestion a third
-- slower (one more index written per location): not worth it.
DROP INDEX locations_cert;
CREATE INDEX locations_cert ON locations(account_id, fingerprint, present, source);

-- +goose Down
DROP INDEX locations_cert;
CREATE INDEX locations_cert ON locations(account_id, fingerprint);
DROP INDEX certificates_first_seen;
DROP INDEX certificates_issuer;
DROP INDEX certificates_common_name;
DROP INDEX certificates_dashboard;
DROP INDEX locations_replaced;
ALTER TABLE locations DROP COLUMN replaced;
ALTER TABLE certificates DROP COLUMN present;
DROP TABLE keys;
DROP TABLE audit_log;
DROP TABLE sessions;
DROP TABLE users;
ALTER TABLE accounts DROP COLUMN require_totp;

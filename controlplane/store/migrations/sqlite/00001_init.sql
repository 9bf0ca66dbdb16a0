-- The first schema of the control plane (issue 3). Times are INTEGER Unix
-- microseconds (UTC), booleans INTEGER 0/1, JSON lists TEXT: the same
-- statements run on PostgreSQL with BYTEA for BLOB (and without
-- SQLite's WITHOUT ROWID).

-- +goose Up
CREATE TABLE accounts (
    id         TEXT PRIMARY KEY,          -- 10 digits
    name       TEXT NOT NULL,
    bot_limit  INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         TEXT PRIMARY KEY,          -- the public part of the key
    account_id TEXT NOT NULL REFERENCES accounts(id),
    role       TEXT NOT NULL,
    key_hash   BLOB NOT NULL,             -- SHA-256 of the whole key
    created_at INTEGER NOT NULL
);
CREATE INDEX api_keys_account ON api_keys(account_id);

CREATE TABLE bots (
    id             TEXT PRIMARY KEY,      -- UUID
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    name           TEXT NOT NULL,
    grp            TEXT NOT NULL DEFAULT '',
    tags           TEXT NOT NULL DEFAULT '[]',
    status         TEXT NOT NULL,
    token_hash     BLOB,                  -- SHA-256 of the one-time token; NULL once used
    cert_serial    TEXT,                  -- the current client certificate; NULL when revoked
    hostname       TEXT NOT NULL DEFAULT '',
    os             TEXT NOT NULL DEFAULT '',
    arch           TEXT NOT NULL DEFAULT '',
    ips            TEXT NOT NULL DEFAULT '[]',
    version        TEXT NOT NULL DEFAULT '',
    path           TEXT NOT NULL DEFAULT '',
    capability     INTEGER NOT NULL DEFAULT 0,
    targets_sealed BLOB,                  -- AES-256-GCM sealed JSON list of target URIs
    target_count   INTEGER NOT NULL DEFAULT 0,
    schedule       TEXT NOT NULL DEFAULT '{"kind":"on_demand"}',
    threads        INTEGER NOT NULL DEFAULT 0,
    max_runtime    INTEGER NOT NULL DEFAULT 0, -- nanoseconds
    config_version INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    activated_at   INTEGER,
    last_seen      INTEGER
);
CREATE INDEX bots_account ON bots(account_id);

CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    bot_id       TEXT NOT NULL REFERENCES bots(id),
    kind         TEXT NOT NULL,
    scan_id      TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL,           -- pending, delivered, done, failed
    error        TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    delivered_at INTEGER,
    finished_at  INTEGER
);
CREATE INDEX jobs_bot_status ON jobs(bot_id, status, created_at);

CREATE TABLE scans (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL,
    bot_id       TEXT NOT NULL REFERENCES bots(id),
    trigger      TEXT NOT NULL,
    queued_at    INTEGER,
    started      INTEGER,
    finished     INTEGER,
    targets      INTEGER NOT NULL DEFAULT 0,
    batches      INTEGER NOT NULL DEFAULT 0,
    certificates INTEGER NOT NULL DEFAULT 0,
    errors       INTEGER NOT NULL DEFAULT 0,
    complete     INTEGER NOT NULL DEFAULT 0,
    stopped      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX scans_bot ON scans(account_id, bot_id, started);

CREATE TABLE scan_batches (
    scan_id     TEXT NOT NULL REFERENCES scans(id),
    seq         INTEGER NOT NULL,
    findings    INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (scan_id, seq)
);

CREATE TABLE scan_errors (
    id         INTEGER PRIMARY KEY,
    scan_id    TEXT NOT NULL REFERENCES scans(id),
    uri        TEXT NOT NULL,
    source     TEXT NOT NULL DEFAULT '',
    error      TEXT NOT NULL,
    seen_at    INTEGER NOT NULL
);
CREATE INDEX scan_errors_scan ON scan_errors(scan_id);

CREATE TABLE certificates (
    account_id          TEXT NOT NULL,
    fingerprint         TEXT NOT NULL,    -- lowercase hex SHA-256 of the leaf DER
    subject             TEXT NOT NULL,
    common_name         TEXT NOT NULL,
    sans                TEXT NOT NULL,    -- JSON list
    search              TEXT NOT NULL,    -- lowercase CN and SANs, for q
    issuer              TEXT NOT NULL,
    serial              TEXT NOT NULL,
    not_before          INTEGER NOT NULL,
    not_after           INTEGER NOT NULL,
    key_algorithm       TEXT NOT NULL,
    key_bits            INTEGER NOT NULL,
    signature_algorithm TEXT NOT NULL,
    is_ca               INTEGER NOT NULL,
    first_seen          INTEGER NOT NULL,
    PRIMARY KEY (account_id, fingerprint)
) WITHOUT ROWID; -- SQLite: rows stored in key order, so a search scans them in page order
CREATE INDEX certificates_not_after ON certificates(account_id, not_after);

-- The DER apart, so that searches scan narrow rows.
CREATE TABLE certificate_der (
    account_id  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    der         BLOB NOT NULL,
    chain       BLOB,                     -- the rest of the chain as first found: DER, each prefixed by its 4-byte length
    PRIMARY KEY (account_id, fingerprint)
);

CREATE TABLE locations (
    id           INTEGER PRIMARY KEY,
    account_id   TEXT NOT NULL,
    bot_id       TEXT NOT NULL REFERENCES bots(id),
    uri          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    source       TEXT NOT NULL DEFAULT '',
    format       TEXT NOT NULL DEFAULT '',
    first_seen   INTEGER NOT NULL,
    last_seen    INTEGER NOT NULL,
    present      INTEGER NOT NULL,
    gone_at      INTEGER,
    last_scan_id TEXT NOT NULL DEFAULT '',
    UNIQUE (account_id, bot_id, uri)
);
CREATE INDEX locations_cert ON locations(account_id, fingerprint);

-- +goose Down
DROP TABLE locations;
DROP TABLE certificate_der;
DROP TABLE certificates;
DROP TABLE scan_errors;
DROP TABLE scan_batches;
DROP TABLE scans;
DROP TABLE jobs;
DROP TABLE bots;
DROP TABLE api_keys;
DROP TABLE accounts;

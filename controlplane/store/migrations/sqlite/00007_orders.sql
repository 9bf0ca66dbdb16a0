-- Orders and their history, rotate jobs' work, the local CA and what it
-- issued, mass replacements and schedules (issue 8: B9, D7, P6, P7, P9,
-- S4, S5). Same conventions as 00001: times INTEGER Unix microseconds
-- (UTC), booleans INTEGER 0/1, JSON as TEXT; valid PostgreSQL with BYTEA
-- for BLOB. Secrets (a rotation's PINs and passwords, the CA key) are
-- sealed by the control plane before they reach these tables.

-- +goose Up

-- One certificate ordered for one location. bot_id and job_id are '' for
-- an order without deployment, so they carry no foreign key.
CREATE TABLE orders (
    id              TEXT PRIMARY KEY,      -- UUID
    account_id      TEXT NOT NULL REFERENCES accounts(id),
    bot_id          TEXT NOT NULL DEFAULT '',
    job_id          TEXT NOT NULL DEFAULT '',
    action          TEXT NOT NULL,         -- rotate, rekey, renew, order
    fingerprint     TEXT NOT NULL DEFAULT '', -- the certificate replaced; '' for a new order
    location        TEXT NOT NULL DEFAULT '',
    template_id     TEXT NOT NULL DEFAULT '',
    connector       TEXT NOT NULL DEFAULT '',
    ca_settings     TEXT NOT NULL DEFAULT '',
    status          TEXT NOT NULL,         -- initiated, ordering, issued, deployed, rotated, re-keyed, failed, ...
    csr_pem         TEXT NOT NULL DEFAULT '',
    cert_pem        TEXT NOT NULL DEFAULT '',
    chain_pem       TEXT NOT NULL DEFAULT '',
    new_fingerprint TEXT NOT NULL DEFAULT '',
    ca_order_id     TEXT NOT NULL DEFAULT '',
    outcome         TEXT NOT NULL DEFAULT '',
    error           TEXT NOT NULL DEFAULT '',
    batch_id        TEXT NOT NULL DEFAULT '',
    remarks         TEXT NOT NULL DEFAULT '',
    created_by      TEXT NOT NULL DEFAULT '',
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    ordering_since  INTEGER                -- NULL unless ordering
);
-- The list (newest first), a certificate's orders (replaced or issued),
-- a batch's orders and the counts by status (S5).
CREATE INDEX orders_account_created ON orders(account_id, created_at);
CREATE INDEX orders_fingerprint ON orders(account_id, fingerprint);
CREATE INDEX orders_new_fingerprint ON orders(account_id, new_fingerprint);
CREATE INDEX orders_batch ON orders(account_id, batch_id);
CREATE INDEX orders_status ON orders(account_id, status);
-- S4 counts the CSRs: a partial index keeps that count off the rows, whose
-- PEM columns make them a few kilobytes each.
CREATE INDEX orders_csr ON orders(account_id) WHERE csr_pem <> '';

CREATE TABLE order_events (
    order_id TEXT NOT NULL REFERENCES orders(id),
    seq      INTEGER NOT NULL,             -- 1, 2, ... per order
    time     INTEGER NOT NULL,
    status   TEXT NOT NULL,                -- the order's status after the event
    step     TEXT NOT NULL DEFAULT '',     -- the bot's step; '' for a change made by the control plane
    ok       INTEGER NOT NULL DEFAULT 1,
    message  TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (order_id, seq)
);

-- A rotate job's work, sealed by the control plane, and its order.
ALTER TABLE jobs ADD COLUMN payload BLOB;
ALTER TABLE jobs ADD COLUMN order_id TEXT NOT NULL DEFAULT '';

-- An account's private CA (connectors/ca/local).
CREATE TABLE local_cas (
    account_id TEXT PRIMARY KEY REFERENCES accounts(id),
    cert_pem   TEXT NOT NULL,
    key_sealed BLOB NOT NULL,              -- the CA key sealed with the control plane's key
    created_at INTEGER NOT NULL
);

-- What a local CA issued (local.Ledger), per account.
CREATE TABLE ca_ledger (
    account_id TEXT NOT NULL,
    serial     TEXT NOT NULL,              -- lowercase hex, no leading zeros
    order_ref  TEXT NOT NULL DEFAULT '',   -- the caller's idempotency key
    profile    TEXT NOT NULL DEFAULT '',
    der        BLOB NOT NULL,
    not_before INTEGER NOT NULL,
    not_after  INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL,
    status     TEXT NOT NULL,              -- good, revoked, suspended
    revoked_at INTEGER,                    -- NULL while good
    reason     INTEGER NOT NULL DEFAULT 0,
    remarks    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (account_id, serial)
);
-- One certificate per order reference: two deliveries of one job racing
-- each other cannot both record one.
CREATE UNIQUE INDEX ca_ledger_order_ref ON ca_ledger(account_id, order_ref) WHERE order_ref <> '';
-- The CRL's entries.
CREATE INDEX ca_ledger_status ON ca_ledger(account_id, status);

CREATE TABLE ca_crl_numbers (
    account_id TEXT PRIMARY KEY,
    last       INTEGER NOT NULL            -- the last CRL number handed out
);

-- Mass replacements (P9) and their locations.
CREATE TABLE batches (
    id           TEXT PRIMARY KEY,
    account_id   TEXT NOT NULL REFERENCES accounts(id),
    name         TEXT NOT NULL DEFAULT '',
    filter       TEXT NOT NULL DEFAULT '{}', -- JSON: the search's query parameters
    template_id  TEXT NOT NULL DEFAULT '',
    action       TEXT NOT NULL,
    wave_size    INTEGER NOT NULL,
    max_failures INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL,            -- planned, running, stopping, stopped, done
    created_by   TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER
);
CREATE INDEX batches_account ON batches(account_id, created_at);
-- The runner's look for running and stopping batches of every account.
CREATE INDEX batches_status ON batches(status);

CREATE TABLE batch_items (
    batch_id    TEXT NOT NULL REFERENCES batches(id),
    seq         INTEGER NOT NULL,
    wave        INTEGER NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    location    TEXT NOT NULL DEFAULT '',
    bot_id      TEXT NOT NULL DEFAULT '',
    order_id    TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL,             -- pending, ordered, done, failed, skipped
    error       TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (batch_id, seq)
);
-- The counts by state (covering).
CREATE INDEX batch_items_state ON batch_items(batch_id, state);

-- Planned actions (P6): one-shot at a time, or auto-renew.
CREATE TABLE schedules (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    action            TEXT NOT NULL,       -- initiate, order, rotate, renewal, recheck
    fingerprint       TEXT NOT NULL DEFAULT '',
    location          TEXT NOT NULL DEFAULT '',
    template_id       TEXT NOT NULL DEFAULT '',
    at                INTEGER,             -- NULL for an auto-renew schedule without a time
    auto_renew_days   INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL,       -- pending, fired, canceled
    -- The certificate an auto-renew schedule last fired for (with an
    -- order): it fires at most once per certificate.
    fired_fingerprint TEXT NOT NULL DEFAULT '',
    last_fired        INTEGER,
    last_order_id     TEXT NOT NULL DEFAULT '',
    last_error        TEXT NOT NULL DEFAULT '',
    created_by        TEXT NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL
);
CREATE INDEX schedules_account ON schedules(account_id, created_at);
-- The scheduler's look for due schedules of every account.
CREATE INDEX schedules_due ON schedules(status, auto_renew_days, at);
-- Moving a certificate's auto-renew schedules to its successor.
CREATE INDEX schedules_fingerprint ON schedules(account_id, fingerprint);

-- +goose Down
DROP TABLE schedules;
DROP TABLE batch_items;
DROP TABLE batches;
DROP TABLE ca_crl_numbers;
DROP TABLE ca_ledger;
DROP TABLE local_cas;
ALTER TABLE jobs DROP COLUMN order_id;
ALTER TABLE jobs DROP COLUMN payload;
DROP TABLE order_events;
DROP TABLE orders;

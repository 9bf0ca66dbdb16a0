-- IP restrictions (A4): the address ranges an account's users (one user,
-- or all of them and the API keys) may work from. Same conventions as
-- 00001: times INTEGER Unix microseconds (UTC), booleans INTEGER 0/1;
-- valid PostgreSQL with BIGINT GENERATED ALWAYS AS IDENTITY for the ID.

-- +goose Up
CREATE TABLE ip_rules (
    id          INTEGER PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    user_id     TEXT NOT NULL DEFAULT '',  -- '' for all users (and API keys)
    start_ip    TEXT NOT NULL,             -- netip.Addr text; compared as addresses in Go, not as text
    end_ip      TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 1,
    created_at  INTEGER NOT NULL,
    created_by  TEXT NOT NULL DEFAULT ''
);
-- Every dashboard page and API call reads the account's rules.
CREATE INDEX ip_rules_account ON ip_rules(account_id, id);

-- +goose Down
DROP TABLE ip_rules;

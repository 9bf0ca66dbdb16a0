-- What an order's rotation made and where it deployed (issue 8: P4, S4):
-- the key inventory lists the keys rotations made with each location's
-- history, and the dashboard counts the orders that wrote a keystore.
-- Same conventions as 00001. Orders made before this migration keep ''
-- (unknown): nothing recorded where they deployed.

-- +goose Up
ALTER TABLE orders ADD COLUMN deploy_kind TEXT NOT NULL DEFAULT '';   -- protocol.Deploy*: pem, jks, pkcs12, ...
ALTER TABLE orders ADD COLUMN key_where TEXT NOT NULL DEFAULT '';     -- protocol.KeyWhere*: software, pkcs12, pkcs11
ALTER TABLE orders ADD COLUMN key_algorithm TEXT NOT NULL DEFAULT ''; -- the new key's keygen name; '' when the key was kept
ALTER TABLE orders ADD COLUMN key_ref TEXT NOT NULL DEFAULT '';       -- a token key's label (and ID); '' otherwise
-- The keys rotations made, newest first (a partial index: renewals, which
-- keep their key, stay out of it).
CREATE INDEX orders_keys ON orders(account_id, created_at, id) WHERE key_algorithm <> '';
-- A location's history (the key inventory's filter and its grouping).
CREATE INDEX orders_location ON orders(account_id, location, bot_id, created_at, id);
-- S4: the orders that wrote a keystore (a partial index: most locations
-- are PEM files).
CREATE INDEX orders_keystores ON orders(account_id, status) WHERE deploy_kind IN ('jks', 'pkcs12');

-- +goose Down
DROP INDEX orders_keystores;
DROP INDEX orders_location;
DROP INDEX orders_keys;
ALTER TABLE orders DROP COLUMN key_ref;
ALTER TABLE orders DROP COLUMN key_algorithm;
ALTER TABLE orders DROP COLUMN key_where;
ALTER TABLE orders DROP COLUMN deploy_kind;

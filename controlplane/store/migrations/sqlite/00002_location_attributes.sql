-- What a finding says about its place beyond its identity (protocol.Finding
-- Attributes: an F5 certificate's virtual servers, an ACM certificate's
-- status, a Cloudflare pack's hosts), as a JSON object of strings. Not part
-- of the location's key: the latest scan's attributes replace the previous
-- ones. Rows from before this migration get '{}' (none).

-- +goose Up
ALTER TABLE locations ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}';

-- +goose Down
ALTER TABLE locations DROP COLUMN attributes;

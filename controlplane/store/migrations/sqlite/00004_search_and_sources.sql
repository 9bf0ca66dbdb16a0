-- The certificate list's searches at 100,000 certificates (issue 7: a page
-- in under 200 ms). A search for a substring (q, issuer: LIKE '%x%') can
-- use no index to seek, so it reads every certificate of the account; from
-- the table or an order's index (a row lookup for each entry) that took
-- 400-900 ms. This index holds every column a search filters or sorts on
-- (and, as every index of the table, the fingerprint): the search and its
-- count read its narrow entries alone, in about 20 ms, and sort only the
-- matches; the page then fetches its rows by fingerprint. Written only when
-- a certificate is new (rescans of a known inventory insert none).
-- PostgreSQL: the same index is valid, but long search texts (many SANs)
-- can pass its btree entry limit; there the substring search belongs in a
-- pg_trgm GIN index instead.
--
-- The dashboard's certificates by source (issue 7: the dashboard in under
-- 200 ms). Counting each certificate once per source from the locations
-- meant grouping every present location by (fingerprint, source) and then
-- by source: about 60 ms at 100,000 certificates, however the query was
-- put. Each certificate now keeps the sources it is present in: each
-- distinct source of its present locations followed by a comma
-- ("file,tls,"; '' when present nowhere). Ingestion and scan completion
-- keep it, writing it only when it changes (steady rescans: never), and
-- the dashboard groups the account's certificates by it in the order of
-- the index below. Filled here from the locations (the order and
-- repetitions of string_agg do not matter: readers take the distinct
-- sources).

-- +goose Up
CREATE INDEX certificates_filter ON certificates(account_id, search, issuer, not_after, is_ca, first_seen, common_name);

ALTER TABLE certificates ADD COLUMN sources TEXT NOT NULL DEFAULT '';
UPDATE certificates SET sources = COALESCE((SELECT string_agg(l.source || ',', '') FROM locations l
    WHERE l.account_id = certificates.account_id AND l.fingerprint = certificates.fingerprint AND l.present = 1), '');
CREATE INDEX certificates_sources ON certificates(account_id, sources);

-- +goose Down
DROP INDEX certificates_sources;
ALTER TABLE certificates DROP COLUMN sources;
DROP INDEX certificates_filter;

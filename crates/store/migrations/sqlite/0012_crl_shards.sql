-- Revocation that relying parties can see (RFC 5280 CRLs, BR 7.2.2
-- sharding). Every certificate belongs to one CRL shard from the moment its
-- serial is reserved: its CRL Distribution Point names that shard, so the
-- precertificate and the final certificate name the same one. Certificates
-- reserved before this migration are in shard 0.
ALTER TABLE certificates ADD COLUMN crl_shard INTEGER NOT NULL DEFAULT 0;
-- 1 from a revocation (or a change of its reason) until a CRL that lists
-- it is stored: the CRL updater's work list, in the same row as the
-- revocation, so no revocation committed after the updater read its shard
-- is ever taken as published.
ALTER TABLE certificates ADD COLUMN crl_pending INTEGER NOT NULL DEFAULT 0;
CREATE INDEX certificates_crl_pending ON certificates(issuer_id, crl_shard) WHERE crl_pending = 1;
CREATE INDEX certificates_revoked_by_shard ON certificates(issuer_id, crl_shard) WHERE revoked_at IS NOT NULL;
-- The current CRL of each shard of each issuer, signed by the signer and
-- served by the public HTTP listener at `/crl/{name}`. `number` only grows
-- (RFC 5280 §5.2.3): a CRL is replaced only by one of a greater number.
CREATE TABLE crls (
    issuer_id   TEXT NOT NULL,
    shard       INTEGER NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    number      INTEGER NOT NULL,
    this_update INTEGER NOT NULL,
    next_update INTEGER NOT NULL,
    entries     INTEGER NOT NULL,
    der         BLOB NOT NULL,
    PRIMARY KEY (issuer_id, shard)
);

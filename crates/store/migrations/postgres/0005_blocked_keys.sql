-- Keys Kiln refuses from then on, as account keys and in CSRs (BR 6.1.1.3):
-- those of certificates revoked for keyCompromise, and those an operator
-- adds. `spki_sha256` is the lowercase hex SHA-256 of the key's DER
-- SubjectPublicKeyInfo in its canonical form (EC points uncompressed), so
-- the lookup on every newAccount, keyChange and finalize is one primary-key
-- probe. A row is never changed or removed by Kiln.
CREATE TABLE blocked_keys (
    spki_sha256    TEXT PRIMARY KEY,
    -- The certificate whose keyCompromise revocation blocked the key;
    -- NULL when an operator added it.
    revoked_serial TEXT,
    comment        TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

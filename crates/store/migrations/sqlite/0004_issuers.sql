-- The issuing certificates the signer signs with, recorded by the signer
-- when it starts: the one source of the chain that the api serves after each
-- leaf and that ct-submitter sends after each precertificate. `id` is the
-- hex SHA-256 of the issuer's DER, so a row never changes; each certificate
-- names the issuer that signed it.
CREATE TABLE issuers (
    id              TEXT PRIMARY KEY,
    certificate_der BLOB NOT NULL,
    chain_pem       TEXT NOT NULL,
    created_at      BIGINT NOT NULL
);
ALTER TABLE certificates ADD COLUMN issuer_id TEXT REFERENCES issuers(id);

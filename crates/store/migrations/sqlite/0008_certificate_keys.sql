-- The key each certificate certifies, so that a keyCompromise revocation
-- revokes every other unexpired certificate for the same key in the same
-- transaction as the block (BR 4.9.1.1). Named as blocked_keys names keys:
-- lowercase hex SHA-256 of the canonical DER SubjectPublicKeyInfo. Written
-- when the serial is reserved; NULL for certificates reserved before this
-- migration, which a compromise of their key does not find.
ALTER TABLE certificates ADD COLUMN spki_sha256 TEXT;
CREATE INDEX certificates_by_key ON certificates(spki_sha256) WHERE spki_sha256 IS NOT NULL;

-- External Account Binding keys (RFC 8555 §7.3.4): an operator creates a
-- key id and HMAC key and hands them to one customer, whose newAccount
-- proves holding them. A key binds at most one account, once: `account_id`
-- is set in the same transaction as that account's insert, by a
-- compare-and-set on `account_id IS NULL AND revoked_at IS NULL`. Rows are
-- never removed, so a binding stays traceable after revocation.
CREATE TABLE eab_keys (
    key_id     TEXT PRIMARY KEY,
    -- The HMAC key's raw bytes; never shown after `kiln eab create`.
    hmac_key   BLOB  NOT NULL,
    comment    TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    account_id TEXT,
    bound_at   BIGINT,
    revoked_at BIGINT
);

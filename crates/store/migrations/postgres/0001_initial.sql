-- Kiln's schema. Times are unix milliseconds; JSON columns hold serde forms
-- of the domain types. Mirrored in ../sqlite; keep the two in step.

CREATE TABLE secrets (
    name  TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);

-- Nonces are HMAC-authenticated and need no row until used; a used nonce
-- is inserted here, so a replay is a primary-key conflict.
CREATE TABLE used_nonces (
    nonce      TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id             TEXT PRIMARY KEY,
    key_thumbprint TEXT NOT NULL UNIQUE,
    jwk            TEXT NOT NULL,
    contact        TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);

CREATE TABLE orders (
    id                 TEXT PRIMARY KEY,
    account_id         TEXT NOT NULL REFERENCES accounts(id),
    status             TEXT NOT NULL,
    step               TEXT,
    identifiers        TEXT NOT NULL,
    not_before         BIGINT,
    not_after          BIGINT,
    expires_at         BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    csr                BYTEA,
    processing_since   BIGINT,
    step_deadline      BIGINT,
    finalize_deadline  BIGINT,
    error              TEXT,
    certificate_serial TEXT
);
CREATE INDEX orders_by_account ON orders(account_id, created_at);
CREATE INDEX orders_by_deadline ON orders(status, step_deadline);

CREATE TABLE authzs (
    id           TEXT PRIMARY KEY,
    order_id     TEXT NOT NULL REFERENCES orders(id),
    account_id   TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    wildcard     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    validated_at BIGINT
);
CREATE INDEX authzs_by_order ON authzs(order_id);

CREATE TABLE challenges (
    id           TEXT PRIMARY KEY,
    authz_id     TEXT NOT NULL REFERENCES authzs(id),
    kind         TEXT NOT NULL,
    token        TEXT NOT NULL,
    status       TEXT NOT NULL,
    validated_at BIGINT,
    deadline     BIGINT,
    error        TEXT
);
CREATE INDEX challenges_by_authz ON challenges(authz_id);
CREATE INDEX challenges_by_deadline ON challenges(status, deadline);

-- One row per serial, inserted before anything is signed (invariant 5).
-- state: reserved -> precert -> final-signing -> issued; or abandoned.
CREATE TABLE certificates (
    serial         TEXT PRIMARY KEY,
    order_id       TEXT NOT NULL REFERENCES orders(id),
    account_id     TEXT NOT NULL,
    state          TEXT NOT NULL,
    not_before     BIGINT NOT NULL,
    not_after      BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    precert_der    BYTEA,
    sct_list       BYTEA,
    final_der      BYTEA,
    revoked_at     BIGINT,
    revoked_reason BIGINT
);
CREATE INDEX certificates_by_order ON certificates(order_id);

-- ACME Renewal Information (RFC 9773).
--
-- The certID an order says it replaces (§5), as the client wrote it: the
-- order object shows it back, for as long as the order exists.
ALTER TABLE orders ADD COLUMN replaces TEXT;

-- One live replacement per certificate (§5, §7.4 `alreadyReplaced`): the
-- order that holds each serial's claim. A claim whose order ended invalid
-- (or expired unfinished) passes to the next order that asks, as Let's
-- Encrypt lets a failed replacement be retried; the primary key makes two
-- live claims impossible however requests race.
CREATE TABLE replacements (
    serial     TEXT PRIMARY KEY REFERENCES certificates(serial),
    order_id   TEXT NOT NULL REFERENCES orders(id),
    created_at BIGINT NOT NULL
);

-- Certificates an operator asked to be renewed at once (`kiln ari
-- renew-now`, as after an incident): their suggested window moves to the
-- past. Never removed.
CREATE TABLE renew_now (
    serial          TEXT PRIMARY KEY REFERENCES certificates(serial),
    explanation_url TEXT,
    marked_at       BIGINT NOT NULL
);

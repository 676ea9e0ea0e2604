-- Multi-Perspective Issuance Corroboration (BR 3.2.2.9, logged per BR
-- 5.4.1): for each check whose primary result passed, the remote
-- perspectives asked and by when, then what each one found, then the
-- quorum's verdict ("3/4": remotes that agreed of those asked). The subject
-- is a challenge id, or `caa:<order id>` for the CAA recheck at finalize.
-- A new attempt replaces the rows: corroboration is never carried over.
CREATE TABLE corroborations (
    subject      TEXT PRIMARY KEY,
    remotes      INTEGER NOT NULL,
    deadline     BIGINT NOT NULL,
    started_at   BIGINT NOT NULL,
    verdict      TEXT,
    passed       INTEGER,
    decided_at   BIGINT
);
-- One row per remote perspective that answered; result is corroborated,
-- disagreed or timed-out, detail what it saw (bounded).
CREATE TABLE perspective_results (
    subject      TEXT NOT NULL,
    perspective  TEXT NOT NULL,
    region       TEXT,
    result       TEXT NOT NULL,
    detail       TEXT NOT NULL,
    checked_at   BIGINT NOT NULL,
    PRIMARY KEY (subject, perspective)
);

-- Every message a stage gave up on, or could not read, recorded by the
-- stage runner before the message goes to kiln.dead and before its
-- delivery is acked: the database's account of dead letters, which
-- `kiln audit` (check 11) compares with what the orders still wait for.
-- job is the job's kind (`undecodable` for a body no build can read);
-- subject_id the order or challenge it names (NULL when undecodable).
CREATE TABLE dead_letters (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    stage      TEXT NOT NULL,
    job        TEXT NOT NULL,
    subject_id TEXT,
    attempt    BIGINT NOT NULL,
    reason     TEXT NOT NULL,
    dead_at    BIGINT NOT NULL
);
CREATE INDEX dead_letters_by_subject ON dead_letters(subject_id);

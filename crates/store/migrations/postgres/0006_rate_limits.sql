-- Rate limits (README "Rate limits"): one row per counted action, in the
-- shared database so that every api replica counts the same events
-- (invariant 10). A limit is a count of its rows for one bucket (an
-- account, an address, a registered domain, …) over a sliding window; rows
-- older than the longest window are pruned.
CREATE TABLE rate_limit_events (
    limit_name TEXT NOT NULL,
    bucket     TEXT NOT NULL,
    at_ms      BIGINT NOT NULL
);
CREATE INDEX rate_limit_events_by_bucket ON rate_limit_events(limit_name, bucket, at_ms);
CREATE INDEX rate_limit_events_by_time ON rate_limit_events(at_ms);
-- Pending authorizations per account are counted from the authorizations.
CREATE INDEX authzs_by_account_status ON authzs(account_id, status);

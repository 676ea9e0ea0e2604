-- When each finalization step finished: the order's timeline, derived on
-- read with no extra writes (each time is set by the UPDATE that makes the
-- transition), and the finalize→valid latency behind Retry-After and the
-- hybrid mode's budget.
ALTER TABLE orders ADD COLUMN caa_checked_at BIGINT;
ALTER TABLE orders ADD COLUMN precert_at BIGINT;
ALTER TABLE orders ADD COLUMN scts_at BIGINT;
ALTER TABLE orders ADD COLUMN completed_at BIGINT;
CREATE INDEX orders_by_completion ON orders(completed_at);

-- Client compatibility: for every finalize answered `processing`, who the
-- client was and whether it came back (the data of a brownout).
CREATE TABLE finalize_observations (
    order_id       TEXT PRIMARY KEY,
    account_id     TEXT NOT NULL,
    user_agent     TEXT NOT NULL,
    client_product TEXT NOT NULL,
    client_version TEXT NOT NULL,
    mode           TEXT NOT NULL,
    finalized_at   BIGINT NOT NULL,
    first_poll_at  BIGINT,
    polls          BIGINT NOT NULL DEFAULT 0,
    downloaded_at  BIGINT
);
CREATE INDEX finalize_observations_by_time ON finalize_observations(finalized_at);

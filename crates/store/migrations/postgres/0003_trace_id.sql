-- The trace of an order's finalization: the W3C trace id (32 hex digits) of
-- the finalize request's span, the root of the spans of every stage, set by
-- the same UPDATE that makes the order `processing`. NULL when tracing was
-- off, and for orders finalized before this column existed.
ALTER TABLE orders ADD COLUMN trace_id TEXT;

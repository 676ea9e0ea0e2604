-- The certificate profile an order asked for (draft-ietf-acme-profiles);
-- NULL for orders made before profiles, which are `classic`.
ALTER TABLE orders ADD COLUMN profile TEXT;

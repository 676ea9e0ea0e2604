-- An account's authorizations by name: revocation by an account that holds
-- authorizations for a certificate's names (RFC 8555 §7.6) looks them up.
CREATE INDEX authzs_by_account ON authzs(account_id, identifier);

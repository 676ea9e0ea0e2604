-- Alternate certificate chains (RFC 8555 §7.4.2): the issuer's other
-- chains, each what follows a leaf as `chain_pem` does (PEM, ending below a
-- root), served at `{certificate URL}/{n}` for n = 1, 2, … in this order.
-- A JSON array of strings. The signer states them at every start (the one
-- column of an issuer row that may change: a cross-signature can be added
-- to, or taken from, a running intermediate); rows recorded before this
-- migration have none.
ALTER TABLE issuers ADD COLUMN alternate_chains_pem TEXT NOT NULL DEFAULT '[]';

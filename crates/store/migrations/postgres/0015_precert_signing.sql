-- A serial is written `precert-signing` as the claim on its order's
-- sign-precert step, in the transaction that makes the order name it and
-- before anything is signed with it (invariant 5); builds before this one
-- wrote `reserved` and let two deliveries of one job each sign. A
-- `reserved` row may have had its precertificate signed (a signer that died
-- before storing it, or lost the race to store it): it becomes
-- `precert-signing`, which has revocation status and is never reused.
UPDATE certificates SET state = 'precert-signing' WHERE state = 'reserved';

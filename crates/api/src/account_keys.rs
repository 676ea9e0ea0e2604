//! Account keys parsed once, not on every request.
//!
//! A `kid` request carries no key: the account's JWK is read from the
//! database with the account, and building an OpenSSL key from it
//! (`OSSL_DECODER` in OpenSSL 3) cost more than verifying the signature.
//! Parsed keys are kept here by RFC 7638 thumbprint. The thumbprint is a
//! digest of the key itself, so an entry can never describe another key:
//! after a key change (in this replica or another) the account row names a
//! new thumbprint and the old entry is simply never asked for again. The
//! account's status is still read from the database on every request, so a
//! deactivated account is refused whatever is cached here; its entry is
//! dropped anyway, to free the memory.

use crate::jws::Jwk;
use domain::Problem;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use store::Account;

/// Keys kept at most; past this the cache starts afresh (a bound, not an
/// LRU: a busy CA's working set is far smaller).
pub const CAPACITY: usize = 10_000;

#[derive(Default)]
pub struct AccountKeys {
    by_thumbprint: Mutex<HashMap<String, Arc<Jwk>>>,
}

impl AccountKeys {
    /// The account's parsed key.
    pub fn key_of(&self, account: &Account) -> Result<Arc<Jwk>, Problem> {
        if let Some(key) = self.lock().get(&account.key_thumbprint) {
            return Ok(key.clone());
        }
        let key = Arc::new(Jwk::from_json(&account.jwk)?);
        let mut keys = self.lock();
        if keys.len() >= CAPACITY {
            keys.clear();
        }
        keys.insert(account.key_thumbprint.clone(), key.clone());
        Ok(key)
    }

    /// Drops the entry of a key that no longer authenticates anything.
    pub fn forget(&self, thumbprint: &str) {
        self.lock().remove(thumbprint);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Jwk>>> {
        self.by_thumbprint.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl AccountKeys {
        fn len(&self) -> usize {
            self.lock().len()
        }
    }
    use domain::AccountStatus;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::nid::Nid;
    use openssl::pkey::PKey;

    fn account() -> Account {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let jwk = Jwk::from_public_key(&key).unwrap();
        Account {
            id: "a".into(),
            key_thumbprint: jwk.thumbprint(),
            jwk: jwk.to_json(),
            contact: vec![],
            status: AccountStatus::Valid,
            created_at: 0,
        }
    }

    #[test]
    fn parses_once_per_key() {
        let keys = AccountKeys::default();
        let a = account();
        let first = keys.key_of(&a).unwrap();
        let again = keys.key_of(&a).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second lookup is served from the cache"
        );
        assert_eq!(first.thumbprint(), a.key_thumbprint);
        keys.forget(&a.key_thumbprint);
        assert_eq!(keys.len(), 0);
        assert!(!Arc::ptr_eq(&first, &keys.key_of(&a).unwrap()));
    }

    #[test]
    fn a_changed_key_is_parsed_from_the_row() {
        let keys = AccountKeys::default();
        let old = account();
        let old_key = keys.key_of(&old).unwrap();
        let new = Account {
            id: old.id.clone(),
            ..account()
        };
        let new_key = keys.key_of(&new).unwrap();
        assert_ne!(old_key.thumbprint(), new_key.thumbprint());
        assert_eq!(new_key.thumbprint(), new.key_thumbprint);
    }

    #[test]
    fn stays_bounded() {
        let keys = AccountKeys::default();
        let a = account();
        for i in 0..CAPACITY + 5 {
            let fake = Account {
                key_thumbprint: format!("t{i}"),
                ..a.clone()
            };
            keys.key_of(&fake).unwrap();
            assert!(keys.len() <= CAPACITY);
        }
    }

    #[test]
    fn a_corrupt_stored_key_is_an_error_not_a_panic() {
        let keys = AccountKeys::default();
        let bad = Account {
            jwk: "{".into(),
            ..account()
        };
        assert!(keys.key_of(&bad).is_err());
        assert_eq!(keys.len(), 0);
    }
}

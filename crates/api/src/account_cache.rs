//! Accounts by id, for the `kid` of every request, kept in memory only in
//! a sole api replica (the all-in-one `kiln`).
//!
//! There every change to an account (contact, deactivation, key change) is
//! made by this process, which calls [`AccountCache::forget`] once its write
//! has committed. A read that began before such a write may return the old
//! row after `forget`; a generation number, bumped by every `forget`, keeps
//! that row out of the cache. With several replicas the cache is off and
//! every request reads its account, so a deactivation on one replica is
//! honoured by all at once.

use std::collections::HashMap;
use std::sync::Mutex;
use store::{Account, Store};

/// Accounts kept at most; past this the cache starts afresh.
const CAPACITY: usize = 10_000;

pub struct AccountCache {
    /// `None`: off (several replicas share the database).
    kept: Option<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    generation: u64,
    by_id: HashMap<String, Account>,
}

impl AccountCache {
    pub fn new(sole_replica: bool) -> AccountCache {
        AccountCache {
            kept: sole_replica.then(Mutex::default),
        }
    }

    /// The account with this id, from memory when kept.
    pub async fn account(&self, store: &Store, id: &str) -> store::Result<Option<Account>> {
        let Some(kept) = &self.kept else {
            return store.account(id).await;
        };
        let generation = match lookup(kept, id) {
            Ok(account) => return Ok(Some(account)),
            Err(generation) => generation,
        };
        let account = store.account(id).await?;
        if let Some(account) = &account {
            keep(kept, account, generation);
        }
        Ok(account)
    }

    /// Drops the account's entry; call after every committed change to it.
    pub fn forget(&self, id: &str) {
        if let Some(kept) = &self.kept {
            let mut kept = lock(kept);
            kept.generation += 1;
            kept.by_id.remove(id);
        }
    }
}

/// The kept account, or the generation to read the database under.
fn lookup(kept: &Mutex<Kept>, id: &str) -> Result<Account, u64> {
    let kept = lock(kept);
    kept.by_id.get(id).cloned().ok_or(kept.generation)
}

/// Keeps `account`, read under `generation`, unless a `forget` came since.
fn keep(kept: &Mutex<Kept>, account: &Account, generation: u64) {
    let mut kept = lock(kept);
    if kept.generation != generation {
        return;
    }
    if kept.by_id.len() >= CAPACITY {
        kept.by_id.clear();
    }
    kept.by_id.insert(account.id.clone(), account.clone());
}

fn lock(kept: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::AccountStatus;

    async fn store_with(account: &Account) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kiln.db").display());
        let store = Store::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        store.insert_account(account).await.unwrap();
        (dir, store)
    }

    fn account() -> Account {
        Account {
            id: "acct".into(),
            key_thumbprint: "thumb".into(),
            jwk: "{}".into(),
            contact: vec![],
            status: AccountStatus::Valid,
            created_at: 0,
        }
    }

    /// A sole replica answers from memory until it forgets, then sees the
    /// change; with the cache off every read sees the database.
    #[tokio::test]
    async fn kept_until_forgotten_and_off_when_shared() {
        let (_dir, store) = store_with(&account()).await;
        let sole = AccountCache::new(true);
        let shared = AccountCache::new(false);
        for cache in [&sole, &shared] {
            let read = cache.account(&store, "acct").await.unwrap().unwrap();
            assert_eq!(read.status, AccountStatus::Valid);
        }
        assert!(store.deactivate_account("acct").await.unwrap());
        let status = |a: Option<Account>| a.unwrap().status;
        assert_eq!(
            status(sole.account(&store, "acct").await.unwrap()),
            AccountStatus::Valid,
            "kept: the change is not seen before forget"
        );
        assert_eq!(
            status(shared.account(&store, "acct").await.unwrap()),
            AccountStatus::Deactivated
        );
        sole.forget("acct");
        assert_eq!(
            status(sole.account(&store, "acct").await.unwrap()),
            AccountStatus::Deactivated
        );
        assert!(sole.account(&store, "nobody").await.unwrap().is_none());
    }

    /// A row read before a `forget` is not kept after it; one read after is.
    #[test]
    fn a_read_overtaken_by_forget_is_not_kept() {
        let cache = AccountCache::new(true);
        let kept = cache.kept.as_ref().unwrap();
        let before = lookup(kept, "acct").unwrap_err();
        cache.forget("acct");
        keep(kept, &account(), before);
        let after = lookup(kept, "acct").expect_err("the stale row was not kept");
        keep(kept, &account(), after);
        assert!(lookup(kept, "acct").is_ok());
    }
}

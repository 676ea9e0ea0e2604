//! Which kind of api replica this process is, enforced across processes.
//!
//! A *sole* replica keeps used nonces and accounts in memory (see
//! [`crate::ApiConfig::sole_replica`]), which is only sound while no other
//! api replica serves the same database: another could change an account
//! this one has cached. So every api replica on PostgreSQL holds one
//! advisory lock for as long as it serves: a sole replica exclusively, a
//! shared one shared. A second sole replica, or a shared replica beside a
//! sole one, cannot take it and refuses to start. A replica whose lock's
//! connection dies stops serving, since another may have started meanwhile;
//! only a shared replica that cannot reach the database at all (a restart)
//! serves on for a while, since nobody can take the lock then either.

use std::time::{Duration, Instant};
use store::{Backend, Leadership, Store};
use tokio_util::sync::CancellationToken;

/// The advisory lock key of the api role ("kilnapi" in ASCII).
const API_ROLE_LOCK: i64 = 0x6b_696c_6e61_7069;

/// How often a held role is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// How long a shared replica serves on while the database cannot be
/// reached to take its role again; then it stops (and its supervisor
/// restarts it once the database is back).
const SERVE_THROUGH_OUTAGE: Duration = Duration::from_secs(60);

/// The role, held; give it to [`hold`].
pub struct Role {
    lock: Leadership,
    sole: bool,
}

/// Takes the role, or says why this replica may not run beside the others.
pub async fn claim(store: &Store, sole: bool) -> anyhow::Result<Role> {
    if sole && store.backend() != Backend::Postgres {
        anyhow::bail!(
            "[api] sole_replica needs PostgreSQL, whose advisory lock keeps a second replica out; \
             the all-in-one `kiln` is the sole replica of a SQLite database"
        );
    }
    let lock = match sole {
        true => store.try_leadership(API_ROLE_LOCK).await?,
        false => store.try_shared_lock(API_ROLE_LOCK).await?,
    };
    match (lock, sole) {
        (Some(lock), _) => Ok(Role { lock, sole }),
        (None, true) => anyhow::bail!(
            "another api replica serves this database: a sole replica ([api] sole_replica = true) \
             must be the only one"
        ),
        (None, false) => anyhow::bail!(
            "a sole api replica ([api] sole_replica = true) serves this database; stop it, or run \
             every replica with sole_replica = false"
        ),
    }
}

/// Checks the role every second until shutdown; cancels `shutdown` if it
/// is lost. A shared replica whose connection dropped takes the role again
/// if no sole replica has taken it meanwhile; while the database cannot be
/// reached (a restart) it serves on and asks again, for at most
/// [`SERVE_THROUGH_OUTAGE`], since no sole replica can take the lock then
/// either.
pub async fn hold(mut role: Role, store: Store, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    let mut lost_at: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if lost_at.is_none() && role.lock.still_held().await {
            continue;
        }
        let first_try = lost_at.is_none();
        let lost_for = lost_at.get_or_insert_with(Instant::now).elapsed();
        let retaken = match role.sole {
            true => None,
            false => Some(store.try_shared_lock(API_ROLE_LOCK).await),
        };
        match after_loss(retaken, lost_for) {
            AfterLoss::Retaken(lock) => {
                tracing::warn!("the api role's database connection was lost; taken again");
                role.lock = lock;
                lost_at = None;
            }
            AfterLoss::AskAgain(error) if first_try => tracing::warn!(
                %error,
                "the api role's database connection was lost and the database cannot be \
                 reached; serving on and asking again every second"
            ),
            AfterLoss::AskAgain(_) => {}
            AfterLoss::Stop => {
                tracing::error!(
                    sole_replica = role.sole,
                    "lost the api role lock (its database connection closed); another replica \
                     may now serve, so this one stops"
                );
                shutdown.cancel();
                return;
            }
        }
    }
}

/// What a replica does once its role's connection is gone.
#[derive(Debug)]
enum AfterLoss<L> {
    /// The shared lock is held again: serve on.
    Retaken(L),
    /// The database cannot be reached, so nobody can take the role
    /// exclusively meanwhile: serve on and ask again.
    AskAgain(store::StoreError),
    /// A sole replica may serve now (it took the lock, this replica was the
    /// sole one and its cache can no longer be trusted, or the database
    /// answered but not with the lock, or has been unreachable too long).
    Stop,
}

/// Decides from the attempt to take the shared lock again (`None`: a sole
/// replica, which does not try, since another may have changed what it
/// caches while its lock was gone), `lost_for` after the loss.
fn after_loss<L>(retaken: Option<store::Result<Option<L>>>, lost_for: Duration) -> AfterLoss<L> {
    match retaken {
        Some(Ok(Some(lock))) => AfterLoss::Retaken(lock),
        Some(Err(error)) if error.is_unreachable() && lost_for < SERVE_THROUGH_OUTAGE => {
            AfterLoss::AskAgain(error)
        }
        Some(Err(_) | Ok(None)) | None => AfterLoss::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_replica_serves_on_through_an_outage_and_stops_for_a_sole_one() {
        let outage = || Err(store::StoreError::Database(store::db::DbError::Closed));
        let soon = Duration::from_secs(3);
        assert!(matches!(
            after_loss(Some(outage()), soon),
            AfterLoss::<()>::AskAgain(_)
        ));
        assert!(
            matches!(
                after_loss::<()>(Some(outage()), SERVE_THROUGH_OUTAGE),
                AfterLoss::Stop
            ),
            "not for ever"
        );
        let answered = Err(store::StoreError::Corrupt(
            "a server that is up refused".into(),
        ));
        assert!(matches!(
            after_loss::<()>(Some(answered), soon),
            AfterLoss::Stop
        ));
        assert!(matches!(
            after_loss(Some(Ok(Some(()))), soon),
            AfterLoss::Retaken(())
        ));
        assert!(matches!(
            after_loss::<()>(Some(Ok(None)), soon),
            AfterLoss::Stop
        ));
        assert!(
            matches!(after_loss::<()>(None, soon), AfterLoss::Stop),
            "a sole replica stops"
        );
    }
}

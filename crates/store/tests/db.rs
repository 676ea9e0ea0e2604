//! The executors under the store (`store::db`): what a script guarantees on
//! both back ends — all or nothing, a required row count that refuses the
//! whole script, one script's failure never touching another's even when
//! SQLite commits them together — and the placeholder and NULL handling the
//! store's SQL relies on.

#[macro_use]
mod common;

use store::Store;
use store::db::{Db, Outcome, Script};
use store::stmt;

async fn scratch(url: &str) -> Db {
    let db = Db::connect(url, 8).await.unwrap();
    db.execute_admin(
        "CREATE TABLE scratch (k TEXT PRIMARY KEY, v BIGINT NOT NULL, note TEXT, data BYTEA)"
            .replace(
                "BYTEA",
                if url.starts_with("sqlite:") {
                    "BLOB"
                } else {
                    "BYTEA"
                },
            )
            .as_str(),
    )
    .await
    .unwrap();
    db
}

async fn value_of(db: &Db, k: &str) -> Option<i64> {
    db.optional(stmt!("SELECT v FROM scratch WHERE k = $1", k))
        .await
        .unwrap()
        .map(|r| r.i64("v").unwrap())
}

on_both_backends!(url: a_refused_script_writes_nothing, concurrent_scripts_keep_their_own_outcome, placeholders_bind_by_number_and_nulls_keep_their_type);

async fn a_refused_script_writes_nothing(_store: Store, url: String) {
    let db = scratch(&url).await;
    db.execute(stmt!(
        "INSERT INTO scratch (k, v) VALUES ($1, $2)",
        "a",
        1i64
    ))
    .await
    .unwrap();
    let outcome = db
        .run(
            Script::new()
                .then(stmt!("UPDATE scratch SET v = 2 WHERE k = $1", "a"))
                .require(1, stmt!("UPDATE scratch SET v = 2 WHERE k = $1", "missing")),
        )
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Refused);
    assert_eq!(
        value_of(&db, "a").await,
        Some(1),
        "the first write was rolled back"
    );
    let outcome = db
        .run(
            Script::new()
                .require(1, stmt!("UPDATE scratch SET v = 3 WHERE k = $1", "a"))
                .then(stmt!("UPDATE scratch SET v = 3 WHERE k = $1", "missing")),
        )
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::Committed(vec![1, 0]));
    assert_eq!(value_of(&db, "a").await, Some(3));
    // An error (here a duplicate key) also undoes the script's earlier writes.
    let err = db
        .run(
            Script::new()
                .then(stmt!("UPDATE scratch SET v = 4 WHERE k = $1", "a"))
                .then(stmt!(
                    "INSERT INTO scratch (k, v) VALUES ($1, $2)",
                    "a",
                    9i64
                )),
        )
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    assert_eq!(value_of(&db, "a").await, Some(3));
    db.close().await;
}

/// Many scripts at once: on SQLite they share commits (group commit), each
/// in its own savepoint (or, for one unconditional statement, the
/// statement's own atomicity), so a refused or failing one never undoes
/// another.
async fn concurrent_scripts_keep_their_own_outcome(_store: Store, url: String) {
    let db = scratch(&url).await;
    db.execute(stmt!(
        "INSERT INTO scratch (k, v) VALUES ($1, $2)",
        "taken",
        0i64
    ))
    .await
    .unwrap();
    let mut tasks = Vec::new();
    for i in 0..60i64 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let key = format!("k{i}");
            let script = match i % 4 {
                // Inserts its key.
                0 => {
                    Script::new().then(stmt!("INSERT INTO scratch (k, v) VALUES ($1, $2)", key, i))
                }
                // Inserts its key, then is refused: nothing stays.
                1 => Script::new()
                    .then(stmt!("INSERT INTO scratch (k, v) VALUES ($1, $2)", key, i))
                    .require(1, stmt!("UPDATE scratch SET v = 0 WHERE k = $1", "missing")),
                // One statement that inserts its key and a duplicate: it
                // fails as a whole, nothing stays.
                3 => Script::new().then(stmt!(
                    "INSERT INTO scratch (k, v) VALUES ($1, $2), ($3, $2)",
                    key,
                    i,
                    "taken"
                )),
                // Inserts its key, then fails on a duplicate: nothing stays.
                _ => Script::new()
                    .then(stmt!("INSERT INTO scratch (k, v) VALUES ($1, $2)", key, i))
                    .then(stmt!(
                        "INSERT INTO scratch (k, v) VALUES ($1, $2)",
                        "taken",
                        i
                    )),
            };
            (i, db.run(script).await)
        }));
    }
    for task in tasks {
        let (i, outcome) = task.await.unwrap();
        let stored = value_of(&db, &format!("k{i}")).await;
        match i % 4 {
            0 => {
                assert_eq!(outcome.unwrap(), Outcome::Committed(vec![1]), "{i}");
                assert_eq!(stored, Some(i));
            }
            1 => {
                assert_eq!(outcome.unwrap(), Outcome::Refused, "{i}");
                assert_eq!(stored, None);
            }
            _ => {
                assert!(outcome.unwrap_err().is_unique_violation(), "{i}");
                assert_eq!(stored, None);
            }
        }
    }
    db.close().await;
}

async fn placeholders_bind_by_number_and_nulls_keep_their_type(_store: Store, url: String) {
    let db = scratch(&url).await;
    // $2 before $1, and $2 twice: bound by number, not by position.
    db.execute(stmt!(
        "INSERT INTO scratch (k, v, note) VALUES ($2, $1, $2)",
        7i64,
        "seven"
    ))
    .await
    .unwrap();
    let row = db
        .optional(stmt!(
            "SELECT * FROM scratch WHERE v = $1 AND k = $2",
            7i64,
            "seven"
        ))
        .await
        .unwrap()
        .expect("row");
    assert_eq!(row.text("note").unwrap(), "seven");
    assert_eq!(row.opt_blob("data").unwrap(), None);
    // Typed NULLs of every kind, and bytes that are not UTF-8.
    db.execute(stmt!(
        "INSERT INTO scratch (k, v, note, data) VALUES ($1, $2, $3, $4)",
        "nulls",
        0i64,
        None::<String>,
        vec![0u8, 0xff, 0x80],
    ))
    .await
    .unwrap();
    let row = db
        .optional(stmt!(
            "SELECT note, data FROM scratch WHERE k = $1",
            "nulls"
        ))
        .await
        .unwrap()
        .expect("row");
    assert_eq!(row.opt_text("note").unwrap(), None);
    assert_eq!(row.blob("data").unwrap(), vec![0u8, 0xff, 0x80]);
    assert!(row.i64("note").is_err(), "NULL is not an integer");
    assert!(row.text("missing").is_err(), "no such column");
    db.close().await;
}

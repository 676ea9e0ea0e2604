//! SQLite's plans for statements that once read a whole table per request.
//! SQLite plans without statistics (Kiln never runs `ANALYZE`), so a join
//! order or an index choice that looks fine on an empty database can make a
//! per-order statement read every row ever stored; these tests pin the
//! plans that keep each one independent of the table's size.

use rusqlite::Connection;

/// The schema as the migrations leave it, in memory.
fn schema() -> Connection {
    let conn = Connection::open_in_memory().expect("in-memory database");
    for migration in crate::SQLITE_MIGRATIONS {
        conn.execute_batch(migration.sql)
            .unwrap_or_else(|e| panic!("migration {}: {e}", migration.version));
    }
    conn
}

/// Each step of the statement's plan (`EXPLAIN QUERY PLAN`'s detail column).
fn plan(conn: &Connection, sql: &str) -> Vec<String> {
    let sql = sql.replace('$', "?");
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("statement prepares");
    let params = stmt.parameter_count();
    let nulls: Vec<rusqlite::types::Null> = vec![rusqlite::types::Null; params];
    stmt.query_map(rusqlite::params_from_iter(nulls), |row| {
        row.get::<_, String>(3)
    })
    .expect("plan")
    .map(|step| step.expect("plan step"))
    .collect()
}

/// Asserts the plan's steps are exactly `expected`, in order.
fn assert_plan(sql: &str, expected: &[&str]) {
    let steps = plan(&schema(), sql);
    assert_eq!(steps, expected, "plan of {sql}");
}

#[test]
fn authorization_reuse_starts_from_the_accounts_authorizations() {
    assert_plan(
        crate::authz_reuse::REUSABLE_AUTHZ,
        &[
            "SEARCH a USING INDEX authzs_by_account (account_id=? AND identifier=?)",
            "SEARCH c USING INDEX challenges_by_authz (authz_id=?)",
            "USE TEMP B-TREE FOR ORDER BY",
        ],
    );
}

#[test]
fn validation_methods_start_from_the_orders_authorizations() {
    assert_plan(
        crate::views::VALIDATION_METHODS,
        &[
            "SEARCH a USING INDEX authzs_by_order (order_id=?)",
            "SEARCH c USING INDEX challenges_by_authz (authz_id=?)",
        ],
    );
}

#[test]
fn recent_latencies_read_down_the_completion_index_without_sorting() {
    assert_plan(
        crate::sweeping::RECENT_COMPLETIONS,
        &["SEARCH orders USING INDEX orders_by_completion (completed_at>?)"],
    );
}

//! An in-memory SQLite store (`sqlite::memory:`) keeps its tables and jobs when the pool closes
//! its connection and opens another (it did when 1,000 load-test clients left at once with
//! requests in flight). Before, the new connection opened a new, empty database: every job was
//! lost and every query failed with "no such table".

use ipet::store::Store;
use sqlx::Row;

#[tokio::test]
async fn an_in_memory_database_outlives_its_pooled_connection() {
    let store = Store::connect("sqlite::memory:", 4).await.expect("store");
    sqlx::query(
        "INSERT INTO perturbation_jobs (id, device, generation, n, seed, model_set, created_at, requester, slots, generations, element_bytes, vectors) \
         VALUES ('00000000-0000-4000-8000-000000000001', 'd', '0', 1, NULL, 's@1', 0, 'anonymous', 1, x'00', 1, x'00000000')",
    )
    .execute(store.pool())
    .await
    .expect("insert");
    assert_eq!(store.count_perturbations().await.expect("count"), 1);

    for round in 0..3 {
        // The pool's one connection, closed as the pool closes one it doubts.
        let conn = store.pool().acquire().await.expect("acquire");
        conn.close().await.expect("close");
        let n = store.count_perturbations().await.unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(n, 1, "round {round}: the stored job is gone");
    }
}

#[tokio::test]
async fn two_in_memory_stores_are_two_databases() {
    let a = Store::connect("sqlite::memory:", 1).await.expect("store a");
    let b = Store::connect("sqlite::memory:", 1).await.expect("store b");
    sqlx::query("CREATE TABLE only_in_a (x INTEGER)").execute(a.pool()).await.expect("create");
    let tables: i64 = sqlx::query("SELECT COUNT(*) AS c FROM sqlite_master WHERE name = 'only_in_a'")
        .fetch_one(b.pool())
        .await
        .expect("query b")
        .try_get("c")
        .expect("count");
    assert_eq!(tables, 0, "a store's in-memory database is its own");
}

//! The examples run as tests, so CI proves they work.

#[allow(dead_code)]
#[path = "../examples/quickstart.rs"]
mod quickstart;

#[tokio::test]
async fn quickstart_prints_instance_range_query_and_count() {
    let server = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    let out = quickstart::run(&db).await.unwrap();
    assert!(
        out.contains("created Episode { project_id: \"acme\""),
        "{out}"
    );
    assert!(
        out.contains("score >= 0.7: [\"launch\", \"kickoff\"]"),
        "{out}"
    );
    assert!(out.contains("acme has 3 episodes"), "{out}");
}

#[allow(dead_code)]
#[path = "../examples/worker.rs"]
mod worker;

#[tokio::test]
async fn worker_re_enters_each_jobs_tenant() {
    let server = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    let out = worker::run(&db).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "acme: created \"ship\", 1 urgent",
            "globex: created \"plan\", 0 urgent",
            "acme: created \"test\", 2 urgent",
            "acme: created \"docs\", 2 urgent",
        ]
    );
    assert!(
        lines[4].starts_with("rejected payload: invalid tenant id"),
        "{out}"
    );
    assert_eq!(
        db.tenant("acme")
            .unwrap()
            .query::<worker::Task>()
            .count()
            .await
            .unwrap(),
        3
    );
}

#[allow(dead_code)]
#[path = "../examples/migrate_confidence.rs"]
mod migrate_confidence;

#[tokio::test]
async fn migrate_confidence_moves_legacy_entries_into_tenant_partitions() {
    let server = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    let out = migrate_confidence::run(&db).await.unwrap();
    assert!(
        out.contains("dry run: 3 entries, partitions {\"atlas\": 2, \"zeus\": 1}"),
        "{out}"
    );
    assert!(
        out.contains("migrated 3/3, 0 errors, partitions {\"atlas\": 2, \"zeus\": 1}"),
        "{out}"
    );
    assert!(
        out.contains("zeus/bolt: confidence 0.6250 after 3 signals"),
        "{out}"
    );
    assert!(
        out.contains("index check: 3 instances, clean: true"),
        "{out}"
    );
}

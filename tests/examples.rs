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

#[allow(dead_code)]
#[path = "../examples/shared_doc.rs"]
mod shared_doc;

#[tokio::test]
async fn shared_doc_two_tenants_co_edit_one_document() {
    let server = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let db = server.db().await;
    let out = shared_doc::run(&db).await.unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("globex refused: shared Document")
            && lines[0].contains("read access only"),
        "{out}"
    );
    // Each tenant sees every write since it opened its feed, its own echo included.
    for t in ["acme", "globex"] {
        let seen: Vec<&&str> = lines
            .iter()
            .filter(|l| l.starts_with(&format!("{t} sees")))
            .collect();
        assert_eq!(seen.len(), 3, "{out}");
        assert!(seen[0].ends_with("Patch v2 by alice: body"), "{out}");
        assert!(seen.iter().any(|l| l.ends_with("by bob: status")), "{out}");
        assert!(seen.iter().any(|l| l.ends_with("by alice: title")), "{out}");
    }
    assert_eq!(
        *lines.last().unwrap(),
        "final v4: \"Q3 roadmap (final)\" / \"ship the feed\" / \"review\"",
        "{out}"
    );
}

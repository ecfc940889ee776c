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
    assert!(lines[4].starts_with("rejected payload: invalid tenant id"), "{out}");
    assert_eq!(db.tenant("acme").unwrap().query::<worker::Task>().count().await.unwrap(), 3);
}

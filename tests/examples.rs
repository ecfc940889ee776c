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

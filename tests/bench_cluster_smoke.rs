//! Builds the cluster benchmark and runs it with tiny sizes: every target and operation is
//! reported with a positive rate and server CPU. Nothing here asserts a duration.

#[allow(dead_code)]
#[path = "../benches/cluster.rs"]
mod cluster;

use cluster::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_benchmark_reports_every_target() {
    let report = cluster::run(&Config::tiny())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.rows.len(), 6);
    for target in ["single", "cluster 1", "cluster 3"] {
        for op in ["create", "get"] {
            let row = report
                .row(target, op)
                .unwrap_or_else(|| panic!("{target} {op}"));
            assert!(
                row.per_sec > 0.0 && row.server_us >= row.busiest_us,
                "{row:?}"
            );
            assert!(
                row.busiest_us > 0.0 && row.server_bound().is_finite(),
                "{row:?}"
            );
            assert!(report.ratio(target, op).is_some_and(f64::is_finite));
        }
    }
    assert!(report.markdown().contains("| cluster 3 | 3 | create |"));
}

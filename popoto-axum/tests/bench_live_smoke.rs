//! Builds the live-sync benchmark and runs it with tiny sizes, its server in a child process
//! (this test binary again, running `live_bench_server_child`): every figure is reported and
//! every client gets the final value of every model. Nothing here asserts a duration.

#[allow(dead_code)]
#[path = "../benches/live.rs"]
mod live;

use live::Config;

/// The server child of the benchmark: serves only when the benchmark started this binary to
/// be its server (an environment variable names the Redis URL), else returns at once.
#[test]
fn live_bench_server_child() {
    live::serve_child_if_asked();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_benchmark_reports_every_figure_and_delivers_every_final_value() {
    let cfg = Config::tiny();
    let report = live::run(&cfg).await.unwrap_or_else(|e| panic!("{e}"));
    let writes = (f64::from(cfg.rate) * cfg.seconds).round() as u64;
    assert_eq!(report.writes, writes);
    // Every client got every write (none was too slow at this size).
    assert_eq!(report.deliveries, writes * cfg.clients as u64, "{report:?}");
    let [p50, p95, p99, max] = report.latency;
    assert!(
        0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
        "{report:?}"
    );
    assert!(report.rss_mb > 0.0 && report.peak_mb >= report.rss_mb && report.idle_mb > 0.0);
    assert!(
        report.hot_writes > 0 && report.hot_per_sec > 0.0,
        "{report:?}"
    );
    let table = report.markdown();
    assert!(table.contains("| write-to-delivery p95 |") && table.contains("24.3 ms"));
}

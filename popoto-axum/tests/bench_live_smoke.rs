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
    assert_eq!(report.phases.len(), cfg.rates.len());
    for (phase, &rate) in report.phases.iter().zip(&cfg.rates) {
        let writes = (f64::from(rate) * cfg.seconds).round() as u64;
        assert_eq!((phase.rate, phase.writes), (rate, writes));
        // Every client got every write (none was too slow at this size).
        assert_eq!(phase.deliveries, writes * cfg.clients as u64, "{phase:?}");
        let [p50, p95, p99, max] = phase.latency;
        assert!(
            0.0 < p50 && p50 <= p95 && p95 <= p99 && p99 <= max,
            "{phase:?}"
        );
        assert!(
            phase.rss_mb.0 > 0.0 && phase.rss_mb.1 >= phase.rss_mb.0,
            "{phase:?}"
        );
    }
    assert!(report.idle_mb > 0.0);
    assert!(
        report.hot_writes > 0 && report.hot_per_sec > 0.0,
        "{report:?}"
    );
    let table = report.markdown();
    assert!(table.contains("| write-to-delivery p95 |") && table.contains("24.3 ms"));
}

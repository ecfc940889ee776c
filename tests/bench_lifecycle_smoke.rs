//! Builds the lifecycle benchmark and runs it with tiny sizes: every configuration is reported
//! and the destroy/import cycle restores the tenant. Nothing here asserts a duration.

#[allow(dead_code)]
#[path = "../benches/lifecycle.rs"]
mod lifecycle;

#[tokio::test]
async fn lifecycle_benchmark_reports_every_configuration() {
    let cfg = lifecycle::Config::tiny();
    let report = lifecycle::run(&cfg)
        .await
        .unwrap_or_else(|e| panic!("lifecycle benchmark: {e}"));
    assert_eq!(
        report.rows.len(),
        cfg.neighbours.len() * cfg.tenant_rows.len()
    );
    for r in &report.rows {
        assert!(r.keys > 0 && r.records >= 2, "{r:?}");
        assert!(r.trips.0[0] > 0 && r.trips.1[1] > 0, "{r:?}");
    }
    assert!(report.markdown().contains("| other tenants |"));
}

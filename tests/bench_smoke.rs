//! Builds the benchmark suite and runs it with tiny sizes: every operation is reported with a
//! positive count and finite ratios. Nothing here asserts a duration.

#[path = "../benches/suite/main.rs"]
mod suite;

#[tokio::test]
async fn suite_reports_every_operation() {
    let plot = std::env::temp_dir().join(format!("popoto-bench-smoke-{}.png", std::process::id()));
    let cfg = suite::Config {
        plot: Some(plot.clone()),
        ..suite::Config::tiny()
    };
    let report = suite::run(&cfg).await;
    let names: Vec<&str> = report.ops.iter().map(|o| o.name).collect();
    assert_eq!(
        names,
        [
            "seq_create",
            "bulk_create",
            "get",
            "range_query",
            "count",
            "or_query",
            "cursor_page",
            "confidence_update",
            "migrate_to_partitioned"
        ]
    );
    for op in &report.ops {
        assert!(op.count > 0, "{op:?}");
        assert!(op.orm_per_sec > 0.0 && op.raw_per_sec > 0.0, "{op:?}");
        assert!(op.ratio().is_finite(), "{op:?}");
    }
    assert_eq!(report.scaling.len(), cfg.scaling_sizes.len());
    for p in &report.scaling {
        assert!(p.rows > 0 && p.orm_ms > 0.0 && p.raw_ms > 0.0, "{p:?}");
    }
    assert!(report.scaling_spread().is_finite());
    assert_eq!(report.migration.entries, cfg.migration_entries as u64);
    assert!(!report.floors().is_empty());
    assert!(report.markdown().contains("| range_query |"));
    let png = std::fs::read(&plot).expect("the suite draws its plot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::remove_file(&plot).unwrap_or_else(|e| panic!("removing {}: {e}", plot.display()));
}

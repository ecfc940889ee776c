//! Builds the concurrency benchmark and runs it with tiny sizes: every operation, side and
//! level is reported with a positive rate. Nothing here asserts a duration.

#[allow(dead_code)]
#[path = "../benches/concurrency/main.rs"]
mod concurrency;

use concurrency::{Config, Side};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_benchmark_reports_every_row() {
    let plot = std::env::temp_dir().join(format!("popoto-concurrency-{}.png", std::process::id()));
    let cfg = Config {
        plot: Some(plot.clone()),
        ..Config::tiny()
    };
    let report = concurrency::run(&cfg)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let sides = [
        (
            "create",
            &[Side::Orm, Side::OrmSingle, Side::Raw, Side::RawLua][..],
        ),
        ("get", &[Side::Orm, Side::Raw][..]),
        ("range_query", &[Side::Orm, Side::Raw][..]),
        ("count", &[Side::Orm, Side::Raw][..]),
        ("confidence_update", &[Side::Orm, Side::RawLua][..]),
    ];
    let expected: usize = sides.iter().map(|(_, s)| s.len() * cfg.tasks.len()).sum();
    assert_eq!(report.rows.len(), expected);
    for (op, sides) in sides {
        for &tasks in &cfg.tasks {
            for &side in sides {
                let row = report
                    .row(op, tasks, side)
                    .unwrap_or_else(|| panic!("{op} {tasks} {side:?}"));
                assert!(row.per_sec > 0.0 && row.p99_us >= row.p50_us, "{row:?}");
                assert!(row.commands_per_sec > 0.0, "{row:?}");
                assert!(report.ratio(op, tasks, side).is_some_and(f64::is_finite));
            }
        }
    }
    assert!(report.ceiling.is_some_and(|c| c > 0.0));
    assert!(report.markdown().contains("| create | 4 | popoto-rs |"));
    let png = std::fs::read(&plot).expect("the benchmark draws its plot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::remove_file(&plot).unwrap_or_else(|e| panic!("removing {}: {e}", plot.display()));
}

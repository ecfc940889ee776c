//! What the benchmark runs, and how much of it.

use super::*;

/// What the benchmark runs, and how much of it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent tasks per level.
    pub tasks: Vec<usize>,
    /// Operations per round for create, get and confidence update.
    pub ops: usize,
    /// Range queries (and counts) per round.
    pub ranges: usize,
    /// Rows a range query returns (and a count counts).
    pub range_rows: usize,
    /// Rounds per side; the median round is reported.
    pub rounds: usize,
    /// Requests of each `redis-benchmark` test (0: no ceiling).
    pub ceiling_requests: usize,
    /// Where to draw the plot.
    pub plot: Option<PathBuf>,
    /// Operations to run (`None`: all); the reads need the creates' rows, so they bring
    /// `create` along.
    pub only: Option<Vec<String>>,
}

impl Config {
    /// Whether `op` runs.
    pub(crate) fn runs(&self, op: &str) -> bool {
        self.only.as_ref().is_none_or(|only| {
            only.iter()
                .any(|o| o == op || (op == "create" && o != "confidence_update"))
        })
    }
}

impl Config {
    /// The documented run.
    pub fn full() -> Config {
        Config {
            tasks: vec![1, 8, 64, 256],
            ops: 20_000,
            ranges: 4_000,
            range_rows: 20,
            rounds: 5,
            ceiling_requests: 1_000_000,
            plot: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/concurrency.png")),
            only: None,
        }
    }

    /// A few operations of each kind, for the smoke test (the benchmark itself never uses it).
    #[allow(dead_code)]
    pub fn tiny() -> Config {
        Config {
            tasks: vec![1, 4],
            ops: 40,
            ranges: 8,
            range_rows: 5,
            rounds: 1,
            ceiling_requests: 2_000,
            plot: None,
            only: None,
        }
    }
}

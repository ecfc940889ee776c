//! What the suite runs, and how much of it.

use super::*;

// ------------------------------------------------------------------------------- config

/// Sizes of the Python popoto run (it is 10 to 100 times slower, so it runs less).
#[derive(Debug, Clone)]
pub struct PythonSizes {
    /// `Episode.create` calls.
    pub seq_creates: usize,
    /// Instances given to `Episode.bulk_create`.
    pub bulk_creates: usize,
    /// `Episode.query.get` calls per round.
    pub gets: usize,
    /// Range queries per round.
    pub range_queries: usize,
    /// `Episode.query.count` calls per round.
    pub counts: usize,
    /// Memories created for the confidence updates.
    pub memories: usize,
    /// `update_confidence` calls per round.
    pub confidence_updates: usize,
    /// Entries of the legacy hash migrated (popoto loads the whole hash into memory).
    pub migration_entries: usize,
    /// Rounds of the repeated reads.
    pub rounds: usize,
}

/// What the suite runs, and how much of it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Rounds per operation; each side keeps its best round.
    pub rounds: usize,
    /// Sequential creates per round.
    pub seq_creates: usize,
    /// Instances per bulk create.
    pub bulk_creates: usize,
    /// Rows per tenant (bulk create, the range query's tenant, the scaling tenant).
    pub tenant_rows: usize,
    /// Gets by key per round.
    pub gets: usize,
    /// Range queries per round.
    pub range_queries: usize,
    /// Rows a range query returns.
    pub range_rows: usize,
    /// Counts per round.
    pub counts: usize,
    /// Memories whose confidence is updated.
    pub memories: usize,
    /// Confidence updates per round.
    pub confidence_updates: usize,
    /// Entries of the legacy companion hash that `migrate_to_partitioned` moves.
    pub migration_entries: usize,
    /// Tenants (partitions) the migrated entries belong to.
    pub migration_tenants: usize,
    /// Rounds of the migration (ORM and raw each).
    pub migration_rounds: usize,
    /// Database sizes (rows) at which the scaling tenant's range query is timed.
    pub scaling_sizes: Vec<usize>,
    /// Range queries per round at each scaling size.
    pub scaling_queries: usize,
    /// The Python interpreter with popoto 1.10.1, if the Python run is wanted.
    pub python: Option<PathBuf>,
    /// Sizes of the Python run.
    pub python_sizes: PythonSizes,
    /// Runs the migrations in a child process (this executable, re-executed) to read their
    /// own peak resident memory; `None` runs them in this process and reports no memory.
    pub child_exe: Option<PathBuf>,
    /// Where to draw the PNG plot (`None`: no plot).
    pub plot: Option<PathBuf>,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// Runs only these sections (`seq_create`, `bulk_create`, `get`, `range_query`, `count`,
    /// `or_query`, `cursor_page`, `confidence_update`, `python`, `migrate_to_partitioned`, `scaling`); `None`: all.
    pub only: Option<Vec<String>>,
}

impl Config {
    /// Whether section `name` runs.
    pub fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name))
    }
}

impl Config {
    /// The full suite (`cargo bench --bench suite`): about 5 minutes on 2 cores.
    pub fn full() -> Config {
        Config {
            rounds: 5,
            seq_creates: 2_000,
            bulk_creates: 100_000,
            tenant_rows: 2_000,
            gets: 5_000,
            range_queries: 300,
            range_rows: 200,
            counts: 300,
            memories: 1_000,
            confidence_updates: 3_000,
            migration_entries: 1_000_000,
            migration_tenants: 100,
            migration_rounds: 2,
            scaling_sizes: vec![10_000, 100_000, 1_000_000],
            scaling_queries: 200,
            python: default_python(),
            python_sizes: PythonSizes {
                seq_creates: 2_000,
                bulk_creates: 20_000,
                gets: 2_000,
                range_queries: 150,
                counts: 1_000,
                memories: 500,
                confidence_updates: 2_000,
                migration_entries: 10_000,
                rounds: 2,
            },
            child_exe: std::env::current_exe().ok(),
            plot: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/benchmarks.png")),
            verbose: true,
            only: None,
        }
    }

    /// A quick run for checking the suite itself (`-- --quick`): seconds, figures are noisy.
    pub fn quick() -> Config {
        Config {
            rounds: 2,
            seq_creates: 500,
            bulk_creates: 10_000,
            gets: 1_000,
            range_queries: 50,
            counts: 50,
            memories: 200,
            confidence_updates: 500,
            migration_entries: 50_000,
            migration_tenants: 10,
            migration_rounds: 1,
            scaling_sizes: vec![10_000, 50_000],
            scaling_queries: 50,
            python_sizes: PythonSizes {
                seq_creates: 300,
                bulk_creates: 4_000,
                gets: 300,
                range_queries: 20,
                counts: 300,
                memories: 100,
                confidence_updates: 300,
                migration_entries: 2_000,
                rounds: 1,
            },
            plot: std::env::temp_dir()
                .join("popoto-benchmarks-quick.png")
                .into(),
            ..Config::full()
        }
    }

    /// Tiny sizes for the smoke test: every code path once, no Python, no child process.
    pub fn tiny() -> Config {
        Config {
            rounds: 1,
            seq_creates: 50,
            bulk_creates: 100,
            tenant_rows: 50,
            gets: 20,
            range_queries: 5,
            range_rows: 10,
            counts: 20,
            memories: 10,
            confidence_updates: 20,
            migration_entries: 1_000,
            migration_tenants: 4,
            migration_rounds: 1,
            scaling_sizes: vec![100, 200],
            scaling_queries: 5,
            python: None,
            python_sizes: PythonSizes {
                seq_creates: 10,
                bulk_creates: 100,
                gets: 10,
                range_queries: 2,
                counts: 10,
                memories: 5,
                confidence_updates: 10,
                migration_entries: 100,
                rounds: 1,
            },
            child_exe: None,
            plot: None,
            verbose: false,
            only: None,
        }
    }
}

/// `POPOTO_PYTHON`, else the venv that the interop tests create (`<target>/tmp/popoto-venv`)
/// when it exists.
pub fn default_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("POPOTO_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("popoto-venv/bin/python");
    venv.exists().then_some(venv)
}

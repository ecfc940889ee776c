//! The performance suite: popoto-rs against hand-written raw redis-rs and Python popoto 1.10.1.
//!
//! `cargo bench --bench suite` starts a private `redis-server`, and for every operation measures
//! the ORM and a raw redis-rs baseline that stores or reads the same bytes with the commands
//! popoto issues, alternating the two over several rounds and keeping each side's best round,
//! so that machine noise hits both. Then it runs the same workload through Python popoto when
//! its virtualenv is present, measures how a tenant's range query scales with the database
//! size, runs `migrate_to_partitioned` of a large legacy hash in a child process to read its
//! peak resident memory, prints a table and draws `docs/benchmarks.png`.
//!
//! The module is also compiled by `tests/bench_smoke.rs` with tiny sizes ([`Config::tiny`]):
//! that is how CI builds the suite without timing anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use popoto::testing::TestRedis;
use popoto::{Db, DryRun, Key, Model};
use redis::aio::MultiplexedConnection;

#[path = "common/mod.rs"]
mod common;
use common::*;

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
            counts: 5_000,
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
            counts: 1_000,
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
fn default_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("POPOTO_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("popoto-venv/bin/python");
    venv.exists().then_some(venv)
}

// ------------------------------------------------------------------------------- report

/// One operation: ORM, raw redis-rs and (optionally) Python popoto throughput.
#[derive(Debug, Clone)]
pub struct Op {
    /// Name (`seq_create`, `bulk_create`, `get`, `range_query`, `count`, ...).
    pub name: &'static str,
    /// What one operation is (`create`, `query of 200 rows`, `entry`, ...).
    pub unit: String,
    /// Operations in the ORM's best round.
    pub count: u64,
    /// ORM operations per second (best round).
    pub orm_per_sec: f64,
    /// Raw redis-rs operations per second (best round).
    pub raw_per_sec: f64,
    /// Python popoto: operations counted and per second, when it ran.
    pub python: Option<(u64, f64)>,
    /// Median over rounds of ORM / raw throughput, each round running both sides back to back.
    pub paired: Option<f64>,
}

impl Op {
    /// ORM / raw throughput: the median of the paired rounds (robust to the machine speeding
    /// up or slowing down during the run), else the ratio of the best rounds.
    pub fn ratio(&self) -> f64 {
        self.paired.unwrap_or(self.orm_per_sec / self.raw_per_sec)
    }

    /// ORM / Python throughput, when Python ran.
    pub fn python_ratio(&self) -> Option<f64> {
        self.python.map(|(_, p)| self.orm_per_sec / p)
    }
}

/// The scaling tenant's range query at one database size.
#[derive(Debug, Clone)]
pub struct ScalePoint {
    /// Rows (instances) in the database.
    pub rows: usize,
    /// Milliseconds per ORM query (best round).
    pub orm_ms: f64,
    /// Milliseconds per raw query (best round).
    pub raw_ms: f64,
}

/// The large migration's memory.
#[derive(Debug, Clone, Default)]
pub struct MigrationMemory {
    /// Entries moved per run.
    pub entries: u64,
    /// Peak resident memory (VmHWM) of the ORM's migration process, in KiB.
    pub orm_peak_kib: Option<u64>,
    /// Peak resident memory of the raw migration process, in KiB.
    pub raw_peak_kib: Option<u64>,
}

/// What the suite ran on.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Processors available to the suite.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// The private server's `redis_version`.
    pub redis_version: String,
    /// Python popoto's version, when it ran.
    pub popoto_python: Option<String>,
}

/// A floor of the issue and whether it was met.
#[derive(Debug, Clone)]
pub struct Floor {
    /// What is compared.
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// The floor (or ceiling when `at_most`).
    pub bound: f64,
    /// Whether the bound is a ceiling.
    pub at_most: bool,
}

impl Floor {
    /// Whether the measured value is within the bound.
    pub fn met(&self) -> bool {
        if self.at_most {
            self.value <= self.bound
        } else {
            self.value >= self.bound
        }
    }
}

/// Everything the suite measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// One row per operation.
    pub ops: Vec<Op>,
    /// The range query against the database size.
    pub scaling: Vec<ScalePoint>,
    /// The migration's memory.
    pub migration: MigrationMemory,
    /// Why Python popoto did not run, if it did not.
    pub python_note: Option<String>,
    /// The plot, if drawn.
    pub plot: Option<PathBuf>,
    /// Wall time of the whole suite.
    pub elapsed: Duration,
}

impl Report {
    /// The operation named `name`.
    pub fn op(&self, name: &str) -> Option<&Op> {
        self.ops.iter().find(|o| o.name == name)
    }

    /// Slowest / fastest ORM query time along the scaling curve.
    pub fn scaling_spread(&self) -> f64 {
        let times = self.scaling.iter().map(|p| p.orm_ms);
        let max = times.clone().fold(f64::MIN, f64::max);
        let min = times.fold(f64::MAX, f64::min);
        max / min
    }

    /// The floors with the measured values.
    pub fn floors(&self) -> Vec<Floor> {
        let mut out = Vec::new();
        for op in &self.ops {
            out.push(Floor {
                what: format!("{}: ORM / raw redis-rs", op.name),
                value: op.ratio(),
                bound: 0.85,
                at_most: false,
            });
        }
        for (name, bound) in [
            ("seq_create", 8.0),
            ("bulk_create", 50.0),
            ("range_query", 8.0),
        ] {
            if let Some(r) = self.op(name).and_then(Op::python_ratio) {
                out.push(Floor {
                    what: format!("{name}: ORM / Python popoto"),
                    value: r,
                    bound,
                    at_most: false,
                });
            }
        }
        if self.scaling.len() > 1 {
            out.push(Floor {
                what: "range query, slowest / fastest database size".into(),
                value: self.scaling_spread(),
                bound: 1.3,
                at_most: true,
            });
        }
        if let Some(kib) = self.migration.orm_peak_kib {
            out.push(Floor {
                what: format!(
                    "migrate_to_partitioned of {} entries: peak RSS (MB)",
                    self.migration.entries
                ),
                value: kib as f64 / 1024.0,
                bound: 200.0,
                at_most: true,
            });
        }
        out
    }

    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let m = &self.machine;
        let _ = writeln!(
            s,
            "Machine: {} CPUs ({}), redis-server {}{}; suite wall time {:.0} s.\n",
            m.cpus,
            m.cpu_model,
            m.redis_version,
            m.popoto_python
                .as_ref()
                .map(|v| format!(", Python popoto {v}"))
                .unwrap_or_default(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "| operation | unit | popoto-rs /s | raw redis-rs /s | ORM / raw | Python popoto /s | ORM / Python |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        for op in &self.ops {
            let (py, pyr) = match (op.python, op.python_ratio()) {
                (Some((_, p)), Some(r)) => (fmt_rate(p), format!("{r:.1}x")),
                _ => ("n/a".into(), "n/a".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} | {} | {} |",
                op.name,
                op.unit,
                fmt_rate(op.orm_per_sec),
                fmt_rate(op.raw_per_sec),
                op.ratio(),
                py,
                pyr
            );
        }
        let _ = writeln!(
            s,
            "\nRates are each side's best round. ORM / raw is the median of the rounds' ratios, \
             each round running both sides back to back (so a change of machine speed during \
             the run does not count); ORM / Python is the ratio of best rounds."
        );
        if !self.scaling.is_empty() {
            let _ = writeln!(
                s,
                "\n| rows in the database | popoto-rs ms / query | raw ms / query | ORM / raw |"
            );
            let _ = writeln!(s, "|---:|---:|---:|---:|");
            for p in &self.scaling {
                let _ = writeln!(
                    s,
                    "| {} | {:.3} | {:.3} | {:.2} |",
                    fmt_int(p.rows as u64),
                    p.orm_ms,
                    p.raw_ms,
                    p.raw_ms / p.orm_ms
                );
            }
            let _ = writeln!(
                s,
                "\nSlowest / fastest ORM query time: {:.2}",
                self.scaling_spread()
            );
        }
        let mm = &self.migration;
        let kib = |k: Option<u64>| {
            k.map_or("not measured".into(), |k| {
                format!("{:.1} MB", k as f64 / 1024.0)
            })
        };
        let _ = writeln!(
            s,
            "\nmigrate_to_partitioned of {} entries: peak resident memory {} (raw redis-rs: {}).",
            fmt_int(mm.entries),
            kib(mm.orm_peak_kib),
            kib(mm.raw_peak_kib)
        );
        if let Some(note) = &self.python_note {
            let _ = writeln!(s, "\nPython popoto: {note}");
        }
        let _ = writeln!(s, "\n| floor | measured | bound | met |");
        let _ = writeln!(s, "|---|---:|---:|---|");
        for f in self.floors() {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} {} | {} |",
                f.what,
                f.value,
                if f.at_most { "<=" } else { ">=" },
                f.bound,
                if f.met() { "yes" } else { "**no**" }
            );
        }
        s
    }
}

fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `10k`, `100k`, `1M`, ...
fn fmt_rows(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", (x / 1e5).round() / 10.0)
    } else if x >= 1e3 {
        format!("{}k", (x / 1e2).round() / 10.0)
    } else {
        format!("{}", x.round())
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        fmt_int(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

// ------------------------------------------------------------------------------- timing

/// Runs `orm` and `raw` once each untimed (with more than one round), then `rounds` times
/// each, alternating which goes first; returns each side's shortest round and the median of
/// the rounds' ORM / raw ratios.
async fn duel<O, R>(rounds: usize, mut orm: O, mut raw: R) -> Res<(Duration, Duration, f64)>
where
    O: AsyncFnMut() -> Res<()>,
    R: AsyncFnMut() -> Res<()>,
{
    let (mut best_orm, mut best_raw) = (Duration::MAX, Duration::MAX);
    let mut pairs = Vec::with_capacity(rounds.max(1));
    if rounds > 1 {
        // Warm-up, not timed: connections dialed, scripts loaded, caches and clocks up.
        orm().await?;
        raw().await?;
    }
    for round in 0..rounds.max(1) {
        let (mut this_orm, mut this_raw) = (Duration::ZERO, Duration::ZERO);
        for side in [round % 2, 1 - round % 2] {
            let start = Instant::now();
            if side == 0 {
                orm().await?;
                this_orm = start.elapsed();
                best_orm = best_orm.min(this_orm);
            } else {
                raw().await?;
                this_raw = start.elapsed();
                best_raw = best_raw.min(this_raw);
            }
        }
        pairs.push((this_orm, this_raw));
    }
    Ok((best_orm, best_raw, median_ratio(&pairs)))
}

fn progress(cfg: &Config, what: impl std::fmt::Display) {
    if cfg.verbose {
        eprintln!("[suite] {what}");
    }
}

// ------------------------------------------------------------------------------- setup helpers

async fn flushdb(conn: &mut MultiplexedConnection) -> Res<()> {
    redis::cmd("FLUSHDB").query_async::<()>(conn).await?;
    Ok(())
}

/// Every key of the database with its content, for the byte-equality check.
async fn dump(conn: &mut MultiplexedConnection) -> Res<BTreeMap<String, String>> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await?;
    let mut out = BTreeMap::new();
    for k in keys {
        let ty: String = redis::cmd("TYPE").arg(&k).query_async(conn).await?;
        let content = match ty.as_str() {
            "hash" => {
                let mut h: Vec<(Vec<u8>, Vec<u8>)> =
                    redis::cmd("HGETALL").arg(&k).query_async(conn).await?;
                h.sort();
                format!("{h:?}")
            }
            "set" => {
                let mut m: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&k).query_async(conn).await?;
                m.sort();
                format!("{m:?}")
            }
            "zset" => {
                let z: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await?;
                format!("{z:?}")
            }
            other => format!("<{other}>"),
        };
        out.insert(k, content);
    }
    Ok(out)
}

/// The raw baseline writes exactly the bytes the ORM writes, and reads them back alike.
async fn check_equivalence(db: &Db, conn: &mut MultiplexedConnection) -> Res<()> {
    let id = "0123456789abcdef0123456789abcdef";
    let value = Episode {
        project_id: "eqv".into(),
        episode_id: id.into(),
        title: "same bytes".into(),
        score: 0.1 + 0.2,
    };
    flushdb(conn).await?;
    db.tenant("eqv")?.create(value.clone()).await?;
    let orm = dump(conn).await?;
    flushdb(conn).await?;
    let t = RawTenant::new("eqv");
    let mut pipe = redis::pipe();
    pipe.atomic();
    raw_create_cmds(&mut pipe, &t, id, &value.title, value.score);
    pipe.query_async::<()>(conn).await?;
    let raw = dump(conn).await?;
    check(
        orm == raw,
        format!("raw create differs from the ORM's:\n{orm:#?}\n{raw:#?}"),
    )?;
    let got = raw_get(conn, &t.key(id)).await?;
    check(got.as_ref() == Some(&value), "raw get decodes differently")?;
    let orm_got = db.tenant("eqv")?.get(&Episode::key_of("eqv", id)).await?;
    check(orm_got == got, "ORM and raw get differ")?;
    flushdb(conn).await?;
    Ok(())
}

/// `n` episodes spread over `tenants` tenants (`t0`, `t1`, ...), scores `0 .. 1` per tenant.
fn bulk_values(n: usize, tenants: usize) -> Vec<Episode> {
    let per = n.div_ceil(tenants).max(1) as f64;
    (0..n)
        .map(|i| Episode {
            project_id: format!("t{}", i % tenants),
            title: format!("episode {i}"),
            score: (i / tenants) as f64 / per,
            ..Default::default()
        })
        .collect()
}

/// Fills the database with raw, layout-identical rows of filler tenants until it holds
/// `target` episodes (`have` so far); pipelined, 1,000 rows per round trip.
async fn fill(
    conn: &mut MultiplexedConnection,
    have: &mut usize,
    target: usize,
    tenant_rows: usize,
) -> Res<()> {
    let mut pipe = redis::pipe();
    let mut queued = 0;
    let mut tenant = RawTenant::new(&format!("f{}", *have / tenant_rows));
    while *have < target {
        if have.is_multiple_of(tenant_rows) {
            tenant = RawTenant::new(&format!("f{}", *have / tenant_rows));
        }
        let i = *have % tenant_rows;
        raw_create_cmds(
            &mut pipe,
            &tenant,
            &new_id(),
            &format!("filler {i}"),
            i as f64 / tenant_rows as f64,
        );
        *have += 1;
        queued += 1;
        if queued == 1000 {
            pipe.query_async::<()>(conn).await?;
            pipe = redis::pipe();
            queued = 0;
        }
    }
    if queued > 0 {
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

/// The instance hashes and the legacy companion hash of `entries` memories.
async fn build_legacy(
    conn: &mut MultiplexedConnection,
    entries: usize,
    tenants: usize,
    with_instances: bool,
) -> Res<()> {
    let initial = initial_entry();
    let mut pipe = redis::pipe();
    let mut legacy = redis::cmd("HSET");
    legacy.arg(LEGACY);
    let mut queued = 0;
    for i in 0..entries {
        let m = Memory {
            project: format!("p{}", i % tenants.max(1)),
            key: format!("k{i:08}"),
            content: "legacy".into(),
            certainty: 0.5,
        };
        let record = m.to_record()?;
        let key = Memory::key_of(m.project.as_str(), m.key.as_str()).redis_key();
        if with_instances {
            let hset = pipe.cmd("HSET").arg(&key);
            for (f, v) in Memory::META.fields.iter().zip(&record.values) {
                hset.arg(f.name).arg(&v[..]);
            }
            hset.ignore();
        }
        legacy.arg(&key).arg(&initial[..]);
        queued += 1;
        if queued == 1000 {
            pipe.add_command(legacy).ignore();
            pipe.query_async::<()>(conn).await?;
            pipe = redis::pipe();
            legacy = redis::cmd("HSET");
            legacy.arg(LEGACY);
            queued = 0;
        }
    }
    if queued > 0 {
        pipe.add_command(legacy).ignore();
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

/// Deletes every partition hash, so the legacy hash can be rebuilt for the next run.
async fn reset_partitions(conn: &mut MultiplexedConnection, tenants: usize) -> Res<()> {
    let mut pipe = redis::pipe();
    for t in 0..tenants.max(1) {
        pipe.cmd("DEL").arg(format!("{LEGACY}:p{t}")).ignore();
    }
    pipe.cmd("DEL").arg(LEGACY).ignore();
    pipe.query_async::<()>(conn).await?;
    Ok(())
}

// ------------------------------------------------------------------------------- migration

/// Which migration a (child) run performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationSide {
    /// `db.admin().migrate_to_partitioned::<Memory>(..)`.
    Orm,
    /// [`raw_migrate`].
    Raw,
}

impl MigrationSide {
    fn name(self) -> &'static str {
        match self {
            MigrationSide::Orm => "orm",
            MigrationSide::Raw => "raw",
        }
    }
}

/// Runs one migration against `url`: entries moved and seconds taken.
pub async fn migrate_once(url: &str, side: MigrationSide) -> Res<(u64, f64)> {
    match side {
        MigrationSide::Orm => {
            let db = Db::connect(url).await?;
            let start = Instant::now();
            let report = db
                .admin()
                .migrate_to_partitioned::<Memory>(Memory::certainty(), DryRun::No, |_| {})
                .await?;
            let secs = start.elapsed().as_secs_f64();
            check(
                report.errors.is_empty(),
                format!("migration errors: {:?}", report.errors.first()),
            )?;
            Ok((report.migrated, secs))
        }
        MigrationSide::Raw => {
            let client = redis::Client::open(url)?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&raw_config())
                .await?;
            let start = Instant::now();
            let moved = raw_migrate(&mut conn).await?;
            Ok((moved, start.elapsed().as_secs_f64()))
        }
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The child process's entry point: `--migrate-child URL orm|raw`; prints one result line.
pub async fn migrate_child(url: &str, side: &str) -> Res<()> {
    let side = match side {
        "orm" => MigrationSide::Orm,
        "raw" => MigrationSide::Raw,
        other => return Err(format!("unknown migration side {other:?}").into()),
    };
    let (moved, secs) = migrate_once(url, side).await?;
    println!(
        "MIGRATED {moved} {secs} {}",
        peak_rss_kib().unwrap_or_default()
    );
    Ok(())
}

/// Runs one migration in a child process (or in this one without `exe`).
async fn migrate_run(
    exe: Option<&Path>,
    url: &str,
    side: MigrationSide,
) -> Res<(u64, f64, Option<u64>)> {
    let Some(exe) = exe else {
        let (moved, secs) = migrate_once(url, side).await?;
        return Ok((moved, secs, None));
    };
    let exe = exe.to_path_buf();
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .arg("--migrate-child")
            .arg(url)
            .arg(side.name())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MIGRATED "))
        .ok_or_else(|| {
            format!(
                "the migration child printed no result (status {}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    check(parts.len() == 3, format!("bad child result {line:?}"))?;
    Ok((
        parts[0].parse()?,
        parts[1].parse()?,
        Some(parts[2].parse()?),
    ))
}

// ------------------------------------------------------------------------------- the suite

/// Runs the suite; panics with the cause if anything fails (a benchmark has nobody to report to).
pub async fn run(cfg: &Config) -> Report {
    match try_run(cfg).await {
        Ok(r) => r,
        Err(e) => panic!("benchmark suite failed: {e}"),
    }
}

async fn try_run(cfg: &Config) -> Res<Report> {
    let started = Instant::now();
    let server = TestRedis::start()?;
    let url = server.url().to_owned();
    let db = Db::connect(&url).await?;
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&raw_config())
        .await?;
    let mut report = Report {
        machine: machine(&mut conn).await?,
        ..Report::default()
    };
    check_equivalence(&db, &mut conn).await?;
    let mut python_ops = BTreeMap::new();
    if cfg.wants("seq_create") {
        report.ops.push(seq_create(cfg, &db, &mut conn).await?);
    }
    let reads = ["get", "range_query", "count", "or_query", "cursor_page"];
    if cfg.wants("bulk_create") || reads.iter().any(|r| cfg.wants(r)) {
        let (bulk, t0_ids) = bulk_create(cfg, &db, &mut conn).await?;
        if cfg.wants("bulk_create") {
            report.ops.push(bulk);
        }
        check(!t0_ids.is_empty(), "tenant t0 has no rows")?;
        if cfg.wants("get") {
            report.ops.push(get(cfg, &db, &mut conn, &t0_ids).await?);
        }
        if cfg.wants("range_query") {
            report
                .ops
                .push(range_query(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
        if cfg.wants("count") {
            report
                .ops
                .push(count(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
        if cfg.wants("or_query") {
            report
                .ops
                .push(or_query(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
        if cfg.wants("cursor_page") {
            report
                .ops
                .push(cursor_page(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
    }
    if cfg.wants("confidence_update") {
        report
            .ops
            .push(confidence_update(cfg, &db, &mut conn).await?);
    }
    // Python popoto: the same workload on database 1 of the same server.
    if cfg.wants("python") {
        match &cfg.python {
            None => report.python_note = Some("not run (no virtualenv with popoto 1.10.1)".into()),
            Some(python) => {
                progress(cfg, format!("Python popoto via {}", python.display()));
                match run_python(python, &server.url_db(1), cfg).await {
                    Ok((version, ops)) => {
                        report.machine.popoto_python = Some(version);
                        for o in &mut report.ops {
                            if let Some(p) = ops.get(o.name) {
                                o.python = Some(*p);
                            }
                        }
                        report.python_note = ops.get("migrate_to_partitioned").map(|(n, _)| {
                            format!(
                                "smaller sizes than the Rust runs (rates per operation); its migration moved {} entries (popoto loads the whole legacy hash into memory)",
                                fmt_int(*n)
                            )
                        });
                        python_ops = ops;
                    }
                    Err(e) => {
                        eprintln!("[suite] Python popoto skipped: {e}");
                        report.python_note = Some(format!("skipped: {e}"));
                    }
                }
            }
        }
    }
    if cfg.wants("migrate_to_partitioned") {
        let (mut op, memory) = migration(cfg, &url, &mut conn).await?;
        op.python = python_ops.get("migrate_to_partitioned").copied();
        report.ops.push(op);
        report.migration = memory;
    }
    if cfg.wants("scaling") {
        report.scaling = scaling(cfg, &db, &mut conn).await?;
    }
    flushdb(&mut conn).await?;
    report.elapsed = started.elapsed();
    if let Some(path) = &cfg.plot {
        plot(&report, path)?;
        report.plot = Some(path.clone());
    }
    Ok(report)
}

async fn seq_create(cfg: &Config, db: &Db, conn: &mut MultiplexedConnection) -> Res<Op> {
    let n = cfg.seq_creates;
    progress(cfg, format!("sequential create: {n} per round"));
    let t = db.tenant("seqo")?;
    let raw_t = RawTenant::new("seqr");
    let d = duel(
        cfg.rounds,
        async || {
            for i in 0..n {
                t.create(Episode {
                    title: format!("episode {i}"),
                    score: i as f64 / n as f64,
                    ..Default::default()
                })
                .await?;
            }
            Ok(())
        },
        async || {
            for i in 0..n {
                raw_create(conn, &raw_t, &format!("episode {i}"), i as f64 / n as f64).await?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("seq_create", "create", n, d))
}

/// Bulk create, each round on an empty database (raw first, so the ORM's rows stay for the
/// reads); returns the ids of tenant `t0`.
async fn bulk_create(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
) -> Res<(Op, Vec<String>)> {
    let n = cfg.bulk_creates;
    let tenants = (n / cfg.tenant_rows).max(1);
    progress(
        cfg,
        format!("bulk create: {n} instances over {tenants} tenants"),
    );
    let (mut best_orm, mut best_raw) = (Duration::MAX, Duration::MAX);
    let mut pairs = Vec::new();
    let mut created = Vec::new();
    let raw_tenants: Vec<RawTenant> = (0..tenants)
        .map(|i| RawTenant::new(&format!("t{i}")))
        .collect();
    for _ in 0..cfg.rounds.clamp(1, 5) {
        let values = bulk_values(n, tenants);
        flushdb(conn).await?;
        let start = Instant::now();
        for (c, rows) in values.chunks(1000).enumerate() {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (j, v) in rows.iter().enumerate() {
                let t = &raw_tenants[(c * 1000 + j) % tenants];
                raw_create_cmds(&mut pipe, t, &new_id(), &v.title, v.score);
            }
            pipe.query_async::<()>(conn).await?;
        }
        let raw = start.elapsed();
        best_raw = best_raw.min(raw);
        flushdb(conn).await?;
        // The previous round's instances go first: 100,000 live values would slow the next
        // round's allocations (the raw side keeps nothing either).
        drop(std::mem::take(&mut created));
        let start = Instant::now();
        created = db.admin().create_many(values).await?;
        let orm = start.elapsed();
        best_orm = best_orm.min(orm);
        pairs.push((orm, raw));
    }
    let ids = created
        .into_iter()
        .filter(|e| e.project_id == "t0")
        .map(|e| e.episode_id)
        .collect();
    Ok((
        op(
            "bulk_create",
            "create",
            n,
            (best_orm, best_raw, median_ratio(&pairs)),
        ),
        ids,
    ))
}

async fn get(cfg: &Config, db: &Db, conn: &mut MultiplexedConnection, ids: &[String]) -> Res<Op> {
    let n = cfg.gets;
    progress(cfg, format!("get by key: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let keys: Vec<Key<Episode>> = ids
        .iter()
        .map(|id| Episode::key_of("t0", id.as_str()))
        .collect();
    let d = duel(
        cfg.rounds,
        async || {
            for i in 0..n {
                let got = t0.get(&keys[i % keys.len()]).await?;
                check(got.is_some(), "ORM get found nothing")?;
            }
            Ok(())
        },
        async || {
            for i in 0..n {
                let got = raw_get(conn, &raw_t0.key(&ids[i % ids.len()])).await?;
                check(got.is_some(), "raw get found nothing")?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("get", "get", n, d))
}

async fn range_query(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    tenant_rows: usize,
) -> Res<Op> {
    let n = cfg.range_queries;
    let rows = cfg.range_rows.min(tenant_rows / 2).max(1);
    progress(cfg, format!("range query of {rows} rows: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let d = duel(
        cfg.rounds,
        async || {
            for _ in 0..n {
                let got = orm_range(&t0, rows).await?;
                check(
                    got.len() == rows,
                    format!("ORM range returned {}", got.len()),
                )?;
            }
            Ok(())
        },
        async || {
            for _ in 0..n {
                let got = raw_range(conn, &raw_t0, 0.5, rows).await?;
                check(
                    got.len() == rows,
                    format!("raw range returned {}", got.len()),
                )?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("range_query", &format!("query of {rows} rows"), n, d))
}

async fn count(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    expected: usize,
) -> Res<Op> {
    let n = cfg.counts;
    progress(cfg, format!("count: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let d = duel(
        cfg.rounds,
        async || {
            for _ in 0..n {
                let got = t0.query::<Episode>().count().await?;
                check(got == expected, "ORM count")?;
            }
            Ok(())
        },
        async || {
            for _ in 0..n {
                let got: usize = redis::cmd("SCARD")
                    .arg(&raw_t0.keyf)
                    .query_async(conn)
                    .await?;
                check(got == expected, "raw count")?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("count", "count", n, d))
}

/// An OR of two ranges of tenant t0's partition (its lowest and highest scores, about
/// `range_rows` rows in all): the ORM's server-side OR script against a pipeline of the two
/// ranges, a client-side union and the rows, as hand-written code would do it.
async fn or_query(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    tenant_rows: usize,
) -> Res<Op> {
    let n = cfg.range_queries;
    let half = cfg.range_rows.min(tenant_rows / 2).max(2) as f64 / 2.0 / tenant_rows as f64;
    let (low, high) = (half, 1.0 - half);
    progress(cfg, format!("OR of two ranges: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let expected = t0
        .query::<Episode>()
        .filter(Episode::score().lt(low) | Episode::score().gte(high))
        .count()
        .await?;
    check(expected > 0, "the OR query selects rows")?;
    let d = duel(
        cfg.rounds,
        async || {
            for _ in 0..n {
                let got = t0
                    .query::<Episode>()
                    .filter(Episode::score().lt(low) | Episode::score().gte(high))
                    .fetch()
                    .await?;
                check(got.len() == expected, "ORM OR query")?;
            }
            Ok(())
        },
        async || {
            for _ in 0..n {
                let (a, b): (Vec<Vec<u8>>, Vec<Vec<u8>>) = redis::pipe()
                    .cmd("ZRANGEBYSCORE")
                    .arg(&raw_t0.sortf)
                    .arg("-inf")
                    .arg(format!("({low}"))
                    .cmd("ZRANGEBYSCORE")
                    .arg(&raw_t0.sortf)
                    .arg(high)
                    .arg("+inf")
                    .query_async(conn)
                    .await?;
                let mut keys = a;
                for k in b {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HGETALL").arg(k);
                }
                let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = pipe.query_async(conn).await?;
                let rows: Vec<Episode> = hashes.into_iter().map(raw_decode).collect();
                check(rows.len() == expected, "raw OR query")?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op(
        "or_query",
        &format!("OR query of {expected} rows"),
        n,
        d,
    ))
}

/// Cursor pages of `range_rows` rows through tenant t0's partition by score (from the start
/// again at the end): the ORM's `page` against `ZRANGEBYSCORE (last +inf LIMIT` and the rows.
async fn cursor_page(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    tenant_rows: usize,
) -> Res<Op> {
    let n = cfg.range_queries;
    let rows = cfg.range_rows.min(tenant_rows / 2).max(1);
    progress(cfg, format!("cursor page of {rows} rows: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let d = duel(
        cfg.rounds,
        async || {
            let mut cursor: Option<popoto::Cursor> = None;
            for _ in 0..n {
                let page = t0
                    .query::<Episode>()
                    .order_by(Episode::score())
                    .page(cursor.as_ref(), rows)
                    .await?;
                check(!page.rows.is_empty(), "ORM cursor page")?;
                cursor = page.next;
            }
            Ok(())
        },
        async || {
            let mut last: Option<f64> = None;
            for _ in 0..n {
                let from = last.map_or("-inf".to_owned(), |s| format!("({s}"));
                // One member more than the page tells whether another page follows.
                let mut page: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGEBYSCORE")
                    .arg(&raw_t0.sortf)
                    .arg(from)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(rows + 1)
                    .query_async(conn)
                    .await?;
                let more = page.len() > rows;
                page.truncate(rows);
                let mut pipe = redis::pipe();
                for (k, _) in &page {
                    pipe.cmd("HGETALL").arg(k);
                }
                let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = pipe.query_async(conn).await?;
                let got: Vec<Episode> = hashes.into_iter().map(raw_decode).collect();
                check(!got.is_empty(), "raw cursor page")?;
                last = more.then(|| page[rows - 1].1);
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("cursor_page", &format!("page of {rows} rows"), n, d))
}

async fn confidence_update(cfg: &Config, db: &Db, conn: &mut MultiplexedConnection) -> Res<Op> {
    let n = cfg.confidence_updates;
    progress(cfg, format!("confidence update: {n} per round"));
    let conf = db.tenant("conf")?;
    let memories = conf
        .create_many(
            (0..cfg.memories.max(1))
                .map(|i| Memory {
                    key: format!("m{i}"),
                    content: format!("memory {i}"),
                    ..Default::default()
                })
                .collect(),
        )
        .await?;
    let members: Vec<String> = memories
        .iter()
        .map(|m| Memory::key_of(m.project.as_str(), m.key.as_str()).redis_key())
        .collect();
    let companion = format!("{LEGACY}:conf");
    let d = duel(
        cfg.rounds,
        async || {
            for i in 0..n {
                let m = &memories[i % memories.len()];
                conf.confidence(m, Memory::certainty())?
                    .update((i % 10) as f64 / 10.0)
                    .await?;
            }
            Ok(())
        },
        async || {
            for i in 0..n {
                let member = &members[i % members.len()];
                raw_confidence(conn, &companion, member, (i % 10) as f64 / 10.0).await?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("confidence_update", "update", n, d))
}

/// `migrate_to_partitioned` of a legacy hash of `migration_entries`, ORM and raw alternately,
/// each run in a child process (when `child_exe` is set) that reports its peak memory.
async fn migration(
    cfg: &Config,
    url: &str,
    conn: &mut MultiplexedConnection,
) -> Res<(Op, MigrationMemory)> {
    let n = cfg.migration_entries;
    let tenants = cfg.migration_tenants;
    progress(
        cfg,
        format!("migrate_to_partitioned: building {n} legacy entries"),
    );
    flushdb(conn).await?;
    build_legacy(conn, n, tenants, true).await?;
    let (mut best_orm, mut best_raw) = (f64::MAX, f64::MAX);
    let mut pairs = Vec::new();
    let mut memory = MigrationMemory {
        entries: n as u64,
        ..MigrationMemory::default()
    };
    for round in 0..cfg.migration_rounds.max(1) {
        let mut pair = (Duration::ZERO, Duration::ZERO);
        for side in [round % 2, 1 - round % 2] {
            let side = if side == 0 {
                MigrationSide::Orm
            } else {
                MigrationSide::Raw
            };
            // The previous run emptied the legacy hash: rebuild it (the instances stay).
            let len: u64 = redis::cmd("HLEN").arg(LEGACY).query_async(conn).await?;
            if len == 0 {
                reset_partitions(conn, tenants).await?;
                build_legacy(conn, n, tenants, false).await?;
            }
            progress(cfg, format!("migrate_to_partitioned: {} run", side.name()));
            let (moved, secs, peak) = migrate_run(cfg.child_exe.as_deref(), url, side).await?;
            check(
                moved == n as u64,
                format!("{} migration moved {moved} of {n}", side.name()),
            )?;
            let left: u64 = redis::cmd("HLEN").arg(LEGACY).query_async(conn).await?;
            check(left == 0, format!("{left} legacy entries left"))?;
            match side {
                MigrationSide::Orm => {
                    best_orm = best_orm.min(secs);
                    pair.0 = Duration::from_secs_f64(secs);
                    memory.orm_peak_kib = memory.orm_peak_kib.max(peak);
                }
                MigrationSide::Raw => {
                    best_raw = best_raw.min(secs);
                    pair.1 = Duration::from_secs_f64(secs);
                    memory.raw_peak_kib = memory.raw_peak_kib.max(peak);
                }
            }
        }
        pairs.push(pair);
    }
    flushdb(conn).await?;
    let op = Op {
        name: "migrate_to_partitioned",
        unit: "entry".into(),
        count: n as u64,
        orm_per_sec: n as f64 / best_orm,
        raw_per_sec: n as f64 / best_raw,
        python: None,
        paired: Some(median_ratio(&pairs)).filter(|r| r.is_finite()),
    };
    Ok((op, memory))
}

/// One tenant of `tenant_rows` rows, its range query timed while filler tenants grow the
/// database to each of `scaling_sizes`.
async fn scaling(cfg: &Config, db: &Db, conn: &mut MultiplexedConnection) -> Res<Vec<ScalePoint>> {
    progress(cfg, "scaling: range query while the database grows");
    flushdb(conn).await?;
    let scale = db.tenant("scale")?;
    let raw_scale = RawTenant::new("scale");
    let per = cfg.tenant_rows;
    scale
        .create_many(
            (0..per)
                .map(|i| Episode {
                    title: format!("episode {i}"),
                    score: i as f64 / per as f64,
                    ..Default::default()
                })
                .collect(),
        )
        .await?;
    let rows = cfg.range_rows.min(per / 2).max(1);
    let mut have = per;
    let mut points = Vec::new();
    for &size in &cfg.scaling_sizes {
        progress(cfg, format!("scaling: filling to {size} rows"));
        fill(conn, &mut have, size, per).await?;
        let dbsize: usize = redis::cmd("SCARD")
            .arg("$Class:Episode")
            .query_async(conn)
            .await?;
        let n = cfg.scaling_queries;
        let (orm, raw, _) = duel(
            cfg.rounds,
            async || {
                for _ in 0..n {
                    check(
                        orm_range(&scale, rows).await?.len() == rows,
                        "ORM scaling range",
                    )?;
                }
                Ok(())
            },
            async || {
                for _ in 0..n {
                    check(
                        raw_range(conn, &raw_scale, 0.5, rows).await?.len() == rows,
                        "raw scaling range",
                    )?;
                }
                Ok(())
            },
        )
        .await?;
        points.push(ScalePoint {
            rows: dbsize,
            orm_ms: orm.as_secs_f64() * 1000.0 / n as f64,
            raw_ms: raw.as_secs_f64() * 1000.0 / n as f64,
        });
    }
    Ok(points)
}

/// The tenant's range query through the ORM: `score >= 0.5`, the first `rows` rows.
async fn orm_range(t: &popoto::Session, rows: usize) -> Res<Vec<Episode>> {
    Ok(t.query::<Episode>()
        .filter(Episode::score().gte(0.5))
        .limit(rows)
        .fetch()
        .await?)
}

fn op(
    name: &'static str,
    unit: &str,
    n: usize,
    (orm, raw, paired): (Duration, Duration, f64),
) -> Op {
    Op {
        name,
        unit: unit.into(),
        count: n as u64,
        orm_per_sec: per_sec(n, orm),
        raw_per_sec: per_sec(n, raw),
        python: None,
        paired: paired.is_finite().then_some(paired),
    }
}

async fn machine(conn: &mut MultiplexedConnection) -> Res<Machine> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let redis_version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Ok(Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        redis_version,
        popoto_python: None,
    })
}

/// Runs `benches/popoto_bench.py` against `url`: popoto's version and (ops, ops/s) per name.
async fn run_python(
    python: &Path,
    url: &str,
    cfg: &Config,
) -> Res<(String, BTreeMap<String, (u64, f64)>)> {
    let p = &cfg.python_sizes;
    let sizes = serde_json::json!({
        "seq_create": p.seq_creates,
        "bulk_create": p.bulk_creates,
        "tenant_rows": cfg.tenant_rows,
        "gets": p.gets,
        "range_queries": p.range_queries,
        "range_rows": cfg.range_rows,
        "counts": p.counts,
        "memories": p.memories,
        "confidence_updates": p.confidence_updates,
        "migration_entries": p.migration_entries,
        "rounds": p.rounds,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/popoto_bench.py");
    let (python, url) = (python.to_path_buf(), url.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(sizes.to_string())
            .env("REDIS_URL", url)
            .output()
    })
    .await??;
    if !out.status.success() {
        return Err(format!(
            "popoto_bench.py exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let version = v["popoto"].as_str().unwrap_or("?").to_owned();
    let mut ops = BTreeMap::new();
    if let Some(map) = v["ops"].as_object() {
        for (name, o) in map {
            let n = o["ops"].as_u64().unwrap_or_default();
            let secs = o["secs"].as_f64().unwrap_or(f64::INFINITY);
            ops.insert(name.clone(), (n, n as f64 / secs));
        }
    }
    Ok((version, ops))
}

// ------------------------------------------------------------------------------- plot

fn short_name(name: &str) -> &str {
    match name {
        "seq_create" => "create",
        "bulk_create" => "bulk create",
        "range_query" => "range query",
        "confidence_update" => "confidence",
        "migrate_to_partitioned" => "migrate",
        other => other,
    }
}

/// Draws the report: ORM / raw per operation, ORM / Python, and the scaling curve.
pub fn plot(report: &Report, path: &Path) -> Res<()> {
    use plotters::prelude::*;
    register_fonts()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (1500, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let m = &report.machine;
    let title = format!(
        "popoto-rs benchmarks: {} CPUs ({}), redis-server {}{}",
        m.cpus,
        m.cpu_model,
        m.redis_version,
        m.popoto_python
            .as_ref()
            .map(|v| format!(", Python popoto {v}"))
            .unwrap_or_default()
    );
    let body = root.titled(&title, ("sans-serif", 22)).map_err(plot_err)?;
    let panels = body.split_evenly((1, 3));
    let label = ("sans-serif", 13);

    // 1. ORM / raw redis-rs.
    {
        let ops = &report.ops;
        let n = ops.len().max(1) as u32;
        let ymax = ops.iter().map(Op::ratio).fold(1.2, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("popoto-rs / raw redis-rs throughput", ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d((0u32..n.max(2) - 1).into_segmented(), 0f64..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n as usize)
            .x_label_style(label)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => ops
                    .get(*i as usize)
                    .map_or(String::new(), |o| short_name(o.name).to_owned()),
                _ => String::new(),
            })
            .y_desc("ratio (1 = as fast as raw)")
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(ops.iter().enumerate().map(|(i, o)| {
                let i = i as u32;
                let color = if o.ratio() >= 0.85 { BLUE } else { RED };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), o.ratio()),
                    ],
                    color.mix(0.6).filled(),
                );
                bar.set_margin(0, 0, 6, 6);
                bar
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(ops.iter().enumerate().map(|(i, o)| {
                Text::new(
                    format!("{:.2}", o.ratio()),
                    (SegmentValue::CenterOf(i as u32), o.ratio() + ymax * 0.03),
                    ("sans-serif", 13).into_font(),
                )
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                [
                    (SegmentValue::Exact(0), 0.85),
                    (SegmentValue::Exact(n), 0.85),
                ],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?
            .label("floor 0.85")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(label)
            .draw()
            .map_err(plot_err)?;
    }

    // 2. ORM / Python popoto (log scale).
    {
        let ops: Vec<&Op> = report.ops.iter().filter(|o| o.python.is_some()).collect();
        if ops.is_empty() {
            panels[1]
                .draw(&Text::new(
                    "Python popoto not run",
                    (120, 250),
                    ("sans-serif", 18).into_font(),
                ))
                .map_err(plot_err)?;
        } else {
            let n = ops.len() as u32;
            let ymax = ops
                .iter()
                .filter_map(|o| o.python_ratio())
                .fold(60.0, f64::max)
                * 2.0;
            let mut chart = ChartBuilder::on(&panels[1])
                .caption("popoto-rs / Python popoto throughput", ("sans-serif", 17))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(45)
                .build_cartesian_2d(
                    (0u32..n.max(2) - 1).into_segmented(),
                    (1f64..ymax).log_scale(),
                )
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(n as usize)
                .x_label_style(label)
                .x_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => ops
                        .get(*i as usize)
                        .map_or(String::new(), |o| short_name(o.name).to_owned()),
                    _ => String::new(),
                })
                .y_desc("times faster (log scale)")
                .draw()
                .map_err(plot_err)?;
            chart
                .draw_series(ops.iter().enumerate().map(|(i, o)| {
                    let i = i as u32;
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), 1.0),
                            (SegmentValue::Exact(i + 1), o.python_ratio().unwrap_or(1.0)),
                        ],
                        GREEN.mix(0.6).filled(),
                    );
                    bar.set_margin(0, 0, 6, 6);
                    bar
                }))
                .map_err(plot_err)?;
            chart
                .draw_series(ops.iter().enumerate().map(|(i, o)| {
                    let r = o.python_ratio().unwrap_or(1.0);
                    Text::new(
                        format!("{r:.0}x"),
                        (SegmentValue::CenterOf(i as u32), r * 1.15),
                        ("sans-serif", 13).into_font(),
                    )
                }))
                .map_err(plot_err)?;
            let floors: Vec<(u32, f64)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, o)| {
                    let bound = match o.name {
                        "seq_create" | "range_query" => 8.0,
                        "bulk_create" => 50.0,
                        _ => return None,
                    };
                    Some((i as u32, bound))
                })
                .collect();
            for (k, (i, bound)) in floors.iter().enumerate() {
                let series = chart
                    .draw_series(LineSeries::new(
                        [
                            (SegmentValue::Exact(*i), *bound),
                            (SegmentValue::Exact(i + 1), *bound),
                        ],
                        BLACK.stroke_width(2),
                    ))
                    .map_err(plot_err)?;
                if k == 0 {
                    series
                        .label("floor")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(label)
                .draw()
                .map_err(plot_err)?;
        }
    }

    // 3. The tenant's range query while the database grows.
    {
        let pts = &report.scaling;
        let xmin = pts.iter().map(|p| p.rows as f64).fold(f64::MAX, f64::min);
        let xmax = pts.iter().map(|p| p.rows as f64).fold(1.0, f64::max);
        let (xmin, xmax) = if pts.is_empty() {
            (1e3, 1e6)
        } else {
            (xmin / 1.5, xmax * 1.5)
        };
        let ymax = pts
            .iter()
            .map(|p| p.orm_ms.max(p.raw_ms))
            .fold(0.1, f64::max)
            * 1.4;
        let mut chart = ChartBuilder::on(&panels[2])
            .caption("tenant range query vs database size", ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("rows in the database")
            .y_desc("ms per query")
            .x_labels(4)
            .x_label_style(label)
            .x_label_formatter(&|x| fmt_rows(*x))
            .draw()
            .map_err(plot_err)?;
        for (name, color, get) in [
            (
                "popoto-rs",
                BLUE,
                (|p: &ScalePoint| p.orm_ms) as fn(&ScalePoint) -> f64,
            ),
            ("raw redis-rs", RED, |p: &ScalePoint| p.raw_ms),
        ] {
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.rows as f64, get(p))),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.rows as f64, get(p)), 4, color.filled())),
                )
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(label)
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

// ------------------------------------------------------------------------------- main

/// `cargo bench --bench suite [-- [--quick] [--no-python] [--multi-thread] [--rounds N]
/// [--only a,b] [--plot PATH]]`; the migration child is `--migrate-child URL orm|raw`.
#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // One thread by default: each operation waits for its reply anyway, and a multi-threaded
    // runtime adds cross-thread wake-ups that make every figure noisier.
    let mut builder = if args.iter().any(|a| a == "--multi-thread") {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Some(i) = args.iter().position(|a| a == "--migrate-child") {
        let (Some(url), Some(side)) = (args.get(i + 1), args.get(i + 2)) else {
            eprintln!("usage: --migrate-child URL orm|raw");
            std::process::exit(2);
        };
        if let Err(e) = rt.block_on(migrate_child(url, side)) {
            eprintln!("migration child failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut cfg = if args.iter().any(|a| a == "--quick") {
        Config::quick()
    } else {
        Config::full()
    };
    if args.iter().any(|a| a == "--no-python") {
        cfg.python = None;
    }
    if let Some(i) = args.iter().position(|a| a == "--rounds") {
        if let Some(n) = args.get(i + 1).and_then(|n| n.parse().ok()) {
            cfg.rounds = n;
        }
    }
    if let Some(i) = args.iter().position(|a| a == "--only") {
        cfg.only = args
            .get(i + 1)
            .map(|s| s.split(',').map(str::to_owned).collect());
        // A partial run does not replace the documented plot (unless `--plot` asks).
        cfg.plot = None;
    }
    if cfg.only.is_some() {
        // A partial run does not redraw the documented plot.
        cfg.plot = Some(std::env::temp_dir().join("popoto-benchmarks-partial.png"));
    }
    if let Some(i) = args.iter().position(|a| a == "--plot") {
        cfg.plot = args.get(i + 1).map(PathBuf::from);
    }
    let report = rt.block_on(run(&cfg));
    println!("{}", report.markdown());
    if let Some(p) = &report.plot {
        println!("Plot: {}", p.display());
    }
}

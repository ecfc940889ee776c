//! Throughput under concurrency: the ORM against raw redis-rs sharing one multiplexed connection.
//!
//! `cargo bench --bench concurrency` starts a private `redis-server` and, at 1, 8, 64 and 256
//! concurrent tasks, runs create, get, a range query and a confidence update through the ORM
//! and through hand-written redis-rs code issuing the same commands (writes both as
//! `MULTI`/`EXEC` and as one Lua call), alternating the sides over rounds. It reports the
//! median instances/s, ORM / raw ratios, p50/p99 latency, client and server CPU per instance
//! and Redis commands/s, with `redis-benchmark -P 16` on the same server as the ceiling, and
//! draws `docs/concurrency.png`.
//!
//! `tests/bench_concurrency_smoke.rs` compiles it and runs it with tiny sizes.

#[path = "common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use common::*;
use popoto::testing::TestRedis;
use popoto::{BackendConfig, Db, Key, Session};
use redis::aio::MultiplexedConnection;

/// What the benchmark runs, and how much of it.
#[derive(Debug, Clone)]
pub struct Config {
    /// Concurrent tasks per level.
    pub tasks: Vec<usize>,
    /// Operations per round for create, get and confidence update.
    pub ops: usize,
    /// Range queries per round.
    pub ranges: usize,
    /// Rows a range query returns.
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
    fn runs(&self, op: &str) -> bool {
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
            rounds: 3,
            ceiling_requests: 1_000_000,
            plot: Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/concurrency.png")),
            only: None,
        }
    }

    /// A few operations of each kind, for the smoke test.
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

/// Who runs an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// popoto-rs.
    Orm,
    /// popoto-rs with group commit off (each create its own script call).
    OrmSingle,
    /// Hand-written redis-rs: `MULTI`/`EXEC` for a write, the plain commands for a read.
    Raw,
    /// Hand-written redis-rs: the same commands in one Lua call.
    RawLua,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Orm => "popoto-rs",
            Side::OrmSingle => "popoto-rs, no group commit",
            Side::Raw => "raw MULTI/EXEC",
            Side::RawLua => "raw Lua",
        }
    }
}

/// One side at one concurrency: medians over its rounds.
#[derive(Debug, Clone)]
pub struct Row {
    /// Operation name.
    pub op: &'static str,
    /// Concurrent tasks.
    pub tasks: usize,
    /// Who ran it.
    pub side: Side,
    /// Operations per second (median round).
    pub per_sec: f64,
    /// Median latency of one operation, µs (median round).
    pub p50_us: f64,
    /// 99th percentile latency, µs (median round).
    pub p99_us: f64,
    /// Client CPU per operation, µs (median round).
    pub client_us: f64,
    /// Server CPU per operation, µs (median round).
    pub server_us: f64,
    /// Redis commands processed per second (median round).
    pub commands_per_sec: f64,
}

/// The benchmark's results.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Every operation, concurrency and side.
    pub rows: Vec<Row>,
    /// `redis-benchmark -P 16` requests/s of HSET, SADD and ZADD (their mean).
    pub ceiling: Option<f64>,
}

/// Data commands of one create (HSET, SADD class, SADD key field, ZADD score).
const CREATE_COMMANDS: f64 = 4.0;

impl Report {
    /// `op`'s row of `side` at `tasks`.
    pub fn row(&self, op: &str, tasks: usize, side: Side) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.op == op && r.tasks == tasks && r.side == side)
    }

    /// ORM / `side` throughput of `op` at `tasks`.
    pub fn ratio(&self, op: &str, tasks: usize, side: Side) -> Option<f64> {
        Some(self.row(op, tasks, Side::Orm)?.per_sec / self.row(op, tasks, side)?.per_sec)
    }

    /// The report as a markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| op | tasks | side | ops/s | ORM / side | p50 µs | p99 µs | client µs/op | server µs/op | cmds/s |\n|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let ratio = self
                .ratio(r.op, r.tasks, r.side)
                .map_or("-".into(), |x| format!("{x:.2}"));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} | {} | {:.0} | {:.0} | {:.1} | {:.1} | {:.0} |",
                r.op,
                r.tasks,
                r.side.label(),
                r.per_sec,
                ratio,
                r.p50_us,
                r.p99_us,
                r.client_us,
                r.server_us,
                r.commands_per_sec
            );
        }
        if let Some(c) = self.ceiling {
            let _ = writeln!(
                out,
                "\nCeiling (`redis-benchmark -P 16`, HSET/SADD/ZADD): {c:.0} commands/s"
            );
            for t in self.tasks() {
                if let Some(r) = self.row("create", t, Side::Orm) {
                    let share = r.per_sec * CREATE_COMMANDS / c;
                    let _ = writeln!(
                        out,
                        "- create at {t} tasks: {share:.2} of the ceiling (data commands)"
                    );
                }
            }
        }
        out
    }

    fn tasks(&self) -> Vec<usize> {
        let mut t: Vec<usize> = self.rows.iter().map(|r| r.tasks).collect();
        t.sort_unstable();
        t.dedup();
        t
    }
}

// ------------------------------------------------------------------------------- measuring

/// CPU time of this process so far (user + system, all threads).
fn client_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// The server's CPU seconds and commands processed so far.
async fn server_counters(conn: &mut MultiplexedConnection) -> Res<(f64, u64)> {
    let info: String = redis::cmd("INFO").arg("all").query_async(conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .ok_or_else(|| format!("INFO lacks {name}"))
    };
    let cpu = field("used_cpu_user")?.parse::<f64>()? + field("used_cpu_sys")?.parse::<f64>()?;
    Ok((cpu, field("total_commands_processed")?.parse()?))
}

/// One round's measurements.
struct Sample {
    wall: Duration,
    latencies: Vec<Duration>,
    client: Duration,
    server: f64,
    commands: u64,
}

/// Runs `total` operations on `tasks` concurrent tasks (`op(i)` is operation `i`).
async fn round(
    monitor: &mut MultiplexedConnection,
    tasks: usize,
    total: usize,
    op: &OpFn,
) -> Res<Sample> {
    let (server0, commands0) = server_counters(monitor).await?;
    let client0 = client_cpu();
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(total / tasks + 1);
                for i in (t..total).step_by(tasks) {
                    let s = Instant::now();
                    op(i).await?;
                    lat.push(s.elapsed());
                }
                Res::Ok(lat)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for h in handles {
        latencies.extend(h.await??);
    }
    let wall = start.elapsed();
    let client = client_cpu().saturating_sub(client0);
    let (server1, commands1) = server_counters(monitor).await?;
    latencies.sort_unstable();
    Ok(Sample {
        wall,
        latencies,
        client,
        server: server1 - server0,
        commands: commands1.saturating_sub(commands0 + 1),
    })
}

/// The row of the median round of `samples`.
fn summarize(op: &'static str, tasks: usize, side: Side, mut samples: Vec<Sample>) -> Row {
    samples.sort_by_key(|s| s.wall);
    let s = &samples[samples.len() / 2];
    let n = s.latencies.len().max(1) as f64;
    let pct = |p: f64| {
        let i = ((s.latencies.len() as f64 * p) as usize).min(s.latencies.len().saturating_sub(1));
        s.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Row {
        op,
        tasks,
        side,
        per_sec: per_sec(s.latencies.len(), s.wall),
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        client_us: s.client.as_secs_f64() * 1e6 / n,
        server_us: s.server * 1e6 / n,
        commands_per_sec: s.commands as f64 / s.wall.as_secs_f64().max(1e-9),
    }
}

// ------------------------------------------------------------------------------- operations

/// The raw create as one Lua call: the same four commands as the `MULTI`/`EXEC`.
static CREATE_LUA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "redis.call('HSET', KEYS[1], 'project_id', ARGV[1], 'episode_id', ARGV[2], 'title', \
         ARGV[3], 'score', ARGV[4]) redis.call('SADD', KEYS[2], KEYS[1]) \
         redis.call('SADD', KEYS[3], KEYS[1]) redis.call('ZADD', KEYS[4], ARGV[5], KEYS[1]) \
         return 1",
    )
});

async fn raw_create_lua(conn: &mut MultiplexedConnection, t: &RawTenant, i: usize) -> Res<()> {
    let id = new_id();
    let score = score(i);
    CREATE_LUA
        .key(t.key(&id))
        .key(&t.class)
        .key(&t.keyf)
        .key(&t.sortf)
        .arg(&t.packed[..])
        .arg(mp_str(&id))
        .arg(mp_str(&format!("episode {i}")))
        .arg(mp_f64(score))
        .arg(score)
        .invoke_async::<()>(conn)
        .await?;
    Ok(())
}

/// Scores spread over [0, 1) from the first operations on (half of them at least 0.5).
fn score(i: usize) -> f64 {
    (i * 7919 % 1000) as f64 / 1000.0
}

fn episode(i: usize) -> Episode {
    Episode {
        title: format!("episode {i}"),
        score: score(i),
        ..Default::default()
    }
}

/// Runs `op` for every side and concurrency level, alternating sides round by round.
struct Bench<'a> {
    cfg: &'a Config,
    monitor: MultiplexedConnection,
    report: Report,
}

impl Bench<'_> {
    /// Measures one operation: `sides` gives, per side, the operation of index `i`.
    async fn op(&mut self, name: &'static str, total: usize, sides: &[(Side, OpFn)]) -> Res<()> {
        if !self.cfg.runs(name) {
            return Ok(());
        }
        for &tasks in &self.cfg.tasks {
            eprintln!("[concurrency] {name} at {tasks} tasks");
            let mut samples: Vec<Vec<Sample>> = sides.iter().map(|_| Vec::new()).collect();
            for (_, f) in sides {
                // Warm-up: connections dialed, scripts loaded.
                round(&mut self.monitor, tasks, tasks, f).await?;
            }
            for r in 0..self.cfg.rounds.max(1) {
                for k in 0..sides.len() {
                    let s = (k + r) % sides.len();
                    samples[s].push(round(&mut self.monitor, tasks, total, &sides[s].1).await?);
                }
            }
            for ((side, _), s) in sides.iter().zip(samples) {
                self.report.rows.push(summarize(name, tasks, *side, s));
            }
        }
        Ok(())
    }
}

/// A boxed operation of one side.
type OpFn =
    Arc<dyn Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Res<()>> + Send>> + Send + Sync>;

fn op_fn<F, Fut>(f: F) -> OpFn
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<()>> + Send + 'static,
{
    Arc::new(move |i| Box::pin(f(i)))
}

/// Runs the whole benchmark.
pub async fn run(cfg: &Config) -> Res<Report> {
    let server = TestRedis::start()?;
    let db = Db::connect(server.url()).await?;
    let mut single = BackendConfig::new(server.url());
    single.group_commit = false;
    let db_single = Db::with_config(single)?;
    let client = redis::Client::open(server.url())?;
    let raw_conn = client
        .get_multiplexed_async_connection_with_config(&raw_config())
        .await?;
    let monitor = client
        .get_multiplexed_async_connection_with_config(&raw_config())
        .await?;
    let mut bench = Bench {
        cfg,
        monitor,
        report: Report::default(),
    };

    // create
    let orm: Session = db.tenant("orm")?;
    let orm_single: Session = db_single.tenant("single")?;
    let raw_t = Arc::new(RawTenant::new("raw"));
    let lua_t = Arc::new(RawTenant::new("lua"));
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let t = orm.clone();
            op_fn(move |i| {
                let t = t.clone();
                async move { t.create(episode(i)).await.map(drop).map_err(Into::into) }
            })
        }),
        (Side::OrmSingle, {
            let t = orm_single.clone();
            op_fn(move |i| {
                let t = t.clone();
                async move { t.create(episode(i)).await.map(drop).map_err(Into::into) }
            })
        }),
        (Side::Raw, {
            let (c, t) = (raw_conn.clone(), raw_t.clone());
            op_fn(move |i| {
                let (mut c, t) = (c.clone(), t.clone());
                async move { raw_create(&mut c, &t, &format!("episode {i}"), score(i)).await }
            })
        }),
        (Side::RawLua, {
            let (c, t) = (raw_conn.clone(), lua_t.clone());
            op_fn(move |i| {
                let (mut c, t) = (c.clone(), t.clone());
                async move { raw_create_lua(&mut c, &t, i).await }
            })
        }),
    ];
    bench.op("create", cfg.ops, &sides).await?;

    // get and range query, over the ORM's rows (raw reads the same keys)
    let keys: Arc<Vec<Key<Episode>>> = Arc::new(
        orm.query::<Episode>()
            .limit(cfg.ops.max(1))
            .fetch()
            .await?
            .iter()
            .map(|e| Episode::key_of("orm", e.episode_id.as_str()))
            .collect(),
    );
    check(!keys.is_empty(), "no rows to read")?;
    let raw_keys: Arc<Vec<String>> = Arc::new(keys.iter().map(Key::redis_key).collect());
    let orm_t = Arc::new(RawTenant::new("orm"));
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let (t, keys) = (orm.clone(), keys.clone());
            op_fn(move |i| {
                let (t, keys) = (t.clone(), keys.clone());
                async move {
                    let got = t.get(&keys[i % keys.len()]).await?;
                    check(got.is_some(), "ORM get found nothing")
                }
            })
        }),
        (Side::Raw, {
            let (c, keys) = (raw_conn.clone(), raw_keys.clone());
            op_fn(move |i| {
                let (mut c, keys) = (c.clone(), keys.clone());
                async move {
                    let got = raw_get(&mut c, &keys[i % keys.len()]).await?;
                    check(got.is_some(), "raw get found nothing")
                }
            })
        }),
    ];
    bench.op("get", cfg.ops, &sides).await?;

    let rows = cfg.range_rows;
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let t = orm.clone();
            op_fn(move |_| {
                let t = t.clone();
                async move {
                    let got = t
                        .query::<Episode>()
                        .filter(Episode::score().gte(0.5))
                        .limit(rows)
                        .fetch()
                        .await?;
                    check(got.len() == rows, "ORM range returned too few rows")
                }
            })
        }),
        (Side::Raw, {
            let (c, t) = (raw_conn.clone(), orm_t.clone());
            op_fn(move |_| {
                let (mut c, t) = (c.clone(), t.clone());
                async move {
                    let got = raw_range(&mut c, &t, 0.5, rows).await?;
                    check(got.len() == rows, "raw range returned too few rows")
                }
            })
        }),
    ];
    bench.op("range_query", cfg.ranges, &sides).await?;

    // confidence update (the raw side calls the same Lua)
    let conf = db.tenant("conf")?;
    let memories = Arc::new(
        conf.create_many(
            (0..256)
                .map(|i| Memory {
                    key: format!("m{i}"),
                    content: format!("memory {i}"),
                    ..Default::default()
                })
                .collect(),
        )
        .await?,
    );
    let members: Arc<Vec<String>> = Arc::new(
        memories
            .iter()
            .map(|m| Memory::key_of(m.project.as_str(), m.key.as_str()).redis_key())
            .collect(),
    );
    let companion: Arc<str> = format!("{LEGACY}:conf").into();
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let (t, ms) = (conf.clone(), memories.clone());
            op_fn(move |i| {
                let (t, ms) = (t.clone(), ms.clone());
                async move {
                    t.confidence(&ms[i % ms.len()], Memory::certainty())?
                        .update((i % 10) as f64 / 10.0)
                        .await?;
                    Ok(())
                }
            })
        }),
        (Side::RawLua, {
            let (c, ms, comp) = (raw_conn.clone(), members.clone(), companion.clone());
            op_fn(move |i| {
                let (mut c, ms, comp) = (c.clone(), ms.clone(), comp.clone());
                async move {
                    raw_confidence(&mut c, &comp, &ms[i % ms.len()], (i % 10) as f64 / 10.0)
                        .await
                        .map(drop)
                }
            })
        }),
    ];
    bench.op("confidence_update", cfg.ops, &sides).await?;

    let mut report = bench.report;
    if cfg.ceiling_requests > 0 {
        report.ceiling = Some(ceiling(&server, cfg.ceiling_requests)?);
    }
    if let Some(path) = &cfg.plot {
        plot(&report, path)?;
    }
    Ok(report)
}

/// Mean requests/s of `redis-benchmark -P 16` HSET, SADD and ZADD on `server`.
fn ceiling(server: &TestRedis, requests: usize) -> Res<f64> {
    let port = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap_or("")
        .to_owned();
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-P",
            "16",
            "-n",
            &requests.to_string(),
        ])
        .args(["-r", "100000", "-t", "hset,sadd,zadd", "--csv"])
        .output()?;
    check(
        out.status.success(),
        format!("redis-benchmark: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    let text = String::from_utf8(out.stdout)?;
    let rates: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split(',').nth(1)?.trim_matches('"').parse().ok())
        .collect();
    check(rates.len() == 3, format!("redis-benchmark printed {text}"))?;
    Ok(rates.iter().sum::<f64>() / 3.0)
}

/// Throughput against concurrency, one panel per operation.
fn plot(report: &Report, path: &Path) -> Res<()> {
    use plotters::prelude::*;
    register_fonts()?;
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let panels = root.split_evenly((2, 2));
    let tasks = report.tasks();
    let xs: Vec<f64> = tasks.iter().map(|t| (*t as f64).log2()).collect();
    for (area, op) in panels
        .iter()
        .zip(["create", "get", "range_query", "confidence_update"])
    {
        let rows: Vec<&Row> = report.rows.iter().filter(|r| r.op == op).collect();
        let top = rows.iter().map(|r| r.per_sec).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{op}: ops/s by concurrent tasks"),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.3..xs.last().copied().unwrap_or(1.0) + 0.3, 0.0..top)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_labels(tasks.len())
            .x_label_formatter(&|x| format!("{:.0}", x.exp2()))
            .draw()
            .map_err(plot_err)?;
        for (side, color) in [
            (Side::Orm, BLUE),
            (Side::OrmSingle, CYAN),
            (Side::Raw, RED),
            (Side::RawLua, GREEN),
        ] {
            let pts: Vec<(f64, f64)> = tasks
                .iter()
                .zip(&xs)
                .filter_map(|(t, x)| Some((*x, report.row(op, *t, side)?.per_sec)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(side.label())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(plot_err)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font(("sans-serif", 16))
            .draw()
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// `cargo bench --bench concurrency [-- [--quick] [--only create,get,...] [--tasks 1,64]]`.
#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    };
    let mut cfg = if args.iter().any(|a| a == "--quick") {
        Config {
            ops: 4_000,
            ranges: 800,
            rounds: 1,
            ceiling_requests: 200_000,
            plot: None,
            ..Config::full()
        }
    } else {
        Config::full()
    };
    if let Some(only) = value("--only") {
        cfg.only = Some(only.split(',').map(str::to_owned).collect());
        cfg.plot = None;
    }
    if let Some(tasks) = value("--tasks") {
        cfg.tasks = tasks.split(',').filter_map(|t| t.parse().ok()).collect();
        cfg.plot = None;
    }
    // Two workers, like a service on this 2-core machine.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(&cfg)) {
        Ok(report) => println!("{}", report.markdown()),
        Err(e) => {
            eprintln!("concurrency benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

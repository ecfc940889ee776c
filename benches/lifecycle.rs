//! Tenant lifecycle costs: export, destroy and import of one tenant whose size (0 or 10,000
//! rows) and number of neighbours (10 or 1,000 other tenants) vary.
//!
//! `cargo bench --bench lifecycle` starts a private `redis-server`, fills the other tenants in
//! bulk, then for each configuration times `export_tenant` (into memory), `destroy_tenant` and
//! `import_tenant` of the measured tenant (the destroy is undone by the import, so every round
//! starts from the same data), with the default keyspace sweep and with `Sweep::Indexes`,
//! keeping each operation's best round, and counts the round trips each operation sends. The figures to read: how the cost moves with the number of *other*
//! tenants (it should not, beyond one server-side `SCAN` pass over the keyspace) and with the
//! tenant's own rows.
//!
//! `tests/bench_lifecycle_smoke.rs` runs it with tiny sizes ([`Config::tiny`]) so CI keeps it
//! compiling and working; nothing asserts a duration.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use popoto::testing::TestRedis;
use popoto::{Db, ModelSet, Sweep, TenantId};

#[path = "common/mod.rs"]
mod common;
use common::{Episode, Memory, Res};

/// What the benchmark runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Numbers of other tenants.
    pub neighbours: Vec<usize>,
    /// Rows of each other tenant (nine episodes for one memory).
    pub neighbour_rows: usize,
    /// Rows of the measured tenant (nine episodes for one memory).
    pub tenant_rows: Vec<usize>,
    /// Rounds per configuration; each operation keeps its best round.
    pub rounds: usize,
    /// Print progress to stderr.
    pub verbose: bool,
}

impl Config {
    /// The documented run: 10 and 1,000 neighbours of 100 rows, a tenant of 0 and 10,000 rows.
    pub fn full() -> Self {
        Config {
            neighbours: vec![10, 1000],
            neighbour_rows: 100,
            tenant_rows: vec![0, 10_000],
            rounds: 3,
            verbose: true,
        }
    }

    /// Seconds, for a look.
    pub fn quick() -> Self {
        Config {
            neighbours: vec![10, 200],
            neighbour_rows: 20,
            tenant_rows: vec![0, 1000],
            rounds: 1,
            verbose: true,
        }
    }

    /// CI: every path once, tiny.
    pub fn tiny() -> Self {
        Config {
            neighbours: vec![2, 5],
            neighbour_rows: 10,
            tenant_rows: vec![0, 20],
            rounds: 1,
            verbose: false,
        }
    }
}

/// One configuration's figures.
#[derive(Debug, Clone)]
pub struct Row {
    /// Other tenants.
    pub neighbours: usize,
    /// Rows of the measured tenant.
    pub rows: usize,
    /// Keys in the database.
    pub keys: u64,
    /// Best export time with the keyspace sweep (the default) and with indexes only.
    pub export: [Duration; 2],
    /// Best destroy time, likewise.
    pub destroy: [Duration; 2],
    /// Best import time.
    pub import: Duration,
    /// Round trips of one export and one destroy with each sweep, and of one import.
    pub trips: ([u64; 2], [u64; 2], u64),
    /// Records in the export stream.
    pub records: u64,
}

/// What the run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One row per (neighbours, rows).
    pub rows: Vec<Row>,
    /// redis-server version.
    pub redis: String,
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e3)
}

impl Report {
    /// The results as a markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "redis-server {}\n", self.redis);
        out.push_str("| other tenants | tenant rows | keys in the database | export ms | destroy ms | export ms, indexes only | destroy ms, indexes only | import ms | round trips: export, destroy (indexes only), import |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
        for r in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} ({}), {} ({}), {} |",
                r.neighbours,
                r.rows,
                r.keys,
                ms(r.export[0]),
                ms(r.destroy[0]),
                ms(r.export[1]),
                ms(r.destroy[1]),
                ms(r.import),
                r.trips.0[0],
                r.trips.0[1],
                r.trips.1[0],
                r.trips.1[1],
                r.trips.2
            );
        }
        out
    }
}

fn models() -> ModelSet {
    ModelSet::new().with::<Episode>().with::<Memory>()
}

/// `rows` rows of `tenant` in bulk: nine episodes for one memory.
async fn fill(db: &Db, tenant: &str, rows: usize) -> Res<()> {
    let memories = rows / 10;
    let episodes: Vec<Episode> = (0..rows - memories)
        .map(|i| Episode {
            title: format!("episode {i}"),
            score: i as f64,
            ..Default::default()
        })
        .collect();
    let mems: Vec<Memory> = (0..memories)
        .map(|i| Memory {
            key: format!("{tenant}/{i}"),
            content: "remembered".into(),
            certainty: 0.5,
            ..Default::default()
        })
        .collect();
    let t = db.tenant(tenant)?;
    for chunk in episodes.chunks(5000) {
        t.create_many(chunk.to_vec()).await?;
    }
    if !mems.is_empty() {
        t.create_many(mems).await?;
    }
    Ok(())
}

async fn dbsize(server: &TestRedis) -> Res<u64> {
    let mut conn = server.raw();
    Ok(redis::cmd("DBSIZE").query(&mut conn)?)
}

/// Runs every configuration.
pub async fn run(cfg: &Config) -> Res<Report> {
    let server = TestRedis::start()?;
    let db = server.db().await;
    let admin = db.admin();
    let backend = admin.backend().await?;
    let mut report = Report {
        redis: {
            let mut conn = server.raw();
            let info: String = redis::cmd("INFO").arg("server").query(&mut conn)?;
            info.lines()
                .find_map(|l| l.strip_prefix("redis_version:"))
                .unwrap_or("?")
                .trim()
                .to_owned()
        },
        ..Report::default()
    };
    let models = models();
    let mut filled = 0;
    for &neighbours in &cfg.neighbours {
        // Neighbours are added to the ones already there.
        for n in filled..neighbours {
            fill(&db, &format!("neighbour-{n}"), cfg.neighbour_rows).await?;
        }
        filled = neighbours;
        for &rows in &cfg.tenant_rows {
            let tenant = TenantId::new(format!("measured-{rows}"))?;
            fill(&db, tenant.as_str(), rows).await?;
            let keys = dbsize(&server).await?;
            if cfg.verbose {
                eprintln!(
                    "[lifecycle] {neighbours} other tenants, tenant of {rows} rows, {keys} keys"
                );
            }
            let mut export = [Duration::MAX; 2];
            let mut destroy = [Duration::MAX; 2];
            let mut import = Duration::MAX;
            let mut trips = ([0; 2], [0; 2], 0);
            let mut records = 0;
            for _ in 0..cfg.rounds.max(1) {
                for (i, sweep) in [Sweep::Keyspace, Sweep::Indexes].into_iter().enumerate() {
                    let before = backend.round_trips();
                    let started = Instant::now();
                    let mut stream = Vec::new();
                    records = admin
                        .export_tenant_with(&tenant, &models, &mut stream, sweep)
                        .await?;
                    export[i] = export[i].min(started.elapsed());
                    let after_export = backend.round_trips();
                    let started = Instant::now();
                    let destroyed = admin.destroy_tenant_with(&tenant, &models, sweep).await?;
                    destroy[i] = destroy[i].min(started.elapsed());
                    let after_destroy = backend.round_trips();
                    let n: u64 = destroyed.instances.values().sum();
                    if n != rows as u64 {
                        return Err(format!("destroyed {n} instances of {rows}").into());
                    }
                    let started = Instant::now();
                    admin
                        .import_tenant(&tenant, &models, stream.as_slice())
                        .await?;
                    import = import.min(started.elapsed());
                    trips.0[i] = after_export - before;
                    trips.1[i] = after_destroy - after_export;
                    trips.2 = backend.round_trips() - after_destroy;
                }
            }
            if dbsize(&server).await? != keys {
                return Err("the import did not restore the tenant".into());
            }
            // The tenant leaves; the next one starts from the neighbours alone.
            admin.destroy_tenant(&tenant, &models).await?;
            report.rows.push(Row {
                neighbours,
                rows,
                keys,
                export,
                destroy,
                import,
                trips,
                records,
            });
        }
    }
    Ok(report)
}

#[allow(dead_code)]
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = if args.iter().any(|a| a == "--quick") {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(i) = args.iter().position(|a| a == "--rounds") {
        if let Some(n) = args.get(i + 1).and_then(|n| n.parse().ok()) {
            cfg.rounds = n;
        }
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    match rt.block_on(run(&cfg)) {
        Ok(report) => println!("{}", report.markdown()),
        Err(e) => {
            eprintln!("lifecycle benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

//! Redis Cluster figures: creates and gets of many tenants' instances by concurrent tasks, on
//! one server in popoto's layout (the baseline), and in the cluster layout on a cluster of 1
//! and of 3 masters (the tenants' tags spread over the slots, so over the masters).
//!
//! `cargo bench --bench cluster [-- --quick]` starts every server first, then measures the
//! targets in turn, round after round, and reports the median instances/s, the ratio to the
//! single server (in all and per master), the CPU per instance of the client, of the servers
//! summed and of the busiest master, and what the busiest master's CPU allows when each master
//! has a core of its own (the server-bound capacity, which is what adding masters raises). `tests/bench_cluster_smoke.rs` compiles it and runs it with tiny sizes.

use std::time::{Duration, Instant};

use popoto::testing::{TestCluster, TestRedis};
use popoto::{BackendConfig, Db, Key};

#[path = "common/mod.rs"]
mod common;
use common::{client_cpu, per_sec, Episode, Res};

/// Sizes of a run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Tenants the instances are spread over.
    pub tenants: usize,
    /// Concurrent tasks.
    pub tasks: usize,
    /// Instances created (and then read) per round and target.
    pub ops: usize,
    /// Rounds; each measures every target once.
    pub rounds: usize,
}

impl Config {
    /// The published run.
    pub fn full() -> Config {
        Config {
            tenants: 48,
            tasks: 64,
            ops: 40_000,
            rounds: 3,
        }
    }

    /// The smoke test's.
    pub fn tiny() -> Config {
        Config {
            tenants: 6,
            tasks: 4,
            ops: 200,
            rounds: 1,
        }
    }
}

/// One target and operation: median rate and server CPU over the rounds.
#[derive(Debug, Clone)]
pub struct Row {
    /// `single`, `cluster 1` or `cluster 3`.
    pub target: &'static str,
    /// Masters serving the data.
    pub masters: usize,
    /// `create` or `get`.
    pub op: &'static str,
    /// Instances per second (median of rounds).
    pub per_sec: f64,
    /// Server CPU per instance in µs, summed over the nodes (median of rounds).
    pub server_us: f64,
    /// CPU per instance in µs of the busiest master (median of rounds).
    pub busiest_us: f64,
    /// Client CPU per instance in µs (median of rounds).
    pub client_us: f64,
}

impl Row {
    /// Instances/s the busiest master's CPU allows with a core of its own.
    pub fn server_bound(&self) -> f64 {
        1e6 / self.busiest_us
    }
}

/// Every row of a run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Rows in target, then operation order.
    pub rows: Vec<Row>,
}

impl Report {
    /// The row of `target` and `op`.
    pub fn row(&self, target: &str, op: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.target == target && r.op == op)
    }

    /// `target`'s rate over the single server's, for `op`.
    pub fn ratio(&self, target: &str, op: &str) -> Option<f64> {
        Some(self.row(target, op)?.per_sec / self.row("single", op)?.per_sec)
    }

    /// The report as a markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| target | masters | op | instances/s | / single server | / single server, per master | µs per instance: client / servers / busiest master | server-bound instances/s (a core per master) |\n|---|---:|---|---:|---:|---:|---|---:|\n",
        );
        for r in &self.rows {
            let ratio = self.ratio(r.target, r.op).unwrap_or(f64::NAN);
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.1} / {:.1} / {:.1} | {:.0} |\n",
                r.target,
                r.masters,
                r.op,
                r.per_sec,
                ratio,
                ratio / r.masters as f64,
                r.client_us,
                r.server_us,
                r.busiest_us,
                r.server_bound()
            ));
        }
        out
    }
}

/// A target under test: its `Db` and its nodes (masters only, for CPU).
struct Target {
    name: &'static str,
    masters: usize,
    db: Db,
    nodes: Vec<String>,
}

/// CPU seconds (user + sys) of each node so far, and of this process.
fn cpu(nodes: &[String]) -> Res<(Vec<f64>, f64)> {
    let mut out = Vec::with_capacity(nodes.len());
    for url in nodes {
        let mut conn = redis::Client::open(url.as_str())?.get_connection()?;
        let info: String = redis::cmd("INFO").arg("cpu").query(&mut conn)?;
        let mut total = 0.0;
        for line in info.lines() {
            if let Some(v) = line
                .strip_prefix("used_cpu_user:")
                .or_else(|| line.strip_prefix("used_cpu_sys:"))
            {
                total += v.trim().parse::<f64>()?;
            }
        }
        out.push(total);
    }
    Ok((out, client_cpu().as_secs_f64()))
}

/// One operation's figures from CPU readings before and after: (servers summed, busiest node,
/// client), in µs per instance.
fn cpu_per_op(before: &(Vec<f64>, f64), after: &(Vec<f64>, f64), ops: usize) -> [f64; 3] {
    let us = |secs: f64| secs * 1e6 / ops as f64;
    let nodes: Vec<f64> = after.0.iter().zip(&before.0).map(|(a, b)| a - b).collect();
    [
        us(nodes.iter().sum()),
        us(nodes.iter().copied().fold(0.0, f64::max)),
        us(after.1 - before.1),
    ]
}

/// One operation's sample of one round: rate and [`cpu_per_op`].
type Sample = (&'static str, f64, [f64; 3]);

/// Runs `work(i)` for `i` in `0..ops` on `tasks` concurrent tasks; returns the elapsed time
/// and every result.
async fn drive<T, F, Fut>(ops: usize, tasks: usize, work: F) -> Res<(Duration, Vec<T>)>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Res<T>> + Send,
{
    let start = Instant::now();
    let mut handles = Vec::with_capacity(tasks);
    for t in 0..tasks {
        let work = work.clone();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = t;
            while i < ops {
                out.push(work(i).await?);
                i += tasks;
            }
            Res::Ok(out)
        }));
    }
    let mut all = Vec::with_capacity(ops);
    for h in handles {
        all.extend(h.await??);
    }
    Ok((start.elapsed(), all))
}

/// One round of one target: creates, then gets of what was created; (op, rate, server µs).
async fn round(cfg: &Config, t: &Target, n: usize) -> Res<Vec<Sample>> {
    let tenants: Vec<String> = (0..cfg.tenants).map(|i| format!("r{n}-t{i}")).collect();
    let sessions: Vec<popoto::Session> = tenants
        .iter()
        .map(|id| t.db.tenant(id))
        .collect::<Result<_, _>>()?;
    let sessions = std::sync::Arc::new(sessions);
    let before = cpu(&t.nodes)?;
    let s = sessions.clone();
    let (took, keys) = drive(cfg.ops, cfg.tasks, move |i| {
        let s = s.clone();
        async move {
            let ep = Episode {
                title: format!("e{i}"),
                score: i as f64,
                ..Default::default()
            };
            let (key, _) = s[i % s.len()].create_keyed(ep).await?;
            Res::Ok(key)
        }
    })
    .await?;
    let created = cpu(&t.nodes)?;
    let keys: std::sync::Arc<Vec<Key<Episode>>> = std::sync::Arc::new(keys);
    let (s, k) = (sessions.clone(), keys.clone());
    let (took_get, found) = drive(cfg.ops, cfg.tasks, move |i| {
        let (s, k) = (s.clone(), k.clone());
        async move {
            let key = &k[i];
            let session = s
                .iter()
                .find(|x| x.scope().tenant().map(|t| t.as_str()) == key.tenant())
                .ok_or("no session for the key's tenant")?;
            Res::Ok(session.get(key).await?.is_some())
        }
    })
    .await?;
    let read = cpu(&t.nodes)?;
    if found.iter().any(|f| !f) {
        return Err(format!("{}: a created instance was not found", t.name).into());
    }
    Ok(vec![
        (
            "create",
            per_sec(cfg.ops, took),
            cpu_per_op(&before, &created, cfg.ops),
        ),
        (
            "get",
            per_sec(cfg.ops, took_get),
            cpu_per_op(&created, &read, cfg.ops),
        ),
    ])
}

/// Starts the targets and measures them.
pub async fn run(cfg: &Config) -> Res<Report> {
    let single = TestRedis::start()?;
    let one = TestCluster::start(1)?;
    let three = TestCluster::start(3)?;
    let targets = [
        Target {
            name: "single",
            masters: 1,
            db: Db::with_config(BackendConfig::new(single.url()))?,
            nodes: vec![single.url().to_owned()],
        },
        Target {
            name: "cluster 1",
            masters: 1,
            db: Db::with_config(BackendConfig::cluster(one.urls()))?,
            nodes: one.urls(),
        },
        Target {
            name: "cluster 3",
            masters: 3,
            db: Db::with_config(BackendConfig::cluster(three.urls()))?,
            nodes: three.urls(),
        },
    ];
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); targets.len()];
    for n in 0..cfg.rounds {
        for (t, out) in targets.iter().zip(&mut samples) {
            out.extend(round(cfg, t, n).await?);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut report = Report::default();
    for (t, out) in targets.iter().zip(samples) {
        for op in ["create", "get"] {
            let of_op: Vec<_> = out.iter().filter(|s| s.0 == op).collect();
            report.rows.push(Row {
                target: t.name,
                masters: t.masters,
                op,
                per_sec: median(of_op.iter().map(|s| s.1).collect()),
                server_us: median(of_op.iter().map(|s| s.2[0]).collect()),
                busiest_us: median(of_op.iter().map(|s| s.2[1]).collect()),
                client_us: median(of_op.iter().map(|s| s.2[2]).collect()),
            });
        }
    }
    Ok(report)
}

/// `cargo bench --bench cluster [-- --quick]`.
#[allow(dead_code)]
fn main() {
    let cfg = if std::env::args().any(|a| a == "--quick") {
        Config {
            ops: 5_000,
            rounds: 1,
            ..Config::full()
        }
    } else {
        Config::full()
    };
    let rt = common::runtime();
    match rt.block_on(run(&cfg)) {
        Ok(report) => println!("{cfg:?}\n\n{}", report.markdown()),
        Err(e) => {
            eprintln!("cluster benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

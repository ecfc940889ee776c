//! Live sync at scale, in the reference library's own scenario (the `transports` Hub publishes
//! p95 24.3 ms, p99 27.3 ms, 87 MB RSS): 250 WebSocket clients, each its own tenant subscribed
//! to the same 20 shared models, 5,000 subscriptions.
//!
//! `cargo bench -p popoto-axum --bench live` starts a private `redis-server`, and the live
//! endpoint in a child process (this binary again) on a loopback port, so that the RSS
//! measured is the server's alone. The clients (`LiveClient`, tokio-tungstenite) run here. A
//! writer patches the shared models at a fixed rate (20, then 100 writes/s); every client records
//! the write-to-delivery latency of every event it receives (the write's time travels in the
//! value), and the run fails unless the final value of every model reaches every client. Then
//! one model, many writers: events/s delivered to each of its subscribers. `--quick`: shorter
//! phases. `tests/bench_live_smoke.rs` runs it with tiny sizes.

#[path = "live_support/mod.rs"]
mod live_support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use live_support::{cpu, Server};
use popoto::shared::{Access, Merge, Patch, SharedId};
use popoto::testing::TestRedis;
use popoto::{Db, Model, TenantId};
use popoto_axum::live::{LiveClient, ServerMsg};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use live_support::serve_child_if_asked;

/// The shared model: a sequence number per model and the time of the write.
#[derive(Model, Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[popoto(shared)]
pub struct Board {
    /// Writes to this model so far.
    pub seq: i64,
    /// When it was written: microseconds since the bench's epoch.
    pub sent_us: i64,
    /// A line of text, as a real document carries.
    pub text: String,
}

/// The reference's published figures: p95 and p99 (ms), RSS (MB).
const REFERENCE: (f64, f64, f64) = (24.3, 27.3, 87.0);

/// What the benchmark runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// WebSocket clients, each its own tenant.
    pub clients: usize,
    /// Shared models every client is subscribed to.
    pub models: usize,
    /// Writes per second of each phase, spread over the models.
    pub rates: Vec<u32>,
    /// How long the writer writes in each phase.
    pub seconds: f64,
    /// Writers of the one-model phase.
    pub hot_writers: usize,
    /// Subscribers of the one-model phase.
    pub hot_subscribers: usize,
    /// How long the one-model writers write.
    pub hot_seconds: f64,
}

impl Config {
    /// The documented run.
    pub fn full() -> Config {
        Config {
            clients: 250,
            models: 20,
            rates: vec![20, 100],
            seconds: 20.0,
            hot_writers: 8,
            hot_subscribers: 50,
            hot_seconds: 5.0,
        }
    }

    /// The same scenario, shorter.
    pub fn quick() -> Config {
        Config {
            seconds: 5.0,
            hot_seconds: 2.0,
            ..Config::full()
        }
    }

    /// A few clients and writes, for the smoke test.
    pub fn tiny() -> Config {
        Config {
            clients: 6,
            models: 3,
            rates: vec![30, 60],
            seconds: 0.5,
            hot_writers: 2,
            hot_subscribers: 3,
            hot_seconds: 0.3,
        }
    }
}

/// The figures of one write phase.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Writes per second asked for.
    pub rate: u32,
    /// Writes made.
    pub writes: u64,
    /// Events received by the clients (each write, by each client).
    pub deliveries: u64,
    /// Write-to-delivery latency percentiles (ms): p50, p95, p99, max.
    pub latency: [f64; 4],
    /// Server VmRSS after the phase, and its peak so far (VmHWM), MB.
    pub rss_mb: (f64, f64),
    /// CPU used during the phase, in cores (CPU seconds per second): the server, the clients
    /// with the writer, Redis.
    pub cpu: [f64; 3],
    /// Reconnects of clients closed as too slow.
    pub reconnects: u64,
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What ran.
    pub config: Config,
    /// Server VmRSS once every client was subscribed, before any write (MB).
    pub idle_mb: f64,
    /// Each write phase.
    pub phases: Vec<Phase>,
    /// One model: writes made by its writers.
    pub hot_writes: u64,
    /// One model: events/s delivered to each subscriber (the slowest's).
    pub hot_per_sec: f64,
}

impl Report {
    /// The report as a markdown table, next to the reference's figures.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let (p, cols) = (&self.phases, self.phases.len());
        let row = |name: &str, cell: &dyn Fn(&Phase) -> String, reference: &str| {
            let cells: Vec<String> = p.iter().map(cell).collect();
            format!("| {name} | {} | {reference} |\n", cells.join(" | "))
        };
        let ms = |i: usize| move |ph: &Phase| format!("{:.1} ms", ph.latency[i]);
        let mut out = format!(
            "{} clients x {} shared models = {} subscriptions, {} s per rate\n\n| figure | {} | transports Hub (published) |\n|---|{}---|\n",
            c.clients,
            c.models,
            c.clients * c.models,
            c.seconds,
            p.iter()
                .map(|ph| format!("{} writes/s", ph.rate))
                .collect::<Vec<_>>()
                .join(" | "),
            "---|".repeat(cols),
        );
        out += &row("write-to-delivery p50", &ms(0), "-");
        out += &row(
            "write-to-delivery p95",
            &ms(1),
            &format!("{:.1} ms", REFERENCE.0),
        );
        out += &row(
            "write-to-delivery p99",
            &ms(2),
            &format!("{:.1} ms", REFERENCE.1),
        );
        out += &row("write-to-delivery max", &ms(3), "-");
        out += &row(
            "server RSS after the phase (peak)",
            &|ph| format!("{:.1} MB ({:.1} MB)", ph.rss_mb.0, ph.rss_mb.1),
            &format!("{:.0} MB", REFERENCE.2),
        );
        out += &row(
            "CPU in cores: server / clients and writer / Redis",
            &|ph| format!("{:.2} / {:.2} / {:.2}", ph.cpu[0], ph.cpu[1], ph.cpu[2]),
            "-",
        );
        out += &row(
            "writes, deliveries (reconnects)",
            &|ph| format!("{}, {} ({})", ph.writes, ph.deliveries, ph.reconnects),
            "-",
        );
        out += &row(
            "final value of every model at every client",
            &|_| "yes".into(),
            "-",
        );
        out += &format!(
            "\nServer RSS with every client subscribed, before any write: {:.1} MB.\n\n\
             One model, {} writers, {} subscribers: {} writes in {} s, {:.0} events/s delivered to each subscriber ({:.0} messages/s in all).\n",
            self.idle_mb,
            c.hot_writers,
            c.hot_subscribers,
            self.hot_writes,
            c.hot_seconds,
            self.hot_per_sec,
            self.hot_per_sec * c.hot_subscribers as f64,
        );
        out
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn tenant(name: &str) -> Result<TenantId, BoxError> {
    Ok(TenantId::new(name)?)
}

/// What one client saw in one phase.
#[derive(Debug, Default)]
struct Seen {
    latencies_us: Vec<u32>,
    reconnects: u64,
    /// Receipt times of the events (one-model phase).
    first: Option<Instant>,
    last: Option<Instant>,
}

/// Shared between the clients: the epoch of `sent_us`, and the models' ids.
struct World {
    epoch: Instant,
    index: HashMap<String, usize>,
}

/// The end of a phase: its number and the final `seq` of every model.
type Finals = watch::Receiver<Option<(usize, Vec<i64>)>>;

/// Runs one client: each time it has the final `seq` of every model of a phase (`finals`), it
/// reports what it saw; it reconnects from its position if the server closes it, and ends when
/// the benchmark drops `finals`.
async fn client(
    ws: String,
    name: String,
    world: Arc<World>,
    mut finals: Finals,
    ready: mpsc::Sender<()>,
    report: mpsc::UnboundedSender<Seen>,
) -> Result<(), BoxError> {
    let key = format!("{name}-key");
    let headers = [("x-api-key", key.as_str())];
    let mut live = LiveClient::connect(&ws, &headers, None).await?;
    let mut seen = Seen::default();
    let mut last = vec![0i64; world.index.len()];
    let (mut subscribed, mut phase) = (false, 0);
    loop {
        let done = finals
            .borrow()
            .as_ref()
            .is_some_and(|(p, want)| *p == phase && *want == last);
        if subscribed && done {
            report.send(std::mem::take(&mut seen))?;
            phase += 1;
        }
        let msg = tokio::select! {
            m = live.next() => m,
            r = finals.changed() => {
                if r.is_err() {
                    return Ok(());
                }
                continue;
            }
        };
        let Some(msg) = msg else {
            // Closed (too slow): resume from where we were.
            let at = live.position();
            live = LiveClient::connect(&ws, &headers, at).await?;
            seen.reconnects += 1;
            continue;
        };
        match msg {
            ServerMsg::Subscribed { .. } => {
                if !subscribed {
                    ready.send(()).await?;
                }
                subscribed = true;
            }
            ServerMsg::Event { key, fields, .. } => {
                let now = world.epoch.elapsed().as_micros() as i64;
                let at = Instant::now();
                seen.first.get_or_insert(at);
                seen.last = Some(at);
                let (Some(&i), Some(seq), Some(sent)) = (
                    world.index.get(&key),
                    fields.get("seq").and_then(Value::as_i64),
                    fields.get("sent_us").and_then(Value::as_i64),
                ) else {
                    continue;
                };
                seen.latencies_us
                    .push(u32::try_from(now - sent).unwrap_or(u32::MAX));
                last[i] = last[i].max(seq);
            }
            ServerMsg::Error { code, message, .. } if code != "too_slow" => {
                return Err(format!("{name}: {code}: {message}").into());
            }
            _ => {}
        }
    }
}

/// Shares `n` boards to every tenant of `tenants` (READ); their ids.
async fn share(db: &Db, n: usize, tenants: &[String]) -> Result<Vec<SharedId>, BoxError> {
    let host = db.admin().shared();
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(host.share(&Board::default(), Merge::LastWriteWins).await?);
    }
    let host = &host;
    for chunk in tenants.chunks(50) {
        let subs = chunk.iter().flat_map(|t| ids.iter().map(move |id| (t, id)));
        for r in join_all(subs.map(|(t, id)| async move {
            host.subscribe::<Board>(&tenant(t)?, id, Access::Read)
                .await
                .map_err(BoxError::from)
        }))
        .await
        {
            r?;
        }
    }
    Ok(ids)
}

fn patch(seq: i64, epoch: Instant) -> Result<Patch<Board>, BoxError> {
    let value = Board {
        seq,
        sent_us: epoch.elapsed().as_micros() as i64,
        text: format!("revision {seq}"),
    };
    Ok(Patch::of(&value)?
        .with(Board::seq())
        .with(Board::sent_us())
        .with(Board::text()))
}

/// The clients of `names`, connected and subscribed.
struct Clients {
    tasks: Vec<tokio::task::JoinHandle<Result<(), BoxError>>>,
    publish: watch::Sender<Option<(usize, Vec<i64>)>>,
    reports: mpsc::UnboundedReceiver<Seen>,
    world: Arc<World>,
}

impl Clients {
    /// Connects `names`' clients and waits until each is subscribed.
    async fn connect(
        server: &Server,
        names: &[String],
        ids: &[SharedId],
    ) -> Result<Clients, BoxError> {
        let world = Arc::new(World {
            epoch: Instant::now(),
            index: ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.to_string(), i))
                .collect(),
        });
        let (publish, finals) = watch::channel(None);
        let (report, reports) = mpsc::unbounded_channel();
        let (ready, mut subscribed) = mpsc::channel(names.len().max(1));
        let tasks = names
            .iter()
            .map(|n| {
                let (ws, n, world) = (server.ws.clone(), n.clone(), world.clone());
                let (finals, ready, report) = (finals.clone(), ready.clone(), report.clone());
                tokio::spawn(client(ws, n, world, finals, ready, report))
            })
            .collect();
        let mut clients = Clients {
            tasks,
            publish,
            reports,
            world,
        };
        for _ in names {
            if !matches!(
                tokio::time::timeout(Duration::from_secs(120), subscribed.recv()).await,
                Ok(Some(()))
            ) {
                return Err(clients.failure().await);
            }
        }
        Ok(clients)
    }

    /// Publishes the end of phase `phase`, and what each client saw of it.
    async fn phase(&mut self, phase: usize, finals: Vec<i64>) -> Result<Vec<Seen>, BoxError> {
        self.publish.send(Some((phase, finals)))?;
        let mut seen = Vec::with_capacity(self.tasks.len());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while seen.len() < self.tasks.len() {
            match tokio::time::timeout_at(deadline, self.reports.recv()).await {
                Ok(Some(s)) => seen.push(s),
                _ => return Err(self.failure().await),
            }
        }
        Ok(seen)
    }

    /// Why a client did not report: its error, or a missing final value.
    async fn failure(&mut self) -> BoxError {
        for t in &mut self.tasks {
            if t.is_finished() {
                match t.await {
                    Ok(Err(e)) => return e,
                    Err(e) => return e.into(),
                    Ok(Ok(())) => {}
                }
            }
        }
        "not every client received the final value of every model".into()
    }
}

impl Drop for Clients {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The percentiles of `lat` (µs, sorted) in ms: p50, p95, p99, max.
fn percentiles(lat: &[u32]) -> [f64; 4] {
    [0.50, 0.95, 0.99, 1.0].map(|p| {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
        f64::from(lat.get(i).copied().unwrap_or(0)) / 1000.0
    })
}

/// Runs the benchmark.
pub async fn run(cfg: &Config) -> Result<Report, BoxError> {
    let redis = TestRedis::start()?;
    let db = Db::connect(redis.url()).await?;
    let server = Server::start(redis.url())?;
    let names: Vec<String> = (0..cfg.clients).map(|i| format!("t{i:04}")).collect();
    let ids = share(&db, cfg.models, &names).await?;
    let mut clients = Clients::connect(&server, &names, &ids).await?;
    // Every client subscribed: the server's memory with its subscriptions and no traffic.
    let (idle_mb, _) = server.rss()?;
    let host = db.admin().shared();
    let epoch = clients.world.epoch;
    let mut seqs = vec![0i64; ids.len()];
    let mut phases = Vec::new();
    for (n, &rate) in cfg.rates.iter().enumerate() {
        let writes = (f64::from(rate) * cfg.seconds).round() as u64;
        let (cpu0, wall0) = (cpu(&server, &redis)?, Instant::now());
        let start = tokio::time::Instant::now();
        for w in 0..writes {
            tokio::time::sleep_until(start + Duration::from_secs_f64(w as f64 / f64::from(rate)))
                .await;
            let i = w as usize % ids.len();
            seqs[i] += 1;
            host.patch(&ids[i], &patch(seqs[i], epoch)?).await?;
        }
        let seen = clients.phase(n, seqs.clone()).await?;
        let (cpu1, wall) = (cpu(&server, &redis)?, wall0.elapsed().as_secs_f64());
        let mut lat: Vec<u32> = seen
            .iter()
            .flat_map(|s| s.latencies_us.iter().copied())
            .collect();
        lat.sort_unstable();
        phases.push(Phase {
            rate,
            writes,
            deliveries: lat.len() as u64,
            latency: percentiles(&lat),
            rss_mb: server.rss()?,
            cpu: [0, 1, 2].map(|i| (cpu1[i] - cpu0[i]) / wall),
            reconnects: seen.iter().map(|s| s.reconnects).sum(),
        });
    }
    drop(clients);
    let (hot_writes, hot_per_sec) = hot(cfg, &db, &server).await?;
    Ok(Report {
        config: cfg.clone(),
        idle_mb,
        phases,
        hot_writes,
        hot_per_sec,
    })
}

/// One model, many writers: events/s delivered to each subscriber.
async fn hot(cfg: &Config, db: &Db, server: &Server) -> Result<(u64, f64), BoxError> {
    let names: Vec<String> = (0..cfg.hot_subscribers)
        .map(|i| format!("h{i:04}"))
        .collect();
    let ids = share(db, 1, &names).await?;
    let mut clients = Clients::connect(server, &names, &ids).await?;
    let epoch = clients.world.epoch;
    let stop = tokio::time::Instant::now() + Duration::from_secs_f64(cfg.hot_seconds);
    let seq = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let writers = (0..cfg.hot_writers).map(|_| {
        let (db, id, seq) = (db.clone(), ids[0].clone(), seq.clone());
        async move {
            let host = db.admin().shared();
            while tokio::time::Instant::now() < stop {
                let n = seq.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                host.patch(&id, &patch(n, epoch)?).await?;
            }
            Ok::<(), BoxError>(())
        }
    });
    for r in join_all(writers).await {
        r?;
    }
    let writes = seq.load(std::sync::atomic::Ordering::Relaxed);
    let seen = clients.phase(0, vec![writes]).await?;
    let slowest = seen
        .iter()
        .map(|s| match (s.first, s.last) {
            (Some(a), Some(b)) if b > a => s.latencies_us.len() as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        })
        .fold(f64::INFINITY, f64::min);
    Ok((writes as u64, slowest))
}

fn main() {
    if serve_child_if_asked() {
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut cfg = if args.iter().any(|a| a == "--quick") {
        Config::quick()
    } else {
        Config::full()
    };
    // Other sizes, to explore: `--clients N --models N --rates A,B --seconds S`.
    let value = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1).cloned()
    };
    let number = |flag: &str| value(flag).and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = number("--clients") {
        cfg.clients = v as usize;
    }
    if let Some(v) = number("--models") {
        cfg.models = v as usize;
    }
    if let Some(v) = number("--seconds") {
        cfg.seconds = v;
    }
    if let Some(v) = value("--rates") {
        cfg.rates = v.split(',').filter_map(|r| r.parse().ok()).collect();
    }
    // Two workers, like a service on this 2-core machine (the server child has its own two).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(&cfg)) {
        Ok(report) => println!("{}", report.markdown()),
        Err(e) => {
            eprintln!("live benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

//! Live sync at scale, in the reference library's own scenario (the `transports` Hub publishes
//! p95 24.3 ms, p99 27.3 ms, 87 MB RSS): 250 WebSocket clients, each its own tenant subscribed
//! to the same 20 shared models, 5,000 subscriptions.
//!
//! `cargo bench -p popoto-axum --bench live` starts a private `redis-server`, and the live
//! endpoint in a child process (this binary again) on a loopback port, so that the RSS
//! measured is the server's alone. The clients (`LiveClient`, tokio-tungstenite) run here. A
//! writer patches the shared models at a fixed rate; every client records the
//! write-to-delivery latency of every event it receives (the write's time travels in the
//! value), and the run fails unless the final value of every model reaches every client. Then
//! one model, many writers: events/s delivered to each of its subscribers. `--quick`: shorter
//! phases. `tests/bench_live_smoke.rs` runs it with tiny sizes.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use futures_util::future::join_all;
use popoto::shared::{Access, Merge, Patch, SharedId};
use popoto::testing::TestRedis;
use popoto::{Db, Model, TenantId};
use popoto_axum::live::{live_socket, LiveClient, LiveSync, ServerMsg};
use popoto_axum::{Principal, Tenancy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, watch};

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

/// Set in the child process: the Redis URL its live endpoint serves.
const SERVE_ENV: &str = "POPOTO_LIVE_BENCH_SERVE";
/// The line the child prints once it listens.
const LISTENING: &str = "LIVE_BENCH_LISTEN ";
/// The test the smoke test's binary runs as the child (ignored by the bench binary).
pub const CHILD_TEST: &str = "live_bench_server_child";

/// The reference's published figures: p95 and p99 (ms), RSS (MB).
const REFERENCE: (f64, f64, f64) = (24.3, 27.3, 87.0);

/// What the benchmark runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// WebSocket clients, each its own tenant.
    pub clients: usize,
    /// Shared models every client is subscribed to.
    pub models: usize,
    /// Writes per second, spread over the models.
    pub rate: u32,
    /// How long the writer writes.
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
            rate: 100,
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
            rate: 30,
            seconds: 0.5,
            hot_writers: 2,
            hot_subscribers: 3,
            hot_seconds: 0.3,
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What ran.
    pub config: Config,
    /// Writes made by the writer.
    pub writes: u64,
    /// Events received by the clients (each write, by each client).
    pub deliveries: u64,
    /// Write-to-delivery latency percentiles (ms): p50, p95, p99, max.
    pub latency: [f64; 4],
    /// Server VmRSS after the write phase, MB.
    pub rss_mb: f64,
    /// The server's peak VmRSS (VmHWM), MB.
    pub peak_mb: f64,
    /// Server VmRSS once every client was subscribed, before any write (MB).
    pub idle_mb: f64,
    /// Reconnects of clients closed as too slow.
    pub reconnects: u64,
    /// CPU used during the write phase, in cores (CPU seconds per second): the server, the
    /// clients with the writer, Redis.
    pub cpu: [f64; 3],
    /// One model: writes made by its writers.
    pub hot_writes: u64,
    /// One model: events/s delivered to each subscriber (the slowest's).
    pub hot_per_sec: f64,
}

impl Report {
    /// The report as a markdown table, next to the reference's figures.
    pub fn markdown(&self) -> String {
        let c = &self.config;
        let [p50, p95, p99, max] = self.latency;
        format!(
            "{} clients x {} shared models = {} subscriptions; {} writes/s for {} s: {} writes, {} deliveries ({} reconnects)\n\n\
             | figure | popoto-rs | transports Hub (published) |\n|---|---|---|\n\
             | write-to-delivery p50 | {p50:.1} ms | - |\n\
             | write-to-delivery p95 | {p95:.1} ms | {:.1} ms |\n\
             | write-to-delivery p99 | {p99:.1} ms | {:.1} ms |\n\
             | write-to-delivery max | {max:.1} ms | - |\n\
             | server RSS after the writes (peak) | {:.1} MB ({:.1} MB) | {:.0} MB |\n\
             | server RSS, subscribed and idle | {:.1} MB | - |\n\
             | final value of every model at every client | yes | - |\n\n\
             CPU during the writes, in cores: server {:.2}, clients and writer {:.2}, Redis {:.2}.\n\n\
             One model, {} writers, {} subscribers: {} writes in {} s, {:.0} events/s delivered to each subscriber ({:.0} messages/s in all).\n",
            c.clients,
            c.models,
            c.clients * c.models,
            c.rate,
            c.seconds,
            self.writes,
            self.deliveries,
            self.reconnects,
            REFERENCE.0,
            REFERENCE.1,
            self.rss_mb,
            self.peak_mb,
            REFERENCE.2,
            self.idle_mb,
            self.cpu[0],
            self.cpu[1],
            self.cpu[2],
            c.hot_writers,
            c.hot_subscribers,
            self.hot_writes,
            c.hot_seconds,
            self.hot_per_sec,
            self.hot_per_sec * c.hot_subscribers as f64,
        )
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn tenant(name: &str) -> Result<TenantId, BoxError> {
    Ok(TenantId::new(name)?)
}

/// In the child process (the environment names a Redis URL): serves the live endpoint until
/// stdin closes, and returns true; otherwise returns false at once.
pub fn serve_child_if_asked() -> bool {
    let Ok(url) = std::env::var(SERVE_ENV) else {
        return false;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = rt.block_on(serve(&url)) {
        eprintln!("live bench server: {e}");
        std::process::exit(1);
    }
    true
}

async fn serve(url: &str) -> Result<(), BoxError> {
    let db = Db::connect(url).await?;
    let tenancy = Tenancy::builder(db)
        .api_key("x-api-key", |key| async move {
            Ok(key
                .strip_suffix("-key")
                .and_then(|t| TenantId::new(t).ok())
                .map(|t| Principal::new("bench", [t])))
        })
        .build()?;
    let live = LiveSync::builder().shared::<Board>().build();
    let router = Router::new()
        .route("/live", get(live_socket))
        .with_state(live)
        .layer(tenancy.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("{LISTENING}{}", listener.local_addr()?);
    // Small frames go out at once (no Nagle delay waiting for the client's ACK).
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            eprintln!("TCP_NODELAY: {e}");
        }
    });
    let server = tokio::spawn(async move {
        let made = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, made).await
    });
    // Until the parent closes our stdin (or goes away).
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    server.abort();
    Ok(())
}

/// The server child: killed if still running when dropped.
struct Server {
    child: Child,
    ws: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(redis: &str) -> Result<Server, BoxError> {
        let mut child = Command::new(std::env::current_exe()?)
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(SERVE_ENV, redis)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (found, listening) = std::sync::mpsc::channel();
        // Reads the child's output to the end (it never blocks on a full pipe), passing on the
        // address it listens on; the test harness may print its test's name before it.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(at) = line.find(LISTENING) {
                    let _ = found.send(line[at + LISTENING.len()..].trim().to_owned());
                }
            }
        });
        let Ok(addr) = listening.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the server did not listen within a minute".into());
        };
        Ok(Server {
            child,
            ws: format!("ws://{addr}/live"),
        })
    }

    /// VmRSS and VmHWM of the server process, MB.
    fn rss(&self) -> Result<(f64, f64), BoxError> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kb = |name: &str| -> Result<f64, BoxError> {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .ok_or_else(|| format!("no {name} in /proc status"))?;
            let n: f64 = line
                .split_whitespace()
                .nth(1)
                .ok_or("bad /proc status line")?
                .parse()?;
            Ok(n / 1024.0)
        };
        Ok((kb("VmRSS:")?, kb("VmHWM:")?))
    }
}

/// CPU seconds (user + system, every thread) of process `pid` so far.
fn cpu_of(pid: &str) -> Result<f64, BoxError> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').ok_or("bad /proc stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).ok_or("bad /proc stat")?.parse::<f64>()?
        + f.get(12).ok_or("bad /proc stat")?.parse::<f64>()?;
    // USER_HZ is 100 on Linux.
    Ok(ticks / 100.0)
}

/// CPU seconds Redis used so far (`INFO cpu`).
fn cpu_of_redis(redis: &TestRedis) -> Result<f64, BoxError> {
    let info: String = redis::cmd("INFO").arg("cpu").query(&mut redis.raw())?;
    let mut total = 0.0;
    for line in info.lines() {
        if let Some(v) = line
            .strip_prefix("used_cpu_sys:")
            .or_else(|| line.strip_prefix("used_cpu_user:"))
        {
            total += v.trim().parse::<f64>()?;
        }
    }
    Ok(total)
}

/// CPU seconds of the server, this process (the clients and the writer) and Redis.
fn cpu(server: &Server, redis: &TestRedis) -> Result<[f64; 3], BoxError> {
    Ok([
        cpu_of(&server.child.id().to_string())?,
        cpu_of("self")?,
        cpu_of_redis(redis)?,
    ])
}

/// What one client saw.
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

/// Runs one client until it has the final `seq` of every model (`finals`, published when the
/// writers are done), reconnecting from its position if the server closes it.
async fn client(
    ws: String,
    name: String,
    world: Arc<World>,
    mut finals: watch::Receiver<Option<Vec<i64>>>,
    ready: mpsc::Sender<()>,
) -> Result<Seen, BoxError> {
    let key = format!("{name}-key");
    let headers = [("x-api-key", key.as_str())];
    let mut live = LiveClient::connect(&ws, &headers, None).await?;
    let mut seen = Seen::default();
    let mut last = vec![0i64; world.index.len()];
    let mut subscribed = false;
    loop {
        if let Some(want) = finals.borrow().as_ref() {
            if subscribed && *want == last {
                return Ok(seen);
            }
        }
        let msg = tokio::select! {
            m = live.next() => m,
            r = finals.changed() => { r?; continue }
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

type Tasks = Vec<tokio::task::JoinHandle<Result<Seen, BoxError>>>;

/// Connects `names`' clients and waits until each is subscribed; their tasks.
async fn clients(
    server: &Server,
    names: &[String],
    world: &Arc<World>,
    finals: &watch::Receiver<Option<Vec<i64>>>,
) -> Result<Tasks, BoxError> {
    let (ready, mut subscribed) = mpsc::channel(names.len().max(1));
    let tasks: Tasks = names
        .iter()
        .map(|n| {
            let (ws, n, world) = (server.ws.clone(), n.clone(), world.clone());
            tokio::spawn(client(ws, n, world, finals.clone(), ready.clone()))
        })
        .collect();
    drop(ready);
    for _ in names {
        tokio::time::timeout(Duration::from_secs(120), subscribed.recv())
            .await
            .map_err(|_| "a client was not subscribed in time")?
            .ok_or("a client ended before it was subscribed")?;
    }
    Ok(tasks)
}

/// Waits for every client to finish (with a deadline): what each saw.
async fn collect(tasks: Tasks) -> Result<Vec<Seen>, BoxError> {
    let all = tokio::time::timeout(Duration::from_secs(120), join_all(tasks))
        .await
        .map_err(|_| "not every client received the final value of every model")?;
    all.into_iter().map(|r| r?).collect()
}

/// Runs the benchmark.
pub async fn run(cfg: &Config) -> Result<Report, BoxError> {
    let redis = TestRedis::start()?;
    let db = Db::connect(redis.url()).await?;
    let server = Server::start(redis.url())?;
    let names: Vec<String> = (0..cfg.clients).map(|i| format!("t{i:04}")).collect();
    let ids = share(&db, cfg.models, &names).await?;
    let epoch = Instant::now();
    let world = Arc::new(World {
        epoch,
        index: ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.to_string(), i))
            .collect(),
    });
    let (publish, finals) = watch::channel(None);
    let tasks = clients(&server, &names, &world, &finals).await?;
    // Every client subscribed: the server's memory with 5,000 subscriptions and no traffic.
    let (idle_mb, _) = server.rss()?;

    let host = db.admin().shared();
    let total = (f64::from(cfg.rate) * cfg.seconds).round() as u64;
    let (cpu0, wall0) = (cpu(&server, &redis)?, Instant::now());
    let mut seqs = vec![0i64; ids.len()];
    let start = tokio::time::Instant::now();
    for w in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(w as f64 / f64::from(cfg.rate)))
            .await;
        let i = w as usize % ids.len();
        seqs[i] += 1;
        host.patch(&ids[i], &patch(seqs[i], epoch)?).await?;
    }
    publish.send(Some(seqs))?;
    let seen = collect(tasks).await?;
    let (cpu1, wall) = (cpu(&server, &redis)?, wall0.elapsed().as_secs_f64());
    let (rss_mb, peak_mb) = server.rss()?;
    let mut lat: Vec<u32> = seen
        .iter()
        .flat_map(|s| s.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        let i = ((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len().max(1)) - 1;
        f64::from(lat.get(i).copied().unwrap_or(0)) / 1000.0
    };
    let (hot_writes, hot_per_sec) = hot(cfg, &db, &server).await?;
    Ok(Report {
        config: cfg.clone(),
        writes: total,
        deliveries: lat.len() as u64,
        latency: [pct(0.50), pct(0.95), pct(0.99), pct(1.0)],
        rss_mb,
        peak_mb,
        idle_mb,
        reconnects: seen.iter().map(|s| s.reconnects).sum(),
        cpu: [0, 1, 2].map(|i| (cpu1[i] - cpu0[i]) / wall),
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
    let epoch = Instant::now();
    let world = Arc::new(World {
        epoch,
        index: HashMap::from([(ids[0].to_string(), 0)]),
    });
    let (publish, finals) = watch::channel(None);
    let tasks = clients(server, &names, &world, &finals).await?;
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
    publish.send(Some(vec![writes]))?;
    let seen = collect(tasks).await?;
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
    // Other sizes, to explore: `--clients N --models N --rate N --seconds S`.
    let value = |flag: &str| {
        let i = args.iter().position(|a| a == flag)?;
        args.get(i + 1)?.parse::<f64>().ok()
    };
    if let Some(v) = value("--clients") {
        cfg.clients = v as usize;
    }
    if let Some(v) = value("--models") {
        cfg.models = v as usize;
    }
    if let Some(v) = value("--rate") {
        cfg.rate = v as u32;
    }
    if let Some(v) = value("--seconds") {
        cfg.seconds = v;
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

//! The live benchmark's server: the live endpoint in a child process (this binary again, so
//! that its RSS is its own), and what the benchmark reads of it and of Redis (RSS, CPU).

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::routing::get;
use axum::serve::ListenerExt;
use axum::Router;
use popoto::testing::TestRedis;
use popoto::{Db, TenantId};
use popoto_axum::live::{live_socket, LiveSync};
use popoto_axum::{Principal, Tenancy};

use super::{Board, BoxError};

/// Set in the child process: the Redis URL its live endpoint serves.
const SERVE_ENV: &str = "POPOTO_LIVE_BENCH_SERVE";
/// The line the child prints once it listens.
const LISTENING: &str = "LIVE_BENCH_LISTEN ";
/// The test the smoke test's binary runs as the child (ignored by the bench binary).
const CHILD_TEST: &str = "live_bench_server_child";

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
pub struct Server {
    child: Child,
    /// The endpoint's URL.
    pub ws: String,
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
    /// Starts the child serving `redis`, and waits until it listens.
    pub fn start(redis: &str) -> Result<Server, BoxError> {
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
    pub fn rss(&self) -> Result<(f64, f64), BoxError> {
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
pub fn cpu(server: &Server, redis: &TestRedis) -> Result<[f64; 3], BoxError> {
    Ok([
        cpu_of(&server.child.id().to_string())?,
        cpu_of("self")?,
        cpu_of_redis(redis)?,
    ])
}

//! Test support: a private `redis-server` per test, started on a free loopback port.
//!
//! `TestRedis::start()` spawns `redis-server --port N --bind 127.0.0.1 --save "" --appendonly no`
//! in a temporary directory, waits until the server logs that it accepts connections, and kills
//! it on drop. Its log is kept and quoted in every failure. Set `POPOTO_TEST_REDIS_URL` to use
//! an external server instead (each `start()` then FLUSHDBs it, so run tests one at a time);
//! `POPOTO_REDIS_SERVER` names another server binary.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::db::Db;
use crate::model::Model;

mod cluster;
mod inspect;

pub use cluster::TestCluster;
pub use inspect::{fresh_create_eval, script_source, Monitor, Monitored};

/// Why a test server could not be provided.
#[derive(Debug, thiserror::Error)]
#[error("{message}\n--- redis-server log ---\n{log}")]
pub struct TestServerError {
    message: String,
    log: String,
}

/// A private redis-server for one test (or an external one from `POPOTO_TEST_REDIS_URL`).
#[derive(Debug)]
pub struct TestRedis {
    child: Option<Child>,
    port: u16,
    dir: Option<tempfile::TempDir>,
    url: String,
    external: bool,
    /// Every line the server printed, across restarts (kept in memory: nothing to fail writing).
    log: Arc<Mutex<String>>,
    /// Arguments added to the server's command line (a cluster node's settings).
    extra: Vec<String>,
    /// Whether the server is killed when the thread that started it exits (`setpriv
    /// --pdeathsig`): for servers held in a static, which is never dropped.
    tied: bool,
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestRedis {
    /// Starts a private server (or connects the external one).
    pub fn start() -> Result<TestRedis, TestServerError> {
        Self::start_with(&[])
    }

    /// Starts a private server with these arguments added to its command line (never the
    /// external one: its settings are not the test's to choose).
    pub fn start_with(extra: &[&str]) -> Result<TestRedis, TestServerError> {
        if !extra.is_empty() {
            return Self::start_private(extra, false);
        }
        if let Some(url) = env_var("POPOTO_TEST_REDIS_URL")? {
            let client = redis::Client::open(url.as_str())
                .map_err(|e| err(format!("bad POPOTO_TEST_REDIS_URL: {e}"), ""))?;
            let mut conn = client
                .get_connection()
                .map_err(|e| err(format!("cannot reach {url}: {e}"), ""))?;
            redis::cmd("FLUSHDB")
                .exec(&mut conn)
                .map_err(|e| err(format!("FLUSHDB on {url}: {e}"), ""))?;
            return Ok(TestRedis {
                child: None,
                port: 0,
                dir: None,
                url,
                external: true,
                log: Arc::default(),
                extra: Vec::new(),
                tied: false,
            });
        }
        Self::start_private(extra, false)
    }

    /// A private server; `tied`: killed when the calling thread exits (`setpriv --pdeathsig`).
    pub(crate) fn start_private(extra: &[&str], tied: bool) -> Result<TestRedis, TestServerError> {
        let mut dir = Some(tempfile::tempdir().map_err(|e| err(format!("temp dir: {e}"), ""))?);
        let mut last = None;
        // A cluster node also listens on its port + 10000 (the cluster bus).
        let cluster = extra.contains(&"--cluster-enabled");
        for _ in 0..20 {
            let port = free_port().map_err(|e| err(format!("no free port: {e}"), ""))?;
            if cluster && port > u16::MAX - 10_000 {
                continue;
            }
            let url = format!("redis://127.0.0.1:{port}/0");
            let mut server = TestRedis {
                child: None,
                port,
                dir: dir.take(),
                url,
                external: false,
                log: Arc::default(),
                extra: extra.iter().map(|a| (*a).to_owned()).collect(),
                tied,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                // A port taken between probing and binding: try another one.
                Err(e) if e.log.contains("Address already in use") => {
                    dir = server.dir.take();
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| err("redis-server did not start".into(), "")))
    }

    /// Spawns the server on `self.port` and waits for it to accept connections.
    fn spawn(&mut self) -> Result<(), TestServerError> {
        let bin = std::env::var_os("POPOTO_REDIS_SERVER").unwrap_or_else(|| "redis-server".into());
        let dir = match &self.dir {
            Some(d) => d.path().to_path_buf(),
            None => return Err(err("a private server needs its temp dir".into(), "")),
        };
        // A tied server gets SIGKILL when this thread (its parent) exits, even by a crash.
        let mut command = if self.tied {
            let mut c = Command::new("setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let mut child = command
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--dir",
                &dir.to_string_lossy(),
                "--logfile",
                "",
                "--daemonize",
                "no",
            ])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let via = if self.tied { " through setpriv" } else { "" };
                err(
                    format!("cannot run {bin:?}{via}: {e} (is redis-server 6.2+ on PATH?)"),
                    "",
                )
            })?;
        let Some(stdout) = child.stdout.take() else {
            return Err(err(
                "redis-server was started without a stdout pipe".into(),
                "",
            ));
        };
        let log = Arc::clone(&self.log);
        let (tx, rx) = mpsc::channel::<bool>();
        // Keeps the server's log and reports readiness (or exit) once. A send fails only when
        // spawn() stopped waiting (it timed out and killed the server): nobody needs the news.
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stdout).split(b'\n') {
                let mut text = log.lock().unwrap_or_else(PoisonError::into_inner);
                let line = match line {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(e) => {
                        text.push_str(&format!("(reading the server's output failed: {e})\n"));
                        break;
                    }
                };
                text.push_str(&line);
                text.push('\n');
                drop(text);
                if !told && line.contains("Ready to accept connections") {
                    told = true;
                    let _ = tx.send(true);
                }
            }
            if !told {
                let _ = tx.send(false);
            }
        });
        self.child = Some(child);
        let why = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(true) => return Ok(()),
            Ok(false) => "exited before it was ready",
            Err(mpsc::RecvTimeoutError::Timeout) => "was not ready within 20 s",
            Err(mpsc::RecvTimeoutError::Disconnected) => "lost its log reader",
        };
        let mut message = format!("redis-server on port {} {why}", self.port);
        if let Err(e) = self.try_kill() {
            message.push_str(&format!("; then {}", e.message));
        }
        Err(err(message, &self.log()))
    }

    /// Whether the server is running (not killed, not external).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's URL, database 0.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of logical database `db` on this server.
    pub fn url_db(&self, db: u8) -> String {
        match self.url.rsplit_once('/') {
            Some((base, _)) => format!("{base}/{db}"),
            None => self.url.clone(),
        }
    }

    /// A `Db` on database 0.
    pub async fn db(&self) -> Db {
        match Db::connect(&self.url).await {
            Ok(db) => db,
            Err(e) => panic!("connect to test server {}: {e}\n{}", self.url, self.log()),
        }
    }

    /// A blocking redis-rs connection, for assertions on raw keys.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("raw connection to {}: {e}\n{}", self.url, self.log()))
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        if self.external {
            return format!("(external server {})", self.url);
        }
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Kills the server (SIGKILL) and waits for it to exit. Panics if it cannot.
    pub fn kill(&mut self) {
        if let Err(e) = self.try_kill() {
            panic!("{e}");
        }
    }

    fn try_kill(&mut self) -> Result<(), TestServerError> {
        let Some(mut c) = self.child.take() else {
            return Ok(());
        };
        // `kill` is Ok for a child that has already exited.
        c.kill().and_then(|()| c.wait().map(drop)).map_err(|e| {
            err(
                format!("killing redis-server on port {}: {e}", self.port),
                &self.log(),
            )
        })
    }

    /// Kills the server and starts a new, empty one on the same port.
    pub fn restart(&mut self) -> Result<(), TestServerError> {
        if self.external {
            return Err(err(
                "cannot restart an external server (POPOTO_TEST_REDIS_URL)".into(),
                "",
            ));
        }
        self.try_kill()?;
        self.spawn()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        if let Err(e) = self.try_kill() {
            // A second panic while a test unwinds would abort the whole test binary.
            if std::thread::panicking() {
                eprintln!("{e}");
            } else {
                panic!("{e}");
            }
        }
    }
}

/// `Some` value of an environment variable, `None` when it is unset; not UTF-8 is an error.
fn env_var(name: &str) -> Result<Option<String>, TestServerError> {
    match std::env::var(name) {
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(err(format!("{name}: {e}"), "")),
    }
}

fn err(message: String, log: &str) -> TestServerError {
    TestServerError {
        message,
        log: log.to_owned(),
    }
}

/// `REDIS_URL` when set, else the URL of a throwaway private server, which lives as long as the
/// returned guard: what the examples run on.
pub fn redis_url_or_private() -> Result<(Option<TestRedis>, String), TestServerError> {
    match env_var("REDIS_URL")? {
        Some(url) => Ok((None, url)),
        None => {
            let server = TestRedis::start()?;
            let url = server.url().to_owned();
            Ok((Some(server), url))
        }
    }
}

/// Panics with the audit report if model `M` shows any index or isolation finding: orphan,
/// missing or misplaced index entries, or keys that disagree with their stored values.
pub async fn assert_isolated<M: Model>(db: &Db) {
    match db.admin().audit::<M>().await {
        Ok(report) if report.is_clean() => {}
        Ok(report) => panic!(
            "tenant isolation audit of {} failed:\n{report}",
            M::META.name
        ),
        Err(e) => panic!(
            "tenant isolation audit of {} could not run: {e}",
            M::META.name
        ),
    }
}

/// Panics with every report that has a finding, for all models of `models` on the shared
/// backend: the assertion an application calls from its own tests.
pub async fn assert_db_isolated(db: &Db, models: &crate::lifecycle::ModelSet) {
    match db.admin().audit_all(models).await {
        Ok(reports) => {
            let failed: Vec<String> = reports
                .iter()
                .filter(|r| !r.is_clean())
                .map(|r| r.to_string())
                .collect();
            if !failed.is_empty() {
                panic!("tenant isolation audit failed:\n{}", failed.join("\n"));
            }
        }
        Err(e) => panic!("tenant isolation audit could not run: {e}"),
    }
}

//! Test support: a private `redis-server` per test, started on a free loopback port.
//!
//! `TestRedis::start()` spawns `redis-server --port N --bind 127.0.0.1 --save "" --appendonly no`
//! in a temporary directory, waits until the server logs that it accepts connections, and kills
//! it on drop. Its log is kept and quoted in every failure. Set `POPOTO_TEST_REDIS_URL` to use
//! an external server instead (each `start()` then FLUSHDBs it, so run tests one at a time);
//! `POPOTO_REDIS_SERVER` names another server binary.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::db::Db;
use crate::model::Model;

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
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl TestRedis {
    /// Starts a private server (or connects the external one).
    pub fn start() -> Result<TestRedis, TestServerError> {
        if let Ok(url) = std::env::var("POPOTO_TEST_REDIS_URL") {
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
            });
        }
        let mut dir = Some(tempfile::tempdir().map_err(|e| err(format!("temp dir: {e}"), ""))?);
        let mut last = None;
        for _ in 0..5 {
            let port = free_port().map_err(|e| err(format!("no free port: {e}"), ""))?;
            let url = format!("redis://127.0.0.1:{port}/0");
            let mut server = TestRedis {
                child: None,
                port,
                dir: dir.take(),
                url,
                external: false,
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

    fn log_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .map(|d| d.path().join("redis.log"))
            .unwrap_or_default()
    }

    /// Spawns the server on `self.port` and waits for it to accept connections.
    fn spawn(&mut self) -> Result<(), TestServerError> {
        let bin = std::env::var("POPOTO_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let dir = self
            .dir
            .as_ref()
            .map(|d| d.path().to_path_buf())
            .unwrap_or_default();
        let mut child = Command::new(&bin)
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
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                err(
                    format!("cannot run {bin}: {e} (is redis-server 6.2+ on PATH?)"),
                    "",
                )
            })?;
        let stdout = child.stdout.take();
        let log_path = self.log_path();
        let (tx, rx) = mpsc::channel::<bool>();
        // Copies the server's log to a file and reports readiness (or exit) once.
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .ok();
            let mut told = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
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
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(true) => Ok(()),
            Ok(false) | Err(_) => {
                self.kill();
                Err(err(
                    format!("redis-server on port {} did not become ready", self.port),
                    &self.log(),
                ))
            }
        }
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
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills the server and starts a new, empty one on the same port.
    pub fn restart(&mut self) -> Result<(), TestServerError> {
        if self.external {
            return Err(err(
                "cannot restart an external server (POPOTO_TEST_REDIS_URL)".into(),
                "",
            ));
        }
        self.kill();
        self.spawn()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
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
    match std::env::var("REDIS_URL") {
        Ok(url) => Ok((None, url)),
        Err(_) => {
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

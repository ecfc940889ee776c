//! Throughput under concurrency: the ORM against raw redis-rs sharing one multiplexed connection.
//!
//! `cargo bench --bench concurrency` starts a private `redis-server` and, at 1, 8, 64 and 256
//! concurrent tasks, runs create, get, a range query, a verified count and a confidence update through the ORM
//! and through hand-written redis-rs code issuing the same commands (writes both as
//! `MULTI`/`EXEC` and as one Lua call), alternating the sides over rounds. It reports the
//! median instances/s, ORM / raw ratios, p50/p99 latency, client and server CPU per instance
//! and Redis commands/s, with `redis-benchmark -P 16` on the same server as the ceiling, and
//! draws `docs/concurrency.png`.
//!
//! `tests/bench_concurrency_smoke.rs` compiles it and runs it with tiny sizes.
//!
//! One file per concern: `config`, `report`, `measure` (rounds, CPU, the ceiling), `run` (the
//! operations and the driver) and `plot`.

use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use popoto::testing::TestRedis;
use popoto::{BackendConfig, Db, Key, Session};
use redis::aio::MultiplexedConnection;

#[path = "../common/mod.rs"]
mod common;
mod config;
mod measure;
mod plot;
mod report;
mod run;

pub(crate) use common::*;
pub(crate) use config::*;
pub(crate) use measure::*;
pub(crate) use plot::*;
pub(crate) use report::*;
pub(crate) use run::*;

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
    let rt = runtime();
    match rt.block_on(run(&cfg)) {
        Ok(report) => println!("{}", report.markdown()),
        Err(e) => {
            eprintln!("concurrency benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}

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
//! One file per concern: `config`, `report`, `setup` (timing and data), the scenarios
//! (`writes`, `reads`, `migration`), `run` (the driver) and `plot`.
//!
//! The module is also compiled by `tests/bench_smoke.rs` with tiny sizes ([`Config::tiny`]):
//! that is how CI builds the suite without timing anything.

// `tests/bench_smoke.rs` uses what the benchmark alone does not (`Config::tiny`, counts).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use popoto::testing::TestRedis;
use popoto::{Db, DryRun, Key, Model};
use redis::aio::MultiplexedConnection;

#[path = "../common/mod.rs"]
mod common;
mod config;
mod migration;
mod plot;
mod reads;
mod report;
mod run;
mod setup;
mod writes;

pub(crate) use common::*;
pub(crate) use config::*;
pub(crate) use migration::*;
pub(crate) use plot::*;
pub(crate) use reads::*;
pub(crate) use report::*;
pub(crate) use run::*;
pub(crate) use setup::*;
pub(crate) use writes::*;

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

//! The results: one row per operation, concurrency and side, and the markdown table.

use super::*;

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
    pub(crate) fn label(self) -> &'static str {
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
    /// Each round's wall time, in the order the rounds ran (sides alternate within a round).
    pub walls: Vec<Duration>,
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
pub(crate) const CREATE_COMMANDS: f64 = 4.0;

impl Report {
    /// `op`'s row of `side` at `tasks`.
    pub fn row(&self, op: &str, tasks: usize, side: Side) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.op == op && r.tasks == tasks && r.side == side)
    }

    /// ORM / `side` throughput of `op` at `tasks`: the median of the rounds' ratios, each
    /// round's ORM run against the same round's run of `side` (the machine's speed drifts
    /// from round to round; runs of one round are the closest in time).
    pub fn ratio(&self, op: &str, tasks: usize, side: Side) -> Option<f64> {
        let (orm, other) = (self.row(op, tasks, Side::Orm)?, self.row(op, tasks, side)?);
        let pairs: Vec<(Duration, Duration)> = orm
            .walls
            .iter()
            .copied()
            .zip(other.walls.iter().copied())
            .collect();
        (!pairs.is_empty()).then(|| median_ratio(&pairs))
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

    pub(crate) fn tasks(&self) -> Vec<usize> {
        let mut t: Vec<usize> = self.rows.iter().map(|r| r.tasks).collect();
        t.sort_unstable();
        t.dedup();
        t
    }
}

//! The report: per-operation rates, ratios, floors and the markdown table.

use super::*;

// ------------------------------------------------------------------------------- report

/// One operation: ORM, raw redis-rs and (optionally) Python popoto throughput.
#[derive(Debug, Clone)]
pub struct Op {
    /// Name (`seq_create`, `bulk_create`, `get`, `range_query`, `count`, ...).
    pub name: &'static str,
    /// What one operation is (`create`, `query of 200 rows`, `entry`, ...).
    pub unit: String,
    /// Operations in the ORM's best round.
    pub count: u64,
    /// ORM operations per second (best round).
    pub orm_per_sec: f64,
    /// Raw redis-rs operations per second (best round).
    pub raw_per_sec: f64,
    /// Python popoto: operations counted and per second, when it ran.
    pub python: Option<(u64, f64)>,
    /// Median over rounds of ORM / raw throughput, each round running both sides back to back.
    pub paired: Option<f64>,
}

impl Op {
    /// ORM / raw throughput: the median of the paired rounds (robust to the machine speeding
    /// up or slowing down during the run), else the ratio of the best rounds.
    pub fn ratio(&self) -> f64 {
        self.paired.unwrap_or(self.orm_per_sec / self.raw_per_sec)
    }

    /// ORM / Python throughput, when Python ran.
    pub fn python_ratio(&self) -> Option<f64> {
        self.python.map(|(_, p)| self.orm_per_sec / p)
    }
}

/// The scaling tenant's range query at one database size.
#[derive(Debug, Clone)]
pub struct ScalePoint {
    /// Rows (instances) in the database.
    pub rows: usize,
    /// Milliseconds per ORM query (best round).
    pub orm_ms: f64,
    /// Milliseconds per raw query (best round).
    pub raw_ms: f64,
}

/// The large migration's memory.
#[derive(Debug, Clone, Default)]
pub struct MigrationMemory {
    /// Entries moved per run.
    pub entries: u64,
    /// Peak resident memory (VmHWM) of the ORM's migration process, in KiB.
    pub orm_peak_kib: Option<u64>,
    /// Peak resident memory of the raw migration process, in KiB.
    pub raw_peak_kib: Option<u64>,
}

/// What the suite ran on.
#[derive(Debug, Clone, Default)]
pub struct Machine {
    /// Processors available to the suite.
    pub cpus: usize,
    /// `model name` from /proc/cpuinfo.
    pub cpu_model: String,
    /// The private server's `redis_version`.
    pub redis_version: String,
    /// Python popoto's version, when it ran.
    pub popoto_python: Option<String>,
}

impl Machine {
    /// `N CPUs (model), redis-server V[, Python popoto V]`, as the table and the plot show it.
    pub fn summary(&self) -> String {
        format!(
            "{} CPUs ({}), redis-server {}{}",
            self.cpus,
            self.cpu_model,
            self.redis_version,
            self.popoto_python
                .as_ref()
                .map(|v| format!(", Python popoto {v}"))
                .unwrap_or_default()
        )
    }
}

/// The floor of every sequential row's ORM / raw ratio (issue #18; #5 set 0.85).
pub const RAW_FLOOR: f64 = 0.9;

/// A floor of the issue and whether it was met.
#[derive(Debug, Clone)]
pub struct Floor {
    /// What is compared.
    pub what: String,
    /// The measured value.
    pub value: f64,
    /// The floor (or ceiling when `at_most`).
    pub bound: f64,
    /// Whether the bound is a ceiling.
    pub at_most: bool,
}

impl Floor {
    /// Whether the measured value is within the bound.
    pub fn met(&self) -> bool {
        if self.at_most {
            self.value <= self.bound
        } else {
            self.value >= self.bound
        }
    }
}

/// Everything the suite measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The machine.
    pub machine: Machine,
    /// One row per operation.
    pub ops: Vec<Op>,
    /// The range query against the database size.
    pub scaling: Vec<ScalePoint>,
    /// The migration's memory.
    pub migration: MigrationMemory,
    /// Why Python popoto did not run, if it did not.
    pub python_note: Option<String>,
    /// The plot, if drawn.
    pub plot: Option<PathBuf>,
    /// Wall time of the whole suite.
    pub elapsed: Duration,
}

impl Report {
    /// The operation named `name`.
    pub fn op(&self, name: &str) -> Option<&Op> {
        self.ops.iter().find(|o| o.name == name)
    }

    /// Slowest / fastest ORM query time along the scaling curve.
    pub fn scaling_spread(&self) -> f64 {
        let times = self.scaling.iter().map(|p| p.orm_ms);
        let max = times.clone().fold(f64::MIN, f64::max);
        let min = times.fold(f64::MAX, f64::min);
        max / min
    }

    /// The floors with the measured values.
    pub fn floors(&self) -> Vec<Floor> {
        let mut out = Vec::new();
        for op in &self.ops {
            out.push(Floor {
                what: format!("{}: ORM / raw redis-rs", op.name),
                value: op.ratio(),
                bound: RAW_FLOOR,
                at_most: false,
            });
        }
        for (name, bound) in [
            ("seq_create", 8.0),
            ("bulk_create", 50.0),
            ("range_query", 8.0),
        ] {
            if let Some(r) = self.op(name).and_then(Op::python_ratio) {
                out.push(Floor {
                    what: format!("{name}: ORM / Python popoto"),
                    value: r,
                    bound,
                    at_most: false,
                });
            }
        }
        if self.scaling.len() > 1 {
            out.push(Floor {
                what: "range query, slowest / fastest database size".into(),
                value: self.scaling_spread(),
                bound: 1.3,
                at_most: true,
            });
        }
        if let Some(kib) = self.migration.orm_peak_kib {
            out.push(Floor {
                what: format!(
                    "migrate_to_partitioned of {} entries: peak RSS (MB)",
                    self.migration.entries
                ),
                value: kib as f64 / 1024.0,
                bound: 200.0,
                at_most: true,
            });
        }
        out
    }

    /// The report as Markdown tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Machine: {}; suite wall time {:.0} s.\n",
            self.machine.summary(),
            self.elapsed.as_secs_f64()
        );
        let _ = writeln!(
            s,
            "| operation | unit | popoto-rs /s | raw redis-rs /s | ORM / raw | Python popoto /s | ORM / Python |"
        );
        let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
        for op in &self.ops {
            let (py, pyr) = match (op.python, op.python_ratio()) {
                (Some((_, p)), Some(r)) => (fmt_rate(p), format!("{r:.1}x")),
                _ => ("n/a".into(), "n/a".into()),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {:.2} | {} | {} |",
                op.name,
                op.unit,
                fmt_rate(op.orm_per_sec),
                fmt_rate(op.raw_per_sec),
                op.ratio(),
                py,
                pyr
            );
        }
        let _ = writeln!(
            s,
            "\nRates are each side's best round. ORM / raw is the median of the rounds' ratios, \
             each round running both sides back to back (so a change of machine speed during \
             the run does not count); ORM / Python is the ratio of best rounds."
        );
        if !self.scaling.is_empty() {
            let _ = writeln!(
                s,
                "\n| rows in the database | popoto-rs ms / query | raw ms / query | ORM / raw |"
            );
            let _ = writeln!(s, "|---:|---:|---:|---:|");
            for p in &self.scaling {
                let _ = writeln!(
                    s,
                    "| {} | {:.3} | {:.3} | {:.2} |",
                    fmt_int(p.rows as u64),
                    p.orm_ms,
                    p.raw_ms,
                    p.raw_ms / p.orm_ms
                );
            }
            let _ = writeln!(
                s,
                "\nSlowest / fastest ORM query time: {:.2}",
                self.scaling_spread()
            );
        }
        let mm = &self.migration;
        let kib = |k: Option<u64>| {
            k.map_or("not measured".into(), |k| {
                format!("{:.1} MB", k as f64 / 1024.0)
            })
        };
        let _ = writeln!(
            s,
            "\nmigrate_to_partitioned of {} entries: peak resident memory {} (raw redis-rs: {}).",
            fmt_int(mm.entries),
            kib(mm.orm_peak_kib),
            kib(mm.raw_peak_kib)
        );
        if let Some(note) = &self.python_note {
            let _ = writeln!(s, "\nPython popoto: {note}");
        }
        let _ = writeln!(s, "\n| floor | measured | bound | met |");
        let _ = writeln!(s, "|---|---:|---:|---|");
        for f in self.floors() {
            let _ = writeln!(
                s,
                "| {} | {:.2} | {} {} | {} |",
                f.what,
                f.value,
                if f.at_most { "<=" } else { ">=" },
                f.bound,
                if f.met() { "yes" } else { "**no**" }
            );
        }
        s
    }
}

pub fn fmt_int(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `10k`, `100k`, `1M`, ...
pub fn fmt_rows(x: f64) -> String {
    if x >= 1e6 {
        format!("{}M", (x / 1e5).round() / 10.0)
    } else if x >= 1e3 {
        format!("{}k", (x / 1e2).round() / 10.0)
    } else {
        format!("{}", x.round())
    }
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 100.0 {
        fmt_int(r.round() as u64)
    } else {
        format!("{r:.1}")
    }
}

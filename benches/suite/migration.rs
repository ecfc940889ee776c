//! `migrate_to_partitioned` against a hand-written migration, each in a child process for its peak memory.

use super::*;

// ------------------------------------------------------------------------------- migration

/// Which migration a (child) run performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationSide {
    /// `db.admin().migrate_to_partitioned::<Memory>(..)`.
    Orm,
    /// [`raw_migrate`].
    Raw,
}

impl MigrationSide {
    fn name(self) -> &'static str {
        match self {
            MigrationSide::Orm => "orm",
            MigrationSide::Raw => "raw",
        }
    }
}

/// Runs one migration against `url`: entries moved and seconds taken.
pub async fn migrate_once(url: &str, side: MigrationSide) -> Res<(u64, f64)> {
    match side {
        MigrationSide::Orm => {
            let db = Db::connect(url).await?;
            let start = Instant::now();
            let report = db
                .admin()
                .migrate_to_partitioned::<Memory>(Memory::certainty(), DryRun::No, |_| {})
                .await?;
            let secs = start.elapsed().as_secs_f64();
            check(
                report.errors.is_empty(),
                format!("migration errors: {:?}", report.errors.first()),
            )?;
            Ok((report.migrated, secs))
        }
        MigrationSide::Raw => {
            let client = redis::Client::open(url)?;
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&raw_config())
                .await?;
            let start = Instant::now();
            let moved = raw_migrate(&mut conn).await?;
            Ok((moved, start.elapsed().as_secs_f64()))
        }
    }
}

/// Peak resident memory of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The child process's entry point: `--migrate-child URL orm|raw`; prints one result line.
pub async fn migrate_child(url: &str, side: &str) -> Res<()> {
    let side = match side {
        "orm" => MigrationSide::Orm,
        "raw" => MigrationSide::Raw,
        other => return Err(format!("unknown migration side {other:?}").into()),
    };
    let (moved, secs) = migrate_once(url, side).await?;
    println!(
        "MIGRATED {moved} {secs} {}",
        peak_rss_kib().unwrap_or_default()
    );
    Ok(())
}

/// Runs one migration in a child process (or in this one without `exe`).
pub async fn migrate_run(
    exe: Option<&Path>,
    url: &str,
    side: MigrationSide,
) -> Res<(u64, f64, Option<u64>)> {
    let Some(exe) = exe else {
        let (moved, secs) = migrate_once(url, side).await?;
        return Ok((moved, secs, None));
    };
    let exe = exe.to_path_buf();
    let url = url.to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(exe)
            .arg("--migrate-child")
            .arg(url)
            .arg(side.name())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MIGRATED "))
        .ok_or_else(|| {
            format!(
                "the migration child printed no result (status {}):\n{stdout}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let parts: Vec<&str> = line.split_whitespace().collect();
    check(parts.len() == 3, format!("bad child result {line:?}"))?;
    Ok((
        parts[0].parse()?,
        parts[1].parse()?,
        Some(parts[2].parse()?),
    ))
}

/// `migrate_to_partitioned` of a legacy hash of `migration_entries`, ORM and raw alternately,
/// each run in a child process (when `child_exe` is set) that reports its peak memory.
pub async fn migration(
    cfg: &Config,
    url: &str,
    conn: &mut MultiplexedConnection,
) -> Res<(Op, MigrationMemory)> {
    let n = cfg.migration_entries;
    let tenants = cfg.migration_tenants;
    progress(
        cfg,
        format!("migrate_to_partitioned: building {n} legacy entries"),
    );
    flushdb(conn).await?;
    build_legacy(conn, n, tenants, true).await?;
    let (mut best_orm, mut best_raw) = (f64::MAX, f64::MAX);
    let mut pairs = Vec::new();
    let mut memory = MigrationMemory {
        entries: n as u64,
        ..MigrationMemory::default()
    };
    for round in 0..cfg.migration_rounds.max(1) {
        let mut pair = (Duration::ZERO, Duration::ZERO);
        for side in [round % 2, 1 - round % 2] {
            let side = if side == 0 {
                MigrationSide::Orm
            } else {
                MigrationSide::Raw
            };
            // The previous run emptied the legacy hash: rebuild it (the instances stay).
            let len: u64 = redis::cmd("HLEN").arg(LEGACY).query_async(conn).await?;
            if len == 0 {
                reset_partitions(conn, tenants).await?;
                build_legacy(conn, n, tenants, false).await?;
            }
            progress(cfg, format!("migrate_to_partitioned: {} run", side.name()));
            let (moved, secs, peak) = migrate_run(cfg.child_exe.as_deref(), url, side).await?;
            check(
                moved == n as u64,
                format!("{} migration moved {moved} of {n}", side.name()),
            )?;
            let left: u64 = redis::cmd("HLEN").arg(LEGACY).query_async(conn).await?;
            check(left == 0, format!("{left} legacy entries left"))?;
            match side {
                MigrationSide::Orm => {
                    best_orm = best_orm.min(secs);
                    pair.0 = Duration::from_secs_f64(secs);
                    memory.orm_peak_kib = memory.orm_peak_kib.max(peak);
                }
                MigrationSide::Raw => {
                    best_raw = best_raw.min(secs);
                    pair.1 = Duration::from_secs_f64(secs);
                    memory.raw_peak_kib = memory.raw_peak_kib.max(peak);
                }
            }
        }
        pairs.push(pair);
    }
    flushdb(conn).await?;
    let op = Op {
        name: "migrate_to_partitioned",
        unit: "entry".into(),
        count: n as u64,
        orm_per_sec: n as f64 / best_orm,
        raw_per_sec: n as f64 / best_raw,
        python: None,
        paired: Some(median_ratio(&pairs)).filter(|r| r.is_finite()),
    };
    Ok((op, memory))
}

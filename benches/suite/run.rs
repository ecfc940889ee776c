//! The suite's driver: the scenarios in order, the machine, the Python popoto run.

use super::*;

// ------------------------------------------------------------------------------- the suite

/// Runs the suite; panics with the cause if anything fails (a benchmark has nobody to report to).
pub async fn run(cfg: &Config) -> Report {
    match try_run(cfg).await {
        Ok(r) => r,
        Err(e) => panic!("benchmark suite failed: {e}"),
    }
}

pub async fn try_run(cfg: &Config) -> Res<Report> {
    let started = Instant::now();
    let server = TestRedis::start()?;
    let url = server.url().to_owned();
    let db = Db::connect(&url).await?;
    let client = redis::Client::open(url.as_str())?;
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&raw_config())
        .await?;
    let mut report = Report {
        machine: machine(&mut conn).await?,
        ..Report::default()
    };
    check_equivalence(&db, &mut conn).await?;
    let mut python_ops = BTreeMap::new();
    if cfg.wants("seq_create") {
        report.ops.push(seq_create(cfg, &db, &mut conn).await?);
    }
    let reads = ["get", "range_query", "count", "or_query", "cursor_page"];
    if cfg.wants("bulk_create") || reads.iter().any(|r| cfg.wants(r)) {
        let (bulk, t0_ids) = bulk_create(cfg, &db, &mut conn).await?;
        if cfg.wants("bulk_create") {
            report.ops.push(bulk);
        }
        check(!t0_ids.is_empty(), "tenant t0 has no rows")?;
        if cfg.wants("get") {
            report.ops.push(get(cfg, &db, &mut conn, &t0_ids).await?);
        }
        if cfg.wants("range_query") {
            report
                .ops
                .push(range_query(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
        if cfg.wants("count") {
            report
                .ops
                .push(count(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
        if cfg.wants("or_query") {
            report
                .ops
                .push(or_query(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
        if cfg.wants("cursor_page") {
            report
                .ops
                .push(cursor_page(cfg, &db, &mut conn, t0_ids.len()).await?);
        }
    }
    if cfg.wants("confidence_update") {
        report
            .ops
            .push(confidence_update(cfg, &db, &mut conn).await?);
    }
    // Python popoto: the same workload on database 1 of the same server.
    if cfg.wants("python") {
        match &cfg.python {
            None => report.python_note = Some("not run (no virtualenv with popoto 1.10.1)".into()),
            Some(python) => {
                progress(cfg, format!("Python popoto via {}", python.display()));
                match run_python(python, &server.url_db(1), cfg).await {
                    Ok((version, ops)) => {
                        report.machine.popoto_python = Some(version);
                        for o in &mut report.ops {
                            if let Some(p) = ops.get(o.name) {
                                o.python = Some(*p);
                            }
                        }
                        report.python_note = ops.get("migrate_to_partitioned").map(|(n, _)| {
                            format!(
                                "smaller sizes than the Rust runs (rates per operation); its migration moved {} entries (popoto loads the whole legacy hash into memory)",
                                fmt_int(*n)
                            )
                        });
                        python_ops = ops;
                    }
                    Err(e) => {
                        eprintln!("[suite] Python popoto skipped: {e}");
                        report.python_note = Some(format!("skipped: {e}"));
                    }
                }
            }
        }
    }
    if cfg.wants("migrate_to_partitioned") {
        let (mut op, memory) = migration(cfg, &url, &mut conn).await?;
        op.python = python_ops.get("migrate_to_partitioned").copied();
        report.ops.push(op);
        report.migration = memory;
    }
    if cfg.wants("scaling") {
        report.scaling = scaling(cfg, &db, &mut conn).await?;
    }
    flushdb(&mut conn).await?;
    report.elapsed = started.elapsed();
    if let Some(path) = &cfg.plot {
        plot(&report, path)?;
        report.plot = Some(path.clone());
    }
    Ok(report)
}

pub async fn machine(conn: &mut MultiplexedConnection) -> Res<Machine> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    let redis_version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_owned();
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    Ok(Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        redis_version,
        popoto_python: None,
    })
}

/// Runs `benches/popoto_bench.py` against `url`: popoto's version and (ops, ops/s) per name.
pub async fn run_python(
    python: &Path,
    url: &str,
    cfg: &Config,
) -> Res<(String, BTreeMap<String, (u64, f64)>)> {
    let p = &cfg.python_sizes;
    let sizes = serde_json::json!({
        "seq_create": p.seq_creates,
        "bulk_create": p.bulk_creates,
        "tenant_rows": cfg.tenant_rows,
        "gets": p.gets,
        "range_queries": p.range_queries,
        "range_rows": cfg.range_rows,
        "counts": p.counts,
        "memories": p.memories,
        "confidence_updates": p.confidence_updates,
        "migration_entries": p.migration_entries,
        "rounds": p.rounds,
    });
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/popoto_bench.py");
    let (python, url) = (python.to_path_buf(), url.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(sizes.to_string())
            .env("REDIS_URL", url)
            .output()
    })
    .await??;
    if !out.status.success() {
        return Err(format!(
            "popoto_bench.py exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or_default()
        )
        .into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let version = v["popoto"].as_str().unwrap_or("?").to_owned();
    let mut ops = BTreeMap::new();
    if let Some(map) = v["ops"].as_object() {
        for (name, o) in map {
            let n = o["ops"].as_u64().unwrap_or_default();
            let secs = o["secs"].as_f64().unwrap_or(f64::INFINITY);
            ops.insert(name.clone(), (n, n as f64 / secs));
        }
    }
    Ok((version, ops))
}

//! Measuring: client and server CPU, rounds of concurrent operations, their medians, and the
//! `redis-benchmark` ceiling.

use super::*;

/// The server's CPU seconds and commands processed so far.
pub(crate) async fn server_counters(conn: &mut MultiplexedConnection) -> Res<(f64, u64)> {
    let info: String = redis::cmd("INFO").arg("all").query_async(conn).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
            .ok_or_else(|| format!("INFO lacks {name}"))
    };
    let cpu = field("used_cpu_user")?.parse::<f64>()? + field("used_cpu_sys")?.parse::<f64>()?;
    Ok((cpu, field("total_commands_processed")?.parse()?))
}

/// One round's measurements.
pub(crate) struct Sample {
    wall: Duration,
    latencies: Vec<Duration>,
    client: Duration,
    server: f64,
    commands: u64,
}

/// Runs `total` operations on `tasks` concurrent tasks (`op(i)` is operation `i`).
pub(crate) async fn round(
    monitor: &mut MultiplexedConnection,
    tasks: usize,
    total: usize,
    op: &OpFn,
) -> Res<Sample> {
    let (server0, commands0) = server_counters(monitor).await?;
    let client0 = client_cpu();
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(total / tasks + 1);
                for i in (t..total).step_by(tasks) {
                    let s = Instant::now();
                    op(i).await?;
                    lat.push(s.elapsed());
                }
                Res::Ok(lat)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for h in handles {
        latencies.extend(h.await??);
    }
    let wall = start.elapsed();
    let client = client_cpu().saturating_sub(client0);
    let (server1, commands1) = server_counters(monitor).await?;
    latencies.sort_unstable();
    Ok(Sample {
        wall,
        latencies,
        client,
        server: server1 - server0,
        commands: commands1.saturating_sub(commands0 + 1),
    })
}

/// The row of the median round of `samples`.
pub(crate) fn summarize(
    op: &'static str,
    tasks: usize,
    side: Side,
    mut samples: Vec<Sample>,
) -> Row {
    let walls = samples.iter().map(|s| s.wall).collect();
    samples.sort_by_key(|s| s.wall);
    let s = &samples[samples.len() / 2];
    let n = s.latencies.len().max(1) as f64;
    let pct = |p: f64| {
        let i = ((s.latencies.len() as f64 * p) as usize).min(s.latencies.len().saturating_sub(1));
        s.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    Row {
        walls,
        op,
        tasks,
        side,
        per_sec: per_sec(s.latencies.len(), s.wall),
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        client_us: s.client.as_secs_f64() * 1e6 / n,
        server_us: s.server * 1e6 / n,
        commands_per_sec: s.commands as f64 / s.wall.as_secs_f64().max(1e-9),
    }
}

/// Mean requests/s of `redis-benchmark -P 16` HSET, SADD and ZADD on `server`.
pub(crate) fn ceiling(server: &TestRedis, requests: usize) -> Res<f64> {
    let port = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap_or("")
        .to_owned();
    let out = std::process::Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-P",
            "16",
            "-n",
            &requests.to_string(),
        ])
        .args(["-r", "100000", "-t", "hset,sadd,zadd", "--csv"])
        .output()?;
    check(
        out.status.success(),
        format!("redis-benchmark: {}", String::from_utf8_lossy(&out.stderr)),
    )?;
    let text = String::from_utf8(out.stdout)?;
    let rates: Vec<f64> = text
        .lines()
        .filter_map(|l| l.split(',').nth(1)?.trim_matches('"').parse().ok())
        .collect();
    check(rates.len() == 3, format!("redis-benchmark printed {text}"))?;
    Ok(rates.iter().sum::<f64>() / 3.0)
}

//! Timing (alternating duels) and data set-up shared by the scenarios.

use super::*;

// ------------------------------------------------------------------------------- timing

/// Runs `orm` and `raw` once each untimed (with more than one round), then `rounds` times
/// each, alternating which goes first; returns each side's shortest round and the median of
/// the rounds' ORM / raw ratios.
pub async fn duel<O, R>(rounds: usize, mut orm: O, mut raw: R) -> Res<(Duration, Duration, f64)>
where
    O: AsyncFnMut() -> Res<()>,
    R: AsyncFnMut() -> Res<()>,
{
    let (mut best_orm, mut best_raw) = (Duration::MAX, Duration::MAX);
    let mut pairs = Vec::with_capacity(rounds.max(1));
    if rounds > 1 {
        // Warm-up, not timed: connections dialed, scripts loaded, caches and clocks up.
        orm().await?;
        raw().await?;
    }
    for round in 0..rounds.max(1) {
        let (mut this_orm, mut this_raw) = (Duration::ZERO, Duration::ZERO);
        for side in [round % 2, 1 - round % 2] {
            let start = Instant::now();
            if side == 0 {
                orm().await?;
                this_orm = start.elapsed();
                best_orm = best_orm.min(this_orm);
            } else {
                raw().await?;
                this_raw = start.elapsed();
                best_raw = best_raw.min(this_raw);
            }
        }
        pairs.push((this_orm, this_raw));
    }
    Ok((best_orm, best_raw, median_ratio(&pairs)))
}

pub fn progress(cfg: &Config, what: impl std::fmt::Display) {
    if cfg.verbose {
        eprintln!("[suite] {what}");
    }
}

// ------------------------------------------------------------------------------- setup helpers

pub async fn flushdb(conn: &mut MultiplexedConnection) -> Res<()> {
    redis::cmd("FLUSHDB").query_async::<()>(conn).await?;
    Ok(())
}

/// Every key of the database with its content, for the byte-equality check.
pub async fn dump(conn: &mut MultiplexedConnection) -> Res<BTreeMap<String, String>> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await?;
    let mut out = BTreeMap::new();
    for k in keys {
        let ty: String = redis::cmd("TYPE").arg(&k).query_async(conn).await?;
        let content = match ty.as_str() {
            "hash" => {
                let mut h: Vec<(Vec<u8>, Vec<u8>)> =
                    redis::cmd("HGETALL").arg(&k).query_async(conn).await?;
                h.sort();
                format!("{h:?}")
            }
            "set" => {
                let mut m: Vec<Vec<u8>> = redis::cmd("SMEMBERS").arg(&k).query_async(conn).await?;
                m.sort();
                format!("{m:?}")
            }
            "zset" => {
                let z: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .arg("WITHSCORES")
                    .query_async(conn)
                    .await?;
                format!("{z:?}")
            }
            other => format!("<{other}>"),
        };
        out.insert(k, content);
    }
    Ok(out)
}

/// The raw baseline writes exactly the bytes the ORM writes, and reads them back alike.
pub async fn check_equivalence(db: &Db, conn: &mut MultiplexedConnection) -> Res<()> {
    let id = "0123456789abcdef0123456789abcdef";
    let value = Episode {
        project_id: "eqv".into(),
        episode_id: id.into(),
        title: "same bytes".into(),
        score: 0.1 + 0.2,
    };
    flushdb(conn).await?;
    db.tenant("eqv")?.create(value.clone()).await?;
    let orm = dump(conn).await?;
    flushdb(conn).await?;
    let t = RawTenant::new("eqv");
    let mut pipe = redis::pipe();
    pipe.atomic();
    raw_create_cmds(&mut pipe, &t, id, &value.title, value.score);
    pipe.query_async::<()>(conn).await?;
    let raw = dump(conn).await?;
    check(
        orm == raw,
        format!("raw create differs from the ORM's:\n{orm:#?}\n{raw:#?}"),
    )?;
    let got = raw_get(conn, &t.key(id)).await?;
    check(got.as_ref() == Some(&value), "raw get decodes differently")?;
    let orm_got = db.tenant("eqv")?.get(&Episode::key_of("eqv", id)).await?;
    check(orm_got == got, "ORM and raw get differ")?;
    flushdb(conn).await?;
    Ok(())
}

/// `n` episodes spread over `tenants` tenants (`t0`, `t1`, ...), scores `0 .. 1` per tenant.
pub fn bulk_values(n: usize, tenants: usize) -> Vec<Episode> {
    let per = n.div_ceil(tenants).max(1) as f64;
    (0..n)
        .map(|i| Episode {
            project_id: format!("t{}", i % tenants),
            title: format!("episode {i}"),
            score: (i / tenants) as f64 / per,
            ..Default::default()
        })
        .collect()
}

/// Fills the database with raw, layout-identical rows of filler tenants until it holds
/// `target` episodes (`have` so far); pipelined, 1,000 rows per round trip.
pub async fn fill(
    conn: &mut MultiplexedConnection,
    have: &mut usize,
    target: usize,
    tenant_rows: usize,
) -> Res<()> {
    let mut pipe = redis::pipe();
    let mut queued = 0;
    let mut tenant = RawTenant::new(&format!("f{}", *have / tenant_rows));
    while *have < target {
        if have.is_multiple_of(tenant_rows) {
            tenant = RawTenant::new(&format!("f{}", *have / tenant_rows));
        }
        let i = *have % tenant_rows;
        raw_create_cmds(
            &mut pipe,
            &tenant,
            &new_id(),
            &format!("filler {i}"),
            i as f64 / tenant_rows as f64,
        );
        *have += 1;
        queued += 1;
        if queued == 1000 {
            pipe.query_async::<()>(conn).await?;
            pipe = redis::pipe();
            queued = 0;
        }
    }
    if queued > 0 {
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

/// The instance hashes and the legacy companion hash of `entries` memories.
pub async fn build_legacy(
    conn: &mut MultiplexedConnection,
    entries: usize,
    tenants: usize,
    with_instances: bool,
) -> Res<()> {
    let initial = initial_entry();
    let mut pipe = redis::pipe();
    let mut legacy = redis::cmd("HSET");
    legacy.arg(LEGACY);
    let mut queued = 0;
    for i in 0..entries {
        let m = Memory {
            project: format!("p{}", i % tenants.max(1)),
            key: format!("k{i:08}"),
            content: "legacy".into(),
            certainty: 0.5,
        };
        let record = m.to_record()?;
        let key = Memory::key_of(m.project.as_str(), m.key.as_str()).redis_key();
        if with_instances {
            let hset = pipe.cmd("HSET").arg(&key);
            for (f, v) in Memory::META.fields.iter().zip(&record.values) {
                hset.arg(f.name).arg(&v[..]);
            }
            hset.ignore();
        }
        legacy.arg(&key).arg(&initial[..]);
        queued += 1;
        if queued == 1000 {
            pipe.add_command(legacy).ignore();
            pipe.query_async::<()>(conn).await?;
            pipe = redis::pipe();
            legacy = redis::cmd("HSET");
            legacy.arg(LEGACY);
            queued = 0;
        }
    }
    if queued > 0 {
        pipe.add_command(legacy).ignore();
        pipe.query_async::<()>(conn).await?;
    }
    Ok(())
}

/// Deletes every partition hash, so the legacy hash can be rebuilt for the next run.
pub async fn reset_partitions(conn: &mut MultiplexedConnection, tenants: usize) -> Res<()> {
    let mut pipe = redis::pipe();
    for t in 0..tenants.max(1) {
        pipe.cmd("DEL").arg(format!("{LEGACY}:p{t}")).ignore();
    }
    pipe.cmd("DEL").arg(LEGACY).ignore();
    pipe.query_async::<()>(conn).await?;
    Ok(())
}

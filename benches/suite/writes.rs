//! Write scenarios: sequential and bulk create, confidence update.

use super::*;

pub async fn seq_create(cfg: &Config, db: &Db, conn: &mut MultiplexedConnection) -> Res<Op> {
    let n = cfg.seq_creates;
    progress(cfg, format!("sequential create: {n} per round"));
    let t = db.tenant("seqo")?;
    let raw_t = RawTenant::new("seqr");
    let d = duel(
        cfg.rounds,
        async || {
            for i in 0..n {
                t.create(Episode {
                    title: format!("episode {i}"),
                    score: i as f64 / n as f64,
                    ..Default::default()
                })
                .await?;
            }
            Ok(())
        },
        async || {
            for i in 0..n {
                raw_create(conn, &raw_t, &format!("episode {i}"), i as f64 / n as f64).await?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("seq_create", "create", n, d))
}

/// Bulk create, each round on an empty database (raw first, so the ORM's rows stay for the
/// reads); returns the ids of tenant `t0`.
pub async fn bulk_create(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
) -> Res<(Op, Vec<String>)> {
    let n = cfg.bulk_creates;
    let tenants = (n / cfg.tenant_rows).max(1);
    progress(
        cfg,
        format!("bulk create: {n} instances over {tenants} tenants"),
    );
    let (mut best_orm, mut best_raw) = (Duration::MAX, Duration::MAX);
    let mut pairs = Vec::new();
    let mut created = Vec::new();
    let raw_tenants: Vec<RawTenant> = (0..tenants)
        .map(|i| RawTenant::new(&format!("t{i}")))
        .collect();
    for _ in 0..cfg.rounds.clamp(1, 5) {
        let values = bulk_values(n, tenants);
        flushdb(conn).await?;
        let start = Instant::now();
        for (c, rows) in values.chunks(1000).enumerate() {
            let mut pipe = redis::pipe();
            pipe.atomic();
            for (j, v) in rows.iter().enumerate() {
                let t = &raw_tenants[(c * 1000 + j) % tenants];
                raw_create_cmds(&mut pipe, t, &new_id(), &v.title, v.score);
            }
            pipe.query_async::<()>(conn).await?;
        }
        let raw = start.elapsed();
        best_raw = best_raw.min(raw);
        flushdb(conn).await?;
        // The previous round's instances go first: 100,000 live values would slow the next
        // round's allocations (the raw side keeps nothing either).
        drop(std::mem::take(&mut created));
        let start = Instant::now();
        created = db.admin().create_many(values).await?;
        let orm = start.elapsed();
        best_orm = best_orm.min(orm);
        pairs.push((orm, raw));
    }
    let ids = created
        .into_iter()
        .filter(|e| e.project_id == "t0")
        .map(|e| e.episode_id)
        .collect();
    Ok((
        op(
            "bulk_create",
            "create",
            n,
            (best_orm, best_raw, median_ratio(&pairs)),
        ),
        ids,
    ))
}

pub async fn confidence_update(cfg: &Config, db: &Db, conn: &mut MultiplexedConnection) -> Res<Op> {
    let n = cfg.confidence_updates;
    progress(cfg, format!("confidence update: {n} per round"));
    let conf = db.tenant("conf")?;
    let memories = conf
        .create_many(
            (0..cfg.memories.max(1))
                .map(|i| Memory {
                    key: format!("m{i}"),
                    content: format!("memory {i}"),
                    ..Default::default()
                })
                .collect(),
        )
        .await?;
    let members: Vec<String> = memories
        .iter()
        .map(|m| Memory::key_of(m.project.as_str(), m.key.as_str()).redis_key())
        .collect();
    let companion = format!("{LEGACY}:conf");
    let d = duel(
        cfg.rounds,
        async || {
            for i in 0..n {
                let m = &memories[i % memories.len()];
                conf.confidence(m, Memory::certainty())?
                    .update((i % 10) as f64 / 10.0)
                    .await?;
            }
            Ok(())
        },
        async || {
            for i in 0..n {
                let member = &members[i % members.len()];
                raw_confidence(conn, &companion, member, (i % 10) as f64 / 10.0).await?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("confidence_update", "update", n, d))
}

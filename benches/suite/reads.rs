//! Read scenarios: get, range query, count, OR query, cursor page and the scaling curve.

use super::*;

pub async fn get(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    ids: &[String],
) -> Res<Op> {
    let n = cfg.gets;
    progress(cfg, format!("get by key: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let keys: Vec<Key<Episode>> = ids
        .iter()
        .map(|id| Episode::key_of("t0", id.as_str()))
        .collect();
    let d = duel(
        cfg.rounds,
        async || {
            for i in 0..n {
                let got = t0.get(&keys[i % keys.len()]).await?;
                check(got.is_some(), "ORM get found nothing")?;
            }
            Ok(())
        },
        async || {
            for i in 0..n {
                let got = raw_get(conn, &raw_t0.key(&ids[i % ids.len()])).await?;
                check(got.is_some(), "raw get found nothing")?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("get", "get", n, d))
}

pub async fn range_query(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    tenant_rows: usize,
) -> Res<Op> {
    let n = cfg.range_queries;
    let rows = cfg.range_rows.min(tenant_rows / 2).max(1);
    progress(cfg, format!("range query of {rows} rows: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let d = duel(
        cfg.rounds,
        async || {
            for _ in 0..n {
                let got = orm_range(&t0, rows).await?;
                check(
                    got.len() == rows,
                    format!("ORM range returned {}", got.len()),
                )?;
            }
            Ok(())
        },
        async || {
            for _ in 0..n {
                let got = raw_range(conn, &raw_t0, 0.5, rows).await?;
                check(
                    got.len() == rows,
                    format!("raw range returned {}", got.len()),
                )?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("range_query", &format!("query of {rows} rows"), n, d))
}

pub async fn count(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    expected: usize,
) -> Res<Op> {
    let n = cfg.counts;
    progress(cfg, format!("count: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let d = duel(
        cfg.rounds,
        async || {
            for _ in 0..n {
                let got = t0.query::<Episode>().count().await?;
                check(got == expected, "ORM count")?;
            }
            Ok(())
        },
        async || {
            for _ in 0..n {
                let got = raw_verified_count(conn, &raw_t0).await?;
                check(got == expected, "raw count")?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("count", "count", n, d))
}

/// An OR of two ranges of tenant t0's partition (its lowest and highest scores, about
/// `range_rows` rows in all): the ORM's server-side OR script against a pipeline of the two
/// ranges, a client-side union and the rows, as hand-written code would do it.
pub async fn or_query(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    tenant_rows: usize,
) -> Res<Op> {
    let n = cfg.range_queries;
    let half = cfg.range_rows.min(tenant_rows / 2).max(2) as f64 / 2.0 / tenant_rows as f64;
    let (low, high) = (half, 1.0 - half);
    progress(cfg, format!("OR of two ranges: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let expected = t0
        .query::<Episode>()
        .filter(Episode::score().lt(low) | Episode::score().gte(high))
        .count()
        .await?;
    check(expected > 0, "the OR query selects rows")?;
    let d = duel(
        cfg.rounds,
        async || {
            for _ in 0..n {
                let got = t0
                    .query::<Episode>()
                    .filter(Episode::score().lt(low) | Episode::score().gte(high))
                    .fetch()
                    .await?;
                check(got.len() == expected, "ORM OR query")?;
            }
            Ok(())
        },
        async || {
            for _ in 0..n {
                let (a, b): (Vec<Vec<u8>>, Vec<Vec<u8>>) = redis::pipe()
                    .cmd("ZRANGEBYSCORE")
                    .arg(&raw_t0.sortf)
                    .arg("-inf")
                    .arg(format!("({low}"))
                    .cmd("ZRANGEBYSCORE")
                    .arg(&raw_t0.sortf)
                    .arg(high)
                    .arg("+inf")
                    .query_async(conn)
                    .await?;
                let mut keys = a;
                for k in b {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                let mut pipe = redis::pipe();
                for k in &keys {
                    pipe.cmd("HGETALL").arg(k);
                }
                let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = pipe.query_async(conn).await?;
                let rows: Vec<Episode> = hashes.into_iter().map(raw_decode).collect();
                check(rows.len() == expected, "raw OR query")?;
            }
            Ok(())
        },
    )
    .await?;
    Ok(op(
        "or_query",
        &format!("OR query of {expected} rows"),
        n,
        d,
    ))
}

/// Cursor pages of `range_rows` rows through tenant t0's partition by score (from the start
/// again at the end): the ORM's `page` against `ZRANGEBYSCORE (last +inf LIMIT` and the rows.
pub async fn cursor_page(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
    tenant_rows: usize,
) -> Res<Op> {
    let n = cfg.range_queries;
    let rows = cfg.range_rows.min(tenant_rows / 2).max(1);
    progress(cfg, format!("cursor page of {rows} rows: {n} per round"));
    let t0 = db.tenant("t0")?;
    let raw_t0 = RawTenant::new("t0");
    let d = duel(
        cfg.rounds,
        async || {
            let mut cursor: Option<popoto::Cursor> = None;
            for _ in 0..n {
                let page = t0
                    .query::<Episode>()
                    .order_by(Episode::score())
                    .page(cursor.as_ref(), rows)
                    .await?;
                check(!page.rows.is_empty(), "ORM cursor page")?;
                cursor = page.next;
            }
            Ok(())
        },
        async || {
            let mut last: Option<f64> = None;
            for _ in 0..n {
                let from = last.map_or("-inf".to_owned(), |s| format!("({s}"));
                // One member more than the page tells whether another page follows.
                let mut page: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGEBYSCORE")
                    .arg(&raw_t0.sortf)
                    .arg(from)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(rows + 1)
                    .query_async(conn)
                    .await?;
                let more = page.len() > rows;
                page.truncate(rows);
                let mut pipe = redis::pipe();
                for (k, _) in &page {
                    pipe.cmd("HGETALL").arg(k);
                }
                let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = pipe.query_async(conn).await?;
                let got: Vec<Episode> = hashes.into_iter().map(raw_decode).collect();
                check(!got.is_empty(), "raw cursor page")?;
                last = more.then(|| page[rows - 1].1);
            }
            Ok(())
        },
    )
    .await?;
    Ok(op("cursor_page", &format!("page of {rows} rows"), n, d))
}

/// One tenant of `tenant_rows` rows, its range query timed while filler tenants grow the
/// database to each of `scaling_sizes`.
pub async fn scaling(
    cfg: &Config,
    db: &Db,
    conn: &mut MultiplexedConnection,
) -> Res<Vec<ScalePoint>> {
    progress(cfg, "scaling: range query while the database grows");
    flushdb(conn).await?;
    let scale = db.tenant("scale")?;
    let raw_scale = RawTenant::new("scale");
    let per = cfg.tenant_rows;
    scale
        .create_many(
            (0..per)
                .map(|i| Episode {
                    title: format!("episode {i}"),
                    score: i as f64 / per as f64,
                    ..Default::default()
                })
                .collect(),
        )
        .await?;
    let rows = cfg.range_rows.min(per / 2).max(1);
    let mut have = per;
    let mut points = Vec::new();
    for &size in &cfg.scaling_sizes {
        progress(cfg, format!("scaling: filling to {size} rows"));
        fill(conn, &mut have, size, per).await?;
        let dbsize: usize = redis::cmd("SCARD")
            .arg("$Class:Episode")
            .query_async(conn)
            .await?;
        let n = cfg.scaling_queries;
        let (orm, raw, _) = duel(
            cfg.rounds,
            async || {
                for _ in 0..n {
                    check(
                        orm_range(&scale, rows).await?.len() == rows,
                        "ORM scaling range",
                    )?;
                }
                Ok(())
            },
            async || {
                for _ in 0..n {
                    check(
                        raw_range(conn, &raw_scale, 0.5, rows).await?.len() == rows,
                        "raw scaling range",
                    )?;
                }
                Ok(())
            },
        )
        .await?;
        points.push(ScalePoint {
            rows: dbsize,
            orm_ms: orm.as_secs_f64() * 1000.0 / n as f64,
            raw_ms: raw.as_secs_f64() * 1000.0 / n as f64,
        });
    }
    Ok(points)
}

/// The tenant's range query through the ORM: `score >= 0.5`, the first `rows` rows.
pub async fn orm_range(t: &popoto::Session, rows: usize) -> Res<Vec<Episode>> {
    Ok(t.query::<Episode>()
        .filter(Episode::score().gte(0.5))
        .limit(rows)
        .fetch()
        .await?)
}

pub fn op(
    name: &'static str,
    unit: &str,
    n: usize,
    (orm, raw, paired): (Duration, Duration, f64),
) -> Op {
    Op {
        name,
        unit: unit.into(),
        count: n as u64,
        orm_per_sec: per_sec(n, orm),
        raw_per_sec: per_sec(n, raw),
        python: None,
        paired: paired.is_finite().then_some(paired),
    }
}

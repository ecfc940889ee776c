//! The operations of each side (ORM and raw redis-rs) and the driver that runs them at every
//! concurrency level, alternating sides round by round.

use super::*;

/// The raw create as one Lua call: the same four commands as the `MULTI`/`EXEC`.
pub(crate) static CREATE_LUA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "redis.call('HSET', KEYS[1], 'project_id', ARGV[1], 'episode_id', ARGV[2], 'title', \
         ARGV[3], 'score', ARGV[4]) redis.call('SADD', KEYS[2], KEYS[1]) \
         redis.call('SADD', KEYS[3], KEYS[1]) redis.call('ZADD', KEYS[4], ARGV[5], KEYS[1]) \
         return 1",
    )
});

pub(crate) async fn raw_create_lua(
    conn: &mut MultiplexedConnection,
    t: &RawTenant,
    i: usize,
) -> Res<()> {
    let id = new_id();
    let score = score(i);
    CREATE_LUA
        .key(t.key(&id))
        .key(&t.class)
        .key(&t.keyf)
        .key(&t.sortf)
        .arg(&t.packed[..])
        .arg(mp_str(&id))
        .arg(mp_str(&format!("episode {i}")))
        .arg(mp_f64(score))
        .arg(score)
        .invoke_async::<()>(conn)
        .await?;
    Ok(())
}

/// Scores spread over [0, 1) from the first operations on (half of them at least 0.5).
pub(crate) fn score(i: usize) -> f64 {
    (i * 7919 % 1000) as f64 / 1000.0
}

pub(crate) fn episode(i: usize) -> Episode {
    Episode {
        title: format!("episode {i}"),
        score: score(i),
        ..Default::default()
    }
}

/// Runs `op` for every side and concurrency level, alternating sides round by round.
pub(crate) struct Bench<'a> {
    cfg: &'a Config,
    monitor: MultiplexedConnection,
    report: Report,
}

impl Bench<'_> {
    /// Measures one operation: `sides` gives, per side, the operation of index `i`.
    async fn op(&mut self, name: &'static str, total: usize, sides: &[(Side, OpFn)]) -> Res<()> {
        if !self.cfg.runs(name) {
            return Ok(());
        }
        for &tasks in &self.cfg.tasks {
            eprintln!("[concurrency] {name} at {tasks} tasks");
            let mut samples: Vec<Vec<Sample>> = sides.iter().map(|_| Vec::new()).collect();
            for (_, f) in sides {
                // Warm-up: connections dialed, scripts loaded.
                round(&mut self.monitor, tasks, tasks, f).await?;
            }
            for r in 0..self.cfg.rounds.max(1) {
                for k in 0..sides.len() {
                    let s = (k + r) % sides.len();
                    samples[s].push(round(&mut self.monitor, tasks, total, &sides[s].1).await?);
                }
            }
            for ((side, _), s) in sides.iter().zip(samples) {
                self.report.rows.push(summarize(name, tasks, *side, s));
            }
        }
        Ok(())
    }
}

/// A boxed operation of one side.
pub(crate) type OpFn =
    Arc<dyn Fn(usize) -> std::pin::Pin<Box<dyn Future<Output = Res<()>> + Send>> + Send + Sync>;

pub(crate) fn op_fn<F, Fut>(f: F) -> OpFn
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Res<()>> + Send + 'static,
{
    Arc::new(move |i| Box::pin(f(i)))
}

/// Runs the whole benchmark.
pub async fn run(cfg: &Config) -> Res<Report> {
    let server = TestRedis::start()?;
    let db = Db::connect(server.url()).await?;
    let mut single = BackendConfig::new(server.url());
    single.group_commit = false;
    let db_single = Db::with_config(single)?;
    let client = redis::Client::open(server.url())?;
    let raw_conn = client
        .get_multiplexed_async_connection_with_config(&raw_config())
        .await?;
    let monitor = client
        .get_multiplexed_async_connection_with_config(&raw_config())
        .await?;
    let mut bench = Bench {
        cfg,
        monitor,
        report: Report::default(),
    };

    // create
    let orm: Session = db.tenant("orm")?;
    let orm_single: Session = db_single.tenant("single")?;
    let raw_t = Arc::new(RawTenant::new("raw"));
    let lua_t = Arc::new(RawTenant::new("lua"));
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let t = orm.clone();
            op_fn(move |i| {
                let t = t.clone();
                async move { t.create(episode(i)).await.map(drop).map_err(Into::into) }
            })
        }),
        (Side::OrmSingle, {
            let t = orm_single.clone();
            op_fn(move |i| {
                let t = t.clone();
                async move { t.create(episode(i)).await.map(drop).map_err(Into::into) }
            })
        }),
        (Side::Raw, {
            let (c, t) = (raw_conn.clone(), raw_t.clone());
            op_fn(move |i| {
                let (mut c, t) = (c.clone(), t.clone());
                async move { raw_create(&mut c, &t, &format!("episode {i}"), score(i)).await }
            })
        }),
        (Side::RawLua, {
            let (c, t) = (raw_conn.clone(), lua_t.clone());
            op_fn(move |i| {
                let (mut c, t) = (c.clone(), t.clone());
                async move { raw_create_lua(&mut c, &t, i).await }
            })
        }),
    ];
    bench.op("create", cfg.ops, &sides).await?;

    // get and range query, over the ORM's rows (raw reads the same keys)
    let keys: Arc<Vec<Key<Episode>>> = Arc::new(
        orm.query::<Episode>()
            .limit(cfg.ops.max(1))
            .fetch()
            .await?
            .iter()
            .map(|e| Episode::key_of("orm", e.episode_id.as_str()))
            .collect(),
    );
    check(!keys.is_empty() || !cfg.runs("get"), "no rows to read")?;
    let raw_keys: Arc<Vec<String>> = Arc::new(keys.iter().map(Key::redis_key).collect());
    let orm_t = Arc::new(RawTenant::new("orm"));
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let (t, keys) = (orm.clone(), keys.clone());
            op_fn(move |i| {
                let (t, keys) = (t.clone(), keys.clone());
                async move {
                    let got = t.get(&keys[i % keys.len()]).await?;
                    check(got.is_some(), "ORM get found nothing")
                }
            })
        }),
        (Side::Raw, {
            let (c, keys) = (raw_conn.clone(), raw_keys.clone());
            op_fn(move |i| {
                let (mut c, keys) = (c.clone(), keys.clone());
                async move {
                    let got = raw_get(&mut c, &keys[i % keys.len()]).await?;
                    check(got.is_some(), "raw get found nothing")
                }
            })
        }),
    ];
    bench.op("get", cfg.ops, &sides).await?;

    let rows = cfg.range_rows;
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let t = orm.clone();
            op_fn(move |_| {
                let t = t.clone();
                async move {
                    let got = t
                        .query::<Episode>()
                        .filter(Episode::score().gte(0.5))
                        .limit(rows)
                        .fetch()
                        .await?;
                    check(got.len() == rows, "ORM range returned too few rows")
                }
            })
        }),
        (Side::Raw, {
            let (c, t) = (raw_conn.clone(), orm_t.clone());
            op_fn(move |_| {
                let (mut c, t) = (c.clone(), t.clone());
                async move {
                    let got = raw_range(&mut c, &t, 0.5, rows).await?;
                    check(got.len() == rows, "raw range returned too few rows")
                }
            })
        }),
    ];
    bench.op("range_query", cfg.ranges, &sides).await?;

    // count of a tenant's rows, each member verified (the raw side verifies by hand too)
    let counted = db.tenant("count")?;
    counted
        .create_many((0..rows).map(episode).collect())
        .await?;
    let count_t = Arc::new(RawTenant::new("count"));
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let t = counted.clone();
            op_fn(move |_| {
                let t = t.clone();
                async move {
                    let got = t.query::<Episode>().count().await?;
                    check(got == rows, "ORM count")
                }
            })
        }),
        (Side::Raw, {
            let (c, t) = (raw_conn.clone(), count_t.clone());
            op_fn(move |_| {
                let (mut c, t) = (c.clone(), t.clone());
                async move {
                    let got = raw_verified_count(&mut c, &t).await?;
                    check(got == rows, "raw count")
                }
            })
        }),
    ];
    bench.op("count", cfg.ranges, &sides).await?;

    // confidence update (the raw side calls the same Lua)
    let conf = db.tenant("conf")?;
    let memories = Arc::new(
        conf.create_many(
            (0..256)
                .map(|i| Memory {
                    key: format!("m{i}"),
                    content: format!("memory {i}"),
                    ..Default::default()
                })
                .collect(),
        )
        .await?,
    );
    // Both sides hold the instances' keys, as for get.
    let keys: Arc<Vec<Key<Memory>>> = Arc::new(
        memories
            .iter()
            .map(|m| Memory::key_of(m.project.as_str(), m.key.as_str()))
            .collect(),
    );
    let members: Arc<Vec<String>> = Arc::new(keys.iter().map(Key::redis_key).collect());
    let companion: Arc<str> = format!("{LEGACY}:conf").into();
    let sides: Vec<(Side, OpFn)> = vec![
        (Side::Orm, {
            let (t, ks) = (conf.clone(), keys.clone());
            op_fn(move |i| {
                let (t, ks) = (t.clone(), ks.clone());
                async move {
                    t.confidence_by_key(&ks[i % ks.len()], Memory::certainty())?
                        .update((i % 10) as f64 / 10.0)
                        .await?;
                    Ok(())
                }
            })
        }),
        (Side::RawLua, {
            let (c, ms, comp) = (raw_conn.clone(), members.clone(), companion.clone());
            op_fn(move |i| {
                let (mut c, ms, comp) = (c.clone(), ms.clone(), comp.clone());
                async move {
                    raw_confidence(&mut c, &comp, &ms[i % ms.len()], (i % 10) as f64 / 10.0)
                        .await
                        .map(drop)
                }
            })
        }),
    ];
    bench.op("confidence_update", cfg.ops, &sides).await?;

    let mut report = bench.report;
    if cfg.ceiling_requests > 0 {
        report.ceiling = Some(ceiling(&server, cfg.ceiling_requests)?);
    }
    if let Some(path) = &cfg.plot {
        plot(&report, path)?;
    }
    Ok(report)
}

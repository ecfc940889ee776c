//! What the benchmarks share: the models, the raw redis-rs baseline (popoto's commands written
//! by hand) and the ratio helpers.
#![allow(dead_code)]

use std::error::Error as StdError;
use std::sync::LazyLock;
use std::time::Duration;

use popoto::Model;
use popoto_core::keys::{escape, unescape};
use redis::aio::MultiplexedConnection;

/// The benchmarks' error type.
pub type Res<T> = Result<T, Box<dyn StdError + Send + Sync>>;

// ------------------------------------------------------------------------------- models

/// The benchmark's episode: the tenant key, an auto key, a title and a per-tenant sorted score.
///
/// Creating one is popoto's `HSET`, `SADD $Class`, `SADD $KeyF`, `ZADD $SortF`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Episode {
    /// The tenant.
    #[popoto(key, tenant)]
    pub project_id: String,
    /// uuid4 hex, filled on create.
    #[popoto(auto_key)]
    pub episode_id: String,
    /// A plain field.
    pub title: String,
    /// One zset per tenant.
    #[popoto(sorted, partition_by = "project_id")]
    pub score: f64,
}

/// popoto's Memory: a unique key and a confidence field partitioned by tenant.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Memory {
    /// The tenant.
    #[popoto(key, tenant)]
    pub project: String,
    /// Unique across the model.
    #[popoto(unique_key)]
    pub key: String,
    /// A plain field.
    pub content: String,
    /// Confidence metadata in a companion hash per tenant.
    #[popoto(confidence(initial = 0.5, evidence_cap = 20), partition_by = "project")]
    pub certainty: f64,
}

// ------------------------------------------------------------------------------- timing

/// CPU time of this process so far (user + system, all threads).
pub fn client_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    Duration::from_millis(f.iter().sum::<u64>() * 10)
}

/// The benchmarks' runtime: two workers, like a service on the 2-core benchmark machine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The median of per-round ORM / raw throughput ratios (raw time / ORM time).
pub fn median_ratio(pairs: &[(Duration, Duration)]) -> f64 {
    let mut r: Vec<f64> = pairs
        .iter()
        .map(|(orm, raw)| raw.as_secs_f64() / orm.as_secs_f64().max(1e-9))
        .collect();
    r.sort_by(f64::total_cmp);
    match r.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => r[n / 2],
        n => (r[n / 2 - 1] + r[n / 2]) / 2.0,
    }
}

/// Operations per second.
pub fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// `Ok` when `cond` holds, else an error saying `what`.
pub fn check(cond: bool, what: impl Into<String>) -> Res<()> {
    if cond {
        Ok(())
    } else {
        Err(what.into().into())
    }
}

// ------------------------------------------------------------------------------- raw redis-rs

/// Msgpack of a str, as popoto (Python msgpack, `use_bin_type`) and popoto-rs write it.
pub fn mp_str(s: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(s.len() + 5);
    let _ = rmp::encode::write_str(&mut v, s);
    v
}

/// Msgpack of an f64 (always float64).
pub fn mp_f64(x: f64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    let _ = rmp::encode::write_f64(&mut v, x);
    v
}

pub fn read_str(b: &[u8]) -> String {
    rmp::decode::read_str_from_slice(b)
        .map(|(s, _)| s.to_owned())
        .unwrap_or_default()
}

pub fn read_f64(mut b: &[u8]) -> f64 {
    rmp::decode::read_f64(&mut b).unwrap_or_default()
}

/// A tenant's keys, as hand-written code would compute them once.
pub struct RawTenant {
    pub seg: String,
    pub packed: Vec<u8>,
    pub class: String,
    pub keyf: String,
    pub sortf: String,
}

impl RawTenant {
    pub fn new(tenant: &str) -> RawTenant {
        let seg = escape(tenant).into_owned();
        RawTenant {
            packed: mp_str(tenant),
            class: "$Class:Episode".into(),
            keyf: format!("$KeyF:Episode:project_id:{seg}"),
            sortf: format!("$SortF:Episode:score:{seg}"),
            seg,
        }
    }

    pub fn key(&self, id: &str) -> String {
        format!("Episode:{id}:{}", self.seg)
    }
}

/// popoto's commands for one new episode: HSET of every field, SADD to the class set and the
/// tenant's key-field set, ZADD to the tenant's score zset.
pub fn raw_create_cmds(
    pipe: &mut redis::Pipeline,
    t: &RawTenant,
    id: &str,
    title: &str,
    score: f64,
) {
    let key = t.key(id);
    pipe.cmd("HSET")
        .arg(&key)
        .arg("project_id")
        .arg(&t.packed[..])
        .arg("episode_id")
        .arg(mp_str(id))
        .arg("title")
        .arg(mp_str(title))
        .arg("score")
        .arg(mp_f64(score))
        .ignore();
    pipe.cmd("SADD").arg(&t.class).arg(&key).ignore();
    pipe.cmd("SADD").arg(&t.keyf).arg(&key).ignore();
    pipe.cmd("ZADD").arg(&t.sortf).arg(score).arg(&key).ignore();
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// One create in popoto's MULTI/EXEC.
pub async fn raw_create(
    conn: &mut MultiplexedConnection,
    t: &RawTenant,
    title: &str,
    score: f64,
) -> Res<()> {
    let mut pipe = redis::pipe();
    pipe.atomic();
    raw_create_cmds(&mut pipe, t, &new_id(), title, score);
    pipe.query_async::<()>(conn).await?;
    Ok(())
}

/// Decodes an episode hash the way hand-written code would (known field types).
pub fn raw_decode(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Episode {
    let mut e = Episode::default();
    for (name, value) in fields {
        match name.as_slice() {
            b"project_id" => e.project_id = read_str(&value),
            b"episode_id" => e.episode_id = read_str(&value),
            b"title" => e.title = read_str(&value),
            b"score" => e.score = read_f64(&value),
            _ => {}
        }
    }
    e
}

pub async fn raw_get(conn: &mut MultiplexedConnection, key: &str) -> Res<Option<Episode>> {
    let fields: Vec<(Vec<u8>, Vec<u8>)> = redis::cmd("HGETALL").arg(key).query_async(conn).await?;
    Ok((!fields.is_empty()).then(|| raw_decode(fields)))
}

/// ZRANGEBYSCORE with LIMIT, then one pipeline of HGETALL, decoded.
pub async fn raw_range(
    conn: &mut MultiplexedConnection,
    t: &RawTenant,
    min: f64,
    rows: usize,
) -> Res<Vec<Episode>> {
    let keys: Vec<Vec<u8>> = redis::cmd("ZRANGEBYSCORE")
        .arg(&t.sortf)
        .arg(min)
        .arg("+inf")
        .arg("LIMIT")
        .arg(0)
        .arg(rows)
        .query_async(conn)
        .await?;
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("HGETALL").arg(k);
    }
    let hashes: Vec<Vec<(Vec<u8>, Vec<u8>)>> = pipe.query_async(conn).await?;
    Ok(hashes
        .into_iter()
        .filter(|h| !h.is_empty())
        .map(raw_decode)
        .collect())
}

/// The capped Bayesian update as one script (the same Lua the ORM runs).
pub static CONFIDENCE_LUA: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        popoto_core::testing::script_source("confidence.lua").expect("the confidence script"),
    )
});

pub async fn raw_confidence(
    conn: &mut MultiplexedConnection,
    companion: &str,
    member: &str,
    signal: f64,
) -> Res<f64> {
    let reply: String = CONFIDENCE_LUA
        .key(companion)
        .key(member)
        .arg(member)
        .arg(format!("{signal:?}"))
        .arg("0.5")
        .arg(20)
        .invoke_async(conn)
        .await?;
    let reply: Vec<&str> = reply.split(' ').collect();
    check(
        reply.len() == 5 && reply[0] == "ok",
        "raw confidence update",
    )?;
    Ok(reply[1].parse()?)
}

/// A count with the ORM's guarantee, by hand: the tenant's members, each checked to be a key
/// of the tenant holding an instance whose tenant field is the tenant's (`SMEMBERS`, then one
/// pipeline of `HGET`), as a service that must not count planted or stale members would.
pub async fn raw_verified_count(conn: &mut MultiplexedConnection, t: &RawTenant) -> Res<usize> {
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(&t.keyf)
        .query_async(conn)
        .await?;
    let suffix = format!(":{}", t.seg);
    let mine: Vec<&String> = members
        .iter()
        .filter(|m| m.starts_with("Episode:") && m.ends_with(&suffix))
        .collect();
    let mut pipe = redis::pipe();
    for m in &mine {
        pipe.cmd("HGET").arg(m.as_str()).arg("project_id");
    }
    let stored: Vec<Option<Vec<u8>>> = pipe.query_async(conn).await?;
    Ok(stored
        .iter()
        .filter(|v| v.as_deref() == Some(t.packed.as_slice()))
        .count())
}

/// The legacy (unpartitioned) companion hash of `Memory::certainty`.
pub const LEGACY: &str = "$ConfidencF:Memory:certainty:data";

/// popoto's initial confidence entry (initial 0.5), as its `on_save` HSETNX writes it.
pub fn initial_entry() -> Vec<u8> {
    let mut out = vec![0x84];
    for (name, last) in [
        ("confidence", false),
        ("evidence_count", true),
        ("corroborations", true),
        ("contradictions", true),
    ] {
        let _ = rmp::encode::write_str(&mut out, name);
        if last {
            out.push(0x00);
        } else {
            let _ = rmp::encode::write_f64(&mut out, 0.5);
        }
    }
    out
}

/// A hand-written migration: HSCAN the legacy hash, check the instances exist (one pipeline),
/// then HSETNX into the partition and HDEL from the legacy hash (one pipeline).
pub async fn raw_migrate(conn: &mut MultiplexedConnection) -> Res<u64> {
    let mut cursor = 0u64;
    let mut moved = 0u64;
    loop {
        let (next, entries): (u64, Vec<(String, Vec<u8>)>) = redis::cmd("HSCAN")
            .arg(LEGACY)
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await?;
        if !entries.is_empty() {
            let mut pipe = redis::pipe();
            for (member, _) in &entries {
                pipe.cmd("EXISTS").arg(member);
            }
            let exists: Vec<bool> = pipe.query_async(conn).await?;
            let mut pipe = redis::pipe();
            let mut n = 0;
            for ((member, value), exists) in entries.iter().zip(exists) {
                let Some((_, project)) = member.rsplit_once(':') else {
                    continue;
                };
                if !exists {
                    continue;
                }
                let dest = format!("{LEGACY}:{}", unescape(project));
                pipe.cmd("HSETNX").arg(dest).arg(member).arg(value).ignore();
                pipe.cmd("HDEL").arg(LEGACY).arg(member).ignore();
                n += 1;
            }
            if n > 0 {
                pipe.query_async::<()>(conn).await?;
                moved += n;
            }
        }
        if next == 0 {
            return Ok(moved);
        }
        cursor = next;
    }
}

/// The raw baseline's connection settings: no response timeout, since FLUSHDB of millions of
/// keys and big pipelines take longer than redis-rs' 500 ms default.
pub fn raw_config() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new().set_response_timeout(None)
}

// ------------------------------------------------------------------------------- plots

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (no system font library).
pub fn register_fonts() -> Res<()> {
    static FONTS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = FONTS.get_or_init(|| {
        plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .is_ok()
            && plotters::style::register_font(
                "sans-serif",
                plotters::style::FontStyle::Bold,
                dejavu::sans::bold(),
            )
            .is_ok()
    });
    check(*ok, "the embedded font could not be loaded")
}

/// Draws the legend of `chart`'s labelled series at `position`.
pub fn draw_legend<'a, DB, CT>(
    chart: &mut plotters::chart::ChartContext<'a, DB, CT>,
    position: plotters::chart::SeriesLabelPosition,
    font: (&str, u32),
) -> Res<()>
where
    DB: plotters::prelude::DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    use plotters::prelude::*;
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(font)
        .draw()
        .map_err(plot_err)
}

/// A plotting error as the benchmarks' error.
pub fn plot_err(e: impl std::fmt::Display) -> Box<dyn StdError + Send + Sync> {
    format!("plot: {e}").into()
}

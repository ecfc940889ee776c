//! Interop with the real Python popoto 1.10.1 (the oracle), through the scripts of
//! `tests/interop/` run with the oracle python (`$POPOTO_PYTHON`, else the venv the harness
//! creates under `target/tmp`: `interop_support::python`).
//!
//! * `python_writes_rust_reads`: popoto writes the fixture; Rust reads every instance by key,
//!   counts per tenant, and runs a set of queries that `query.py` runs too: same keys, same
//!   order where the order is defined, same values.
//! * `rust_writes_python_reads`: Rust creates the fixture; `query.py` runs the same queries on
//!   it and must answer exactly as on a database popoto wrote itself, and as Rust does.
//! * `byte_identical_layout`: popoto and Rust each write the fixture into their own server;
//!   `dump.py` of both must be equal key by key, byte for byte.
//!
//! Both sides use the same data: the Rust values are built from `fixture.py --json`.
//!
//! Values are compared in a canonical typed-JSON form (`interop_support::canon`): floats
//! bit-exact, datetimes/times as Python's `isoformat()` text, decimals as Python's `str()`
//! (`popoto::codec::PyDecimal` keeps the exponent, so even `1E+2` is exact).

mod interop_support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use interop_support::*;
use popoto::codec::PyDecimal;
use popoto::error::{DecodeError, EncodeError};
use popoto::testing::TestRedis;
use popoto::{Admin, Db, Key, Model, Query, Session};
use serde_bytes::ByteBuf;
use serde_json::{json, Map, Value as Json};

const TENANTS: [&str; 3] = ["acme", "globex", "umbrella:eu-1"];

// ------------------------------------------------------------------------------------------
// The two models of tests/interop/models.py

/// `Episode` of models.py: key `Episode:<episode_id>:<project_id>`.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Episode {
    /// `KeyField`, the tenant.
    #[popoto(key, tenant)]
    pub project_id: String,
    /// `AutoKeyField` (the fixture fixes it).
    #[popoto(auto_key)]
    pub episode_id: String,
    /// `StringField`.
    pub title: String,
    /// `SortedField(type=float, partition_by="project_id")`.
    #[popoto(sorted, partition_by = "project_id")]
    pub score: f64,
    /// `SortedField(type=int)`.
    #[popoto(sorted)]
    pub rank: i64,
}

/// `KitchenSink` of models.py: every value type; key `KitchenSink:<sku>:<tenant>`.
#[derive(Model, Debug, Clone, PartialEq)]
pub struct KitchenSink {
    /// `KeyField`, the tenant.
    #[popoto(key, tenant)]
    pub tenant: String,
    /// `UniqueKeyField`.
    #[popoto(unique_key)]
    pub sku: String,
    /// `StringField`.
    pub name: String,
    /// `IntField`.
    pub count: i64,
    /// `FloatField`.
    pub ratio: f64,
    /// `BooleanField`.
    pub active: bool,
    /// `StringField(null=True)`.
    pub note: Option<String>,
    /// `BytesField`.
    pub blob: ByteBuf,
    /// `ListField` (plain msgpack).
    pub tags: Json,
    /// `DictField` (plain msgpack, keys sorted).
    pub attrs: Json,
    /// `DatetimeField`, aware.
    pub created: DateTime<FixedOffset>,
    /// `DatetimeField`, naive.
    pub updated: NaiveDateTime,
    /// `DateField`.
    pub day: NaiveDate,
    /// `TimeField` (one value is aware: see [`PyTime`]).
    pub at: PyTime,
    /// `DecimalField`.
    pub price: PyDecimal,
    /// `SetField`.
    pub flags: BTreeSet<i64>,
    /// `TupleField`.
    pub pair: (i64, String),
    /// `StringField`, a partition of `level`.
    pub region: String,
    /// `SortedField(type=datetime, partition_by="tenant")`.
    #[popoto(sorted, partition_by = "tenant")]
    pub seen: DateTime<FixedOffset>,
    /// `SortedField(type=date, partition_by="tenant")`.
    #[popoto(sorted, partition_by = "tenant")]
    pub due: NaiveDate,
    /// `SortedField(type=time)`.
    #[popoto(sorted)]
    pub slot: NaiveTime,
    /// `SortedField(type=int, partition_by=("tenant", "region"))`.
    #[popoto(sorted, partition_by("tenant", "region"))]
    pub level: i64,
}

/// A Python `datetime.time`, naive or aware, for the plain `TimeField` `KitchenSink.at`.
///
/// The fixture stores one aware time (`at = 10:30:00+07:00` in row `KitchenSink:q{&#58;}1:acme`)
/// and `chrono::NaiveTime` has no offset: it would write `10:30:00`. This wrapper delegates the
/// wall time to the library's `NaiveTime` codec and only appends / reads the offset suffix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PyTime {
    /// Wall time.
    pub time: NaiveTime,
    /// UTC offset of an aware time.
    pub offset: Option<FixedOffset>,
}

/// `{"__time__": true, "as_encodable": ` (msgpack), before the payload string.
const TIME_HEAD: &[u8] = b"\x82\xa8__time__\xc3\xacas_encodable";

impl popoto::codec::Value for PyTime {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let mut naive = Vec::new();
        self.time.encode(&mut naive)?;
        let Some(offset) = self.offset else {
            out.extend_from_slice(&naive);
            return Ok(());
        };
        let payload = naive
            .strip_prefix(TIME_HEAD)
            .and_then(<[u8]>::split_first)
            .filter(|(head, p)| **head as usize == 0xa0 | p.len())
            .map(|(_, p)| p)
            .ok_or_else(|| {
                EncodeError::new(format!("unexpected NaiveTime bytes {}", hex(&naive)))
            })?;
        let mut text = payload.to_vec();
        text.extend_from_slice(offset_text(&offset).as_bytes());
        out.extend_from_slice(TIME_HEAD);
        out.push(0xa0 | u8::try_from(text.len()).map_err(EncodeError::new)?);
        out.extend_from_slice(&text);
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let time = NaiveTime::decode(bytes)?;
        let map: BTreeMap<String, Json> = popoto::codec::decode_serde(bytes)?;
        let text = map
            .get("as_encodable")
            .and_then(Json::as_str)
            .ok_or_else(|| DecodeError::new("__time__ without a text payload"))?;
        let offset = match text.find(['+', '-']) {
            None => None,
            Some(i) => Some(
                try_parse_offset(&text[i..])
                    .ok_or_else(|| DecodeError::new(format!("bad UTC offset in {text:?}")))?,
            ),
        };
        Ok(PyTime { time, offset })
    }
}

/// A model of the interop fixture: built from a fixture row, rendered as query.py renders it.
trait Interop: Model + Clone + std::fmt::Debug {
    /// The Rust value of a fixture row (typed JSON).
    fn from_row(row: &Map<String, Json>) -> Self;
    /// Every declared field, in canonical typed JSON (see [`canon`]).
    fn canon_fields(&self) -> Map<String, Json>;
    /// The instance key.
    fn key(&self) -> Key<Self>;
}

impl Interop for Episode {
    fn from_row(row: &Map<String, Json>) -> Self {
        Episode {
            project_id: get_str(row, "project_id"),
            episode_id: get_str(row, "episode_id"),
            title: get_str(row, "title"),
            score: get_f64(row, "score"),
            rank: get_i64(row, "rank"),
        }
    }

    fn canon_fields(&self) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert("project_id".into(), json!(self.project_id));
        m.insert("episode_id".into(), json!(self.episode_id));
        m.insert("title".into(), json!(self.title));
        m.insert("score".into(), jf(self.score));
        m.insert("rank".into(), json!(self.rank));
        m
    }

    fn key(&self) -> Key<Self> {
        Episode::key_of(self.project_id.clone(), self.episode_id.clone())
    }
}

impl Interop for KitchenSink {
    fn from_row(row: &Map<String, Json>) -> Self {
        let (at, at_offset) = parse_time(tagged_str(row, "at", "$time"));
        let (slot, slot_offset) = parse_time(tagged_str(row, "slot", "$time"));
        assert!(slot_offset.is_none(), "slot is naive in the fixture");
        let pair = tagged(row, "pair", "$tuple");
        KitchenSink {
            tenant: get_str(row, "tenant"),
            sku: get_str(row, "sku"),
            name: get_str(row, "name"),
            count: get_i64(row, "count"),
            ratio: get_f64(row, "ratio"),
            active: field(row, "active")
                .as_bool()
                .unwrap_or_else(|| panic!("active: {row:?}")),
            note: match field(row, "note") {
                Json::Null => None,
                Json::String(s) => Some(s.clone()),
                other => panic!("note: {other}"),
            },
            blob: ByteBuf::from(unhex(tagged_str(row, "blob", "$bytes"))),
            tags: plain(field(row, "tags")),
            attrs: plain(field(row, "attrs")),
            created: parse_aware(tagged_str(row, "created", "$datetime")),
            updated: parse_naive(tagged_str(row, "updated", "$datetime")),
            day: parse_date(tagged_str(row, "day", "$date")),
            at: PyTime {
                time: at,
                offset: at_offset,
            },
            price: tagged_str(row, "price", "$decimal")
                .parse()
                .unwrap_or_else(|e| panic!("price: {e}")),
            flags: tagged(row, "flags", "$set")
                .as_array()
                .unwrap_or_else(|| panic!("flags: {row:?}"))
                .iter()
                .map(|v| v.as_i64().unwrap_or_else(|| panic!("flags element {v}")))
                .collect(),
            pair: (
                pair[0].as_i64().unwrap_or_else(|| panic!("pair: {pair}")),
                pair[1]
                    .as_str()
                    .unwrap_or_else(|| panic!("pair: {pair}"))
                    .to_owned(),
            ),
            region: get_str(row, "region"),
            seen: parse_aware(tagged_str(row, "seen", "$datetime")),
            due: parse_date(tagged_str(row, "due", "$date")),
            slot,
            level: get_i64(row, "level"),
        }
    }

    fn canon_fields(&self) -> Map<String, Json> {
        let mut m = Map::new();
        m.insert("tenant".into(), json!(self.tenant));
        m.insert("sku".into(), json!(self.sku));
        m.insert("name".into(), json!(self.name));
        m.insert("count".into(), json!(self.count));
        m.insert("ratio".into(), jf(self.ratio));
        m.insert("active".into(), json!(self.active));
        m.insert("note".into(), json!(self.note));
        m.insert("blob".into(), j_bytes(&self.blob));
        m.insert("tags".into(), canon(&self.tags));
        m.insert("attrs".into(), canon(&self.attrs));
        m.insert("created".into(), j_aware(&self.created));
        m.insert("updated".into(), j_naive(&self.updated));
        m.insert("day".into(), j_date(&self.day));
        m.insert("at".into(), j_time(&self.at.time, self.at.offset.as_ref()));
        m.insert("price".into(), j_decimal(&self.price));
        m.insert("flags".into(), j_int_set(&self.flags));
        m.insert(
            "pair".into(),
            json!({ "$tuple": [self.pair.0, self.pair.1] }),
        );
        m.insert("region".into(), json!(self.region));
        m.insert("seen".into(), j_aware(&self.seen));
        m.insert("due".into(), j_date(&self.due));
        m.insert("slot".into(), j_time(&self.slot, None));
        m.insert("level".into(), json!(self.level));
        m
    }

    fn key(&self) -> Key<Self> {
        KitchenSink::key_of(self.tenant.clone(), self.sku.clone())
    }
}

/// An instance as query.py prints it (canonical): `_key` plus every declared field.
fn instance<M: Interop>(key: &str, m: &M) -> Json {
    let mut o = Map::new();
    o.insert("_key".into(), json!(key));
    o.extend(m.canon_fields());
    Json::Object(o)
}

// ------------------------------------------------------------------------------------------
// The fixture

/// `fixture.py --json`: typed rows, and the Rust values built from them.
struct Fixture {
    episode_rows: Vec<Map<String, Json>>,
    sink_rows: Vec<Map<String, Json>>,
    episodes: Vec<Episode>,
    sinks: Vec<KitchenSink>,
}

impl Fixture {
    fn load() -> Fixture {
        let raw = fixture_json();
        let rows = |model: &str| -> Vec<Map<String, Json>> {
            raw.get(model)
                .and_then(Json::as_array)
                .unwrap_or_else(|| panic!("fixture has no {model} list"))
                .iter()
                .map(|r| r.as_object().cloned().unwrap_or_else(|| panic!("row {r}")))
                .collect()
        };
        let episode_rows = rows("Episode");
        let sink_rows = rows("KitchenSink");
        let episodes = episode_rows.iter().map(Episode::from_row).collect();
        let sinks = sink_rows.iter().map(KitchenSink::from_row).collect();
        let fx = Fixture {
            episode_rows,
            sink_rows,
            episodes,
            sinks,
        };
        assert_eq!(
            (fx.episodes.len(), fx.sinks.len()),
            (18, 12),
            "fixture size"
        );
        fx
    }

    /// The canonical instance of every fixture row by Rust-computed key (`_key` included).
    fn expected(&self) -> BTreeMap<String, Json> {
        let mut out = BTreeMap::new();
        for (row, ep) in self.episode_rows.iter().zip(&self.episodes) {
            let key = ep.key().redis_key();
            out.insert(key.clone(), canon_row(&key, row));
        }
        for (row, s) in self.sink_rows.iter().zip(&self.sinks) {
            let key = s.key().redis_key();
            out.insert(key.clone(), canon_row(&key, row));
        }
        out
    }

    fn episodes_of(&self, tenant: &str) -> Vec<Episode> {
        self.episodes
            .iter()
            .filter(|e| e.project_id == tenant)
            .cloned()
            .collect()
    }

    fn sinks_of(&self, tenant: &str) -> Vec<KitchenSink> {
        self.sinks
            .iter()
            .filter(|s| s.tenant == tenant)
            .cloned()
            .collect()
    }
}

fn canon_row(key: &str, row: &Map<String, Json>) -> Json {
    let mut o = Map::new();
    o.insert("_key".into(), json!(key));
    for (k, v) in row {
        o.insert(k.clone(), canon(v));
    }
    Json::Object(o)
}

/// The Rust values render exactly as the fixture's typed JSON (checks this file's parsing).
fn check_fixture_parsing(fx: &Fixture, p: &mut Problems) {
    let expected = fx.expected();
    for ep in &fx.episodes {
        let key = ep.key().redis_key();
        p.json_eq(
            &format!("fixture {key}"),
            "fixture.py",
            &expected[&key],
            "Rust value",
            &instance(&key, ep),
        );
    }
    for s in &fx.sinks {
        let key = s.key().redis_key();
        p.json_eq(
            &format!("fixture {key}"),
            "fixture.py",
            &expected[&key],
            "Rust value",
            &instance(&key, s),
        );
    }
}

// ------------------------------------------------------------------------------------------
// Servers, writers

fn start_server() -> TestRedis {
    TestRedis::start().unwrap_or_else(|e| panic!("{e}"))
}

/// write.py into `server`; checks its keys (creation order) against Rust's `key_of`.
fn python_write_checked(server: &TestRedis, fx: &Fixture, p: &mut Problems) {
    let written = python_write(server.url());
    let keys = |model: &str| -> Vec<String> {
        written
            .get(model)
            .and_then(Json::as_array)
            .unwrap_or_else(|| panic!("write.py output has no {model}: {written}"))
            .iter()
            .map(|k| match k.as_str() {
                Some(k) => k.to_owned(),
                None => panic!("write.py {model} key {k} is not a string"),
            })
            .collect()
    };
    let rust_episode_keys: Vec<String> = fx.episodes.iter().map(|e| e.key().redis_key()).collect();
    let rust_sink_keys: Vec<String> = fx.sinks.iter().map(|s| s.key().redis_key()).collect();
    p.json_eq(
        "Episode instance keys",
        "write.py",
        &json!(keys("Episode")),
        "Episode::key_of",
        &json!(rust_episode_keys),
    );
    p.json_eq(
        "KitchenSink instance keys",
        "write.py",
        &json!(keys("KitchenSink")),
        "KitchenSink::key_of",
        &json!(rust_sink_keys),
    );
}

/// Rust creates the fixture, row by row, through tenant handles (Episodes first, as write.py).
async fn rust_write(db: &Db, fx: &Fixture) {
    for ep in &fx.episodes {
        let t = db.tenant(&ep.project_id).unwrap_or_else(|e| panic!("{e}"));
        let created = t
            .create(ep.clone())
            .await
            .unwrap_or_else(|e| panic!("create {ep:?}: {e}"));
        assert_eq!(
            &created, ep,
            "create keeps the fixed episode id and every value"
        );
    }
    for s in &fx.sinks {
        let t = db.tenant(&s.tenant).unwrap_or_else(|e| panic!("{e}"));
        let created = t
            .create(s.clone())
            .await
            .unwrap_or_else(|e| panic!("create {s:?}: {e}"));
        assert_eq!(&created, s);
    }
}

/// Rust reads every fixture instance by key (tenant handle and admin) and by `fetch_keys`.
async fn check_gets(db: &Db, fx: &Fixture, p: &mut Problems) {
    let expected = fx.expected();
    async fn one<M: Interop>(
        db: &Db,
        tenant: &str,
        m: &M,
        expected: &BTreeMap<String, Json>,
        p: &mut Problems,
    ) {
        let key = m.key();
        let redis_key = key.redis_key();
        let t = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
        for (via, got) in [
            ("tenant get", t.get(&key).await),
            ("admin get", db.admin().get(&key).await),
        ] {
            match got {
                Ok(Some(v)) => {
                    p.json_eq(
                        &format!("{via} {redis_key}"),
                        "fixture",
                        &expected[&redis_key],
                        "Rust",
                        &instance(&redis_key, &v),
                    );
                }
                other => p.push(format!(
                    "{via} {redis_key}: expected the instance, got {other:?}"
                )),
            }
        }
    }
    for ep in &fx.episodes {
        one(db, &ep.project_id, ep, &expected, p).await;
    }
    for s in &fx.sinks {
        one(db, &s.tenant, s, &expected, p).await;
    }
    // Key parsing of what popoto wrote: fetch_keys yields the fixture keys.
    for tenant in TENANTS {
        let t = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
        let mut want: Vec<String> = fx
            .sinks_of(tenant)
            .iter()
            .map(|s| s.key().redis_key())
            .collect();
        want.sort();
        match t.query::<KitchenSink>().fetch_keys().await {
            Ok(keys) => {
                let mut got: Vec<String> = keys.iter().map(Key::redis_key).collect();
                got.sort();
                let segs: Vec<Vec<String>> = keys.iter().map(|k| k.segments().to_vec()).collect();
                p.json_eq(
                    &format!("{tenant}: KitchenSink fetch_keys"),
                    "fixture",
                    &json!(want),
                    "Rust",
                    &json!(got),
                );
                for s in segs {
                    p.check(s.len() == 2 && s[1] == tenant, || {
                        format!("{tenant}: key segments {s:?}")
                    });
                }
            }
            Err(e) => p.push(format!("{tenant}: fetch_keys: {e}")),
        }
    }
}

/// Counts per tenant and across tenants, from the Rust API, against the fixture.
async fn check_counts(db: &Db, fx: &Fixture, p: &mut Problems) {
    for tenant in TENANTS {
        let t = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
        let e = t
            .query::<Episode>()
            .count()
            .await
            .map_err(|e| e.to_string());
        let k = t
            .query::<KitchenSink>()
            .count()
            .await
            .map_err(|e| e.to_string());
        let want = (
            Ok(fx.episodes_of(tenant).len()),
            Ok(fx.sinks_of(tenant).len()),
        );
        p.check((e.clone(), k.clone()) == want, || {
            format!("{tenant}: counts {:?}, expected {want:?}", (e, k))
        });
    }
    let admin = db.admin();
    let e = admin
        .query::<Episode>()
        .count()
        .await
        .map_err(|e| e.to_string());
    let k = admin
        .query::<KitchenSink>()
        .count()
        .await
        .map_err(|e| e.to_string());
    p.check((e.clone(), k.clone()) == (Ok(18), Ok(12)), || {
        format!("admin counts {:?}, expected (18, 12)", (e, k))
    });
}

// ------------------------------------------------------------------------------------------
// Query cases: one query.py spec and the same query through the Rust API

type Fut = Pin<Box<dyn Future<Output = Json>>>;
type Runner = Box<dyn Fn(Db) -> Fut>;

struct Case {
    label: String,
    spec: Json,
    run: Runner,
}

#[derive(Clone)]
enum Sc {
    Tenant(String),
    Admin,
}

/// A tenant handle or the admin handle, for cases run through either.
enum Handle {
    Tenant(Session),
    Admin(Box<Admin>),
}

impl Handle {
    fn query<M: Model>(&self) -> Query<'_, M> {
        match self {
            Handle::Tenant(s) => s.query(),
            Handle::Admin(a) => a.query(),
        }
    }

    async fn get<M: Model>(&self, key: &Key<M>) -> popoto::Result<Option<M>> {
        match self {
            Handle::Tenant(s) => s.get(key).await,
            Handle::Admin(a) => a.get(key).await,
        }
    }
}

fn session(db: &Db, sc: &Sc) -> popoto::Result<Handle> {
    match sc {
        Sc::Tenant(t) => db.tenant(t).map(Handle::Tenant),
        Sc::Admin => Ok(Handle::Admin(Box::new(db.admin()))),
    }
}

fn rust_error(e: popoto::Error) -> Json {
    json!({ "$rust_error": e.to_string() })
}

fn sort_by_key(rows: &mut [Json]) {
    rows.sort_by(|a, b| {
        let k = |v: &Json| {
            v.get("_key")
                .and_then(Json::as_str)
                .unwrap_or_else(|| panic!("row without a string _key: {v}"))
                .to_owned()
        };
        k(a).into_bytes().cmp(&k(b).into_bytes())
    });
}

/// A fetch: query.py `filter` (+ `extra`: order_by, limit) and the Rust query built by `build`.
/// `ordered`: popoto's order is defined (order_by, or exactly one sorted filter) and must be
/// matched; otherwise both sides are sorted by key.
fn fetch<M: Interop>(
    label: impl Into<String>,
    sc: Sc,
    filter: Json,
    extra: Json,
    ordered: bool,
    build: impl for<'s> Fn(Query<'s, M>) -> Query<'s, M> + 'static,
) -> Case {
    let mut spec = json!({
        "model": M::META.name,
        "filter": filter,
        "order": if ordered { "popoto" } else { "key" },
    });
    if let (Some(s), Json::Object(extra)) = (spec.as_object_mut(), extra) {
        s.extend(extra);
    }
    let build = Rc::new(build);
    let run: Runner = Box::new(move |db: Db| {
        let (build, sc) = (Rc::clone(&build), sc.clone());
        let fut: Fut = Box::pin(async move {
            let s = match session(&db, &sc) {
                Ok(s) => s,
                Err(e) => return rust_error(e),
            };
            match build(s.query::<M>()).fetch_keyed().await {
                Ok(rows) => {
                    let mut out: Vec<Json> = rows
                        .iter()
                        .map(|(k, m)| instance(&k.redis_key(), m))
                        .collect();
                    if !ordered {
                        sort_by_key(&mut out);
                    }
                    Json::Array(out)
                }
                Err(e) => rust_error(e),
            }
        });
        fut
    });
    Case {
        label: label.into(),
        spec,
        run,
    }
}

/// A count: query.py `count(**filter)` and the Rust `count()`.
fn count<M: Interop>(
    label: impl Into<String>,
    sc: Sc,
    filter: Json,
    build: impl for<'s> Fn(Query<'s, M>) -> Query<'s, M> + 'static,
) -> Case {
    let spec = json!({ "model": M::META.name, "count": true, "filter": filter });
    let build = Rc::new(build);
    let run: Runner = Box::new(move |db: Db| {
        let (build, sc) = (Rc::clone(&build), sc.clone());
        let fut: Fut = Box::pin(async move {
            let s = match session(&db, &sc) {
                Ok(s) => s,
                Err(e) => return rust_error(e),
            };
            match build(s.query::<M>()).count().await {
                Ok(n) => json!(n),
                Err(e) => rust_error(e),
            }
        });
        fut
    });
    Case {
        label: label.into(),
        spec,
        run,
    }
}

/// A get by all key fields: query.py `get(**get)` and the Rust `get(&key)`.
fn get<M: Interop>(label: impl Into<String>, sc: Sc, get: Json, key: Key<M>) -> Case {
    let spec = json!({ "model": M::META.name, "get": get });
    let run: Runner = Box::new(move |db: Db| {
        let (key, sc) = (key.clone(), sc.clone());
        let fut: Fut = Box::pin(async move {
            let s = match session(&db, &sc) {
                Ok(s) => s,
                Err(e) => return rust_error(e),
            };
            match s.get(&key).await {
                Ok(Some(m)) => instance(&key.redis_key(), &m),
                Ok(None) => Json::Null,
                Err(e) => rust_error(e),
            }
        });
        fut
    });
    Case {
        label: label.into(),
        spec,
        run,
    }
}

fn none() -> Json {
    json!({})
}

/// Every query case, built from the fixture values (bounds are fixture values, so inclusive
/// and exclusive bounds both matter).
fn cases(fx: &Fixture) -> Vec<Case> {
    let mut c = Vec::new();
    for tenant in TENANTS {
        episode_cases(fx, tenant, &mut c);
        sink_cases(fx, tenant, &mut c);
    }
    admin_cases(fx, &mut c);
    c
}

fn episode_cases(fx: &Fixture, tenant: &str, c: &mut Vec<Case>) {
    let t = || Sc::Tenant(tenant.to_owned());
    let tn = tenant.to_owned();
    let eps = fx.episodes_of(tenant);
    let mut scores: Vec<f64> = eps.iter().map(|e| e.score).collect();
    scores.sort_by(f64::total_cmp);
    let mut ranks: Vec<i64> = eps.iter().map(|e| e.rank).collect();
    ranks.sort_unstable();
    let (lo, mid, hi) = (scores[1], scores[2], scores[4]);
    let rank_mid = ranks[3];
    let l = |s: &str| format!("{tenant}: Episode {s}");

    c.push(fetch::<Episode>(
        l("all"),
        t(),
        json!({ "project_id": tenant }),
        none(),
        false,
        |q| q,
    ));
    {
        let tn = tn.clone();
        c.push(fetch::<Episode>(
            l("project_id__in"),
            t(),
            json!({ "project_id__in": [tenant] }),
            none(),
            false,
            move |q| q.filter(Episode::project_id().is_in([tn.as_str()])),
        ));
    }
    {
        let tn = tn.clone();
        c.push(fetch::<Episode>(
            l("project_id equality"),
            t(),
            json!({ "project_id": tenant }),
            none(),
            false,
            move |q| q.filter(Episode::project_id().eq(tn.as_str())),
        ));
    }
    let range = |name: &str, key: &str, v: Json| (l(name), json!({ "project_id": tenant, key: v }));
    let (lb, f) = range("score >= mid", "score__gte", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().gte(mid))
    }));
    let (lb, f) = range("score > mid", "score__gt", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().gt(mid))
    }));
    let (lb, f) = range("score < mid", "score__lt", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().lt(mid))
    }));
    let (lb, f) = range("score <= mid", "score__lte", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().lte(mid))
    }));
    let (lb, f) = range("score == mid", "score", spec_float(mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().eq(mid))
    }));
    let (lb, f) = range(
        "score between",
        "score__between",
        json!([spec_float(lo), spec_float(hi)]),
    );
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::score().between(lo, hi))
    }));
    let (lb, f) = range(
        "rank >= mid (global zset, tenant set)",
        "rank__gte",
        json!(rank_mid),
    );
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::rank().gte(rank_mid))
    }));
    let (lb, f) = range("rank == mid", "rank", json!(rank_mid));
    c.push(fetch::<Episode>(lb, t(), f, none(), true, move |q| {
        q.filter(Episode::rank().eq(rank_mid))
    }));
    c.push(fetch::<Episode>(
        l("order_by -score limit 3"),
        t(),
        json!({ "project_id": tenant }),
        json!({ "order_by": "-score", "limit": 3 }),
        true,
        |q| q.order_by_desc(Episode::score()).limit(3),
    ));
    c.push(fetch::<Episode>(
        l("order_by score limit 2"),
        t(),
        json!({ "project_id": tenant }),
        json!({ "order_by": "score", "limit": 2 }),
        true,
        |q| q.order_by(Episode::score()).limit(2),
    ));
    c.push(fetch::<Episode>(
        l("score >= lo order_by -score limit 2"),
        t(),
        json!({ "project_id": tenant, "score__gte": spec_float(lo) }),
        json!({ "order_by": "-score", "limit": 2 }),
        true,
        move |q| {
            q.filter(Episode::score().gte(lo))
                .order_by_desc(Episode::score())
                .limit(2)
        },
    ));
    c.push(fetch::<Episode>(
        l("order_by rank limit 4"),
        t(),
        json!({ "project_id": tenant }),
        json!({ "order_by": "rank", "limit": 4 }),
        true,
        |q| q.order_by(Episode::rank()).limit(4),
    ));
    c.push(fetch::<Episode>(
        l("score >= lo order_by -rank"),
        t(),
        json!({ "project_id": tenant, "score__gte": spec_float(lo) }),
        json!({ "order_by": "-rank" }),
        true,
        move |q| {
            q.filter(Episode::score().gte(lo))
                .order_by_desc(Episode::rank())
        },
    ));
    c.push(fetch::<Episode>(
        l("score >= lo and rank <= mid"),
        t(),
        json!({ "project_id": tenant, "score__gte": spec_float(lo), "rank__lte": rank_mid }),
        none(),
        false,
        move |q| {
            q.filter(Episode::score().gte(lo))
                .filter(Episode::rank().lte(rank_mid))
        },
    ));
    c.push(count::<Episode>(
        l("count"),
        t(),
        json!({ "project_id": tenant }),
        |q| q,
    ));
    c.push(count::<Episode>(
        l("count score < mid"),
        t(),
        json!({ "project_id": tenant, "score__lt": spec_float(mid) }),
        move |q| q.filter(Episode::score().lt(mid)),
    ));
    c.push(count::<Episode>(
        l("count rank >= mid"),
        t(),
        json!({ "project_id": tenant, "rank__gte": rank_mid }),
        move |q| q.filter(Episode::rank().gte(rank_mid)),
    ));
    for ep in &eps {
        c.push(get::<Episode>(
            l(&format!("get {}", ep.episode_id)),
            t(),
            json!({ "project_id": tenant, "episode_id": ep.episode_id }),
            ep.key(),
        ));
    }
}

fn sink_cases(fx: &Fixture, tenant: &str, c: &mut Vec<Case>) {
    let t = || Sc::Tenant(tenant.to_owned());
    let rows = fx.sinks_of(tenant);
    let l = |s: &str| format!("{tenant}: KitchenSink {s}");
    let mut by_seen = rows.clone();
    by_seen.sort_by_key(|s| s.seen);
    let mut by_due = rows.clone();
    by_due.sort_by_key(|s| s.due);
    let mut by_slot = rows.clone();
    by_slot.sort_by_key(|s| s.slot);
    let seen_mid = by_seen[1].seen;
    let (seen_lo, seen_hi) = (by_seen[0].seen, by_seen[2].seen);
    let due_mid = by_due[2].due;
    let (due_lo, due_hi) = (by_due[1].due, by_due[2].due);
    let slot_mid = by_slot[1].slot;
    let js = j_aware;
    let jd = j_date;
    let jt = |d: &NaiveTime| j_time(d, None);

    c.push(fetch::<KitchenSink>(
        l("all"),
        t(),
        json!({ "tenant": tenant }),
        none(),
        false,
        |q| q,
    ));
    let sku0 = rows[0].sku.clone();
    {
        let sku = sku0.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("sku == {sku0}")),
            t(),
            json!({ "sku": sku0 }),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().eq(sku.as_str())),
        ));
    }
    {
        let skus = vec![rows[0].sku.clone(), rows[2].sku.clone(), "nope".to_owned()];
        let f = json!({ "tenant": tenant, "sku__in": skus });
        let s2 = skus.clone();
        c.push(fetch::<KitchenSink>(
            l("sku__in"),
            t(),
            f.clone(),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().is_in(s2.iter().map(String::as_str))),
        ));
        c.push(count::<KitchenSink>(l("count sku__in"), t(), f, move |q| {
            q.filter(KitchenSink::sku().is_in(skus.iter().map(String::as_str)))
        }));
    }
    let f = |key: &str, v: Json| json!({ "tenant": tenant, key: v });
    c.push(fetch::<KitchenSink>(
        l("seen >= mid"),
        t(),
        f("seen__gte", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().gte(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen > mid"),
        t(),
        f("seen__gt", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().gt(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen <= mid"),
        t(),
        f("seen__lte", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().lte(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen < mid"),
        t(),
        f("seen__lt", js(&seen_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().lt(seen_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen between"),
        t(),
        f("seen__between", json!([js(&seen_lo), js(&seen_hi)])),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().between(seen_lo, seen_hi)),
    ));
    // The same instant at another offset selects the same rows (scores are UTC timestamps).
    let seen_mid_east =
        seen_mid.with_timezone(&FixedOffset::east_opt(7 * 3600).unwrap_or_else(|| unreachable!()));
    c.push(fetch::<KitchenSink>(
        l("seen >= mid given at +07:00"),
        t(),
        f("seen__gte", js(&seen_mid_east)),
        none(),
        true,
        move |q| q.filter(KitchenSink::seen().gte(seen_mid_east)),
    ));
    c.push(fetch::<KitchenSink>(
        l("due >= mid"),
        t(),
        f("due__gte", jd(&due_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::due().gte(due_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("due < mid"),
        t(),
        f("due__lt", jd(&due_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::due().lt(due_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("due between"),
        t(),
        f("due__between", json!([jd(&due_lo), jd(&due_hi)])),
        none(),
        true,
        move |q| q.filter(KitchenSink::due().between(due_lo, due_hi)),
    ));
    c.push(fetch::<KitchenSink>(
        l("slot >= mid (global zset)"),
        t(),
        f("slot__gte", jt(&slot_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::slot().gte(slot_mid)),
    ));
    c.push(fetch::<KitchenSink>(
        l("slot <= mid"),
        t(),
        f("slot__lte", jt(&slot_mid)),
        none(),
        true,
        move |q| q.filter(KitchenSink::slot().lte(slot_mid)),
    ));
    let regions: BTreeSet<String> = rows.iter().map(|s| s.region.clone()).collect();
    for region in regions {
        let mut levels: Vec<i64> = rows
            .iter()
            .filter(|s| s.region == region)
            .map(|s| s.level)
            .collect();
        levels.sort_unstable();
        let (min, max) = (levels[0], levels[levels.len() - 1]);
        let lf = |key: &str, v: Json| json!({ "tenant": tenant, "region": region, key: v });
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("region {region} level >= min")),
            t(),
            lf("level__gte", json!(min)),
            none(),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gte(min))
            },
        ));
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("region {region} level > min")),
            t(),
            lf("level__gt", json!(min)),
            none(),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gt(min))
            },
        ));
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!("region {region} level between")),
            t(),
            lf("level__between", json!([min, max])),
            none(),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().between(min, max))
            },
        ));
        let r = region.clone();
        c.push(fetch::<KitchenSink>(
            l(&format!(
                "region {region} level >= min order_by -level limit 2"
            )),
            t(),
            lf("level__gte", json!(min)),
            json!({ "order_by": "-level", "limit": 2 }),
            true,
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gte(min))
                    .order_by_desc(KitchenSink::level())
                    .limit(2)
            },
        ));
        let r = region.clone();
        c.push(count::<KitchenSink>(
            l(&format!("region {region} count level >= min")),
            t(),
            lf("level__gte", json!(min)),
            move |q| {
                q.partition(KitchenSink::region(), r.as_str())
                    .filter(KitchenSink::level().gte(min))
            },
        ));
    }
    c.push(fetch::<KitchenSink>(
        l("order_by -seen limit 2"),
        t(),
        json!({ "tenant": tenant }),
        json!({ "order_by": "-seen", "limit": 2 }),
        true,
        |q| q.order_by_desc(KitchenSink::seen()).limit(2),
    ));
    c.push(fetch::<KitchenSink>(
        l("order_by due limit 3"),
        t(),
        json!({ "tenant": tenant }),
        json!({ "order_by": "due", "limit": 3 }),
        true,
        |q| q.order_by(KitchenSink::due()).limit(3),
    ));
    c.push(fetch::<KitchenSink>(
        l("order_by -slot"),
        t(),
        json!({ "tenant": tenant }),
        json!({ "order_by": "-slot" }),
        true,
        |q| q.order_by_desc(KitchenSink::slot()),
    ));
    c.push(fetch::<KitchenSink>(
        l("seen >= lo order_by -due"),
        t(),
        f("seen__gte", js(&seen_lo)),
        json!({ "order_by": "-due" }),
        true,
        move |q| {
            q.filter(KitchenSink::seen().gte(seen_lo))
                .order_by_desc(KitchenSink::due())
        },
    ));
    c.push(fetch::<KitchenSink>(
        l("seen >= lo and slot >= mid"),
        t(),
        json!({ "tenant": tenant, "seen__gte": js(&seen_lo), "slot__gte": jt(&slot_mid) }),
        none(),
        false,
        move |q| {
            q.filter(KitchenSink::seen().gte(seen_lo))
                .filter(KitchenSink::slot().gte(slot_mid))
        },
    ));
    c.push(count::<KitchenSink>(
        l("count"),
        t(),
        json!({ "tenant": tenant }),
        |q| q,
    ));
    c.push(count::<KitchenSink>(
        l("count seen >= mid"),
        t(),
        f("seen__gte", js(&seen_mid)),
        move |q| q.filter(KitchenSink::seen().gte(seen_mid)),
    ));
    c.push(count::<KitchenSink>(
        l("count due < mid"),
        t(),
        f("due__lt", jd(&due_mid)),
        move |q| q.filter(KitchenSink::due().lt(due_mid)),
    ));
    for s in &rows {
        c.push(get::<KitchenSink>(
            l(&format!("get {}", s.sku)),
            t(),
            json!({ "tenant": tenant, "sku": s.sku }),
            s.key(),
        ));
    }
    c.push(get::<KitchenSink>(
        l("get missing sku"),
        t(),
        json!({ "tenant": tenant, "sku": "nope" }),
        KitchenSink::key_of(tenant, "nope"),
    ));
}

fn admin_cases(fx: &Fixture, c: &mut Vec<Case>) {
    let a = || Sc::Admin;
    c.push(fetch::<Episode>(
        "admin: Episode all",
        a(),
        none(),
        none(),
        false,
        |q| q,
    ));
    c.push(count::<Episode>("admin: Episode count", a(), none(), |q| q));
    c.push(fetch::<Episode>(
        "admin: Episode rank between -10 and 100 (global zset)",
        a(),
        json!({ "rank__between": [-10, 100] }),
        none(),
        true,
        |q| q.filter(Episode::rank().between(-10, 100)),
    ));
    c.push(fetch::<Episode>(
        "admin: Episode order_by -rank limit 5",
        a(),
        none(),
        json!({ "order_by": "-rank", "limit": 5 }),
        true,
        |q| q.order_by_desc(Episode::rank()).limit(5),
    ));
    let two = ["acme", "umbrella:eu-1"];
    c.push(fetch::<Episode>(
        "admin: Episode project_id__in",
        a(),
        json!({ "project_id__in": two }),
        none(),
        false,
        move |q| q.filter(Episode::project_id().is_in(two)),
    ));
    c.push(count::<Episode>(
        "admin: Episode count project_id__in",
        a(),
        json!({ "project_id__in": two }),
        move |q| q.filter(Episode::project_id().is_in(two)),
    ));
    let mid = fx
        .episodes_of("globex")
        .iter()
        .map(|e| e.score)
        .fold(f64::INFINITY, f64::min);
    c.push(fetch::<Episode>(
        "admin: Episode project_id == globex and score >= min",
        a(),
        json!({ "project_id": "globex", "score__gte": spec_float(mid) }),
        none(),
        true,
        move |q| {
            q.filter(Episode::project_id().eq("globex"))
                .filter(Episode::score().gte(mid))
        },
    ));
    c.push(get::<Episode>(
        "admin: Episode get missing",
        a(),
        json!({ "project_id": "acme", "episode_id": "0".repeat(32) }),
        Episode::key_of("acme", "0".repeat(32)),
    ));

    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink all",
        a(),
        none(),
        none(),
        false,
        |q| q,
    ));
    c.push(count::<KitchenSink>(
        "admin: KitchenSink count",
        a(),
        none(),
        |q| q,
    ));
    let noon = NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_else(|| unreachable!());
    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink slot < 12:00 (global zset)",
        a(),
        json!({ "slot__lt": j_time(&noon, None) }),
        none(),
        true,
        move |q| q.filter(KitchenSink::slot().lt(noon)),
    ));
    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink order_by slot limit 4",
        a(),
        none(),
        json!({ "order_by": "slot", "limit": 4 }),
        true,
        |q| q.order_by(KitchenSink::slot()).limit(4),
    ));
    let two = ["globex", "umbrella:eu-1"];
    c.push(fetch::<KitchenSink>(
        "admin: KitchenSink tenant__in",
        a(),
        json!({ "tenant__in": two }),
        none(),
        false,
        move |q| q.filter(KitchenSink::tenant().is_in(two)),
    ));
    let skus: Vec<String> = TENANTS
        .iter()
        .map(|t| fx.sinks_of(t)[3].sku.clone())
        .collect();
    {
        let skus2 = skus.clone();
        c.push(fetch::<KitchenSink>(
            "admin: KitchenSink sku__in across tenants",
            a(),
            json!({ "sku__in": skus }),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().is_in(skus2.iter().map(String::as_str))),
        ));
    }
    for s in &fx.sinks {
        let sku = s.sku.clone();
        c.push(fetch::<KitchenSink>(
            format!("admin: KitchenSink sku == {}", s.sku),
            a(),
            json!({ "sku": s.sku }),
            none(),
            false,
            move |q| q.filter(KitchenSink::sku().eq(sku.as_str())),
        ));
    }
}

fn specs(cases: &[Case]) -> Vec<Json> {
    cases.iter().map(|c| c.spec.clone()).collect()
}

async fn run_rust(db: &Db, cases: &[Case]) -> Vec<Json> {
    let mut out = Vec::with_capacity(cases.len());
    for c in cases {
        out.push((c.run)(db.clone()).await);
    }
    out
}

/// The `_key`s of a fetch result, or `None` for another kind of result.
fn keys_of(v: &Json) -> Option<Vec<String>> {
    v.as_array().map(|rows| {
        rows.iter()
            .map(|r| {
                r.get("_key")
                    .and_then(Json::as_str)
                    .unwrap_or("<no _key>")
                    .to_owned()
            })
            .collect()
    })
}

/// Compares two result lists case by case (keys and order first, then values), and every
/// instance of `a` against its fixture row.
fn compare_results(
    cases: &[Case],
    expected: &BTreeMap<String, Json>,
    (a_name, a): (&str, &[Json]),
    (b_name, b): (&str, &[Json]),
    p: &mut Problems,
) {
    let mut rows = 0;
    for (i, case) in cases.iter().enumerate() {
        let (x, y) = (canon(&a[i]), canon(&b[i]));
        for (name, v) in [(a_name, &x), (b_name, &y)] {
            if v.get("$error").is_some() || v.get("$rust_error").is_some() {
                p.push(format!(
                    "{}: {name} failed: {v}\n    spec {}",
                    case.label, case.spec
                ));
            }
        }
        match (keys_of(&x), keys_of(&y)) {
            (Some(kx), Some(ky)) if kx != ky => {
                p.push(format!(
                    "{}: keys differ\n    {a_name}: {kx:?}\n    {b_name}: {ky:?}\n    spec {}",
                    case.label, case.spec
                ));
                continue;
            }
            _ => {}
        }
        p.json_eq(
            &format!("{} (spec {})", case.label, case.spec),
            a_name,
            &x,
            b_name,
            &y,
        );
        let instances: Vec<&Json> = match &x {
            Json::Array(r) => r.iter().collect(),
            Json::Object(o) if o.contains_key("_key") => vec![&x],
            _ => Vec::new(),
        };
        for inst in instances {
            rows += 1;
            let Some(key) = inst.get("_key").and_then(Json::as_str) else {
                p.push(format!("{}: instance without a _key: {inst}", case.label));
                continue;
            };
            match expected.get(key) {
                Some(want) => p.json_eq(
                    &format!("{}: instance {key}", case.label),
                    a_name,
                    inst,
                    "fixture",
                    want,
                ),
                None => p.push(format!(
                    "{}: {a_name} returned unknown key {key:?}",
                    case.label
                )),
            }
        }
    }
    eprintln!(
        "compared {} query results ({a_name} vs {b_name}), {rows} instances against the fixture",
        cases.len()
    );
}

/// Sanity of the case list: the oracle's answers are mostly non-trivial.
fn check_cases_meaningful(cases: &[Case], oracle: &[Json], p: &mut Problems) {
    let fetches: Vec<usize> = (0..cases.len()).filter(|&i| oracle[i].is_array()).collect();
    let empty = fetches
        .iter()
        .filter(|&&i| oracle[i].as_array().is_some_and(Vec::is_empty))
        .count();
    p.check(empty * 10 <= fetches.len(), || {
        format!(
            "{empty} of {} fetch cases are empty: the cases test little",
            fetches.len()
        )
    });
}

// ------------------------------------------------------------------------------------------
// Dumps

/// Compares two dump.py outputs key by key, naming every differing hash field with both hex
/// values, set members and zset members/scores.
fn compare_dumps(py: &Json, rs: &Json, p: &mut Problems) {
    let (Some(py), Some(rs)) = (py.as_object(), rs.as_object()) else {
        p.push("a dump is not an object".to_owned());
        return;
    };
    let keys: BTreeSet<&String> = py.keys().chain(rs.keys()).collect();
    for key in keys {
        let (x, y) = match (py.get(key), rs.get(key)) {
            (Some(x), Some(y)) => (x, y),
            (Some(x), None) => {
                p.push(format!("key {key:?} written by popoto only: {x}"));
                continue;
            }
            (None, Some(y)) => {
                p.push(format!("key {key:?} written by Rust only: {y}"));
                continue;
            }
            (None, None) => continue,
        };
        let ty = |v: &Json| {
            v.get("type")
                .and_then(Json::as_str)
                .unwrap_or("?")
                .to_owned()
        };
        if ty(x) != ty(y) {
            p.push(format!(
                "key {key:?}: type {} (popoto) vs {} (Rust)",
                ty(x),
                ty(y)
            ));
            continue;
        }
        if x.get("ttl_ms").is_some() || y.get("ttl_ms").is_some() {
            p.push(format!(
                "key {key:?}: ttl popoto {:?} Rust {:?}",
                x.get("ttl_ms"),
                y.get("ttl_ms")
            ));
        }
        match ty(x).as_str() {
            "hash" => {
                let empty = Map::new();
                let hx = x.get("hash").and_then(Json::as_object).unwrap_or(&empty);
                let hy = y.get("hash").and_then(Json::as_object).unwrap_or(&empty);
                let fields: BTreeSet<&String> = hx.keys().chain(hy.keys()).collect();
                for f in fields {
                    let (vx, vy) = (hx.get(f), hy.get(f));
                    p.check(vx == vy, || {
                        let h = |v: Option<&Json>| v.and_then(Json::as_str).map(str::to_owned);
                        let show = |v: Option<&Json>| match h(v) {
                            Some(hex) => format!("{hex}  ({})", unhex(&hex).escape_ascii()),
                            None => "<absent>".to_owned(),
                        };
                        format!(
                            "hash {key:?} field {f:?}:\n    popoto {}\n    Rust   {}",
                            show(vx),
                            show(vy)
                        )
                    });
                }
            }
            "set" => {
                let m = |v: &Json| -> BTreeSet<String> {
                    v.get("set")
                        .and_then(Json::as_array)
                        .unwrap_or_else(|| panic!("dump of set {key:?} has no member list: {v}"))
                        .iter()
                        .map(|s| match s.as_str() {
                            Some(s) => s.to_owned(),
                            None => panic!("dump of set {key:?}: member {s} is not a string"),
                        })
                        .collect()
                };
                let (mx, my) = (m(x), m(y));
                p.check(mx == my, || {
                    format!(
                        "set {key:?}: only popoto {:?}, only Rust {:?}",
                        mx.difference(&my).collect::<Vec<_>>(),
                        my.difference(&mx).collect::<Vec<_>>()
                    )
                });
            }
            "zset" => {
                let m = |v: &Json| -> BTreeMap<String, String> {
                    v.get("zset")
                        .and_then(Json::as_array)
                        .unwrap_or_else(|| panic!("dump of zset {key:?} has no member list: {v}"))
                        .iter()
                        .map(|e| {
                            let s = |i: usize| {
                                e.get(i).and_then(Json::as_str).map_or_else(
                                    || panic!("dump of zset {key:?}: bad entry {e}"),
                                    str::to_owned,
                                )
                            };
                            (s(0), s(1))
                        })
                        .collect()
                };
                let (mx, my) = (m(x), m(y));
                let members: BTreeSet<&String> = mx.keys().chain(my.keys()).collect();
                for member in members {
                    let (sx, sy) = (mx.get(member), my.get(member));
                    p.check(sx == sy, || {
                        format!("zset {key:?} member {member:?}: score popoto {sx:?} Rust {sy:?}")
                    });
                }
            }
            _ => p.json_eq(&format!("key {key:?}"), "popoto", x, "Rust", y),
        }
    }
}

// ------------------------------------------------------------------------------------------
// The tests

#[tokio::test]
async fn python_writes_rust_reads() {
    let fx = Fixture::load();
    let mut p = Problems::new();
    check_fixture_parsing(&fx, &mut p);
    let server = start_server();
    python_write_checked(&server, &fx, &mut p);
    let db = server.db().await;
    check_gets(&db, &fx, &mut p).await;
    check_counts(&db, &fx, &mut p).await;

    let cases = cases(&fx);
    let py = python_query(server.url(), &specs(&cases));
    check_cases_meaningful(&cases, &py, &mut p);
    let rust = run_rust(&db, &cases).await;
    compare_results(
        &cases,
        &fx.expected(),
        ("popoto", &py),
        ("Rust", &rust),
        &mut p,
    );
    p.assert_none("python_writes_rust_reads");
}

#[tokio::test]
async fn rust_writes_python_reads() {
    let fx = Fixture::load();
    let mut p = Problems::new();
    let rust_server = start_server();
    let db = rust_server.db().await;
    rust_write(&db, &fx).await;
    // The oracle: popoto's answers on a database it wrote itself.
    let py_server = start_server();
    python_write_checked(&py_server, &fx, &mut p);

    let cases = cases(&fx);
    let specs = specs(&cases);
    let on_rust = python_query(rust_server.url(), &specs);
    let on_py = python_query(py_server.url(), &specs);
    check_cases_meaningful(&cases, &on_py, &mut p);
    let rust = run_rust(&db, &cases).await;
    let expected = fx.expected();
    compare_results(
        &cases,
        &expected,
        ("popoto on Rust-written data", &on_rust),
        ("popoto on popoto-written data", &on_py),
        &mut p,
    );
    compare_results(
        &cases,
        &expected,
        ("popoto on Rust-written data", &on_rust),
        ("Rust", &rust),
        &mut p,
    );
    p.assert_none("rust_writes_python_reads");
}

#[tokio::test]
async fn byte_identical_layout() {
    let fx = Fixture::load();
    let mut p = Problems::new();
    let py_server = start_server();
    python_write_checked(&py_server, &fx, &mut p);
    let rust_server = start_server();
    let db = rust_server.db().await;
    rust_write(&db, &fx).await;

    let py = python_dump(py_server.url());
    let rs = python_dump(rust_server.url());
    let n = py.as_object().map_or(0, Map::len);
    p.check(n == 68, || {
        format!("popoto wrote {n} keys, the README says 68")
    });
    compare_dumps(&py, &rs, &mut p);
    eprintln!(
        "compared {} keys of popoto's dump with {} of Rust's",
        n,
        rs.as_object().map_or(0, Map::len)
    );
    p.assert_none("byte_identical_layout");
}

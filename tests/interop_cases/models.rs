//! The two models of `tests/interop/models.py`, the Rust side of their values, and how each
//! is built from a fixture row and rendered as `query.py` renders it.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime};
use popoto::codec::PyDecimal;
use popoto::error::{DecodeError, EncodeError};
use popoto::{Key, Model};
use serde_bytes::ByteBuf;
use serde_json::{json, Map, Value as Json};

use crate::interop_support::*;

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
pub(crate) const TIME_HEAD: &[u8] = b"\x82\xa8__time__\xc3\xacas_encodable";

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
pub(crate) trait Interop: Model + Clone + std::fmt::Debug {
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
pub(crate) fn instance<M: Interop>(key: &str, m: &M) -> Json {
    let mut o = Map::new();
    o.insert("_key".into(), json!(key));
    o.extend(m.canon_fields());
    Json::Object(o)
}

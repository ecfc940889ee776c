//! Bad data: garbage bytes, wrong msgpack types, truncated and huge values, foreign and legacy
//! hash fields, wrong Redis types and malformed index members give typed errors naming model,
//! key and field, never a panic. The value decoders, the derive's `from_hash` and the key
//! parsers are fuzzed with proptest (arbitrary bytes and structurally mutated valid encodings),
//! and a corpus of interesting inputs (`tests/corpus/`) is replayed on every run.
//!
//! Generated cases per run: `decoders_never_panic_on_arbitrary_bytes` 1,500,
//! `decoders_round_trip_and_survive_mutations` 1,500, `from_hash_never_panics_and_names_the_field`
//! 1,000, `key_parsers_never_panic_and_reparse_stably` 1,500: 5,500.
//!
//! This file holds the model of every type and the strategies; the tests are modules in
//! `tests/bad_data_cases/`: `fuzz` (no server) and `stored` (against a server).

mod support;

#[path = "bad_data_cases/fuzz.rs"]
mod fuzz;
#[path = "bad_data_cases/stored.rs"]
mod stored;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use popoto::codec::{decode_serde, encode_serde, PyDecimal, Value};
use popoto::{ConfidenceState, Error, Key, Model, ModelMeta};
use popoto_core::keys::{self, escape, unescape};
use proptest::prelude::*;
use proptest::sample::Index;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use support::*;

// ------------------------------------------------------------------------ a model of every type

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct Inner {
    a: i64,
    b: Vec<String>,
}

/// One field of every kind of type the codec stores.
#[derive(Model, Debug, Clone, PartialEq)]
struct Everything {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    id: i64,
    flag: bool,
    small: u8,
    big: u64,
    neg: i32,
    ratio: f32,
    amount: Decimal,
    py: PyDecimal,
    when: NaiveDateTime,
    at: DateTime<Utc>,
    local: DateTime<FixedOffset>,
    day: NaiveDate,
    time: NaiveTime,
    tags: BTreeSet<String>,
    ids: HashSet<i64>,
    pair: (i64, String),
    list: Vec<String>,
    map: HashMap<String, f64>,
    inner: Inner,
    opt: Option<String>,
    #[popoto(sorted)]
    score: f64,
}

const EVERYTHING_FIELDS: &[&str] = &[
    "org", "id", "flag", "small", "big", "neg", "ratio", "amount", "py", "when", "at", "local",
    "day", "time", "tags", "ids", "pair", "list", "map", "inner", "opt", "score",
];

/// Runs every decoder on `bytes`; returns how many accepted it. Panics are the failure.
fn decode_all(bytes: &[u8]) -> usize {
    let mut ok = 0;
    macro_rules! each {
        ($($t:ty),* $(,)?) => {$(
            ok += usize::from(<$t as Value>::decode(bytes).is_ok());
        )*};
    }
    each!(
        i8,
        i16,
        i32,
        i64,
        isize,
        u8,
        u16,
        u32,
        u64,
        usize,
        f32,
        f64,
        bool,
        String,
        Option<String>,
        Option<i64>,
        Option<f64>,
        Option<Option<bool>>,
        Decimal,
        PyDecimal,
        NaiveDateTime,
        DateTime<Utc>,
        DateTime<FixedOffset>,
        NaiveDate,
        NaiveTime,
        BTreeSet<String>,
        BTreeSet<i64>,
        HashSet<String>,
        (i64,),
        (i64, String),
        (String, f64, bool),
        (u8, u8, u8, u8, u8, u8),
    );
    ok += usize::from(decode_serde::<Vec<String>>(bytes).is_ok());
    ok += usize::from(decode_serde::<HashMap<String, f64>>(bytes).is_ok());
    ok += usize::from(decode_serde::<Inner>(bytes).is_ok());
    ok += usize::from(decode_serde::<Vec<Vec<Vec<i64>>>>(bytes).is_ok());
    ok += usize::from(ConfidenceState::decode(bytes, 0.5).is_ok());
    ok
}

/// Decodes `bytes` as every field of `Everything` and checks errors name model, key and field.
fn from_hash_checked(fields: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), TestCaseError> {
    let key = "Everything:1:acme";
    match Everything::from_hash(key, fields) {
        Ok(_) => Ok(()),
        Err(Error::Decode {
            model,
            key: k,
            field,
            reason,
        }) => {
            prop_assert_eq!(model, "Everything");
            prop_assert_eq!(k, key);
            prop_assert!(EVERYTHING_FIELDS.contains(&field.as_str()), "{}", field);
            prop_assert!(!reason.is_empty());
            Ok(())
        }
        Err(other) => Err(TestCaseError::fail(format!("untyped error {other:?}"))),
    }
}

// ------------------------------------------------------------------------ strategies

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        prop::sample::select(&["", "é", "日本", "a:b", "{&#58;}", "\0", "1e-05"][..])
            .prop_map(String::from),
    ]
}

fn naive_datetime() -> impl Strategy<Value = NaiveDateTime> {
    (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000).prop_map(|(s, n)| {
        DateTime::from_timestamp(s, n)
            .map(|d| d.naive_utc())
            .unwrap_or_else(|| panic!("timestamp {s}.{n:09} is out of range"))
    })
}

/// A valid encoding of a value of some codec type.
fn valid_encoding() -> impl Strategy<Value = Vec<u8>> {
    fn enc<T: Value>(v: T) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out)
            .map(|()| out)
            .unwrap_or_else(|e| panic!("encoding a valid value: {e}"))
    }
    fn ser<T: Serialize>(v: T) -> Vec<u8> {
        let mut out = Vec::new();
        encode_serde(&v, &mut out)
            .map(|()| out)
            .unwrap_or_else(|e| panic!("encoding a valid value: {e}"))
    }
    prop_oneof![
        any::<i64>().prop_map(enc),
        any::<u64>().prop_map(enc),
        any::<f64>().prop_map(enc),
        any::<bool>().prop_map(enc),
        text().prop_map(enc),
        proptest::option::of(text()).prop_map(enc),
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| enc(Decimal::new(m, s))),
        "[+-]?[0-9]{0,30}(\\.[0-9]{0,30})?([eE][+-]?[0-9]{1,4})?|NaN|-?Infinity"
            .prop_filter_map("a Python decimal", |s| s.parse::<PyDecimal>().ok())
            .prop_map(enc),
        naive_datetime().prop_map(enc),
        naive_datetime().prop_map(|d| enc(d.and_utc())),
        (naive_datetime(), -86_399i32..86_399).prop_map(|(d, off)| {
            FixedOffset::east_opt(off)
                .map(|o| enc(d.and_utc().with_timezone(&o)))
                .unwrap_or_else(|| panic!("offset {off} s is out of range"))
        }),
        naive_datetime().prop_map(|d| enc(d.date())),
        naive_datetime().prop_map(|d| enc(d.time())),
        prop::collection::btree_set(text(), 0..4).prop_map(enc),
        prop::collection::hash_set(any::<i64>(), 0..4).prop_map(enc),
        (any::<i64>(), text()).prop_map(enc),
        prop::collection::vec(text(), 0..4).prop_map(ser),
        prop::collection::hash_map(text(), any::<f64>(), 0..4).prop_map(ser),
        (any::<i64>(), prop::collection::vec(text(), 0..3)).prop_map(|(a, b)| ser(Inner { a, b })),
        (any::<f64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(c, n, p, q)| {
            ser(ConfidenceEntry {
                confidence: c,
                evidence_count: n,
                corroborations: p,
                contradictions: q,
            })
        }),
    ]
}

#[derive(Serialize)]
struct ConfidenceEntry {
    confidence: f64,
    evidence_count: u64,
    corroborations: u64,
    contradictions: u64,
}

/// Markers worth planting: never-used, big lengths, containers, ext types, tags' neighbours.
const MARKERS: &[u8] = &[
    0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,
    0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0x80, 0x8f, 0x90, 0x9f, 0xa0,
    0xbf, 0xe0, 0xff, 0x00, 0x7f,
];

#[derive(Debug, Clone)]
enum Mutation {
    Set(Index, u8),
    Marker(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
    /// Copies a slice of the value elsewhere (nesting, repeated tags).
    Splice(Index, Index, Index),
    /// A length field of all ones after a planted marker.
    HugeLength(Index, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<Index>(), prop::sample::select(MARKERS)).prop_map(|(i, b)| Mutation::Marker(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<Index>().prop_map(Mutation::Remove),
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<Index>(), any::<Index>())
            .prop_map(|(a, b, c)| Mutation::Splice(a, b, c)),
        (
            any::<Index>(),
            prop::sample::select(&[0xc6u8, 0xdb, 0xdd, 0xdf, 0xc9][..])
        )
            .prop_map(|(i, m)| Mutation::HugeLength(i, m)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Set(i, b) | Mutation::Marker(i, b) if len > 0 => bytes[i.index(len)] = *b,
            Mutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
            Mutation::Remove(i) if len > 0 => {
                bytes.remove(i.index(len));
            }
            Mutation::Truncate(i) => bytes.truncate(i.index(len + 1)),
            Mutation::Splice(a, b, at) if len > 0 => {
                let (x, y) = (a.index(len), b.index(len));
                let piece = bytes[x.min(y)..=x.max(y)].to_vec();
                let at = at.index(len + 1);
                bytes.splice(at..at, piece);
            }
            Mutation::HugeLength(i, marker) => {
                let at = i.index(len + 1);
                bytes.splice(at..at, [*marker, 0xff, 0xff, 0xff, 0xff]);
            }
            _ => {}
        }
    }
    bytes
}

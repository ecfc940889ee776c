//! Bad data: garbage bytes, wrong msgpack types, truncated and huge values, foreign and legacy
//! hash fields, wrong Redis types and malformed index members give typed errors naming model,
//! key and field, never a panic. The value decoders, the derive's `from_hash` and the key
//! parsers are fuzzed with proptest (arbitrary bytes and structurally mutated valid encodings),
//! and a corpus of interesting inputs (`tests/corpus/`) is replayed on every run.
//!
//! Generated cases per run: `decoders_never_panic_on_arbitrary_bytes` 1,500,
//! `decoders_round_trip_and_survive_mutations` 1,500, `from_hash_never_panics_and_names_the_field`
//! 1,000, `key_parsers_never_panic_and_reparse_stably` 1,500: 5,500.

mod support;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use popoto::codec::{decode_serde, encode_serde, PyDecimal, Value};
use popoto::{ConfidenceState, Error, Key, Model, ModelMeta};
use popoto_core::keys::{self, escape, unescape};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::Config;
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

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

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

// ------------------------------------------------------------------------ fuzz properties

proptest! {
    #![proptest_config(config(1500))]

    /// No decoder panics on arbitrary bytes.
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        decode_all(&bytes);
    }
}

proptest! {
    #![proptest_config(config(1500))]

    /// Valid encodings decode back (at least one decoder accepts them); their structural
    /// mutations never make a decoder panic.
    #[test]
    fn decoders_round_trip_and_survive_mutations(
        valid in valid_encoding(),
        mutations in prop::collection::vec(mutation(), 1..5),
    ) {
        prop_assert!(decode_all(&valid) > 0, "nothing decodes {:02x?}", valid);
        decode_all(&mutate(valid, &mutations));
    }
}

fn field_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => prop::sample::select(EVERYTHING_FIELDS).prop_map(|s| s.as_bytes().to_vec()),
        1 => prop::sample::select(EVERYTHING_FIELDS).prop_map(|s| format!("{s}\0idxset").into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => valid_encoding(),
        2 => (valid_encoding(), prop::collection::vec(mutation(), 1..4)).prop_map(|(v, m)| mutate(v, &m)),
        1 => prop::collection::vec(any::<u8>(), 0..32),
    ]
}

proptest! {
    #![proptest_config(config(1000))]

    /// `from_hash` of a hash with any field names (declared, legacy NUL-suffixed, foreign,
    /// non-UTF-8) and any values either decodes or fails with `Error::Decode` naming the model,
    /// the key and a declared field.
    #[test]
    fn from_hash_never_panics_and_names_the_field(
        fields in prop::collection::vec((field_name(), field_value()), 0..30),
    ) {
        from_hash_checked(fields)?;
    }
}

/// Metas of models with one to three key fields and the hidden auto key.
fn metas() -> [&'static ModelMeta; 5] {
    [
        Item::META,
        Episode::META,
        Note::META,
        Poll::META,
        Everything::META,
    ]
}

fn key_text() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(
        &[
            ":",
            "/",
            "{&#58;}",
            "{",
            "}",
            "\\",
            "*",
            "-",
            "/-",
            "//",
            "/{",
            "{&#58;",
            "&#58;}",
            "Item",
            "Episode",
            "Note",
            "Poll",
            "Everything",
            "é",
            "\0",
        ][..],
    );
    prop_oneof![
        any::<String>(),
        prop::collection::vec(atoms.clone(), 0..12).prop_map(|v| v.concat()),
        (
            prop::sample::select(&["Item", "Episode", "Note", "Poll", "Everything"][..]),
            prop::collection::vec(any::<String>(), 0..4)
        )
            .prop_map(|(m, segs)| {
                let mut k = m.to_owned();
                for s in segs {
                    k.push(':');
                    k.push_str(&escape(&s));
                }
                k
            }),
        (key_text_mutable(), any::<Index>(), atoms).prop_map(|(k, at, atom)| {
            let mut cut = at.index(k.len() + 1);
            while !k.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}{atom}{}", &k[..cut], &k[cut..])
        }),
    ]
}

fn key_text_mutable() -> impl Strategy<Value = String> {
    (any::<String>(), any::<String>())
        .prop_map(|(a, b)| Item::key_of(escape(&a).into_owned(), b).redis_key())
}

proptest! {
    #![proptest_config(config(1500))]

    /// `unescape`, `parse_instance_key` and `Key::parse` never panic on any text; whatever
    /// parses has the model's arity and re-renders to a canonical key that parses the same.
    #[test]
    fn key_parsers_never_panic_and_reparse_stably(text in key_text()) {
        check_key_text(&text)?;
    }
}

fn check_key_text(text: &str) -> Result<(), TestCaseError> {
    let _ = unescape(text);
    prop_assert_eq!(unescape(&escape(text)).into_owned(), text.to_owned());
    for meta in metas() {
        if let Ok(segments) = keys::parse_instance_key(meta, text) {
            prop_assert_eq!(segments.len(), meta.key_fields.len());
            let canonical = keys::instance_key(meta, &segments);
            prop_assert_eq!(
                keys::parse_instance_key(meta, &canonical).ok(),
                Some(segments)
            );
        }
    }
    fn typed<M: Model>(text: &str) -> Result<(), TestCaseError> {
        match Key::<M>::parse(text) {
            Ok(k) => prop_assert_eq!(Key::<M>::parse(&k.redis_key()).ok(), Some(k)),
            Err(Error::MalformedKey { model, key, .. }) => {
                prop_assert_eq!(model, M::META.name);
                prop_assert_eq!(key, text);
            }
            Err(e) => return Err(TestCaseError::fail(format!("untyped {e:?}"))),
        }
        Ok(())
    }
    typed::<Item>(text)?;
    typed::<Episode>(text)?;
    typed::<Note>(text)?;
    typed::<Everything>(text)?;
    let _ = keys::parse_index_key(Item::META, text);
    let _ = keys::is_index_key(Item::META, text);
    Ok(())
}

// ------------------------------------------------------------------------ the corpus

fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(dir);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn the_corpus_replays_without_a_panic_in_bounded_time() {
    let start = Instant::now();
    let decoder = corpus("decoder");
    assert!(decoder.len() >= 20, "{} decoder inputs", decoder.len());
    for (name, bytes) in &decoder {
        let t = Instant::now();
        decode_all(bytes);
        let fields = EVERYTHING_FIELDS
            .iter()
            .map(|f| (f.as_bytes().to_vec(), bytes.clone()))
            .collect();
        from_hash_checked(fields).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            t.elapsed()
        );
    }
    let keys = corpus("keys");
    assert!(keys.len() >= 10, "{} key inputs", keys.len());
    for (name, bytes) in &keys {
        let text = String::from_utf8(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = Instant::now();
        check_key_text(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{name} took {:?}",
            t.elapsed()
        );
    }
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
}

// ------------------------------------------------------------------------ against a server

/// Asserts `e` is a decode error of `model`, `key`, `field`, and that its message names them.
fn assert_decode(e: &Error, model: &str, key: &str, field: &str) {
    match e {
        Error::Decode {
            model: m,
            key: k,
            field: f,
            ..
        } => {
            assert_eq!((*m, k.as_str(), f.as_str()), (model, key, field), "{e}");
            let text = e.to_string();
            assert!(
                text.contains(model) && text.contains(key) && text.contains(field),
                "{text}"
            );
        }
        other => panic!("expected a decode error of {model}.{field} at {key}, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_in_a_hash_field_is_a_decode_error_naming_model_key_and_field() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let item = t
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            level: 3,
            note: Some("n".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = Item::key_of("acme", "s1").redis_key();
    let original = hgetall(&server, &key);
    let cases: &[(&str, &[u8])] = &[
        ("level", b"\xff\xff"),                 // garbage
        ("level", b"\xa3abc"),                  // a string for an int
        ("level", b"\xcb\x3f\xb9"),             // a truncated float64
        ("level", b"\xcb\x3f\xf8\0\0\0\0\0\0"), // a float for an int
        ("level", b"\x01\x02"),                 // trailing bytes
        ("level", b""),                         // empty
        ("region", b"\xc1"),                    // a never-used marker
        ("region", b"\xa2\xff\xfe"),            // invalid UTF-8
        ("region", b"\xdb\xff\xff\xff\xffab"),  // a str32 claiming 4 GiB
        ("note", b"\x92\x01\x02"),              // an array for Option<String>
        ("tenant", b"\xa5hi"),                  // a truncated str
    ];
    for (field, bytes) in cases {
        hset(&server, &key, field.as_bytes(), bytes);
        let e = t.get(&Item::key_of("acme", "s1")).await.unwrap_err();
        assert_decode(&e, "Item", &key, field);
        let e = t.query::<Item>().fetch().await.unwrap_err();
        assert_decode(&e, "Item", &key, field);
        // Counting loads no hash: it checks the stored tenant field only (server-side), so an
        // undecodable row still counts unless its tenant field is what is broken.
        let expected = if *field == "tenant" { 0 } else { 1 };
        assert_eq!(
            t.query::<Item>().count().await.unwrap(),
            expected,
            "{field}"
        );
        for (f, v) in &original {
            hset(&server, &key, f.as_bytes(), v);
        }
    }
    assert_eq!(
        t.get(&Item::key_of("acme", "s1")).await.unwrap(),
        Some(item)
    );
    // A garbage movable partition value is a decode error on save and delete: nothing written.
    hset(&server, &key, b"region", b"\xc1");
    let before = dump(&server);
    let changed = Item {
        tenant: "acme".into(),
        sku: "s1".into(),
        region: "us".into(),
        level: 4,
        note: None,
    };
    assert_decode(&t.save(&changed).await.unwrap_err(), "Item", &key, "region");
    assert_decode(
        &t.delete(&changed).await.unwrap_err(),
        "Item",
        &key,
        "region",
    );
    assert_eq!(dump(&server), before);
}

#[tokio::test]
async fn huge_values_round_trip_or_fail_typed() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let huge = "x".repeat(64 << 20);
    let item = t
        .create(Item {
            sku: "big".into(),
            note: Some(huge.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let back = t.get(&Item::key_of("acme", "big")).await.unwrap().unwrap();
    assert_eq!(back.note.as_ref().map(String::len), Some(64 << 20));
    assert_eq!(back, item);
    // 64 MiB where an int belongs.
    let key = Item::key_of("acme", "big").redis_key();
    let mut bytes = vec![0xdb];
    bytes.extend_from_slice(&(huge.len() as u32).to_be_bytes());
    bytes.extend_from_slice(huge.as_bytes());
    hset(&server, &key, b"level", &bytes);
    let e = t.get(&Item::key_of("acme", "big")).await.unwrap_err();
    assert_decode(&e, "Item", &key, "level");
    hset(&server, &key, b"level", b"\x00");
    // Length prefixes claiming 4 GiB with nothing behind them allocate nothing and fail.
    for claim in [
        &b"\xdb\xff\xff\xff\xff"[..],
        b"\xc6\xff\xff\xff\xff",
        b"\xdd\xff\xff\xff\xff",
    ] {
        hset(&server, &key, b"note", claim);
        let e = t.get(&Item::key_of("acme", "big")).await.unwrap_err();
        assert_decode(&e, "Item", &key, "note");
    }
    drop(huge);
}

#[tokio::test]
async fn foreign_and_legacy_fields_are_ignored_and_survive_writes() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let item = t
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = Item::key_of("acme", "s1").redis_key();
    hset(&server, &key, b"foreign", b"\xc1garbage");
    hset(&server, &key, b"level\0idxset", b"\xff");
    hset(&server, &key, b"\xff\xfe", b"\xa1x");
    hset(&server, &key, b"", b"");
    assert_eq!(
        t.get(&Item::key_of("acme", "s1")).await.unwrap(),
        Some(item.clone())
    );
    assert_eq!(
        t.query::<Item>().fetch().await.unwrap(),
        std::slice::from_ref(&item)
    );
    let mut changed = item.clone();
    changed.region = "us".into();
    t.save(&changed).await.unwrap();
    let h: Vec<(Vec<u8>, Vec<u8>)> = raw_cmd(&server, redis::cmd("HGETALL").arg(&key));
    for f in [&b"foreign"[..], b"level\0idxset", b"\xff\xfe", b""] {
        assert!(h.iter().any(|(k, _)| k == f), "{f:?} was dropped");
    }
    assert_eq!(
        t.get(&Item::key_of("acme", "s1")).await.unwrap(),
        Some(changed)
    );
    popoto::testing::assert_isolated::<Item>(&db).await;
}

#[tokio::test]
async fn wrong_redis_types_are_typed_errors_and_write_nothing() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let key = Item::key_of("acme", "s1").redis_key();
    raw_cmd::<()>(&server, redis::cmd("SET").arg(&key).arg("a string"));
    let e = t.get(&Item::key_of("acme", "s1")).await.unwrap_err();
    assert!(matches!(e, Error::Redis { model: "Item", .. }), "{e:?}");
    assert!(!e.is_connection_error());
    let item = Item {
        tenant: "acme".into(),
        sku: "s1".into(),
        ..Default::default()
    };
    let before = dump(&server);
    assert!(matches!(
        t.create(item.clone()).await,
        Err(Error::AlreadyExists { .. })
    ));
    // (`save` reads the stored partition value first: the server's WRONGTYPE, typed too.)
    match t.save(&item).await {
        Err(Error::WrongType { .. }) => {}
        Err(e @ Error::Redis { .. }) => assert!(!e.is_connection_error(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(dump(&server), before);
    // An index key of the wrong type: the write is refused before anything is written.
    raw_cmd::<()>(&server, redis::cmd("DEL").arg(&key));
    raw_cmd::<()>(
        &server,
        redis::cmd("SET").arg("$KeyF:Item:tenant:acme").arg("x"),
    );
    let before = dump(&server);
    match t.create(item.clone()).await {
        Err(Error::WrongType { model, key, found }) => {
            assert_eq!(
                (model, key.as_str(), found.as_str()),
                ("Item", "$KeyF:Item:tenant:acme", "string")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dump(&server), before);
}

#[tokio::test]
async fn malformed_index_members_are_typed_errors() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    t.create(Item {
        sku: "s1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let set = "$KeyF:Item:tenant:acme";
    // A member without an instance hash is skipped.
    raw_cmd::<i64>(&server, redis::cmd("SADD").arg(set).arg("Item:gone:acme"));
    assert_eq!(t.query::<Item>().fetch().await.unwrap().len(), 1);
    // A member whose hash exists but whose shape is not the model's, and a non-UTF-8 member:
    // skipped (and reported), never an error that hides the tenant's other rows.
    raw_cmd::<i64>(&server, redis::cmd("SADD").arg(set).arg("Item:a:b:acme"));
    hset(&server, "Item:a:b:acme", b"sku", b"\xa1a");
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD").arg(set).arg(&b"Item:\xff:acme"[..]),
    );
    assert_eq!(raw_cmd::<i64>(&server, redis::cmd("SCARD").arg(set)), 4);
    let rows = t.query::<Item>().fetch_keyed().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, Item::key_of("acme", "s1"));
    assert_eq!(
        t.query::<Item>().fetch_keys().await.unwrap(),
        [Item::key_of("acme", "s1")]
    );
    assert_eq!(t.query::<Item>().count().await.unwrap(), 1);
}

#[tokio::test]
async fn corrupt_confidence_entries_are_decode_errors_and_are_never_overwritten() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let m = t
        .create(Memory {
            key: "fact".into(),
            certainty: 0.5,
            ..Default::default()
        })
        .await
        .unwrap();
    let companion = "$ConfidencF:Memory:certainty:data:acme";
    let member = Memory::key_of("acme", "fact").redis_key();
    for garbage in [&b"\xc1"[..], b"\x05", b"\xa3abc", b"\x84\xaaconfidence"] {
        hset(&server, companion, member.as_bytes(), garbage);
        let c = t.confidence(&m, Memory::certainty()).unwrap();
        assert_decode(&c.state().await.unwrap_err(), "Memory", companion, &member);
        assert_decode(
            &c.update(0.9).await.unwrap_err(),
            "Memory",
            companion,
            &member,
        );
        let stored: Vec<u8> = raw_cmd(&server, redis::cmd("HGET").arg(companion).arg(&member));
        assert_eq!(stored, garbage, "the corrupt entry was overwritten");
        let e = t
            .confidence_scan(Memory::certainty())
            .fetch_all()
            .await
            .unwrap_err();
        assert_decode(&e, "Memory", companion, &member);
    }
}

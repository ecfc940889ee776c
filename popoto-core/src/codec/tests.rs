//! Codec tests. Every expected value was produced by the real popoto 1.10.1 / msgpack-python /
//! CPython 3.11 and is hard-coded here (the tests do not need Python).

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use rust_decimal::Decimal;

use super::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn enc<T: Value>(v: &T) -> String {
    let mut out = Vec::new();
    v.encode(&mut out).unwrap();
    hex(&out)
}

fn dec<T: Value>(h: &str) -> Result<T, crate::error::DecodeError> {
    T::decode(&unhex(h))
}

fn seg<T: KeySegment + ?Sized>(v: &T) -> String {
    let mut s = String::new();
    v.render(&mut s);
    s
}

fn roundtrip<T: Value + PartialEq + std::fmt::Debug>(v: T) {
    let mut out = Vec::new();
    v.encode(&mut out).unwrap();
    assert_eq!(
        T::decode(&out).unwrap(),
        v,
        "round trip of {v:?} via {}",
        hex(&out)
    );
}

fn ndt(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_micro_opt(h, mi, s, us)
        .unwrap()
}

fn t(h: u32, m: u32, s: u32, us: u32) -> NaiveTime {
    NaiveTime::from_hms_micro_opt(h, m, s, us).unwrap()
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn east(secs: i32) -> FixedOffset {
    FixedOffset::east_opt(secs).unwrap()
}

fn dec_str(s: &str) -> Decimal {
    parse_decimal(s).unwrap()
}

/// Head of every tagged datetime (`82 ac "__datetime__" c3 ac "as_encodable"`).
const DT_HEAD: &str = "82ac5f5f6461746574696d655f5fc3ac61735f656e636f6461626c65";

// ------------------------------------------------------------------------------------------
// Layout section 2.2: verified hex

#[test]
fn hex_strings() {
    assert_eq!(enc(&"p1".to_string()), "a27031");
    assert_eq!(enc(&"héllo".to_string()), "a668c3a96c6c6f");
    let uuid = "0123456789abcdef0123456789abcdef".to_string();
    assert_eq!(enc(&uuid), format!("d920{}", hex(uuid.as_bytes())));
    // str family boundaries (msgpack-python): fixstr < 32, str8 < 256, str16, str32.
    assert_eq!(&enc(&"x".repeat(31))[..2], "bf");
    assert_eq!(&enc(&"x".repeat(32))[..4], "d920");
    assert_eq!(&enc(&"x".repeat(255))[..4], "d9ff");
    assert_eq!(&enc(&"x".repeat(256))[..6], "da0100");
    assert_eq!(&enc(&"x".repeat(65536))[..10], "db00010000");
    assert_eq!(enc(&String::new()), "a0");
}

#[test]
fn hex_ints() {
    assert_eq!(enc(&-5i64), "fb");
    assert_eq!(enc(&127i64), "7f");
    assert_eq!(enc(&128i64), "cc80");
    assert_eq!(enc(&-33i64), "d0df");
    assert_eq!(enc(&(1i64 << 40)), "cf0000010000000000");
    assert_eq!(enc(&i64::MIN), "d38000000000000000");
    // More widths, all checked against msgpack.packb.
    let cases: &[(i64, &str)] = &[
        (-32, "e0"),
        (-128, "d080"),
        (-129, "d1ff7f"),
        (255, "ccff"),
        (256, "cd0100"),
        (65535, "cdffff"),
        (65536, "ce00010000"),
        (4294967295, "ceffffffff"),
        (4294967296, "cf0000000100000000"),
        (-2147483648, "d280000000"),
        (-2147483649, "d3ffffffff7fffffff"),
        (-32768, "d18000"),
        (-32769, "d2ffff7fff"),
        (0, "00"),
    ];
    for &(v, h) in cases {
        assert_eq!(enc(&v), h, "{v}");
        // Same bytes whatever the Rust width holding the value.
        if let Ok(v32) = i32::try_from(v) {
            assert_eq!(enc(&v32), h, "{v} as i32");
        }
        if let Ok(v16) = i16::try_from(v) {
            assert_eq!(enc(&v16), h, "{v} as i16");
        }
        if let Ok(v8) = i8::try_from(v) {
            assert_eq!(enc(&v8), h, "{v} as i8");
        }
        if let Ok(u) = u64::try_from(v) {
            assert_eq!(enc(&u), h, "{v} as u64");
        }
        if let Ok(u) = u8::try_from(v) {
            assert_eq!(enc(&u), h, "{v} as u8");
        }
    }
    assert_eq!(enc(&u64::MAX), "cfffffffffffffffff");
    assert_eq!(enc(&127i8), "7f");
    assert_eq!(enc(&200u8), "ccc8");
    assert_eq!(enc(&usize::MAX), "cfffffffffffffffff");
}

#[test]
fn hex_floats_bool_none() {
    assert_eq!(enc(&0.1f64), "cb3fb999999999999a");
    assert_eq!(enc(&1.5f64), "cb3ff8000000000000");
    assert_eq!(enc(&-0.0f64), "cb8000000000000000");
    assert_eq!(enc(&f64::INFINITY), "cb7ff0000000000000");
    assert_eq!(enc(&1.5f32), "cb3ff8000000000000");
    assert_eq!(enc(&3.0f64), "cb4008000000000000");
    assert_eq!(enc(&true), "c3");
    assert_eq!(enc(&false), "c2");
    assert_eq!(enc(&None::<i64>), "c0");
    assert_eq!(enc(&None::<NaiveDateTime>), "c0");
    assert_eq!(enc(&Some(128i64)), "cc80");
}

#[test]
fn hex_serde_bytes_and_struct_map() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Inner {
        x: Option<i64>,
    }
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct D {
        a: i64,
        b: Vec<i64>,
        c: Inner,
    }
    let v = D {
        a: 1,
        b: vec![1, 2],
        c: Inner { x: None },
    };
    let mut out = Vec::new();
    encode_serde(&v, &mut out).unwrap();
    assert_eq!(hex(&out), "83a16101a162920102a16381a178c0");
    assert_eq!(decode_serde::<D>(&out).unwrap(), v);

    let b = serde_bytes::ByteBuf::from(vec![0x00, 0xff, b'b', b'i', b'n']);
    let mut out = Vec::new();
    encode_serde(&b, &mut out).unwrap();
    assert_eq!(hex(&out), "c40500ff62696e");
}

#[test]
fn hex_decimal() {
    let d = Decimal::new(123400, 4);
    assert_eq!(
        enc(&d),
        "82ab5f5f446563696d616c5f5fc3ac61735f656e636f6461626c65a731322e33343030"
    );
    assert_eq!(dec::<Decimal>(&enc(&d)).unwrap().to_string(), "12.3400");
}

#[test]
fn hex_datetimes() {
    let naive = ndt(2024, 1, 15, 10, 30, 0, 123456);
    assert_eq!(
        enc(&naive),
        format!("{DT_HEAD}ba{}", hex(b"2024-01-15T10:30:00.123456"))
    );
    assert_eq!(
        enc(&naive),
        "82ac5f5f6461746574696d655f5fc3ac61735f656e636f6461626c65ba323032342d30312d31355431303a33303a30302e313233343536"
    );
    let utc: DateTime<Utc> = naive.and_utc();
    assert_eq!(
        enc(&utc),
        format!("{DT_HEAD}d920{}", hex(b"2024-01-15T10:30:00.123456+00:00"))
    );
    let plus7 = east(7 * 3600)
        .from_local_datetime(&ndt(2024, 1, 15, 17, 30, 0, 0))
        .unwrap();
    assert_eq!(
        enc(&plus7),
        format!("{DT_HEAD}b9{}", hex(b"2024-01-15T17:30:00+07:00"))
    );
    // The same instant as a FixedOffset UTC value prints +00:00 too.
    assert_eq!(
        enc(&utc.fixed_offset()),
        format!("{DT_HEAD}d920{}", hex(b"2024-01-15T10:30:00.123456+00:00"))
    );
    assert_eq!(
        enc(&ndt(2024, 1, 15, 10, 30, 0, 0)),
        format!("{DT_HEAD}b3{}", hex(b"2024-01-15T10:30:00"))
    );
    // Odd offsets (Python: 2024-01-15T10:30:00-05:30:15, 2024-01-15T10:30:00-00:30).
    let odd = east(-(5 * 3600 + 30 * 60 + 15))
        .from_local_datetime(&ndt(2024, 1, 15, 10, 30, 0, 0))
        .unwrap();
    assert_eq!(
        enc(&odd),
        format!("{DT_HEAD}bc{}", hex(b"2024-01-15T10:30:00-05:30:15"))
    );
    let half = east(-30 * 60)
        .from_local_datetime(&ndt(2024, 1, 15, 10, 30, 0, 0))
        .unwrap();
    assert_eq!(
        enc(&half),
        format!("{DT_HEAD}b9{}", hex(b"2024-01-15T10:30:00-00:30"))
    );
}

#[test]
fn datetime_nanoseconds_truncate() {
    let v = NaiveDate::from_ymd_opt(2024, 1, 15)
        .unwrap()
        .and_hms_nano_opt(10, 30, 0, 123_456_999)
        .unwrap();
    assert_eq!(
        enc(&v),
        format!("{DT_HEAD}ba{}", hex(b"2024-01-15T10:30:00.123456"))
    );
    assert_eq!(seg(&v), "2024-01-15T10:30:00.123456Z");
    // Sub-microsecond only: no fraction at all, as Python (microsecond == 0).
    let v = NaiveDate::from_ymd_opt(2024, 1, 15)
        .unwrap()
        .and_hms_nano_opt(10, 30, 0, 999)
        .unwrap();
    assert_eq!(
        enc(&v),
        format!("{DT_HEAD}b3{}", hex(b"2024-01-15T10:30:00"))
    );
}

#[test]
fn datetime_year_range() {
    let mut out = Vec::new();
    let v = ndt(10000, 1, 1, 0, 0, 0, 0);
    assert!(v.encode(&mut out).is_err());
    assert!(ndt(0, 1, 1, 0, 0, 0, 0).encode(&mut out).is_err());
    assert!(date(10000, 1, 1).encode(&mut out).is_err());
    assert!(ndt(9999, 12, 31, 23, 59, 59, 999999)
        .encode(&mut out)
        .is_ok());
    // Years below 1000 are zero-padded to 4 digits.
    assert_eq!(
        enc(&ndt(5, 1, 1, 0, 0, 0, 0)),
        format!("{DT_HEAD}b3{}", hex(b"0005-01-01T00:00:00"))
    );
}

#[test]
fn hex_date_time() {
    assert_eq!(
        enc(&date(2024, 2, 29)),
        "82a85f5f646174655f5fc3ac61735f656e636f6461626c65a83230323430323239"
    );
    assert_eq!(
        enc(&t(8, 5, 3, 250000)),
        "82a85f5f74696d655f5fc3ac61735f656e636f6461626c65af30383a30353a30332e323530303030"
    );
    assert_eq!(
        enc(&t(8, 5, 3, 0)),
        "82a85f5f74696d655f5fc3ac61735f656e636f6461626c65a830383a30353a3033"
    );
}

#[test]
fn hex_set_tuple() {
    let set: BTreeSet<i64> = [3, 1, 2].into_iter().collect();
    assert_eq!(
        enc(&set),
        "82a75f5f7365745f5fc3ac61735f656e636f6461626c6593010203"
    );
    let hset: HashSet<i64> = [3, 1, 2].into_iter().collect();
    assert_eq!(
        enc(&hset),
        "82a75f5f7365745f5fc3ac61735f656e636f6461626c6593010203"
    );
    assert_eq!(
        enc(&(1i64, "a".to_string())),
        "82a95f5f7475706c655f5fc3ac61735f656e636f6461626c659201a161"
    );
    // HashSet bytes are deterministic: the BTreeSet order.
    let words: HashSet<String> = ["pear", "apple", "fig", "kiwi", "banana"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let first = enc(&words);
    assert_eq!(first, enc(&words.iter().cloned().collect::<BTreeSet<_>>()));
    let mixed: HashSet<i64> = [200, -1, 1, -300].into_iter().collect();
    assert_eq!(
        enc(&mixed),
        format!(
            "82a7{}c3ac{}94d1fed4ff01ccc8",
            hex(b"__set__"),
            hex(b"as_encodable")
        )
    );
    for _ in 0..5 {
        // A fresh RandomState each time: a different iteration order.
        let again: HashSet<String> = words.iter().cloned().collect();
        assert_eq!(enc(&again), first);
    }
}

// ------------------------------------------------------------------------------------------
// Read-back tolerance (layout 2.3 / 3.4)

#[test]
fn floats_read_lua_encodings() {
    // cmsgpack: float32 when exact, int when integral.
    assert_eq!(dec::<f64>("ca3f000000").unwrap(), 0.5);
    assert_eq!(dec::<f64>("ca3e800000").unwrap(), 0.25);
    assert_eq!(dec::<f64>("ca40200000").unwrap(), 2.5);
    assert_eq!(dec::<f64>("01").unwrap(), 1.0);
    assert_eq!(dec::<f64>("00").unwrap(), 0.0);
    assert_eq!(dec::<f64>("cb3fe6666666666666").unwrap(), 0.7);
    assert_eq!(dec::<f64>("cb3fe0000000000000").unwrap(), 0.5);
    assert_eq!(dec::<f64>("fb").unwrap(), -5.0);
    assert_eq!(dec::<f64>("cd0100").unwrap(), 256.0);
    assert_eq!(
        dec::<f64>("d38000000000000000").unwrap(),
        -9.223372036854776e18
    );
    assert_eq!(dec::<f32>("ca40200000").unwrap(), 2.5f32);
    assert_eq!(dec::<f32>("cb3fb999999999999a").unwrap(), 0.1f32);
    assert_eq!(dec::<f32>("03").unwrap(), 3.0f32);
    assert!(dec::<f32>("cb7fefffffffffffff").is_err()); // f64::MAX overflows f32
    assert!(dec::<f32>("cb7ff0000000000000").unwrap().is_infinite());
    assert!(dec::<f64>("cb7ff8000000000000").unwrap().is_nan());
    assert_eq!(dec::<Option<f64>>("ca3f000000").unwrap(), Some(0.5));
    assert_eq!(dec::<Option<f64>>("c0").unwrap(), None);
    // Not numbers.
    for h in ["c0", "c3", "a131", "90", "80", "c40101", ""] {
        assert!(dec::<f64>(h).is_err(), "{h}");
    }
}

#[test]
fn ints_accept_any_width_that_fits() {
    assert_eq!(dec::<i64>("d0df").unwrap(), -33);
    assert_eq!(dec::<i64>("cd0100").unwrap(), 256);
    assert_eq!(dec::<u8>("d07f").unwrap(), 127); // int8 marker, non-negative
    assert_eq!(dec::<u8>("cf00000000000000ff").unwrap(), 255);
    assert_eq!(dec::<i8>("d3ffffffffffffff80").unwrap(), -128);
    assert_eq!(dec::<i16>("cd7fff").unwrap(), i16::MAX);
    assert_eq!(dec::<u64>("cfffffffffffffffff").unwrap(), u64::MAX);
    assert_eq!(dec::<i64>("d38000000000000000").unwrap(), i64::MIN);
    assert_eq!(dec::<u32>("00").unwrap(), 0);
    // Out of range: errors, never truncation.
    assert!(dec::<u8>("cd0100").is_err());
    assert!(dec::<u8>("ff").is_err());
    assert!(dec::<u64>("ff").is_err());
    assert!(dec::<i8>("cc80").is_err());
    assert!(dec::<i64>("cfffffffffffffffff").is_err());
    assert!(dec::<i32>("ce80000000").is_err());
    assert!(dec::<u16>("d2ffff7fff").is_err());
    // Floats are not ints.
    assert!(dec::<i64>("cb4008000000000000").is_err());
    assert!(dec::<i64>("ca40200000").is_err());
    assert!(dec::<u8>("c3").is_err());
    assert!(dec::<i64>("a131").is_err());
    // Trailing bytes are refused (msgpack-python raises ExtraData).
    assert!(dec::<i64>("0101").is_err());
    assert!(dec::<String>("a131c0").is_err());
}

#[test]
fn strings_and_bools() {
    assert_eq!(dec::<String>("a668c3a96c6c6f").unwrap(), "héllo");
    assert_eq!(dec::<String>("d90161").unwrap(), "a"); // non-minimal str8
    assert_eq!(dec::<String>("da000161").unwrap(), "a");
    assert_eq!(dec::<String>("db0000000161").unwrap(), "a");
    assert!(dec::<String>("c40161").is_err()); // bin is not str
    assert!(dec::<String>("a2c328").is_err()); // invalid UTF-8
    assert!(dec::<String>("a5616263").is_err()); // truncated
    assert!(dec::<String>("db7fffffff61").is_err()); // absurd length
    assert!(dec::<bool>("c3").unwrap());
    assert!(!dec::<bool>("c2").unwrap());
    assert!(dec::<bool>("01").is_err());
    assert_eq!(dec::<Option<String>>("c0").unwrap(), None);
    assert_eq!(dec::<Option<String>>("a27031").unwrap(), Some("p1".into()));
}

// ------------------------------------------------------------------------------------------
// Tagged decoding

#[test]
fn tagged_any_key_order_and_extras() {
    // as_encodable first.
    let rev = format!(
        "82ac{}a8{}a8{}c3",
        hex(b"as_encodable"),
        hex(b"20240229"),
        hex(b"__date__")
    );
    assert_eq!(dec::<NaiveDate>(&rev).unwrap(), date(2024, 2, 29));
    // Sentinel value is not looked at (popoto only tests the key).
    let falsy = format!(
        "82a8{}c2ac{}a8{}",
        hex(b"__date__"),
        hex(b"as_encodable"),
        hex(b"20240229")
    );
    assert_eq!(dec::<NaiveDate>(&falsy).unwrap(), date(2024, 2, 29));
    // Extra entries, including a non-str key.
    let extra = format!(
        "8401c0a8{}c3a1{}90ac{}a8{}",
        hex(b"__date__"),
        hex(b"z"),
        hex(b"as_encodable"),
        hex(b"20240229")
    );
    assert_eq!(dec::<NaiveDate>(&extra).unwrap(), date(2024, 2, 29));
    // Duplicate key: the last wins, as in a Python dict.
    let dup = format!(
        "83a8{}c3ac{}a8{}ac{}a8{}",
        hex(b"__date__"),
        hex(b"as_encodable"),
        hex(b"19990101"),
        hex(b"as_encodable"),
        hex(b"20240229")
    );
    assert_eq!(dec::<NaiveDate>(&dup).unwrap(), date(2024, 2, 29));
    // map16 header.
    let m16 = format!(
        "de0002a8{}c3ac{}a8{}",
        hex(b"__date__"),
        hex(b"as_encodable"),
        hex(b"20240229")
    );
    assert_eq!(dec::<NaiveDate>(&m16).unwrap(), date(2024, 2, 29));
}

#[test]
fn tagged_wrong_or_missing_tag() {
    let date_bytes = enc(&date(2024, 2, 29));
    assert!(dec::<NaiveDateTime>(&date_bytes).is_err());
    assert!(dec::<NaiveTime>(&date_bytes).is_err());
    assert!(dec::<Decimal>(&date_bytes).is_err());
    assert!(dec::<BTreeSet<i64>>(&date_bytes).is_err());
    assert!(dec::<(i64, i64)>(&date_bytes).is_err());
    // No sentinel / no payload.
    let no_tag = format!("81ac{}a8{}", hex(b"as_encodable"), hex(b"20240229"));
    assert!(dec::<NaiveDate>(&no_tag).is_err());
    let no_payload = format!("81a8{}c3", hex(b"__date__"));
    assert!(dec::<NaiveDate>(&no_payload).is_err());
    // Payload of the wrong type.
    let int_payload = format!("82a8{}c3ac{}01", hex(b"__date__"), hex(b"as_encodable"));
    assert!(dec::<NaiveDate>(&int_payload).is_err());
    // Bare strings are not tagged values.
    assert!(dec::<NaiveDate>(&enc(&"20240229".to_string())).is_err());
    assert!(dec::<Decimal>("a131").is_err());
    // Several sentinels: popoto picks the first in its order (Decimal before date).
    let both = format!(
        "83a8{}c3ab{}c3ac{}a8{}",
        hex(b"__date__"),
        hex(b"__Decimal__"),
        hex(b"as_encodable"),
        hex(b"20240229")
    );
    assert_eq!(dec::<Decimal>(&both).unwrap(), Decimal::new(20240229, 0));
    assert!(dec::<NaiveDate>(&both).is_err());
}

#[test]
fn datetime_payload_forms() {
    let dt_bytes = |s: &str| {
        let mut out = unhex(DT_HEAD);
        super::msgpack::write_str(&mut out, s).unwrap();
        out
    };
    let naive = |s: &str| NaiveDateTime::decode(&dt_bytes(s));
    let utc = |s: &str| DateTime::<Utc>::decode(&dt_bytes(s));
    let fixed = |s: &str| DateTime::<FixedOffset>::decode(&dt_bytes(s));

    let base = ndt(2024, 1, 15, 10, 30, 0, 0);
    assert_eq!(naive("2024-01-15T10:30:00").unwrap(), base);
    assert_eq!(naive("2024-01-15T10:30:00+00:00").unwrap(), base);
    assert_eq!(naive("2024-01-15T10:30:00Z").unwrap(), base);
    assert_eq!(naive("2024-01-15T17:30:00+07:00").unwrap(), base);
    assert_eq!(naive("2024-01-15T05:00:00-05:30").unwrap(), base);
    assert_eq!(naive("2024-01-15T16:00:00+0530").unwrap(), base);
    assert_eq!(naive("2024-01-15T15:30:00+05").unwrap(), base);
    assert_eq!(naive("2024-01-15 10:30:00").unwrap(), base);
    assert_eq!(naive("2024-01-15T10:30").unwrap(), base);
    assert_eq!(naive("20240115T10:30:00").unwrap(), base);
    assert_eq!(naive("2024-01-15").unwrap(), ndt(2024, 1, 15, 0, 0, 0, 0));
    assert_eq!(
        naive("2024-01-15T10:30:00.123456").unwrap(),
        ndt(2024, 1, 15, 10, 30, 0, 123456)
    );
    assert_eq!(
        naive("2024-01-15T10:30:00.5Z").unwrap(),
        ndt(2024, 1, 15, 10, 30, 0, 500000)
    );
    // Python 3.11 truncates digits beyond 6.
    assert_eq!(
        naive("2024-01-15T10:30:00.1234567").unwrap(),
        ndt(2024, 1, 15, 10, 30, 0, 123456)
    );
    // Legacy `%Y%m%dT%H:%M:%S.%f`, read as UTC; %f right-pads.
    assert_eq!(
        naive("20240115T10:30:00.123456").unwrap(),
        ndt(2024, 1, 15, 10, 30, 0, 123456)
    );
    assert_eq!(
        naive("20240115T10:30:00.5").unwrap(),
        ndt(2024, 1, 15, 10, 30, 0, 500000)
    );
    assert_eq!(
        utc("20240115T10:30:00.000001").unwrap(),
        ndt(2024, 1, 15, 10, 30, 0, 1).and_utc()
    );
    // Offsets across midnight and year ends.
    assert_eq!(
        naive("2024-01-01T01:00:00+05:30").unwrap(),
        ndt(2023, 12, 31, 19, 30, 0, 0)
    );
    // DateTime<Utc>: naive taken as UTC.
    assert_eq!(utc("2024-01-15T10:30:00").unwrap(), base.and_utc());
    assert_eq!(utc("2024-01-15T17:30:00+07:00").unwrap(), base.and_utc());
    // DateTime<FixedOffset>: the offset is kept; naive gets +00:00.
    let f = fixed("2024-01-15T17:30:00+07:00").unwrap();
    assert_eq!(f.offset().local_minus_utc(), 7 * 3600);
    assert_eq!(f.naive_local(), ndt(2024, 1, 15, 17, 30, 0, 0));
    let f = fixed("2024-01-15T10:30:00").unwrap();
    assert_eq!(f.offset().local_minus_utc(), 0);
    assert_eq!(f.naive_utc(), base);
    let f = fixed("2024-01-15T10:30:00-05:30:15").unwrap();
    assert_eq!(f.offset().local_minus_utc(), -(5 * 3600 + 30 * 60 + 15));
    let f = fixed("20240115T10:30:00.25").unwrap();
    assert_eq!(f.offset().local_minus_utc(), 0);

    for bad in [
        "",
        "garbage",
        "2024-13-01T00:00:00",
        "2024-02-30",
        "2024-01-15T25:00:00",
        "2024-01-15T10:60:00",
        "2024-01-15T10:30:60",
        "2024-01-15T10:30:00+24:00",
        "2024-01-15T10:30:00.",
        "2024-01-15T10:30:00+",
        "2024-01-15T10:30:00Zjunk",
        "2024-01-15T10:30:00 ",
        "2024-01-15X10:30:00",
        "2024-1-15T10:30:00",
        "2024-01-15T1:30:00",
        "2024-01-15T10:30:00+05:30:15.5",
        "２０２４-01-15",
        "2024-01-15T10:30:00é",
    ] {
        assert!(naive(bad).is_err(), "{bad:?} should not parse");
        assert!(fixed(bad).is_err(), "{bad:?} should not parse");
    }
    // A zero fractional offset is fine.
    assert_eq!(naive("2024-01-15T16:00:00+05:30:00.000000").unwrap(), base);
}

#[test]
fn date_and_time_payload_forms() {
    let tagged = |tag: &str, s: &str| {
        let mut out = vec![0x82, 0xa0 | tag.len() as u8];
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(&unhex("c3ac61735f656e636f6461626c65"));
        super::msgpack::write_str(&mut out, s).unwrap();
        out
    };
    let d = |s: &str| NaiveDate::decode(&tagged("__date__", s));
    assert_eq!(d("20240229").unwrap(), date(2024, 2, 29));
    assert_eq!(d("2024-02-29").unwrap(), date(2024, 2, 29));
    for bad in [
        "20230229",
        "2024022",
        "202402290",
        "2024-02-29T00:00",
        "",
        "abcdefgh",
    ] {
        assert!(d(bad).is_err(), "{bad:?}");
    }
    let tm = |s: &str| NaiveTime::decode(&tagged("__time__", s));
    assert_eq!(tm("08:05:03.250000").unwrap(), t(8, 5, 3, 250000));
    assert_eq!(tm("08:05:03.25").unwrap(), t(8, 5, 3, 250000));
    assert_eq!(tm("08:05:03").unwrap(), t(8, 5, 3, 0));
    assert_eq!(tm("08:05").unwrap(), t(8, 5, 0, 0));
    assert_eq!(tm("08:05:03+05:00").unwrap(), t(8, 5, 3, 0));
    assert_eq!(tm("10:30:00.000005+00:00").unwrap(), t(10, 30, 0, 5));
    assert_eq!(tm("10:30:00Z").unwrap(), t(10, 30, 0, 0));
    assert_eq!(tm("10:30:00.1234567").unwrap(), t(10, 30, 0, 123456));
    for bad in ["24:00:00", "8:05:03", "08:05:03.", "08:05:03+", "x", ""] {
        assert!(tm(bad).is_err(), "{bad:?}");
    }
}

// ------------------------------------------------------------------------------------------
// Decimal text

#[test]
fn decimal_str_matches_python() {
    // (mantissa, scale, Python str(Decimal((sign, digits, -scale))))
    let cases: &[(i128, u32, &str)] = &[
        (0, 0, "0"),
        (0, 1, "0.0"),
        (0, 5, "0.00000"),
        (0, 6, "0.000000"),
        (0, 7, "0E-7"),
        (0, 28, "0E-28"),
        (1, 0, "1"),
        (1, 5, "0.00001"),
        (1, 6, "0.000001"),
        (1, 7, "1E-7"),
        (1234, 10, "1.234E-7"),
        (1234, 9, "0.000001234"),
        (123400, 4, "12.3400"),
        (10, 2, "0.10"),
        (-1234, 10, "-1.234E-7"),
        (-5, 0, "-5"),
        (
            79228162514264337593543950335,
            0,
            "79228162514264337593543950335",
        ),
        (
            79228162514264337593543950335,
            28,
            "7.9228162514264337593543950335",
        ),
        (
            -79228162514264337593543950335,
            3,
            "-79228162514264337593543950.335",
        ),
        (1, 28, "1E-28"),
        (123456789, 28, "1.23456789E-20"),
        (100, 0, "100"),
        (-1, 7, "-1E-7"),
        (12, 7, "0.0000012"),
        (123, 8, "0.00000123"),
    ];
    for &(m, s, want) in cases {
        let d = Decimal::from_i128_with_scale(m, s);
        assert_eq!(seg(&d), want, "{m}e-{s}");
        let mut out = String::new();
        decimal_str(&d, &mut out);
        assert_eq!(out, want);
        // And it parses back to the same mantissa and scale.
        let back = dec_str(want);
        assert_eq!((back.mantissa(), back.scale()), (m, s), "{want}");
        roundtrip(d);
    }
    let mut neg_zero = Decimal::ZERO;
    neg_zero.set_sign_negative(true);
    assert_eq!(seg(&neg_zero), "-0");
    assert_eq!(seg(&dec_str("-0")), "-0");
    assert_eq!(seg(&dec_str("-0.00")), "-0.00");
}

#[test]
fn decimal_parse_forms() {
    let ms = |s: &str| {
        let d = dec_str(s);
        (d.mantissa(), d.scale())
    };
    assert_eq!(ms("1E+2"), (100, 0)); // no positive exponents in rust_decimal
    assert_eq!(ms("1e-05"), (1, 5)); // str(float) / Lua tostring
    assert_eq!(ms("3.0"), (30, 1));
    assert_eq!(ms("1.25"), (125, 2));
    assert_eq!(ms("+7"), (7, 0));
    assert_eq!(ms("-.5"), (-5, 1));
    assert_eq!(ms("5."), (5, 0));
    assert_eq!(ms("000123.4500"), (1234500, 4));
    assert_eq!(ms("1.5E3"), (1500, 0));
    assert_eq!(ms("1.234E+1"), (1234, 2));
    assert_eq!(ms("0E-7"), (0, 7));
    assert_eq!(ms("0E+5"), (0, 0));
    assert_eq!(ms("1E-28"), (1, 28));
    assert_eq!(ms("1.2345678901234567e-20"), (123456789, 28));
    // More than 28 fractional digits: rounded half-even.
    assert_eq!(
        ms("1.00000000000000000000000000005"),
        (10000000000000000000000000000, 28)
    );
    assert_eq!(
        ms("1.00000000000000000000000000015"),
        (10000000000000000000000000002, 28)
    );
    assert_eq!(
        ms("1.000000000000000000000000000050000000000000000000000000000000000000000001"),
        (10000000000000000000000000001, 28)
    );
    assert_eq!(ms("0.00000000000000000000000000005"), (0, 28));
    assert_eq!(ms("1E-40"), (0, 28));
    // 96-bit limit: the fraction gives way first.
    assert_eq!(
        ms("79228162514264337593543950335"),
        (79228162514264337593543950335, 0)
    );
    assert_eq!(
        ms("7922816251426433759354395033.55"),
        (7922816251426433759354395034, 0)
    );
    for bad in [
        "",
        "-",
        ".",
        "NaN",
        "Infinity",
        "-Infinity",
        "sNaN",
        "1e",
        "1e+",
        "1.2.3",
        "1_000",
        " 1",
        "1 ",
        "abc",
        "79228162514264337593543950336",
        "1E+29",
        "1E+99999999999999999999",
    ] {
        assert!(parse_decimal(bad).is_err(), "{bad:?}");
    }
    assert_eq!(ms("1E-99999999999999999999"), (0, 28));
}

// ------------------------------------------------------------------------------------------
// Python float repr

#[test]
fn float_repr_matches_python() {
    // (bits, repr) from CPython 3.11.
    let cases: &[(u64, &str)] = &[
        (0x3ff8000000000000, "1.5"),
        (0x4059000000000000, "100.0"),
        (0x3ee4f8b588e368f1, "1e-05"),
        (0x3f1a36e2eb1c432d, "0.0001"),
        (0x4341c37937e08000, "1e+16"),
        (0x437b69b4ba630f35, "1.2345678901234568e+17"),
        (0x3fb999999999999a, "0.1"),
        (0x8000000000000000, "-0.0"),
        (0x0000000000000000, "0.0"),
        (0x0000000000000001, "5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0x7ff0000000000000, "inf"),
        (0xfff0000000000000, "-inf"),
        (0x7ff8000000000000, "nan"),
        (0xfff8000000000000, "nan"),
        (0x430c6bf526340000, "1000000000000000.0"),
        (0x4341c37937e07fff, "9999999999999998.0"),
        (0x43118b54f22aeb00, "1234567890123456.0"),
        (0x4345ee2a2eb5a5c4, "1.2345678901234568e+16"),
        (0x3f202e4b6ce5dc68, "0.00012345"),
        (0x3ee9e3abe16fc70d, "1.2345e-05"),
        (0x442043561a882930, "1.5e+20"),
        (0xbe90c6f7a0b5ed8d, "-2.5e-07"),
        (0x4340000000000000, "9007199254740992.0"),
        (0x43e0000000000000, "9.223372036854776e+18"),
        (0x3fd5555555555555, "0.3333333333333333"),
        (0x3fe5555555555555, "0.6666666666666666"),
        (0xbff0000000000000, "-1.0"),
        (0x4008000000000000, "3.0"),
        (0x4480f0cf064dd592, "1e+22"),
        (0x54b249ad2594c37d, "1e+100"),
        (0x2b2bff2ee48e0530, "1e-100"),
        (0x0010000000000000, "2.2250738585072014e-308"),
        (0x3fd3333333333333, "0.3"),
        (0x405edd2f1a9fbe77, "123.456"),
        (0x3f1a36e2eb1c432c, "9.999999999999999e-05"),
        (0x4059200000000000, "100.5"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x4011666666666666, "4.35"),
        (0x3fd3333333333334, "0.30000000000000004"),
        // Exact ties between two shortest candidates: Python picks the even last digit
        // (the exact value of the first is 887919972931765.25).
        (0x43093c77d49ac5aa, "887919972931765.2"),
        (0x431cbcba55871691, "2022201958188452.2"),
        (0x431410861509b681, "1411916899708320.2"),
        (0x4318298e795454e9, "1700272834680122.2"),
    ];
    for &(bits, want) in cases {
        let v = f64::from_bits(bits);
        assert_eq!(seg(&v), want, "{bits:#x}");
        let mut out = String::new();
        float_repr(v, &mut out);
        assert_eq!(out, want);
    }
    assert_eq!(seg(&0.1f32), "0.10000000149011612");
    assert_eq!(seg(&1.5f32), "1.5");
}

// ------------------------------------------------------------------------------------------
// Key segments (layout 1.2 / 1.3, unescaped side)

#[test]
fn segments_match_python_str() {
    assert_eq!(seg("acme"), "acme");
    assert_eq!(seg(&"umbrella:eu-1".to_string()), "umbrella:eu-1");
    assert_eq!(seg(&&"a-b"), "a-b");
    assert_eq!(seg(&7i64), "7");
    assert_eq!(seg(&-1i32), "-1");
    assert_eq!(seg(&u64::MAX), "18446744073709551615");
    assert_eq!(seg(&i64::MIN), "-9223372036854775808");
    assert_eq!(seg(&1.5f64), "1.5");
    assert_eq!(seg(&100.0f64), "100.0");
    assert_eq!(seg(&1e-5f64), "1e-05");
    assert_eq!(seg(&false), "False");
    assert_eq!(seg(&true), "True");
    assert_eq!(seg(&None::<String>), "None");
    assert_eq!(seg(&None::<NaiveDateTime>), "None");
    assert_eq!(seg(&Some(7u8)), "7");
    assert_eq!(seg(&Decimal::new(10, 2)), "0.10");
    assert_eq!(seg(&dec_str("1E+2")), "100"); // rust_decimal cannot hold Python's 1E+2
    assert_eq!(seg(&date(2024, 1, 15)), "2024-01-15");
    assert_eq!(seg(&date(5, 1, 1)), "0005-01-01"); // str(date) pads
                                                   // glibc strftime("%Y") does not pad (CPython 3.11: 785-05-06T14:41:23.906701Z).
    assert_eq!(
        seg(&ndt(785, 5, 6, 14, 41, 23, 906701)),
        "785-05-06T14:41:23.906701Z"
    );
    assert_eq!(seg(&t(10, 30, 0, 0)), "10:30:00");
    assert_eq!(seg(&t(10, 30, 0, 5)), "10:30:00.000005");
    // Datetimes: canonical UTC, 6 fractional digits, `Z`.
    let want = "2024-01-15T10:30:00.000000Z";
    assert_eq!(seg(&ndt(2024, 1, 15, 10, 30, 0, 0)), want);
    assert_eq!(seg(&ndt(2024, 1, 15, 10, 30, 0, 0).and_utc()), want);
    let plus7 = east(7 * 3600)
        .from_local_datetime(&ndt(2024, 1, 15, 17, 30, 0, 0))
        .unwrap();
    assert_eq!(seg(&plus7), want);
    assert_eq!(
        seg(&ndt(2024, 1, 15, 10, 30, 0, 5).and_utc()),
        "2024-01-15T10:30:00.000005Z"
    );
    let ist = east(5 * 3600 + 30 * 60)
        .from_local_datetime(&ndt(2024, 1, 1, 1, 0, 0, 0))
        .unwrap();
    assert_eq!(seg(&ist), "2023-12-31T19:30:00.000000Z");
}

// ------------------------------------------------------------------------------------------
// Scores (bits from popoto's convert_to_numeric)

#[test]
fn scores_match_popoto() {
    assert_eq!(date(2024, 1, 1).score(), 738886.0);
    assert_eq!(date(1, 1, 1).score(), 1.0);
    assert_eq!(date(9999, 12, 31).score(), 3652059.0);
    assert_eq!(date(2024, 2, 29).score(), 738945.0);

    let utc = |d: NaiveDateTime| d.and_utc();
    let dts: &[(NaiveDateTime, u64)] = &[
        (ndt(2024, 1, 1, 0, 0, 0, 0), 0x41d9648020000000), // 1704067200.0
        (ndt(2024, 1, 15, 10, 30, 0, 123456), 0x41d969424a07e6b4),
        (ndt(1969, 12, 31, 23, 59, 59, 999999), 0xbeb0c6f7a0b5ed8d), // -1e-06
        (ndt(1, 1, 1, 0, 0, 0, 0), 0xc22cef23ee000000),
        (ndt(9999, 12, 31, 23, 59, 59, 999999), 0x424d7ffa20c00000), // 253402300800.0
        (ndt(2300, 6, 1, 12, 0, 0, 123457), 0x42036becb200fcd7),
        (ndt(2038, 1, 19, 3, 14, 7, 1), 0x41dfffffffc00004),
        (ndt(1900, 3, 4, 5, 6, 7, 891011), 0xc1e06b0f38037cd6),
    ];
    for &(d, bits) in dts {
        assert_eq!(d.score().to_bits(), bits, "{d}");
        assert_eq!(utc(d).score().to_bits(), bits, "{d} UTC");
        assert_eq!(utc(d).fixed_offset().score().to_bits(), bits, "{d} fixed");
    }
    assert_eq!(ndt(2024, 1, 1, 0, 0, 0, 0).score(), 1704067200.0);
    // Aware +07:00 value (Python: 1705314600.123457).
    let plus7 = east(7 * 3600)
        .from_local_datetime(&ndt(2024, 1, 15, 17, 30, 0, 123457))
        .unwrap();
    assert_eq!(plus7.score().to_bits(), 0x41d969424a07e6b8);

    let times: &[(NaiveTime, u64)] = &[
        (t(10, 30, 0, 0), 0x40e2750000000000),
        (t(23, 59, 59, 999999), 0x40f517fffffef391),
        (t(8, 5, 3, 250000), 0x40dc6bd000000000),
        (t(0, 0, 0, 1), 0x3eb0c6f7a0b5ed8d),
        (t(12, 34, 56, 789012), 0x40e61e193f961805),
    ];
    for &(v, bits) in times {
        assert_eq!(v.score().to_bits(), bits, "{v}");
    }

    let decs: &[(&str, u64)] = &[
        ("1.25", 0x3ff4000000000000),
        ("0.1", 0x3fb999999999999a),
        ("12.3400", 0x4028ae147ae147ae),
        ("1E-7", 0x3e7ad7f29abcaf48),
        ("123456789012345678901234567.8", 0x455987bf7c563caa),
        ("79228162514264337593543950335", 0x45f0000000000000),
        ("-0.0000001234", 0xbe808ffde1023e12),
        ("-0", 0x8000000000000000),
    ];
    for &(s, bits) in decs {
        assert_eq!(dec_str(s).score().to_bits(), bits, "{s}");
    }

    assert_eq!(3i64.score(), 3.0);
    assert_eq!(1.5f64.score(), 1.5);
    assert_eq!(0.1f32.score(), f64::from(0.1f32));
    assert_eq!(u64::MAX.score(), 18446744073709551615.0);
    let by_ref: &u8 = &7;
    assert_eq!(Score::score(&by_ref), 7.0);
}

// ------------------------------------------------------------------------------------------
// Round trips

#[test]
fn round_trips() {
    for v in [0i64, 1, -1, 127, 128, -32, -33, i64::MAX, i64::MIN, 1 << 40] {
        roundtrip(v);
        roundtrip(Some(v));
    }
    for v in [0u64, 255, 256, u64::MAX] {
        roundtrip(v);
    }
    roundtrip(i8::MIN);
    roundtrip(i16::MIN);
    roundtrip(i32::MIN);
    roundtrip(u8::MAX);
    roundtrip(u16::MAX);
    roundtrip(u32::MAX);
    roundtrip(usize::MAX);
    roundtrip(isize::MIN);
    for v in [0.0f64, -0.0, 0.1, 1e300, f64::MIN_POSITIVE, f64::INFINITY] {
        roundtrip(v);
    }
    roundtrip(0.1f32);
    roundtrip(f32::MAX);
    roundtrip(true);
    roundtrip(false);
    roundtrip(None::<bool>);
    roundtrip("héllo wörld ✓".to_string());
    roundtrip("x".repeat(70000));
    roundtrip(Some(String::new()));
    roundtrip(Decimal::from_str("-123.4560").unwrap());
    roundtrip(Decimal::MAX);
    roundtrip(Decimal::MIN);
    roundtrip(Decimal::new(1, 28));
    roundtrip(ndt(2024, 1, 15, 10, 30, 0, 123456));
    roundtrip(ndt(1, 1, 1, 0, 0, 0, 0));
    roundtrip(ndt(9999, 12, 31, 23, 59, 59, 999999));
    roundtrip(ndt(2024, 1, 15, 10, 30, 0, 0).and_utc());
    roundtrip(
        east(-(3 * 3600 + 45 * 60 + 7))
            .from_local_datetime(&ndt(2024, 6, 1, 0, 0, 0, 1))
            .unwrap(),
    );
    roundtrip(Some(date(2024, 2, 29)));
    roundtrip(date(1, 1, 1));
    roundtrip(t(0, 0, 0, 0));
    roundtrip(t(23, 59, 59, 999999));
    roundtrip(BTreeSet::from(["b".to_string(), "a".to_string()]));
    roundtrip(BTreeSet::<i64>::new());
    roundtrip(HashSet::from([1.5f64.to_bits(), 7]));
    roundtrip((1i64,));
    roundtrip((1i64, "a".to_string()));
    roundtrip((1.5f64, vec![1u8, 2], Some("x".to_string())));
    roundtrip((1i8, 2i16, 3i32, 4i64));
    roundtrip((1u8, 2u16, 3u32, 4u64, "e".to_string()));
    roundtrip((1u8, 2u16, 3u32, 4u64, "e".to_string(), false));
}

#[test]
fn set_decoding() {
    // Python set payload with duplicates (possible from other writers).
    let h = "82a75f5f7365745f5fc3ac61735f656e636f6461626c6594030102 03".replace(' ', "");
    let s: BTreeSet<i64> = dec(&h).unwrap();
    assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![1, 2, 3]);
    let s: HashSet<i64> = dec(&h).unwrap();
    assert_eq!(s.len(), 3);
    // Payload not a list.
    let bad = format!("82a7{}c3ac{}01", hex(b"__set__"), hex(b"as_encodable"));
    assert!(dec::<BTreeSet<i64>>(&bad).is_err());
    // Wrong element type.
    let strs = format!("82a7{}c3ac{}91a161", hex(b"__set__"), hex(b"as_encodable"));
    assert!(dec::<BTreeSet<i64>>(&strs).is_err());
    // Lua-style float32 elements still read as f64 through serde.
    let tup = format!(
        "82a9{}c3ac{}92ca3f00000001",
        hex(b"__tuple__"),
        hex(b"as_encodable")
    );
    assert_eq!(dec::<(f64, f64)>(&tup).unwrap(), (0.5, 1.0));
}

#[test]
fn tuple_length_must_match() {
    let three = enc(&(1i64, 2i64, 3i64));
    assert!(dec::<(i64, i64)>(&three).is_err());
    assert!(dec::<(i64, i64, i64, i64)>(&three).is_err());
    assert_eq!(dec::<(i64, i64, i64)>(&three).unwrap(), (1, 2, 3));
    let set = enc(&BTreeSet::from([1i64, 2]));
    assert!(dec::<(i64, i64)>(&set).is_err());
}

// ------------------------------------------------------------------------------------------
// Garbage never panics

/// Calls every decoder on `bytes`; returns how many accepted it.
fn decode_all(bytes: &[u8]) -> usize {
    let results = [
        i8::decode(bytes).is_ok(),
        i16::decode(bytes).is_ok(),
        i32::decode(bytes).is_ok(),
        i64::decode(bytes).is_ok(),
        u8::decode(bytes).is_ok(),
        u16::decode(bytes).is_ok(),
        u32::decode(bytes).is_ok(),
        u64::decode(bytes).is_ok(),
        usize::decode(bytes).is_ok(),
        f32::decode(bytes).is_ok(),
        f64::decode(bytes).is_ok(),
        bool::decode(bytes).is_ok(),
        String::decode(bytes).is_ok(),
        Option::<i64>::decode(bytes).is_ok(),
        Decimal::decode(bytes).is_ok(),
        NaiveDateTime::decode(bytes).is_ok(),
        DateTime::<Utc>::decode(bytes).is_ok(),
        DateTime::<FixedOffset>::decode(bytes).is_ok(),
        NaiveDate::decode(bytes).is_ok(),
        NaiveTime::decode(bytes).is_ok(),
        BTreeSet::<String>::decode(bytes).is_ok(),
        HashSet::<i64>::decode(bytes).is_ok(),
        <(i64, String)>::decode(bytes).is_ok(),
        <(String, i64, f64)>::decode(bytes).is_ok(),
    ];
    results.iter().filter(|&&ok| ok).count()
}

fn valid_samples() -> Vec<Vec<u8>> {
    let mut samples = Vec::new();
    let mut push = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut v = Vec::new();
        f(&mut v);
        samples.push(v);
    };
    push(&|o| 1i64.encode(o).unwrap());
    push(&|o| (-70000i64).encode(o).unwrap());
    push(&|o| u64::MAX.encode(o).unwrap());
    push(&|o| 0.1f64.encode(o).unwrap());
    push(&|o| "héllo".to_string().encode(o).unwrap());
    push(&|o| "x".repeat(300).encode(o).unwrap());
    push(&|o| Decimal::new(123400, 4).encode(o).unwrap());
    push(&|o| ndt(2024, 1, 15, 10, 30, 0, 123456).encode(o).unwrap());
    push(&|o| {
        ndt(2024, 1, 15, 10, 30, 0, 123456)
            .and_utc()
            .encode(o)
            .unwrap()
    });
    push(&|o| date(2024, 2, 29).encode(o).unwrap());
    push(&|o| t(8, 5, 3, 250000).encode(o).unwrap());
    push(&|o| {
        BTreeSet::from(["a".to_string(), "b".to_string()])
            .encode(o)
            .unwrap()
    });
    push(&|o| HashSet::from([1i64, 2, 3]).encode(o).unwrap());
    push(&|o| (1i64, "a".to_string()).encode(o).unwrap());
    push(&|o| ("s".to_string(), 2i64, 2.5f64).encode(o).unwrap());
    samples
}

#[test]
fn truncated_values_are_errors() {
    for sample in valid_samples() {
        assert!(decode_all(&sample) >= 1, "{}", hex(&sample));
        for cut in 0..sample.len() {
            assert_eq!(decode_all(&sample[..cut]), 0, "prefix of {}", hex(&sample));
        }
    }
}

#[test]
fn random_garbage_never_panics() {
    // xorshift64*: deterministic.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let samples = valid_samples();
    for round in 0..20_000 {
        let r = next();
        let mut bytes: Vec<u8> = if round % 2 == 0 {
            let len = (r % 40) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            // Mutate a valid sample: flip, insert or drop bytes.
            let mut s = samples[(r % samples.len() as u64) as usize].clone();
            for _ in 0..(1 + r % 3) {
                let n = next();
                if s.is_empty() {
                    break;
                }
                let i = (n % s.len() as u64) as usize;
                match (n >> 32) % 3 {
                    0 => s[i] = (n >> 40) as u8,
                    1 => s.insert(i, (n >> 40) as u8),
                    _ => {
                        s.remove(i);
                    }
                }
            }
            s
        };
        decode_all(&bytes);
        bytes.push(0xc0);
        decode_all(&bytes);
    }
}

#[test]
fn hostile_structures() {
    // Deep nesting inside a tagged map must not overflow the stack.
    let mut deep = unhex(DT_HEAD);
    deep.extend(std::iter::repeat_n(0x91, 100_000));
    deep.push(0xc0);
    assert_eq!(decode_all(&deep), 0);
    // Extra-map nesting as a key.
    let mut deep_key = vec![0x81];
    deep_key.extend(std::iter::repeat_n(0x81, 100_000));
    assert_eq!(decode_all(&deep_key), 0);
    // Huge declared lengths with no data.
    for h in [
        "dfffffffff",
        "ddffffffff",
        "dbffffffff",
        "c6ffffffff",
        "c9ffffffff01",
        "dd0000000a",
        "82a8",
    ] {
        assert_eq!(decode_all(&unhex(h)), 0, "{h}");
    }
    // Reserved marker.
    assert_eq!(decode_all(&[0xc1]), 0);
    // Ext values are skipped inside maps but never accepted as values.
    let with_ext = format!(
        "83d40101c0a8{}c3ac{}a8{}",
        hex(b"__date__"),
        hex(b"as_encodable"),
        hex(b"20240229")
    );
    assert_eq!(dec::<NaiveDate>(&with_ext).unwrap(), date(2024, 2, 29));
}

//! Read-back tolerance (layout 2.3 / 3.4): number widths Lua writes, tagged values in any key
//! order, with extras, or with a wrong or missing tag, and every payload form of dates and
//! times.

use super::*;

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

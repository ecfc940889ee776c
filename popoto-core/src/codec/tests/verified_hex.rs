//! Layout section 2.2: the exact bytes popoto writes for every value type, verified hex.

use super::*;

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

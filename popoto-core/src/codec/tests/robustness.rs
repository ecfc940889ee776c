//! Round trips, and garbage that never panics: truncated values, random bytes, hostile
//! structures.

use super::*;

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

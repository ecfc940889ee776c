//! What Python computes from a value: `str(Decimal)` and its parsing, `repr(float)`, key
//! segments (`str()`, layout 1.2 / 1.3, unescaped side) and scores (popoto's
//! `convert_to_numeric`).

use super::*;

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

//! Codec tests. Every expected value was produced by the real popoto 1.10.1 / msgpack-python /
//! CPython 3.11 and is hard-coded here (the tests do not need Python).

#![allow(clippy::unwrap_used)]

mod decoding;
mod rendering;
mod robustness;
mod verified_hex;

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

//! Python `datetime` texts and numbers for chrono values: `isoformat()`, the canonical UTC key
//! form, `%Y%m%d`, their tolerant parsers, and popoto's sorted-set scores.
//!
//! Python's `datetime` has microsecond resolution and years 1..=9999; chrono has nanoseconds,
//! leap seconds and a wider year range. Everywhere in this module nanoseconds are **truncated**
//! to microseconds and a leap second (chrono's `:60`) is clamped to `:59.999999`.

use chrono::{Datelike, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};

use super::pyfmt::StackBuf;
use crate::error::{DecodeError, EncodeError};

/// Capacity of the stack buffers holding a rendered date/time.
pub(crate) const DT_CAP: usize = 48;

/// Microseconds of a time of day: nanoseconds truncated, a leap second clamped to 999_999.
#[inline]
pub(crate) fn micros(t: &NaiveTime) -> u32 {
    (t.nanosecond() / 1_000).min(999_999)
}

/// Errors unless Python's `datetime` can hold the year (1..=9999).
#[inline]
pub(crate) fn check_year(year: i32) -> Result<(), EncodeError> {
    if (1..=9999).contains(&year) {
        Ok(())
    } else {
        Err(EncodeError::new(format_args!(
            "year {year} is outside Python's datetime range 1..=9999"
        )))
    }
}

/// Appends a year zero-padded to 4 digits (`%04d`; a sign for chrono's negative years).
#[inline]
fn push_year<const N: usize>(buf: &mut StackBuf<N>, year: i32) {
    if year < 0 {
        buf.push(b'-');
    }
    buf.push_uint(u64::from(year.unsigned_abs()), 4);
}

/// Appends a year as glibc `strftime("%Y")` prints it: plain decimal, not padded (CPython 3.11
/// on Linux renders year 785 as `785`).
#[inline]
fn push_year_strftime<const N: usize>(buf: &mut StackBuf<N>, year: i32) {
    if year < 0 {
        buf.push(b'-');
    }
    buf.push_uint(u64::from(year.unsigned_abs()), 1);
}

/// Appends `YYYY-MM-DD` (Python `date.isoformat()` / `str(date)`).
#[inline]
pub(crate) fn push_iso_date<const N: usize>(buf: &mut StackBuf<N>, d: &NaiveDate) {
    push_year(buf, d.year());
    buf.push(b'-');
    buf.push_uint(u64::from(d.month()), 2);
    buf.push(b'-');
    buf.push_uint(u64::from(d.day()), 2);
}

/// Appends `YYYYMMDD` (popoto's date payload, `strftime("%Y%m%d")`).
///
/// The year is zero-padded to 4 digits. (CPython 3.11 on glibc writes years below 1000
/// unpadded, e.g. `7850506`, which its own `strptime("%Y%m%d")` cannot read back; the padded
/// form is what newer CPython writes and every Python reads. [`parse_date`] reads both.)
#[inline]
pub(crate) fn push_compact_date<const N: usize>(buf: &mut StackBuf<N>, d: &NaiveDate) {
    push_year(buf, d.year());
    buf.push_uint(u64::from(d.month()), 2);
    buf.push_uint(u64::from(d.day()), 2);
}

/// Appends `HH:MM:SS` and, when `micros` is non-zero or `always_fraction`, `.ffffff`.
#[inline]
fn push_hms<const N: usize>(buf: &mut StackBuf<N>, t: &NaiveTime, always_fraction: bool) {
    buf.push_uint(u64::from(t.hour()), 2);
    buf.push(b':');
    buf.push_uint(u64::from(t.minute()), 2);
    buf.push(b':');
    buf.push_uint(u64::from(t.second().min(59)), 2);
    let us = micros(t);
    if us != 0 || always_fraction {
        buf.push(b'.');
        buf.push_uint(u64::from(us), 6);
    }
}

/// Appends Python `time.isoformat()` of a naive time: `HH:MM:SS[.ffffff]`.
#[inline]
pub(crate) fn push_iso_time<const N: usize>(buf: &mut StackBuf<N>, t: &NaiveTime) {
    push_hms(buf, t, false);
}

/// Appends a UTC offset as Python prints it: `+HH:MM`, or `+HH:MM:SS` when seconds are set.
#[inline]
fn push_offset<const N: usize>(buf: &mut StackBuf<N>, offset_secs: i32) {
    buf.push(if offset_secs < 0 { b'-' } else { b'+' });
    let off = offset_secs.unsigned_abs();
    buf.push_uint(u64::from(off / 3600), 2);
    buf.push(b':');
    buf.push_uint(u64::from(off / 60 % 60), 2);
    if !off.is_multiple_of(60) {
        buf.push(b':');
        buf.push_uint(u64::from(off % 60), 2);
    }
}

/// Python `datetime.isoformat()`: `YYYY-MM-DDTHH:MM:SS[.ffffff][+HH:MM]`, the offset (east of
/// UTC, in seconds) only for an aware value.
pub(crate) fn isoformat(dt: &NaiveDateTime, offset_secs: Option<i32>) -> StackBuf<DT_CAP> {
    let mut buf = StackBuf::new();
    push_iso_date(&mut buf, &dt.date());
    buf.push(b'T');
    push_hms(&mut buf, &dt.time(), false);
    if let Some(off) = offset_secs {
        push_offset(&mut buf, off);
    }
    buf
}

/// popoto's canonical key form of a UTC wall time: `%Y-%m-%dT%H:%M:%S.%f` + `Z`.
///
/// `%Y` is glibc's: years below 1000 are not zero-padded (`785-05-06T...Z`), matching the
/// keys CPython 3.11 on Linux writes. (CPython 3.13 pads them; such years are not expected.)
pub(crate) fn canonical_key(utc: &NaiveDateTime) -> StackBuf<DT_CAP> {
    let mut buf = StackBuf::new();
    let d = utc.date();
    push_year_strftime(&mut buf, d.year());
    buf.push(b'-');
    buf.push_uint(u64::from(d.month()), 2);
    buf.push(b'-');
    buf.push_uint(u64::from(d.day()), 2);
    buf.push(b'T');
    push_hms(&mut buf, &utc.time(), true);
    buf.push(b'Z');
    buf
}

// ------------------------------------------------------------------------------------------
// Scores

/// `datetime.timestamp()` of an instant given as whole seconds and microseconds since the
/// epoch, as CPython computes it: the exact microsecond count divided by 10^6 with correct
/// rounding (`timedelta.total_seconds()` uses integer true division).
pub(crate) fn timestamp_score(secs: i64, micros: u32) -> f64 {
    let total = i128::from(secs) * 1_000_000 + i128::from(micros);
    if total.unsigned_abs() <= 1u128 << 53 {
        // Both operands exact: the IEEE division is the correctly rounded quotient.
        return total as f64 / 1e6;
    }
    // Beyond 2^53 µs (years past ~2255): let the correctly rounded decimal parser do it.
    let abs = total.unsigned_abs();
    let mut buf = StackBuf::<48>::new();
    if total < 0 {
        buf.push(b'-');
    }
    buf.push_uint(u64::try_from(abs / 1_000_000).unwrap_or(u64::MAX), 1);
    buf.push(b'.');
    buf.push_uint((abs % 1_000_000) as u64, 6);
    buf.as_str().parse().unwrap_or(f64::NAN)
}

/// popoto's score of a time of day: `h*3600 + m*60 + s + µs/1_000_000` (int part plus a float).
pub(crate) fn time_score(t: &NaiveTime) -> f64 {
    let whole = t.hour() * 3600 + t.minute() * 60 + t.second().min(59);
    f64::from(whole) + f64::from(micros(t)) / 1e6
}

// ------------------------------------------------------------------------------------------
// Parsing

fn bad(kind: &str, s: &str) -> DecodeError {
    DecodeError::new(format_args!("invalid {kind} {s:?}"))
}

/// Reads exactly `n` ASCII digits at `*i`.
fn digits(b: &[u8], i: &mut usize, n: usize) -> Option<u32> {
    let chunk = b.get(*i..*i + n)?;
    let mut v = 0u32;
    for &c in chunk {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    *i += n;
    Some(v)
}

/// Reads one or more digits of a fraction at `*i` as microseconds (right-padded, truncated
/// after 6 digits, as Python's `fromisoformat` and `%f` do).
fn fraction(b: &[u8], i: &mut usize) -> Option<u32> {
    let start = *i;
    let mut us = 0u32;
    while let Some(&c) = b.get(*i) {
        if !c.is_ascii_digit() {
            break;
        }
        if *i - start < 6 {
            us = us * 10 + u32::from(c - b'0');
        }
        *i += 1;
    }
    let n = *i - start;
    if n == 0 {
        return None;
    }
    for _ in n..6 {
        us *= 10;
    }
    Some(us)
}

fn peek(b: &[u8], i: usize) -> Option<u8> {
    b.get(i).copied()
}

/// Parses a date at the start: `YYYY-MM-DD` or `YYYYMMDD`. Returns the date and bytes used.
fn date_part(b: &[u8]) -> Option<(NaiveDate, usize)> {
    let mut i = 0;
    let y = digits(b, &mut i, 4)?;
    let extended = peek(b, i) == Some(b'-');
    if extended {
        i += 1;
    }
    let m = digits(b, &mut i, 2)?;
    if extended {
        if peek(b, i) != Some(b'-') {
            return None;
        }
        i += 1;
    }
    let d = digits(b, &mut i, 2)?;
    let date = NaiveDate::from_ymd_opt(y as i32, m, d)?;
    Some((date, i))
}

/// Parses `HH[:MM[:SS[.f+]]]` (or the basic `HH[MM[SS[.f+]]]`) at `*i`.
fn clock(b: &[u8], i: &mut usize) -> Option<NaiveTime> {
    let h = digits(b, i, 2)?;
    let (mut m, mut s, mut us) = (0, 0, 0);
    let extended = peek(b, *i) == Some(b':');
    let sep = |b: &[u8], i: &mut usize| -> bool {
        if extended {
            if peek(b, *i) == Some(b':') {
                *i += 1;
                true
            } else {
                false
            }
        } else {
            peek(b, *i).is_some_and(|c| c.is_ascii_digit())
        }
    };
    if sep(b, i) {
        m = digits(b, i, 2)?;
        if sep(b, i) {
            s = digits(b, i, 2)?;
            if matches!(peek(b, *i), Some(b'.' | b',')) {
                *i += 1;
                us = fraction(b, i)?;
            }
        }
    }
    NaiveTime::from_hms_micro_opt(h, m, s, us)
}

/// Parses an optional UTC offset at `*i` that must end the text: `Z`, `±HH`, `±HH:MM`,
/// `±HH:MM:SS[.ffffff]`, `±HHMM`, `±HHMMSS`. Returns its seconds east of UTC.
fn offset(b: &[u8], i: &mut usize) -> Option<Option<i32>> {
    let result = match peek(b, *i) {
        None => return Some(None),
        Some(b'Z' | b'z') => {
            *i += 1;
            0
        }
        Some(sign @ (b'+' | b'-')) => {
            *i += 1;
            let t = clock(b, i)?;
            // chrono offsets have whole seconds; Python allows µs, which only a non-zero
            // fraction would need.
            if t.nanosecond() != 0 {
                return None;
            }
            let secs = t.num_seconds_from_midnight() as i32;
            if sign == b'-' {
                -secs
            } else {
                secs
            }
        }
        Some(_) => return None,
    };
    (*i == b.len()).then_some(Some(result))
}

/// Whether `s` has the pre-#521 legacy shape `^\d{8}T\d{2}:\d{2}:\d{2}\.\d{1,6}$`.
fn is_legacy_datetime(b: &[u8]) -> bool {
    const SHAPE: &[u8; 18] = b"ddddddddTdd:dd:dd.";
    if !(19..=24).contains(&b.len()) {
        return false;
    }
    let head_ok = SHAPE.iter().zip(b).all(|(&p, &c)| {
        if p == b'd' {
            c.is_ascii_digit()
        } else {
            c == p
        }
    });
    head_ok && b[18..].iter().all(u8::is_ascii_digit)
}

/// Parses a stored datetime payload: Python `isoformat()` (with or without fraction and
/// offset, `Z` accepted, date alone accepted) or the legacy `%Y%m%dT%H:%M:%S.%f` form, which
/// popoto reads as UTC. Returns the wall time and the offset (`None` for a naive value).
pub(crate) fn parse_datetime(s: &str) -> Result<(NaiveDateTime, Option<i32>), DecodeError> {
    let b = s.as_bytes();
    let err = || bad("datetime", s);
    if is_legacy_datetime(b) {
        let (date, mut i) = date_part(b).ok_or_else(err)?;
        i += 1; // 'T'
        let t = clock(b, &mut i).ok_or_else(err)?;
        return Ok((date.and_time(t), Some(0)));
    }
    let (date, mut i) = date_part(b).ok_or_else(err)?;
    if i == b.len() {
        return Ok((date.and_time(NaiveTime::MIN), None));
    }
    if !matches!(peek(b, i), Some(b'T' | b't' | b' ')) {
        return Err(err());
    }
    i += 1;
    let t = clock(b, &mut i).ok_or_else(err)?;
    let off = offset(b, &mut i).ok_or_else(err)?;
    Ok((date.and_time(t), off))
}

/// Parses a stored date payload: `%Y%m%d` (what popoto writes; a year below 1000 may be
/// unpadded, `7850506`) or `YYYY-MM-DD`.
pub(crate) fn parse_date(s: &str) -> Result<NaiveDate, DecodeError> {
    let b = s.as_bytes();
    if let Some((d, n)) = date_part(b) {
        if n == b.len() {
            return Ok(d);
        }
    }
    // Unpadded glibc `%Y`: 1 to 3 year digits, then MMDD.
    if (5..=7).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
        let split = b.len() - 4;
        let (mut i, mut j) = (0, split);
        let y = digits(b, &mut i, split);
        let m = digits(b, &mut j, 2);
        let d = digits(b, &mut j, 2);
        if let (Some(y), Some(m), Some(d)) = (y, m, d) {
            if let Some(date) = NaiveDate::from_ymd_opt(y as i32, m, d) {
                return Ok(date);
            }
        }
    }
    Err(bad("date", s))
}

/// Parses a stored time payload: Python `time.isoformat()` or the legacy `%H:%M:%S.%f`; a
/// trailing UTC offset is accepted and ignored.
pub(crate) fn parse_time(s: &str) -> Result<NaiveTime, DecodeError> {
    let b = s.as_bytes();
    let mut i = 0;
    let t = clock(b, &mut i).ok_or_else(|| bad("time", s))?;
    offset(b, &mut i).ok_or_else(|| bad("time", s))?;
    Ok(t)
}

/// The UTC wall time of a wall time at `offset_secs` east of UTC.
pub(crate) fn to_utc(naive: NaiveDateTime, offset_secs: i32) -> Result<NaiveDateTime, DecodeError> {
    let off = FixedOffset::east_opt(offset_secs)
        .ok_or_else(|| DecodeError::new(format_args!("invalid UTC offset {offset_secs}s")))?;
    naive
        .checked_sub_offset(off)
        .ok_or_else(|| DecodeError::new("datetime out of range after conversion to UTC"))
}

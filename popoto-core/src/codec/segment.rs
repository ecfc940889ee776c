//! [`KeySegment`] implementations: Python `str()` of a key value, before escaping (popoto's
//! `canonical_key_str`).

use std::fmt::Write as _;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use rust_decimal::Decimal;

use super::datetime::{self as dt, DT_CAP};
use super::pyfmt::{decimal_str_buf, float_repr, StackBuf};
use super::KeySegment;

impl KeySegment for str {
    #[inline]
    fn render(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl KeySegment for String {
    #[inline]
    fn render(&self, out: &mut String) {
        out.push_str(self);
    }
}

impl<T: KeySegment + ?Sized> KeySegment for &T {
    #[inline]
    fn render(&self, out: &mut String) {
        (**self).render(out);
    }
}

macro_rules! int_segment {
    ($($t:ty),*) => {$(
        impl KeySegment for $t {
            /// Decimal digits, `-` for negatives.
            #[inline]
            fn render(&self, out: &mut String) {
                let _ = write!(out, "{}", self);
            }
        }
    )*};
}

int_segment!(i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);

impl KeySegment for f64 {
    /// Python `repr(float)`: `1.5`, `100.0`, `1e-05`, `1e+16`, `inf`, `nan`.
    #[inline]
    fn render(&self, out: &mut String) {
        float_repr(*self, out);
    }
}

impl KeySegment for f32 {
    /// Python `repr` of the value widened to a double (`0.1f32` renders `0.10000000149011612`).
    #[inline]
    fn render(&self, out: &mut String) {
        float_repr(f64::from(*self), out);
    }
}

impl KeySegment for bool {
    /// `True` / `False`.
    #[inline]
    fn render(&self, out: &mut String) {
        out.push_str(if *self { "True" } else { "False" });
    }
}

impl<T: KeySegment> KeySegment for Option<T> {
    /// `None` renders the literal text `None`.
    #[inline]
    fn render(&self, out: &mut String) {
        match self {
            None => out.push_str("None"),
            Some(v) => v.render(out),
        }
    }
}

impl KeySegment for Decimal {
    /// Python `str(Decimal)`: `0.10`, `12.3400`, `1E-7`.
    #[inline]
    fn render(&self, out: &mut String) {
        out.push_str(decimal_str_buf(self).as_str());
    }
}

impl KeySegment for NaiveDate {
    /// `YYYY-MM-DD`.
    #[inline]
    fn render(&self, out: &mut String) {
        let mut buf = StackBuf::<DT_CAP>::new();
        dt::push_iso_date(&mut buf, self);
        out.push_str(buf.as_str());
    }
}

impl KeySegment for NaiveTime {
    /// `str(time)`: `HH:MM:SS[.ffffff]` (nanoseconds truncated).
    #[inline]
    fn render(&self, out: &mut String) {
        let mut buf = StackBuf::<DT_CAP>::new();
        dt::push_iso_time(&mut buf, self);
        out.push_str(buf.as_str());
    }
}

impl KeySegment for NaiveDateTime {
    /// Canonical UTC form, the naive value taken as UTC: `2024-01-15T10:30:00.000000Z`
    /// (always 6 fractional digits, nanoseconds truncated).
    #[inline]
    fn render(&self, out: &mut String) {
        out.push_str(dt::canonical_key(self).as_str());
    }
}

impl<Tz: TimeZone> KeySegment for DateTime<Tz> {
    /// Canonical UTC form of the instant: `2024-01-15T10:30:00.000000Z` (always 6 fractional
    /// digits, nanoseconds truncated).
    #[inline]
    fn render(&self, out: &mut String) {
        out.push_str(dt::canonical_key(&self.naive_utc()).as_str());
    }
}

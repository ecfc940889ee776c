//! [`Score`] implementations, as popoto's `SortedFieldMixin.convert_to_numeric`.

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use rust_decimal::Decimal;

use super::datetime::{micros, time_score, timestamp_score};
use super::pyfmt::decimal_to_f64;
use super::Score;

impl<T: Score + ?Sized> Score for &T {
    #[inline]
    fn score(&self) -> f64 {
        (**self).score()
    }
}

macro_rules! int_score {
    ($($t:ty),*) => {$(
        impl Score for $t {
            /// The value, rounded to the nearest double (as Redis parses `str(int)`).
            #[inline]
            fn score(&self) -> f64 {
                *self as f64
            }
        }
    )*};
}

int_score!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize);

impl Score for f64 {
    #[inline]
    fn score(&self) -> f64 {
        *self
    }
}

impl Score for f32 {
    #[inline]
    fn score(&self) -> f64 {
        f64::from(*self)
    }
}

impl Score for Decimal {
    /// `float(value)`: the correctly rounded double nearest to the exact decimal value.
    #[inline]
    fn score(&self) -> f64 {
        decimal_to_f64(self)
    }
}

impl Score for NaiveDate {
    /// `date.toordinal()`: proleptic Gregorian day number, 0001-01-01 = 1.
    #[inline]
    fn score(&self) -> f64 {
        f64::from(self.num_days_from_ce())
    }
}

impl Score for NaiveTime {
    /// `h*3600 + m*60 + s + µs/1_000_000` (nanoseconds truncated to microseconds).
    #[inline]
    fn score(&self) -> f64 {
        time_score(self)
    }
}

impl Score for NaiveDateTime {
    /// POSIX timestamp with the naive value taken as UTC, exactly as CPython's
    /// `datetime.timestamp()` (microseconds / 10^6, correctly rounded; nanoseconds truncated).
    #[inline]
    fn score(&self) -> f64 {
        let utc = self.and_utc();
        timestamp_score(utc.timestamp(), micros(&self.time()))
    }
}

impl<Tz: TimeZone> Score for DateTime<Tz> {
    /// POSIX timestamp, exactly as CPython's `datetime.timestamp()` (microseconds / 10^6,
    /// correctly rounded; nanoseconds truncated).
    #[inline]
    fn score(&self) -> f64 {
        timestamp_score(self.timestamp(), micros(&self.naive_utc().time()))
    }
}

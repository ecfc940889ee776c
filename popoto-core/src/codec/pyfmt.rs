//! Python's text renderings: `repr(float)` and `str(Decimal)`, plus a Decimal parser that
//! accepts everything `str(Decimal)`, `str(float)` and Lua's `tostring` produce.

use std::fmt::{self, Write as _};

use rust_decimal::Decimal;

use crate::error::DecodeError;

/// A fixed-capacity ASCII buffer on the stack (no allocation while formatting).
///
/// Writes past the capacity are dropped and remembered; every user sizes it so that cannot
/// happen, and [`StackBuf::as_str`] then returns what fits.
pub(crate) struct StackBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> StackBuf<N> {
    /// An empty buffer.
    #[inline]
    pub(crate) const fn new() -> Self {
        StackBuf {
            buf: [0; N],
            len: 0,
        }
    }

    /// Appends one ASCII byte.
    #[inline]
    pub(crate) fn push(&mut self, b: u8) {
        if let Some(slot) = self.buf.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    /// Appends ASCII bytes.
    #[inline]
    pub(crate) fn extend(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.push(b);
        }
    }

    /// Appends `v` in decimal, zero-padded to at least `width` digits.
    #[inline]
    pub(crate) fn push_uint(&mut self, v: u64, width: usize) {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        let mut v = v;
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for _ in (tmp.len() - i)..width {
            self.push(b'0');
        }
        self.extend(&tmp[i..]);
    }

    /// The bytes written.
    #[inline]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The text written (always ASCII).
    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

impl<const N: usize> fmt::Write for StackBuf<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.len + s.len() > N {
            return Err(fmt::Error);
        }
        self.extend(s.as_bytes());
        Ok(())
    }
}

/// Longest `repr(float)`: sign, 17 digits, point, `e-308`, with room to spare.
const FLOAT_REPR_CAP: usize = 32;

/// Python's `repr(float)` into a stack buffer.
fn float_repr_buf(v: f64) -> StackBuf<FLOAT_REPR_CAP> {
    let mut out = StackBuf::new();
    if v.is_nan() {
        out.extend(b"nan");
        return out;
    }
    if v.is_infinite() {
        out.extend(if v < 0.0 { &b"-inf"[..] } else { &b"inf"[..] });
        return out;
    }
    // Rust's `{:e}` prints the shortest round-trip digits (as Python's repr does): `d[.ddd]eN`.
    let mut sci = StackBuf::<FLOAT_REPR_CAP>::new();
    let _ = write!(sci, "{:e}", v.abs());
    let text = sci.as_bytes();
    let epos = text.iter().position(|&b| b == b'e').unwrap_or(text.len());
    let mut d: u64 = 0;
    let mut nd: i32 = 0;
    for &b in &text[..epos] {
        if b.is_ascii_digit() {
            d = d * 10 + u64::from(b - b'0');
            nd += 1;
        }
    }
    let exp: i32 = text
        .get(epos + 1..)
        .and_then(|e| std::str::from_utf8(e).ok())
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    // value ~= d * 10^e10
    let (d, e10) = python_tie_break(v.abs(), d, exp - (nd - 1));
    let mut digit_buf = StackBuf::<24>::new();
    digit_buf.push_uint(d, 1);
    let digits = digit_buf.as_bytes();
    let exp = e10 + digits.len() as i32 - 1;
    if v.is_sign_negative() {
        out.push(b'-');
    }
    // Python (`float_repr_style = 'short'`, mode 'r'): decpt = exp + 1, exponent notation when
    // decpt <= -4 or decpt > 16.
    let decpt = exp + 1;
    let nd = digits.len() as i32;
    if !(-4 < decpt && decpt <= 16) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        out.push_uint(u64::from(exp.unsigned_abs()), 2);
    } else if decpt <= 0 {
        out.extend(b"0.");
        for _ in 0..-decpt {
            out.push(b'0');
        }
        out.extend(digits);
    } else if decpt < nd {
        let (int, frac) = digits.split_at(decpt as usize);
        out.extend(int);
        out.push(b'.');
        out.extend(frac);
    } else {
        out.extend(digits);
        for _ in 0..(decpt - nd) {
            out.push(b'0');
        }
        out.extend(b".0");
    }
    out
}

/// Among the shortest digit strings that round-trip, Python (David Gay's `dtoa`, mode 0) takes
/// the one closest to the exact value and breaks an exact tie to an even last digit; Rust's
/// formatter breaks such ties upwards (`887919972931765.25` prints `...765.3` in Rust, `...765.2`
/// in Python). Given Rust's choice `d * 10^e10`, returns Python's.
fn python_tie_break(v: f64, d: u64, e10: i32) -> (u64, i32) {
    if d.is_multiple_of(2) || v == 0.0 {
        return (d, e10);
    }
    for (mid, other) in [
        (
            d.checked_mul(10).and_then(|x| x.checked_sub(5)),
            d.checked_sub(1),
        ),
        (
            d.checked_mul(10).and_then(|x| x.checked_add(5)),
            d.checked_add(1),
        ),
    ] {
        let (Some(mid), Some(other)) = (mid, other) else {
            continue;
        };
        if exactly_equals(v, mid, e10 - 1) {
            // Tie: the even neighbour is Python's choice if it still reads back as `v`.
            let (mut o, mut e) = (other, e10);
            while o != 0 && o.is_multiple_of(10) {
                o /= 10;
                e += 1;
            }
            let mut check = StackBuf::<40>::new();
            check.push_uint(o, 1);
            check.push(b'e');
            if e < 0 {
                check.push(b'-');
            }
            check.push_uint(u64::from(e.unsigned_abs()), 1);
            if check.as_str().parse::<f64>().ok() == Some(v) {
                return (o, e);
            }
        }
    }
    (d, e10)
}

/// Whether the positive finite double `v` is exactly `m * 10^k` (exact integer arithmetic).
fn exactly_equals(v: f64, m: u64, k: i32) -> bool {
    if m == 0 {
        return false;
    }
    let bits = v.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    let (f, q) = if exp_bits == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp_bits - 1075)
    };
    if f == 0 {
        return false;
    }
    // m * 2^k * 5^k == f * 2^q, with the powers of two pulled out of m and f.
    let (a, b) = (m.trailing_zeros() as i32, f.trailing_zeros() as i32);
    let (m2, f2) = (u128::from(m >> a), u128::from(f >> b));
    if a + k != b + q {
        return false;
    }
    if k >= 0 {
        // m2 * 5^k == f2 (< 2^53): only small k can work.
        k <= 22 && m2 * 5u128.pow(k as u32) == f2
    } else {
        // m2 == f2 * 5^-k, with m2 < 2^64.
        -k <= 27 && f2 * 5u128.pow(k.unsigned_abs()) == m2
    }
}

/// Appends Python's `repr(v)` / `str(v)` of a float: shortest round-trip digits, always with a
/// `.` or an exponent (`1.5`, `100.0`, `1e-05`, `1e+16`, `inf`, `-inf`, `nan`).
pub fn float_repr(v: f64, out: &mut String) {
    out.push_str(float_repr_buf(v).as_str());
}

/// Longest `str(Decimal)` of a `rust_decimal`: sign, 29 digits, `0.00000`, exponent.
const DECIMAL_STR_CAP: usize = 48;

/// Python's `str(Decimal)` into a stack buffer.
pub(crate) fn decimal_str_buf(d: &Decimal) -> StackBuf<DECIMAL_STR_CAP> {
    let mut out = StackBuf::new();
    let mut digit_buf = StackBuf::<40>::new();
    digit_buf.push_uint_u128(d.mantissa().unsigned_abs());
    let digits = digit_buf.as_bytes();
    let nd = digits.len() as i64;
    // Python: value = int(digits) * 10**exp; here exp = -scale <= 0.
    let exp = -i64::from(d.scale());
    let leftdigits = exp + nd;
    let dotplace = if exp <= 0 && leftdigits > -6 {
        leftdigits
    } else {
        1
    };
    if d.is_sign_negative() {
        out.push(b'-');
    }
    if dotplace <= 0 {
        out.extend(b"0.");
        for _ in 0..-dotplace {
            out.push(b'0');
        }
        out.extend(digits);
    } else if dotplace >= nd {
        out.extend(digits);
        for _ in 0..(dotplace - nd) {
            out.push(b'0');
        }
    } else {
        let (int, frac) = digits.split_at(dotplace as usize);
        out.extend(int);
        out.push(b'.');
        out.extend(frac);
    }
    let e = leftdigits - dotplace;
    if e != 0 {
        out.push(b'E');
        out.push(if e < 0 { b'-' } else { b'+' });
        out.push_uint(e.unsigned_abs(), 1);
    }
    out
}

impl<const N: usize> StackBuf<N> {
    /// Appends a u128 in decimal.
    fn push_uint_u128(&mut self, v: u128) {
        let mut tmp = [0u8; 40];
        let mut i = tmp.len();
        let mut v = v;
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.extend(&tmp[i..]);
    }
}

/// Appends Python's `str(Decimal)`: trailing zeros kept (`12.3400`), exponent form when Python
/// uses it (`1E-7`, `0E-7`), `-0` for a negative zero.
pub fn decimal_str(d: &Decimal, out: &mut String) {
    out.push_str(decimal_str_buf(d).as_str());
}

/// `float(Decimal)`: the correctly rounded double nearest to the decimal's exact value.
pub(crate) fn decimal_to_f64(d: &Decimal) -> f64 {
    let buf = decimal_str_buf(d);
    buf.as_str().parse::<f64>().unwrap_or(f64::NAN)
}

/// Parses a decimal number as Python's `Decimal(str)` does for finite values, into a
/// `rust_decimal::Decimal` (96-bit mantissa, scale 0..=28).
///
/// Accepts an optional sign, digits with an optional `.`, and an optional exponent (`e`/`E`,
/// optional sign), surrounding whitespace and `_` between digits excluded. A positive exponent
/// is expanded (`1E+2` becomes `100`: `rust_decimal` has no positive exponents, so re-encoding
/// writes `100`). More than 28 fractional digits are rounded half-even (Python's default
/// context rounding); a value whose integer part does not fit 96 bits is an error, as are
/// `NaN`, `Infinity` and anything else.
pub fn parse_decimal(s: &str) -> Result<Decimal, DecodeError> {
    let err = || DecodeError::new(format_args!("invalid Decimal {s:?}"));
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    // Significant digits (leading zeros dropped), and the power of ten of the last digit.
    let mut digits = StackBuf::<64>::new();
    let mut sticky = false; // a non-zero significant digit beyond the 64 kept
    let mut frac_len: i64 = 0;
    let mut seen_digit = false;
    let mut seen_dot = false;
    while let Some(&c) = b.get(i) {
        match c {
            b'0'..=b'9' => {
                seen_digit = true;
                if c == b'0' && digits.as_bytes().is_empty() {
                    // Leading zero: only moves the point.
                    if seen_dot {
                        frac_len += 1;
                    }
                } else if digits.as_bytes().len() < 64 {
                    digits.push(c);
                    if seen_dot {
                        frac_len += 1;
                    }
                } else if seen_dot {
                    // Beyond 64 significant digits in the fraction: far past scale 28, only
                    // its being non-zero can matter (for a rounding tie).
                    sticky |= c != b'0';
                } else {
                    return Err(DecodeError::new(format_args!(
                        "Decimal {s:?} does not fit in 96 bits"
                    )));
                }
            }
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if !seen_digit {
        return Err(err());
    }
    let mut exp: i64 = 0;
    if let Some(&c) = b.get(i) {
        if c != b'e' && c != b'E' {
            return Err(err());
        }
        i += 1;
        let exp_text = b.get(i..).ok_or_else(err)?;
        let (eneg, edigits) = match exp_text.first() {
            Some(b'-') => (true, &exp_text[1..]),
            Some(b'+') => (false, &exp_text[1..]),
            _ => (false, exp_text),
        };
        if edigits.is_empty() || !edigits.iter().all(u8::is_ascii_digit) {
            return Err(err());
        }
        for &d in edigits {
            exp = exp.saturating_mul(10).saturating_add(i64::from(d - b'0'));
        }
        if eneg {
            exp = -exp;
        }
    }
    // value = digits * 10^(exp - frac_len)
    let e = exp.saturating_sub(frac_len);
    let sig = digits.as_bytes();
    let mut d = decimal_from_digits(sig, e, sticky, s)?;
    if negative {
        d.set_sign_negative(true);
    }
    Ok(d)
}

/// `int(sig) * 10^e` as a Decimal, rounding half-even when more than 28 fractional digits or
/// more than 96 bits would be needed.
fn decimal_from_digits(
    sig: &[u8],
    e: i64,
    sticky: bool,
    original: &str,
) -> Result<Decimal, DecodeError> {
    let overflow =
        || DecodeError::new(format_args!("Decimal {original:?} does not fit in 96 bits"));
    if sig.is_empty() {
        // Zero: keep the scale Python would show, clamped to what rust_decimal holds.
        let scale = (-e).clamp(0, i64::from(Decimal::MAX_SCALE)) as u32;
        return Decimal::try_from_i128_with_scale(0, scale).map_err(|_| overflow());
    }
    if e >= 0 {
        // Integer: sig followed by e zeros; at most 29 digits can fit.
        if (sig.len() as i64).saturating_add(e) > 29 {
            return Err(overflow());
        }
        let mut m = parse_u128(sig).ok_or_else(overflow)?;
        for _ in 0..e {
            m = m.checked_mul(10).ok_or_else(overflow)?;
        }
        let m = i128::try_from(m).map_err(|_| overflow())?;
        return Decimal::try_from_i128_with_scale(m, 0).map_err(|_| overflow());
    }
    let scale = -e; // > 0
    let max_scale = i64::from(Decimal::MAX_SCALE);
    // Drop `drop` trailing digits (rounding), increasing until the mantissa fits.
    let mut drop = (scale - max_scale).max(0);
    loop {
        if drop > sig.len() as i64 {
            // Everything rounded away: zero (with the largest scale that is left).
            let s = (scale - drop).clamp(0, max_scale) as u32;
            return Decimal::try_from_i128_with_scale(0, s).map_err(|_| overflow());
        }
        let keep = sig.len() - drop as usize;
        let (kept, dropped) = sig.split_at(keep);
        if kept.len() <= 29 {
            let mut m = if kept.is_empty() {
                0
            } else {
                parse_u128(kept).ok_or_else(overflow)?
            };
            if round_up_half_even(kept.last().copied(), dropped, sticky) {
                m += 1;
            }
            let new_scale = (scale - drop) as u32;
            if let Ok(m) = i128::try_from(m) {
                if let Ok(d) = Decimal::try_from_i128_with_scale(m, new_scale) {
                    return Ok(d);
                }
            }
        }
        if scale - drop <= 0 {
            return Err(overflow());
        }
        drop += 1;
    }
}

/// Whether dropping `dropped` digits (and a non-zero tail if `sticky`) after the last kept digit
/// rounds up (half-even).
fn round_up_half_even(last_kept: Option<u8>, dropped: &[u8], sticky: bool) -> bool {
    match dropped.first() {
        None => false,
        Some(&d) if d > b'5' => true,
        Some(&d) if d < b'5' => false,
        Some(_) => {
            if sticky || dropped[1..].iter().any(|&c| c != b'0') {
                true
            } else {
                // Exact tie: round to even.
                last_kept.is_some_and(|c| (c - b'0') % 2 == 1)
            }
        }
    }
}

fn parse_u128(digits: &[u8]) -> Option<u128> {
    let mut m: u128 = 0;
    for &c in digits {
        m = m
            .checked_mul(10)?
            .checked_add(u128::from(c.wrapping_sub(b'0')))?;
    }
    Some(m)
}

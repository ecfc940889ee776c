//! Support for the interop suite: running the Python oracle scripts of `tests/interop/`, the
//! typed JSON encoding they speak (README there), a canonical form for comparing values, and
//! a collector of mismatches that reports all of them at once.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use popoto::codec::PyDecimal;
use popoto::testing::TestRedis;
use serde_json::{json, Map, Value as Json};

pub mod confidence;
mod venv;
pub use venv::python;

/// Starts a private server.
pub fn start_server() -> TestRedis {
    TestRedis::start().unwrap_or_else(|e| panic!("{e}"))
}

/// `<repo>/tests/interop`.
pub fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

/// Runs `tests/interop/<script>` with the oracle [`python`] against `url` (if any), feeding `stdin`,
/// and returns its stdout. Any failure panics with the script's stderr.
pub fn run_script(script: &str, args: &[&str], url: Option<&str>, stdin: &str) -> String {
    let py = python();
    let dir = interop_dir();
    let mut cmd = Command::new(&py);
    cmd.arg(dir.join(script))
        .args(args)
        .current_dir(&dir)
        .env_remove("REDIS_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = url {
        cmd.env("REDIS_URL", url).env("POPOTO_ALLOW_DB0_FLUSH", "1");
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {} {script}: {e}", py.display()));
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .unwrap_or_else(|e| panic!("writing the stdin of {script}: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "{script} {args:?} failed ({}) against {url:?}\n--- stderr ---\n{}\n--- stdout ---\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
}

/// `fixture.py --json`, parsed with [`parse_json`].
pub fn fixture_json() -> Json {
    parse_json(&run_script("fixture.py", &["--json"], None, ""))
}

/// `write.py` into the database at `url`: the instance keys per model, in creation order.
pub fn python_write(url: &str) -> Json {
    parse_json(&run_script("write.py", &[], Some(url), ""))
}

/// `dump.py` of the database at `url`.
pub fn python_dump(url: &str) -> Json {
    parse_json(&run_script("dump.py", &[], Some(url), ""))
}

/// `query.py` with `specs` against `url`: one result per spec.
pub fn python_query(url: &str, specs: &[Json]) -> Vec<Json> {
    let input = serde_json::to_string(specs).unwrap_or_else(|e| panic!("specs to JSON: {e}"));
    match parse_json(&run_script("query.py", &[], Some(url), &input)) {
        Json::Array(results) if results.len() == specs.len() => results,
        other => panic!("query.py returned {other} for {} specs", specs.len()),
    }
}

// ------------------------------------------------------------------------------------------
// JSON with exact floats

/// Parses JSON, turning every float literal into `{"$f": "<literal>"}` first.
///
/// `serde_json` without its `float_roundtrip` feature (not enabled here) may round a float
/// literal to a neighbouring double; Rust's `str::parse::<f64>` is exact, so floats are kept as
/// text until [`float_of`] parses them. Integers stay JSON integers.
pub fn parse_json(text: &str) -> Json {
    let mut out = String::with_capacity(text.len() + 64);
    let mut chars = text.char_indices().peekable();
    let mut in_string = false;
    let mut escaped = false;
    while let Some((i, c)) = chars.next() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '-' | '0'..='9' => {
                let mut end = i + c.len_utf8();
                while let Some(&(j, d)) = chars.peek() {
                    if d.is_ascii_digit() || matches!(d, '.' | 'e' | 'E' | '+' | '-') {
                        end = j + d.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                let token = &text[i..end];
                if token.contains(['.', 'e', 'E']) {
                    out.push_str(&format!("{{\"$f\":\"{token}\"}}"));
                } else {
                    out.push_str(token);
                }
            }
            _ => out.push(c),
        }
    }
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("invalid JSON ({e}): {text}"))
}

/// The only key of a one-key object, with its value.
fn single(v: &Json) -> Option<(&str, &Json)> {
    match v {
        Json::Object(m) if m.len() == 1 => m.iter().next().map(|(k, v)| (k.as_str(), v)),
        _ => None,
    }
}

/// The f64 of a parsed float (`{"$f": literal}` or typed `{"$float": "inf"}`).
pub fn float_of(v: &Json) -> f64 {
    match single(v) {
        Some(("$f" | "$float", Json::String(s))) => s
            .parse()
            .unwrap_or_else(|e| panic!("bad float literal {s:?}: {e}")),
        _ => panic!("expected a float, found {v}"),
    }
}

/// Canonical JSON of a float: its Rust `Debug` text, which is exact and keeps the sign of zero.
pub fn jf(v: f64) -> Json {
    json!({ "$f": format!("{v:?}") })
}

/// Python's `str(Decimal)` of `s`, exactly (`PyDecimal` keeps scale, exponent and sign).
pub fn normalize_decimal(s: &str) -> String {
    s.parse::<PyDecimal>()
        .unwrap_or_else(|e| panic!("bad Decimal {s:?}: {e}"))
        .to_string()
}

/// The canonical form of typed JSON (parsed with [`parse_json`]), used for every comparison:
/// floats become `{"$f": Debug}` (bit-exact), typed non-finite floats too, decimals are
/// normalized with [`normalize_decimal`]; everything else is unchanged.
pub fn canon(v: &Json) -> Json {
    match v {
        Json::Array(a) => Json::Array(a.iter().map(canon).collect()),
        Json::Object(m) => match single(v) {
            Some(("$f" | "$float", _)) => jf(float_of(v)),
            Some(("$decimal", Json::String(s))) => json!({ "$decimal": normalize_decimal(s) }),
            _ => Json::Object(m.iter().map(|(k, v)| (k.clone(), canon(v))).collect()),
        },
        Json::Number(n) if n.is_f64() => jf(n
            .as_f64()
            .unwrap_or_else(|| panic!("JSON number {n} is not an f64"))),
        other => other.clone(),
    }
}

/// A float in query-spec form: `{"$float": text}` (Rust's shortest round-trip text, which
/// Python's `float()` reads back exactly).
pub fn spec_float(v: f64) -> Json {
    json!({ "$float": format!("{v:?}") })
}

/// A plain JSON value (ListField/DictField content) from its parsed form: `{"$f": ..}` back to
/// a JSON float. Typed tags cannot occur there.
pub fn plain(v: &Json) -> Json {
    match v {
        Json::Array(a) => Json::Array(a.iter().map(plain).collect()),
        Json::Object(m) => match single(v) {
            Some(("$f", _)) => {
                let f = float_of(v);
                Json::Number(
                    serde_json::Number::from_f64(f)
                        .unwrap_or_else(|| panic!("non-finite float {f} in a plain value")),
                )
            }
            Some((tag, _)) if tag.starts_with('$') => {
                panic!("typed value {v} in a plain list/dict")
            }
            _ => Json::Object(m.iter().map(|(k, v)| (k.clone(), plain(v))).collect()),
        },
        other => other.clone(),
    }
}

// ------------------------------------------------------------------------------------------
// Typed field access of a fixture row

/// Field `name` of a row.
pub fn field<'a>(row: &'a Map<String, Json>, name: &str) -> &'a Json {
    row.get(name)
        .unwrap_or_else(|| panic!("row has no field {name}: {row:?}"))
}

/// A string field.
pub fn get_str(row: &Map<String, Json>, name: &str) -> String {
    match field(row, name) {
        Json::String(s) => s.clone(),
        other => panic!("{name}: expected a string, found {other}"),
    }
}

/// An int field (i64).
pub fn get_i64(row: &Map<String, Json>, name: &str) -> i64 {
    field(row, name)
        .as_i64()
        .unwrap_or_else(|| panic!("{name}: expected an i64, found {}", field(row, name)))
}

/// A float field.
pub fn get_f64(row: &Map<String, Json>, name: &str) -> f64 {
    float_of(field(row, name))
}

/// The payload of typed value `tag` in field `name`.
pub fn tagged<'a>(row: &'a Map<String, Json>, name: &str, tag: &str) -> &'a Json {
    match single(field(row, name)) {
        Some((t, payload)) if t == tag => payload,
        _ => panic!("{name}: expected {tag}, found {}", field(row, name)),
    }
}

/// The text payload of typed value `tag` in field `name`.
pub fn tagged_str<'a>(row: &'a Map<String, Json>, name: &str, tag: &str) -> &'a str {
    tagged(row, name, tag)
        .as_str()
        .unwrap_or_else(|| panic!("{name}: {tag} payload is not a string"))
}

/// Parses a Python aware `datetime.isoformat()`.
pub fn parse_aware(s: &str) -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("aware datetime {s:?}: {e}"))
}

/// Parses a Python naive `datetime.isoformat()`.
pub fn parse_naive(s: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("naive datetime {s:?}: {e}"))
}

/// Parses an ISO date.
pub fn parse_date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap_or_else(|e| panic!("date {s:?}: {e}"))
}

/// Parses a Python `time.isoformat()`: the wall time and its offset, if aware.
pub fn parse_time(s: &str) -> (NaiveTime, Option<FixedOffset>) {
    let (clock, offset) = match s.find(['+', '-']) {
        Some(i) => (&s[..i], Some(parse_offset(&s[i..]))),
        None => (s, None),
    };
    let t = NaiveTime::parse_from_str(clock, "%H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("time {s:?}: {e}"));
    (t, offset)
}

/// Parses `±HH:MM`.
pub fn parse_offset(s: &str) -> FixedOffset {
    try_parse_offset(s).unwrap_or_else(|| panic!("bad UTC offset {s:?}"))
}

/// Parses `±HH:MM`, if it is one.
pub fn try_parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let secs = h.parse::<i32>().ok()? * 3600 + m.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * secs)
}

/// Hex of bytes, lowercase.
pub fn hex(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            s.push_str(&format!("{x:02x}"));
            s
        })
}

/// Bytes of lowercase or uppercase hex.
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("hex {s:?}: {e}")))
        .collect()
}

// ------------------------------------------------------------------------------------------
// Python renderings of Rust values (typed JSON, canonical)

fn push_fraction(s: &mut String, nanos: u32) {
    let micros = nanos / 1000;
    if micros != 0 {
        s.push_str(&format!(".{micros:06}"));
    }
}

/// `{"$datetime": isoformat()}` of an aware datetime.
pub fn j_aware(v: &DateTime<FixedOffset>) -> Json {
    let mut s = v.format("%Y-%m-%dT%H:%M:%S").to_string();
    push_fraction(&mut s, v.nanosecond());
    s.push_str(&v.format("%:z").to_string());
    json!({ "$datetime": s })
}

/// `{"$datetime": isoformat()}` of a naive datetime.
pub fn j_naive(v: &NaiveDateTime) -> Json {
    let mut s = v.format("%Y-%m-%dT%H:%M:%S").to_string();
    push_fraction(&mut s, v.nanosecond());
    json!({ "$datetime": s })
}

/// `{"$date": "YYYY-MM-DD"}`.
pub fn j_date(v: &NaiveDate) -> Json {
    json!({ "$date": v.format("%Y-%m-%d").to_string() })
}

/// `{"$time": isoformat()}`.
pub fn j_time(v: &NaiveTime, offset: Option<&FixedOffset>) -> Json {
    let mut s = v.format("%H:%M:%S").to_string();
    push_fraction(&mut s, v.nanosecond());
    if let Some(o) = offset {
        s.push_str(&offset_text(o));
    }
    json!({ "$time": s })
}

/// Python's rendering of a whole-minute UTC offset: `+07:00`, `-03:30`.
pub fn offset_text(o: &FixedOffset) -> String {
    let secs = o.local_minus_utc();
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

/// `{"$decimal": str(d)}`.
pub fn j_decimal(d: &PyDecimal) -> Json {
    json!({ "$decimal": d.to_string() })
}

/// `{"$bytes": hex}`.
pub fn j_bytes(b: &[u8]) -> Json {
    json!({ "$bytes": hex(b) })
}

/// `{"$set": [sorted elements]}` of an int set.
pub fn j_int_set(s: &BTreeSet<i64>) -> Json {
    json!({ "$set": s.iter().collect::<Vec<_>>() })
}

// ------------------------------------------------------------------------------------------
// Collecting mismatches

/// Every mismatch found by a test, reported together at the end.
#[derive(Default)]
pub struct Problems {
    items: Vec<String>,
    checks: usize,
}

impl Problems {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a failed expectation.
    pub fn push(&mut self, msg: impl Into<String>) {
        self.items.push(msg.into());
    }

    /// Checks a condition.
    pub fn check(&mut self, ok: bool, msg: impl FnOnce() -> String) {
        self.checks += 1;
        if !ok {
            self.items.push(msg());
        }
    }

    /// Compares two JSON values, recording every differing leaf (by path).
    pub fn json_eq(
        &mut self,
        what: &str,
        left_name: &str,
        left: &Json,
        right_name: &str,
        right: &Json,
    ) {
        self.checks += 1;
        if left == right {
            return;
        }
        let mut diffs = Vec::new();
        json_diff("$", left, right, &mut diffs);
        let mut msg = format!("{what}: {left_name} != {right_name}");
        for d in diffs.iter().take(12) {
            msg.push_str(&format!("\n    {d}"));
        }
        if diffs.len() > 12 {
            msg.push_str(&format!("\n    ... {} more differences", diffs.len() - 12));
        }
        self.items.push(msg);
    }

    /// Panics listing every problem, if any.
    pub fn assert_none(&self, test: &str) {
        if self.items.is_empty() {
            return;
        }
        let mut msg = format!(
            "{test}: {} problem(s) in {} checks\n",
            self.items.len(),
            self.checks
        );
        for (i, p) in self.items.iter().enumerate() {
            msg.push_str(&format!("[{}] {p}\n", i + 1));
        }
        panic!("{msg}");
    }
}

/// Collects the differing leaves of two JSON values as `path: left | right`.
pub fn json_diff(path: &str, a: &Json, b: &Json, out: &mut Vec<String>) {
    match (a, b) {
        (Json::Object(x), Json::Object(y))
            if single(a).is_none_or(|(k, _)| !k.starts_with('$')) =>
        {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(u), Some(v)) => json_diff(&p, u, v, out),
                    (u, v) => out.push(format!("{p}: {} | {}", show(u), show(v))),
                }
            }
        }
        (Json::Array(x), Json::Array(y)) => {
            if x.len() != y.len() {
                out.push(format!("{path}: length {} | {}", x.len(), y.len()));
            }
            for (i, (u, v)) in x.iter().zip(y).enumerate() {
                json_diff(&format!("{path}[{i}]"), u, v, out);
            }
        }
        _ if a == b => {}
        _ => out.push(format!("{path}: {a} | {b}")),
    }
}

fn show(v: Option<&Json>) -> String {
    v.map_or_else(|| "<absent>".to_owned(), Json::to_string)
}

/// 26 confidence signals, past the evidence cap of 20 (where the gain freezes), with values
/// whose results are stored as float64, float32 and int.
#[allow(dead_code)] // only the confidence interop tests use it
pub const LONG_SIGNALS: [f64; 26] = [
    0.9,
    0.1,
    1.0,
    0.5,
    0.0,
    0.75,
    0.3,
    0.33,
    0.99,
    0.01,
    0.6,
    0.45,
    0.7,
    0.2,
    0.8,
    0.55,
    0.123456789,
    0.9,
    0.4,
    1.0,
    0.0,
    0.65,
    0.35,
    0.5,
    0.05,
    0.95,
];

//! Dry runs that print exact commands: a [`CommandLog`] collects the write commands an operation
//! would send, built by the same code that sends them in a real run.
//!
//! A backend made with [`Backend::recording`](crate::Backend::recording) still sends reads (an
//! operation plans its writes from what it reads), but the operations that support a dry run
//! put their write commands in the log instead of sending them, and every other write is
//! refused ([`Error::DryRunWrite`](crate::Error::DryRunWrite)) before it leaves the process: a
//! dry run cannot change Redis, even through an operation that does not know about it.

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Write};

/// Commands whose effect is only to read (or to answer): a recording backend sends them.
const READ_ONLY: &[&str] = &[
    "DBSIZE",
    "ECHO",
    "EXEC",
    "EXISTS",
    "GET",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HSCAN",
    "INFO",
    "MGET",
    "MULTI",
    "PING",
    "SCAN",
    "SCARD",
    "SINTER",
    "SISMEMBER",
    "SMEMBERS",
    "SMISMEMBER",
    "SSCAN",
    "SUNION",
    "TIME",
    "TYPE",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "ZCARD",
    "ZCOUNT",
    "ZMSCORE",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZSCAN",
    "ZSCORE",
];

/// Whether a command (by its arguments, name first) only reads.
pub(crate) fn is_read_only(cmd: &redis::Cmd) -> bool {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => READ_ONLY
            .iter()
            .any(|r| r.as_bytes().eq_ignore_ascii_case(name)),
        _ => false,
    }
}

/// An argument as a dry run may print it: a URL in it (a server placement's) with its user and
/// password hidden, as everywhere popoto shows one; every other argument as sent.
fn shown_arg(arg: Vec<u8>) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(&arg) else {
        return arg;
    };
    let Some(at) = text.find("://") else {
        return arg;
    };
    // The scheme starts after the last non-letter before `://` (`server:redis://...`).
    let start = text[..at]
        .rfind(|c: char| !c.is_ascii_alphanumeric() && c != '+' && c != '-' && c != '.')
        .map_or(0, |i| i + 1);
    let url = &text[start..];
    if redis::parse_redis_url(url).is_none() {
        return arg;
    }
    let shown = crate::redis_url::redacted(url);
    if shown == url {
        return arg;
    }
    format!("{}{shown}", &text[..start]).into_bytes()
}

/// The arguments of a command, as sent.
pub(crate) fn args_of(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
    cmd.args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => b.to_vec(),
            // Only scan iterators take a cursor argument; no write does.
            _ => b"0".to_vec(),
        })
        .collect()
}

/// One command a dry run would send: the backend it goes to and its arguments, name first. A
/// URL in an argument (a server placement written to the catalog) shows its user as `***` and
/// no password, as everywhere popoto prints one: such a command is the one sent but for that.
///
/// `Display` writes it as `redis-cli` reads it (arguments quoted and escaped where needed), so
/// the lines of one backend can be piped to `redis-cli`. Its JSON form is
/// `{"backend": url, "args": [...]}`, each argument a string, or `{"hex": ...}` for bytes that
/// are not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCommand {
    /// The backend's URL, credentials hidden.
    pub backend: String,
    /// The arguments, the command name first.
    #[serde(with = "arg_list")]
    pub args: Vec<Vec<u8>>,
}

impl RecordedCommand {
    /// The command as redis-rs sends it.
    pub fn to_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::Cmd::new();
        for a in &self.args {
            cmd.arg(a.as_slice());
        }
        cmd
    }

    /// The command's name, upper case.
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default()
    }
}

impl fmt::Display for RecordedCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write_arg(f, a)?;
        }
        Ok(())
    }
}

/// Writes one argument as `redis-cli` parses it: bare when it cannot be misread, else double
/// quoted with `\"`, `\\`, `\n`, `\r`, `\t` and `\xhh` escapes.
fn write_arg(f: &mut fmt::Formatter<'_>, a: &[u8]) -> fmt::Result {
    let bare = !a.is_empty()
        && a.iter()
            .all(|&b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
    if bare {
        // Graphic ASCII only: valid UTF-8.
        return f.write_str(&String::from_utf8_lossy(a));
    }
    f.write_str("\"")?;
    for &b in a {
        match b {
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            b if b == b' ' || b.is_ascii_graphic() => write!(f, "{}", b as char)?,
            b => write!(f, "\\x{b:02x}")?,
        }
    }
    f.write_str("\"")
}

/// Serde form of arguments: a string when UTF-8, else `{"hex": "..."}`.
mod arg_list {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Arg {
        Text(String),
        Bytes { hex: String },
    }

    pub(super) fn serialize<S: Serializer>(args: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        let out: Vec<Arg> = args
            .iter()
            .map(|a| match std::str::from_utf8(a) {
                Ok(t) => Arg::Text(t.to_owned()),
                Err(_) => Arg::Bytes {
                    hex: a.iter().map(|b| format!("{b:02x}")).collect(),
                },
            })
            .collect();
        out.serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
        Vec::<Arg>::deserialize(d)?
            .into_iter()
            .map(|a| match a {
                Arg::Text(t) => Ok(t.into_bytes()),
                Arg::Bytes { hex } => (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|h| u8::from_str_radix(h, 16).ok())
                            .ok_or_else(|| D::Error::custom("bad hex argument"))
                    })
                    .collect(),
            })
            .collect()
    }
}

#[derive(Default)]
struct Inner {
    commands: Vec<RecordedCommand>,
    /// Index entries (backend, key, member) the recorded plans remove: what a later read of
    /// the same run would no longer find.
    removed: HashSet<(String, String, String)>,
}

/// Where a dry run puts the commands it would send. Cheap to clone; clones share the log.
#[derive(Clone, Default)]
pub struct CommandLog {
    inner: Arc<Mutex<Inner>>,
}

impl fmt::Debug for CommandLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandLog")
            .field("commands", &self.lock().commands.len())
            .finish()
    }
}

impl CommandLog {
    /// An empty log.
    pub fn new() -> CommandLog {
        CommandLog::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every command recorded so far, in the order a real run sends them (per backend).
    pub fn commands(&self) -> Vec<RecordedCommand> {
        self.lock().commands.clone()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.lock().commands.is_empty()
    }

    /// Records `cmd`, credentials in its arguments hidden (the one way a printed command may
    /// differ from the one sent).
    pub(crate) fn push(&self, backend: String, cmd: &redis::Cmd) {
        self.lock().commands.push(RecordedCommand {
            backend,
            args: args_of(cmd).into_iter().map(shown_arg).collect(),
        });
    }

    /// Notes that a recorded plan removes `member` from index key `key` on `backend`.
    pub(crate) fn note_removed(&self, backend: &str, key: &str, member: &str) {
        self.lock()
            .removed
            .insert((backend.to_owned(), key.to_owned(), member.to_owned()));
    }

    /// Whether a recorded plan removes `member` from `key` on `backend`.
    pub(crate) fn removes(&self, backend: &str, key: &str, member: &str) -> bool {
        self.lock()
            .removed
            .contains(&(backend.to_owned(), key.to_owned(), member.to_owned()))
    }
}

/// Notes in `log` the index entries `plan` removes (its `SREM`, `ZREM` and `HDEL` writes).
pub(crate) fn note_removals(log: &CommandLog, backend: &str, plan: &Plan) {
    for w in plan.writes() {
        let (key, member) = match w {
            Write::SRem { key, member } | Write::ZRem { key, member } => (*key, member),
            Write::HDel { key, field } => (*key, field),
            _ => continue,
        };
        if let Some(k) = plan.keys().get(key) {
            log.note_removed(backend, k, member);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&[u8]]) -> RecordedCommand {
        RecordedCommand {
            backend: "redis://127.0.0.1:6379/0".into(),
            args: args.iter().map(|a| a.to_vec()).collect(),
        }
    }

    #[test]
    fn commands_print_as_redis_cli_reads_them() {
        let c = command(&[
            b"HSET",
            b"$PopotoCatalog:entry:acme",
            b"a b",
            b"say \"hi\"\n",
            b"",
            b"\x00\xff",
            b"it's",
        ]);
        assert_eq!(
            c.to_string(),
            r#"HSET $PopotoCatalog:entry:acme "a b" "say \"hi\"\n" "" "\x00\xff" "it's""#
        );
    }

    #[test]
    fn arguments_survive_json_whatever_their_bytes() {
        let c = command(&[b"EVALSHA", b"\x81\xa1x", "é".as_bytes()]);
        let json = serde_json::to_string(&c).unwrap_or_else(|e| panic!("{e}"));
        assert!(json.contains(r#"{"hex":"81a178"}"#), "{json}");
        let back: RecordedCommand = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, c);
    }

    #[test]
    fn credentials_in_arguments_are_never_recorded() {
        let log = CommandLog::new();
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg("placement")
            .arg("server:redis://admin:s3cret@10.0.0.1:6380/2")
            .arg("db:3");
        log.push("redis://127.0.0.1:6379/0".into(), &cmd);
        let shown = log.commands()[0].to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("admin"),
            "{shown}"
        );
        assert!(
            shown.contains("server:redis://***@10.0.0.1:6380/2"),
            "{shown}"
        );
        assert!(shown.ends_with(" db:3"), "{shown}");
        // Not a URL: as sent (a script's source may hold `://`).
        let mut eval = redis::cmd("EVAL");
        eval.arg("-- see https://example.invalid/x\nreturn 1");
        log.push("redis://127.0.0.1:6379/0".into(), &eval);
        assert_eq!(
            log.commands()[1].args[1],
            b"-- see https://example.invalid/x\nreturn 1".to_vec()
        );
    }

    #[test]
    fn only_reads_are_read_only() {
        assert!(is_read_only(redis::cmd("hgetall").arg("k")));
        assert!(is_read_only(redis::cmd("SCAN").arg(0)));
        for w in ["HSET", "DEL", "EVALSHA", "XREADGROUP", "FLUSHDB", "PUBLISH"] {
            assert!(!is_read_only(redis::cmd(w).arg("k")), "{w}");
        }
    }
}

//! Looking at a test server from outside: every key of every database as text, the scripts
//! loaded into its cache, and `redis-cli monitor` of the commands it receives.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdout, Command, Stdio};

use super::{err, TestRedis, TestServerError};

/// The source of script `name` (`apply.lua`, `confidence.lua`...) exactly as popoto sends it
/// (the script library and preludes included), for tests and benchmarks that load or run the
/// crate's own scripts.
pub fn script_source(name: &str) -> Option<&'static str> {
    crate::script::registry::all()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| s.source())
}

/// The `EVAL` (source in full) a fresh create of `value` sends in popoto's layout, its auto
/// key already filled: for tests of what a create script does when an entry is already there.
pub fn fresh_create_eval<M: crate::Model>(value: &M) -> crate::Result<redis::Cmd> {
    let record = value.to_record()?;
    let key = crate::model::Key::<M>::from_segments(crate::model::key_segments::<M>(&record, None));
    let inst = crate::plan::Instance {
        layout: crate::keys::Layout::Popoto,
        meta: M::META,
        key: key.redis_key(),
        record: &record,
        hidden_key: None,
    };
    let (script, cmd, _) = crate::script::create::command(&inst, true)?;
    script.to_eval(&cmd).map_err(|source| crate::Error::Redis {
        op: "create",
        model: M::META.name,
        source,
    })
}

/// Logical databases a snapshot covers.
const DATABASES: u8 = 16;

/// Bytes as text, escaped where not printable ASCII (lossless).
fn shown(b: &[u8]) -> String {
    b.escape_ascii().to_string()
}

impl TestRedis {
    /// Every key of every logical database, as `"<db> <type> <key>"` → its whole content as text
    /// (hash fields and set members sorted, zsets with their scores, strings' values, lists;
    /// bytes escaped where not printable ASCII): two snapshots are equal exactly when the data
    /// is.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for db in 0..DATABASES {
            let mut conn = redis::Client::open(self.url_db(db))
                .and_then(|c| c.get_connection())
                .unwrap_or_else(|e| panic!("connect to {}: {e}\n{}", self.url_db(db), self.log()));
            let mut q = |cmd: &redis::Cmd| -> redis::Value {
                cmd.query(&mut conn)
                    .unwrap_or_else(|e| panic!("{cmd:?} on db {db}: {e}\n{}", self.log()))
            };
            let keys: Vec<Vec<u8>> = redis::from_redis_value(q(redis::cmd("KEYS").arg("*")))
                .unwrap_or_else(|e| panic!("KEYS on db {db}: {e}"));
            for k in keys {
                let name = String::from_utf8_lossy(&k).into_owned();
                let ty: String = redis::from_redis_value(q(redis::cmd("TYPE").arg(&k)))
                    .unwrap_or_else(|e| panic!("TYPE {name}: {e}"));
                let content = match ty.as_str() {
                    "hash" => {
                        let mut h: Vec<(Vec<u8>, Vec<u8>)> =
                            redis::from_redis_value(q(redis::cmd("HGETALL").arg(&k)))
                                .unwrap_or_else(|e| panic!("HGETALL {name}: {e}"));
                        h.sort();
                        let h: Vec<(String, String)> =
                            h.iter().map(|(f, v)| (shown(f), shown(v))).collect();
                        format!("{h:?}")
                    }
                    "set" => {
                        let mut m: Vec<Vec<u8>> =
                            redis::from_redis_value(q(redis::cmd("SMEMBERS").arg(&k)))
                                .unwrap_or_else(|e| panic!("SMEMBERS {name}: {e}"));
                        m.sort();
                        let m: Vec<String> = m.iter().map(|x| shown(x)).collect();
                        format!("{m:?}")
                    }
                    "zset" => {
                        let z: Vec<(Vec<u8>, String)> =
                            redis::from_redis_value(q(redis::cmd("ZRANGE")
                                .arg(&k)
                                .arg(0)
                                .arg(-1)
                                .arg("WITHSCORES")))
                            .unwrap_or_else(|e| panic!("ZRANGE {name}: {e}"));
                        let z: Vec<(String, String)> =
                            z.iter().map(|(m, s)| (shown(m), s.clone())).collect();
                        format!("{z:?}")
                    }
                    "string" => {
                        let v: Vec<u8> = redis::from_redis_value(q(redis::cmd("GET").arg(&k)))
                            .unwrap_or_else(|e| panic!("GET {name}: {e}"));
                        shown(&v)
                    }
                    "list" => {
                        let v: Vec<Vec<u8>> =
                            redis::from_redis_value(q(redis::cmd("LRANGE").arg(&k).arg(0).arg(-1)))
                                .unwrap_or_else(|e| panic!("LRANGE {name}: {e}"));
                        let v: Vec<String> = v.iter().map(|x| shown(x)).collect();
                        format!("{v:?}")
                    }
                    other => format!("<{other}>"),
                };
                out.insert(format!("{db} {ty} {name}"), content);
            }
        }
        out
    }

    /// Loads every popoto script into the server's script cache (`SCRIPT LOAD`; the data is
    /// untouched), so that calls go as `EVALSHA` only, as on a server that already ran them.
    /// Returns each script's SHA1 by file name (`apply.lua`, `select.lua`...).
    pub fn load_scripts(&self) -> BTreeMap<&'static str, String> {
        let mut conn = self.raw();
        let mut out = BTreeMap::new();
        for (name, script) in crate::script::registry::all() {
            let sha: String = redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(script.source())
                .query(&mut conn)
                .unwrap_or_else(|e| panic!("SCRIPT LOAD {name}: {e}\n{}", self.log()));
            out.insert(name, sha);
        }
        out
    }

    /// `redis-cli monitor` on this server: every command it receives from now on.
    pub fn monitor(&self) -> Result<Monitor, TestServerError> {
        let port = self
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .ok_or_else(|| err(format!("no port in {}", self.url), ""))?
            .to_owned();
        let mut child = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port, "monitor"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("redis-cli monitor: {e}"), &self.log()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| err("redis-cli monitor has no stdout".into(), ""))?;
        let mut lines = BufReader::new(stdout).lines();
        match lines.next() {
            Some(Ok(l)) if l == "OK" => {}
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(
                    format!("redis-cli monitor did not start: {other:?}"),
                    &self.log(),
                ));
            }
        }
        Ok(Monitor { child, lines })
    }

    /// Sends `ECHO marker` (the end mark [`Monitor::until`] waits for).
    pub fn mark(&self, marker: &str) {
        redis::cmd("ECHO")
            .arg(marker)
            .query::<String>(&mut self.raw())
            .unwrap_or_else(|e| panic!("ECHO: {e}\n{}", self.log()));
    }
}

/// `redis-cli monitor` of a test server; killed on drop.
pub struct Monitor {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Monitor").finish_non_exhaustive()
    }
}

/// One command the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitored {
    /// The logical database it ran in.
    pub db: u8,
    /// The client's address, or `lua` for a command a script ran.
    pub client: String,
    /// Its arguments, the name first, unescaped.
    pub args: Vec<Vec<u8>>,
}

impl Monitored {
    /// The command's name, upper case.
    pub fn name(&self) -> String {
        self.args
            .first()
            .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
            .unwrap_or_default()
    }
}

impl Monitor {
    /// Every command received until the `ECHO` of `marker` ([`TestRedis::mark`]).
    pub fn until(&mut self, marker: &str) -> Vec<Monitored> {
        let mut out = Vec::new();
        for line in self.lines.by_ref() {
            let line = line.unwrap_or_else(|e| panic!("reading redis-cli monitor: {e}"));
            let Some(m) = parse(&line) else {
                panic!("not a MONITOR line: {line}");
            };
            if m.name() == "ECHO" && m.args.get(1).map(Vec::as_slice) == Some(marker.as_bytes()) {
                return out;
            }
            out.push(m);
        }
        panic!(
            "redis-cli monitor ended before the marker; read {} lines",
            out.len()
        );
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `1700000000.123456 [0 127.0.0.1:5555] "SET" "k" "v"` (or `[0 lua]`).
fn parse(line: &str) -> Option<Monitored> {
    let open = line.find('[')?;
    let close = open + line[open..].find(']')?;
    let (db, client) = line[open + 1..close].split_once(' ')?;
    let mut args = Vec::new();
    let mut rest = line[close + 1..].bytes();
    while let Some(b) = rest.next() {
        if b != b'"' {
            continue;
        }
        let mut arg = Vec::new();
        while let Some(b) = rest.next() {
            match b {
                b'"' => break,
                b'\\' => match rest.next()? {
                    b'n' => arg.push(b'\n'),
                    b'r' => arg.push(b'\r'),
                    b't' => arg.push(b'\t'),
                    b'a' => arg.push(7),
                    b'b' => arg.push(8),
                    b'x' => {
                        let hex = [rest.next()?, rest.next()?];
                        arg.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
                    }
                    other => arg.push(other),
                },
                b => arg.push(b),
            }
        }
        args.push(arg);
    }
    Some(Monitored {
        db: db.parse().ok()?,
        client: client.to_owned(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_lines_are_unescaped() {
        let m = parse(r#"1700000000.1 [3 127.0.0.1:5555] "HSET" "k" "a \"b\"\n\x00\xff""#)
            .unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(m.db, 3);
        assert_eq!(m.client, "127.0.0.1:5555");
        assert_eq!(
            m.args,
            vec![
                b"HSET".to_vec(),
                b"k".to_vec(),
                b"a \"b\"\n\x00\xff".to_vec()
            ]
        );
        let lua = parse(r#"1.0 [0 lua] "DEL" "k""#).unwrap_or_else(|| panic!("not parsed"));
        assert_eq!(lua.client, "lua");
    }
}

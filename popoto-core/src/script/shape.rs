//! A lone fresh create's own script, generated per model shape: `lua/create_fresh.lua` with the
//! field names and the index entries' ops written into the source, so a call sends only the
//! field values and the entries' scores (Redis 7.0 copies every argument into a Lua table that
//! grows one doubling at a time: the fewer arguments, the less server time per create).
//!
//! The writes run straight through; if any answers other than "added", a slow path ends the
//! call the way create_fresh.lua would: an entry already there is kept (a zset member gets the
//! new score), and a failed write undoes every entry this call added and the hash.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};

use crate::backend::Script;
use crate::model::ModelMeta;

/// Index entries a generated script takes at most (each keeps one Lua local; Lua allows 200).
const MAX_ENTRIES: usize = 120;

/// Field names and values a generated `HSET` takes at most (the rest go through `create.lua`).
const MAX_HSET_ARGS: usize = 200;

/// One generated script and what a call of it carries.
pub(crate) struct Shape {
    /// The script.
    pub(crate) script: Script,
    /// The hash field names, in the order of the values a call sends.
    pub(crate) names: Vec<&'static str>,
    /// One op per index key (`S` set, `Z` zset with a score, `H` companion entry with a value).
    pub(crate) ops: Vec<u8>,
    /// Its batch form for group commit ([`super::shape_batch`]), if the shape fits one.
    pub(crate) batch: Option<Script>,
}

/// The shapes generated so far, by (model, field count, hidden key, ops) and by sha1.
#[derive(Default)]
struct Shapes {
    by_model: HashMap<(usize, usize, bool, Vec<u8>), &'static Shape>,
    by_sha: HashMap<String, &'static Shape>,
}

static SHAPES: LazyLock<Mutex<Shapes>> = LazyLock::new(Mutex::default);

/// The script of a fresh create of `meta` writing its first `fields` fields (and the hidden
/// auto key when `hidden`), with one op of `ops` per index entry; `None` for an op other than
/// `S`, `Z` or `H`, or more entries than a script takes. Generated once per shape, for the
/// process (a model has one or two).
pub(crate) fn fresh(
    meta: &'static ModelMeta,
    fields: usize,
    hidden: bool,
    ops: Vec<u8>,
) -> Option<&'static Shape> {
    // The HSET call takes a Lua register per argument (250 per function).
    if ops.len() > MAX_ENTRIES
        || 2 * (fields + 1) > MAX_HSET_ARGS
        || !ops.iter().all(|op| b"SZH".contains(op))
    {
        return None;
    }
    // Owns the caller's ops: a create that finds its shape allocates nothing here.
    let id = (std::ptr::from_ref(meta) as usize, fields, hidden, ops);
    let mut shapes = SHAPES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(shape) = shapes.by_model.get(&id) {
        return Some(shape);
    }
    let mut names: Vec<&'static str> = meta.fields.iter().take(fields).map(|f| f.name).collect();
    if hidden {
        names.push("_auto_key");
    }
    let code: &'static str = Box::leak(source(meta.name, &names, &id.3).into_boxed_str());
    let batch = super::shape_batch::source(meta.name, &names, &id.3)
        .map(|code| Script::new(Box::leak(code.into_boxed_str())));
    let shape: &'static Shape = Box::leak(Box::new(Shape {
        script: Script::new(code),
        names,
        ops: id.3.clone(),
        batch,
    }));
    shapes
        .by_sha
        .insert(shape.script.get_hash().to_owned(), shape);
    shapes.by_model.insert(id, shape);
    Some(shape)
}

/// The generated shape whose script has this sha1, if any.
pub(crate) fn by_sha(sha: &[u8]) -> Option<&'static Shape> {
    let sha = std::str::from_utf8(sha).ok()?;
    let shapes = SHAPES.lock().unwrap_or_else(|p| p.into_inner());
    shapes.by_sha.get(sha).copied()
}

/// A Lua string literal of `s`.
pub(super) fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_-:.$@ ".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\{b:03}");
        }
    }
    out.push('\'');
    out
}

/// The slow path: `rs` holds each index write's reply, `ops` and `args` each entry's op and
/// arg (a reply of 1 is an entry added, 0 one already there, anything else a failure).
const SLOW: &str = "local fail
for i = 2, #KEYS do
  local r = rs[i - 1]
  if r ~= 0 and r ~= 1 then fail = i; break end
end
if not fail then
  for i = 2, #KEYS do
    if rs[i - 1] == 0 and ops:sub(i - 1, i - 1) == 'Z' then
      redis.call('ZADD', KEYS[i], args[i - 1], key)
    end
  end
  return w
end
redis.call('DEL', key)
for i = #KEYS, 2, -1 do
  if rs[i - 1] == 1 then
    local op = ops:sub(i - 1, i - 1)
    if op == 'Z' then redis.call('ZREM', KEYS[i], key)
    elseif op == 'H' then redis.call('HDEL', KEYS[i], key)
    else redis.call('SREM', KEYS[i], key) end
  end
end
local op, k = ops:sub(fail - 1, fail - 1), KEYS[fail]
local want = (op == 'Z' and 'zset') or (op == 'H' and 'hash') or 'set'
local t = redis.call('TYPE', k).ok
if t ~= 'none' and t ~= want then return {'wrongtype', k, t} end
return rs[fail - 1]
";

/// The source of the script of one shape.
fn source(model: &str, names: &[&str], ops: &[u8]) -> String {
    let mut s = String::with_capacity(1600 + 32 * names.len() + 64 * ops.len());
    let _ = writeln!(
        s,
        "-- popoto-rs: a fresh create of {model} (generated by script/shape.rs from \
         create_fresh.lua): KEYS[1] the instance\n-- key, KEYS[2..] its index keys; ARGV the \
         field values, then each score or companion value. Reply: create.lua's."
    );
    s.push_str("local key = KEYS[1]\nlocal w = redis.pcall('HSET', key");
    for (i, name) in names.iter().enumerate() {
        let _ = write!(s, ", {}, ARGV[{}]", quoted(name), i + 1);
    }
    s.push_str(")\nif type(w) == 'table' then return w end\n");
    let mut arg = names.len();
    let mut args = Vec::with_capacity(ops.len());
    for (i, op) in ops.iter().enumerate() {
        let k = i + 2;
        let _ = match op {
            b'Z' => {
                arg += 1;
                args.push(format!("ARGV[{arg}]"));
                writeln!(
                    s,
                    "local r{k} = redis.pcall('ZADD', KEYS[{k}], 'NX', ARGV[{arg}], key)"
                )
            }
            b'H' => {
                arg += 1;
                args.push(format!("ARGV[{arg}]"));
                writeln!(
                    s,
                    "local r{k} = redis.pcall('HSETNX', KEYS[{k}], key, ARGV[{arg}])"
                )
            }
            _ => {
                args.push("false".into());
                writeln!(s, "local r{k} = redis.pcall('SADD', KEYS[{k}], key)")
            }
        };
    }
    let all: Vec<String> = (2..ops.len() + 2).map(|k| format!("r{k} == 1")).collect();
    let rs: Vec<String> = (2..ops.len() + 2).map(|k| format!("r{k}")).collect();
    if !ops.is_empty() {
        let _ = writeln!(s, "if {} then return w end", all.join(" and "));
    }
    let _ = writeln!(
        s,
        "local rs, ops, args = {{{}}}, '{}', {{{}}}",
        rs.join(", "),
        String::from_utf8_lossy(ops),
        args.join(", ")
    );
    s.push_str(SLOW);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generated source writes the names in, sends each value and score by position and
    /// reaches the slow path only when a write did not add its entry.
    #[test]
    fn the_source_writes_the_shape_in() {
        let code = source("Episode", &["project_id", "it's"], b"SZH");
        assert!(
            code.contains("redis.pcall('HSET', key, 'project_id', ARGV[1], 'it\\039s', ARGV[2])")
        );
        assert!(code.contains("local r2 = redis.pcall('SADD', KEYS[2], key)"));
        assert!(code.contains("local r3 = redis.pcall('ZADD', KEYS[3], 'NX', ARGV[3], key)"));
        assert!(code.contains("local r4 = redis.pcall('HSETNX', KEYS[4], key, ARGV[4])"));
        assert!(code.contains("if r2 == 1 and r3 == 1 and r4 == 1 then return w end"));
        assert!(
            code.contains("local rs, ops, args = {r2, r3, r4}, 'SZH', {false, ARGV[3], ARGV[4]}")
        );
        // Every key is a KEYS element.
        assert!(!code.contains("redis.pcall('SADD', '"));
    }

    /// Unknown ops and too many entries are not generated; a shape is generated once.
    #[test]
    fn shapes_are_generated_once_and_only_for_plain_entries() {
        static META: ModelMeta = ModelMeta {
            name: "ShapeTest",
            fields: &[],
            key_fields: &[],
            tenant: None,
            version: None,
            ttl: None,
            expire_at: false,
        };
        assert!(fresh(&META, 0, false, b"SU".to_vec()).is_none());
        assert!(fresh(&META, 0, false, vec![b'S'; MAX_ENTRIES + 1]).is_none());
        const FIELD: crate::model::FieldMeta =
            crate::model::field("x", crate::model::FieldKind::Plain, &[]);
        static WIDE: ModelMeta = ModelMeta {
            name: "ShapeWide",
            fields: &[FIELD; 100],
            ..META
        };
        assert!(fresh(&WIDE, 100, false, b"S".to_vec()).is_none());
        assert!(fresh(&WIDE, 99, false, b"S".to_vec()).is_some());
        let a = fresh(&META, 0, true, b"SZ".to_vec()).unwrap();
        let b = fresh(&META, 0, true, b"SZ".to_vec()).unwrap();
        assert!(std::ptr::eq(a, b));
        assert_eq!(a.names, ["_auto_key"]);
        assert!(std::ptr::eq(
            by_sha(a.script.get_hash().as_bytes()).unwrap(),
            a
        ));
        assert!(!std::ptr::eq(
            fresh(&META, 0, false, b"SZ".to_vec()).unwrap(),
            a
        ));
    }
}

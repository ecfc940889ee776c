//! `lua/create.lua`: the create path's own script, which undoes its writes on a failed command
//! instead of type-checking every key first, and its batch form for group commit. Owns the
//! source and the encoding of an instance into a call; replies decode as
//! [`super::apply::outcome`] (the same shapes).

use std::sync::LazyLock;

use redis::{Arg, ErrorKind, RedisError, RedisResult};

use super::push_score;
use super::shape;
use crate::backend::{Batched, Form, Script};
use crate::error::Result;
use crate::plan::{initial_confidence, Expiry, IndexEntry, Instance};

/// The script.
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(super::compose(
        include_str!("../lua/create_fresh.lua"),
        &[include_str!("../lua/create.lua")],
    ))
});

/// The `EVALSHA` of the script for this instance, and that script: the create path's own
/// script, which undoes its writes on a failed command instead of type-checking every key first.
/// `fresh`: the key holds a uuid4 generated for this create, so the script skips `EXISTS`; when
/// every entry is also a plain set, zset or companion entry, the call goes to the script
/// generated for the model's shape ([`shape`]), which takes only the values.
/// Also returns the number of commands the script runs when nothing fails.
pub(crate) fn command(
    inst: &Instance<'_>,
    fresh: bool,
) -> Result<(&'static Script, redis::Cmd, usize)> {
    let mut entries = inst.index_entries()?;
    // A create without an expiry writes no expiry entry.
    entries.retain(|e| !matches!(e, IndexEntry::Expiry(_, None)));
    let nf = inst.hash_field_count();
    let values: usize = inst.record.values.iter().map(Vec::len).sum();
    let keys: usize = entries.iter().map(|e| e.key().len()).sum();
    let uniques = entries
        .iter()
        .filter(|e| matches!(e, IndexEntry::Set(_, Some(_))))
        .count();
    let expiring = entries
        .iter()
        .filter(|e| matches!(e, IndexEntry::Expiry(..)))
        .count();
    let commands = usize::from(!fresh) + uniques + 1 + entries.len() + 2 * expiring;
    let bytes = 96 + values + keys + 2 * inst.key.len() + 24 * entries.len();
    // 'P': fresh, and every entry plain (create_fresh.lua's fast path, or the shape's script).
    let ops: Option<Vec<u8>> = entries
        .iter()
        .map(|e| match e {
            IndexEntry::Set(_, None) => Some(b'S'),
            IndexEntry::ZSet(..) => Some(b'Z'),
            IndexEntry::Companion(..) => Some(b'H'),
            _ => None,
        })
        .collect();
    let plain = ops.is_some();
    // The (field, value) pairs `push_hash_fields` writes before the hidden key.
    let fields = inst.meta.fields.len().min(inst.record.values.len());
    if let Some(shape) = ops
        .filter(|_| fresh)
        .and_then(|ops| shape::fresh(inst.meta, fields, inst.hidden_key.is_some(), ops))
    {
        let mut cmd = shape
            .script
            .command(Form::Sha, 2 + entries.len() + nf * 2, bytes);
        cmd.arg(1 + entries.len()).arg(&inst.key);
        for e in &entries {
            cmd.arg(e.key());
        }
        inst.push_hash_values(&mut cmd);
        for e in &entries {
            push_entry_arg(&mut cmd, e);
        }
        return Ok((&shape.script, cmd, commands));
    }
    let mut cmd = CREATE.command(Form::Sha, 4 + 2 * nf + 3 * entries.len(), bytes + 32 * nf);
    cmd.arg(1 + entries.len()).arg(&inst.key);
    for e in &entries {
        cmd.arg(e.key());
    }
    cmd.arg(match (fresh, plain) {
        (true, true) => "P",
        (true, false) => "F",
        (false, _) => "C",
    })
    .arg(nf);
    inst.push_hash_fields(&mut cmd);
    for e in &entries {
        match e {
            IndexEntry::Set(_, None) => cmd.arg("S").arg(""),
            IndexEntry::Set(_, Some(field)) => match inst.meta.unique_scope(*field) {
                0 => cmd.arg("U").arg(field),
                within => cmd.arg("V").arg(format!("{field} {within}")),
            },
            IndexEntry::ZSet(..) => cmd.arg("Z"),
            IndexEntry::Companion(..) => cmd.arg("H"),
            IndexEntry::Expiry(_, expiry) => cmd
                .arg("X")
                .arg(expiry.map(Expiry::arg).unwrap_or_default()),
        };
        push_entry_arg(&mut cmd, e);
    }
    Ok((&CREATE, cmd, commands))
}

/// The arg of a zset entry (its score) or a companion entry (its initial value).
fn push_entry_arg(cmd: &mut redis::Cmd, e: &IndexEntry) {
    match e {
        IndexEntry::ZSet(_, score) => push_score(cmd, *score),
        IndexEntry::Companion(_, initial) => {
            cmd.arg(initial_confidence(*initial));
        }
        _ => {}
    }
}

/// One call of [`command`], split: its keys and its arguments after the keys, as
/// `create.lua` takes them (a call of a shape's script is read back into that form).
struct Call<'a> {
    keys: Vec<&'a [u8]>,
    flag: &'a [u8],
    nf: usize,
    /// (field, value) pairs, flat.
    fields: Vec<&'a [u8]>,
    /// One (op, arg) pair per index key.
    pairs: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Call<'a> {
    fn parse(cmd: &'a redis::Cmd) -> RedisResult<Call<'a>> {
        let bad = || RedisError::from((ErrorKind::Client, "not a call of the create script"));
        let args = super::plain_args(cmd).ok_or_else(bad)?;
        let number =
            |b: Option<&&[u8]>| -> Option<usize> { std::str::from_utf8(b?).ok()?.parse().ok() };
        let n = number(args.get(2))
            .filter(|n| *n >= 1 && args.len() >= 3 + n)
            .ok_or_else(bad)?;
        let keys = args[3..3 + n].to_vec();
        let rest = &args[3 + n..];
        if let Some(shape) = args.get(1).and_then(|sha| shape::by_sha(sha)) {
            let nf = shape.names.len();
            let zh = shape.ops.iter().filter(|op| **op != b'S').count();
            if shape.ops.len() != n - 1 || rest.len() != nf + zh {
                return Err(bad());
            }
            let fields = shape
                .names
                .iter()
                .zip(&rest[..nf])
                .flat_map(|(name, value)| [name.as_bytes(), value])
                .collect();
            let mut extra = rest[nf..].iter();
            let mut pairs = Vec::with_capacity(n - 1);
            for op in &shape.ops {
                let (op, arg): (&'static [u8], &[u8]) = match op {
                    b'Z' => (b"Z", extra.next().ok_or_else(bad)?),
                    b'H' => (b"H", extra.next().ok_or_else(bad)?),
                    _ => (b"S", b""),
                };
                pairs.push((op, arg));
            }
            return Ok(Call {
                keys,
                flag: b"P",
                nf,
                fields,
                pairs,
            });
        }
        let nf = number(rest.get(1)).ok_or_else(bad)?;
        let at = 2 + 2 * nf;
        if rest.len() != at + 2 * (n - 1) {
            return Err(bad());
        }
        Ok(Call {
            keys,
            flag: rest[0],
            nf,
            fields: rest[2..at].to_vec(),
            pairs: rest[at..].chunks_exact(2).map(|p| (p[0], p[1])).collect(),
        })
    }

    /// Its arguments after the keys, as `create.lua` takes them.
    fn args(&self) -> usize {
        2 + self.fields.len() + 2 * self.pairs.len()
    }

    /// Whether a compact form of it can follow `full`: the same flag, field count, index keys
    /// and ops, and the same args but for `Z` and `X` entries (its own scores and expiry times).
    fn fits(&self, full: &Call<'_>) -> bool {
        self.flag == full.flag
            && self.nf == full.nf
            && self.keys[1..] == full.keys[1..]
            && self
                .pairs
                .iter()
                .zip(&full.pairs)
                .all(|((op, a), (fop, fa))| op == fop && (varies(op) || a == fa))
    }
}

/// Whether an entry's arg is the instance's own (a score, an expiry time).
fn varies(op: &[u8]) -> bool {
    op == b"Z" || op == b"X"
}

/// The call of the batch form for several calls of [`command`] (group commit): every call's
/// keys, then `*` and per call its key count, argument count and arguments; a call with the
/// flag, field count, index keys, ops and fixed args of the last full one goes compact: `=`, its
/// fields and the args of its `Z` and `X` entries, and only its own key in `KEYS` (most of a
/// batch: the server parses half the arguments).
/// Calls all of one generated shape go as a call of that shape's batch form instead
/// ([`super::shape_batch`]): the field names are in its source, not in the call.
pub(crate) fn batch(script: &'static Script, cmds: &[&redis::Cmd]) -> RedisResult<Batched> {
    if let Some((shape, form)) = one_shape(cmds) {
        return super::shape_batch::call(shape, form, cmds);
    }
    let calls: Vec<Call<'_>> = cmds
        .iter()
        .map(|c| Call::parse(c))
        .collect::<RedisResult<_>>()?;
    let mut full: Option<usize> = None;
    let compact: Vec<bool> = calls
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let fits = full.is_some_and(|f| c.fits(&calls[f]));
            if !fits {
                full = Some(i);
            }
            fits
        })
        .collect();
    let (mut nkeys, mut nargs, mut bytes) = (0, 0, 0);
    for (c, &small) in calls.iter().zip(&compact) {
        let keys = if small { &c.keys[..1] } else { &c.keys[..] };
        nkeys += keys.len();
        nargs += 2 + c.args();
        bytes += keys.iter().chain(&c.fields).map(|a| a.len()).sum::<usize>()
            + c.pairs
                .iter()
                .map(|(o, a)| o.len() + a.len())
                .sum::<usize>();
    }
    let mut out = script.command(Form::Sha, 2 + nkeys + nargs, bytes + 16 * calls.len());
    out.arg(nkeys);
    for (c, &small) in calls.iter().zip(&compact) {
        out.arg(if small { &c.keys[..1] } else { &c.keys[..] });
    }
    out.arg("*");
    for (c, &small) in calls.iter().zip(&compact) {
        if small {
            out.arg("=").arg(&c.fields[..]);
            for (op, a) in &c.pairs {
                if varies(op) {
                    out.arg(a);
                }
            }
        } else {
            out.arg(c.keys.len())
                .arg(c.args())
                .arg(c.flag)
                .arg(c.nf)
                .arg(&c.fields[..]);
            for (op, a) in &c.pairs {
                out.arg(op).arg(a);
            }
        }
    }
    Ok(Batched {
        script,
        cmd: out,
        order: Vec::new(),
    })
}

/// The shape whose script every call of `cmds` calls, and its batch form, if it has one.
fn one_shape(cmds: &[&redis::Cmd]) -> Option<(&'static shape::Shape, &'static Script)> {
    fn sha(c: &redis::Cmd) -> Option<&[u8]> {
        match c.args_iter().nth(1) {
            Some(Arg::Simple(sha)) => Some(sha),
            _ => None,
        }
    }
    let first = sha(cmds.first()?)?;
    if !cmds[1..].iter().all(|c| sha(c) == Some(first)) {
        return None;
    }
    let shape = shape::by_sha(first)?;
    Some((shape, shape.batch.as_ref()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(key: &str, entries: &[(&str, &str, &str)]) -> redis::Cmd {
        call_as("P", key, entries)
    }

    fn call_as(flag: &str, key: &str, entries: &[(&str, &str, &str)]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg("sha").arg(1 + entries.len()).arg(key);
        for (k, _, _) in entries {
            cmd.arg(*k);
        }
        cmd.arg(flag).arg(1).arg("f").arg(key);
        for (_, op, arg) in entries {
            cmd.arg(*op).arg(*arg);
        }
        cmd
    }

    fn args(cmd: &redis::Cmd) -> Vec<String> {
        cmd.args_iter()
            .map(|a| match a {
                Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                _ => "<cursor>".into(),
            })
            .collect()
    }

    /// A call with the last full call's flag, field count, index keys, ops and fixed args goes
    /// compact; another set arg, index key or flag starts a full call again.
    #[test]
    fn same_shape_calls_go_compact() {
        let shape = [("c", "S", ""), ("z", "Z", "0.5")];
        let calls = [
            call("k1", &shape),
            call("k2", &[("c", "S", ""), ("z", "Z", "0.7")]),
            call("k3", &[("c", "S", "x"), ("z", "Z", "0.1")]),
            call("k4", &[("d", "S", "x"), ("z", "Z", "0.2")]),
            call("k5", &[("d", "S", "x"), ("z", "Z", "0.3")]),
            call_as("C", "k6", &[("d", "S", "x"), ("z", "Z", "0.4")]),
        ];
        let refs: Vec<&redis::Cmd> = calls.iter().collect();
        let out = args(&batch(&CREATE, &refs).unwrap().cmd);
        let expected: Vec<&str> = [
            "14", "k1", "c", "z", "k2", "k3", "c", "z", "k4", "d", "z", "k5", "k6", "d", "z", "*",
        ]
        .into_iter()
        .chain(["3", "8", "P", "1", "f", "k1", "S", "", "Z", "0.5"])
        .chain(["=", "f", "k2", "0.7"])
        .chain(["3", "8", "P", "1", "f", "k3", "S", "x", "Z", "0.1"])
        .chain(["3", "8", "P", "1", "f", "k4", "S", "x", "Z", "0.2"])
        .chain(["=", "f", "k5", "0.3"])
        .chain(["3", "8", "C", "1", "f", "k6", "S", "x", "Z", "0.4"])
        .collect();
        assert_eq!(out[2..], expected[..]);
    }

    /// Calls all of one shape go as a call of the shape's batch form; a shape call batched
    /// with another script's calls goes as the equal `P` call of the create script would
    /// (compact after a full one); a call of it with the wrong count is refused.
    #[test]
    fn shape_calls_batch_in_their_shapes_form_or_as_their_create_calls() {
        static META: crate::model::ModelMeta = crate::model::ModelMeta {
            name: "BatchShape",
            fields: &[crate::model::field(
                "f",
                crate::model::FieldKind::Plain,
                &[],
            )],
            key_fields: &[],
            tenant: None,
            version: None,
            ttl: None,
            expire_at: false,
        };
        let shape = shape::fresh(&META, 1, false, b"SZ".to_vec()).unwrap();
        let shaped = |key: &str, score: &str| {
            let mut cmd = shape.script.command(Form::Sha, 0, 0);
            cmd.arg(3).arg(key).arg("c").arg("z").arg(key).arg(score);
            cmd
        };
        let form = shape.batch.as_ref().unwrap();
        let both = [shaped("k1", "0.5"), shaped("k2", "0.7")];
        let out = batch(&CREATE, &[&both[0], &both[1]]).unwrap();
        assert!(std::ptr::eq(out.script, form));
        assert_eq!(
            args(&out.cmd)[1..],
            [
                form.get_hash(),
                "4",
                "c",
                "z",
                "k1",
                "k2",
                "2",
                "k1",
                "0.5",
                "k2",
                "0.7"
            ]
        );
        // Mixed with a create script call: the create script's batch form.
        let general = call("k0", &[("c", "S", ""), ("z", "Z", "0.1")]);
        let out = batch(&CREATE, &[&general, &both[0], &both[1]]).unwrap();
        assert!(std::ptr::eq(out.script, &*CREATE) && out.order.is_empty());
        assert_eq!(
            args(&out.cmd)[3..],
            [
                "k0", "c", "z", "k1", "k2", "*", "3", "8", "P", "1", "f", "k0", "S", "", "Z",
                "0.1", "=", "f", "k1", "0.5", "=", "f", "k2", "0.7"
            ]
        );
        let mut long = both[0].clone();
        long.arg("extra");
        assert!(batch(&CREATE, &[&long, &both[1]]).is_err());
        assert!(batch(&CREATE, &[&general, &long]).is_err());
    }

    /// What is not a create call is refused, not encoded.
    #[test]
    fn malformed_calls_are_refused() {
        let mut short = call("k1", &[("c", "S", "")]);
        short.arg("extra");
        assert!(batch(&CREATE, &[&short]).is_err());
        assert!(batch(&CREATE, &[&redis::cmd("PING")]).is_err());
    }
}

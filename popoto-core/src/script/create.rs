//! `lua/create.lua`: the create path's own script, which undoes its writes on a failed command
//! instead of type-checking every key first, and its batch form for group commit. Owns the
//! source and the encoding of an instance into a call; replies decode as
//! [`super::apply::outcome`] (the same shapes).

use std::sync::LazyLock;

use redis::{Arg, ErrorKind, RedisError, RedisResult};

use super::push_score;
use crate::backend::{Form, Script};
use crate::error::Result;
use crate::plan::{initial_confidence, Expiry, IndexEntry, Instance};

/// The script.
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(super::compose(
        include_str!("../lua/create_fresh.lua"),
        &[include_str!("../lua/create.lua")],
    ))
});

/// The `EVALSHA` of the script for this instance: the create path's own script,
/// which undoes its writes on a failed command instead of type-checking every key first.
/// `fresh`: the key holds a uuid4 generated for this create, so the script skips `EXISTS`
/// (and, when every entry is a plain set, zset or companion entry, runs its fast path).
/// Also returns the number of commands the script runs when nothing fails.
pub(crate) fn command(inst: &Instance<'_>, fresh: bool) -> Result<(redis::Cmd, usize)> {
    let mut entries = inst.index_entries()?;
    // A create without an expiry writes no expiry entry.
    entries.retain(|e| !matches!(e, IndexEntry::Expiry(_, None)));
    let nf = inst.hash_field_count();
    let values: usize = inst.record.values.iter().map(Vec::len).sum();
    let keys: usize = entries.iter().map(|e| e.key().len()).sum();
    let mut cmd = redis::Cmd::with_capacity(
        6 + 2 * nf + 3 * entries.len(),
        96 + values + keys + 2 * inst.key.len() + 32 * nf + 24 * entries.len(),
    );
    cmd.arg("EVALSHA")
        .arg(CREATE.get_hash())
        .arg(1 + entries.len())
        .arg(&inst.key);
    for e in &entries {
        cmd.arg(e.key());
    }
    // 'P': fresh, and every entry plain (create_fresh.lua's fast path).
    let plain = entries.iter().all(|e| {
        matches!(
            e,
            IndexEntry::Set(_, None) | IndexEntry::ZSet(..) | IndexEntry::Companion(..)
        )
    });
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
            IndexEntry::ZSet(_, score) => {
                push_score(cmd.arg("Z"), *score);
                &mut cmd
            }
            IndexEntry::Companion(_, initial) => cmd.arg("H").arg(initial_confidence(*initial)),
            IndexEntry::Expiry(_, expiry) => cmd
                .arg("X")
                .arg(expiry.map(Expiry::arg).unwrap_or_default()),
        };
    }
    let uniques = entries
        .iter()
        .filter(|e| matches!(e, IndexEntry::Set(_, Some(_))))
        .count();
    let expiring = entries
        .iter()
        .filter(|e| matches!(e, IndexEntry::Expiry(..)))
        .count();
    let commands = usize::from(!fresh) + uniques + 1 + entries.len() + 2 * expiring;
    Ok((cmd, commands))
}

/// One call of [`command`], split: its keys and its arguments after the keys.
struct Call<'a> {
    keys: Vec<&'a [u8]>,
    rest: Vec<&'a [u8]>,
    /// Where its (op, arg) pairs start in `rest`.
    pairs: usize,
}

impl<'a> Call<'a> {
    fn parse(cmd: &'a redis::Cmd) -> RedisResult<Call<'a>> {
        let bad = || RedisError::from((ErrorKind::Client, "not a call of the create script"));
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .map(|a| match a {
                Arg::Simple(b) => Ok(b),
                _ => Err(bad()),
            })
            .collect::<RedisResult<_>>()?;
        let number =
            |b: Option<&&[u8]>| -> Option<usize> { std::str::from_utf8(b?).ok()?.parse().ok() };
        let n = number(args.get(2))
            .filter(|n| *n >= 1 && args.len() >= 3 + n)
            .ok_or_else(bad)?;
        let rest = args[3 + n..].to_vec();
        let nf = number(rest.get(1)).ok_or_else(bad)?;
        let pairs = 2 + 2 * nf;
        if rest.len() != pairs + 2 * (n - 1) {
            return Err(bad());
        }
        Ok(Call {
            keys: args[3..3 + n].to_vec(),
            rest,
            pairs,
        })
    }

    /// Its (op, arg) pairs.
    fn entries(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.rest[self.pairs..]
            .chunks_exact(2)
            .map(|p| (p[0], p[1]))
    }

    /// Whether a compact form of it can follow `full`: the same flag, field count, index keys
    /// and ops, and the same args but for `Z` and `X` entries (its own scores and expiry times).
    fn fits(&self, full: &Call<'_>) -> bool {
        self.rest[..2] == full.rest[..2]
            && self.keys[1..] == full.keys[1..]
            && self
                .entries()
                .zip(full.entries())
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
pub(crate) fn batch(script: &Script, cmds: &[&redis::Cmd]) -> RedisResult<redis::Cmd> {
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
        nargs += 2 + c.rest.len();
        bytes += keys.iter().chain(&c.rest).map(|a| a.len()).sum::<usize>();
    }
    let mut out = script.command(Form::Sha, 2 + nkeys + nargs, bytes + 16 * calls.len());
    out.arg(nkeys);
    for (c, &small) in calls.iter().zip(&compact) {
        out.arg(if small { &c.keys[..1] } else { &c.keys[..] });
    }
    out.arg("*");
    for (c, &small) in calls.iter().zip(&compact) {
        if small {
            out.arg("=").arg(&c.rest[2..c.pairs]);
            for (op, a) in c.entries() {
                if varies(op) {
                    out.arg(a);
                }
            }
        } else {
            out.arg(c.keys.len()).arg(c.rest.len()).arg(&c.rest[..]);
        }
    }
    Ok(out)
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
        let out = args(&batch(&CREATE, &refs).unwrap());
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

    /// What is not a create call is refused, not encoded.
    #[test]
    fn malformed_calls_are_refused() {
        let mut short = call("k1", &[("c", "S", "")]);
        short.arg("extra");
        assert!(batch(&CREATE, &[&short]).is_err());
        assert!(batch(&CREATE, &[&redis::cmd("PING")]).is_err());
    }
}

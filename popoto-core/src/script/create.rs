//! `lua/create.lua`: the create path's own script, which undoes its writes on a failed command
//! instead of type-checking every key first, and its batch form for group commit. Owns the
//! source and the encoding of an instance into a call; replies decode as
//! [`super::apply::outcome`] (the same shapes).

use std::sync::LazyLock;

use super::push_score;
use crate::backend::Script;
use crate::error::Result;
use crate::plan::{initial_confidence, Expiry, IndexEntry, Instance};

/// The script.
pub(crate) static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("../lua/create_fresh.lua"),
        super::lua!("create.lua")
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

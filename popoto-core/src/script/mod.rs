//! The Lua scripts: every script's source is the functions of `lua/lib.lua` (the helpers and
//! checks scripts share, written once) it calls, followed by its own files. The scripts of instance writes live here
//! (`apply`, `create`); every other script lives in the module that encodes its arguments and
//! decodes its replies. `registry.rs` lists every one, for tests and for loading a script cache.

pub(crate) mod apply;
pub(crate) mod create;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod registry;
pub(crate) mod shape;
mod shape_batch;

/// The library: helpers and checks several scripts share, written once (`lua/lib.lua`).
const LIBRARY: &str = include_str!("../lua/lib.lua");

/// The library's functions in order: each one's name and its block (its comment and its
/// definition; blocks are separated by blank lines).
fn library() -> impl Iterator<Item = (&'static str, &'static str)> {
    LIBRARY.split("\n\n").filter_map(|block| {
        let name = block.split("local function ").nth(1)?.split('(').next()?;
        Some((name, block))
    })
}

/// Whether `code` calls function `name` (`name(` not preceded by a name's character).
fn calls(code: &str, name: &str) -> bool {
    code.match_indices(name).any(|(i, _)| {
        code[i + name.len()..].starts_with('(')
            && !code[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// A script's source as sent: `prelude` (code that runs before any library function exists),
/// then the library functions `files` call, directly or through one another, in the library's
/// order, then `files`: a call builds only the closures its script may use. Built once per
/// script, for the process.
pub(crate) fn compose(prelude: &str, files: &[&str]) -> &'static str {
    let body = files.concat();
    let mut needed: Vec<bool> = library().map(|(name, _)| calls(&body, name)).collect();
    // A needed function's callees are needed too (each defined before its callers).
    let blocks: Vec<(&str, &str)> = library().collect();
    for i in (0..blocks.len()).rev() {
        if needed[i] {
            for (j, (name, _)) in blocks[..i].iter().enumerate() {
                needed[j] |= calls(blocks[i].1, name);
            }
        }
    }
    let mut out = String::from(prelude);
    for ((_, block), _) in blocks.iter().zip(&needed).filter(|(_, n)| **n) {
        out.push_str(block);
        out.push_str("\n\n");
    }
    out.push_str(&body);
    Box::leak(out.into_boxed_str())
}

/// A score as a Redis argument: shortest round-trip decimal, `inf`/`-inf` for infinities.
pub(crate) fn score_arg(score: f64) -> String {
    if score.is_infinite() {
        if score > 0.0 {
            "+inf".into()
        } else {
            "-inf".into()
        }
    } else {
        format!("{score}")
    }
}

/// Appends a score argument without formatting it into a `String` first: finite values as
/// redis-rs writes an `f64` (shortest round trip), infinities as [`score_arg`] does.
pub(crate) fn push_score(cmd: &mut redis::Cmd, score: f64) {
    if score.is_finite() {
        cmd.arg(score);
    } else {
        cmd.arg(score_arg(score));
    }
}

/// The source of a script as sent ([`compose`]): the library functions the named files of `lua/`
/// call, then those files in order.
macro_rules! lua {
    ($($file:literal),+) => {
        $crate::script::compose(
            "",
            &[$(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua/", $file))),+],
        )
    };
}
pub(crate) use lua;

/// Every argument of `cmd` as bytes; `None` if one is not a plain argument (a cursor).
pub(crate) fn plain_args(cmd: &redis::Cmd) -> Option<Vec<&[u8]>> {
    cmd.args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => Some(b),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_args_round_trip() {
        for s in [0.1, 1.5, -0.0, 1e300, 5e-324, 1704067200.0] {
            assert_eq!(score_arg(s).parse::<f64>().ok(), Some(s));
        }
        assert_eq!(score_arg(f64::INFINITY), "+inf");
        assert_eq!(score_arg(f64::NEG_INFINITY), "-inf");
    }
}

//! The Lua scripts: every script's source is `lua/lib.lua` (the helpers and checks scripts
//! share, written once) followed by its own files. The scripts of instance writes live here
//! (`apply`, `create`); every other script lives in the module that encodes its arguments and
//! decodes its replies. `registry.rs` lists every one, for tests and for loading a script cache.

pub(crate) mod apply;
pub(crate) mod create;
#[cfg(any(test, feature = "testing"))]
pub(crate) mod registry;

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

/// The source of a script as sent: `lua/lib.lua`, then the named files of `lua/` in order.
macro_rules! lua {
    ($($file:literal),+) => {
        concat!(
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua/lib.lua")),
            $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua/", $file))),+
        )
    };
}
pub(crate) use lua;

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

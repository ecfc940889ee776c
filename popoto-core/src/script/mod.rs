//! The Lua scripts: every script's source is `lua/lib.lua` (the helpers and checks scripts
//! share, written once) followed by its own files. The scripts of instance writes live here
//! (`apply`, `create`); every other script lives in the module that encodes its arguments and
//! decodes its replies. [`all`] lists every one, for tests and for loading a script cache.

pub(crate) mod apply;
pub(crate) mod create;

use crate::backend::Script;

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

/// Every script popoto sends, by the name of its own file in `lua/`.
#[cfg(any(test, feature = "testing"))]
pub(crate) fn all() -> [(&'static str, &'static Script); 17] {
    [
        ("apply.lua", &apply::APPLY),
        ("catalog.lua", &crate::catalog::CAS),
        ("confidence.lua", &crate::confidence::UPDATE),
        ("create.lua", &create::CREATE),
        ("feed_grants.lua", &crate::shared::FEED_GRANTS),
        ("feed_group.lua", &crate::feed::GROUP),
        ("feed_trim.lua", &crate::feed::TRIM),
        ("insert_many.lua", &crate::bulk::INSERT_MANY),
        ("migrate_page.lua", &crate::maintenance::MIGRATE_PAGE),
        ("project.lua", &crate::query::PROJECT),
        ("select.lua", &crate::query::SELECT),
        ("shared_grants.lua", &crate::shared::GRANTS),
        ("shared_read.lua", &crate::shared::READ),
        ("shared_write.lua", &crate::shared::WRITE),
        ("sweep.lua", &crate::expiry::SWEEP),
        ("verify.lua", &crate::verify::VERIFY),
        ("window.lua", &crate::query::WINDOW),
    ]
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

    /// Every script file is listed (the preludes excepted), and every source starts with the
    /// library.
    #[test]
    fn every_script_is_listed_once_with_the_library() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("the lua folder")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8")
            })
            .filter(|n| n.ends_with(".lua") && n != "lib.lua" && n != "feed_common.lua")
            .collect();
        files.sort();
        let listed: Vec<&str> = all().iter().map(|(n, _)| *n).collect();
        assert_eq!(listed, files);
        let lib = include_str!("../lua/lib.lua");
        for (name, script) in all() {
            assert!(script.source().starts_with(lib), "{name}");
            assert!(script.source().len() > lib.len(), "{name}");
        }
    }
}

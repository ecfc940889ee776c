//! The registry of every script popoto sends, above the modules that own them: for tests and
//! for loading a script cache.

use crate::backend::Script;

/// Every script popoto sends, by the name of its own file in `lua/`.
pub(crate) fn all() -> [(&'static str, &'static Script); 17] {
    [
        ("apply.lua", &super::apply::APPLY),
        ("catalog.lua", &crate::catalog::CAS),
        ("confidence.lua", &crate::confidence::UPDATE),
        ("create.lua", &super::create::CREATE),
        ("feed_grants.lua", &crate::shared::FEED_GRANTS),
        ("feed_group.lua", &crate::feed::GROUP),
        ("feed_trim.lua", &crate::feed::TRIM),
        ("insert_many.lua", &crate::bulk::INSERT_MANY),
        ("migrate_page.lua", &crate::maintenance::MIGRATE_PAGE),
        ("project.lua", &crate::query::PROJECT),
        ("select.lua", &crate::query::SELECT),
        ("shared_grants.lua", &crate::shared::GRANTS),
        ("shared_read.lua", &crate::shared::READ),
        ("shared_relayout.lua", &crate::shared::RELAYOUT),
        ("shared_write.lua", &crate::shared::WRITE),
        ("sweep.lua", &crate::expiry::SWEEP),
        ("window.lua", &crate::query::WINDOW),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every script file is listed (the preludes excepted).
    #[test]
    fn every_script_is_listed_once() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/lua");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .expect("the lua folder")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .into_string()
                    .expect("UTF-8")
            })
            .filter(|n| {
                n.ends_with(".lua")
                    && !["lib.lua", "feed_common.lua", "create_fresh.lua"].contains(&n.as_str())
            })
            .collect();
        files.sort();
        let listed: Vec<&str> = all().iter().map(|(n, _)| *n).collect();
        assert_eq!(listed, files);
    }

    /// Each source holds the library functions its script calls, directly or through one
    /// another, each once and before its first use, and no other; create's fast path comes
    /// before them all.
    #[test]
    fn every_source_holds_the_library_functions_it_calls() {
        let lib = include_str!("../lua/lib.lua");
        let defined =
            |source: &str, name: &str| source.matches(&format!("local function {name}(")).count();
        let names = [
            "seg",
            "now_ms",
            "expiry_at",
            "typed",
            "unique_refusal",
            "in_scope",
        ];
        for name in names {
            assert_eq!(defined(lib, name), 1, "{name} in lib.lua");
        }
        for (script, source) in all().iter().map(|(n, s)| (*n, s.source())) {
            for name in names {
                let calls = source.matches(&format!("{name}(")).count() > defined(source, name);
                assert_eq!(
                    defined(source, name),
                    usize::from(calls),
                    "{script}: {name}"
                );
                if calls {
                    let at = source.find(&format!("local function {name}(")).unwrap_or(0);
                    assert!(
                        !source[..at].contains(&format!(" {name}(")),
                        "{script}: {name}"
                    );
                }
            }
        }
        let create = super::super::create::CREATE.source();
        assert!(create.starts_with(include_str!("../lua/create_fresh.lua")));
        assert!(defined(create, "unique_refusal") == 1 && defined(create, "in_scope") == 0);
        assert_eq!(defined(crate::query::PROJECT.source(), "in_scope"), 1);
        assert!(names
            .iter()
            .all(|n| defined(crate::query::WINDOW.source(), n) == 0));
    }
}

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

    /// Every script file is listed (the preludes excepted), and every source starts with the
    /// library (create's after its fast path, which uses none of it).
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
            .filter(|n| {
                n.ends_with(".lua")
                    && !["lib.lua", "feed_common.lua", "create_fresh.lua"].contains(&n.as_str())
            })
            .collect();
        files.sort();
        let listed: Vec<&str> = all().iter().map(|(n, _)| *n).collect();
        assert_eq!(listed, files);
        let lib = include_str!("../lua/lib.lua");
        let fresh = include_str!("../lua/create_fresh.lua");
        for (name, script) in all() {
            let source = script.source();
            let body = if name == "create.lua" {
                source
                    .strip_prefix(fresh)
                    .expect("create.lua's fast path first")
            } else {
                source
            };
            assert!(body.starts_with(lib), "{name}");
            assert!(script.source().len() > lib.len(), "{name}");
        }
    }
}

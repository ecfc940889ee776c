//! Keys of the tenant catalog, the fleet journal and the catalog's change channel.

use super::push_seg;

/// Prefix of the tenant catalog's keys: `$` keeps them out of every model's instance keys and no
/// model index prefix (`$Class`, `$KeyF`, `$SortF`...) is `$PopotoCatalog`.
const CATALOG: &str = "$PopotoCatalog";

/// `$PopotoCatalog:entry:<seg(tenant)>`: the hash of one tenant's catalog entry.
pub fn catalog_entry_key(tenant: &str) -> String {
    let mut out = format!("{CATALOG}:entry");
    push_seg(&mut out, tenant);
    out
}

/// `$PopotoCatalog:ids`: every tenant id in the catalog (zset, score 0, ordered by id).
pub fn catalog_ids_key() -> String {
    format!("{CATALOG}:ids")
}

/// `$PopotoCatalog:status:<status>`: the ids of the tenants in one status (zset, score 0).
pub fn catalog_status_key(status: &str) -> String {
    let mut out = format!("{CATALOG}:status");
    push_seg(&mut out, status);
    out
}

/// `$PopotoCatalog:version`: the catalog's change counter, incremented by every change.
pub fn catalog_version_key() -> String {
    format!("{CATALOG}:version")
}

/// `$PopotoCatalog:changes`: the pub/sub channel on which every catalog change publishes the
/// tenant's id (a channel, not a key: channels are server-wide, shared by every database).
pub fn catalog_channel() -> String {
    format!("{CATALOG}:changes")
}

/// `$PopotoCatalog:run:<seg(run)>`: the journal of a resumable fleet run (tenant → done).
pub fn fleet_journal_key(run: &str) -> String {
    let mut out = format!("{CATALOG}:run");
    push_seg(&mut out, run);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_keys_escape_the_tenant_and_stay_apart_from_model_keys() {
        assert_eq!(catalog_entry_key("acme"), "$PopotoCatalog:entry:acme");
        assert_eq!(
            catalog_entry_key("a:b*"),
            "$PopotoCatalog:entry:a{&#58;}b/*"
        );
        assert_eq!(catalog_status_key("active"), "$PopotoCatalog:status:active");
        assert_eq!(fleet_journal_key("r:1"), "$PopotoCatalog:run:r{&#58;}1");
        assert!(!catalog_ids_key().starts_with("$Class:"));
    }
}

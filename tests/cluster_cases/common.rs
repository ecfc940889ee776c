//! What the cluster cases share: the process's cluster, a `Db` on it, and assertions on the
//! raw keys of one tenant (every key under the tenant's hash tag, on the node owning its slot).

use std::collections::BTreeSet;

use popoto::testing::TestCluster;
use popoto::{Backend, BackendConfig, Db};
use popoto_core::keys::tag;

/// A `Db` on the cluster shared by this binary's tests (cluster layout). Each test keeps to
/// tenants named after it, so tests sharing the cluster never meet.
pub fn shared_db() -> Db {
    db_on(TestCluster::shared())
}

/// A `Db` on `cluster`, cluster layout.
pub fn db_on(cluster: &TestCluster) -> Db {
    Db::with_config(BackendConfig::cluster(cluster.urls())).unwrap_or_else(|e| panic!("{e}"))
}

/// The `KEYS` pattern of every key of `tenant`: `{<tag>}*`.
pub fn tenant_pattern(tenant: &str) -> String {
    format!("{{{}}}*", tag("", Some(tenant)))
}

/// Every key of `tenant` on the cluster's masters, sorted.
pub fn tenant_keys(cluster: &TestCluster, tenant: &str) -> Vec<String> {
    cluster
        .keys(&tenant_pattern(tenant))
        .unwrap_or_else(|e| panic!("KEYS of {tenant}: {e}\n{}", cluster.log()))
}

/// Runs one raw command through `db`'s backend (routed to its key's node).
pub async fn raw<T: redis::FromRedisValue + Send>(db: &Db, cmd: &redis::Cmd) -> T {
    backend(db)
        .await
        .query("test", "-", cmd)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `db`'s backend.
pub async fn backend(db: &Db) -> Backend {
    db.admin().backend().await.unwrap_or_else(|e| panic!("{e}"))
}

/// Members of a set or sorted set (empty for another type).
async fn members(db: &Db, key: &str) -> BTreeSet<String> {
    let ty: String = raw(db, redis::cmd("TYPE").arg(key)).await;
    let list: Vec<String> = match ty.as_str() {
        "set" => raw(db, redis::cmd("SMEMBERS").arg(key)).await,
        "zset" => raw(db, redis::cmd("ZRANGE").arg(key).arg(0).arg(-1)).await,
        _ => Vec::new(),
    };
    list.into_iter().collect()
}

/// Instance keys of `model` for `tenant` and the members of each of its index keys.
pub struct Footprint {
    /// Instance hashes (`{tag}<Model>:…`).
    pub instances: BTreeSet<String>,
    /// Index keys (`{tag}$<Kind>:<Model>…`) with their members.
    pub indexes: Vec<(String, BTreeSet<String>)>,
}

/// The raw footprint of `model` under `tenant`'s tag.
pub async fn footprint(cluster: &TestCluster, db: &Db, tenant: &str, model: &str) -> Footprint {
    let prefix = format!("{{{}}}", tag("", Some(tenant)));
    let mut instances = BTreeSet::new();
    let mut indexes = Vec::new();
    for key in tenant_keys(cluster, tenant) {
        let rest = &key[prefix.len()..];
        if rest.starts_with(&format!("{model}:")) {
            instances.insert(key);
        } else if let Some(index) = rest.strip_prefix('$') {
            if index.split(':').nth(1) == Some(model) {
                let m = members(db, &key).await;
                indexes.push((key, m));
            }
        }
    }
    Footprint { instances, indexes }
}

/// Asserts that every instance of `model` under `tenant` is whole: each is in its class set
/// and every index member names an existing instance; with `every_index`, each index holds
/// exactly the instances (a model whose indexes all cover every instance). Returns the
/// instance keys.
pub async fn assert_all_or_nothing(
    cluster: &TestCluster,
    db: &Db,
    tenant: &str,
    model: &str,
    every_index: bool,
) -> BTreeSet<String> {
    let fp = footprint(cluster, db, tenant, model).await;
    let class = fp
        .indexes
        .iter()
        .find(|(k, _)| k.ends_with(&format!("$Class:{model}")));
    match class {
        Some((_, members)) => assert_eq!(members, &fp.instances, "{tenant}: class set"),
        None => assert!(fp.instances.is_empty(), "{tenant}: no class set"),
    }
    for (key, members) in &fp.indexes {
        if every_index {
            assert_eq!(members, &fp.instances, "{tenant}: index {key}");
        } else {
            let orphans: Vec<_> = members.difference(&fp.instances).collect();
            assert!(orphans.is_empty(), "{tenant}: {key} names {orphans:?}");
        }
    }
    fp.instances
}

//! Models and helpers of the shared-model and change-feed tests.
#![allow(dead_code)]

use popoto::shared::{Access, Merge, SharedId};
use popoto::{Db, Model};

use crate::support::tid;

/// A document several tenants co-edit.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
pub struct Doc {
    pub title: String,
    pub body: String,
    pub votes: i64,
}

/// A counter merged by a custom additive strategy.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
pub struct Counter {
    pub total: i64,
    pub writes: i64,
}

/// A private model whose writes go to the tenant's change feed.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(change_feed)]
pub struct Task {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(key)]
    pub id: String,
    pub title: String,
    #[popoto(sorted, partition_by = "org")]
    pub rank: i64,
}

/// A private model without a change feed.
#[derive(Model, Debug, Clone, PartialEq, Default)]
pub struct Quiet {
    #[popoto(key, tenant)]
    pub org: String,
    #[popoto(key)]
    pub id: String,
}

pub fn doc(title: &str) -> Doc {
    Doc {
        title: title.into(),
        body: "b".into(),
        votes: 0,
    }
}

/// Shares `value` and subscribes each tenant with its access.
pub async fn share_with(db: &Db, value: &Doc, merge: Merge, subs: &[(&str, Access)]) -> SharedId {
    let host = db.admin().shared();
    let id = host
        .share(value, merge)
        .await
        .unwrap_or_else(|e| panic!("share: {e}"));
    for (t, a) in subs {
        host.subscribe::<Doc>(&tid(t), &id, *a)
            .await
            .unwrap_or_else(|e| panic!("subscribe {t}: {e}"));
    }
    id
}

/// One stream entry: its id and its (field, bytes) pairs.
pub type Entry = (String, Vec<(String, Vec<u8>)>);

/// Entries of a stream, oldest first.
pub fn xrange(server: &popoto::testing::TestRedis, key: &str) -> Vec<Entry> {
    let reply: Vec<Entry> = redis::cmd("XRANGE")
        .arg(key)
        .arg("-")
        .arg("+")
        .query(&mut server.raw())
        .unwrap_or_else(|e| panic!("XRANGE {key}: {e}"));
    reply
}

/// The text of field `name` of a stream entry.
pub fn field<'a>(entry: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    entry
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_slice())
}

/// The `version` field of each entry, as a number.
pub fn versions(entries: &[Entry]) -> Vec<u64> {
    entries
        .iter()
        .map(|(id, f)| {
            let v = field(f, "version").unwrap_or_else(|| panic!("entry {id} has no version"));
            String::from_utf8_lossy(v)
                .parse()
                .unwrap_or_else(|e| panic!("version of entry {id}: {e}"))
        })
        .collect()
}

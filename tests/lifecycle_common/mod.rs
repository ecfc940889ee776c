//! What the lifecycle tests share: the model set, deterministic tenant data, seeded servers.
#![allow(dead_code)]

use popoto::testing::TestRedis;
use popoto::{Db, ModelSet};

use crate::support::*;

/// Every model of the tests' tenants (and the untenanted `Note`).
pub fn models() -> ModelSet {
    ModelSet::new()
        .with::<Episode>()
        .with::<Item>()
        .with::<Memory>()
        .with::<Claim>()
        .with::<Note>()
}

/// Deterministic data of one tenant (explicit auto keys).
pub async fn seed(db: &Db, tenant: &str) {
    let t = db.tenant(tenant).unwrap();
    for i in 0..25 {
        let id = format!(
            "{:032x}",
            i as u128
                + (tenant.len() as u128) * 1000
                + tenant.bytes().map(u128::from).sum::<u128>() * 100_000
        );
        t.create(Episode {
            episode_id: id,
            ..episode("", &format!("{tenant} {i}"), i as f64 * 0.5, i % 4)
        })
        .await
        .unwrap();
        t.create(Item {
            sku: format!("{tenant}#{i}"),
            region: ["eu", "us"][i as usize % 2].into(),
            level: i,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    for i in 0..5 {
        let m = t
            .create(Memory {
                key: format!("{tenant}~m{i}"),
                certainty: 0.5,
                ..Default::default()
            })
            .await
            .unwrap();
        let c = t.confidence(&m, Memory::certainty()).unwrap();
        for s in [0.9, 0.2, 1.0] {
            c.update(s).await.unwrap();
        }
        let claim = t
            .create(Claim {
                id: format!("c{i}"),
                topic: "sky".into(),
                belief: 0.5,
                ..Default::default()
            })
            .await
            .unwrap();
        t.confidence(&claim, Claim::belief())
            .unwrap()
            .update(0.7)
            .await
            .unwrap();
    }
}

/// Tenants with hostile ids: prefixes, globs and separators of each other.
pub const TENANTS: &[&str] = &["acme", "a", "ab", "a*", "a:b", "[ab]", "umbrella:eu-1"];

/// A private server with one shared `Note` and every tenant of [`TENANTS`] but `except`.
pub async fn seeded(except: Option<&str>) -> (TestRedis, Db) {
    let (server, db) = setup().await;
    seed_all_but(&db, except).await;
    (server, db)
}

/// One shared `Note` and every tenant of [`TENANTS`] but `except`, written through `db`.
pub async fn seed_all_but(db: &Db, except: Option<&str>) {
    db.unscoped()
        .save_at(
            &Note::key_of("0".repeat(32)),
            &Note {
                text: "shared".into(),
                stars: 1,
            },
        )
        .await
        .unwrap();
    for t in TENANTS.iter().filter(|t| Some(**t) != except) {
        seed(db, t).await;
    }
}

/// `n` more items of `tenant` (skus unique across tenants), created in bulk: enough rows that
/// an import of the tenant takes several batches.
pub async fn seed_items(db: &Db, tenant: &str, n: usize) {
    let items: Vec<Item> = (0..n)
        .map(|i| Item {
            sku: format!("{tenant}/bulk/{i}"),
            region: ["eu", "us", "ap"][i % 3].into(),
            level: i as i64,
            ..Default::default()
        })
        .collect();
    db.tenant(tenant)
        .unwrap()
        .create_many(items)
        .await
        .unwrap_or_else(|e| panic!("seeding {n} items of {tenant}: {e}"));
}

/// The records of an export stream.
pub fn records(stream: &[u8]) -> Vec<popoto::ExportRecord> {
    let mut input = stream;
    let mut out = Vec::new();
    while !input.is_empty() {
        let r: popoto::ExportRecord = rmp_serde::from_read(&mut input)
            .unwrap_or_else(|e| panic!("record {} of the stream: {e}", out.len()));
        out.push(r);
    }
    out
}

//! `Dynamic` against what popoto 1.10.1 writes (`tests/interop/write.py`, every field type of
//! `KitchenSink` and `Episode`): `get_fields` reads every field of every instance without the
//! struct, and each value written back is the byte string popoto wrote.

#[allow(dead_code)]
mod interop_support;
mod support;

use interop_support::python_write;
use popoto::codec::Value;
use popoto::{Key, Model};
use support::{hgetall, setup};

/// `KitchenSink` of models.py, its key fields only: `get_fields` needs no other.
#[derive(Model, Debug, Clone, Default)]
struct KitchenSink {
    #[popoto(key, tenant)]
    tenant: String,
    #[popoto(unique_key)]
    sku: String,
}

/// `Episode` of models.py, its key fields only.
#[derive(Model, Debug, Clone, Default)]
struct Episode {
    #[popoto(key, tenant)]
    project_id: String,
    #[popoto(auto_key)]
    episode_id: String,
}

async fn check<M: Model>(db: &popoto::Db, server: &popoto::testing::TestRedis, keys: &[String]) {
    assert!(!keys.is_empty());
    for k in keys {
        let key = Key::<M>::parse(k).unwrap();
        let tenant = key.tenant().unwrap().to_owned();
        let fields = db
            .tenant(&tenant)
            .unwrap()
            .get_fields(&key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{k}: no instance"));
        let raw = hgetall(server, k);
        assert_eq!(fields.len(), raw.len(), "{k}");
        for (name, bytes) in raw {
            let value = &fields[&name];
            let mut again = Vec::new();
            value.encode(&mut again).unwrap();
            assert_eq!(again, bytes, "{k} {name}: {value:?}");
        }
    }
}

#[tokio::test]
async fn every_field_popoto_writes_reads_without_a_struct_and_writes_back_unchanged() {
    let (server, db) = setup().await;
    let written = python_write(server.url());
    let keys = |model: &str| -> Vec<String> {
        written[model]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect()
    };
    check::<KitchenSink>(&db, &server, &keys("KitchenSink")).await;
    check::<Episode>(&db, &server, &keys("Episode")).await;
}

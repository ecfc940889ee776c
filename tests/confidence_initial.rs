//! Confidence fields at create: a field left at `f64`'s default (`..Default::default()`) is
//! stored as its declared `initial`, as popoto stores an unset `ConfidenceField`; a hash
//! without the field decodes to `initial`. (`tests/interop_confidence_bytes.rs` checks the same
//! against popoto itself.)

mod support;

use support::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hget(server: &popoto::testing::TestRedis, key: &str, field: &str) -> Option<Vec<u8>> {
    raw_cmd(server, redis::cmd("HGET").arg(key).arg(field))
}

/// Hex of msgpack float64 `v`, as a hash field of the instance stores it.
fn f64_hex(v: f64) -> String {
    format!("cb{:016x}", v.to_bits())
}

fn instance_field(server: &popoto::testing::TestRedis, key: &str, field: &str) -> String {
    hex(&hget(server, key, field).unwrap_or_else(|| panic!("{key} has no field {field}")))
}

#[tokio::test]
async fn confidence_fields_left_at_default_are_created_with_their_initial() {
    let (server, db) = setup().await;
    let atlas = db.tenant("atlas").unwrap();
    // Memory's initial is 0.5; `..Default::default()` leaves `certainty` at 0.0.
    let m = atlas
        .create(Memory {
            key: "unset".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(m.certainty, 0.5, "the returned value holds what was stored");
    assert_eq!(
        instance_field(&server, "Memory:unset:atlas", "certainty"),
        f64_hex(0.5),
        "popoto stores an unset ConfidenceField as its initial_confidence"
    );
    let k = Memory::key_of("atlas", "unset");
    assert_eq!(atlas.get(&k).await.unwrap().unwrap().certainty, 0.5);
    // A value given explicitly is kept.
    atlas
        .create(Memory {
            key: "given".into(),
            certainty: 0.9,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        instance_field(&server, "Memory:given:atlas", "certainty"),
        f64_hex(0.9)
    );
    // Bulk creates too (Belief's initial is 0.25).
    let created = atlas
        .create_many(
            (0..3)
                .map(|i| Belief {
                    name: format!("b{i}"),
                    ..Default::default()
                })
                .collect(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(|b| b.strength == 0.25), "{created:?}");
    for i in 0..3 {
        assert_eq!(
            instance_field(&server, &format!("Belief:b{i}:atlas"), "strength"),
            f64_hex(0.25)
        );
    }
    // A save writes the value as it is: 0.0 read back from Redis stays 0.0.
    atlas
        .save(&Memory {
            project: "atlas".into(),
            key: "unset".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        instance_field(&server, "Memory:unset:atlas", "certainty"),
        f64_hex(0.0)
    );
    // A hash without the field (written by an older popoto) decodes to the initial, as popoto
    // decodes it.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HDEL")
            .arg("Memory:unset:atlas")
            .arg("certainty"),
    );
    assert_eq!(atlas.get(&k).await.unwrap().unwrap().certainty, 0.5);
}

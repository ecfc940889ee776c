//! Confidence fields: companion hash entries, the server-side update, filtered reads.

mod support;

use popoto::confidence::{companion_key, companion_key_of};
use popoto::{ConfidenceState, Error, Model};
use support::*;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hget(server: &popoto::testing::TestRedis, key: &str, field: &str) -> Option<Vec<u8>> {
    raw_cmd(server, redis::cmd("HGET").arg(key).arg(field))
}

const INITIAL_05: &str = "84aa636f6e666964656e6365cb3fe0000000000000ae65766964656e63655f636f756e7400ae636f72726f626f726174696f6e7300ae636f6e74726164696374696f6e7300";
const INITIAL_05_BYTES: &[u8] = b"\x84\xaaconfidence\xcb\x3f\xe0\0\0\0\0\0\0\xaeevidence_count\0\xaecorroborations\0\xaecontradictions\0";

fn memory(key: &str) -> Memory {
    Memory {
        key: key.into(),
        content: "c".into(),
        certainty: 0.5,
        ..Default::default()
    }
}

#[tokio::test]
async fn save_initialises_delete_removes_and_resave_keeps_the_entry() {
    let (server, db) = setup().await;
    let atlas = db.tenant("atlas").unwrap();
    let m = atlas.create(memory("fact1")).await.unwrap();
    let companion = "$ConfidencF:Memory:certainty:data:atlas";
    assert_eq!(
        hex(&hget(&server, companion, "Memory:fact1:atlas").unwrap()),
        INITIAL_05
    );
    let c = atlas.confidence(&m, Memory::certainty()).unwrap();
    assert_eq!(c.companion_key(), companion);
    let s = c.update(0.9).await.unwrap();
    assert_eq!(s.confidence, 0.7);
    atlas.save(&m).await.unwrap();
    assert_eq!(
        c.state().await.unwrap().evidence_count,
        1,
        "a re-save never resets evidence"
    );
    atlas.delete(&m).await.unwrap();
    assert_eq!(hget(&server, companion, "Memory:fact1:atlas"), None);
    assert!(all_keys(&server).is_empty());
}

#[tokio::test]
async fn updates_follow_popotos_formula_to_the_bit() {
    let (server, db) = setup().await;
    let atlas = db.tenant("atlas").unwrap();
    let m = atlas.create(memory("fact1")).await.unwrap();
    let c = atlas.confidence(&m, Memory::certainty()).unwrap();
    let expected: [f64; 6] = [0.7, 0.5, 0.625, 0.6, 0.5, 0.5357142857142857];
    for (signal, want) in [0.9, 0.1, 1.0, 0.5, 0.0, 0.75].into_iter().zip(expected) {
        let s = c.update(signal).await.unwrap();
        assert_eq!(s.confidence.to_bits(), want.to_bits(), "after {signal}");
    }
    let s = c.state().await.unwrap();
    assert_eq!(
        s,
        ConfidenceState {
            confidence: 0.5357142857142857,
            evidence_count: 6,
            corroborations: 4,
            contradictions: 2
        }
    );
    // Stored as popoto's update script stores it (Redis' cmsgpack): its key order, and a
    // confidence that float32 cannot hold exactly as a float64.
    let raw = hget(
        &server,
        "$ConfidencF:Memory:certainty:data:atlas",
        "Memory:fact1:atlas",
    )
    .unwrap();
    assert_eq!(hex(&raw), lua_entry("cb3fe1249249249249", 6, 4, 2));

    let b = atlas
        .create(Belief {
            name: "b".into(),
            strength: 0.25,
            ..Default::default()
        })
        .await
        .unwrap();
    let cb = atlas.confidence(&b, Belief::strength()).unwrap();
    let expected: [f64; 5] = [0.625, 0.75, 0.8125, 0.859375, 0.64453125];
    for (signal, want) in [1.0, 1.0, 1.0, 1.0, 0.0].into_iter().zip(expected) {
        assert_eq!(
            cb.update(signal).await.unwrap().confidence.to_bits(),
            want.to_bits()
        );
    }
    // 0.64453125 is exact in float32: cmsgpack stores it in 4 bytes.
    let raw = hget(
        &server,
        "$ConfidencF:Belief:strength:data",
        "Belief:b:atlas",
    )
    .unwrap();
    assert_eq!(hex(&raw), lua_entry("ca3f250000", 5, 4, 1));
}

/// Hex of the entry popoto's update script stores: cmsgpack's key order (`corroborations,
/// confidence, contradictions, evidence_count`), `confidence` given as its msgpack hex.
fn lua_entry(confidence: &str, evidence: u8, pro: u8, con: u8) -> String {
    format!(
        "84ae{}{pro:02x}aa{}{confidence}ae{}{con:02x}ae{}{evidence:02x}",
        hex(b"corroborations"),
        hex(b"confidence"),
        hex(b"contradictions"),
        hex(b"evidence_count"),
    )
}

#[tokio::test]
async fn bad_signals_and_unsaved_instances_are_typed_errors() {
    let (_server, db) = setup().await;
    let atlas = db.tenant("atlas").unwrap();
    let m = atlas.create(memory("fact1")).await.unwrap();
    let c = atlas.confidence(&m, Memory::certainty()).unwrap();
    for bad in [-0.1, 1.5, f64::NAN, f64::INFINITY] {
        match c.update(bad).await {
            Err(Error::InvalidValue {
                model: "Memory",
                field: "certainty",
                ..
            }) => {}
            other => panic!("{bad}: {other:?}"),
        }
    }
    let ghost = Memory {
        project: "atlas".into(),
        ..memory("ghost")
    };
    match atlas
        .confidence(&ghost, Memory::certainty())
        .unwrap()
        .update(0.5)
        .await
    {
        Err(Error::NotFound {
            model: "Memory",
            key,
        }) => assert_eq!(key, "Memory:ghost:atlas"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        c.state().await.unwrap().evidence_count,
        0,
        "refused updates wrote nothing"
    );
    let other = db.tenant("zeus").unwrap();
    assert!(matches!(
        other.confidence(&m, Memory::certainty()),
        Err(Error::TenantMismatch { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_lose_nothing() {
    let (_server, db) = setup().await;
    let atlas = db.tenant("atlas").unwrap();
    let m = atlas.create(memory("hot")).await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..64 {
        let atlas = atlas.clone();
        let m = m.clone();
        tasks.push(tokio::spawn(async move {
            let c = atlas.confidence(&m, Memory::certainty()).unwrap();
            for i in 0..50 {
                c.update(if (t + i) % 3 == 0 { 0.2 } else { 0.8 })
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let s = atlas
        .confidence(&m, Memory::certainty())
        .unwrap()
        .state()
        .await
        .unwrap();
    assert_eq!(s.evidence_count, 3200);
    assert_eq!(s.corroborations + s.contradictions, 3200);
}

#[tokio::test]
async fn reads_accept_entries_written_by_popotos_lua() {
    let (server, db) = setup().await;
    let atlas = db.tenant("atlas").unwrap();
    let m = atlas.create(memory("fact1")).await.unwrap();
    // cmsgpack order and float32 confidence, as popoto's update script writes (0.5 → ca3f000000).
    let lua_bytes = b"\x84\xaecorroborations\x01\xaaconfidence\xca\x3f\x00\x00\x00\xaecontradictions\x02\xaeevidence_count\x03";
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("$ConfidencF:Memory:certainty:data:atlas")
            .arg("Memory:fact1:atlas")
            .arg(lua_bytes.as_slice()),
    );
    let c = atlas.confidence(&m, Memory::certainty()).unwrap();
    assert_eq!(
        c.state().await.unwrap(),
        ConfidenceState {
            confidence: 0.5,
            evidence_count: 3,
            corroborations: 1,
            contradictions: 2
        }
    );
    // An integral confidence is an int.
    let int_bytes =
        b"\x84\xaecorroborations\x01\xaaconfidence\x01\xaecontradictions\x00\xaeevidence_count\x01";
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("$ConfidencF:Memory:certainty:data:atlas")
            .arg("Memory:fact1:atlas")
            .arg(int_bytes.as_slice()),
    );
    assert_eq!(c.get().await.unwrap(), 1.0);
    // The update continues from there, and stores an integral confidence as an int too.
    assert_eq!(c.update(1.0).await.unwrap().evidence_count, 2);
    let raw = hget(
        &server,
        "$ConfidencF:Memory:certainty:data:atlas",
        "Memory:fact1:atlas",
    )
    .unwrap();
    assert_eq!(hex(&raw), lua_entry("01", 2, 2, 0));
    // Entries in Popoto's own writer layout (float64, declaration order) are read as well.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("$ConfidencF:Memory:certainty:data:atlas")
            .arg("Memory:fact1:atlas")
            .arg(INITIAL_05_BYTES),
    );
    assert_eq!(c.state().await.unwrap(), ConfidenceState::initial(0.5));
    assert_eq!(c.update(1.0).await.unwrap().confidence, 0.75);
}

#[tokio::test]
async fn partition_changes_and_key_moves_carry_the_entry() {
    let (server, db) = setup().await;
    let p = db.tenant("p").unwrap();
    let mut claim = p
        .create(Claim {
            id: "c1".into(),
            topic: "sky".into(),
            belief: 0.5,
            ..Default::default()
        })
        .await
        .unwrap();
    p.confidence(&claim, Claim::belief())
        .unwrap()
        .update(1.0)
        .await
        .unwrap();
    claim.topic = "sea".into();
    p.save(&claim).await.unwrap();
    assert_eq!(
        hget(&server, "$ConfidencF:Claim:belief:data:sky", "Claim:c1:p"),
        None
    );
    let moved = p.confidence(&claim, Claim::belief()).unwrap();
    assert_eq!(moved.companion_key(), "$ConfidencF:Claim:belief:data:sea");
    assert_eq!(moved.state().await.unwrap().evidence_count, 1);

    let renamed = p
        .move_key(
            &claim,
            Claim {
                id: "c2".into(),
                ..claim.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        hget(&server, "$ConfidencF:Claim:belief:data:sea", "Claim:c1:p"),
        None
    );
    assert_eq!(
        p.confidence(&renamed, Claim::belief())
            .unwrap()
            .state()
            .await
            .unwrap()
            .evidence_count,
        1
    );
}

#[tokio::test]
async fn key_helpers_refuse_ambiguous_partition_values() {
    let m = Memory {
        project: "umbrella:eu-1".into(),
        ..memory("k")
    };
    assert_eq!(
        companion_key_of(&m, Memory::certainty()).unwrap(),
        "$ConfidencF:Memory:certainty:data:umbrella:eu-1",
        "one partition field: popoto's unescaped key"
    );
    assert_eq!(
        companion_key(Memory::certainty(), &["a*"]).unwrap(),
        "$ConfidencF:Memory:certainty:data:a*"
    );
    assert!(matches!(
        companion_key(Memory::certainty(), &[]),
        Err(Error::MissingPartition { .. })
    ));
    assert_eq!(
        companion_key(Belief::strength(), &[]).unwrap(),
        "$ConfidencF:Belief:strength:data"
    );
    // Two partition fields: `a:b` + `c` and `a` + `b:c` would share a hash, so `:` is refused.
    assert_eq!(
        companion_key(Poll::trust(), &["a", "b"]).unwrap(),
        "$ConfidencF:Poll:trust:data:a:b"
    );
    for bad in [["a:b", "c"], ["a", "b:c"], ["", "c"]] {
        match companion_key(Poll::trust(), &bad) {
            Err(Error::InvalidValue {
                model: "Poll",
                field,
                ..
            }) => assert!(field == "project" || field == "region"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    let p = Poll {
        project: "a".into(),
        id: "1".into(),
        region: "b:c".into(),
        trust: 0.5,
    };
    assert!(matches!(
        companion_key_of(&p, Poll::trust()),
        Err(Error::InvalidValue {
            field: "region",
            ..
        })
    ));
}

#[tokio::test]
async fn ambiguous_companion_keys_are_refused_before_any_write() {
    let (server, db) = setup().await;
    let a = db.tenant("a").unwrap();
    let err = a
        .create(Poll {
            id: "1".into(),
            region: "b:c".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidValue {
                model: "Poll",
                field: "region",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(all_keys(&server).is_empty());
}

async fn tenants_see_their_own(names: &[&str], partitioned: bool) {
    let (_server, db) = setup().await;
    for t in names {
        let s = db.tenant(t).unwrap();
        for i in 0..3 {
            if partitioned {
                let m = s.create(memory(&format!("{t}-{i}"))).await.unwrap();
                s.confidence(&m, Memory::certainty())
                    .unwrap()
                    .update(0.9)
                    .await
                    .unwrap();
            } else {
                let b = s
                    .create(Belief {
                        name: format!("n{i}"),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                s.confidence(&b, Belief::strength())
                    .unwrap()
                    .update(0.9)
                    .await
                    .unwrap();
            }
        }
    }
    for t in names {
        let s = db.tenant(t).unwrap();
        let keys: Vec<String> = if partitioned {
            s.confidence_scan(Memory::certainty())
                .batch(2)
                .fetch_all()
                .await
                .unwrap()
                .iter()
                .map(|(k, _)| k.segments()[1].clone())
                .collect()
        } else {
            s.confidence_scan(Belief::strength())
                .batch(2)
                .fetch_all()
                .await
                .unwrap()
                .iter()
                .map(|(k, _)| k.segments()[1].clone())
                .collect()
        };
        assert_eq!(
            keys.len(),
            3,
            "tenant {t:?} sees exactly its 3 entries: {keys:?}"
        );
        assert!(keys.iter().all(|k| k == t), "tenant {t:?}: {keys:?}");
    }
}

#[tokio::test]
async fn hscan_reads_escape_glob_metacharacters_on_partitioned_hashes() {
    tenants_see_their_own(&["a*", "a?", "[ab]", "a\\", "a:b", "a", "b", "ab"], true).await;
}

#[tokio::test]
async fn hscan_reads_escape_glob_metacharacters_on_the_unpartitioned_hash() {
    tenants_see_their_own(&["a*", "a?", "[ab]", "a\\", "a:b", "a", "b", "ab"], false).await;
}

#[tokio::test]
async fn raw_patterns_are_for_admins_only() {
    let (_server, db) = setup().await;
    let s = db.tenant("a").unwrap();
    let b = s
        .create(Belief {
            name: "x".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    s.confidence(&b, Belief::strength())
        .unwrap()
        .update(1.0)
        .await
        .unwrap();
    // On a tenant handle `raw_pattern` does not exist (tests/ui/admin).
    let all = db
        .admin()
        .confidence_scan_raw(Belief::strength(), "Belief:*")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    assert!(matches!(
        db.unscoped()
            .confidence_scan(Belief::strength())
            .fetch_all()
            .await,
        Err(Error::NoTenant { .. })
    ));
}

/// A model keyed by Popoto's hidden `_auto_key`, with a confidence field partitioned by a
/// plain field.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Jotting {
    topic: String,
    text: String,
    #[popoto(confidence, partition_by = "topic")]
    trust: f64,
}

#[tokio::test]
async fn hidden_auto_key_models_update_through_their_key() {
    let (server, db) = setup().await;
    let (key, j) = db
        .unscoped()
        .create_keyed(Jotting {
            topic: "sky".into(),
            text: "blue".into(),
            trust: 0.5,
        })
        .await
        .unwrap();
    let (other_key, _) = db
        .unscoped()
        .create_keyed(Jotting {
            topic: "sky".into(),
            text: "grey".into(),
            trust: 0.5,
        })
        .await
        .unwrap();
    let companion = "$ConfidencF:Jotting:trust:data:sky";
    let member = key.redis_key();
    assert_eq!(hex(&hget(&server, companion, &member).unwrap()), INITIAL_05);

    // The value does not carry its key: the value-only handle says so instead of NotFound.
    assert!(matches!(
        db.unscoped().confidence(&j, Jotting::trust()),
        Err(Error::InvalidValue {
            model: "Jotting",
            field: "_auto_key",
            ..
        })
    ));
    let c = db
        .unscoped()
        .confidence_at(&key, &j, Jotting::trust())
        .unwrap();
    assert_eq!(c.companion_key(), companion);
    let s = c.update(0.9).await.unwrap();
    assert_eq!((s.confidence, s.evidence_count), (0.7, 1));
    assert_eq!(c.state().await.unwrap(), s);
    assert_eq!(
        ConfidenceState::decode(&hget(&server, companion, &member).unwrap(), 0.5).unwrap(),
        s,
        "the entry of this instance's key was updated"
    );
    assert_eq!(
        hex(&hget(&server, companion, &other_key.redis_key()).unwrap()),
        INITIAL_05,
        "the other instance's entry is untouched"
    );
    // Moved to another topic by save_at: the handle finds the entry in its new partition.
    db.unscoped()
        .save_at(
            &key,
            &Jotting {
                topic: "sea".into(),
                ..j.clone()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.update(0.1).await.unwrap().evidence_count, 2);
    assert_eq!(hget(&server, companion, &member), None);
    assert!(hget(&server, "$ConfidencF:Jotting:trust:data:sea", &member).is_some());

    // With declared key fields, a key that does not match the value is refused.
    let atlas = db.tenant("atlas").unwrap();
    let m = atlas.create(memory("fact1")).await.unwrap();
    let k1 = Memory::key_of("atlas", "fact1");
    let k2 = Memory::key_of("atlas", "fact2");
    assert!(atlas.confidence_at(&k1, &m, Memory::certainty()).is_ok());
    assert!(matches!(
        atlas.confidence_at(&k2, &m, Memory::certainty()),
        Err(Error::InvalidValue {
            model: "Memory",
            ..
        })
    ));
}

//! Writes of one instance: popoto's layout, escaping, existing keys, unique values, partition
//! moves, key moves, and atomicity (a write that would fail midway writes nothing, a failed
//! create undoes exactly what it wrote).

use popoto::{Error, Key};

use crate::support::*;

#[tokio::test]
async fn create_writes_popoto_layout_and_get_reads_it_back() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let ep = acme.create(episode("", "kickoff", 0.8, 3)).await.unwrap();
    assert_eq!(
        ep.project_id, "acme",
        "the tenant handle fills the tenant field"
    );
    assert_eq!(ep.episode_id.len(), 32);
    assert!(ep
        .episode_id
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));

    let key = format!("Episode:{}:acme", ep.episode_id);
    let mut expected = vec![
        "$Class:Episode".to_string(),
        "$KeyF:Episode:project_id:acme".to_string(),
        "$SortF:Episode:rank".to_string(),
        "$SortF:Episode:score:acme".to_string(),
        key.clone(),
    ];
    expected.sort();
    assert_eq!(all_keys(&server), expected);
    assert_eq!(smembers(&server, "$Class:Episode"), [key.as_str()]);
    assert_eq!(
        smembers(&server, "$KeyF:Episode:project_id:acme"),
        [key.as_str()]
    );
    assert_eq!(
        zrange(&server, "$SortF:Episode:score:acme"),
        [(key.clone(), 0.8)]
    );
    assert_eq!(zrange(&server, "$SortF:Episode:rank"), [(key.clone(), 3.0)]);
    let hash = hgetall(&server, &key);
    let fields: Vec<&str> = hash.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["episode_id", "project_id", "rank", "score", "title"]
    );
    assert_eq!(hash[1].1, b"\xa4acme");
    assert_eq!(hash[2].1, [0x03]);
    assert_eq!(hash[4].1, b"\xa7kickoff");

    let k = Episode::key_of("acme", ep.episode_id.clone());
    assert_eq!(k.redis_key(), key);
    assert_eq!(acme.get(&k).await.unwrap(), Some(ep.clone()));
    assert!(acme.exists(&k).await.unwrap());
    assert!(acme.delete(&ep).await.unwrap());
    assert!(!acme.exists(&k).await.unwrap());
    assert_eq!(acme.get(&k).await.unwrap(), None);
    assert!(
        all_keys(&server).is_empty(),
        "delete removes the hash and every index entry"
    );
    assert!(
        !acme.delete(&ep).await.unwrap(),
        "deleting twice reports absence"
    );
}

#[tokio::test]
async fn tenant_values_are_escaped_in_keys() {
    let (server, db) = setup().await;
    let t = db.tenant("umbrella:eu-1").unwrap();
    let ep = t.create(episode("", "x", 1.0, 1)).await.unwrap();
    let key = format!("Episode:{}:umbrella{{&#58;}}eu/-1", ep.episode_id);
    assert_eq!(
        smembers(&server, "$KeyF:Episode:project_id:umbrella{&#58;}eu/-1"),
        [key.as_str()]
    );
    assert_eq!(
        zrange(&server, "$SortF:Episode:score:umbrella{&#58;}eu/-1"),
        [(key.clone(), 1.0)]
    );
    let k: Key<Episode> = Key::parse(&key).unwrap();
    assert_eq!(k.segments()[1], "umbrella:eu-1");
    assert_eq!(t.get(&k).await.unwrap().unwrap().title, "x");
}

#[tokio::test]
async fn create_refuses_an_existing_key() {
    let (_server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let ep = acme.create(episode("", "a", 1.0, 1)).await.unwrap();
    let again = Episode {
        title: "b".into(),
        ..ep.clone()
    };
    match acme.create(again).await {
        Err(Error::AlreadyExists { model, key }) => {
            assert_eq!(model, "Episode");
            assert!(key.contains(&ep.episode_id));
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let k = Episode::key_of("acme", ep.episode_id.clone());
    assert_eq!(
        acme.get(&k).await.unwrap().unwrap().title,
        "a",
        "the failed create wrote nothing"
    );
}

#[tokio::test]
async fn unique_keys_are_enforced_on_the_server_and_name_model_field_value() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let globex = db.tenant("globex").unwrap();
    acme.create(Item {
        sku: "a-1".into(),
        region: "eu".into(),
        level: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let before = all_keys(&server);
    let dup = Item {
        sku: "a-1".into(),
        region: "us".into(),
        level: 2,
        ..Default::default()
    };
    match globex.create(dup.clone()).await {
        Err(Error::UniqueViolation {
            model,
            field,
            value,
            existing,
        }) => {
            assert_eq!((model, field, value.as_str()), ("Item", "sku", "a-1"));
            // Uniqueness is model-wide, but a tenant handle does not show another tenant's key.
            assert_eq!(existing, popoto::OTHER_TENANT);
        }
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    assert_eq!(
        all_keys(&server),
        before,
        "nothing of the refused instance was written"
    );
    // Saving the holder itself again is fine.
    let mut same = Item {
        tenant: "acme".into(),
        sku: "a-1".into(),
        region: "eu".into(),
        level: 5,
        note: None,
    };
    acme.save(&same).await.unwrap();
    same.level = 6;
    acme.save(&same).await.unwrap();
}

#[tokio::test]
async fn save_updates_and_moves_members_when_a_partition_value_changes() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let mut item = acme
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            level: 3,
            note: Some("n".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        zrange(&server, "$SortF:Item:level:acme:eu"),
        [("Item:s1:acme".to_string(), 3.0)]
    );
    item.region = "us".into();
    item.level = 7;
    item.note = None;
    acme.save(&item).await.unwrap();
    assert!(
        zrange(&server, "$SortF:Item:level:acme:eu").is_empty(),
        "moved out of the old partition"
    );
    assert_eq!(
        zrange(&server, "$SortF:Item:level:acme:us"),
        [("Item:s1:acme".to_string(), 7.0)]
    );
    let got = acme
        .get(&Item::key_of("acme", "s1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, item);
    assert_eq!(
        hgetall(&server, "Item:s1:acme")
            .iter()
            .find(|(f, _)| f == "note")
            .unwrap()
            .1,
        [0xc0]
    );
    // Saving an instance that does not exist yet inserts it.
    let fresh = Item {
        tenant: "acme".into(),
        sku: "s2".into(),
        region: "eu".into(),
        level: 1,
        note: None,
    };
    acme.save(&fresh).await.unwrap();
    assert_eq!(acme.query::<Item>().count().await.unwrap(), 2);
}

#[tokio::test]
async fn move_key_moves_hash_and_indexes_atomically() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let old = acme
        .create(Item {
            sku: "old".into(),
            region: "eu".into(),
            level: 2,
            ..Default::default()
        })
        .await
        .unwrap();
    // A foreign field written by another service survives the move.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg("Item:old:acme")
            .arg("foreign")
            .arg("x"),
    );
    let new = Item {
        sku: "new".into(),
        ..old.clone()
    };
    acme.move_key(&old, new.clone()).await.unwrap();
    assert!(acme
        .get(&Item::key_of("acme", "old"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        acme.get(&Item::key_of("acme", "new")).await.unwrap(),
        Some(new.clone())
    );
    assert_eq!(smembers(&server, "$Class:Item"), ["Item:new:acme"]);
    assert_eq!(
        smembers(&server, "$KeyF:Item:tenant:acme"),
        ["Item:new:acme"]
    );
    assert!(smembers(&server, "$UniqueKeyF:Item:sku:old").is_empty());
    assert_eq!(
        smembers(&server, "$UniqueKeyF:Item:sku:new"),
        ["Item:new:acme"]
    );
    assert_eq!(
        zrange(&server, "$SortF:Item:level:acme:eu"),
        [("Item:new:acme".to_string(), 2.0)]
    );
    assert!(hgetall(&server, "Item:new:acme")
        .iter()
        .any(|(f, _)| f == "foreign"));
    // Moving onto an existing key is refused and changes nothing.
    let other = acme
        .create(Item {
            sku: "other".into(),
            region: "eu".into(),
            level: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let before = all_keys(&server);
    let err = acme
        .move_key(
            &new,
            Item {
                sku: "other".into(),
                ..new.clone()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    assert_eq!(all_keys(&server), before);
    assert!(acme.exists(&Item::key_of("acme", other.sku)).await.unwrap());
}

#[tokio::test]
async fn a_write_that_would_fail_midway_writes_nothing() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    // Another program left a string where the rank zset lives.
    raw_cmd::<()>(
        &server,
        redis::cmd("SET").arg("$SortF:Episode:rank").arg("oops"),
    );
    let err = acme.create(episode("", "t", 1.0, 1)).await.unwrap_err();
    match err {
        Error::WrongType { model, key, found } => {
            assert_eq!(
                (model, key.as_str(), found.as_str()),
                ("Episode", "$SortF:Episode:rank", "string")
            );
        }
        other => panic!("expected WrongType, got {other:?}"),
    }
    assert_eq!(
        all_keys(&server),
        ["$SortF:Episode:rank"],
        "no hash and no index entry was written"
    );
}

#[tokio::test]
async fn an_update_that_moves_no_partition_is_one_round_trip() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let mut item = acme
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            level: 3,
            ..Default::default()
        })
        .await
        .unwrap();
    let trips = || async { db.admin().backend().await.unwrap().round_trips() };
    let before = trips().await;
    item.level = 4;
    acme.save(&item).await.unwrap();
    assert_eq!(trips().await - before, 1, "same partition: the write alone");
    let before = trips().await;
    item.region = "us".into();
    acme.save(&item).await.unwrap();
    assert_eq!(trips().await - before, 3, "moved: refused, read, written");
    assert_eq!(
        zrange(&server, "$SortF:Item:level:acme:us"),
        [("Item:s1:acme".to_string(), 4.0)]
    );
    assert!(zrange(&server, "$SortF:Item:level:acme:eu").is_empty());
    // A stale value (region changed by someone else) still deletes the right entries.
    let stale = Item {
        region: "eu".into(),
        ..item.clone()
    };
    assert!(acme.delete(&stale).await.unwrap());
    assert!(all_keys(&server).is_empty(), "{:?}", all_keys(&server));
}

#[tokio::test]
async fn a_failed_create_undoes_only_what_it_wrote() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    // An orphan entry left by an earlier writer, and a wrong type on the last index key.
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$KeyF:Item:tenant:acme")
            .arg("Item:s1:acme"),
    );
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg("$SortF:Item:level:acme:eu")
            .arg("oops"),
    );
    let before = dump(&server);
    let err = acme
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            level: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::WrongType { ref key, .. } if key == "$SortF:Item:level:acme:eu"),
        "{err:?}"
    );
    assert_eq!(
        dump(&server),
        before,
        "the hash, $Class and the unique set were undone; the orphan stays"
    );
}

#[tokio::test]
async fn a_failed_create_restores_the_score_it_overwrote() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let id = "e".repeat(32);
    let member = Episode::key_of("acme", id.clone()).redis_key();
    // A stale member of the score partition with its own score, and a wrong type on the
    // unpartitioned rank zset written after it.
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:acme")
            .arg(5)
            .arg(&member),
    );
    raw_cmd::<()>(
        &server,
        redis::cmd("SET").arg("$SortF:Episode:rank").arg("x"),
    );
    let before = dump(&server);
    let err = acme
        .create(Episode {
            episode_id: id,
            ..episode("", "t", 0.25, 1)
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongType { .. }), "{err:?}");
    assert_eq!(dump(&server), before, "the stale member keeps its score 5");
}

/// An auto-keyed model with a confidence companion and a sorted field: its creates take the
/// create script's fast path (fresh key, only set, zset and companion entries) too.
#[derive(popoto::Model, Debug, Clone, PartialEq, Default)]
struct Note {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(auto_key)]
    id: String,
    #[popoto(confidence)]
    trust: f64,
    #[popoto(sorted, partition_by = "org")]
    at: i64,
}

/// A wrong type on each index key in turn of a fresh create: refused, typed, naming the key,
/// and every entry written before it undone (the database as it was).
async fn fresh_create_fails_whole<M: popoto::Model + Clone + std::fmt::Debug>(value: M) {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(value.clone()).await.unwrap();
    let written = all_keys(&server);
    raw_cmd::<()>(&server, &redis::cmd("FLUSHDB"));
    let index_keys: Vec<&String> = written.iter().filter(|k| k.starts_with('$')).collect();
    assert!(index_keys.len() >= 3, "{written:?}");
    for key in index_keys {
        raw_cmd::<()>(&server, redis::cmd("SET").arg(key).arg("x"));
        let before = dump(&server);
        let err = acme.create(value.clone()).await.unwrap_err();
        assert!(
            matches!(err, Error::WrongType { key: ref k, .. } if k == key),
            "{key}: {err:?}"
        );
        assert_eq!(dump(&server), before, "{key}: the entries before it undone");
        raw_cmd::<i64>(&server, redis::cmd("DEL").arg(key));
    }
    acme.create(value).await.unwrap();
    assert_eq!(all_keys(&server).len(), written.len());
}

#[tokio::test]
async fn a_failed_fresh_create_undoes_every_entry_it_added() {
    fresh_create_fails_whole(episode("", "t", 0.25, 1)).await;
    fresh_create_fails_whole(Note {
        trust: 0.5,
        at: 7,
        ..Default::default()
    })
    .await;
}

/// The type of `key` on `server`.
fn key_type(server: &popoto::testing::TestRedis, key: &str) -> String {
    let t: redis::Value = raw_cmd(server, redis::cmd("TYPE").arg(key));
    match t {
        redis::Value::SimpleString(s) => s,
        other => panic!("TYPE {key}: {other:?}"),
    }
}

/// The generated fresh-create script's rare paths, run with a known key: an entry already
/// there is kept (a zset member takes the new score); a failed write after such an entry
/// leaves the database as it was, the old score included.
#[tokio::test]
async fn a_fresh_create_script_keeps_entries_already_there_and_undoes_only_its_own() {
    let (server, _db) = setup().await;
    let value = Note {
        org: "acme".into(),
        id: "n1".into(),
        trust: 0.5,
        at: 7,
    };
    let eval = popoto::testing::fresh_create_eval(&value).unwrap();
    let written: i64 = raw_cmd(&server, &eval);
    assert!(written > 0);
    let keys = all_keys(&server);
    let instance = keys.iter().find(|k| !k.starts_with('$')).unwrap().clone();
    let of = |t: &str| -> Vec<String> {
        keys.iter()
            .filter(|k| k.starts_with('$') && key_type(&server, k) == t)
            .cloned()
            .collect()
    };
    let (sets, zsets, hashes) = (of("set"), of("zset"), of("hash"));
    assert!(
        !sets.is_empty() && zsets.len() == 1 && hashes.len() == 1,
        "{keys:?}"
    );
    let zset = &zsets[0];
    let full = dump(&server);

    // Entries already there: kept, the zset member rescored; the end state is a full create's.
    raw_cmd::<()>(&server, &redis::cmd("FLUSHDB"));
    raw_cmd::<i64>(&server, redis::cmd("ZADD").arg(zset).arg(99).arg(&instance));
    raw_cmd::<i64>(&server, redis::cmd("SADD").arg(&sets[0]).arg(&instance));
    let _: i64 = raw_cmd(&server, &eval);
    assert_eq!(dump(&server), full);

    // A failed write after a kept entry: everything as it was, the old score back.
    for wrong in sets.iter().chain(&hashes) {
        raw_cmd::<()>(&server, &redis::cmd("FLUSHDB"));
        raw_cmd::<i64>(&server, redis::cmd("ZADD").arg(zset).arg(99).arg(&instance));
        raw_cmd::<()>(&server, redis::cmd("SET").arg(wrong).arg("x"));
        let before = dump(&server);
        let reply: redis::Value = raw_cmd(&server, &eval);
        assert!(
            format!("{reply:?}").contains("wrongtype"),
            "{wrong}: {reply:?}"
        );
        assert_eq!(dump(&server), before, "{wrong}");
    }
}

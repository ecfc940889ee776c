//! The core ORM against a private redis-server: layout, atomic writes, queries, scopes, errors.

mod support;

use popoto::{BulkError, Error, Key};
use support::*;

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
async fn bulk_create_pipelines_and_reports_failures_per_instance() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let items: Vec<Item> = (0..1500)
        .map(|i| Item {
            sku: format!("s{i}"),
            region: "eu".into(),
            level: i,
            ..Default::default()
        })
        .collect();
    let before = db.admin().backend().await.unwrap().round_trips();
    let created = acme.create_many(items).await.unwrap();
    assert!(
        db.admin().backend().await.unwrap().round_trips() - before <= 3,
        "pipelined: one round trip per batch of 1000"
    );
    assert_eq!(created.len(), 1500);
    assert_eq!(acme.query::<Item>().count().await.unwrap(), 1500);
    assert_eq!(smembers(&server, "$Class:Item").len(), 1500);

    let mut batch: Vec<Item> = (1500..1510)
        .map(|i| Item {
            sku: format!("s{i}"),
            region: "eu".into(),
            level: i,
            ..Default::default()
        })
        .collect();
    batch[3].sku = "s7".into(); // taken
    match acme.create_many(batch).await {
        Err(BulkError {
            model,
            written,
            failed,
        }) => {
            assert_eq!(model, "Item");
            // Every record comes back: the nine written, in input order, and the refused one.
            let idx: Vec<usize> = written.iter().map(|(i, _)| *i).collect();
            assert_eq!(idx, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
            assert!(written
                .iter()
                .all(|(i, item)| item.level == 1500 + *i as i64));
            assert_eq!(failed.len(), 1);
            let (i, item, e) = &failed[0];
            assert_eq!((*i, item.sku.as_str()), (3, "s7"));
            assert!(matches!(
                e,
                Error::AlreadyExists { .. } | Error::UniqueViolation { .. }
            ));
        }
        other => panic!("expected a bulk error, got {other:?}"),
    }
    assert_eq!(
        acme.query::<Item>().count().await.unwrap(),
        1509,
        "the other nine were written"
    );
}

/// The batched path (partitions in the key): every failed check is that instance's error,
/// and a failed instance leaves nothing behind while the others are written whole.
#[tokio::test]
async fn batched_creates_report_exists_unique_and_wrong_type_per_instance() {
    let (server, db) = setup().await;
    let admin = db.admin();
    let memory = |project: &str, key: &str| Memory {
        project: project.into(),
        key: key.into(),
        content: format!("{project}/{key}"),
        certainty: 0.5,
    };
    admin.create(memory("acme", "taken")).await.unwrap();
    admin.create(memory("hooli", "unique")).await.unwrap();
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg("$ConfidencF:Memory:certainty:data:globex")
            .arg("x"),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("RPUSH")
            .arg("$KeyF:Memory:project:initech")
            .arg("x"),
    );
    let before = all_keys(&server);
    let mut batch: Vec<Memory> = Vec::new();
    for project in ["acme", "globex", "initech"] {
        batch.extend((0..5).map(|i| memory(project, &format!("{project}{i}"))));
    }
    batch[1] = memory("acme", "taken");
    batch[2] = memory("acme", "unique");
    let Err(Error::Bulk {
        model,
        total,
        failed,
    }) = admin.create_many(batch.clone()).await.map_err(Error::from)
    else {
        panic!("expected a bulk error");
    };
    assert_eq!((model, total), ("Memory", 15));
    let failed: Vec<(usize, String)> = failed
        .into_iter()
        .map(|(i, e)| {
            let kind = match e {
                Error::AlreadyExists { .. } => "exists".to_owned(),
                Error::UniqueViolation { .. } => "unique".to_owned(),
                Error::WrongType { key, .. } => format!("wrongtype {key}"),
                other => format!("{other:?}"),
            };
            (i, kind)
        })
        .collect();
    let mut expected = vec![(1, "exists".to_owned()), (2, "unique".to_owned())];
    expected.extend((5..10).map(|i| {
        (
            i,
            "wrongtype $ConfidencF:Memory:certainty:data:globex".to_owned(),
        )
    }));
    expected.extend((10..15).map(|i| (i, "wrongtype $KeyF:Memory:project:initech".to_owned())));
    assert_eq!(failed, expected);
    // The three acme instances written are whole; nothing else changed but their entries.
    let written: Vec<&Memory> = [0, 3, 4].iter().map(|&i| &batch[i]).collect();
    let acme = db.tenant("acme").unwrap();
    for m in &written {
        let key = Memory::key_of(m.project.clone(), m.key.clone());
        assert_eq!(acme.get(&key).await.unwrap().as_ref(), Some(*m));
    }
    let mut new_keys: Vec<String> = all_keys(&server)
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    new_keys.sort();
    let mut expected_keys: Vec<String> = written
        .iter()
        .flat_map(|m| {
            [
                Memory::key_of(m.project.clone(), m.key.clone()).redis_key(),
                format!("$UniqueKeyF:Memory:key:{}", m.key),
            ]
        })
        .collect();
    expected_keys.sort();
    assert_eq!(new_keys, expected_keys);
    let class = smembers(&server, "$Class:Memory");
    assert_eq!(class.len(), 2 + 3);
    assert_eq!(smembers(&server, "$KeyF:Memory:project:acme").len(), 1 + 3);
    assert_eq!(
        hlen(&server, "$ConfidencF:Memory:certainty:data:acme"),
        1 + 3
    );
}

/// A batch that repeats a key or a unique value still goes in order, as one-by-one writes
/// would: a key saved twice ends with its later value, and of two creates taking one unique
/// value the earlier wins, the later fails alone.
#[tokio::test]
async fn bulk_writes_that_repeat_keys_or_unique_values_apply_in_order() {
    let (server, db) = setup().await;
    let admin = db.admin();
    let memory = |i: usize, content: &str| Memory {
        project: ["acme", "globex"][i % 2].into(),
        key: format!("m{i}"),
        content: content.into(),
        certainty: 0.5,
    };
    let mut batch: Vec<Memory> = (0..1_200).map(|i| memory(i, "first")).collect();
    // Row 1,100 saves row 5 again; row 1,150 saves row 1,140 again (same call or next).
    batch[1_100] = memory(5, "second");
    batch[1_150] = memory(1_140, "second");
    admin.save_many(batch).await.unwrap();
    for i in [5, 1_140] {
        let key = Memory::key_of(memory(i, "").project, format!("m{i}"));
        let got = db.admin().get(&key).await.unwrap().unwrap();
        assert_eq!(got.content, "second", "m{i}: the later save wins");
    }
    // Rows 1,100 and 1,150 (acme) were replaced by the repeats.
    assert_eq!(smembers(&server, "$Class:Memory").len(), 1_198);
    let acme = db.tenant("acme").unwrap();
    assert_eq!(acme.query::<Memory>().count().await.unwrap(), 598);

    // Creates: the unique value `u7` is taken by row 7, then claimed again by row 900
    // (another tenant, so another key).
    redis::cmd("FLUSHDB").exec(&mut server.raw()).unwrap();
    let mut batch: Vec<Memory> = (0..1_000)
        .map(|i| Memory {
            key: format!("u{i}"),
            ..memory(i, "x")
        })
        .collect();
    batch[900] = Memory {
        project: "initech".into(),
        key: "u7".into(),
        content: "late".into(),
        certainty: 0.5,
    };
    let Err(Error::Bulk { failed, .. }) = admin.create_many(batch).await.map_err(Error::from)
    else {
        panic!("expected a bulk error");
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].0, 900);
    assert!(
        matches!(&failed[0].1, Error::UniqueViolation { field: "key", .. }),
        "{:?}",
        failed[0].1
    );
    assert_eq!(smembers(&server, "$Class:Memory").len(), 999);
    assert_eq!(
        smembers(&server, "$UniqueKeyF:Memory:key:u7"),
        [Memory::key_of("globex".to_owned(), "u7".to_owned()).redis_key()]
    );
    assert!(smembers(&server, "$KeyF:Memory:project:initech").is_empty());
}

#[tokio::test]
async fn save_many_moves_partitions_too() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let items: Vec<Item> = (0..20)
        .map(|i| Item {
            sku: format!("s{i}"),
            region: "eu".into(),
            level: i,
            ..Default::default()
        })
        .collect();
    let mut items = acme.create_many(items).await.unwrap();
    for it in items.iter_mut().take(5) {
        it.region = "us".into();
    }
    acme.save_many(items).await.unwrap();
    assert_eq!(zrange(&server, "$SortF:Item:level:acme:eu").len(), 15);
    assert_eq!(zrange(&server, "$SortF:Item:level:acme:us").len(), 5);
}

#[tokio::test]
async fn hidden_auto_key_models_work_through_keys() {
    let (server, db) = setup().await;
    let (key, note) = db
        .unscoped()
        .create_keyed(Note {
            text: "hi".into(),
            stars: 4,
        })
        .await
        .unwrap();
    let redis_key = key.redis_key();
    assert!(redis_key.starts_with("Note:") && redis_key.len() == 5 + 32);
    let hash = hgetall(&server, &redis_key);
    let auto = hash.iter().find(|(f, _)| f == "_auto_key").unwrap();
    assert_eq!(auto.1[0], 0xd9);
    assert_eq!(db.unscoped().get(&key).await.unwrap(), Some(note.clone()));
    let updated = Note {
        stars: 5,
        ..note.clone()
    };
    db.unscoped().save_at(&key, &updated).await.unwrap();
    assert_eq!(
        db.unscoped().get(&key).await.unwrap(),
        Some(updated.clone())
    );
    assert!(matches!(
        db.unscoped().save(&updated).await,
        Err(Error::InvalidValue {
            field: "_auto_key",
            ..
        })
    ));
    assert_eq!(
        db.unscoped().query::<Note>().fetch().await.unwrap(),
        [updated]
    );
    assert!(db.unscoped().delete_key(&key).await.unwrap());
    assert!(all_keys(&server).is_empty());
}

/// Bulk creates of a model keyed by Popoto's hidden `_auto_key` (the batched path): every
/// instance gets its own key, stored in its `_auto_key` field, and is indexed.
#[tokio::test]
async fn bulk_creates_of_hidden_auto_key_models_store_each_key() {
    let (server, db) = setup().await;
    let notes: Vec<Note> = (0..1_200)
        .map(|i| Note {
            text: format!("note {i}"),
            stars: (i % 5) as u8,
        })
        .collect();
    let created = db.unscoped().create_many(notes.clone()).await.unwrap();
    assert_eq!(created, notes);
    let class = smembers(&server, "$Class:Note");
    assert_eq!(class.len(), 1_200);
    for key in &class {
        let id = key.strip_prefix("Note:").unwrap();
        assert_eq!(id.len(), 32, "{key}");
        let hash = hgetall(&server, key);
        let auto = &hash.iter().find(|(f, _)| f == "_auto_key").unwrap().1;
        assert_eq!(
            &auto[2..],
            id.as_bytes(),
            "{key}: _auto_key holds the key's uuid"
        );
        assert_eq!(hash.len(), 3, "{key}: text, stars and _auto_key");
    }
    let mut fetched = db.unscoped().query::<Note>().fetch().await.unwrap();
    fetched.sort_by(|a, b| a.text.cmp(&b.text));
    let mut expected = notes;
    expected.sort_by(|a, b| a.text.cmp(&b.text));
    assert_eq!(fetched, expected);
}

#[tokio::test]
async fn tenant_models_fail_closed() {
    let (_server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    assert!(matches!(
        db.unscoped().create(episode("acme", "x", 1.0, 1)).await,
        Err(Error::NoTenant { model: "Episode" })
    ));
    assert!(matches!(
        db.unscoped().query::<Episode>().count().await,
        Err(Error::NoTenant { .. })
    ));
    let ep = acme.create(episode("", "x", 1.0, 1)).await.unwrap();
    assert!(matches!(
        db.unscoped()
            .get(&Episode::key_of("acme", ep.episode_id.clone()))
            .await,
        Err(Error::NoTenant { .. })
    ));
    match acme.create(episode("globex", "x", 1.0, 1)).await {
        Err(Error::TenantMismatch {
            model,
            field,
            expected,
            found,
        }) => {
            assert_eq!(
                (model, field, expected.as_str(), found.as_str()),
                ("Episode", "project_id", "acme", "globex")
            );
        }
        other => panic!("expected TenantMismatch, got {other:?}"),
    }
    let globex = db.tenant("globex").unwrap();
    let k = Episode::key_of("acme", ep.episode_id.clone());
    assert!(matches!(
        globex.get(&k).await,
        Err(Error::TenantMismatch { .. })
    ));
    assert!(matches!(
        globex.delete(&ep).await,
        Err(Error::TenantMismatch { .. })
    ));
    assert!(matches!(
        globex
            .query::<Episode>()
            .filter(Episode::project_id().eq("acme"))
            .fetch()
            .await,
        Err(Error::TenantMismatch { .. })
    ));
    assert_eq!(db.admin().get(&k).await.unwrap(), Some(ep));
    assert!(matches!(db.tenant(""), Err(Error::InvalidTenant { .. })));
}

#[tokio::test]
async fn undecodable_values_are_typed_errors_naming_key_and_field() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let ep = acme.create(episode("", "x", 1.0, 1)).await.unwrap();
    let key = format!("Episode:{}:acme", ep.episode_id);
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("rank")
            .arg(b"\xa3abc".as_slice()),
    );
    match acme
        .get(&Episode::key_of("acme", ep.episode_id.clone()))
        .await
    {
        Err(Error::Decode {
            model,
            key: k,
            field,
            ..
        }) => {
            assert_eq!(
                (model, k.as_str(), field.as_str()),
                ("Episode", key.as_str(), "rank")
            );
        }
        other => panic!("expected Decode, got {other:?}"),
    }
    for garbage in [&b""[..], b"\xc1", b"\xcb\x00", b"\xd9\xff", b"\x92\x01"] {
        raw_cmd::<i64>(
            &server,
            redis::cmd("HSET").arg(&key).arg("score").arg(garbage),
        );
        raw_cmd::<i64>(
            &server,
            redis::cmd("HSET")
                .arg(&key)
                .arg("rank")
                .arg(b"\x01".as_slice()),
        );
        let r = acme.query::<Episode>().fetch().await;
        assert!(
            matches!(r, Err(Error::Decode { ref field, .. }) if field == "score"),
            "{garbage:?}: {r:?}"
        );
    }
}

#[tokio::test]
async fn readers_accept_what_popoto_may_have_written() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let ep = acme.create(episode("", "x", 1.0, 1)).await.unwrap();
    let key = format!("Episode:{}:acme", ep.episode_id);
    let k = Episode::key_of("acme", ep.episode_id.clone());
    // Lua-written numbers: an int and a float32 for a float field.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("score")
            .arg(b"\x03".as_slice()),
    );
    assert_eq!(acme.get(&k).await.unwrap().unwrap().score, 3.0);
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("score")
            .arg(b"\xca\x40\x20\x00\x00".as_slice()),
    );
    assert_eq!(acme.get(&k).await.unwrap().unwrap().score, 2.5);
    // Extra fields (and legacy NUL-named ones) are ignored; a missing field takes its default.
    raw_cmd::<i64>(
        &server,
        redis::cmd("HSET")
            .arg(&key)
            .arg("extra")
            .arg("zz")
            .arg(b"title\x00idxset".as_slice())
            .arg("zz"),
    );
    raw_cmd::<i64>(&server, redis::cmd("HDEL").arg(&key).arg("title"));
    let got = acme.get(&k).await.unwrap().unwrap();
    assert_eq!((got.title.as_str(), got.rank), ("", 1));
}

#[tokio::test]
async fn connections_recover_after_a_redis_restart() {
    let (mut server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(episode("", "before", 1.0, 1)).await.unwrap();
    server.kill();
    let err = acme.query::<Episode>().count().await.unwrap_err();
    assert!(err.is_connection_error(), "a clear connection error: {err}");
    server.restart().unwrap_or_else(|e| panic!("{e}"));
    // The restarted server is empty; the same Db works again without being rebuilt.
    let mut ok = None;
    for _ in 0..3 {
        match acme.create(episode("", "after", 2.0, 2)).await {
            Ok(ep) => {
                ok = Some(ep);
                break;
            }
            Err(e) => assert!(
                e.is_connection_error(),
                "only stale connections may fail: {e}"
            ),
        }
    }
    assert!(ok.is_some(), "later calls succeed");
    assert_eq!(acme.query::<Episode>().count().await.unwrap(), 1);
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

#[tokio::test]
async fn connect_fails_fast_on_a_server_that_does_not_answer() {
    let server = popoto::testing::TestRedis::start().unwrap_or_else(|e| panic!("{e}"));
    let url = server.url().to_owned();
    assert!(popoto::Db::connect(&url).await.is_ok());
    drop(server);
    match popoto::Db::connect(&url).await {
        Err(e) => assert!(e.is_connection_error(), "{e:?}"),
        Ok(_) => panic!("connect succeeded against a stopped server"),
    }
    // Building the pool without dialing stays lazy.
    assert!(popoto::Db::with_config(popoto::BackendConfig::new(url)).is_ok());
}

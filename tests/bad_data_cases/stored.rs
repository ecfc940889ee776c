//! Bad data stored in Redis: garbage and huge values, foreign and legacy hash fields, wrong
//! Redis types, malformed index members and corrupt confidence entries are typed errors.

use super::*;

/// Asserts `e` is a decode error of `model`, `key`, `field`, and that its message names them.
fn assert_decode(e: &Error, model: &str, key: &str, field: &str) {
    match e {
        Error::Decode {
            model: m,
            key: k,
            field: f,
            ..
        } => {
            assert_eq!((*m, k.as_str(), f.as_str()), (model, key, field), "{e}");
            let text = e.to_string();
            assert!(
                text.contains(model) && text.contains(key) && text.contains(field),
                "{text}"
            );
        }
        other => panic!("expected a decode error of {model}.{field} at {key}, got {other:?}"),
    }
}

#[tokio::test]
async fn garbage_in_a_hash_field_is_a_decode_error_naming_model_key_and_field() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let item = t
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            level: 3,
            note: Some("n".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = Item::key_of("acme", "s1").redis_key();
    let original = hgetall(&server, &key);
    let cases: &[(&str, &[u8])] = &[
        ("level", b"\xff\xff"),                 // garbage
        ("level", b"\xa3abc"),                  // a string for an int
        ("level", b"\xcb\x3f\xb9"),             // a truncated float64
        ("level", b"\xcb\x3f\xf8\0\0\0\0\0\0"), // a float for an int
        ("level", b"\x01\x02"),                 // trailing bytes
        ("level", b""),                         // empty
        ("region", b"\xc1"),                    // a never-used marker
        ("region", b"\xa2\xff\xfe"),            // invalid UTF-8
        ("region", b"\xdb\xff\xff\xff\xffab"),  // a str32 claiming 4 GiB
        ("note", b"\x92\x01\x02"),              // an array for Option<String>
        ("tenant", b"\xa5hi"),                  // a truncated str
    ];
    for (field, bytes) in cases {
        hset(&server, &key, field.as_bytes(), bytes);
        let e = t.get(&Item::key_of("acme", "s1")).await.unwrap_err();
        assert_decode(&e, "Item", &key, field);
        let e = t.query::<Item>().fetch().await.unwrap_err();
        assert_decode(&e, "Item", &key, field);
        // Counting loads no hash: it checks the stored tenant field only (server-side), so an
        // undecodable row still counts unless its tenant field is what is broken.
        let expected = if *field == "tenant" { 0 } else { 1 };
        assert_eq!(
            t.query::<Item>().count().await.unwrap(),
            expected,
            "{field}"
        );
        for (f, v) in &original {
            hset(&server, &key, f.as_bytes(), v);
        }
    }
    assert_eq!(
        t.get(&Item::key_of("acme", "s1")).await.unwrap(),
        Some(item)
    );
    // A garbage movable partition value is a decode error on save and delete: nothing written.
    hset(&server, &key, b"region", b"\xc1");
    let before = dump(&server);
    let changed = Item {
        tenant: "acme".into(),
        sku: "s1".into(),
        region: "us".into(),
        level: 4,
        note: None,
    };
    assert_decode(&t.save(&changed).await.unwrap_err(), "Item", &key, "region");
    assert_decode(
        &t.delete(&changed).await.unwrap_err(),
        "Item",
        &key,
        "region",
    );
    assert_eq!(dump(&server), before);
}

#[tokio::test]
async fn huge_values_round_trip_or_fail_typed() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let huge = "x".repeat(64 << 20);
    let item = t
        .create(Item {
            sku: "big".into(),
            note: Some(huge.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    let back = t.get(&Item::key_of("acme", "big")).await.unwrap().unwrap();
    assert_eq!(back.note.as_ref().map(String::len), Some(64 << 20));
    assert_eq!(back, item);
    // 64 MiB where an int belongs.
    let key = Item::key_of("acme", "big").redis_key();
    let mut bytes = vec![0xdb];
    bytes.extend_from_slice(&(huge.len() as u32).to_be_bytes());
    bytes.extend_from_slice(huge.as_bytes());
    hset(&server, &key, b"level", &bytes);
    let e = t.get(&Item::key_of("acme", "big")).await.unwrap_err();
    assert_decode(&e, "Item", &key, "level");
    hset(&server, &key, b"level", b"\x00");
    // Length prefixes claiming 4 GiB with nothing behind them allocate nothing and fail.
    for claim in [
        &b"\xdb\xff\xff\xff\xff"[..],
        b"\xc6\xff\xff\xff\xff",
        b"\xdd\xff\xff\xff\xff",
    ] {
        hset(&server, &key, b"note", claim);
        let e = t.get(&Item::key_of("acme", "big")).await.unwrap_err();
        assert_decode(&e, "Item", &key, "note");
    }
    drop(huge);
}

#[tokio::test]
async fn foreign_and_legacy_fields_are_ignored_and_survive_writes() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let item = t
        .create(Item {
            sku: "s1".into(),
            region: "eu".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let key = Item::key_of("acme", "s1").redis_key();
    hset(&server, &key, b"foreign", b"\xc1garbage");
    hset(&server, &key, b"level\0idxset", b"\xff");
    hset(&server, &key, b"\xff\xfe", b"\xa1x");
    hset(&server, &key, b"", b"");
    assert_eq!(
        t.get(&Item::key_of("acme", "s1")).await.unwrap(),
        Some(item.clone())
    );
    assert_eq!(
        t.query::<Item>().fetch().await.unwrap(),
        std::slice::from_ref(&item)
    );
    let mut changed = item.clone();
    changed.region = "us".into();
    t.save(&changed).await.unwrap();
    let h: Vec<(Vec<u8>, Vec<u8>)> = raw_cmd(&server, redis::cmd("HGETALL").arg(&key));
    for f in [&b"foreign"[..], b"level\0idxset", b"\xff\xfe", b""] {
        assert!(h.iter().any(|(k, _)| k == f), "{f:?} was dropped");
    }
    assert_eq!(
        t.get(&Item::key_of("acme", "s1")).await.unwrap(),
        Some(changed)
    );
    popoto::testing::assert_isolated::<Item>(&db).await;
}

#[tokio::test]
async fn wrong_redis_types_are_typed_errors_and_write_nothing() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let key = Item::key_of("acme", "s1").redis_key();
    raw_cmd::<()>(&server, redis::cmd("SET").arg(&key).arg("a string"));
    let e = t.get(&Item::key_of("acme", "s1")).await.unwrap_err();
    assert!(matches!(e, Error::Redis { model: "Item", .. }), "{e:?}");
    assert!(!e.is_connection_error());
    let item = Item {
        tenant: "acme".into(),
        sku: "s1".into(),
        ..Default::default()
    };
    let before = dump(&server);
    assert!(matches!(
        t.create(item.clone()).await,
        Err(Error::AlreadyExists { .. })
    ));
    // (`save` reads the stored partition value first: the server's WRONGTYPE, typed too.)
    match t.save(&item).await {
        Err(Error::WrongType { .. }) => {}
        Err(e @ Error::Redis { .. }) => assert!(!e.is_connection_error(), "{e}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(dump(&server), before);
    // An index key of the wrong type: the write is refused before anything is written.
    raw_cmd::<()>(&server, redis::cmd("DEL").arg(&key));
    raw_cmd::<()>(
        &server,
        redis::cmd("SET").arg("$KeyF:Item:tenant:acme").arg("x"),
    );
    let before = dump(&server);
    match t.create(item.clone()).await {
        Err(Error::WrongType { model, key, found }) => {
            assert_eq!(
                (model, key.as_str(), found.as_str()),
                ("Item", "$KeyF:Item:tenant:acme", "string")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(dump(&server), before);
}

#[tokio::test]
async fn malformed_index_members_are_typed_errors() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    t.create(Item {
        sku: "s1".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let set = "$KeyF:Item:tenant:acme";
    // A member without an instance hash is skipped.
    raw_cmd::<i64>(&server, redis::cmd("SADD").arg(set).arg("Item:gone:acme"));
    assert_eq!(t.query::<Item>().fetch().await.unwrap().len(), 1);
    // A member whose hash exists but whose shape is not the model's, and a non-UTF-8 member:
    // skipped (and reported), never an error that hides the tenant's other rows.
    raw_cmd::<i64>(&server, redis::cmd("SADD").arg(set).arg("Item:a:b:acme"));
    hset(&server, "Item:a:b:acme", b"sku", b"\xa1a");
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD").arg(set).arg(&b"Item:\xff:acme"[..]),
    );
    assert_eq!(raw_cmd::<i64>(&server, redis::cmd("SCARD").arg(set)), 4);
    let rows = t.query::<Item>().fetch_keyed().await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, Item::key_of("acme", "s1"));
    assert_eq!(
        t.query::<Item>().fetch_keys().await.unwrap(),
        [Item::key_of("acme", "s1")]
    );
    assert_eq!(t.query::<Item>().count().await.unwrap(), 1);
}

#[tokio::test]
async fn corrupt_confidence_entries_are_decode_errors_and_are_never_overwritten() {
    let (server, db) = setup().await;
    let t = db.tenant("acme").unwrap();
    let m = t
        .create(Memory {
            key: "fact".into(),
            certainty: 0.5,
            ..Default::default()
        })
        .await
        .unwrap();
    let companion = "$ConfidencF:Memory:certainty:data:acme";
    let member = Memory::key_of("acme", "fact").redis_key();
    for garbage in [&b"\xc1"[..], b"\x05", b"\xa3abc", b"\x84\xaaconfidence"] {
        hset(&server, companion, member.as_bytes(), garbage);
        let c = t.confidence(&m, Memory::certainty()).unwrap();
        assert_decode(&c.state().await.unwrap_err(), "Memory", companion, &member);
        assert_decode(
            &c.update(0.9).await.unwrap_err(),
            "Memory",
            companion,
            &member,
        );
        let stored: Vec<u8> = raw_cmd(&server, redis::cmd("HGET").arg(companion).arg(&member));
        assert_eq!(stored, garbage, "the corrupt entry was overwritten");
        let e = t
            .confidence_scan(Memory::certainty())
            .fetch_all()
            .await
            .unwrap_err();
        assert_decode(&e, "Memory", companion, &member);
    }
}

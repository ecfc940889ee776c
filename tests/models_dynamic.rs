//! Reading without the struct: `Dynamic` values and `get_fields` (fields a struct does not
//! declare, read and kept byte for byte), and confidence handles built from a key alone.

mod support;

use popoto::{Dynamic, Error, Model};
use support::*;

/// Tickets as one service declares them; another writes more fields into the same hashes.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Issue {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    id: String,
    title: String,
}

/// The same hashes read by a struct that keeps one field it does not understand.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(name = "Issue")]
struct IssueWithExtra {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    id: String,
    title: String,
    labels: Dynamic,
}

fn pack<T: serde::Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(v).unwrap()
}

#[tokio::test]
async fn get_fields_reads_every_field_and_dynamic_values_round_trip() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    acme.create(Issue {
        id: "i1".into(),
        title: "crash".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let key = Issue::key_of("acme", "i1");
    // Another writer's fields, as msgpack-python packs them: a list, a dict, a tagged
    // datetime, a float, a nil, bytes.
    let labels = pack(&("bug", 3, -200));
    let meta = pack(&std::collections::BTreeMap::from([
        ("a", 1.5),
        ("b", -0.25),
    ]));
    let when: &[u8] = b"\x82\xac__datetime__\xc3\xacas_encodable\xb32024-01-15T10:30:00";
    for (f, v) in [
        ("labels", labels.as_slice()),
        ("meta", meta.as_slice()),
        ("when", when),
        ("gone", &[0xc0][..]),
        ("blob", &[0xc4, 0x02, 0x00, 0xff][..]),
    ] {
        hset(&server, &key.redis_key(), f.as_bytes(), v);
    }
    let fields = acme.get_fields(&key).await.unwrap().unwrap();
    assert_eq!(
        fields.keys().map(String::as_str).collect::<Vec<_>>(),
        ["blob", "gone", "id", "labels", "meta", "org", "title", "when"]
    );
    assert_eq!(fields["title"].as_str(), Some("crash"));
    assert_eq!(
        fields["labels"],
        Dynamic::Array(vec![
            Dynamic::Str("bug".into()),
            Dynamic::UInt(3),
            Dynamic::Int(-200)
        ])
    );
    assert_eq!(
        fields["meta"].get("b").and_then(Dynamic::as_f64),
        Some(-0.25)
    );
    assert_eq!(
        fields["when"].get("as_encodable").and_then(Dynamic::as_str),
        Some("2024-01-15T10:30:00")
    );
    assert_eq!(fields["gone"], Dynamic::Nil);
    assert_eq!(fields["blob"], Dynamic::Bin(vec![0, 0xff]));
    // A struct with a `Dynamic` field reads it, and its save writes the same bytes back; the
    // fields it does not declare stay.
    let before = hgetall(&server, &key.redis_key());
    let issue = acme
        .get(&IssueWithExtra::key_of("acme", "i1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(issue.labels, fields["labels"]);
    acme.save(&issue).await.unwrap();
    assert_eq!(hgetall(&server, &key.redis_key()), before);
    // Serde: the plain values (JSON here).
    assert_eq!(
        serde_json::to_string(&fields["labels"]).unwrap(),
        r#"["bug",3,-200]"#
    );
    assert_eq!(
        serde_json::from_str::<Dynamic>(r#"{"a":[1,-1,0.5,null,true]}"#).unwrap(),
        Dynamic::Map(vec![(
            Dynamic::Str("a".into()),
            Dynamic::Array(vec![
                Dynamic::UInt(1),
                Dynamic::Int(-1),
                Dynamic::Float(0.5),
                Dynamic::Nil,
                Dynamic::Bool(true)
            ])
        )])
    );
    // Absent: None. Not msgpack: a decode error naming the field.
    assert!(acme
        .get_fields(&Issue::key_of("acme", "nope"))
        .await
        .unwrap()
        .is_none());
    hset(&server, &key.redis_key(), b"broken", &[0xc1]);
    match acme.get_fields(&key).await {
        Err(Error::Decode { field, .. }) => assert_eq!(field, "broken"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[tokio::test]
async fn get_fields_is_confined_to_the_tenant() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    // A hash under acme's key whose stored tenant field names globex.
    let key = Issue::key_of("acme", "forged");
    for (f, v) in [("org", "globex"), ("id", "forged"), ("title", "x")] {
        hset(&server, &key.redis_key(), f.as_bytes(), &pack(&v));
    }
    assert!(matches!(
        acme.get_fields(&key).await,
        Err(Error::NotInScope { .. })
    ));
    assert!(matches!(
        acme.get_fields(&Issue::key_of("globex", "x")).await,
        Err(Error::TenantMismatch { .. })
    ));
    // The admin handle reads it as it is.
    let fields = db.admin().get_fields(&key).await.unwrap().unwrap();
    assert_eq!(fields["org"].as_str(), Some("globex"));
}

#[tokio::test]
async fn a_confidence_handle_from_a_key_reaches_the_stored_partition() {
    let (server, db) = setup().await;
    let p = db.tenant("p").unwrap();
    let claim = p
        .create(Claim {
            id: "c1".into(),
            topic: "sky".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    p.confidence(&claim, Claim::belief())
        .unwrap()
        .update(0.9)
        .await
        .unwrap();
    // The topic (a non-key partition) moves; the key-built handle finds the stored one.
    p.save(&Claim {
        topic: "sea".into(),
        ..claim.clone()
    })
    .await
    .unwrap();
    let key = Claim::key_of("p", "c1");
    let by_key = p.confidence_by_key(&key, Claim::belief()).unwrap();
    let state = by_key.update(0.2).await.unwrap();
    assert_eq!(state.evidence_count, 2);
    assert_eq!(hlen(&server, "$ConfidencF:Claim:belief:data:sea"), 1);
    assert_eq!(hlen(&server, "$ConfidencF:Claim:belief:data:sky"), 0);
    assert_eq!(by_key.state().await.unwrap(), state);
    // A partition by a key field (the tenant) needs no read.
    let m = p
        .create(Memory {
            key: "fact".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mk = Memory::key_of("p", "fact");
    let handle = p.confidence_by_key(&mk, Memory::certainty()).unwrap();
    assert_eq!(
        handle.companion_key(),
        "$ConfidencF:Memory:certainty:data:p"
    );
    handle.update(1.0).await.unwrap();
    let via_value = p.confidence(&m, Memory::certainty()).unwrap();
    assert_eq!(
        via_value.state().await.unwrap(),
        handle.state().await.unwrap()
    );
    // No instance: updates are refused, the state is the initial one.
    let none = p
        .confidence_by_key(&Claim::key_of("p", "nope"), Claim::belief())
        .unwrap();
    assert!(matches!(
        none.update(0.5).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(none.get().await.unwrap(), 0.5);
    // Another tenant's key is refused before anything is read.
    assert!(matches!(
        p.confidence_by_key(&Claim::key_of("q", "c1"), Claim::belief()),
        Err(Error::TenantMismatch { .. })
    ));
}

//! Destroy, export and import of one tenant leave the other byte for byte, and crafted import
//! streams cannot reach another tenant.

use super::*;

fn tid(s: &str) -> Result<TenantId, TestCaseError> {
    TenantId::new(s).map_err(|e| fail("tenant id", e))
}

/// Destroying, exporting and importing one tenant touches nothing of the other: after
/// `destroy_tenant(a)` the database is byte for byte the database of `b` alone, an import of
/// `a`'s export restores the exact database, and destroying `b` then leaves `a` alone
/// (160 cases, one server).
#[test]
fn lifecycle_of_one_tenant_leaves_the_other_byte_for_byte() {
    on_one_server(160, seeds(), |server, db, (a, b)| {
        Box::pin(async move {
            let flush = || -> Result<(), TestCaseError> {
                redis::cmd("FLUSHDB")
                    .exec(&mut server.raw())
                    .map_err(|e| fail("flushdb", e))
            };
            let (ta, tb) = (tid(&a.tenant)?, tid(&b.tenant)?);
            write_seed(db, &a).await?;
            let only_a = dump(server);
            flush()?;
            write_seed(db, &b).await?;
            let only_b = dump(server);
            write_seed(db, &a).await?;
            let both = dump(server);
            audits_clean(db).await?;
            for s in [&a, &b] {
                let counts = db
                    .admin()
                    .tenant_counts(&tid(&s.tenant)?, &models())
                    .await
                    .map_err(|e| fail("counts", e))?;
                let want: BTreeMap<&str, u64> = [
                    ("Belief", s.beliefs.len()),
                    ("Episode", s.episodes.len()),
                    ("Item", s.items.len()),
                    ("Ledger", s.ledgers.len()),
                    ("Memory", s.memories.len()),
                ]
                .into_iter()
                .map(|(m, n)| (m, n as u64))
                .collect();
                prop_assert_eq!(counts, want);
            }

            let mut export = Vec::new();
            db.admin()
                .export_tenant(&ta, &models(), &mut export)
                .await
                .map_err(|e| fail("export", e))?;
            let report = db
                .admin()
                .destroy_tenant(&ta, &models())
                .await
                .map_err(|e| fail("destroy", e))?;
            prop_assert_eq!(report.orphan_entries, 0);
            let after: BTreeMap<_, _> = dump(server);
            prop_assert_eq!(
                &after,
                &only_b,
                "destroying {:?} touched {:?}",
                a.tenant,
                b.tenant
            );
            db.admin()
                .import_tenant(&ta, &models(), export.as_slice())
                .await
                .map_err(|e| fail("import", e))?;
            prop_assert_eq!(&dump(server), &both, "import of {:?}", a.tenant);
            db.admin()
                .destroy_tenant(&tb, &models())
                .await
                .map_err(|e| fail("destroy", e))?;
            prop_assert_eq!(&dump(server), &only_a, "destroying {:?}", b.tenant);
            audits_clean(db).await
        })
    });
}

/// An import stream of tenant `a` cannot plant `a`'s instances into `b`'s value sets,
/// partitions or companion hashes, nor into another value's set, nor write a non-canonical key
/// or an instance whose tenant field names another tenant: each stream is refused before it
/// writes anything.
#[tokio::test]
async fn crafted_import_streams_cannot_reach_another_tenant() {
    use popoto::ExportRecord;
    use serde_bytes::ByteBuf;

    let (server, db) = support::setup().await;
    let b = db.tenant("b").unwrap();
    b.create(Item {
        sku: "y".into(),
        region: "eu".into(),
        level: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    b.create(Memory {
        key: "m".into(),
        certainty: 0.5,
        ..Default::default()
    })
    .await
    .unwrap();
    let before = dump(&server);
    let a = TenantId::new("a").unwrap();
    let item_a = Item::key_of("a", "x").redis_key();
    let mem_a = Memory::key_of("a", "mx").redis_key();
    let str_field = |name: &str, value: &str| {
        let mut v = Vec::new();
        popoto::codec::encode_serde(value, &mut v).unwrap();
        (ByteBuf::from(name.as_bytes().to_vec()), ByteBuf::from(v))
    };
    let item_hash = |key: &str, tenant: &str| ExportRecord::Hash {
        key: key.to_owned(),
        fields: vec![
            str_field("tenant", tenant),
            str_field("sku", "x"),
            str_field("region", "eu"),
        ],
    };
    let mem_hash = ExportRecord::Hash {
        key: mem_a.clone(),
        fields: vec![str_field("project", "a"), str_field("key", "mx")],
    };
    let set = |key: &str, member: &str| ExportRecord::SetMember {
        key: key.to_owned(),
        member: member.to_owned(),
    };
    let streams: Vec<(&str, Vec<ExportRecord>)> = vec![
        (
            "into b's value set",
            vec![item_hash(&item_a, "a"), set("$KeyF:Item:tenant:b", &item_a)],
        ),
        (
            "into another sku's unique set",
            vec![
                item_hash(&item_a, "a"),
                set("$UniqueKeyF:Item:sku:y", &item_a),
            ],
        ),
        (
            "into b's partition zset",
            vec![
                item_hash(&item_a, "a"),
                ExportRecord::ZSetMember {
                    key: "$SortF:Item:level:b:eu".into(),
                    member: item_a.clone(),
                    score: 1.0,
                },
            ],
        ),
        (
            "into b's companion hash",
            vec![
                mem_hash.clone(),
                ExportRecord::HashEntry {
                    key: "$ConfidencF:Memory:certainty:data:b".into(),
                    field: mem_a.clone(),
                    value: ByteBuf::from(vec![0x80]),
                },
            ],
        ),
        (
            "an orphan entry into b's value set",
            vec![set("$KeyF:Item:tenant:b", &item_a)],
        ),
        (
            "a non-canonical instance key",
            vec![item_hash("Item:x-y:a", "a")],
        ),
        ("a tenant field naming b", vec![item_hash(&item_a, "b")]),
    ];
    for (what, records) in streams {
        let mut stream = Vec::new();
        rmp_serde::encode::write_named(
            &mut stream,
            &ExportRecord::Header {
                version: 1,
                tenant: "a".into(),
            },
        )
        .unwrap();
        for r in &records {
            rmp_serde::encode::write_named(&mut stream, r).unwrap();
        }
        let r = db
            .admin()
            .import_tenant(&a, &models(), stream.as_slice())
            .await;
        assert!(
            matches!(r, Err(Error::InvalidValue { .. })),
            "{what}: {r:?}"
        );
        assert_eq!(dump(&server), before, "{what} wrote something");
    }
    // b still sees exactly its own.
    assert_eq!(b.query::<Item>().count().await.unwrap(), 1);
    assert_eq!(
        b.confidence_scan(Memory::certainty())
            .fetch_all()
            .await
            .unwrap()
            .len(),
        1
    );
}

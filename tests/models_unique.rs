//! Unique keys within one tenant (`#[popoto(unique_key, per_tenant)]`): popoto's value set,
//! shared by the tenants that use a value, checked inside every write script against the
//! instances of the writing tenant only; the audit and the tenant lifecycle follow.

mod support;

use popoto::{Error, FindingKind, ModelSet};
use support::*;

fn member(id: &str, email: &str) -> Member {
    Member {
        id: id.repeat(32 / id.len().max(1)),
        email: email.into(),
        name: format!("{id} {email}"),
        ..Default::default()
    }
}

fn models() -> ModelSet {
    ModelSet::new().with::<Member>()
}

/// The value set of an e-mail: popoto's layout, one set for every tenant.
fn value_set(email: &str) -> String {
    format!(
        "$UniqueKeyF:Member:email:{}",
        popoto_core::keys::escape(email)
    )
}

fn taken(e: &Error) -> Option<(&'static str, String)> {
    match e {
        Error::UniqueViolation {
            field, existing, ..
        } => Some((field, existing.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn a_value_repeats_across_tenants_but_not_within_one() {
    let (server, db) = setup().await;
    // A tenant id that needs escaping: the script compares escaped key segments.
    let (acme, globex) = (
        db.tenant("acme:eu-1").unwrap(),
        db.tenant("globex").unwrap(),
    );
    let a = acme.create(member("a", "ann@x.io")).await.unwrap();
    let g = globex.create(member("g", "ann@x.io")).await.unwrap();
    let (ka, kg) = (
        Member::key_of("acme:eu-1", a.id.clone(), "ann@x.io").redis_key(),
        Member::key_of("globex", g.id.clone(), "ann@x.io").redis_key(),
    );
    // Popoto's layout: one value set, holding both tenants' instances.
    let mut both = vec![ka.clone(), kg.clone()];
    both.sort();
    assert_eq!(smembers(&server, &value_set("ann@x.io")), both);

    // create (create.lua), save (apply.lua), bulk create and save (insert_many.lua): the same
    // value in the same tenant is refused, naming the tenant's own instance.
    let e = acme.create(member("b", "ann@x.io")).await.unwrap_err();
    assert_eq!(taken(&e), Some(("email", ka.clone())), "{e}");
    let e = acme.save(&member("c", "ann@x.io")).await.unwrap_err();
    assert_eq!(taken(&e), Some(("email", ka.clone())), "{e}");
    let bulk = acme
        .create_many(vec![member("d", "dan@x.io"), member("e", "ann@x.io")])
        .await
        .unwrap_err();
    assert_eq!(bulk.written.len(), 1);
    assert_eq!(bulk.failed.len(), 1);
    assert_eq!(taken(&bulk.failed[0].2), Some(("email", ka.clone())));
    let bulk = acme
        .save_many(vec![member("f", "fay@x.io"), member("h", "fay@x.io")])
        .await
        .unwrap_err();
    assert_eq!(
        bulk.failed.len(),
        1,
        "the second row repeats the first's value"
    );
    assert!(matches!(
        bulk.failed[0].2,
        Error::UniqueViolation { field: "email", .. }
    ));
    // The same values in another tenant are free, one by one and in bulk.
    globex.save(&member("c", "dan@x.io")).await.unwrap();
    globex
        .create_many(vec![member("i", "fay@x.io"), member("j", "gus@x.io")])
        .await
        .unwrap();
    // One bulk call may hold one value for several tenants (the admin handle writes both),
    // but not twice for one tenant.
    let bulk = db
        .admin()
        .create_many(vec![
            Member {
                org: "t1".into(),
                ..member("k", "kim@x.io")
            },
            Member {
                org: "t2".into(),
                ..member("l", "kim@x.io")
            },
            Member {
                org: "t2".into(),
                ..member("m", "kim@x.io")
            },
        ])
        .await
        .unwrap_err();
    assert_eq!(
        bulk.written.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        [0, 1]
    );
    assert_eq!(bulk.failed.len(), 1);
    assert!(matches!(
        bulk.failed[0].2,
        Error::UniqueViolation { field: "email", .. }
    ));
    // Moving a key (apply.lua's unique check with the old key allowed): onto a value the
    // tenant holds is refused, onto one only another tenant holds is not.
    let dan = acme
        .query::<Member>()
        .filter(Member::email().eq("dan@x.io"))
        .fetch()
        .await
        .unwrap();
    assert_eq!(dan.len(), 1);
    let e = acme
        .move_key(
            &dan[0],
            Member {
                email: "ann@x.io".into(),
                ..dan[0].clone()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(taken(&e), Some(("email", ka.clone())), "{e}");
    acme.move_key(
        &dan[0],
        Member {
            email: "gus@x.io".into(),
            ..dan[0].clone()
        },
    )
    .await
    .unwrap();
    // Saving an instance again keeps its own value.
    acme.save(&a).await.unwrap();
    let emails = |rows: Vec<Member>| {
        let mut e: Vec<String> = rows.into_iter().map(|m| m.email).collect();
        e.sort();
        e
    };
    assert_eq!(
        emails(acme.query::<Member>().fetch().await.unwrap()),
        ["ann@x.io", "fay@x.io", "gus@x.io"]
    );
    assert_eq!(
        emails(globex.query::<Member>().fetch().await.unwrap()),
        ["ann@x.io", "dan@x.io", "fay@x.io", "gus@x.io"]
    );
    popoto::testing::assert_isolated::<Member>(&db).await;
}

#[tokio::test]
async fn concurrent_creates_of_one_value_leave_one_per_tenant() {
    let (_server, db) = setup().await;
    let mut tasks = Vec::new();
    for t in ["t1", "t2", "t3"] {
        for i in 0..8 {
            let s = db.tenant(t).unwrap();
            tasks.push(tokio::spawn(async move {
                (t, s.create(member(&format!("{i}"), "same@x.io")).await)
            }));
        }
    }
    let mut won = std::collections::BTreeMap::new();
    for task in tasks {
        let (t, r) = task.await.unwrap();
        match r {
            Ok(_) => *won.entry(t).or_insert(0) += 1,
            Err(e) => assert!(
                matches!(e, Error::UniqueViolation { field: "email", .. }),
                "{e}"
            ),
        }
    }
    assert_eq!(won, [("t1", 1), ("t2", 1), ("t3", 1)].into_iter().collect());
    popoto::testing::assert_isolated::<Member>(&db).await;
}

#[tokio::test]
async fn the_audit_reports_duplicates_within_a_tenant_only() {
    let (server, db) = setup().await;
    let (acme, globex) = (db.tenant("acme").unwrap(), db.tenant("globex").unwrap());
    acme.create(member("a", "ann@x.io")).await.unwrap();
    globex.create(member("g", "ann@x.io")).await.unwrap();
    let report = db.admin().audit::<Member>().await.unwrap();
    assert!(report.is_clean(), "{report}");
    // A second owner of the value in acme, written behind popoto's back.
    let planted = Member::key_of("acme", "b".repeat(32), "ann@x.io").redis_key();
    for (f, v) in [
        ("org", "acme"),
        ("id", &"b".repeat(32)),
        ("email", "ann@x.io"),
        ("name", "x"),
    ] {
        let mut bytes = Vec::new();
        rmp::encode::write_str(&mut bytes, v).unwrap();
        hset(&server, &planted, f.as_bytes(), &bytes);
    }
    for set in [
        "$Class:Member",
        "$KeyF:Member:org:acme",
        value_set("ann@x.io").as_str(),
    ] {
        raw_cmd::<i64>(&server, redis::cmd("SADD").arg(set).arg(&planted));
    }
    let report = db.admin().audit::<Member>().await.unwrap();
    let kinds: Vec<(FindingKind, Option<String>)> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.tenant.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (FindingKind::DuplicateUnique, Some("acme".to_owned())),
            (FindingKind::DuplicateUnique, Some("acme".to_owned()))
        ],
        "{report}"
    );
}

#[tokio::test]
async fn destroy_export_and_import_follow_the_shared_value_sets() {
    let (server, db) = setup().await;
    let (acme, globex) = (db.tenant("acme").unwrap(), db.tenant("globex").unwrap());
    let mut acme_keys = Vec::new();
    for i in 0..5 {
        let email = format!("user{i}@x.io");
        let a = acme.create(member(&format!("a{i}"), &email)).await.unwrap();
        acme_keys.push(Member::key_of("acme", a.id, email.clone()).redis_key());
        globex
            .create(member(&format!("g{i}"), &email))
            .await
            .unwrap();
    }
    let before = dump(&server);
    let mut stream = Vec::new();
    db.admin()
        .export_tenant(&tid("acme"), &models(), &mut stream)
        .await
        .unwrap();
    let report = db
        .admin()
        .destroy_tenant(&tid("acme"), &models())
        .await
        .unwrap();
    assert_eq!(report.instances.get("Member"), Some(&5), "{report:?}");
    // acme's members left the shared value sets; globex's stayed.
    for i in 0..5 {
        let members = smembers(&server, &value_set(&format!("user{i}@x.io")));
        assert_eq!(members.len(), 1, "{members:?}");
        assert!(members[0].ends_with(":globex"), "{members:?}");
    }
    // Imported back: byte for byte as before.
    db.admin()
        .import_tenant(&tid("acme"), &models(), stream.as_slice())
        .await
        .unwrap();
    assert_eq!(dump(&server), before);
    popoto::testing::assert_isolated::<Member>(&db).await;
    // An import whose value another instance of the tenant now holds is refused by the same
    // check as every write; one held by another tenant only is not in the way.
    db.admin()
        .destroy_tenant(&tid("acme"), &models())
        .await
        .unwrap();
    let squatter = acme.create(member("s", "user3@x.io")).await.unwrap();
    let e = db
        .admin()
        .import_tenant(&tid("acme"), &models(), stream.as_slice())
        .await
        .unwrap_err();
    assert_eq!(
        taken(&e),
        Some((
            "email",
            Member::key_of("acme", squatter.id, "user3@x.io").redis_key()
        )),
        "{e}"
    );
    assert!(acme_keys.iter().any(|k| k.contains("user3")));
}

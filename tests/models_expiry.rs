//! Expiry without index orphans: a model `ttl` and a per-instance `expire_at` set the hash's TTL
//! as popoto does, and record it in the tenant's expiry set in the same script; no read ever
//! returns an expired instance, and once swept (by the reads that meet them, or on demand)
//! nothing of an expired instance is left for the audit to find.

mod support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use popoto::testing::TestRedis;
use popoto::{Error, FindingKind, Model, ModelSet};
use support::*;

/// Logins expire an hour after each write (popoto's `Meta.ttl`).
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(ttl = 3600)]
struct Login {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(auto_key)]
    id: String,
    #[popoto(sorted, partition_by = "org")]
    at: i64,
}

/// Invitations expire at a time of their own; every kind of index entry.
#[derive(Model, Debug, Clone, PartialEq, Default)]
struct Invite {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(unique_key, per_tenant)]
    email: String,
    note: String,
    #[popoto(sorted, partition_by = "org")]
    sent: i64,
    #[popoto(sorted)]
    rank: i64,
    #[popoto(confidence, partition_by = "org")]
    trust: f64,
    #[popoto(expire_at)]
    expires: Option<DateTime<Utc>>,
}

fn invite(email: &str, sent: i64, expires: Option<DateTime<Utc>>) -> Invite {
    Invite {
        email: email.into(),
        note: format!("to {email}"),
        sent,
        rank: sent,
        expires,
        ..Default::default()
    }
}

/// The server's clock, in milliseconds since the epoch.
fn server_millis(server: &TestRedis) -> i64 {
    let (s, us): (i64, i64) = raw_cmd(server, &redis::cmd("TIME"));
    s * 1000 + us / 1000
}

/// A time `ms` milliseconds after the server's clock.
fn after(server: &TestRedis, ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(server_millis(server) + ms).unwrap()
}

/// Waits (polling the server's clock, no key read) until the server's time is past `t`.
fn wait_past(server: &TestRedis, t: DateTime<Utc>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while server_millis(server) <= t.timestamp_millis() {
        assert!(
            Instant::now() < deadline,
            "the server clock did not pass {t}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn pexpiretime(server: &TestRedis, key: &str) -> i64 {
    raw_cmd(server, redis::cmd("PEXPIRETIME").arg(key))
}

/// Every member of every index key of `prefix`'s models names an existing hash.
fn assert_no_orphans(server: &TestRedis, model: &str) {
    for key in all_keys(server) {
        let members: Vec<String> = if key.starts_with(&format!("$KeyF:{model}:"))
            || key.starts_with(&format!("$UniqueKeyF:{model}:"))
            || key == format!("$Class:{model}")
        {
            smembers(server, &key)
        } else if key.starts_with(&format!("$SortF:{model}:"))
            || key.starts_with(&format!("$ExpireF:{model}"))
        {
            zrange(server, &key).into_iter().map(|(m, _)| m).collect()
        } else if key.starts_with(&format!("$ConfidencF:{model}:")) {
            hgetall(server, &key).into_iter().map(|(f, _)| f).collect()
        } else {
            continue;
        };
        for m in members {
            let exists: i64 = raw_cmd(server, redis::cmd("EXISTS").arg(&m));
            assert_eq!(exists, 1, "{key} still holds {m}");
        }
    }
}

#[tokio::test]
async fn a_model_ttl_expires_the_hash_and_records_it_on_every_write() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let (key, login) = acme
        .create_keyed(Login {
            at: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let redis_key = key.redis_key();
    let t0 = server_millis(&server);
    let first = pexpiretime(&server, &redis_key);
    // Popoto's EXPIRE key 3600, in milliseconds, set by the server in the create's script.
    assert!(
        (t0 + 3_590_000..=t0 + 3_600_000).contains(&first),
        "{first} vs {t0}"
    );
    // The expiry set of the tenant holds the instance with exactly that time.
    assert_eq!(
        zrange(&server, "$ExpireF:Login:acme"),
        [(redis_key.clone(), first as f64)]
    );
    // A save sets it again (popoto expires on every save), in the same script.
    let wait_ms = t0 + 5;
    while server_millis(&server) <= wait_ms {
        std::thread::sleep(Duration::from_millis(1));
    }
    acme.save(&login).await.unwrap();
    let second = pexpiretime(&server, &redis_key);
    assert!(second > first, "{second} after {first}");
    assert_eq!(
        zrange(&server, "$ExpireF:Login:acme"),
        [(redis_key.clone(), second as f64)]
    );
    // Bulk writes set it too.
    let rows = acme
        .create_many(
            (0..3)
                .map(|i| Login {
                    at: i,
                    ..Default::default()
                })
                .collect(),
        )
        .await
        .unwrap();
    acme.save_many(rows).await.unwrap();
    let set = zrange(&server, "$ExpireF:Login:acme");
    assert_eq!(set.len(), 4);
    for (member, score) in set {
        assert_eq!(pexpiretime(&server, &member) as f64, score, "{member}");
    }
    // A delete removes the entry.
    assert!(acme.delete_key(&key).await.unwrap());
    assert_eq!(zrange(&server, "$ExpireF:Login:acme").len(), 3);
    popoto::testing::assert_isolated::<Login>(&db).await;
}

#[tokio::test]
async fn expired_instances_are_never_read_and_the_reads_sweep_what_they_left() {
    let (server, db) = setup().await;
    let (acme, globex) = (db.tenant("acme").unwrap(), db.tenant("globex").unwrap());
    let soon = after(&server, 300);
    let later = after(&server, 3_600_000);
    for i in 0..6 {
        let expires = if i % 2 == 0 { Some(soon) } else { Some(later) };
        let inv = acme
            .create(invite(&format!("a{i}@x.io"), i, expires))
            .await
            .unwrap();
        acme.confidence(&inv, Invite::trust())
            .unwrap()
            .update(0.9)
            .await
            .unwrap();
        globex
            .create(invite(&format!("a{i}@x.io"), i, Some(soon)))
            .await
            .unwrap();
    }
    acme.create(invite("forever@x.io", 10, None)).await.unwrap();
    wait_past(&server, soon);
    // Redis dropped the hashes (or will at their first access); their entries are still there
    // and the audit sees them as orphans: what popoto leaves behind.
    let report = db.admin().audit::<Invite>().await.unwrap();
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::Orphan),
        "{report}"
    );
    // No read returns an expired instance: fetch, count, ranges, order, first and last,
    // projections, keys, exists, get, cursor pages, key lookups, OR filters.
    let q = || acme.query::<Invite>();
    let rows = q().fetch().await.unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert!(
        rows.iter().all(|r| r.sent % 2 == 1 || r.sent == 10),
        "{rows:?}"
    );
    // The expiry time is not stored in the hash: a value read has none.
    assert!(rows.iter().all(|r| r.expires.is_none()));
    assert_eq!(q().count().await.unwrap(), 4);
    assert_eq!(
        q().filter(Invite::sent().range(0..=5))
            .count()
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        q().order_by(Invite::rank())
            .fetch()
            .await
            .unwrap()
            .iter()
            .map(|r| r.sent)
            .collect::<Vec<_>>(),
        [1, 3, 5, 10]
    );
    assert_eq!(
        q().order_by(Invite::sent())
            .first()
            .await
            .unwrap()
            .map(|r| r.sent),
        Some(1)
    );
    assert_eq!(
        q().filter(Invite::email().eq("a0@x.io"))
            .fetch()
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        q().filter(Invite::email().starts_with("a"))
            .count()
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        q().filter(Invite::email().eq("a0@x.io") | Invite::email().eq("a1@x.io"))
            .count()
            .await
            .unwrap(),
        1
    );
    assert_eq!(q().fetch_keys().await.unwrap().len(), 4);
    let page = q().order_by(Invite::sent()).page(None, 2).await.unwrap();
    assert_eq!(
        page.rows.iter().map(|(_, r)| r.sent).collect::<Vec<_>>(),
        [1, 3]
    );
    assert!(!acme
        .exists(&Invite::key_of("acme", "a0@x.io"))
        .await
        .unwrap());
    assert!(acme
        .get(&Invite::key_of("acme", "a0@x.io"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(globex.query::<Invite>().count().await.unwrap(), 0);
    // The reads met the expired entries and swept them: nothing is left of an expired
    // instance in any index, the confidence companion and the expiry sets included.
    assert_no_orphans(&server, "Invite");
    let report = db.admin().audit::<Invite>().await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert_eq!(zrange(&server, "$ExpireF:Invite:acme").len(), 3);
    assert!(zrange(&server, "$ExpireF:Invite:globex").is_empty());
    // A value unique within its tenant is free again once its holder expired.
    acme.create(invite("a0@x.io", 0, None)).await.unwrap();
}

#[tokio::test]
async fn sweeps_on_demand_touch_only_their_tenant() {
    let (server, db) = setup().await;
    let (acme, globex) = (db.tenant("acme").unwrap(), db.tenant("globex").unwrap());
    let soon = after(&server, 200);
    for i in 0..5 {
        acme.create(invite(&format!("a{i}@x.io"), i, Some(soon)))
            .await
            .unwrap();
        globex
            .create(invite(&format!("g{i}@x.io"), i, Some(soon)))
            .await
            .unwrap();
    }
    acme.create(invite("live@x.io", 9, Some(after(&server, 3_600_000))))
        .await
        .unwrap();
    wait_past(&server, soon);
    let report = acme.sweep_expired::<Invite>().await.unwrap();
    assert_eq!(report.swept, 5, "{report:?}");
    // globex's entries are untouched by acme's sweep.
    assert_eq!(zrange(&server, "$ExpireF:Invite:globex").len(), 5);
    assert_eq!(smembers(&server, "$KeyF:Invite:org:globex").len(), 5);
    // The admin sweep does every tenant.
    let report = db.admin().sweep_expired::<Invite>().await.unwrap();
    assert_eq!(report.swept, 5, "{report:?}");
    assert_no_orphans(&server, "Invite");
    assert!(db
        .admin()
        .check_indexes::<Invite>()
        .await
        .unwrap()
        .is_clean());
    assert_eq!(acme.query::<Invite>().count().await.unwrap(), 1);
    // Nothing expired is left: a second sweep does nothing.
    let report = db.admin().sweep_expired::<Invite>().await.unwrap();
    assert_eq!(report, popoto::SweepReport::default());
}

#[tokio::test]
async fn sweeps_leave_live_instances_and_follow_their_hashes() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let soon = after(&server, 200);
    let a = acme.create(invite("a@x.io", 1, Some(soon))).await.unwrap();
    let b = acme.create(invite("b@x.io", 2, Some(soon))).await.unwrap();
    acme.create(invite("c@x.io", 3, Some(soon))).await.unwrap();
    // a is saved again without an expiry before its time: the hash keeps its TTL (HSET keeps
    // it), as popoto's save does.
    acme.save(&a).await.unwrap();
    let ka = Invite::key_of("acme", "a@x.io").redis_key();
    assert_eq!(pexpiretime(&server, &ka), soon.timestamp_millis());
    // b's TTL is removed behind popoto's back (PERSIST); c's is moved by a raw PEXPIREAT.
    let kb = Invite::key_of("acme", "b@x.io").redis_key();
    let kc = Invite::key_of("acme", "c@x.io").redis_key();
    raw_cmd::<i64>(&server, redis::cmd("PERSIST").arg(&kb));
    let far = after(&server, 3_600_000).timestamp_millis();
    raw_cmd::<i64>(&server, redis::cmd("PEXPIREAT").arg(&kc).arg(far));
    wait_past(&server, soon);
    let report = acme.sweep_expired::<Invite>().await.unwrap();
    assert_eq!(
        (report.swept, report.persisted, report.rescored),
        (1, 1, 1),
        "{report:?}"
    );
    assert_eq!(
        zrange(&server, "$ExpireF:Invite:acme"),
        [(kc.clone(), far as f64)]
    );
    assert_eq!(acme.query::<Invite>().count().await.unwrap(), 2);
    assert!(
        acme.get(&Invite::key_of("acme", "b@x.io")).await.unwrap()
            == Some(Invite { expires: None, ..b })
    );
    // Another tenant's instance planted in acme's expiry set is left and reported.
    db.tenant("globex")
        .unwrap()
        .create(invite("x@x.io", 1, None))
        .await
        .unwrap();
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$ExpireF:Invite:acme")
            .arg(1)
            .arg(Invite::key_of("globex", "x@x.io").redis_key()),
    );
    let report = acme.sweep_expired::<Invite>().await.unwrap();
    assert_eq!(report.skipped, 1, "{report:?}");
    let audit = db.admin().audit::<Invite>().await.unwrap();
    assert!(
        audit
            .isolation_violations()
            .any(|f| f.index == "$ExpireF:Invite:acme"),
        "{audit}"
    );
}

#[tokio::test]
async fn key_moves_carry_the_expiry_and_writes_may_set_another() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let t = after(&server, 3_600_000);
    let a = acme.create(invite("a@x.io", 1, Some(t))).await.unwrap();
    let moved = acme
        .move_key(
            &a,
            Invite {
                email: "b@x.io".into(),
                expires: None,
                ..a.clone()
            },
        )
        .await
        .unwrap();
    let kb = Invite::key_of("acme", "b@x.io").redis_key();
    assert_eq!(pexpiretime(&server, &kb), t.timestamp_millis());
    assert_eq!(
        zrange(&server, "$ExpireF:Invite:acme"),
        [(kb.clone(), t.timestamp_millis() as f64)]
    );
    // A save with another time replaces it.
    let t2 = after(&server, 7_200_000);
    acme.save(&Invite {
        expires: Some(t2),
        ..moved
    })
    .await
    .unwrap();
    assert_eq!(pexpiretime(&server, &kb), t2.timestamp_millis());
    assert_eq!(
        zrange(&server, "$ExpireF:Invite:acme"),
        [(kb, t2.timestamp_millis() as f64)]
    );
    popoto::testing::assert_isolated::<Invite>(&db).await;
}

#[tokio::test]
async fn destroy_export_and_import_carry_expiries() {
    let (server, db) = setup().await;
    let models = ModelSet::new().with::<Invite>().with::<Login>();
    let (acme, globex) = (db.tenant("acme").unwrap(), db.tenant("globex").unwrap());
    let t = after(&server, 3_600_000);
    for i in 0..4 {
        acme.create(invite(&format!("a{i}@x.io"), i, Some(t)))
            .await
            .unwrap();
        globex
            .create(invite(&format!("a{i}@x.io"), i, Some(t)))
            .await
            .unwrap();
        acme.create(Login {
            at: i,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let before = dump(&server);
    let ttls: Vec<(String, i64)> = all_keys(&server)
        .into_iter()
        .filter(|k| k.starts_with("Invite:") || k.starts_with("Login:"))
        .map(|k| {
            let t = pexpiretime(&server, &k);
            (k, t)
        })
        .collect();
    let mut stream = Vec::new();
    db.admin()
        .export_tenant(&tid("acme"), &models, &mut stream)
        .await
        .unwrap();
    let report = db
        .admin()
        .destroy_tenant(&tid("acme"), &models)
        .await
        .unwrap();
    assert_eq!(report.instances.get("Invite"), Some(&4), "{report:?}");
    assert_eq!(report.instances.get("Login"), Some(&4), "{report:?}");
    // Nothing of acme is left, its expiry sets included; globex's is whole.
    assert!(
        all_keys(&server).iter().all(|k| !k.contains(":acme")),
        "{:?}",
        all_keys(&server)
    );
    assert_eq!(zrange(&server, "$ExpireF:Invite:globex").len(), 4);
    db.admin()
        .import_tenant(&tid("acme"), &models, stream.as_slice())
        .await
        .unwrap();
    assert_eq!(dump(&server), before);
    // The hashes expire when they did before the export.
    for (k, t) in ttls {
        assert_eq!(pexpiretime(&server, &k), t, "{k}");
    }
    popoto::testing::assert_db_isolated(&db, &models).await;
}

#[tokio::test]
async fn an_expiry_in_the_past_expires_at_once_and_is_swept() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let past = after(&server, -60_000);
    acme.create(invite("gone@x.io", 1, Some(past)))
        .await
        .unwrap();
    assert!(acme
        .get(&Invite::key_of("acme", "gone@x.io"))
        .await
        .unwrap()
        .is_none());
    assert_eq!(acme.query::<Invite>().count().await.unwrap(), 0);
    assert_no_orphans(&server, "Invite");
    assert!(db.admin().audit::<Invite>().await.unwrap().is_clean());
    // A time before the epoch is no Redis expiry: refused before anything is sent.
    let e = acme
        .save(&invite("x@x.io", 1, DateTime::from_timestamp_millis(-5)))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidValue {
                model: "Invite",
                field: "expires",
                ..
            }
        ),
        "{e}"
    );
    assert_no_orphans(&server, "Invite");
    assert!(all_keys(&server).iter().all(|k| !k.contains("x@x.io")));
}

#[tokio::test]
async fn an_instance_expired_by_another_client_is_purged_by_the_reads_that_meet_it() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    for i in 0..3 {
        acme.create(invite(&format!("a{i}@x.io"), i, None))
            .await
            .unwrap();
    }
    // A popoto client's `EXPIRE`: the hash expires, no expiry entry knows it.
    let k = Invite::key_of("acme", "a1@x.io").redis_key();
    let at = after(&server, 100);
    raw_cmd::<i64>(
        &server,
        redis::cmd("PEXPIREAT").arg(&k).arg(at.timestamp_millis()),
    );
    wait_past(&server, at);
    assert!(zrange(&server, "$ExpireF:Invite:acme").is_empty());
    assert_eq!(acme.query::<Invite>().count().await.unwrap(), 2);
    assert_no_orphans(&server, "Invite");
    assert!(db.admin().audit::<Invite>().await.unwrap().is_clean());
}

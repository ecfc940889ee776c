//! Group commit: creates issued concurrently go to the server together, as batches of one
//! script call, and each instance of a batch is still all or nothing with its own outcome.

mod support;

use std::collections::BTreeMap;

use popoto::Error;
use support::faults::{all_or_nothing, item_probes, killer};
use support::{all_keys, calls, episode, hgetall, raw_cmd, setup, smembers, zrange, Episode, Item};

/// 512 concurrent creates of items of 4 tenants: every 8th repeats another task's unique sku,
/// and tenant `bad` has an index key of the wrong type. Each create gets its own outcome
/// (written, `UniqueViolation`, `WrongType`); what was written is complete, what was refused
/// left nothing; and the server ran fewer script calls than creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_are_batched_and_each_is_all_or_nothing() {
    let (server, db) = setup().await;
    // A string where tenant `bad`'s sorted-set partition of region `eu` must go.
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg("$SortF:Item:level:bad:eu")
            .arg("planted"),
    );
    let scripts_before = calls(&server, "evalsha") + calls(&server, "eval");
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let db = db.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for j in 0..8usize {
                    let tenant = ["acme", "globex", "initech", "bad"][(t + j) % 4];
                    // sku `dup{t/2}` is claimed by two tasks (j == 0): one of them wins.
                    let sku = if j == 0 {
                        format!("dup{}", t / 2)
                    } else {
                        format!("s{t}x{j}")
                    };
                    let item = Item {
                        sku: sku.clone(),
                        region: "eu".into(),
                        level: (t * 8 + j) as i64,
                        ..Default::default()
                    };
                    let r = db.tenant(tenant).unwrap().create(item).await;
                    out.push((tenant, sku, r.map(|_| ())));
                }
                out
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.unwrap());
    }
    let scripts = calls(&server, "evalsha") + calls(&server, "eval") - scripts_before;
    assert!(
        scripts < 512,
        "{scripts} script calls for 512 creates: nothing was batched"
    );

    let mut winners: BTreeMap<String, usize> = BTreeMap::new();
    for (tenant, sku, r) in &outcomes {
        let key = format!("Item:{sku}:{tenant}");
        match r {
            Ok(()) => {
                assert_ne!(*tenant, "bad", "a create into a wrong-type key succeeded");
                *winners.entry(sku.clone()).or_default() += 1;
                assert!(!hgetall(&server, &key).is_empty(), "{key} hash missing");
                assert!(
                    smembers(&server, "$Class:Item").contains(&key),
                    "{key} class"
                );
                let zset = format!("$SortF:Item:level:{tenant}:eu");
                assert!(
                    zrange(&server, &zset).iter().any(|(m, _)| *m == key),
                    "{key} missing from {zset}"
                );
            }
            Err(Error::UniqueViolation { .. }) => {
                assert!(sku.starts_with("dup"), "{sku} refused as not unique");
                assert!(hgetall(&server, &key).is_empty(), "{key} half written");
            }
            Err(Error::WrongType { key: k, found, .. }) => {
                assert_eq!(*tenant, "bad");
                assert_eq!(
                    (k.as_str(), found.as_str()),
                    ("$SortF:Item:level:bad:eu", "string")
                );
                assert!(hgetall(&server, &key).is_empty(), "{key} half written");
            }
            Err(e) => panic!("{tenant}/{sku}: unexpected {e}"),
        }
    }
    // Tenant `bad` wrote nothing anywhere; every sku has at most one owner, every pair of
    // tasks sharing a `dup` sku produced exactly one winner unless both were `bad`.
    assert!(all_keys(&server)
        .iter()
        .all(|k| !k.starts_with("Item:") || !k.ends_with(":bad")));
    assert!(smembers(&server, "$Class:Item")
        .iter()
        .all(|m| !m.ends_with(":bad")));
    assert!(winners.values().all(|n| *n == 1), "{winners:?}");
    let written = outcomes.iter().filter(|o| o.2.is_ok()).count();
    assert_eq!(smembers(&server, "$Class:Item").len(), written);
    assert!(written > 300, "only {written} creates written");
}

/// Creates of one shape sent together go compact in their batch (only their own key, fields
/// and scores): 64 tasks creating 16 episodes each in one tenant. Every instance lands whole
/// (its hash, its class and key-field set members, its score in both zsets), and the server
/// ran fewer script calls than creates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_shape_creates_batch_compactly_and_land_whole() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    // The first call loads the script (`EVALSHA` refused, then `EVAL`).
    acme.create(episode("", "first", 0.0, 0)).await.unwrap();
    let before = calls(&server, "evalsha") + calls(&server, "eval");
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let acme = acme.clone();
            tokio::spawn(async move {
                let mut made = Vec::new();
                for j in 0..16 {
                    let n = t * 16 + j;
                    let ep = episode("", &format!("t{n}"), f64::from(n) / 1024.0, i64::from(n));
                    made.push(acme.create(ep).await.unwrap());
                }
                made
            })
        })
        .collect();
    let mut made = Vec::new();
    for t in tasks {
        made.extend(t.await.unwrap());
    }
    let scripts = calls(&server, "evalsha") + calls(&server, "eval") - before;
    assert!(scripts < 1024, "{scripts} script calls for 1,024 creates");
    let class = smembers(&server, "$Class:Episode");
    let keyf = smembers(&server, "$KeyF:Episode:project_id:acme");
    let scores: BTreeMap<String, f64> = zrange(&server, "$SortF:Episode:score:acme")
        .into_iter()
        .collect();
    let ranks: BTreeMap<String, f64> = zrange(&server, "$SortF:Episode:rank").into_iter().collect();
    assert_eq!(
        (class.len(), keyf.len(), scores.len(), ranks.len()),
        (1025, 1025, 1025, 1025)
    );
    for e in &made {
        let key = Episode::key_of("acme", e.episode_id.as_str());
        assert_eq!(acme.get(&key).await.unwrap().as_ref(), Some(e));
        let key = key.redis_key();
        assert!(class.contains(&key) && keyf.contains(&key), "{key}");
        assert_eq!(scores.get(&key), Some(&e.score), "{key}");
        assert_eq!(ranks.get(&key), Some(&(e.rank as f64)), "{key}");
    }
}

/// A lone task's creates are not held back: each goes out as its own call at once.
#[tokio::test]
async fn a_lone_create_is_one_script_call() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    // The first call loads the script (`EVALSHA` refused, then `EVAL`).
    acme.create(Item::default()).await.unwrap();
    let before = calls(&server, "evalsha") + calls(&server, "eval");
    for i in 0..20 {
        acme.create(Item {
            sku: format!("s{i}"),
            region: "eu".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    }
    assert_eq!(
        calls(&server, "evalsha") + calls(&server, "eval") - before,
        20
    );
    assert_eq!(smembers(&server, "$Class:Item").len(), 21);
}

/// Every client killed while 64 tasks create items (most of them in batches): each instance is
/// all or nothing, every failure is a connection error, and the same `Db` goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_batches_leaves_every_instance_all_or_nothing() {
    let (server, db) = setup().await;
    const TASKS: usize = 64;
    const PER_TASK: usize = 40;
    let all: Vec<Item> = (0..TASKS * PER_TASK)
        .map(|i| Item {
            tenant: "acme".into(),
            sku: format!("sku{i}"),
            region: ["eu", "us", "ap"][i % 3].into(),
            level: i as i64,
            note: Some(format!("note {i}")),
        })
        .collect();
    let mut cut = 0;
    for round in 0..3u64 {
        raw_cmd::<()>(&server, &redis::cmd("FLUSHDB"));
        let threshold = (TASKS * PER_TASK) as u64 * (round + 1) / 4;
        let k = killer(
            server.url().to_owned(),
            redis::cmd("SCARD").arg("$Class:Item").clone(),
            threshold,
        );
        let tasks: Vec<_> = all
            .chunks(PER_TASK)
            .map(|chunk| {
                let (t, chunk) = (db.tenant("acme").unwrap(), chunk.to_vec());
                tokio::spawn(async move {
                    let mut failed = 0;
                    for item in chunk {
                        match t.create(item).await {
                            Ok(_) => {}
                            Err(e) => {
                                assert!(e.is_connection_error(), "{e}");
                                failed += 1;
                            }
                        }
                    }
                    failed
                })
            })
            .collect();
        let mut failed = 0;
        for t in tasks {
            failed += t.await.unwrap();
        }
        assert!(
            k.join().unwrap().is_some(),
            "round {round}: the killer never fired"
        );
        let present = all_or_nothing(&server, &all, item_probes);
        if failed > 0 && present < all.len() {
            cut += 1;
        }
        assert!(
            present + failed >= all.len(),
            "a create reported Ok but is missing"
        );
        popoto::testing::assert_isolated::<Item>(&db).await;
        // The same Db goes on: saving every item completes what the kill left out.
        db.tenant("acme")
            .unwrap()
            .save_many(all.clone())
            .await
            .unwrap();
        assert_eq!(all_or_nothing(&server, &all, item_probes), all.len());
    }
    assert!(cut >= 2, "only {cut} of 3 rounds were cut mid-way");
}

/// `save_many` of items (a movable partition: plans batched in `apply.lua` calls) with a
/// wrong-type partition key met midway: every plan type-checks its keys before its first
/// write, so the plan naming it is refused alone and the plans around it, in the same script
/// call, are written whole.
#[tokio::test]
async fn a_refused_plan_midway_through_a_batch_leaves_its_neighbours_whole() {
    let (server, db) = setup().await;
    raw_cmd::<()>(
        &server,
        redis::cmd("SET")
            .arg("$SortF:Item:level:acme:bad")
            .arg("planted"),
    );
    let items: Vec<Item> = (0..9)
        .map(|i| Item {
            tenant: "acme".into(),
            sku: format!("sku{i}"),
            region: if i == 4 { "bad" } else { "eu" }.into(),
            level: i,
            note: None,
        })
        .collect();
    let before = calls(&server, "evalsha") + calls(&server, "eval");
    let err = db
        .tenant("acme")
        .unwrap()
        .save_many(items.clone())
        .await
        .unwrap_err();
    // The nine plans went in one call (after the script was loaded).
    assert!(calls(&server, "evalsha") + calls(&server, "eval") - before <= 2);
    assert_eq!(err.failed.len(), 1, "{err:?}");
    let (index, _, e) = &err.failed[0];
    assert_eq!(*index, 4);
    assert!(
        matches!(e, Error::WrongType { key, .. } if key == "$SortF:Item:level:acme:bad"),
        "{e:?}"
    );
    let neighbours: Vec<Item> = items.iter().filter(|i| i.level != 4).cloned().collect();
    assert_eq!(all_or_nothing(&server, &neighbours, item_probes), 8);
    assert!(hgetall(&server, "Item:sku4:acme").is_empty());
    assert!(!smembers(&server, "$Class:Item").contains(&"Item:sku4:acme".to_owned()));
}

/// Logins with a model TTL and a per-tenant unique handle, created by 64 tasks at once (most in
/// batches): every written one has its TTL and its expiry entry, and within each tenant one
/// handle has exactly one owner while another tenant may reuse it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_creates_keep_expiry_and_per_tenant_uniqueness() {
    #[derive(popoto::Model, Debug, Clone, PartialEq, Default)]
    #[popoto(ttl = 3600)]
    struct Login {
        #[popoto(key, tenant)]
        org: String,
        #[popoto(auto_key)]
        id: String,
        #[popoto(unique_key, per_tenant)]
        handle: String,
    }
    let (server, db) = setup().await;
    let before = calls(&server, "evalsha") + calls(&server, "eval");
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let db = db.clone();
            tokio::spawn(async move {
                let org = ["acme", "globex"][t % 2];
                let mut won = Vec::new();
                for j in 0..6 {
                    // Every handle is claimed by 4 tasks of each tenant.
                    let handle = format!("h{}x{j}", t / 8);
                    let login = Login {
                        handle: handle.clone(),
                        ..Default::default()
                    };
                    match db.tenant(org).unwrap().create(login).await {
                        Ok(l) => won.push((org, handle, l.id)),
                        Err(Error::UniqueViolation { .. }) => {}
                        Err(e) => panic!("{org}/{handle}: {e}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut won = Vec::new();
    for t in tasks {
        won.extend(t.await.unwrap());
    }
    let scripts = calls(&server, "evalsha") + calls(&server, "eval") - before;
    assert!(
        scripts < 384,
        "{scripts} script calls for 384 creates: nothing was batched"
    );
    // 8 handle groups x 6 handles, once per tenant.
    assert_eq!(won.len(), 2 * 8 * 6, "{won:?}");
    let mut owners: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (org, handle, id) in &won {
        *owners
            .entry(((*org).to_owned(), handle.clone()))
            .or_default() += 1;
        let key = format!("Login:{handle}:{id}:{org}");
        let pttl: i64 = raw_cmd(&server, redis::cmd("PTTL").arg(&key));
        assert!(pttl > 3_500_000 && pttl <= 3_600_000, "{key}: PTTL {pttl}");
        let at: Option<f64> = raw_cmd(
            &server,
            redis::cmd("ZSCORE")
                .arg(format!("$ExpireF:Login:{org}"))
                .arg(&key),
        );
        assert!(at.is_some(), "{key} has no expiry entry");
    }
    assert!(owners.values().all(|n| *n == 1), "{owners:?}");
}

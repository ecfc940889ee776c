//! Faults on clusters of their own: a master killed while several tasks write (its replica is
//! promoted; every instance stays all or nothing and writes succeed again), and a tenant's slot
//! moved to another master while tasks create and save its instances (nothing lost, nothing
//! duplicated, every write answered Ok: the client follows `ASK`/`MOVED` and waits out
//! `TRYAGAIN`), including a bulk save split by the move.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use popoto::testing::TestCluster;
use popoto::{BackendConfig, Db, Layout};
use popoto_core::keys::tag;

use crate::common::*;
use crate::support::*;

/// A `Db` on `cluster` whose calls give up after 5 s, so that a writer stuck on a dead node
/// tries again instead of waiting 30 s.
fn impatient_db(cluster: &TestCluster) -> Db {
    let mut config = BackendConfig::cluster(cluster.urls());
    config.response_timeout = Duration::from_secs(5);
    config.connect_timeout = Duration::from_millis(500);
    Db::with_config(config).unwrap_or_else(|e| panic!("{e}"))
}

/// The slot of `tenant`'s keys.
fn slot_of_tenant(cluster: &TestCluster, tenant: &str) -> u16 {
    cluster
        .slot_of(&format!("{{{}}}", tag("", Some(tenant))))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `cond` every 20 ms until it holds; panics after `within` naming `what`.
async fn until(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "waited {within:?} for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What one writer did: each create answered Ok (key → title) and the last score each of its
/// saves answered Ok with; writes that failed, by error.
#[derive(Default)]
struct Done {
    created: BTreeMap<String, (String, f64)>,
    failed: Vec<String>,
    /// Creates answered Ok that started after `after` was raised.
    created_after: Vec<String>,
}

/// Starts `n` writers on `tenant`: each creates episodes (`w<k>-<i>`) and saves every other
/// one again with a new score, until `stop`; `ops` counts the writes answered Ok.
fn writers(
    db: &Db,
    tenant: &str,
    n: usize,
    stop: &Arc<AtomicBool>,
    after: &Arc<AtomicBool>,
    ops: &Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Done>> {
    (0..n)
        .map(|k| {
            let (s, stop, after, ops) = (
                db.tenant(tenant).unwrap(),
                stop.clone(),
                after.clone(),
                ops.clone(),
            );
            tokio::spawn(async move {
                let mut done = Done::default();
                let mut i = 0;
                while !stop.load(Ordering::Acquire) {
                    i += 1;
                    let late = after.load(Ordering::Acquire);
                    let title = format!("w{k}-{i}");
                    match s.create_keyed(episode("", &title, 0.0, i)).await {
                        Ok((key, mut ep)) => {
                            ops.fetch_add(1, Ordering::AcqRel);
                            let id = ep.episode_id.clone();
                            done.created.insert(id.clone(), (title, 0.0));
                            if late {
                                done.created_after.push(id.clone());
                            }
                            if i % 2 == 0 {
                                ep.score = f64::from(i as u32);
                                match s.save(&ep).await {
                                    Ok(()) => {
                                        ops.fetch_add(1, Ordering::AcqRel);
                                        done.created.insert(id, (ep.title.clone(), ep.score));
                                    }
                                    Err(e) => done.failed.push(format!("save {key:?}: {e}")),
                                }
                            }
                        }
                        Err(e) => done.failed.push(format!("create {title}: {e}")),
                    }
                }
                done
            })
        })
        .collect()
}

/// Stops the writers and gathers what they did.
async fn gather(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<Done>>) -> Vec<Done> {
    stop.store(true, Ordering::Release);
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// The episodes of `tenant` by id.
async fn episodes_by_id(db: &Db, tenant: &str) -> BTreeMap<String, Episode> {
    db.tenant(tenant)
        .unwrap()
        .query::<Episode>()
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| (e.episode_id.clone(), e))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_during_writes_fails_over_and_every_instance_stays_whole() {
    let mut cluster = TestCluster::start_with_replicas(3, 1).unwrap_or_else(|e| panic!("{e}"));
    let db = impatient_db(&cluster);
    let t = "failover";
    let slot = slot_of_tenant(&cluster, t);
    let victim = cluster.master_of(slot).unwrap();
    let (stop, after, ops): (Arc<AtomicBool>, Arc<AtomicBool>, Arc<AtomicU64>) = Default::default();
    let tasks = writers(&db, t, 4, &stop, &after, &ops);
    until("writes before the kill", Duration::from_secs(20), || {
        ops.load(Ordering::Acquire) >= 40
    })
    .await;
    cluster.nodes_mut()[victim].kill();
    cluster
        .wait_for("a replica promoted in the dead master's place", |c| {
            Ok(c.agreed()? && c.master_of(slot)? != victim)
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let promoted = cluster.master_of(slot).unwrap();
    after.store(true, Ordering::Release);
    // The backend recovers: writes started after the failover succeed.
    let at_failover = ops.load(Ordering::Acquire);
    until("writes after the failover", Duration::from_secs(30), || {
        ops.load(Ordering::Acquire) >= at_failover + 40
    })
    .await;
    let done = gather(&stop, tasks).await;
    let fresh = db
        .tenant(t)
        .unwrap()
        .create(episode("", "after", 1.0, 1))
        .await
        .unwrap_or_else(|e| panic!("a create after the failover: {e}"));

    // Every instance on the promoted master is whole: its hash and every index entry, or none
    // (the crate's index check agrees).
    let instances = assert_all_or_nothing(&cluster, &db, t, "Episode", true).await;
    assert_clean(&db).await;
    let read = episodes_by_id(&db, t).await;
    assert_eq!(read.len(), instances.len(), "every whole instance is read");
    assert!(read.contains_key(&fresh.episode_id));
    // A create acknowledged after the failover is durable (before it, an acknowledged write
    // the replica had not received yet may be lost: replication is asynchronous).
    let late: Vec<&String> = done.iter().flat_map(|d| &d.created_after).collect();
    assert!(!late.is_empty());
    for id in late {
        assert!(
            read.contains_key(id),
            "created after the failover, then lost: {id}"
        );
    }
    assert!(cluster.keys(&tenant_pattern(t)).unwrap().len() > 4);
    assert_eq!(cluster.masters().unwrap().len(), 3, "{promoted}");
}

/// The crate's index check of `Episode` over every tenant keyspace finds nothing.
async fn assert_clean(db: &Db) {
    let report = db
        .admin()
        .check_indexes::<Episode>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_clean(), "{report}");
}

/// `errorstat_<code>` counts of `node` (`INFO errorstats`): redirections and `TRYAGAIN` count.
fn error_count(cluster: &TestCluster, node: usize, code: &str) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("errorstats")
        .query(&mut cluster.nodes()[node].raw())
        .unwrap_or_else(|e| panic!("{e}"));
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("errorstat_{code}:count=")))
        .map_or(0, |n| {
            n.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{l}: {e}", l = n))
        })
}

/// A master other than `from`.
fn another_master(cluster: &TestCluster, from: usize) -> usize {
    cluster
        .masters()
        .unwrap()
        .into_iter()
        .find(|m| *m != from)
        .expect("three masters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moved_during_writes_loses_and_duplicates_nothing() {
    let cluster = TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let db = db_on(&cluster);
    let t = "reshard";
    seed_episodes(&db, t, 40).await;
    let slot = slot_of_tenant(&cluster, t);
    let from = cluster.master_of(slot).unwrap();
    let to = another_master(&cluster, from);
    let (stop, after, ops): (Arc<AtomicBool>, Arc<AtomicBool>, Arc<AtomicU64>) = Default::default();
    let tasks = writers(&db, t, 4, &stop, &after, &ops);
    until("writes before the move", Duration::from_secs(20), || {
        ops.load(Ordering::Acquire) >= 40
    })
    .await;
    // Half the keys move, then the writers meet the split slot (ASK, TRYAGAIN), then the rest.
    let redirected = || {
        error_count(&cluster, from, "ASK")
            + error_count(&cluster, from, "TRYAGAIN")
            + error_count(&cluster, to, "TRYAGAIN")
    };
    let before = redirected();
    cluster.begin_slot_move(slot, from, to).unwrap();
    let total = tenant_keys(&cluster, t).len();
    let mut moved = 0;
    loop {
        let n = cluster.migrate_keys(slot, from, to, 5).unwrap();
        moved += n;
        if n == 0 || moved >= total / 2 {
            break;
        }
    }
    until(
        "a write redirected by the move",
        Duration::from_secs(20),
        || redirected() > before,
    )
    .await;
    while cluster.migrate_keys(slot, from, to, 5).unwrap() > 0 {}
    cluster.end_slot_move(slot, to).unwrap();
    cluster
        .wait_for("the nodes to agree on the move", |c| c.agreed())
        .unwrap_or_else(|e| panic!("{e}"));
    after.store(true, Ordering::Release);
    let at_end = ops.load(Ordering::Acquire);
    until("writes after the move", Duration::from_secs(30), || {
        ops.load(Ordering::Acquire) >= at_end + 20
    })
    .await;
    let done = gather(&stop, tasks).await;
    assert_eq!(cluster.master_of(slot).unwrap(), to);

    // Every write was answered Ok: the client waited out the move.
    let failed: Vec<&String> = done.iter().flat_map(|d| &d.failed).collect();
    assert!(failed.is_empty(), "{failed:?}");
    // Nothing lost, nothing duplicated: exactly the seeded and the created instances, each as
    // last saved.
    let read = episodes_by_id(&db, t).await;
    let created: BTreeMap<&String, &(String, f64)> = done.iter().flat_map(|d| &d.created).collect();
    assert_eq!(read.len(), 40 + created.len());
    for (id, (title, score)) in created {
        let ep = read.get(id).unwrap_or_else(|| panic!("{title} lost"));
        assert_eq!((&ep.title, ep.score), (title, *score));
    }
    let instances = assert_all_or_nothing(&cluster, &db, t, "Episode", true).await;
    assert_eq!(instances.len(), read.len());
    assert_clean(&db).await;
    let on_target: Vec<String> = redis::cmd("KEYS")
        .arg(tenant_pattern(t))
        .query(&mut cluster.nodes()[to].raw())
        .unwrap();
    assert_eq!(on_target.len(), tenant_keys(&cluster, t).len());
}

/// A bulk save of more plans than one script call carries, while the tenant's slot is split:
/// the call whose keys are split gets `TRYAGAIN` and is sent again; the calls that ran are not.
/// Every page is saved exactly once (a second application would be refused as stale).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_save_split_by_a_slot_move_applies_each_instance_once() {
    let cluster = TestCluster::start(3).unwrap_or_else(|e| panic!("{e}"));
    let db = db_on(&cluster);
    let t = "reshard-bulk";
    let s = db.tenant(t).unwrap();
    let pages: Vec<Page> = (0..250)
        .map(|i| Page {
            slug: format!("p{i:03}"),
            body: "v1".into(),
            ..Default::default()
        })
        .collect();
    let pages = s.create_many(pages).await.unwrap_or_else(|e| panic!("{e}"));
    let slot = slot_of_tenant(&cluster, t);
    let from = cluster.master_of(slot).unwrap();
    let to = another_master(&cluster, from);
    cluster.begin_slot_move(slot, from, to).unwrap();
    // Only page 150's hash moves: the second call of the bulk save has its keys split.
    let split = Page::key_of(t, "p150").redis_key_in(Layout::Cluster);
    redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(cluster.nodes()[to].port())
        .arg(&split)
        .arg(0)
        .arg(5000)
        .exec(&mut cluster.nodes()[from].raw())
        .unwrap();
    let tryagain = error_count(&cluster, from, "TRYAGAIN");
    let changed: Vec<Page> = pages
        .into_iter()
        .map(|p| Page {
            body: "v2".into(),
            ..p
        })
        .collect();
    let save = {
        let s = s.clone();
        tokio::spawn(async move { s.save_many(changed).await })
    };
    until(
        "the split call refused with TRYAGAIN",
        Duration::from_secs(20),
        || error_count(&cluster, from, "TRYAGAIN") > tryagain,
    )
    .await;
    while cluster.migrate_keys(slot, from, to, 50).unwrap() > 0 {}
    cluster.end_slot_move(slot, to).unwrap();
    let saved = save
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{:?}", e.failed.iter().take(3).collect::<Vec<_>>()));
    assert_eq!(saved.len(), 250);
    let read = s.query::<Page>().fetch().await.unwrap();
    assert_eq!(read.len(), 250);
    for p in read {
        assert_eq!((p.body.as_str(), p.version), ("v2", 2), "{}", p.slug);
    }
}

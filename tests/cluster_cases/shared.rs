//! Shared models on the shared cluster, cluster layout: every key of one shared instance sits
//! in one slot (its own hash tag) and instances spread over the masters; tenants read and
//! write by their grant with every merge strategy; refusals are typed and change nothing; a
//! revoke racing writes lets none through after it; unsubscribe, unshare and a tenant's
//! destruction remove both sides of its grants; ids are listed by a scan of every master.
//! Each test uses models and tenants of its own (ids are listed across the cluster).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use popoto::shared::{Access, Merge, MergeStrategy, Patch, Replica, SharedId};
use popoto::testing::TestCluster;
use popoto::{Db, Error, Layout, Model, ModelSet};
use popoto_core::keys::{shared_tag, FeedOf};

use crate::common::{raw, shared_db};
use crate::support::tid;

/// A document several tenants co-edit.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
pub struct Sheet {
    pub title: String,
    pub body: String,
    pub votes: i64,
}

/// Shared instances only the slot test writes (its ids are listed across the cluster).
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
pub struct Spread {
    pub n: i64,
}

/// A counter merged by an additive custom strategy.
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
pub struct Tally {
    pub total: i64,
}

/// Adds the patch's total to the current one.
struct Additive;

impl MergeStrategy<Tally> for Additive {
    fn merge(&self, current: &Tally, patch: &Patch<Tally>, _: &str) -> popoto::Result<Tally> {
        Ok(Tally {
            total: current.total + patch.value()?.total,
        })
    }
}

/// A sheet titled `title`.
pub fn sheet(title: &str) -> Sheet {
    Sheet {
        title: title.into(),
        body: "b".into(),
        votes: 0,
    }
}

/// The `KEYS` pattern of every key of shared instance `id` of `model`.
pub fn instance_pattern(model: &str, id: &str) -> String {
    format!("{{{}}}*", shared_tag(model, id))
}

/// Every key of one shared instance on the cluster's masters.
pub fn instance_keys(cluster: &TestCluster, model: &str, id: &str) -> Vec<String> {
    cluster
        .keys(&instance_pattern(model, id))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Each key of an instance with its content (hash pairs, or a stream's length), to compare
/// before and after a refused call.
pub async fn instance_state(cluster: &TestCluster, db: &Db, model: &str, id: &str) -> String {
    let mut out = String::new();
    for k in instance_keys(cluster, model, id) {
        let ty: String = raw(db, redis::cmd("TYPE").arg(&k)).await;
        let content = match ty.as_str() {
            "hash" => {
                let h: Vec<(String, Vec<u8>)> = raw(db, redis::cmd("HGETALL").arg(&k)).await;
                format!("{h:?}")
            }
            "stream" => {
                let n: u64 = raw(db, redis::cmd("XLEN").arg(&k)).await;
                n.to_string()
            }
            other => other.to_owned(),
        };
        out.push_str(&format!("{k} {content}\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shared_instance_lives_in_one_slot_and_instances_spread_over_masters() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let host = db.admin().shared();
    let tenant = tid("sh-slots");
    // Ids with braces and colons: a tag of their own each, no injection into another's.
    let mut ids: Vec<SharedId> = vec![
        SharedId::new("a}{b").unwrap(),
        SharedId::new("x:{y}").unwrap(),
        SharedId::new(format!("e1}}{{{}", shared_tag("Spread", "e2"))).unwrap(),
        SharedId::new("e2").unwrap(),
    ];
    for n in 0..12 {
        ids.push(SharedId::new(format!("s{n}")).unwrap());
    }
    for (n, id) in ids.iter().enumerate() {
        host.share_as(id, &Spread { n: n as i64 }, Merge::LastWriteWins)
            .await
            .unwrap_or_else(|e| panic!("share {id}: {e}"));
        host.subscribe::<Spread>(&tenant, id, Access::Read)
            .await
            .unwrap_or_else(|e| panic!("subscribe {id}: {e}"));
        host.set_shared(id, &Spread { n: n as i64 + 100 })
            .await
            .unwrap();
    }
    let mut masters = BTreeSet::new();
    for id in &ids {
        let keys = instance_keys(cluster, "Spread", id.as_str());
        let (m, i) = ("Spread", id.as_str());
        let of = FeedOf::Shared(m, i);
        let l = Layout::Cluster;
        let want: BTreeSet<String> = [
            l.shared_value_key(m, i),
            l.shared_meta_key(m, i),
            l.shared_subs_key(m, i),
            l.feed_stream_key(of),
        ]
        .into();
        assert_eq!(keys.iter().cloned().collect::<BTreeSet<_>>(), want, "{id}");
        let slots: BTreeSet<u16> = keys
            .iter()
            .map(|k| cluster.slot_of(k).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        assert_eq!(slots.len(), 1, "{id}: {keys:?} span slots {slots:?}");
        let slot = *slots.iter().next().unwrap();
        masters.insert(cluster.master_of(slot).unwrap_or_else(|e| panic!("{e}")));
        // Each reads back its own value.
        let n = ids.iter().position(|i| i == id).unwrap() as i64;
        assert_eq!(host.get::<Spread>(id).await.unwrap().value.n, n + 100);
    }
    assert!(masters.len() > 1, "16 instances all on master {masters:?}");
    // The tenant's grants hash is under the tenant's tag; the cluster keeps no id set.
    let grants = cluster.keys("*$Shared:grants:sh/-slots").unwrap();
    assert_eq!(grants, ["{sh-slots}$Shared:grants:sh/-slots"]);
    assert!(cluster.keys("*$Shared:ids:*").unwrap().is_empty());
    // Ids are listed by a scan of every master, each verified.
    let mut want = ids.clone();
    want.sort();
    assert_eq!(host.ids::<Spread>().await.unwrap(), want);
    let subs = db.tenant_id(&tenant).shared_subscriptions().await.unwrap();
    assert_eq!(subs.len(), ids.len());
    // A meta hash planted under an instance's tag naming another id is not listed.
    let planted = format!(
        "{{{}}}$Shared:meta:Spread:ghost",
        shared_tag("Spread", "s0")
    );
    raw::<i64>(
        &db,
        redis::cmd("HSET")
            .arg(&planted)
            .arg("model")
            .arg("Spread")
            .arg("id")
            .arg("ghost"),
    )
    .await;
    assert_eq!(host.ids::<Spread>().await.unwrap(), want);
    raw::<i64>(&db, redis::cmd("DEL").arg(&planted)).await;
    for id in &ids {
        assert!(host.unshare::<Spread>(id).await.unwrap());
        assert!(instance_keys(cluster, "Spread", id.as_str()).is_empty());
    }
    assert!(host.ids::<Spread>().await.unwrap().is_empty());
    assert!(cluster
        .keys("*$Shared:grants:sh/-slots")
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_read_and_write_by_their_grant_with_every_merge_on_a_cluster() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let host = db.admin().shared();
    let (w, r, none) = ("sh-rw-w", "sh-rw-r", "sh-rw-none");
    let lww = host
        .share(&sheet("v1"), Merge::LastWriteWins)
        .await
        .unwrap();
    let crdt = host.share(&sheet("c1"), Merge::LwwMapCrdt).await.unwrap();
    for id in [&lww, &crdt] {
        host.subscribe::<Sheet>(&tid(w), id, Access::Write)
            .await
            .unwrap();
        host.subscribe::<Sheet>(&tid(r), id, Access::Read)
            .await
            .unwrap();
    }
    let writer = db.tenant(w).unwrap();
    let reader = db.tenant(r).unwrap();
    let outsider = db.tenant(none).unwrap();
    let got = writer.shared::<Sheet>().get(&lww).await.unwrap();
    assert_eq!((got.value.clone(), got.version), (sheet("v1"), 1));
    assert_eq!(got.access, Some(Access::Write));
    assert_eq!(
        reader.shared::<Sheet>().get(&lww).await.unwrap().access,
        Some(Access::Read)
    );

    // LWW: a patch, then the host's set.
    let edited = Sheet {
        title: "v2".into(),
        ..sheet("v1")
    };
    let written = writer
        .shared::<Sheet>()
        .patch(&lww, &Patch::diff(&sheet("v1"), &edited).unwrap())
        .await
        .unwrap();
    assert_eq!((written.version, written.applied), (2, 1));
    assert!(written.entry.is_some());
    host.set_shared(&lww, &sheet("v3")).await.unwrap();
    assert_eq!(reader.shared::<Sheet>().get(&lww).await.unwrap().version, 3);

    // Refusals: typed, nothing changed, no other tenant named.
    let before = instance_state(cluster, &db, "Sheet", lww.as_str()).await;
    let hijack = Patch::all(&sheet("hijack")).unwrap();
    match reader.shared::<Sheet>().patch(&lww, &hijack).await {
        Err(Error::ReadOnly { model: "Sheet", id }) => assert_eq!(id, lww.as_str()),
        other => panic!("expected ReadOnly, got {other:?}"),
    }
    for attempt in [
        outsider
            .shared::<Sheet>()
            .patch(&lww, &hijack)
            .await
            .map(drop),
        outsider.shared::<Sheet>().get(&lww).await.map(drop),
        outsider
            .shared::<Sheet>()
            .get(&SharedId::new("nope}{").unwrap())
            .await
            .map(drop),
    ] {
        let err = attempt.unwrap_err();
        assert!(matches!(err, Error::NotSubscribed { .. }), "{err:?}");
        let text = err.to_string();
        assert!(!text.contains(w) && !text.contains(r), "{text}");
    }
    assert_eq!(
        instance_state(cluster, &db, "Sheet", lww.as_str()).await,
        before
    );

    // LwwMapCrdt: per field, the greater tag wins whatever the arrival order.
    let early = Replica::new("early").unwrap();
    let late = Replica::new("late").unwrap();
    let old_tag = early.tick();
    let _ = late.tick();
    late.observe(&old_tag);
    let new_tag = late.tick();
    let a = writer.shared::<Sheet>();
    let newer = Patch::of(&sheet("newer")).unwrap().with(Sheet::title());
    let older = Patch::of(&sheet("older")).unwrap().with(Sheet::title());
    let first = a.patch_tagged(&crdt, &newer, &new_tag).await.unwrap();
    assert!(first.entry.is_some());
    let stale = a.patch_tagged(&crdt, &older, &old_tag).await.unwrap();
    assert_eq!((stale.entry, stale.applied), (None, 0));
    let read = reader.shared::<Sheet>().get(&crdt).await.unwrap();
    assert_eq!(read.value.title, "newer");
    assert_eq!(read.tags.get("title"), Some(&new_tag));

    // Custom: 16 concurrent additive updates, none lost.
    let tally = host
        .share(&Tally { total: 0 }, Merge::Custom)
        .await
        .unwrap();
    host.subscribe::<Tally>(&tid(w), &tally, Access::Write)
        .await
        .unwrap();
    assert!(matches!(
        writer
            .shared::<Tally>()
            .patch(&tally, &Patch::all(&Tally { total: 1 }).unwrap())
            .await,
        Err(Error::SharedMerge { .. })
    ));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (db, tally) = (db.clone(), tally.clone());
        tasks.push(tokio::spawn(async move {
            let delta = Patch::of(&Tally { total: 2 }).unwrap().with(Tally::total());
            db.tenant("sh-rw-w")
                .unwrap()
                .shared::<Tally>()
                .update(&tally, &Additive, &delta)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let end = host.get::<Tally>(&tally).await.unwrap();
    assert_eq!((end.value.total, end.version), (32, 17));

    // Only tenant handles reach shared instances.
    assert!(matches!(
        db.unscoped().shared::<Sheet>().get(&lww).await,
        Err(Error::SharedScope { .. })
    ));
    for id in [&lww, &crdt] {
        host.unshare::<Sheet>(id).await.unwrap();
    }
    host.unshare::<Tally>(&tally).await.unwrap();
}

/// A revoke racing writes on a cluster: every applied write came before the revoke returned
/// (the grant is checked in the write's own script call, in the instance's slot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_racing_writes_lets_none_through_after_it_on_a_cluster() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let host = db.admin().shared();
    let id = host.share(&sheet("0"), Merge::LastWriteWins).await.unwrap();
    host.subscribe::<Sheet>(&tid("sh-race"), &id, Access::Write)
        .await
        .unwrap();
    let revoked = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (db, id, revoked) = (db.clone(), id.clone(), revoked.clone());
        writers.push(tokio::spawn(async move {
            let session = db.tenant("sh-race").unwrap();
            let access = session.shared::<Sheet>();
            let (mut applied, mut refused) = (Vec::new(), 0);
            for i in 0..100_000u64 {
                let patch = Patch::all(&sheet(&format!("{w}-{i}"))).unwrap();
                let seen_revoked = revoked.load(Ordering::SeqCst);
                match access.patch(&id, &patch).await {
                    Ok(written) => {
                        assert!(!seen_revoked, "a write after the revoke was applied");
                        applied.push(written.version);
                    }
                    Err(Error::NotSubscribed { .. }) => {
                        refused += 1;
                        if refused == 10 {
                            return applied;
                        }
                    }
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
            panic!("writer {w} never saw the revoke");
        }));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while host.get::<Sheet>(&id).await.unwrap().version < 30 {
        assert!(std::time::Instant::now() < deadline, "writes never flowed");
        tokio::task::yield_now().await;
    }
    assert!(host
        .unsubscribe::<Sheet>(&tid("sh-race"), &id)
        .await
        .unwrap());
    revoked.store(true, Ordering::SeqCst);
    let at_revoke = host.get::<Sheet>(&id).await.unwrap().version;
    let mut all = Vec::new();
    for w in writers {
        all.extend(w.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (2..=at_revoke).collect::<Vec<_>>());
    assert_eq!(host.get::<Sheet>(&id).await.unwrap().version, at_revoke);
    // One event per applied write (and the share), in the instance's slot.
    let stream = popoto::feed::FeedSource::shared::<Sheet>(&id).stream_key_in(Layout::Cluster);
    let len: u64 = raw(&db, redis::cmd("XLEN").arg(&stream)).await;
    assert_eq!(len, at_revoke);
    assert!(instance_keys(cluster, "Sheet", id.as_str()).contains(&stream));
    host.unshare::<Sheet>(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_unshare_and_destroy_remove_both_sides_on_a_cluster() {
    let (cluster, db) = (TestCluster::shared(), shared_db());
    let host = db.admin().shared();
    let (keep, gone) = ("sh-life-keep", "sh-life-gone");
    let a = host.share(&sheet("a"), Merge::LwwMapCrdt).await.unwrap();
    let b = host.share(&sheet("b"), Merge::LastWriteWins).await.unwrap();
    for id in [&a, &b] {
        host.subscribe::<Sheet>(&tid(keep), id, Access::Read)
            .await
            .unwrap();
        host.subscribe::<Sheet>(&tid(gone), id, Access::Write)
            .await
            .unwrap();
    }
    let keeper = db.tenant(keep).unwrap();
    let grants_of = |t: &str| format!("{{{t}}}$Shared:grants:{}", t.replace('-', "/-"));

    // Unsubscribe: both sides.
    assert!(host.unsubscribe::<Sheet>(&tid(keep), &a).await.unwrap());
    assert!(!host.unsubscribe::<Sheet>(&tid(keep), &a).await.unwrap());
    assert!(matches!(
        keeper.shared::<Sheet>().get(&a).await,
        Err(Error::NotSubscribed { .. })
    ));
    let fields: Vec<String> = raw(&db, redis::cmd("HKEYS").arg(grants_of(keep))).await;
    assert_eq!(fields, [format!("Sheet:{b}")]);

    // A change of access keeps the subscription (and its feed start).
    let start_before: String = raw(
        &db,
        redis::cmd("HGET")
            .arg(grants_of(keep))
            .arg(format!("Sheet:{b}")),
    )
    .await;
    host.subscribe::<Sheet>(&tid(keep), &b, Access::Write)
        .await
        .unwrap();
    let start_after: String = raw(
        &db,
        redis::cmd("HGET")
            .arg(grants_of(keep))
            .arg(format!("Sheet:{b}")),
    )
    .await;
    assert_eq!(start_after.replacen('w', "r", 1), start_before);
    let subs = keeper.shared_subscriptions().await.unwrap();
    assert_eq!(subs.len(), 1);
    assert_eq!(subs[0].access, Access::Write);

    // Unshare: the instance, its feed, every subscription on both sides.
    assert!(host.unshare::<Sheet>(&a).await.unwrap());
    assert!(!host.unshare::<Sheet>(&a).await.unwrap());
    assert!(instance_keys(cluster, "Sheet", a.as_str()).is_empty());
    let fields: Vec<String> = raw(&db, redis::cmd("HKEYS").arg(grants_of(gone))).await;
    assert_eq!(fields, [format!("Sheet:{b}")]);

    // Destroying a tenant purges its grants, the instances' sides first.
    let report = db
        .admin()
        .destroy_tenant(&tid(gone), &ModelSet::new().with::<Sheet>())
        .await
        .unwrap();
    assert_eq!(report.grants, 1);
    assert!(cluster.keys(&format!("{{{gone}}}*")).unwrap().is_empty());
    assert_eq!(
        host.subscribers::<Sheet>(&b).await.unwrap(),
        vec![(tid(keep), Access::Write)]
    );
    assert!(matches!(
        db.tenant(gone).unwrap().shared::<Sheet>().get(&b).await,
        Err(Error::NotSubscribed { .. })
    ));
    host.unshare::<Sheet>(&b).await.unwrap();
    assert!(cluster.keys(&format!("{{{keep}}}*")).unwrap().is_empty());
}

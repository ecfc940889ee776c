//! The tenant boundary fails closed against hostile index data: a member planted in a tenant's
//! index (a manual `SADD`/`ZADD`, a buggy writer, another service on the same Redis) is never
//! returned, counted or confirmed by a read through that tenant's handle, whatever the index
//! kind and the read path. Each skipped member is reported (a `tracing` warning naming the index
//! key) and shows up in the isolation audit.

mod support;
mod warnings;

use popoto::{Error, FindingKind, Key, Session, TenantId};
use support::*;
use warnings::warnings;

/// Acme's and globex's own rows: 3 episodes and 2 items each.
async fn seed(db: &popoto::Db) -> (Vec<Episode>, Vec<Episode>) {
    let mut out = Vec::new();
    for t in ["acme", "globex"] {
        let s = db.tenant(t).unwrap_or_else(|e| panic!("{e}"));
        let mut eps = Vec::new();
        for i in 0..3 {
            let e = s
                .create(episode("", &format!("{t}-{i}"), f64::from(i), i64::from(i)))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            eps.push(e);
        }
        for (sku, level) in [("a", 1), ("b", 2)] {
            s.create(Item {
                sku: format!("{t}-{sku}"),
                region: "eu".into(),
                level,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        }
        out.push(eps);
    }
    let globex = out.pop().unwrap_or_default();
    let acme = out.pop().unwrap_or_default();
    assert_eq!((acme.len(), globex.len()), (3, 3), "seeded");
    (acme, globex)
}

fn titles(rows: &[Episode]) -> Vec<String> {
    let mut t: Vec<String> = rows.iter().map(|e| e.title.clone()).collect();
    t.sort();
    t
}

const ACME_TITLES: [&str; 3] = ["acme-0", "acme-1", "acme-2"];

/// Every read path of acme's handle over episodes returns, counts and confirms only acme's rows.
async fn acme_sees_only_its_own(acme: &Session, foreign: &Key<Episode>) {
    let q = || acme.query::<Episode>();
    assert_eq!(titles(&q().fetch().await.unwrap()), ACME_TITLES, "fetch");
    assert_eq!(q().count().await.unwrap(), 3, "count");
    assert_eq!(q().fetch_keys().await.unwrap().len(), 3, "fetch_keys");
    let keyed = q().fetch_keyed().await.unwrap();
    assert!(keyed
        .iter()
        .all(|(k, e)| k.tenant() == Some("acme") && e.project_id == "acme"));
    // Ordered by the tenant-partitioned score (the planted member has the top score).
    let top = q()
        .order_by_desc(Episode::score())
        .first()
        .await
        .unwrap()
        .map(|e| e.title);
    assert_eq!(top.as_deref(), Some("acme-2"), "first by score");
    let page = q()
        .order_by_desc(Episode::score())
        .limit(2)
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        titles(&page),
        ["acme-1", "acme-2"],
        "a limited page stays full"
    );
    let ranged = q().filter(Episode::score().gte(0.0)).fetch().await.unwrap();
    assert_eq!(titles(&ranged), ACME_TITLES, "range");
    assert_eq!(
        q().filter(Episode::score().gte(0.0)).count().await.unwrap(),
        3,
        "range count"
    );
    // Unpartitioned sorted field, ordered by it.
    let by_rank = q().order_by(Episode::rank()).fetch().await.unwrap();
    assert_eq!(
        titles(&by_rank),
        ACME_TITLES,
        "order by an unpartitioned field"
    );
    let rank_range = q().filter(Episode::rank().gte(0)).fetch().await.unwrap();
    assert_eq!(titles(&rank_range), ACME_TITLES, "unpartitioned range");
    // Key-field filters: equality and is_in on the tenant field.
    let eq = q()
        .filter(Episode::project_id().eq("acme"))
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&eq), ACME_TITLES, "key eq");
    let isin = q()
        .filter(Episode::project_id().is_in(["acme"]))
        .count()
        .await
        .unwrap();
    assert_eq!(isin, 3, "is_in");
    let matching = q().matching(|_| true).fetch().await.unwrap();
    assert_eq!(titles(&matching), ACME_TITLES, "matching");
    // The planted key itself is refused by get and exists (it names another tenant).
    assert!(matches!(
        acme.get(foreign).await,
        Err(Error::TenantMismatch { .. })
    ));
    assert!(matches!(
        acme.exists(foreign).await,
        Err(Error::TenantMismatch { .. })
    ));
}

#[tokio::test]
async fn members_planted_in_a_tenants_indexes_are_never_returned() {
    let (server, db) = setup().await;
    let (_acme_rows, globex_rows) = seed(&db).await;
    let acme = db.tenant("acme").unwrap();
    let globex_key = Episode::key_of("globex", globex_rows[0].episode_id.clone());
    let member = globex_key.redis_key();
    // Plant globex's instance in every index acme's reads use: its value set, its score
    // partition (with the top score) and the unpartitioned rank zset already holds it.
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$KeyF:Episode:project_id:acme")
            .arg(&member),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:acme")
            .arg(99)
            .arg(&member),
    );
    let warnings = warnings();
    acme_sees_only_its_own(&acme, &globex_key).await;
    let seen = warnings.take();
    assert!(
        seen.iter()
            .any(|w| w.contains("$KeyF:Episode:project_id:acme")
                && w.contains("key of another tenant")
                && w.contains(&member)),
        "a warning names the index key and the member: {seen:#?}"
    );
    assert!(
        seen.iter().any(|w| w.contains("$SortF:Episode:score:acme")),
        "the zset read is named too: {seen:#?}"
    );
    // Globex still sees its own row, and the admin sees every row once.
    let g = db.tenant("globex").unwrap();
    assert_eq!(g.query::<Episode>().count().await.unwrap(), 3);
    assert_eq!(db.admin().query::<Episode>().count().await.unwrap(), 6);
    // The audit reports the planted members as isolation defects.
    let report = db.admin().audit::<Episode>().await.unwrap();
    let misplaced: Vec<_> = report
        .of_kind(FindingKind::Misplaced)
        .filter(|f| f.member == member)
        .map(|f| f.index.clone())
        .collect();
    assert!(
        misplaced.contains(&"$KeyF:Episode:project_id:acme".to_owned())
            && misplaced.contains(&"$SortF:Episode:score:acme".to_owned()),
        "{report}"
    );
}

/// The converse of a forged hash: a key naming globex whose hash claims acme (acme's bytes
/// copied), planted in acme's indexes. Its stored tenant field passes; its key does not, on
/// every read path, including those that load values without building keys.
#[tokio::test]
async fn a_hash_claiming_a_tenant_under_another_tenants_key_is_never_returned() {
    let (server, db) = setup().await;
    let (acme_rows, _) = seed(&db).await;
    let acme = db.tenant("acme").unwrap();
    let claimed = Episode::key_of("globex", "c".repeat(32));
    let source = Episode::key_of("acme", acme_rows[1].episode_id.clone()).redis_key();
    for (field, value) in hgetall(&server, &source) {
        hset(&server, &claimed.redis_key(), field.as_bytes(), &value);
    }
    for (cmd, index) in [
        ("SADD", "$KeyF:Episode:project_id:acme"),
        ("ZADD", "$SortF:Episode:score:acme"),
    ] {
        let mut c = redis::cmd(cmd);
        c.arg(index);
        if cmd == "ZADD" {
            c.arg(1.5);
        }
        raw_cmd::<i64>(&server, c.arg(claimed.redis_key()));
    }
    acme_sees_only_its_own(&acme, &claimed).await;
}

#[tokio::test]
async fn a_forged_hash_under_a_tenants_key_is_verified_by_its_tenant_field() {
    let (server, db) = setup().await;
    let (_, globex_rows) = seed(&db).await;
    let acme = db.tenant("acme").unwrap();
    // A hash at a key of acme's shape whose stored tenant field says globex (globex's bytes
    // copied under acme's key), indexed in acme's value set and partition.
    let forged = Episode::key_of("acme", "f".repeat(32));
    let source = Episode::key_of("globex", globex_rows[1].episode_id.clone()).redis_key();
    for (field, value) in hgetall(&server, &source) {
        let value = if field == "episode_id" {
            rmp_serde::to_vec(&"f".repeat(32)).unwrap_or_else(|e| panic!("{e}"))
        } else {
            value
        };
        hset(&server, &forged.redis_key(), field.as_bytes(), &value);
    }
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$KeyF:Episode:project_id:acme")
            .arg(forged.redis_key()),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:acme")
            .arg(99)
            .arg(forged.redis_key()),
    );
    let q = || acme.query::<Episode>();
    assert_eq!(titles(&q().fetch().await.unwrap()), ACME_TITLES);
    assert_eq!(q().count().await.unwrap(), 3);
    assert_eq!(q().fetch_keys().await.unwrap().len(), 3);
    let top = q().order_by_desc(Episode::score()).first().await.unwrap();
    assert_eq!(top.map(|e| e.title).as_deref(), Some("acme-2"));
    // get and exists refuse it without showing the other tenant's id.
    let err = acme.get(&forged).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::NotInScope {
                model: "Episode",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.to_string().contains("globex"), "{err}");
    assert!(matches!(
        acme.exists(&forged).await,
        Err(Error::NotInScope { .. })
    ));
    // The audit reports the key that disagrees with its stored tenant field.
    let report = db.admin().audit::<Episode>().await.unwrap();
    assert!(
        report
            .of_kind(FindingKind::KeyMismatch)
            .any(|f| f.member == forged.redis_key()),
        "{report}"
    );
}

#[tokio::test]
async fn unique_and_class_indexes_do_not_widen_a_tenants_reads() {
    let (server, db) = setup().await;
    seed(&db).await;
    let acme = db.tenant("acme").unwrap();
    let foreign = Item::key_of("globex", "globex-a").redis_key();
    // Globex's item planted in acme's tenant set and in the unique set of an acme sku.
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$KeyF:Item:tenant:acme")
            .arg(&foreign),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$UniqueKeyF:Item:sku:acme-a")
            .arg(&foreign),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Item:level:acme:eu")
            .arg(0)
            .arg(&foreign),
    );
    let by_sku = acme
        .query::<Item>()
        .filter(Item::sku().eq("acme-a"))
        .fetch()
        .await
        .unwrap();
    assert_eq!(by_sku.len(), 1);
    assert_eq!(by_sku[0].tenant, "acme");
    let skus = acme
        .query::<Item>()
        .filter(Item::sku().is_in(["acme-a", "globex-a"]))
        .count()
        .await
        .unwrap();
    assert_eq!(skus, 1);
    let levels = acme
        .query::<Item>()
        .partition(Item::region(), "eu")
        .order_by(Item::level())
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        levels.iter().map(|i| i.sku.as_str()).collect::<Vec<_>>(),
        ["acme-a", "acme-b"]
    );
    assert_eq!(acme.query::<Item>().count().await.unwrap(), 2);
    // Garbage in the class set (not a key of the model, not UTF-8) is skipped by admin reads.
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD").arg("$Class:Item").arg("Secret:x"),
    );
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$Class:Item")
            .arg(&b"Item:\xff:acme"[..]),
    );
    let admin = db.admin();
    assert_eq!(admin.query::<Item>().fetch().await.unwrap().len(), 4);
    assert_eq!(admin.query::<Item>().count().await.unwrap(), 4);
}

#[tokio::test]
async fn count_and_fetch_agree_on_stale_members() {
    let (server, db) = setup().await;
    seed(&db).await;
    let acme = db.tenant("acme").unwrap();
    // A stale member (no hash) and a member that holds another type.
    for member in ["Episode:gone:acme", "Episode:str:acme"] {
        raw_cmd::<i64>(
            &server,
            redis::cmd("SADD")
                .arg("$KeyF:Episode:project_id:acme")
                .arg(member),
        );
    }
    raw_cmd::<()>(&server, redis::cmd("SET").arg("Episode:str:acme").arg("x"));
    let fetched = acme.query::<Episode>().fetch().await.unwrap();
    let counted = acme.query::<Episode>().count().await.unwrap();
    assert_eq!((fetched.len(), counted), (3, 3));
    let unscoped_count = db.admin().query::<Episode>().count().await.unwrap();
    let unscoped_rows = db.admin().query::<Episode>().fetch().await.unwrap().len();
    assert_eq!(unscoped_count, unscoped_rows);
}

#[tokio::test]
async fn one_undecodable_row_does_not_hide_the_others_with_fetch_each() {
    let (server, db) = setup().await;
    let (acme_rows, _) = seed(&db).await;
    let acme = db.tenant("acme").unwrap();
    let broken = Episode::key_of("acme", acme_rows[1].episode_id.clone()).redis_key();
    hset(&server, &broken, b"rank", b"\xc1");
    // The strict default fails the whole fetch, naming the row.
    match acme.query::<Episode>().fetch().await {
        Err(Error::Decode { key, field, .. }) => {
            assert_eq!((key, field.as_str()), (broken.clone(), "rank"))
        }
        other => panic!("{other:?}"),
    }
    let rows = acme.query::<Episode>().fetch_each().await.unwrap();
    assert_eq!(rows.len(), 3);
    let ok: Vec<String> = rows
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|(_, e)| e.title.clone()))
        .collect();
    assert_eq!(ok.len(), 2, "{ok:?}");
    assert!(rows
        .iter()
        .any(|r| matches!(r, Err(Error::Decode { key, .. }) if *key == broken)));
}

#[tokio::test]
async fn save_fills_an_empty_tenant_field_like_create() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let mut e = acme.create(episode("", "x", 1.0, 1)).await.unwrap();
    assert_eq!(e.project_id, "acme");
    e.project_id.clear();
    e.title = "y".into();
    acme.save(&e).await.unwrap();
    let key = Episode::key_of("acme", e.episode_id.clone());
    assert_eq!(
        acme.get(&key).await.unwrap().map(|e| e.title).as_deref(),
        Some("y")
    );
    assert!(acme.delete(&e).await.unwrap(), "delete fills it too");
    assert_eq!(all_keys(&server), Vec::<String>::new());
}

#[tokio::test]
async fn blank_tenant_ids_and_invalid_admin_values_are_refused() {
    let (server, db) = setup().await;
    for blank in [" ", "\u{a0}", "\u{2003}", "\u{3000}", "\t"] {
        assert!(
            matches!(db.tenant(blank), Err(Error::InvalidTenant { .. })),
            "{blank:?}"
        );
        assert!(TenantId::new(blank).is_err());
    }
    let admin = db.admin();
    for bad in ["", " ", "\u{3000}", "a\nb"] {
        let r = admin.create(episode(bad, "x", 1.0, 1)).await;
        assert!(
            matches!(r, Err(Error::InvalidTenant { .. })),
            "{bad:?}: {r:?}"
        );
        let key = Episode::key_of(bad, "e".repeat(32));
        assert!(matches!(
            admin.get(&key).await,
            Err(Error::InvalidTenant { .. })
        ));
    }
    assert_eq!(
        all_keys(&server),
        Vec::<String>::new(),
        "nothing was written"
    );
    // A valid value still goes through the admin handle.
    admin.create(episode("acme", "x", 1.0, 1)).await.unwrap();
}

#[tokio::test]
async fn confidence_scans_return_only_entries_of_the_tenants_instances() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let m = acme
        .create(Memory {
            key: "fact".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    acme.confidence(&m, Memory::certainty())
        .unwrap()
        .update(0.9)
        .await
        .unwrap();
    let companion = "$ConfidencF:Memory:certainty:data:acme";
    let real = Memory::key_of("acme", "fact").redis_key();
    let entry: Vec<u8> = raw_cmd(&server, redis::cmd("HGET").arg(companion).arg(&real));
    // An entry without an instance, and one whose instance says it is globex's.
    let ghost = Memory::key_of("acme", "ghost").redis_key();
    let forged = Memory::key_of("acme", "forged").redis_key();
    hset(&server, companion, ghost.as_bytes(), &entry);
    hset(&server, companion, forged.as_bytes(), &entry);
    for (field, value) in hgetall(&server, &real) {
        let value = match field.as_str() {
            "project" => rmp_serde::to_vec("globex").unwrap_or_else(|e| panic!("{e}")),
            "key" => rmp_serde::to_vec("forged").unwrap_or_else(|e| panic!("{e}")),
            _ => value,
        };
        hset(&server, &forged, field.as_bytes(), &value);
    }
    let seen: Vec<String> = acme
        .confidence_scan(Memory::certainty())
        .fetch_all()
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k.redis_key())
        .collect();
    assert_eq!(seen, [real]);
    // The admin's maintenance view still shows every entry.
    let all = db
        .admin()
        .confidence_scan(Memory::certainty())
        .with(Memory::project(), "acme")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
}

#[tokio::test]
async fn a_bulk_write_gives_back_every_record_and_refuses_another_tenants_alone() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let batch = vec![
        episode("", "mine", 1.0, 1),
        episode("globex", "theirs", 2.0, 2),
        episode("acme", "also mine", 3.0, 3),
    ];
    let Err(err) = acme.create_many(batch).await else {
        panic!("another tenant's record must be refused");
    };
    let written: Vec<(usize, String)> = err
        .written
        .iter()
        .map(|(i, e)| (*i, e.title.clone()))
        .collect();
    assert_eq!(
        written,
        [(0, "mine".to_owned()), (2, "also mine".to_owned())]
    );
    assert!(err.written.iter().all(|(_, e)| e.project_id == "acme"));
    let [(1, refused, Error::TenantMismatch { .. })] = err.failed.as_slice() else {
        panic!("{err:?}");
    };
    assert_eq!(refused.title, "theirs");
    assert_eq!(acme.query::<Episode>().count().await.unwrap(), 2);
    assert!(
        all_keys(&server).iter().all(|k| !k.contains("globex")),
        "nothing of globex was written"
    );
}

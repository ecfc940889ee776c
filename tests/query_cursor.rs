//! Cursor pages and streams against a private redis-server: every row present from the first
//! page to the last is returned exactly once, in order, while other tasks insert and delete
//! rows (ties of equal score included); a cursor made for another tenant, order or model is
//! refused; members planted in the tenant's partition never appear.

mod support;

use std::collections::HashSet;
use std::sync::Arc;

use popoto::{Cursor, Error, Key};
use support::*;
use tokio::sync::Barrier;

/// Reads every page of acme's episodes by score (`desc` or not), `size` rows a page.
/// `acme`'s Episodes ordered by score, ascending or descending.
fn by_score(acme: &popoto::Session, desc: bool) -> popoto::Query<'_, Episode> {
    let q = acme.query::<Episode>();
    if desc {
        q.order_by_desc(Episode::score())
    } else {
        q.order_by(Episode::score())
    }
}

/// The keys of every acme row in score order, as one fetch returns them.
async fn keys_by_score(acme: &popoto::Session, desc: bool) -> Vec<String> {
    names(by_score(acme, desc).fetch_keyed().await.unwrap())
}

/// The Redis keys of `rows`, in order.
fn names(rows: Vec<(Key<Episode>, Episode)>) -> Vec<String> {
    rows.into_iter().map(|(k, _)| k.redis_key()).collect()
}

async fn all_pages(
    acme: &popoto::Session,
    size: usize,
    desc: bool,
) -> Vec<(Key<Episode>, Episode)> {
    let mut out = Vec::new();
    let mut cursor: Option<Cursor> = None;
    for _ in 0..1000 {
        let q = by_score(acme, desc);
        let page = q
            .page(cursor.as_ref(), size)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(page.rows.len() <= size);
        out.extend(page.rows);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
    panic!("no end after 1000 pages: {} rows", out.len());
}

#[tokio::test]
async fn pages_follow_the_order_with_ties_and_end() {
    let (_server, db) = setup().await;
    seed_episodes(&db, "acme", 23).await;
    seed_episodes(&db, "globex", 9).await;
    let acme = db.tenant("acme").unwrap();
    for desc in [false, true] {
        let q = by_score(&acme, desc);
        let want = q.fetch_keyed().await.unwrap();
        assert_eq!(want.len(), 23);
        for size in [1, 3, 4, 5, 23, 50] {
            let got = all_pages(&acme, size, desc).await;
            assert_eq!(
                got.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
                want.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
                "size {size}, desc {desc}"
            );
        }
    }
    // With a range filter and another filter (intersected per window).
    let mut cursor = None;
    let mut got = Vec::new();
    loop {
        let page = acme
            .query::<Episode>()
            .filter(Episode::score().range(1.0..4.0))
            .filter(!Episode::rank().eq(0))
            .order_by(Episode::score())
            .page(cursor.as_ref(), 2)
            .await
            .unwrap();
        got.extend(page.rows.into_iter().map(|(_, e)| e));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want = acme
        .query::<Episode>()
        .filter(Episode::score().range(1.0..4.0))
        .filter(!Episode::rank().eq(0))
        .order_by(Episode::score())
        .fetch()
        .await
        .unwrap();
    assert_eq!(want.len(), 9);
    assert_eq!(got, want);
    // Ordered by an unpartitioned field: the global zset, filtered to acme per window.
    let by_rank = acme
        .query::<Episode>()
        .order_by(Episode::rank())
        .page(None, 100)
        .await
        .unwrap();
    assert_eq!(by_rank.rows.len(), 23);
    assert!(by_rank.rows.iter().all(|(_, e)| e.project_id == "acme"));
    assert!(by_rank.next.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_under_concurrent_inserts_return_every_row_exactly_once() {
    let (server, db) = setup().await;
    seed_episodes(&db, "acme", 60).await;
    let acme = db.tenant("acme").unwrap();
    let before: HashSet<Key<Episode>> = acme
        .query::<Episode>()
        .fetch_keys()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(before.len(), 60);
    // A writer on its own pool inserts rows at every score (ties included) and deletes rows it
    // inserted itself, while the reader pages; they start together.
    let writer_db = server.db().await;
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let writer = tokio::spawn(async move {
        let w = writer_db.tenant("acme").unwrap();
        b.wait().await;
        let mut mine = Vec::new();
        for i in 0..120 {
            let e = w
                .create(episode("", &format!("new-{i}"), ((i * 7) % 17) as f64, 1))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            if i % 3 == 0 {
                mine.push(e);
            }
            if i % 5 == 0 {
                if let Some(old) = mine.pop() {
                    assert!(w.delete(&old).await.unwrap_or_else(|e| panic!("{e}")));
                }
            }
            tokio::task::yield_now().await;
        }
    });
    barrier.wait().await;
    let mut seen: Vec<Key<Episode>> = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut last_score = f64::NEG_INFINITY;
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages < 200, "no end after 200 pages: {} rows", seen.len());
        let page = acme
            .query::<Episode>()
            .order_by(Episode::score())
            .page(cursor.as_ref(), 7)
            .await
            .unwrap();
        for (k, e) in page.rows {
            assert!(e.score >= last_score, "in order");
            last_score = e.score;
            seen.push(k);
        }
        tokio::task::yield_now().await;
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    writer.await.unwrap_or_else(|e| panic!("writer: {e}"));
    let unique: HashSet<&Key<Episode>> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no row twice");
    for k in &before {
        assert!(
            unique.contains(k),
            "{} present throughout was returned",
            k.redis_key()
        );
    }
    assert!(
        seen.len() > before.len(),
        "rows inserted during the scan showed up too"
    );
}

/// Scores no two rows share: each page after the first is one native read past the cursor's
/// score (its tie check in the same `MULTI`) and one load, in both directions.
#[tokio::test]
async fn pages_past_an_unshared_score_take_two_round_trips() {
    let (server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let rows: Vec<Episode> = (0..25)
        .map(|i| episode("", &format!("e{i}"), f64::from(i) / 8.0, 0))
        .collect();
    acme.create_many(rows).await.unwrap();
    for desc in [false, true] {
        let before = db.admin().backend().await.unwrap().round_trips();
        let loads = calls(&server, "hgetall");
        let q = || {
            let q = acme.query::<Episode>().filter(Episode::score().gte(0.5));
            if desc {
                q.order_by_desc(Episode::score())
            } else {
                q.order_by(Episode::score())
            }
        };
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let page = q().page(cursor.as_ref(), 4).await.unwrap();
            got.extend(page.rows.into_iter().map(|(_, e)| e.title));
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let trips = db.admin().backend().await.unwrap().round_trips() - before;
        // Each row is loaded once: the member read past a page only tells that more follow.
        assert_eq!(calls(&server, "hgetall") - loads, 21, "desc {desc}");
        let want: Vec<String> = q()
            .fetch()
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.title)
            .collect();
        assert_eq!(want.len(), 21, "rows with score >= 0.5");
        assert_eq!(got, want, "desc {desc}");
        // 6 pages (the last short), two round trips each.
        assert_eq!(trips, 12, "desc {desc}");
    }
}

#[tokio::test]
async fn streams_read_every_row_once_a_page_at_a_time() {
    let (server, db) = setup().await;
    seed_episodes(&db, "acme", 25).await;
    seed_episodes(&db, "globex", 5).await;
    let acme = db.tenant("acme").unwrap();
    let before = db.admin().backend().await.unwrap().round_trips();
    let mut rows = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .stream(4);
    let mut got = Vec::new();
    while let Some(r) = rows.next().await {
        got.push(r.unwrap().1);
    }
    let trips = db.admin().backend().await.unwrap().round_trips() - before;
    let want = acme
        .query::<Episode>()
        .order_by_desc(Episode::score())
        .fetch()
        .await
        .unwrap();
    assert_eq!(got, want);
    // 7 pages (the last short), each one window read and one load; every cursor but the
    // first page's sits on a score four rows share, which the window read takes along.
    assert_eq!(
        trips, 14,
        "two round trips a page, after a shared score too"
    );
    // Planted members in the partition are skipped by streams too.
    let planted = Episode::key_of("globex", "0".repeat(32)).redis_key();
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:acme")
            .arg(3)
            .arg(&planted),
    );
    let g = db.tenant("globex").unwrap();
    let gkey = g.query::<Episode>().fetch_keys().await.unwrap()[0].redis_key();
    raw_cmd::<i64>(
        &server,
        redis::cmd("ZADD")
            .arg("$SortF:Episode:score:acme")
            .arg(3)
            .arg(&gkey),
    );
    let mut rows = acme.query::<Episode>().order_by(Episode::score()).stream(3);
    let mut n = 0;
    while let Some(r) = rows.next().await {
        let (k, e) = r.unwrap();
        assert_eq!((k.tenant(), e.project_id.as_str()), (Some("acme"), "acme"));
        n += 1;
    }
    assert_eq!(n, 25);
}

#[tokio::test]
async fn cursors_are_refused_outside_the_query_they_were_made_for() {
    let (_server, db) = setup().await;
    seed_episodes(&db, "acme", 6).await;
    seed_episodes(&db, "globex", 6).await;
    let acme = db.tenant("acme").unwrap();
    let globex = db.tenant("globex").unwrap();
    let page = globex
        .query::<Episode>()
        .order_by(Episode::score())
        .page(None, 2)
        .await
        .unwrap();
    let theirs = page.next.unwrap();
    let refused = |r: popoto::Result<popoto::Page<Episode>>| match r {
        Err(Error::InvalidCursor {
            model: "Episode",
            reason,
        }) => reason,
        other => panic!("{other:?}"),
    };
    // Another tenant's cursor, another direction, another field, garbage, a forged cursor.
    let r = refused(
        acme.query::<Episode>()
            .order_by(Episode::score())
            .page(Some(&theirs), 2)
            .await,
    );
    assert!(r.contains("scope"), "{r}");
    let mine = acme
        .query::<Episode>()
        .order_by(Episode::score())
        .page(None, 2)
        .await
        .unwrap()
        .next
        .unwrap();
    refused(
        acme.query::<Episode>()
            .order_by_desc(Episode::score())
            .page(Some(&mine), 2)
            .await,
    );
    refused(
        acme.query::<Episode>()
            .order_by(Episode::rank())
            .page(Some(&mine), 2)
            .await,
    );
    refused(
        acme.query::<Episode>()
            .order_by(Episode::score())
            .page(Some(&Cursor::new("zz")), 2)
            .await,
    );
    // A cursor re-encoded with acme's scope but globex's key.
    let text = String::from_utf8(
        (0..theirs.as_str().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&theirs.as_str()[i..i + 2], 16).unwrap())
            .collect(),
    )
    .unwrap()
    .replace("\u{1f}tglobex\u{1f}", "\u{1f}tacme\u{1f}");
    let forged = Cursor::new(text.bytes().map(|b| format!("{b:02x}")).collect::<String>());
    let r = refused(
        acme.query::<Episode>()
            .order_by(Episode::score())
            .page(Some(&forged), 2)
            .await,
    );
    assert!(r.contains("scope"), "{r}");
    // Pages need an order, and take no offset or limit.
    for q in [
        acme.query::<Episode>(),
        acme.query::<Episode>().order_by(Episode::score()).limit(3),
    ] {
        assert!(matches!(
            q.page(None, 2).await,
            Err(Error::InvalidQuery { .. })
        ));
    }
}

#[tokio::test]
async fn scans_stream_every_instance_of_the_scope_a_batch_at_a_time() {
    let (server, db) = setup().await;
    for tenant in ["acme", "globex"] {
        let t = db.tenant(tenant).unwrap();
        let items: Vec<Item> = (0..300)
            .map(|i| Item {
                sku: format!("{tenant}-{i}"),
                region: if i % 3 == 0 { "eu".into() } else { "us".into() },
                level: i,
                ..Default::default()
            })
            .collect();
        t.create_many(items).await.unwrap();
    }
    // Globex's item planted in acme's set, and a stale member.
    let planted = Item::key_of("globex", "globex-1").redis_key();
    raw_cmd::<i64>(
        &server,
        redis::cmd("SADD")
            .arg("$KeyF:Item:tenant:acme")
            .arg(&planted)
            .arg("Item:gone:acme"),
    );
    let acme = db.tenant("acme").unwrap();
    let sscan_before = calls(&server, "sscan");
    let mut rows = acme.query::<Item>().scan(50);
    let mut seen = Vec::new();
    while let Some(r) = rows.next().await {
        let (k, item) = r.unwrap();
        assert_eq!((k.tenant(), item.tenant.as_str()), (Some("acme"), "acme"));
        seen.push(item.sku);
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!((seen.len(), unique.len()), (300, 300));
    assert!(
        calls(&server, "sscan") - sscan_before > 3,
        "read in batches, not at once"
    );
    // With filters: a lookup and an OR, applied to each batch.
    let mut rows = acme
        .query::<Item>()
        .filter(Item::sku().ends_with("7") | Item::sku().ends_with("9"))
        .matching(|i| i.region == "eu")
        .scan(40);
    let mut n = 0;
    while let Some(r) = rows.next().await {
        let (_, item) = r.unwrap();
        assert!(item.region == "eu" && (item.sku.ends_with('7') || item.sku.ends_with('9')));
        n += 1;
    }
    let want = acme
        .query::<Item>()
        .filter(Item::sku().ends_with("7") | Item::sku().ends_with("9"))
        .matching(|i| i.region == "eu")
        .count()
        .await
        .unwrap();
    assert_eq!((n, want), (20, 20));
    // An order does not apply to a scan.
    let mut rows = acme.query::<Item>().order_by(Item::level()).scan(10);
    assert!(matches!(
        rows.next().await,
        Some(Err(Error::InvalidQuery { .. }))
    ));
    assert!(rows.next().await.is_none(), "an error ends the stream");
}

#[tokio::test]
async fn a_last_page_that_is_exactly_full_says_it_is_the_last() {
    let (_server, db) = setup().await;
    seed_episodes(&db, "acme", 12).await;
    let acme = db.tenant("acme").unwrap();
    let q = || acme.query::<Episode>().order_by(Episode::score());
    let first = q().page(None, 6).await.unwrap();
    assert_eq!(first.rows.len(), 6);
    let second = q().page(first.next.as_ref(), 6).await.unwrap();
    assert_eq!(second.rows.len(), 6);
    assert!(second.next.is_none(), "no empty third page");
    let whole = q().page(None, 12).await.unwrap();
    assert_eq!((whole.rows.len(), whole.next.is_none()), (12, true));
}

#[tokio::test]
async fn models_without_a_tenant_or_index_are_scanned_through_the_unscoped_handle() {
    let (_server, db) = setup().await;
    let shared = db.unscoped();
    for i in 0..150u8 {
        shared
            .create(Note {
                text: format!("note {i}"),
                stars: i % 5,
            })
            .await
            .unwrap();
    }
    let mut rows = shared.query::<Note>().matching(|n| n.stars == 4).scan(25);
    let mut texts = HashSet::new();
    while let Some(r) = rows.next().await {
        let (_, note) = r.unwrap();
        assert_eq!(note.stars, 4);
        assert!(texts.insert(note.text));
    }
    assert_eq!(texts.len(), 30);
}

/// Many rows sharing each score: a page's native read skips the ties up to the cursor when they
/// end within its slack (two round trips a page, with the rows), reads again past them when
/// more precede the cursor, and past its read (80 at one score) the window script finds the
/// position (three). Every row once, in both directions.
#[tokio::test]
async fn pages_through_many_ties_return_every_row_once() {
    let (_server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    // 80 rows at score 1.0 (more than a window read takes along), 20 at 2.0, 5 at 3.0.
    let rows: Vec<Episode> = (0..105)
        .map(|i| {
            let score = if i < 80 {
                1.0
            } else if i < 100 {
                2.0
            } else {
                3.0
            };
            episode("", &format!("e{i}"), score, 0)
        })
        .collect();
    acme.create_many(rows).await.unwrap();
    for desc in [false, true] {
        let want = keys_by_score(&acme, desc).await;
        assert_eq!(want.len(), 105);
        for size in [7, 40] {
            let before = db.admin().backend().await.unwrap().round_trips();
            let got = names(all_pages(&acme, size, desc).await);
            let trips = db.admin().backend().await.unwrap().round_trips() - before;
            assert_eq!(got, want, "size {size}, desc {desc}");
            let pages = 105u64.div_ceil(size as u64);
            // Cursors inside the 80 ties go through the script, and one 18 ties into the 20
            // (size 7, ascending) reads past them (one more round trip each).
            assert!(
                trips > 2 * pages && trips < 3 * pages,
                "{trips} trips for {pages} pages"
            );
        }
    }
}

/// A page larger than the largest window read (1,000 members) is filled from several windows,
/// and its last row still carries its score into the cursor.
#[tokio::test]
async fn a_page_larger_than_a_window_is_read_in_several() {
    let (_server, db) = setup().await;
    let acme = db.tenant("acme").unwrap();
    let rows: Vec<Episode> = (0..1_100)
        .map(|i| episode("", &format!("e{i}"), f64::from(i % 700), 0))
        .collect();
    acme.create_many(rows).await.unwrap();
    for desc in [false, true] {
        let want = keys_by_score(&acme, desc).await;
        let got = names(all_pages(&acme, 1_050, desc).await);
        assert_eq!((got.len(), got == want), (1_100, true), "desc {desc}");
    }
}

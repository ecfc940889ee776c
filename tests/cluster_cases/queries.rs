//! A tenant's queries on the cluster layout, each read in its tenant's slot: equality, ranges
//! on sorted fields, key lookups, order, offset and limit, count, projections, cursor pages,
//! streams and scans.

use popoto::Cursor;

use crate::common::*;
use crate::support::*;

/// `n` episodes of `tenant` (titles `<tenant>-<i>`, scores `i / 4`, ranks `i % 5`) and the
/// tenant's handle.
async fn seeded(db: &popoto::Db, tenant: &str, n: usize) -> popoto::Session {
    seed_episodes(db, tenant, n).await;
    db.tenant(tenant).unwrap()
}

fn titles(rows: &[Episode]) -> Vec<String> {
    rows.iter().map(|e| e.title.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_ranges_order_limit_and_count_read_the_tenants_slot() {
    let db = shared_db();
    let t = "query-filters";
    let s = seeded(&db, t, 20).await;
    // Another tenant's rows never show.
    seed_episodes(&db, "query-filters-other", 7).await;
    let q = || s.query::<Episode>();
    assert_eq!(q().count().await.unwrap(), 20);
    assert_eq!(
        q().filter(Episode::score().lt(1.0)).count().await.unwrap(),
        4
    );
    assert_eq!(
        q().filter(Episode::score().between(2.0, 3.0))
            .count()
            .await
            .unwrap(),
        8
    );
    assert_eq!(q().filter(Episode::rank().eq(3)).count().await.unwrap(), 4);
    assert_eq!(
        q().filter(Episode::rank().eq(3))
            .filter(Episode::score().gte(2.0))
            .count()
            .await
            .unwrap(),
        3
    );
    let top = q()
        .order_by_desc(Episode::score())
        .limit(3)
        .fetch()
        .await
        .unwrap();
    assert!(top.iter().all(|e| e.score == 4.0), "{top:?}");
    assert_eq!(top.len(), 3);
    let by_rank = q()
        .filter(Episode::score().lt(1.0))
        .order_by(Episode::rank())
        .fetch()
        .await
        .unwrap();
    assert_eq!(
        titles(&by_rank),
        [
            format!("{t}-0"),
            format!("{t}-1"),
            format!("{t}-2"),
            format!("{t}-3")
        ]
    );
    assert_eq!(
        q().order_by(Episode::score())
            .first()
            .await
            .unwrap()
            .unwrap()
            .score,
        0.0
    );
    assert_eq!(
        q().filter(Episode::project_id().eq(t))
            .count()
            .await
            .unwrap(),
        20
    );
    let window = q()
        .order_by(Episode::score())
        .filter(Episode::rank().eq(0))
        .offset(1)
        .limit(2)
        .fetch()
        .await
        .unwrap();
    assert_eq!(titles(&window), [format!("{t}-5"), format!("{t}-10")]);
    let (key, one) = q()
        .filter(Episode::rank().eq(4))
        .fetch_keyed()
        .await
        .unwrap()[0]
        .clone();
    let fields = s.get_fields(&key).await.unwrap().expect("present");
    assert_eq!(fields.len(), 5, "{fields:?}");
    assert!(fields.contains_key("title"), "{fields:?} of {one:?}");
    assert!(q()
        .filter(Episode::score().gt(4.0))
        .fetch()
        .await
        .unwrap()
        .is_empty());
    assert!(!q().filter(Episode::score().gt(4.0)).exists().await.unwrap());
    assert_eq!(q().fetch_keys().await.unwrap().len(), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_lookups_and_unique_equality_find_the_tenants_items() {
    let db = shared_db();
    let t = "query-lookups";
    let s = db.tenant(t).unwrap();
    for sku in ["a*b", "a?c", "abc", "xyz-a"] {
        s.create(Item {
            sku: sku.into(),
            region: "eu".into(),
            level: sku.len() as i64,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let skus = |f| {
        let s = s.clone();
        async move {
            let mut v: Vec<String> = s
                .query::<Item>()
                .filter(f)
                .fetch()
                .await
                .unwrap()
                .into_iter()
                .map(|i| i.sku)
                .collect();
            v.sort();
            v
        }
    };
    assert_eq!(skus(Item::sku().starts_with("a*")).await, ["a*b"]);
    assert_eq!(
        skus(Item::sku().starts_with("a")).await,
        ["a*b", "a?c", "abc"]
    );
    assert_eq!(skus(Item::sku().ends_with("c")).await, ["a?c", "abc"]);
    assert_eq!(skus(Item::sku().contains("yz")).await, ["xyz-a"]);
    assert_eq!(skus(Item::sku().eq("abc")).await, ["abc"]);
    assert_eq!(
        skus(Item::sku().is_in(["abc", "nope", "a?c"])).await,
        ["a?c", "abc"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursor_pages_streams_and_scans_return_every_row_once() {
    let db = shared_db();
    let t = "query-cursor";
    let s = seeded(&db, t, 23).await;
    seed_episodes(&db, "query-cursor-other", 9).await;
    let want = s
        .query::<Episode>()
        .order_by(Episode::score())
        .fetch_keyed()
        .await
        .unwrap();
    assert_eq!(want.len(), 23);
    for size in [1, 4, 23, 50] {
        let mut got = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = s
                .query::<Episode>()
                .order_by(Episode::score())
                .page(cursor.as_ref(), size)
                .await
                .unwrap();
            assert!(page.rows.len() <= size);
            got.extend(page.rows);
            match page.next {
                Some(c) => cursor = Some(c),
                None => break,
            }
            assert!(got.len() <= 23, "pages past the end");
        }
        assert_eq!(got, want, "pages of {size}");
    }
    let mut rows = s.query::<Episode>().order_by(Episode::score()).stream(4);
    let mut streamed = Vec::new();
    while let Some(r) = rows.next().await {
        streamed.push(r.unwrap());
    }
    assert_eq!(streamed, want);
    let mut rows = s.query::<Episode>().scan(5);
    let mut scanned = Vec::new();
    while let Some(r) = rows.next().await {
        scanned.push(r.unwrap().1.title);
    }
    scanned.sort();
    let mut expected: Vec<String> = want.iter().map(|(_, e)| e.title.clone()).collect();
    expected.sort();
    assert_eq!(scanned, expected);
}

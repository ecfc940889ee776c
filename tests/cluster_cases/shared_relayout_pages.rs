//! A shared instance whose change feed and consumer group's done set are longer than a page
//! of the layout migration (500) moves from popoto's layout on one server to the shared
//! cluster page by page: every entry under its own id, the done set whole, the stream's
//! counters kept; a second run compares it page by page and changes nothing.

use popoto::feed::{FeedSource, GroupStart};
use popoto::shared::{Merge, SharedId, SharedLayoutRun};
use popoto::testing::TestRedis;
use popoto::{Db, Layout, Model, ModelSet};
use popoto_core::keys::FeedOf;

use crate::common::{raw, shared_db};

/// A shared journal written many times (this test's own model).
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
pub struct Journal {
    pub n: i64,
}

/// Writes of the journal after its share: its stream holds one event more.
const WRITES: i64 = 1_199;

/// The entries of `key` (a stream) or its members with scores (a zset), and the stream's
/// last id, as `db` holds them.
async fn content(db: &Db, key: &str) -> String {
    let ty: String = raw(db, redis::cmd("TYPE").arg(key)).await;
    let v: redis::Value = match ty.as_str() {
        "stream" => raw(db, redis::cmd("XRANGE").arg(key).arg("-").arg("+")).await,
        _ => {
            let mut cmd = redis::cmd("ZRANGE");
            cmd.arg(key).arg(0).arg(-1).arg("WITHSCORES");
            raw(db, &cmd).await
        }
    };
    format!("{ty} {v:?}")
}

/// The stream's length, last id, greatest deleted id and entries added.
async fn counters(db: &Db, key: &str) -> String {
    let info: Vec<redis::Value> = raw(db, redis::cmd("XINFO").arg("STREAM").arg(key)).await;
    let wanted = [
        "length",
        "last-generated-id",
        "max-deleted-entry-id",
        "entries-added",
    ];
    let kept: Vec<_> = info
        .chunks(2)
        .filter(|kv| wanted.iter().any(|w| format!("{:?}", kv[0]).contains(w)))
        .collect();
    format!("{kept:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_longer_than_a_page_moves_page_by_page() {
    let origin = TestRedis::start().unwrap();
    let source = Db::connect(origin.url()).await.unwrap();
    let host = source.admin().shared();
    let id = SharedId::new("long").unwrap();
    host.share_as(&id, &Journal { n: 0 }, Merge::LastWriteWins)
        .await
        .unwrap();
    for n in 1..=WRITES {
        host.set_shared(&id, &Journal { n }).await.unwrap();
    }
    let group = source
        .admin()
        .feed_group(
            &FeedSource::shared::<Journal>(&id),
            "archive",
            GroupStart::Beginning,
        )
        .await
        .unwrap()
        .limits(2_000, 5);
    let report = group
        .poll("w1", |_| async { Ok::<(), String>(()) })
        .await
        .unwrap();
    assert_eq!(report.done.len(), 1_200);

    let clustered = shared_db();
    let models = ModelSet::new().with::<Journal>();
    let (from, to) = (source.admin(), clustered.admin());
    let run = SharedLayoutRun::default();
    let moved = from
        .migrate_shared_layout(&models, &to, &run, |_| {})
        .await
        .unwrap();
    assert_eq!((moved.instances, moved.events), (1, 1_200), "{moved:?}");
    let of = FeedOf::Shared("Journal", "long");
    let (p, c) = (Layout::Popoto, Layout::Cluster);
    let pairs = [
        (p.feed_stream_key(of), c.feed_stream_key(of)),
        (
            p.feed_done_key(of, "archive"),
            c.feed_done_key(of, "archive"),
        ),
    ];
    for (p, c) in pairs {
        let (a, b) = (content(&source, &p).await, content(&clustered, &c).await);
        assert!(a.len() > 10_000, "{p} holds more than a page");
        assert_eq!(a, b, "{p} and {c}");
    }
    assert_eq!(
        counters(&source, &p.feed_stream_key(of)).await,
        counters(&clustered, &c.feed_stream_key(of)).await
    );
    let read = to.shared().get::<Journal>(&id).await.unwrap();
    assert_eq!((read.value.n, read.version), (WRITES, 1_200));

    let again = from
        .migrate_shared_layout(&models, &to, &run, |_| {})
        .await
        .unwrap();
    assert_eq!((again.instances, again.unchanged), (0, 1), "{again:?}");
}

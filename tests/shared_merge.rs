//! Merge strategies against a real redis-server: `LwwMapCrdt` converges under a faulty network
//! (seeded simulated clients: reordering, duplication, drops, reconnects), three writers to one
//! field give one winner in every order, an edit made after seeing another wins whatever the
//! clocks, `LastWriteWins` follows arrival, and 64 concurrent writers with a custom additive
//! merge lose nothing.

mod shared_common;
mod support;

use std::collections::VecDeque;

use popoto::feed::ChangeEvent;
use popoto::shared::{Access, LwwMap, Merge, MergeStrategy, Patch, Replica, SharedId, Tag};
use popoto::{Db, Error, Model};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use shared_common::*;
use support::{proptest_config, runtime, start_server, tid};

const FIELDS: [&str; 3] = ["title", "body", "votes"];

/// A time well after now (milliseconds; the year 2255).
const FUTURE: u64 = 9_000_000_000_000;

/// One step of the simulation.
#[derive(Debug, Clone)]
enum Step {
    /// Client `c` edits field `f` to value `v` (applied locally, queued to the server).
    Edit { c: usize, f: usize, v: u8 },
    /// The network delivers the queued write at `k` (modulo the queue) to the server.
    Deliver { k: usize },
    /// ... delivers it and keeps a copy to deliver again (duplication).
    Duplicate { k: usize },
    /// ... loses it (the client keeps it in its outbox until it reconnects).
    Drop { k: usize },
    /// Client `c` receives the event at `k` of its inbox (reordering).
    Receive { c: usize, k: usize },
    /// Client `c`'s inbox loses the event at `k`.
    Lose { c: usize, k: usize },
    /// Client `c` reconnects: resends its outbox and merges a snapshot.
    Reconnect { c: usize },
    /// Time passes for client `c` (its clock is skewed from the others).
    Tick { c: usize, ms: u16 },
}

fn step(clients: usize) -> impl Strategy<Value = Step> {
    let c = 0..clients;
    prop_oneof![
        4 => (c.clone(), 0..FIELDS.len(), any::<u8>()).prop_map(|(c, f, v)| Step::Edit { c, f, v }),
        4 => any::<usize>().prop_map(|k| Step::Deliver { k }),
        1 => any::<usize>().prop_map(|k| Step::Duplicate { k }),
        1 => any::<usize>().prop_map(|k| Step::Drop { k }),
        4 => (c.clone(), any::<usize>()).prop_map(|(c, k)| Step::Receive { c, k }),
        1 => (c.clone(), any::<usize>()).prop_map(|(c, k)| Step::Lose { c, k }),
        1 => c.clone().prop_map(|c| Step::Reconnect { c }),
        2 => (c, 0..50u16).prop_map(|(c, ms)| Step::Tick { c, ms }),
    ]
}

/// A write in flight: the client, the field's bytes and its tag.
#[derive(Debug, Clone)]
struct Msg {
    client: usize,
    field: usize,
    bytes: Vec<u8>,
    tag: Tag,
}

struct Client {
    session: popoto::Session,
    replica: Replica,
    /// The client's physical clock (skewed).
    now: u64,
    map: LwwMap,
    /// Writes not known to have reached the server.
    outbox: Vec<Msg>,
    inbox: VecDeque<ChangeEvent>,
}

/// The rendered bytes of field `f` of a Doc holding `v` there.
fn bytes_of(f: usize, v: u8) -> Vec<u8> {
    let d = Doc {
        title: format!("t{v}"),
        body: format!("b{v}"),
        votes: i64::from(v),
    };
    d.to_record().unwrap().values[f].clone()
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn fail(what: &str, e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(format!("{what}: {e}"))
}

/// Merges the server's current value and tags into a client's map (a reconnect's snapshot).
async fn snapshot(client: &mut Client, id: &SharedId) -> Result<(), TestCaseError> {
    let shared = client
        .session
        .shared::<Doc>()
        .replica(client.replica.clone())
        .get(id)
        .await
        .map_err(|e| fail("snapshot", e))?;
    let values = shared
        .value
        .to_record()
        .map_err(|e| fail("record", e))?
        .values;
    for (i, f) in FIELDS.iter().enumerate() {
        let tag = shared.tags.get(*f).ok_or_else(|| fail("tag", f))?;
        client.map.apply(f, &values[i], tag);
    }
    Ok(())
}

/// Sends one write to the server; its event (if it won) goes to every client's inbox.
async fn deliver(
    clients: &mut [Client],
    feed: &mut popoto::feed::FeedReader,
    id: &SharedId,
    m: &Msg,
) -> Result<(), TestCaseError> {
    let value = {
        let mut values = Doc::default().to_record().unwrap().values;
        values[m.field] = m.bytes.clone();
        let fields = FIELDS
            .iter()
            .zip(values)
            .map(|(f, v)| (f.as_bytes().to_vec(), v))
            .collect();
        Doc::from_hash("<msg>", fields).map_err(|e| fail("msg", e))?
    };
    let patch = match m.field {
        0 => Patch::of(&value).unwrap().with(Doc::title()),
        1 => Patch::of(&value).unwrap().with(Doc::body()),
        _ => Patch::of(&value).unwrap().with(Doc::votes()),
    };
    let c = &clients[m.client];
    c.session
        .shared::<Doc>()
        .replica(c.replica.clone())
        .patch_tagged(id, &patch, &m.tag)
        .await
        .map_err(|e| fail("patch", e))?;
    // The server's reply is the ack: the write is out of the outbox.
    clients[m.client]
        .outbox
        .retain(|o| !(o.tag == m.tag && o.field == m.field));
    let batch = feed.next().await.map_err(|e| fail("feed", e))?;
    for e in batch.events {
        for c in clients.iter_mut() {
            c.inbox.push_back((*e).clone());
        }
    }
    Ok(())
}

fn receive(client: &mut Client, e: &ChangeEvent) {
    for (f, bytes) in &e.fields {
        if let Some((_, tag)) = e.tags.iter().find(|(n, _)| n == f) {
            client.map.apply(f, bytes, tag);
            client.replica.observe(tag);
        }
    }
}

/// Runs one simulation; returns how many writes the server applied after the share.
async fn simulate(
    db: &Db,
    n: usize,
    skews: Vec<u16>,
    steps: Vec<Step>,
) -> Result<u64, TestCaseError> {
    let host = db.admin().shared();
    let id = host
        .share(&doc("start"), Merge::LwwMapCrdt)
        .await
        .map_err(|e| fail("share", e))?;
    let mut clients = Vec::with_capacity(n);
    for (c, skew) in skews.iter().enumerate().take(n) {
        let t = tid(&format!("t{c}"));
        host.subscribe::<Doc>(&t, &id, Access::Write)
            .await
            .map_err(|e| fail("subscribe", e))?;
        let mut client = Client {
            session: db.tenant_id(&t),
            replica: Replica::new(format!("c{c}")).unwrap(),
            now: wall_ms() + u64::from(*skew),
            map: LwwMap::new(),
            outbox: Vec::new(),
            inbox: VecDeque::new(),
        };
        snapshot(&mut client, &id).await?;
        clients.push(client);
    }
    let mut feed = db
        .tenant_id(&tid("t0"))
        .feed()
        .unwrap()
        .block(std::time::Duration::ZERO)
        .open()
        .await
        .map_err(|e| fail("feed", e))?;
    let mut wire: Vec<Msg> = Vec::new();
    for s in steps {
        match s {
            Step::Edit { c, f, v } => {
                let client = &mut clients[c];
                let tag = client.replica.tick_at(client.now);
                let bytes = bytes_of(f, v);
                client.map.apply(FIELDS[f], &bytes, &tag);
                let m = Msg {
                    client: c,
                    field: f,
                    bytes,
                    tag,
                };
                client.outbox.push(m.clone());
                wire.push(m);
            }
            Step::Deliver { k } | Step::Duplicate { k } if !wire.is_empty() => {
                let k = k % wire.len();
                let m = if matches!(s, Step::Deliver { .. }) {
                    wire.remove(k)
                } else {
                    wire[k].clone()
                };
                deliver(&mut clients, &mut feed, &id, &m).await?;
            }
            Step::Drop { k } if !wire.is_empty() => {
                wire.remove(k % wire.len());
            }
            Step::Receive { c, k } if !clients[c].inbox.is_empty() => {
                let k = k % clients[c].inbox.len();
                let e = clients[c].inbox.remove(k).unwrap();
                receive(&mut clients[c], &e);
            }
            Step::Lose { c, k } if !clients[c].inbox.is_empty() => {
                let k = k % clients[c].inbox.len();
                clients[c].inbox.remove(k);
            }
            Step::Reconnect { c } => {
                for m in clients[c].outbox.clone() {
                    deliver(&mut clients, &mut feed, &id, &m).await?;
                }
                snapshot(&mut clients[c], &id).await?;
            }
            Step::Tick { c, ms } => clients[c].now += u64::from(ms),
            _ => {}
        }
    }
    // Everyone reconnects (what is still in flight is lost or late), then every inbox drains.
    for c in 0..n {
        for m in clients[c].outbox.clone() {
            deliver(&mut clients, &mut feed, &id, &m).await?;
        }
    }
    for client in &mut clients {
        snapshot(client, &id).await?;
        while let Some(e) = client.inbox.pop_front() {
            receive(client, &e);
        }
    }
    let server = host
        .get::<Doc>(&id)
        .await
        .map_err(|e| fail("host get", e))?;
    let values = server.value.to_record().unwrap().values;
    let mut authoritative = LwwMap::new();
    for (i, f) in FIELDS.iter().enumerate() {
        authoritative.apply(f, &values[i], &server.tags[*f]);
    }
    for (c, client) in clients.iter().enumerate() {
        prop_assert_eq!(&client.map, &authoritative, "client {} diverged", c);
    }
    Ok(server.version - 1)
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(0x5eed_cafe),
        ..proptest_config(cases)
    })
}

/// Yjs/Automerge-style fuzzing of `LwwMapCrdt` against the real write script: every replica
/// and the authoritative value are equal at the end (64 seeded cases, one server).
#[test]
fn lww_map_crdt_replicas_converge_under_reordering_duplication_drops_and_reconnects() {
    let rt = runtime();
    let server = start_server();
    let db = rt.block_on(server.db());
    let strategy = (2..=4usize).prop_flat_map(|n| {
        (
            Just(n),
            proptest::collection::vec(0..2_000u16, n),
            proptest::collection::vec(step(n), 10..80),
        )
    });
    let applied = std::cell::Cell::new(0u64);
    let result = runner(64).run(&strategy, |(n, skews, steps)| {
        applied.set(applied.get() + rt.block_on(simulate(&db, n, skews, steps))?);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n--- server log ---\n{}", server.log());
    }
    // The runs did merge concurrent writes (not only stale ones).
    assert!(applied.get() > 100, "only {} writes applied", applied.get());
}

/// Three writers to one field, applied in each of the 6 orders: always the same single winner
/// (the greatest tag), and the other fields are all still there.
#[tokio::test]
async fn three_concurrent_writers_to_one_field_give_one_winner_in_every_order() {
    let (_server, db) = support::setup().await;
    let writers = [
        // Later than the host's share (wall-clock time), equal in time, distinct in order.
        (
            tid("a"),
            Tag {
                millis: FUTURE,
                counter: 0,
                replica: "z".into(),
            },
            "first",
        ),
        (
            tid("b"),
            Tag {
                millis: FUTURE,
                counter: 1,
                replica: "a".into(),
            },
            "second",
        ),
        (
            tid("c"),
            Tag {
                millis: FUTURE,
                counter: 1,
                replica: "b".into(),
            },
            "third",
        ),
    ];
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for order in orders {
        // A host that has not read the previous rounds (reading moves its clock past them).
        let host = db.admin().shared();
        let start = Doc {
            title: "t".into(),
            body: "keep".into(),
            votes: 7,
        };
        let id = host.share(&start, Merge::LwwMapCrdt).await.unwrap();
        for (t, ..) in &writers {
            host.subscribe::<Doc>(t, &id, Access::Write).await.unwrap();
        }
        let mut local = LwwMap::new();
        for &w in &order {
            let (t, tag, title) = &writers[w];
            let value = Doc {
                title: (*title).into(),
                ..start.clone()
            };
            let patch = Patch::of(&value).unwrap().with(Doc::title());
            db.tenant_id(t)
                .shared::<Doc>()
                .patch_tagged(&id, &patch, tag)
                .await
                .unwrap();
            local.apply("title", title.as_bytes(), tag);
        }
        let got = host.get::<Doc>(&id).await.unwrap();
        assert_eq!(
            got.value,
            Doc {
                title: "third".into(),
                ..start.clone()
            },
            "order {order:?}"
        );
        assert_eq!(got.tags["title"], writers[2].1);
        assert_eq!(local.get("title").unwrap().0, b"third");
        assert_eq!(got.tags.len(), 3, "a field lost its tag: {:?}", got.tags);
    }
}

/// The latest edit wins, not the fastest clock: a replica whose wall clock is far behind, but
/// which read the instance first, wins over the edit it saw; one that did not read loses.
#[tokio::test]
async fn an_edit_made_after_seeing_another_wins_whatever_the_clocks() {
    let (_server, db) = support::setup().await;
    let id = share_with(
        &db,
        &doc("0"),
        Merge::LwwMapCrdt,
        &[("fast", Access::Write), ("slow", Access::Write)],
    )
    .await;
    let fast = db.tenant("fast").unwrap();
    let slow = db.tenant("slow").unwrap();
    let ahead = Replica::new("zz-ahead").unwrap();
    let edit = |t: &str| Patch::of(&doc(t)).unwrap().with(Doc::title());
    let far = ahead.tick_at(9_000_000_000_000);
    fast.shared::<Doc>()
        .patch_tagged(&id, &edit("A"), &far)
        .await
        .unwrap();
    // A replica behind in time that never read the instance: its edit is older.
    let blind = Replica::new("aa-blind").unwrap();
    let w = slow
        .shared::<Doc>()
        .patch_tagged(&id, &edit("C"), &blind.tick_at(5))
        .await
        .unwrap();
    assert_eq!((w.entry, w.applied), (None, 0));
    // The same clock after reading: its next edit is later than what it read.
    let seen = slow
        .shared::<Doc>()
        .replica(Replica::new("aa-slow").unwrap());
    assert_eq!(seen.get(&id).await.unwrap().value.title, "A");
    let w = seen.patch(&id, &edit("B")).await.unwrap();
    assert_eq!(w.applied, 1);
    let host = db.admin().shared();
    assert_eq!(host.get::<Doc>(&id).await.unwrap().value.title, "B");
}

#[tokio::test]
async fn last_write_wins_follows_arrival_and_strategies_refuse_writes_they_do_not_fit() {
    let (_server, db) = support::setup().await;
    let id = share_with(
        &db,
        &doc("0"),
        Merge::LastWriteWins,
        &[("a", Access::Write)],
    )
    .await;
    let a = db.tenant("a").unwrap();
    // An "older" tag arriving last still wins: arrival order is the order.
    let late = Tag {
        millis: 1,
        counter: 0,
        replica: "r".into(),
    };
    let early = Tag {
        millis: 9,
        counter: 0,
        replica: "r".into(),
    };
    let edit = |t: &str| Patch::of(&doc(t)).unwrap().with(Doc::title());
    a.shared::<Doc>()
        .patch_tagged(&id, &edit("x"), &early)
        .await
        .unwrap();
    a.shared::<Doc>()
        .patch_tagged(&id, &edit("y"), &late)
        .await
        .unwrap();
    assert_eq!(a.shared::<Doc>().get(&id).await.unwrap().value.title, "y");

    let host = db.admin().shared();
    let custom = host.share(&doc("c"), Merge::Custom).await.unwrap();
    host.subscribe::<Doc>(&tid("a"), &custom, Access::Write)
        .await
        .unwrap();
    assert!(matches!(
        a.shared::<Doc>().patch(&custom, &edit("p")).await,
        Err(Error::SharedMerge {
            merge: Merge::Custom,
            ..
        })
    ));
    let crdt = host.share(&doc("d"), Merge::LwwMapCrdt).await.unwrap();
    host.subscribe::<Doc>(&tid("a"), &crdt, Access::Write)
        .await
        .unwrap();
    assert!(matches!(
        a.shared::<Doc>()
            .update(&crdt, &popoto::shared::Overwrite, &edit("p"))
            .await,
        Err(Error::SharedMerge {
            merge: Merge::LwwMapCrdt,
            ..
        })
    ));
    assert!(matches!(
        a.shared::<Doc>()
            .patch(&id, &Patch::of(&doc("e")).unwrap())
            .await,
        Err(Error::InvalidValue { .. })
    ));
}

/// Adds the patch's `total` to the current one and counts the write.
struct Additive;

impl MergeStrategy<Counter> for Additive {
    fn merge(
        &self,
        current: &Counter,
        patch: &Patch<Counter>,
        _origin: &str,
    ) -> popoto::Result<Counter> {
        let delta = patch.value()?;
        Ok(Counter {
            total: current.total + delta.total,
            writes: current.writes + 1,
        })
    }
}

/// 64 concurrent writers (4 tenants, 16 tasks each) merge with a client-side additive strategy
/// under the script's version check: the total is every delta, the version one per write, one
/// event per write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_writers_with_a_custom_additive_merge_lose_nothing() {
    let (server, db) = support::setup().await;
    let host = db.admin().shared();
    let id = host
        .share(&Counter::default(), Merge::Custom)
        .await
        .unwrap();
    for t in 0..4 {
        host.subscribe::<Counter>(&tid(&format!("t{t}")), &id, Access::Write)
            .await
            .unwrap();
    }
    let tasks: Vec<_> = (1..=64i64)
        .map(|i| {
            let session = db.tenant(format!("t{}", i % 4)).unwrap();
            let id = id.clone();
            tokio::spawn(async move {
                let delta = Counter {
                    total: i,
                    writes: 0,
                };
                let patch = Patch::of(&delta).unwrap().with(Counter::total());
                session
                    .shared::<Counter>()
                    .update(&id, &Additive, &patch)
                    .await
            })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap().unwrap().version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=65).collect::<Vec<u64>>());
    let got = host.get::<Counter>(&id).await.unwrap();
    assert_eq!(
        got.value,
        Counter {
            total: 64 * 65 / 2,
            writes: 64
        }
    );
    assert_eq!(got.version, 65);
    let events = xrange(
        &server,
        &popoto::feed::FeedSource::shared::<Counter>(&id).stream_key(),
    );
    assert_eq!(events.len(), 65);
}

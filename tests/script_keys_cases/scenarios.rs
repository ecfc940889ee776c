//! The operations that drive the shared-model, change-feed and layout-migration scripts for
//! `script_keys.rs` (each script must run at least once under its monitor).

use popoto::feed::{FeedSource, GroupStart};
use popoto::shared::{Access, Merge, Overwrite, Patch};
use popoto::{Model, ModelSet};

use crate::support::*;

/// A shared model (the shared-model scripts).
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(shared)]
struct Board {
    title: String,
    cards: i64,
}

/// A private model with a change feed (apply.lua's FEED op).
#[derive(Model, Debug, Clone, PartialEq, Default)]
#[popoto(change_feed)]
struct FeedTicket {
    #[popoto(key, tenant)]
    org: String,
    #[popoto(key)]
    id: String,
    title: String,
}

/// Runs every shared-model and change-feed script: shared_write.lua (share, set, patch,
/// version-checked write), shared_read.lua, shared_grants.lua (subscribe, unsubscribe,
/// unshare, purge), apply.lua's FEED op, feed_group.lua (create, ack, dead, destroy),
/// feed_trim.lua and feed_grants.lua.
pub async fn shared_and_feed_scripts(db: &popoto::Db) {
    let acme_id = popoto::TenantId::new("acme").unwrap_or_else(|e| panic!("{e}"));
    let acme = db.tenant_id(&acme_id);
    let host = db.admin().shared();
    let board = Board {
        title: "b".into(),
        cards: 1,
    };
    let crdt = host
        .share(&board, Merge::LwwMapCrdt)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let custom = host
        .share(&board, Merge::Custom)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for id in [&crdt, &custom] {
        host.subscribe::<Board>(&acme_id, id, Access::Write)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let access = acme.shared::<Board>();
    access.get(&crdt).await.unwrap_or_else(|e| panic!("{e}"));
    let patch = Patch::of(&Board {
        cards: 2,
        ..board.clone()
    })
    .unwrap_or_else(|e| panic!("{e}"))
    .with(Board::cards());
    access
        .patch(&crdt, &patch)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    access
        .update(&custom, &Overwrite, &patch)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    host.set_shared(&crdt, &board)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // feed_grants.lua: a feed pump checks the grant of what it hands a reader.
    let hub = popoto::feed::FeedHub::default();
    let mut reader = hub
        .reader(&acme)
        .unwrap_or_else(|e| panic!("{e}"))
        .open()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    host.set_shared(&custom, &board)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let source = FeedSource::shared::<Board>(&custom);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !tokio::time::timeout_at(deadline, reader.next())
        .await
        .unwrap_or_else(|_| panic!("the hub reader got nothing"))
        .unwrap_or_else(|e| panic!("{e}"))
        .events
        .iter()
        .any(|e| e.source == source)
    {}
    host.unsubscribe::<Board>(&acme_id, &crdt)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let t = acme
        .create(FeedTicket {
            id: "t1".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    acme.save(&FeedTicket {
        title: "x".into(),
        ..t.clone()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    acme.create(FeedTicket {
        id: "t2".into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let group = acme
        .feed_group(
            &FeedSource::Tenant(acme_id.clone()),
            "g",
            GroupStart::Beginning,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .block(std::time::Duration::ZERO)
        .claim_after(std::time::Duration::ZERO)
        .limits(16, 1);
    let poison = t.clone();
    let handler = |e: popoto::feed::ChangeEvent| {
        let fail = e.key == FeedTicket::key_of(poison.org.clone(), poison.id.clone()).redis_key();
        async move {
            if fail {
                Err("no")
            } else {
                Ok(())
            }
        }
    };
    group
        .poll("c1", handler)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let r = group
        .poll("c2", handler)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!r.dead_lettered.is_empty(), "{r:?}");
    group.trim().await.unwrap_or_else(|e| panic!("{e}"));
    group.destroy().await.unwrap_or_else(|e| panic!("{e}"));
    acme.delete(&t).await.unwrap_or_else(|e| panic!("{e}"));
    host.unshare::<Board>(&crdt)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let models = ModelSet::new().with::<FeedTicket>().with::<Board>();
    db.admin()
        .destroy_tenant(&acme_id, &models)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// Runs shared_relayout.lua (every staging operation, the landing, the grants): a shared
/// instance with a change feed, a consumer group holding a finished and a pending entry, and a
/// grant, moved from a server of its own into `db`'s.
pub async fn relayout_into(db: &popoto::Db) {
    let other = start_server();
    let source = popoto::Db::connect(other.url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let host = source.admin().shared();
    let board = |cards| Board {
        title: "moved".into(),
        cards,
    };
    let id = host
        .share(&board(1), Merge::LastWriteWins)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tenant = popoto::TenantId::new("relayout-t").unwrap_or_else(|e| panic!("{e}"));
    host.subscribe::<Board>(&tenant, &id, Access::Write)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    host.set_shared(&id, &board(2))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let group = source
        .admin()
        .feed_group(
            &FeedSource::shared::<Board>(&id),
            "g",
            GroupStart::Beginning,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .block(std::time::Duration::ZERO);
    group
        .poll("w", |e| {
            let later = e.version == 2;
            async move {
                if later {
                    Err("later".to_owned())
                } else {
                    Ok(())
                }
            }
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let models = ModelSet::new().with::<Board>();
    let moved = source
        .admin()
        .migrate_shared_layout(&models, &db.admin(), &Default::default(), |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((moved.instances, moved.events, moved.grants), (1, 2, 1));
}

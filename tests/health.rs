//! Health reacts to real failures of a tenant's own server (stopped, refusing authentication,
//! not answering in time): the tenant becomes unverified, then disabled and refused at once;
//! the periodic, jittered recheck brings it back once the server is; every change is a
//! `tracing` event and a `HealthEvent`.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use popoto::registry::{Health, HealthEvent, HealthPolicy, Placement};
use popoto::{Catalog, Db, Error, TenantRegistry};
use support::faults::kill_others;
use support::{fast_failing, start_server, tid, write_episode, Episode};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Unverified after 1 failed call, disabled after 2, rechecked every 50 ms ± 50 %.
fn policy() -> HealthPolicy {
    HealthPolicy::default()
        .thresholds(1, 2)
        .recheck_every(Duration::from_millis(50), 0.5)
}

/// The next health change of `tenant` (others are skipped), within 20 s.
async fn next_change(events: &mut broadcast::Receiver<HealthEvent>, tenant: &str) -> HealthEvent {
    let wait = async {
        loop {
            match events.recv().await {
                Ok(e) if e.tenant.as_str() == tenant => return e,
                Ok(_) => {}
                Err(e) => panic!("health events: {e}"),
            }
        }
    };
    match tokio::time::timeout(Duration::from_secs(20), wait).await {
        Ok(e) => e,
        Err(_) => panic!("no health change of {tenant} within 20 s"),
    }
}

/// Waits for `tenant` to become healthy again (the periodic recheck).
async fn until_healthy(events: &mut broadcast::Receiver<HealthEvent>, tenant: &str) {
    loop {
        if next_change(events, tenant).await.to == Health::Healthy {
            return;
        }
    }
}

/// `popoto::health` events as (level, fields) text.
#[derive(Clone, Default)]
struct Events(Arc<Mutex<Vec<String>>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Events {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != "popoto::health" {
            return;
        }
        let mut text = event.metadata().level().to_string();
        event.record(&mut Text(&mut text));
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(text);
    }
}

/// The `popoto::health` events of every test of this binary: a global subscriber, since a
/// thread-local one misses callsites first hit by tests running on other threads.
fn traced() -> &'static Events {
    static EVENTS: OnceLock<Events> = OnceLock::new();
    EVENTS.get_or_init(|| {
        let events = Events::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(events.clone()),
        )
        .unwrap_or_else(|e| panic!("global tracing subscriber: {e}"));
        events
    })
}

#[tokio::test]
async fn a_tenant_whose_server_stops_is_disabled_then_healthy_again_after_restart() {
    let traced = traced();
    let shared = start_server();
    let mut own = start_server();
    let catalog = Catalog::new(
        popoto::Backend::new(fast_failing(shared.url())).unwrap_or_else(|e| panic!("backend: {e}")),
    );
    let placement = format!("server:{}", own.url())
        .parse()
        .unwrap_or_else(|e| panic!("placement: {e}"));
    catalog
        .create(&tid("solo"), placement, Default::default())
        .await
        .unwrap_or_else(|e| panic!("catalog: {e}"));
    let registry = TenantRegistry::with_catalog(fast_failing(shared.url()), Duration::ZERO)
        .unwrap_or_else(|e| panic!("registry: {e}"));
    registry.set_health_policy(policy());
    let mut events = registry.subscribe_health();
    let db = Db::with_registry(registry.clone());

    write_episode(&db, "solo", "x")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    assert_eq!(registry.health(&tid("solo")).await, Some(Health::Healthy));
    assert_eq!(next_change(&mut events, "solo").await.to, Health::Healthy);

    own.kill();
    let first = write_episode(&db, "solo", "x").await;
    assert!(
        first.as_ref().is_err_and(Error::is_connection_error),
        "{first:?}"
    );
    assert_eq!(
        registry.health(&tid("solo")).await,
        Some(Health::Unverified)
    );
    let second = write_episode(&db, "solo", "x").await;
    assert!(
        second.as_ref().is_err_and(Error::is_connection_error),
        "{second:?}"
    );
    // Disabled: refused at once, without a call to the dead server.
    match write_episode(&db, "solo", "x").await {
        Err(Error::TenantDisabled { tenant, reason }) => {
            assert_eq!(tenant, "solo");
            assert!(reason.contains("in a row"), "{reason}");
        }
        other => panic!("expected TenantDisabled, got {other:?}"),
    }
    let changes = [
        next_change(&mut events, "solo").await,
        next_change(&mut events, "solo").await,
    ];
    assert_eq!(changes[0].from, Health::Healthy);
    assert_eq!(changes[0].to, Health::Unverified);
    assert!(matches!(changes[1].to, Health::Disabled(_)), "{changes:?}");

    // Rechecks while it is down keep it disabled; after the restart one brings it back.
    let checker = registry.spawn_health_checks();
    own.restart().unwrap_or_else(|e| panic!("restart: {e}"));
    until_healthy(&mut events, "solo").await;
    write_episode(&db, "solo", "x")
        .await
        .unwrap_or_else(|e| panic!("write after restart: {e}"));
    let count = db
        .tenant("solo")
        .unwrap_or_else(|e| panic!("{e}"))
        .query::<Episode>()
        .count()
        .await
        .unwrap_or_else(|e| panic!("count: {e}"));
    assert_eq!(
        count, 1,
        "the restarted server is empty but for the new write"
    );
    drop(checker);

    let traced = traced.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let solo: Vec<&String> = traced
        .iter()
        .filter(|t| t.contains("tenant=solo"))
        .collect();
    let at = |level: &str, to: &str| {
        solo.iter()
            .position(|t| t.starts_with(level) && t.contains(to))
            .unwrap_or_else(|| panic!("no {level} event to {to}: {solo:#?}"))
    };
    let unverified = at("WARN", "to=Unverified");
    let disabled = at("WARN", "to=Disabled");
    let back = solo
        .iter()
        .rposition(|t| t.starts_with("INFO") && t.contains("to=Healthy"))
        .unwrap_or_else(|| panic!("no recovery event: {solo:#?}"));
    assert!(unverified < disabled && disabled < back, "{solo:#?}");
}

/// A redis-rs connection to `url` (with its credentials).
fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .unwrap_or_else(|e| panic!("raw connection: {e}"))
}

fn config_set(conn: &mut redis::Connection, name: &str, value: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .exec(conn)
        .unwrap_or_else(|e| panic!("CONFIG SET {name}: {e}"));
}

#[tokio::test]
async fn authentication_refused_disables_the_tenant_until_it_is_accepted_again() {
    traced();
    let shared = start_server();
    let own = start_server();
    let mut admin = raw(own.url());
    config_set(&mut admin, "requirepass", "pw-one");
    let url = own.url().replace("redis://", "redis://:pw-one@");
    let registry =
        TenantRegistry::new(fast_failing(shared.url())).unwrap_or_else(|e| panic!("registry: {e}"));
    registry.set_health_policy(policy());
    let mut events = registry.subscribe_health();
    let health = registry
        .register(&tid("vault"), Placement::Server(fast_failing(&url)))
        .await;
    assert_eq!(health, Health::Healthy);
    assert_eq!(next_change(&mut events, "vault").await.to, Health::Healthy);
    let db = Db::with_registry(registry.clone());
    write_episode(&db, "vault", "x")
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));

    // The password changes and every client is disconnected: dials are refused.
    let mut admin = raw(&url);
    config_set(&mut admin, "requirepass", "pw-two");
    kill_others(&mut admin);
    let mut last = Ok(());
    for _ in 0..3 {
        last = write_episode(&db, "vault", "x").await;
    }
    match &last {
        Err(Error::TenantDisabled { reason, .. }) => {
            assert!(!reason.contains("pw-"), "{reason}")
        }
        other => panic!("expected TenantDisabled, got {other:?}"),
    }
    let disabled = registry.health(&tid("vault")).await;
    assert!(
        matches!(disabled, Some(Health::Disabled(_))),
        "{disabled:?}"
    );
    assert!(!format!("{disabled:?}").contains("pw-"));

    let _checker = registry.spawn_health_checks();
    config_set(&mut admin, "requirepass", "pw-one");
    until_healthy(&mut events, "vault").await;
    write_episode(&db, "vault", "x")
        .await
        .unwrap_or_else(|e| panic!("write once accepted: {e}"));
}

#[tokio::test]
async fn calls_that_time_out_disable_the_tenant_until_the_server_answers_again() {
    traced();
    let shared = start_server();
    let own = start_server();
    let registry =
        TenantRegistry::new(fast_failing(shared.url())).unwrap_or_else(|e| panic!("registry: {e}"));
    registry.set_health_policy(policy());
    let mut events = registry.subscribe_health();
    let health = registry
        .register(&tid("slow"), Placement::Server(fast_failing(own.url())))
        .await;
    assert_eq!(health, Health::Healthy);
    assert_eq!(next_change(&mut events, "slow").await.to, Health::Healthy);
    let db = Db::with_registry(registry.clone());

    // The server stops answering clients for 1.5 s: calls time out (300 ms each).
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1500)
        .arg("ALL")
        .exec(&mut own.raw())
        .unwrap_or_else(|e| panic!("CLIENT PAUSE: {e}"));
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(write_episode(&db, "slow", "x").await);
    }
    assert!(
        outcomes[..2]
            .iter()
            .all(|o| o.as_ref().is_err_and(Error::is_connection_error)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], Err(Error::TenantDisabled { .. })),
        "{outcomes:?}"
    );
    let _checker = registry.spawn_health_checks();
    until_healthy(&mut events, "slow").await;
    write_episode(&db, "slow", "x")
        .await
        .unwrap_or_else(|e| panic!("write after the pause: {e}"));
}

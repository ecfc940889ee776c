//! Change notifications of the tenant catalog: every catalog change publishes the tenant's id
//! on `keys::catalog_channel()`; a registry that watches them reads the change counter again on
//! its next lookup, so a suspension, destruction or move made by any process is obeyed at once
//! instead of within the refresh interval. Pub/sub delivers at most once, so while the
//! subscription is down every lookup reads the counter (as with a zero refresh interval), and
//! once it is made again the next lookup does.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::{lock, TenantRegistry};
use crate::catalog::view::CatalogView;
use crate::error::{Error, Result};
use crate::keys;

/// First wait before subscribing again after the subscription was lost (doubling up to
/// [`MAX_BACKOFF`]).
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two subscription attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long dialing and subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The task listening to catalog changes ([`TenantRegistry::watch_catalog`]); dropping it stops
/// the task (so does dropping the registry).
pub struct CatalogWatcher {
    task: tokio::task::JoinHandle<()>,
    subscriptions: tokio::sync::watch::Receiver<u64>,
    view: Arc<CatalogView>,
}

impl std::fmt::Debug for CatalogWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogWatcher")
            .field("subscriptions", &self.subscriptions())
            .finish_non_exhaustive()
    }
}

impl Drop for CatalogWatcher {
    fn drop(&mut self) {
        self.task.abort();
        // Back to the refresh interval alone.
        self.view.set_unwatched(false);
    }
}

impl CatalogWatcher {
    /// Times the subscription was made (1 once listening; more after reconnections).
    pub fn subscriptions(&self) -> u64 {
        *self.subscriptions.borrow()
    }

    /// Waits until the subscription has been made `n` times in all (1: listening).
    pub async fn subscribed(&self, n: u64) {
        let mut rx = self.subscriptions.clone();
        // The task lives as long as this handle: the channel cannot close while waiting.
        let _ = rx.wait_for(|made| *made >= n).await;
    }
}

impl TenantRegistry {
    /// Changes this registry has seen in its catalog (the change counter moved, a change was
    /// announced, [`TenantRegistry::refresh_catalog`]): caches built on the catalog's answers
    /// (a web layer's) compare it to know they are stale. Always 0 without a catalog.
    pub fn catalog_generation(&self) -> u64 {
        lock(&self.inner.catalog)
            .as_ref()
            .map_or(0, |v| v.generation())
    }

    /// Reads the catalog's change counter if due (the refresh interval passed, or a change was
    /// announced), as a lookup would, and returns [`TenantRegistry::catalog_generation`].
    pub async fn sync_catalog(&self) -> Result<u64> {
        let view = lock(&self.inner.catalog).clone();
        match view {
            Some(view) => {
                view.sync().await?;
                Ok(view.generation())
            }
            None => Ok(0),
        }
    }

    /// Starts listening to the catalog's change notifications (a pub/sub subscription on the
    /// catalog's server, on the current tokio runtime; reconnected with backoff when lost).
    /// Keep the returned handle: dropping it stops listening. [`Error::Config`] without a
    /// catalog.
    pub fn watch_catalog(&self) -> Result<CatalogWatcher> {
        let view = lock(&self.inner.catalog)
            .clone()
            .ok_or_else(|| Error::Config("watch_catalog needs a registry with a catalog".into()))?;
        let client = redis::Client::open(view.catalog().backend().connection_url())
            .map_err(|e| Error::Config(format!("the catalog's server: {e}")))?;
        let (made, subscriptions) = tokio::sync::watch::channel(0u64);
        let registry = Arc::downgrade(&self.inner);
        let watched = view.clone();
        let task = tokio::spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            while registry.strong_count() > 0 {
                let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
                    let mut pubsub = client.get_async_pubsub().await?;
                    pubsub.subscribe(keys::catalog_channel()).await?;
                    Ok::<_, redis::RedisError>(pubsub.into_on_message())
                })
                .await;
                match subscribed {
                    Ok(Ok(mut changes)) => {
                        backoff = FIRST_BACKOFF;
                        // Whatever changed while not subscribed.
                        view.notify();
                        view.set_unwatched(false);
                        made.send_modify(|n| *n += 1);
                        tracing::info!(
                            target: "popoto::catalog",
                            "listening to tenant catalog changes"
                        );
                        while let Some(msg) = changes.next().await {
                            view.notify();
                            tracing::debug!(
                                target: "popoto::catalog",
                                tenant = %String::from_utf8_lossy(msg.get_payload_bytes()),
                                "tenant catalog change announced"
                            );
                        }
                        tracing::warn!(
                            target: "popoto::catalog",
                            "tenant catalog change notifications lost; subscribing again"
                        );
                    }
                    Ok(Err(e)) => tracing::warn!(
                        target: "popoto::catalog",
                        error = %e,
                        "cannot listen to tenant catalog changes; retrying"
                    ),
                    Err(_) => tracing::warn!(
                        target: "popoto::catalog",
                        "subscribing to tenant catalog changes timed out; retrying"
                    ),
                }
                // Not subscribed: every lookup reads the counter until subscribed again.
                view.set_unwatched(true);
                view.notify();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
        Ok(CatalogWatcher {
            task,
            subscriptions,
            view: watched,
        })
    }
}

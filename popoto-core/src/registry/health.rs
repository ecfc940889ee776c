//! Health that reacts to real failures: every lookup (and `health`) looks at how many calls in a
//! row failed at the connection level on the tenant's backend (refused, cut, authentication
//! failed while dialing, timed out: [`Backend::consecutive_failures`]); past a threshold the
//! tenant is unverified, then disabled and refused at once instead of waiting on a dead server.
//! A periodic, jittered recheck ([`TenantRegistry::spawn_health_checks`]) validates unhealthy
//! tenants again and brings them back. Every change of health is a `tracing` event (target
//! `popoto::health`) and a [`HealthEvent`] to subscribers.

use std::sync::Arc;
use std::time::Duration;

use super::{lock, Health, SlotState, TenantRegistry};
use crate::tenant::TenantId;

/// When failed calls change a tenant's health, and how often unhealthy tenants are rechecked.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HealthPolicy {
    /// Calls in a row failed at the connection level after which a healthy tenant is
    /// [`Health::Unverified`] (still served).
    pub unverified_after: u64,
    /// Calls in a row failed at the connection level after which the tenant is
    /// [`Health::Disabled`] (refused until a recheck succeeds).
    pub disable_after: u64,
    /// Mean time between two rounds of the periodic recheck.
    pub recheck_interval: Duration,
    /// Spread of that time: each wait is `recheck_interval × (1 ± jitter)`, so processes that
    /// started together do not recheck a recovering server all at once (0 to 1).
    pub jitter: f64,
}

impl Default for HealthPolicy {
    /// Unverified after 1 failed call, disabled after 3, rechecked every 10 s ± 20 %.
    fn default() -> Self {
        HealthPolicy {
            unverified_after: 1,
            disable_after: 3,
            recheck_interval: Duration::from_secs(10),
            jitter: 0.2,
        }
    }
}

impl HealthPolicy {
    /// The policy with these thresholds (each at least 1).
    pub fn thresholds(mut self, unverified_after: u64, disable_after: u64) -> Self {
        self.unverified_after = unverified_after.max(1);
        self.disable_after = disable_after.max(self.unverified_after);
        self
    }

    /// The policy with this recheck interval and jitter (clamped to 0..=1).
    pub fn recheck_every(mut self, interval: Duration, jitter: f64) -> Self {
        self.recheck_interval = interval;
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// One jittered wait between two recheck rounds.
    fn next_wait(&self) -> Duration {
        let r = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
        self.recheck_interval
            .mul_f64((1.0 + self.jitter * (2.0 * r - 1.0)).max(0.0))
    }
}

/// A change of a tenant's health.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct HealthEvent {
    /// The tenant.
    pub tenant: TenantId,
    /// Health before.
    pub from: Health,
    /// Health after.
    pub to: Health,
    /// What changed it (`build`, `recheck`, `calls failed`, `a call succeeded`...).
    pub cause: &'static str,
}

/// The periodic recheck task; dropping it stops the task (so does dropping the registry).
#[derive(Debug)]
pub struct HealthChecker {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TenantRegistry {
    /// Replaces the health policy (thresholds and recheck interval).
    pub fn set_health_policy(&self, policy: HealthPolicy) {
        *lock(&self.inner.health_policy) = policy;
    }

    /// The health policy in force.
    pub fn health_policy(&self) -> HealthPolicy {
        *lock(&self.inner.health_policy)
    }

    /// Every change of health from now on (a slow receiver misses the oldest ones).
    pub fn subscribe_health(&self) -> tokio::sync::broadcast::Receiver<HealthEvent> {
        self.inner.events.subscribe()
    }

    /// Rechecks every tenant that is unverified or disabled (after observing failed calls);
    /// returns their health afterwards.
    pub async fn recheck_unhealthy(&self) -> Vec<(TenantId, Health)> {
        let mut out = Vec::new();
        for (tenant, _) in self.list().await {
            let unhealthy = matches!(
                self.health(&tenant).await,
                Some(Health::Unverified | Health::Disabled(_))
            );
            if unhealthy {
                if let Some(h) = self.recheck(&tenant).await {
                    out.push((tenant, h));
                }
            }
        }
        out
    }

    /// Starts the periodic recheck of unhealthy tenants (every
    /// [`HealthPolicy::recheck_interval`], jittered) on the current tokio runtime.
    pub fn spawn_health_checks(&self) -> HealthChecker {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            loop {
                let wait = match weak.upgrade() {
                    Some(inner) => lock(&inner.health_policy).next_wait(),
                    None => return,
                };
                tokio::time::sleep(wait).await;
                let Some(inner) = weak.upgrade() else { return };
                TenantRegistry { inner }.recheck_unhealthy().await;
            }
        });
        HealthChecker { task }
    }

    /// Sets a slot's health; a change is traced and sent to subscribers.
    pub(super) fn transition(
        &self,
        tenant: &TenantId,
        state: &mut SlotState,
        to: Health,
        cause: &'static str,
    ) {
        state.observed = false;
        if state.health == to {
            return;
        }
        let from = std::mem::replace(&mut state.health, to.clone());
        match &to {
            Health::Healthy => tracing::info!(
                target: "popoto::health",
                tenant = %tenant, from = ?from, to = ?to, cause,
                "tenant backend healthy"
            ),
            Health::Pending => tracing::debug!(
                target: "popoto::health",
                tenant = %tenant, from = ?from, to = ?to, cause,
                "tenant backend pending"
            ),
            _ => tracing::warn!(
                target: "popoto::health",
                tenant = %tenant, from = ?from, to = ?to, cause,
                "tenant backend unhealthy"
            ),
        }
        // No subscriber is not an error.
        let _ = self.inner.events.send(HealthEvent {
            tenant: tenant.clone(),
            from,
            to,
            cause,
        });
    }

    /// Moves a built slot's health by the failures of the calls made on its backend.
    pub(super) fn observe(&self, tenant: &TenantId, state: &mut SlotState) {
        let Some(backend) = state.backend() else {
            return;
        };
        if !matches!(state.health, Health::Healthy | Health::Unverified) {
            return;
        }
        let n = backend.consecutive_failures();
        let policy = self.health_policy();
        if n >= policy.disable_after.max(1) {
            let reason = format!(
                "{n} calls in a row failed at the connection level (refused, cut, authentication or timeout)"
            );
            self.transition(tenant, state, Health::Disabled(reason), "calls failed");
            state.observed = true;
        } else if n >= policy.unverified_after.max(1) {
            if state.health == Health::Healthy {
                self.transition(tenant, state, Health::Unverified, "calls failed");
                state.observed = true;
            }
        } else if n == 0 && state.observed && state.health == Health::Unverified {
            self.transition(tenant, state, Health::Healthy, "a call succeeded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_jittered_within_the_bounds() {
        let p = HealthPolicy::default().recheck_every(Duration::from_millis(1000), 0.5);
        let waits: Vec<Duration> = (0..50).map(|_| p.next_wait()).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_millis(500) && *w <= Duration::from_millis(1500)));
        assert!(
            waits.iter().any(|w| *w != waits[0]),
            "50 waits were all equal: no jitter"
        );
        let fixed = HealthPolicy::default().recheck_every(Duration::from_millis(100), 0.0);
        assert_eq!(fixed.next_wait(), Duration::from_millis(100));
    }
}

//! The report of a fleet operation: data (serde), with a human summary (`Display`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// How one tenant (or backend) fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok {
        /// What was done.
        detail: String,
    },
    /// Failed; the others went on.
    Failed {
        /// The error.
        error: String,
    },
    /// Not worked on.
    Skipped {
        /// Why (`suspended`, `destroyed`, `done in run ...`).
        reason: String,
    },
}

impl Outcome {
    pub(crate) fn failed(error: String) -> Outcome {
        Outcome::Failed { error }
    }
}

/// The result of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantResult {
    /// The tenant id.
    pub tenant: String,
    /// Its placement as the catalog says (server credentials hidden).
    pub placement: String,
    /// How it fared.
    pub outcome: Outcome,
}

impl TenantResult {
    pub(crate) fn skipped(tenant: String, placement: String, reason: String) -> Self {
        TenantResult {
            tenant,
            placement,
            outcome: Outcome::Skipped { reason },
        }
    }
}

/// The result of a per-backend operation on one backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendResult {
    /// The backend's URL, credentials hidden.
    pub backend: String,
    /// Catalog tenants living there that were worked on.
    pub tenants: usize,
    /// How it fared (failed also when it found problems of no catalog tenant).
    pub outcome: Outcome,
}

/// What a fleet operation did to every tenant of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    /// The operation (`audit`, `export`, ...).
    pub operation: String,
    /// The run id, when progress was journaled.
    pub run: Option<String>,
    /// Start (Unix milliseconds).
    pub started_ms: i64,
    /// End (Unix milliseconds).
    pub finished_ms: i64,
    /// Tenants done.
    pub ok: usize,
    /// Tenants failed.
    pub failed: usize,
    /// Tenants skipped.
    pub skipped: usize,
    /// Every tenant, sorted by id.
    pub tenants: Vec<TenantResult>,
    /// Per-backend operations: every backend worked on.
    pub backends: Vec<BackendResult>,
    /// Catalog entries that could not be read (each names its key).
    pub invalid: Vec<String>,
}

impl FleetReport {
    pub(crate) fn start(operation: &str, run: Option<String>) -> FleetReport {
        FleetReport {
            operation: operation.to_owned(),
            run,
            started_ms: chrono::Utc::now().timestamp_millis(),
            finished_ms: 0,
            ok: 0,
            failed: 0,
            skipped: 0,
            tenants: Vec::new(),
            backends: Vec::new(),
            invalid: Vec::new(),
        }
    }

    pub(crate) fn finish(mut self) -> FleetReport {
        self.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        self.backends.sort_by(|a, b| a.backend.cmp(&b.backend));
        let count = |f: fn(&Outcome) -> bool| self.tenants.iter().filter(|t| f(&t.outcome)).count();
        self.ok = count(|o| matches!(o, Outcome::Ok { .. }));
        self.failed = count(|o| matches!(o, Outcome::Failed { .. }));
        self.skipped = count(|o| matches!(o, Outcome::Skipped { .. }));
        self.finished_ms = chrono::Utc::now().timestamp_millis();
        self
    }

    /// Whether nothing failed: no tenant, no backend, no unreadable catalog entry.
    pub fn is_success(&self) -> bool {
        self.failed == 0
            && self.invalid.is_empty()
            && self
                .backends
                .iter()
                .all(|b| !matches!(b.outcome, Outcome::Failed { .. }))
    }

    /// The result of one tenant.
    pub fn tenant(&self, id: &str) -> Option<&TenantResult> {
        self.tenants.iter().find(|t| t.tenant == id)
    }
}

impl fmt::Display for FleetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} ok, {} failed, {} skipped ({} ms)",
            self.operation,
            self.ok,
            self.failed,
            self.skipped,
            self.finished_ms - self.started_ms
        )?;
        for t in &self.tenants {
            match &t.outcome {
                Outcome::Failed { error } => {
                    writeln!(f, "  FAILED {} ({}): {error}", t.tenant, t.placement)?
                }
                Outcome::Skipped { reason } => writeln!(f, "  skipped {}: {reason}", t.tenant)?,
                Outcome::Ok { .. } => {}
            }
        }
        for b in &self.backends {
            if let Outcome::Failed { error } = &b.outcome {
                writeln!(f, "  FAILED backend {}: {error}", b.backend)?;
            }
        }
        for e in &self.invalid {
            writeln!(f, "  unreadable catalog entry: {e}")?;
        }
        Ok(())
    }
}

//! What migrations and index checks report.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a migration stands, passed to the progress callback after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Progress {
    /// Entries moved so far (always 0 in a dry run).
    pub moved: u64,
    /// Entries returned by the scan so far (a scan may return an entry twice).
    pub scanned: u64,
    /// Distinct entries left in place because of an error.
    pub errors: u64,
    /// Entries in the unpartitioned key when the migration started.
    pub total: u64,
}

/// One entry a migration left in place, and why (popoto's report shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationError {
    /// The instance key (the member of the hash or zset).
    pub member_key: String,
    /// Why it was not moved; [`INSTANCE_NOT_FOUND`](super::INSTANCE_NOT_FOUND) when the instance
    /// hash is missing.
    pub error: String,
}

/// What a partition migration did (popoto's `migrate_to_partitioned` report, plus `kept_existing`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationReport {
    /// Entries in the unpartitioned key at the start (`HLEN`/`ZCARD`).
    pub total: u64,
    /// Entries taken out of the unpartitioned key by this run (0 in a dry run).
    pub migrated: u64,
    /// Entries left in the unpartitioned key, each once.
    pub errors: Vec<MigrationError>,
    /// Entries per partition label (the text after the unpartitioned key and `:`: for a
    /// confidence field what follows `:data:`), counted in dry runs too.
    pub partitions: BTreeMap<String, u64>,
    /// Entries whose partition already held an entry for the instance: the partition's entry
    /// was kept and the older unpartitioned one dropped (counted in `migrated` too).
    pub kept_existing: u64,
}

/// What kind of defect an index check found (serialized in snake case: `orphan`,
/// `key_mismatch`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// (a) An index entry whose instance hash is missing.
    Orphan,
    /// (b) An instance missing from an index it belongs to (or in its zset with another score).
    Missing,
    /// (c) An index entry in a partition (or value set) other than the one its instance's own
    /// values select: a tenant-isolation defect.
    Misplaced,
    /// (d) An instance whose key disagrees with its stored key values (e.g. the tenant field
    /// says `globex` but the key says `acme`): a tenant-isolation defect, never repaired.
    KeyMismatch,
    /// An instance hash that cannot be decoded or indexed; never repaired.
    Unreadable,
    /// A unique value held by two or more instances of one tenant (or of a model without
    /// tenant): each exists and carries the value in its key and its stored field. Reported
    /// once per owner, never repaired (which one keeps the value is a decision for a person).
    DuplicateUnique,
    /// A unique value held by instances of different tenants: a tenant-isolation defect (the
    /// unique index names another tenant's instance as the value's owner), reported once per
    /// owner and never repaired.
    CrossTenantUnique,
    /// Found by the check that needs no model ([`crate::Admin::check_keys`]): an index entry
    /// naming a key of another model or a key that is not a hash, or an index key of another
    /// Redis type than popoto writes there. Never repaired.
    Foreign,
    /// A grant of a shared instance the two sides disagree on: a subscriber entry without the
    /// tenant's grant (or with another access), or the reverse (planted, or a grant change cut
    /// between its two calls on a cluster). Reads and writes trust only the subscriber entry;
    /// [`crate::Admin::repair_shared_grants`] repairs it without granting more than that.
    GrantMismatch,
}

impl FindingKind {
    /// Whether the defect crosses the tenant boundary (misplaced entry, key mismatch, unique
    /// value held by instances of different tenants).
    pub fn is_isolation(self) -> bool {
        matches!(
            self,
            FindingKind::Misplaced
                | FindingKind::KeyMismatch
                | FindingKind::CrossTenantUnique
                | FindingKind::GrantMismatch
        )
    }

    fn label(self) -> &'static str {
        match self {
            FindingKind::Orphan => "orphan index entry",
            FindingKind::Missing => "missing index entry",
            FindingKind::Misplaced => "entry outside its partition",
            FindingKind::KeyMismatch => "key disagrees with stored values",
            FindingKind::Unreadable => "unreadable instance",
            FindingKind::DuplicateUnique => "unique value with several owners",
            FindingKind::CrossTenantUnique => "unique value owned by several tenants",
            FindingKind::Foreign => "not an instance of the index's model",
            FindingKind::GrantMismatch => "grant the two sides disagree on",
        }
    }
}

/// One defect found by an index check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// What is wrong.
    pub kind: FindingKind,
    /// The index key holding (or that should hold) the entry; the instance key itself for
    /// [`FindingKind::KeyMismatch`] and [`FindingKind::Unreadable`].
    pub index: String,
    /// The instance key concerned.
    pub member: String,
    /// The field whose index (or key segment) is concerned; `None` for `$Class`.
    pub field: Option<String>,
    /// The tenant named by the instance key, for models with a tenant field.
    pub tenant: Option<String>,
    /// Details: where the entry belongs, the expected score, the disagreeing values...
    pub detail: String,
    /// Whether `rebuild_indexes` repaired it.
    pub repaired: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} in {}",
            self.kind.label(),
            self.member,
            self.index
        )?;
        if let Some(field) = &self.field {
            write!(f, " (field {field})")?;
        }
        if let Some(t) = &self.tenant {
            write!(f, " [tenant {t:?}]")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        if self.repaired {
            f.write_str(" [repaired]")?;
        }
        Ok(())
    }
}

/// What an index check (or rebuild, or tenant-isolation audit) of one model found.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IndexReport {
    /// The model's class name.
    pub model: String,
    /// Whether this report comes from `rebuild_indexes` (repairs were attempted).
    pub rebuilt: bool,
    /// Instance hashes examined.
    pub instances: u64,
    /// Index keys examined (`$Class`, value sets, zsets, companion hashes).
    pub index_keys: u64,
    /// Index entries examined.
    pub index_entries: u64,
    /// Every defect found, each once.
    pub findings: Vec<Finding>,
}

impl IndexReport {
    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }

    /// Findings of one kind.
    pub fn of_kind(&self, kind: FindingKind) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    /// Number of findings of one kind.
    pub fn count(&self, kind: FindingKind) -> usize {
        self.of_kind(kind).count()
    }

    /// Findings that cross the tenant boundary ([`FindingKind::is_isolation`]).
    pub fn isolation_violations(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.kind.is_isolation())
    }

    /// Findings left as they were (all of them for a check).
    pub fn unrepaired(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.repaired)
    }

    /// Number of findings `rebuild_indexes` repaired.
    pub fn repaired(&self) -> usize {
        self.findings.iter().filter(|f| f.repaired).count()
    }

    /// Tenants named by the findings' instance keys.
    pub fn tenants(&self) -> BTreeSet<&str> {
        self.findings
            .iter()
            .filter_map(|f| f.tenant.as_deref())
            .collect()
    }
}

impl fmt::Display for IndexReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} of {}: {} instances, {} index keys, {} index entries; {} findings ({} isolation, {} repaired)",
            if self.rebuilt { "index rebuild" } else { "index check" },
            self.model,
            self.instances,
            self.index_keys,
            self.index_entries,
            self.findings.len(),
            self.isolation_violations().count(),
            self.repaired(),
        )?;
        // Isolation defects first: they are what an audit is about.
        for finding in self
            .isolation_violations()
            .chain(self.findings.iter().filter(|x| !x.kind.is_isolation()))
        {
            writeln!(f, "  {finding}")?;
        }
        Ok(())
    }
}

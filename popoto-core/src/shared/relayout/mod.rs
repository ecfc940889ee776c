//! Moving shared instances between key layouts (popoto's and the cluster layout, one server or
//! a cluster): every instance of the set's shared models with its change feed, then the
//! tenants' side of their grants. Each instance lands in the target atomically (one script
//! call in its slot, after its paged parts were staged beside it); an instance the target
//! already holds is compared with the source's and skipped when equal, refused when not. So a
//! run streams in constant memory, a cut run is completed by running it again, and a second
//! run changes nothing.

mod grants;
mod land;
mod pages;
mod snapshot;

#[cfg(any(test, feature = "testing"))]
pub(crate) use land::RELAYOUT;

use serde::{Deserialize, Serialize};

use super::SharedId;
use crate::admin::Admin;
use crate::backend::{Backend, KeyScan};
use crate::error::{Error, Result};
use crate::keys::{Layout, SharedKey};
use crate::lifecycle::{ModelSet, SharedDecode};
use crate::maintenance::DryRun;
use grants::{move_grants, GrantHolders};
use land::{commit, differs, stage, Landed};
use snapshot::{Keys, Snapshot};

/// Label of errors and traces.
const OP: &str = "migrate_shared_layout";

/// Times an instance written during its move starts over before [`Error::Contention`].
const RESTARTS: u32 = 8;

/// How a layout migration of shared instances runs ([`Admin::migrate_shared_layout`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedLayoutRun {
    /// `DryRun::Yes`: read, verify, compare with the target and count; write nothing.
    pub dry_run: DryRun,
    /// Resume after this model: models move in name order, so a run cut short resumes after
    /// the last model its progress reported done (running from the start again is also safe:
    /// instances already in the target are compared and skipped).
    pub after: Option<String>,
}

/// What a layout migration of shared instances did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedLayoutReport {
    /// The source keyspace's layout.
    pub from: Layout,
    /// The target keyspace's layout.
    pub to: Layout,
    /// Instances moved (value, meta, tags, subscribers and change feed).
    pub instances: u64,
    /// Instances the target already held with the same content (left as they were).
    pub unchanged: u64,
    /// Change events moved (entries of the instances' streams).
    pub events: u64,
    /// Dead letters of the instances' consumer groups moved.
    pub dead_letters: u64,
    /// Tenants' grants moved (fields of their grants hashes).
    pub grants: u64,
    /// Grants not moved: malformed, or not confirmed by the instance's subscribers hash
    /// (they grant nothing; the shared audit of the source reports them).
    pub grants_unconfirmed: u64,
    /// Whether nothing was written (a dry run).
    pub dry_run: bool,
}

/// One step of a layout migration of shared instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SharedLayoutStep {
    /// An instance was moved (`moved`) or found equal in the target.
    Instance {
        /// Its model.
        model: String,
        /// Its id.
        id: String,
        /// Whether it was moved (false: the target already held it).
        moved: bool,
    },
    /// Every instance of a model was moved: resume after it with [`SharedLayoutRun::after`].
    Model {
        /// The model.
        model: String,
    },
    /// A tenant's grants were moved.
    Grants {
        /// The tenant.
        tenant: String,
        /// Grants moved.
        moved: u64,
    },
}

/// Where a layout migration of shared instances is, after each step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SharedLayoutProgress {
    /// The step just done.
    pub step: SharedLayoutStep,
    /// The run's totals so far.
    pub report: SharedLayoutReport,
}

/// The ids of a model's shared instances in a source, a page at a time: its id set (`SSCAN`)
/// where the layout keeps one, else a scan of every master for its meta hashes, each key
/// parsed as the layout writes it.
enum IdPages {
    Set { key: String, cursor: Option<u64> },
    Scan(KeyScan),
}

impl IdPages {
    fn of(layout: Layout, model: &str) -> IdPages {
        match layout.shared_ids_key(model) {
            Some(key) => IdPages::Set {
                key,
                cursor: Some(0),
            },
            None => IdPages::Scan(KeyScan::new(layout.shared_meta_pattern(model), 1000)),
        }
    }

    async fn next(
        &mut self,
        backend: &Backend,
        model: &'static str,
    ) -> Result<Option<Vec<SharedId>>> {
        let raw: Vec<String> = match self {
            IdPages::Set { key, cursor } => {
                let Some(at) = *cursor else { return Ok(None) };
                let mut cmd = redis::cmd("SSCAN");
                cmd.arg(&*key).arg(at).arg("COUNT").arg(pages::PAGE);
                let (next, ids): (u64, Vec<String>) = backend.query(OP, model, &cmd).await?;
                *cursor = (next != 0).then_some(next);
                ids
            }
            IdPages::Scan(scan) => {
                let Some(keys) = scan.next(backend, OP, model).await? else {
                    return Ok(None);
                };
                let layout = backend.layout();
                keys.iter()
                    .filter_map(|k| match layout.parse_shared_key(k) {
                        Some(SharedKey::Instance("meta", m, id)) if m == model => Some(id),
                        _ => None,
                    })
                    .collect()
            }
        };
        Ok(Some(
            raw.into_iter()
                .filter_map(|id| match SharedId::new(&id) {
                    Ok(id) => Some(id),
                    Err(_) => {
                        tracing::warn!(model, "an id that is no shared id skipped");
                        None
                    }
                })
                .collect(),
        ))
    }
}

/// Moves one instance; whether it was moved (`false`: the target held it, equal). The
/// source is read again after its paged parts were staged: a write that landed meanwhile
/// makes the instance start over, so what lands is one state of the source.
async fn move_instance(
    (src, dst): (&Backend, &Backend),
    model: &'static str,
    decode: SharedDecode,
    id: &SharedId,
    dry_run: DryRun,
    report: &mut SharedLayoutReport,
) -> Result<Option<bool>> {
    let s = Keys::of(src.layout(), model, id.as_str());
    let t = Keys::of(dst.layout(), model, id.as_str());
    for _ in 0..RESTARTS {
        let snap = Snapshot::read(src, &s).await?;
        if !snap.exists() {
            // Unshared meanwhile, or an id set entry naming nothing (the audit reports it).
            return Ok(None);
        }
        snap.verify(&s, decode)?;
        let target = Snapshot::read(dst, &t).await?;
        if !target.is_empty() {
            return equal(src, dst, (&s, &t), &snap, id, report).await;
        }
        let writer = (dry_run == DryRun::No).then_some(dst);
        let (moved, pairs) = stage(src, writer, (&s, &t), id, &snap).await?;
        let landed = if dry_run == DryRun::Yes {
            Landed::Done
        } else {
            // A write that landed in the source meanwhile: start over.
            if Snapshot::read(src, &s).await? != snap {
                continue;
            }
            commit(dst, &t, id, &snap, &pairs).await?
        };
        match landed {
            Landed::Done => {
                report.instances += 1;
                report.events += moved.events;
                report.dead_letters += moved.dead_letters;
                return Ok(Some(true));
            }
            Landed::Exists => return equal(src, dst, (&s, &t), &snap, id, report).await,
        }
    }
    Err(Error::Contention {
        model,
        key: s.hashes[1].clone(),
        attempts: RESTARTS,
    })
}

/// The target holds (part of) the instance: equal to the source's, it is left as it is;
/// otherwise [`Error::SharedLayoutConflict`].
async fn equal(
    src: &Backend,
    dst: &Backend,
    keys: (&Keys, &Keys),
    snap: &Snapshot,
    id: &SharedId,
    report: &mut SharedLayoutReport,
) -> Result<Option<bool>> {
    match differs(src, dst, keys, snap).await? {
        None => {
            report.unchanged += 1;
            Ok(Some(false))
        }
        Some(what) => Err(Error::SharedLayoutConflict {
            model: keys.0.model(),
            id: id.to_string(),
            what,
        }),
    }
}

impl Admin {
    /// Copies every shared instance of the shared models of `models` from this handle's
    /// shared keyspace into `target`'s (another `Db`, usually of the other layout: from one
    /// server to a cluster, or back): each instance's value, meta, tags, subscribers and
    /// change feed (entries with their ids, the stream's counters, consumer groups with their
    /// last delivered id, consumers and pending entries, each group's done set and dead
    /// letters), then each tenant's grants of those instances, and the model's id set where
    /// the target's layout keeps one. The source is left as it was.
    ///
    /// Models move in name order, the progress called after each instance, model and tenant's
    /// grants. Each instance lands atomically (its paged parts staged beside it first); one
    /// the target already holds is compared with the source and left as it is when equal, so
    /// a run cut at any point is completed by running it again (or with
    /// [`SharedLayoutRun::after`]) and a second run changes nothing. A target holding an
    /// instance, or a grant, with other content is refused with
    /// [`Error::SharedLayoutConflict`] (fail closed: nothing of it is overwritten). What the
    /// source holds is verified before it moves (meta naming its instance, tags, subscribers,
    /// the value decoded, each change event the instance's own). With `DryRun::Yes` the
    /// source is read and verified, the target read and compared, and nothing written.
    pub async fn migrate_shared_layout(
        &self,
        models: &ModelSet,
        target: &Admin,
        run: &SharedLayoutRun,
        mut progress: impl FnMut(&SharedLayoutProgress),
    ) -> Result<SharedLayoutReport> {
        let src = self.db().admin().backend().await?;
        let dst = target.db().admin().backend().await?;
        let mut report = SharedLayoutReport {
            from: src.layout(),
            to: dst.layout(),
            dry_run: run.dry_run == DryRun::Yes,
            ..Default::default()
        };
        let mut shared = models.shared_models();
        shared.sort_by_key(|(name, _)| *name);
        let names: Vec<&'static str> = shared.iter().map(|(n, _)| *n).collect();
        for (model, decode) in shared {
            if run.after.as_deref().is_some_and(|a| model <= a) {
                continue;
            }
            let mut ids = IdPages::of(src.layout(), model);
            while let Some(page) = ids.next(&src, model).await? {
                for id in page {
                    let moved =
                        move_instance((&src, &dst), model, decode, &id, run.dry_run, &mut report)
                            .await?;
                    if let Some(moved) = moved {
                        let step = SharedLayoutStep::Instance {
                            model: model.to_owned(),
                            id: id.to_string(),
                            moved,
                        };
                        progress(&SharedLayoutProgress {
                            step,
                            report: report.clone(),
                        });
                    }
                }
            }
            let step = SharedLayoutStep::Model {
                model: model.to_owned(),
            };
            progress(&SharedLayoutProgress {
                step,
                report: report.clone(),
            });
        }
        if names.is_empty() {
            return Ok(report);
        }
        let mut holders = GrantHolders::of(&src);
        while let Some(tenants) = holders.next(&src).await? {
            for tenant in tenants {
                let moved = move_grants(&src, &dst, &names, &tenant, run.dry_run).await?;
                report.grants += moved.written;
                report.grants_unconfirmed += moved.unconfirmed;
                let step = SharedLayoutStep::Grants {
                    tenant: tenant.to_string(),
                    moved: moved.written,
                };
                progress(&SharedLayoutProgress {
                    step,
                    report: report.clone(),
                });
            }
        }
        Ok(report)
    }
}

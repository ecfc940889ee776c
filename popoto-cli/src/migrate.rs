//! `popoto migrate`: the application's partition migrations over every backend holding catalog
//! tenants (the application's binary declares them: [`Migration`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use clap::Args;
use popoto::fleet::BackendRun;
use popoto::{Admin, DryRun, Fleet, FleetOptions, FleetReport, MigrationReport};

use crate::dry::Dry;
use crate::reach::tenant_id;
use crate::{Ctx, Failure, Io, EXIT_OK, EXIT_PARTIAL, EXIT_PENDING};

type Run = Arc<
    dyn Fn(Admin, DryRun) -> Pin<Box<dyn Future<Output = popoto::Result<MigrationReport>> + Send>>
        + Send
        + Sync,
>;

/// A named partition migration, run once per backend by `popoto migrate`.
///
/// ```ignore
/// Migration::new("Episode.score by project", |admin, dry_run| async move {
///     admin.migrate_sorted_to_partitioned(Episode::score(), dry_run, |_| {}).await
/// })
/// ```
#[derive(Clone)]
pub struct Migration {
    name: String,
    run: Run,
}

impl std::fmt::Debug for Migration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Migration")
            .field("name", &self.name)
            .finish()
    }
}

impl Migration {
    /// A migration called `name` that `run` performs on one backend (through its admin handle),
    /// writing nothing when given `DryRun::Yes`.
    pub fn new<F, Fut>(name: impl Into<String>, run: F) -> Migration
    where
        F: Fn(Admin, DryRun) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = popoto::Result<MigrationReport>> + Send + 'static,
    {
        Migration {
            name: name.into(),
            run: Arc::new(move |admin, dry_run| Box::pin(run(admin, dry_run))),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Report what would move and print the Redis commands a real run would send; write
    /// nothing.
    #[arg(long)]
    dry_run: bool,
    /// Like --dry-run, and exit 4 when something would move (a CI gate).
    #[arg(long, conflicts_with = "dry_run")]
    check: bool,
    /// Only the backends holding these tenants (a migration covers a whole keyspace).
    #[arg(long)]
    tenant: Vec<String>,
    /// Every catalog tenant (the default).
    #[arg(long, conflicts_with = "tenant")]
    all: bool,
    /// Backends migrated at once.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    /// Journal id: a rerun with the same id skips tenants already migrated.
    #[arg(long)]
    run: Option<String>,
}

pub(crate) async fn migrate(
    ctx: &Ctx<'_>,
    migrations: &[Migration],
    args: MigrateArgs,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    if migrations.is_empty() {
        return Err(Failure::Usage(
            "migrate needs the application's migrations, which this binary does not know: run \
             your application's own popoto binary (popoto_cli::main_with_migrations)"
                .into(),
        ));
    }
    let dry_run = if args.dry_run || args.check {
        DryRun::Yes
    } else {
        DryRun::No
    };
    // Recording backends: a dry run (or check) cannot write, its journal included.
    let dry = Dry::new(dry_run == DryRun::Yes);
    let mut reports: Vec<FleetReport> = Vec::with_capacity(migrations.len());
    let pending = AtomicU64::new(0);
    for m in migrations {
        let mut options = FleetOptions::default().concurrency(args.concurrency);
        if let Some(log) = dry.log() {
            options = options.record(log);
        }
        if let Some(run) = &args.run {
            // One journal per migration: a tenant done in one is not done in the next.
            options = options.run(format!("{run}/{}", m.name));
        }
        if !args.tenant.is_empty() {
            let only = args
                .tenant
                .iter()
                .map(|t| tenant_id(t))
                .collect::<Result<Vec<_>, _>>()?;
            options = options.only(only);
        }
        let fleet = Fleet::new(&ctx.registry, options)?;
        let pending = &pending;
        let spinner = crate::data::spinner(&format!("migration {:?}", m.name));
        let report = fleet
            .for_each_backend(&m.name, |admin| {
                let run = m.run.clone();
                async move {
                    let r = run(admin, dry_run).await?;
                    let (verb, moved) = if dry_run == DryRun::Yes {
                        let would = r.total.saturating_sub(r.errors.len() as u64);
                        pending.fetch_add(would, Ordering::Relaxed);
                        ("would move", would)
                    } else {
                        ("moved", r.migrated)
                    };
                    Ok(BackendRun {
                        detail: format!("{verb} {moved} of {}", r.total),
                        other_problems: r
                            .errors
                            .iter()
                            .map(|e| format!("{}: {}", e.member_key, e.error))
                            .collect(),
                        ..Default::default()
                    })
                }
            })
            .await;
        spinner.finish_and_clear();
        let report = report?;
        io.note(&report.to_string());
        reports.push(report);
    }
    if args.dry_run {
        dry.output(io, &reports, &[])?;
    } else if io.json {
        io.json(&reports)?;
    }
    let pending = pending.load(Ordering::Relaxed);
    if reports.iter().any(|r| !r.is_success()) {
        return Ok(EXIT_PARTIAL);
    }
    if args.check && pending > 0 {
        io.note(&format!("{pending} entries still to migrate"));
        return Ok(EXIT_PENDING);
    }
    Ok(EXIT_OK)
}

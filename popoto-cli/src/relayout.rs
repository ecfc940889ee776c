//! `popoto relayout`: moves every tenant of the shared server (`--url`) into another keyspace
//! in another layout, usually a Redis Cluster (`--to-cluster`), then the shared instances of
//! the application's shared models with their change feeds and the tenants' grants, with a
//! progress bar, a dry run and resume points ([`popoto::Admin::migrate_layout_all`],
//! [`popoto::Admin::migrate_shared_layout`]).

use clap::Args;
use popoto::shared::{SharedLayoutRun, SharedLayoutStep};
use popoto::{BackendConfig, Db, DryRun, LayoutReport, LayoutRun, Sweep};

use crate::reach::tenant_id;
use crate::{Ctx, Failure, Io, EXIT_OK};

#[derive(Debug, Args)]
pub(crate) struct RelayoutArgs {
    /// Seed nodes of the target Redis Cluster (repeat the flag, or separate with commas); the
    /// target takes the cluster layout.
    #[arg(long, value_delimiter = ',', required = true)]
    to_cluster: Vec<String>,
    /// Read, rewrite and count; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Resume after this tenant (tenants move in id order; the progress names the last one).
    #[arg(long)]
    after: Option<String>,
    /// Find each tenant's data by its indexes only (faster; misses keys no index names).
    #[arg(long)]
    indexes_only: bool,
    /// Resume the shared instances after this model (shared models move in name order; the
    /// progress names the last one done). Tenants move again first (a second move of a tenant
    /// changes nothing); pass `--after` too to skip them.
    #[arg(long)]
    shared_after: Option<String>,
}

/// What `--json` prints: each tenant's report, then the shared instances'.
#[derive(serde::Serialize)]
struct Reports {
    tenants: Vec<LayoutReport>,
    shared: popoto::shared::SharedLayoutReport,
}

/// A progress bar on stderr drawn with `template`.
fn progress_bar(template: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(template)
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub(crate) async fn relayout(
    ctx: &Ctx<'_>,
    args: RelayoutArgs,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    ctx.need_models("relayout")?;
    let source = Db::with_registry(ctx.registry.clone());
    let target = Db::with_config(BackendConfig::cluster(args.to_cluster.clone()))
        .map_err(|e| Failure::Usage(format!("--to-cluster: {e}")))?;
    let dry_run = if args.dry_run {
        DryRun::Yes
    } else {
        DryRun::No
    };
    let run = LayoutRun {
        sweep: if args.indexes_only {
            Sweep::Indexes
        } else {
            Sweep::Keyspace
        },
        dry_run,
        after: args.after.as_deref().map(tenant_id).transpose()?,
    };
    let bar = progress_bar("{pos}/{len} tenants {msg}");
    let reports = source
        .admin()
        .migrate_layout_all(ctx.models, &target.admin(), &run, |p| {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("(last: {})", p.report.tenant));
        })
        .await;
    bar.finish_and_clear();
    let reports = reports?;
    let (instances, entries) = reports
        .iter()
        .fold((0, 0), |(i, e), r| (i + r.instances, e + r.entries));
    let verb = if args.dry_run { "would move" } else { "moved" };
    io.note(&format!(
        "{verb} {} tenants: {instances} instances, {entries} index entries{}",
        reports.len(),
        reports
            .last()
            .map_or(String::new(), |r| format!(" (last: {})", r.tenant)),
    ));
    let shared_run = SharedLayoutRun {
        dry_run,
        after: args.shared_after.clone(),
    };
    let bar = progress_bar("{pos} shared instances {msg}");
    let shared = source
        .admin()
        .migrate_shared_layout(ctx.models, &target.admin(), &shared_run, |p| {
            bar.set_position(p.report.instances + p.report.unchanged);
            match &p.step {
                SharedLayoutStep::Instance { model, id, .. } => {
                    bar.set_message(format!("(last: {model} {id})"))
                }
                SharedLayoutStep::Model { model } => bar.set_message(format!("({model} done)")),
                SharedLayoutStep::Grants { tenant, .. } => {
                    bar.set_message(format!("(grants of {tenant})"))
                }
            }
        })
        .await;
    bar.finish_and_clear();
    let shared = shared?;
    if ctx.models.has_shared() {
        io.note(&format!(
            "{verb} shared instances: {} instances ({} already there), {} change events, {} dead \
         letters, {} grants ({} unconfirmed grants left out)",
            shared.instances,
            shared.unchanged,
            shared.events,
            shared.dead_letters,
            shared.grants,
            shared.grants_unconfirmed,
        ));
    }
    if io.json {
        io.json(&Reports {
            tenants: reports,
            shared,
        })?;
    }
    Ok(EXIT_OK)
}

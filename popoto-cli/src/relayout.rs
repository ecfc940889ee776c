//! `popoto relayout`: moves every tenant of the shared server (`--url`) into another keyspace
//! in another layout, usually a Redis Cluster (`--to-cluster`), with a progress bar, a dry
//! run and a resume point ([`popoto::Admin::migrate_layout_all`]).

use clap::Args;
use popoto::{BackendConfig, Db, DryRun, LayoutRun, Sweep};

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
    let run = LayoutRun {
        sweep: if args.indexes_only {
            Sweep::Indexes
        } else {
            Sweep::Keyspace
        },
        dry_run: if args.dry_run {
            DryRun::Yes
        } else {
            DryRun::No
        },
        after: args.after.as_deref().map(tenant_id).transpose()?,
    };
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{pos}/{len} tenants {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
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
    if io.json {
        io.json(&reports)?;
    }
    let (instances, entries) = reports
        .iter()
        .fold((0, 0), |(i, e), r| (i + r.instances, e + r.entries));
    io.note(&format!(
        "{} {} tenants: {instances} instances, {entries} index entries{}",
        if args.dry_run { "would move" } else { "moved" },
        reports.len(),
        reports
            .last()
            .map_or(String::new(), |r| format!(" (last: {})", r.tenant)),
    ));
    Ok(EXIT_OK)
}

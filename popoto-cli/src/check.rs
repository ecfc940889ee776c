//! `popoto check`: the index check of every backend holding catalog tenants (or of the
//! backends of some tenants): of the application's models in its own binary, from popoto's
//! keys alone (orphan and foreign entries) in the generic one.

use clap::Args;
use popoto::Fleet;

use crate::data::{fleet_options, spinner};
use crate::{Ctx, Failure, Io, EXIT_OK, EXIT_PARTIAL};

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Backends checked at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Journal id: a rerun with the same id skips tenants already clean.
    #[arg(long)]
    run: Option<String>,
    /// Check suspended tenants too.
    #[arg(long)]
    include_suspended: bool,
    /// Only the backends of this tenant (repeatable).
    #[arg(long)]
    tenant: Vec<String>,
}

/// Runs the check: findings on stdout (a table, or the whole [`popoto::fleet::IndexRun`] as
/// JSON), the per-tenant summary on stderr; exit 3 when anything was found.
pub(crate) async fn check(ctx: &Ctx<'_>, args: CheckArgs, io: &mut Io<'_>) -> Result<u8, Failure> {
    let options = fleet_options(
        args.concurrency,
        args.run,
        args.include_suspended,
        &args.tenant,
    )?;
    let fleet = Fleet::new(&ctx.registry, options)?;
    let spinner = spinner("checking the indexes of every catalog tenant");
    let run = if ctx.has_models() {
        fleet.check_indexes(ctx.models).await
    } else {
        fleet.check_keys().await
    };
    spinner.finish_and_clear();
    let run = run?;
    if io.json {
        io.json(&run)?;
    } else {
        for b in &run.backends {
            for r in &b.reports {
                for f in &r.findings {
                    io.line(&format!("{}\t{}\t{f}", b.backend, r.model))?;
                }
            }
        }
    }
    io.note(&run.report.to_string());
    Ok(if run.is_success() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

//! Commands on model data: `export`, `import`, `audit` (the application's models needed).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use popoto::{Error, Fleet, FleetOptions};
use serde::Serialize;

use crate::dry::Dry;
use crate::reach::{admin_of, tenant_id};
use crate::{Ctx, Failure, Io, EXIT_OK, EXIT_PARTIAL};

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The tenant id.
    tenant: String,
    /// Write the stream to this file (default: stdout).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// The tenant id.
    tenant: String,
    /// Read the stream from this file (default: stdin).
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Read and check the stream, print the Redis commands it would send; write nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Tenants (or backends) audited at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Journal id: a rerun with the same id skips tenants already clean.
    #[arg(long)]
    run: Option<String>,
    /// Audit suspended tenants too.
    #[arg(long)]
    include_suspended: bool,
    /// Only this tenant (repeatable).
    #[arg(long)]
    tenant: Vec<String>,
}

#[derive(Serialize)]
struct Transfer<'a> {
    operation: &'a str,
    tenant: &'a str,
    records: u64,
}

fn io_error(what: &str, e: std::io::Error) -> Failure {
    Failure::Op(Error::Stream(format!("{what}: {e}")))
}

pub(crate) async fn export(
    ctx: &Ctx<'_>,
    args: ExportArgs,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    ctx.need_models("export")?;
    let id = tenant_id(&args.tenant)?;
    let admin = admin_of(ctx, &id, &Dry::new(false)).await?;
    let records = match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| io_error(&path.display().to_string(), e))?;
            let mut out = BufWriter::new(file);
            let n = admin.export_tenant(&id, ctx.models, &mut out).await?;
            out.flush()
                .map_err(|e| io_error(&path.display().to_string(), e))?;
            n
        }
        None => {
            let mut out = BufWriter::new(&mut *io.out);
            let n = admin.export_tenant(&id, ctx.models, &mut out).await?;
            out.flush().map_err(|e| io_error("stdout", e))?;
            n
        }
    };
    let summary = Transfer {
        operation: "export",
        tenant: id.as_str(),
        records,
    };
    if io.json && args.output.is_some() {
        io.json(&summary)?;
    } else if io.json {
        // stdout carries the stream: the JSON summary goes to stderr.
        let text = serde_json::to_string(&summary)
            .map_err(|e| Failure::Op(Error::Stream(e.to_string())))?;
        io.note(&text);
    } else {
        io.note(&format!("exported {records} records of tenant {id}"));
    }
    Ok(EXIT_OK)
}

pub(crate) async fn import(
    ctx: &Ctx<'_>,
    args: ImportArgs,
    io: &mut Io<'_>,
) -> Result<u8, Failure> {
    ctx.need_models("import")?;
    let id = tenant_id(&args.tenant)?;
    let dry = Dry::new(args.dry_run);
    let admin = admin_of(ctx, &id, &dry).await?;
    let input: Box<dyn Read> = match &args.input {
        Some(path) => Box::new(
            std::fs::File::open(path).map_err(|e| io_error(&path.display().to_string(), e))?,
        ),
        None => Box::new(std::io::stdin()),
    };
    let records = admin
        .import_tenant(&id, ctx.models, BufReader::new(input))
        .await?;
    let summary = Transfer {
        operation: "import",
        tenant: id.as_str(),
        records,
    };
    if io.json || dry.is_on() {
        dry.output(io, &summary, &[])?;
    }
    if !io.json {
        let verb = if dry.is_on() {
            "read (not imported)"
        } else {
            "imported"
        };
        io.note(&format!("{verb} {records} records for tenant {id}"));
    }
    Ok(EXIT_OK)
}

/// Fleet options from the flags audit and check share.
pub(crate) fn fleet_options(
    concurrency: usize,
    run: Option<String>,
    include_suspended: bool,
    tenants: &[String],
) -> Result<FleetOptions, Failure> {
    let mut options = FleetOptions::default()
        .concurrency(concurrency)
        .include_suspended(include_suspended);
    if let Some(run) = run {
        options = options.run(run);
    }
    if !tenants.is_empty() {
        let only = tenants
            .iter()
            .map(|t| tenant_id(t))
            .collect::<Result<Vec<_>, _>>()?;
        options = options.only(only);
    }
    Ok(options)
}

/// A spinner on stderr while `what` runs.
pub(crate) fn spinner(what: &str) -> indicatif::ProgressBar {
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(what.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}

pub(crate) async fn audit(ctx: &Ctx<'_>, args: AuditArgs, io: &mut Io<'_>) -> Result<u8, Failure> {
    ctx.need_models("audit")?;
    let options = fleet_options(
        args.concurrency,
        args.run,
        args.include_suspended,
        &args.tenant,
    )?;
    let fleet = Fleet::new(&ctx.registry, options)?;
    let spinner = spinner("auditing every catalog tenant");
    let report = fleet.audit(ctx.models).await;
    spinner.finish_and_clear();
    let report = report?;
    if io.json {
        io.json(&report)?;
    }
    io.note(&report.to_string());
    Ok(if report.is_success() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

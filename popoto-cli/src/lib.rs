//! The `popoto` command-line tool, as a library: [`main_with`] is the whole program for a given
//! model set, [`run`] the same on explicit arguments and streams (for tests and embedding).
//!
//! A generic binary cannot know an application's models, so there are two ways to run it:
//!
//! * the `popoto` binary of this crate knows no model: it manages the tenant catalog
//!   (`tenants list|show|create|suspend|resume|destroy --keep-data`), `stats` per backend and
//!   `check` from popoto's keys (orphan and foreign index entries), and refuses, with exit
//!   code 2, the commands that read or write model data (`export`, `import`, `audit`,
//!   `migrate`, `relayout`, destroying data);
//! * an application adds `src/bin/popoto.rs` with
//!   `fn main() -> std::process::ExitCode { popoto_cli::main_with(ModelSet::new().with::<A>()) }`
//!   and every command works on its models; [`main_with_migrations`] adds its partition
//!   migrations ([`Migration`]) for `popoto migrate`.
//!
//! Contract (Python popoto's `popoto-transfer`): data on stdout (a table, or JSON with
//! `--json`; the export stream), summaries and progress on stderr; exit codes [`EXIT_OK`],
//! [`EXIT_FAILURE`], [`EXIT_USAGE`], [`EXIT_PARTIAL`], and [`EXIT_PENDING`] for
//! `migrate --check`. Server credentials are never printed.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use popoto::{BackendConfig, Catalog, Error, ModelSet, TenantRegistry};

mod check;
mod data;
mod dry;
mod migrate;
mod reach;
mod relayout;
mod stats;
mod tenants;

/// Everything went as asked.
pub const EXIT_OK: u8 = 0;
/// An operational failure: the server, the catalog or the data refused the command.
pub const EXIT_FAILURE: u8 = 1;
/// A usage error: bad arguments, no server URL, a command this binary cannot run.
pub const EXIT_USAGE: u8 = 2;
/// The command completed, but some tenant or record failed (see the report).
pub const EXIT_PARTIAL: u8 = 3;
/// `migrate --check`: migrations would still move entries (a CI gate).
pub const EXIT_PENDING: u8 = 4;

pub use migrate::Migration;

/// `popoto`: operate a popoto deployment.
#[derive(Debug, Parser)]
#[command(name = "popoto", version, about)]
struct Cli {
    /// Redis URL of the shared server holding the tenant catalog.
    #[arg(long, env = "REDIS_URL", global = true, hide_env_values = true)]
    url: Option<String>,
    /// Machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The tenant catalog.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// Writes a tenant's data as an export stream (needs the application's models).
    Export(data::ExportArgs),
    /// Restores an export stream into a tenant (needs the application's models).
    Import(data::ImportArgs),
    /// Isolation audit of every catalog tenant on every backend (needs the application's models).
    Audit(data::AuditArgs),
    /// Index check of every catalog tenant on every backend, or of some tenants: orphan,
    /// missing and misplaced index entries, keys that disagree with their values (exit 3 on a
    /// finding); without the application's models, orphan and foreign entries only.
    Check(check::CheckArgs),
    /// Keys and memory of every backend holding catalog tenants; with the application's
    /// models, instances per tenant.
    Stats,
    /// Runs the application's partition migrations on every backend holding catalog tenants.
    Migrate(migrate::MigrateArgs),
    /// Moves every tenant of the shared server into a Redis Cluster's layout (needs the
    /// application's models), with progress, a dry run and a resume point.
    Relayout(relayout::RelayoutArgs),
}

/// What a command ends with: its exit code, or an error to report.
pub(crate) enum Failure {
    /// Bad usage (exit 2), with the message.
    Usage(String),
    /// An operational failure (exit 1).
    Op(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Op(e)
    }
}

/// Where a command writes.
pub(crate) struct Io<'a> {
    pub(crate) out: &'a mut dyn Write,
    pub(crate) err: &'a mut dyn Write,
    pub(crate) json: bool,
}

impl Io<'_> {
    /// Writes JSON of `value` (a line) on stdout.
    pub(crate) fn json<T: serde::Serialize>(&mut self, value: &T) -> Result<(), Failure> {
        let text = serde_json::to_string_pretty(value)
            .map_err(|e| Failure::Op(Error::Stream(e.to_string())))?;
        writeln!(self.out, "{text}").map_err(|e| Failure::Op(Error::Stream(e.to_string())))
    }

    /// Writes a line on stdout.
    pub(crate) fn line(&mut self, text: &str) -> Result<(), Failure> {
        writeln!(self.out, "{text}").map_err(|e| Failure::Op(Error::Stream(e.to_string())))
    }

    /// Writes a line on stderr (a summary: a failure to write it is not the command's).
    pub(crate) fn note(&mut self, text: &str) {
        let _ = writeln!(self.err, "{text}");
    }
}

/// The connection a command works on: a registry on the shared server and its catalog.
pub(crate) struct Ctx<'a> {
    pub(crate) registry: TenantRegistry,
    pub(crate) catalog: Catalog,
    pub(crate) models: &'a ModelSet,
}

impl Ctx<'_> {
    /// Whether the application gave models (the generic binary has none).
    pub(crate) fn has_models(&self) -> bool {
        self.models.metas().next().is_some()
    }

    /// Refuses a command that needs the application's models in the generic binary.
    pub(crate) fn need_models(&self, what: &str) -> Result<(), Failure> {
        if self.has_models() {
            return Ok(());
        }
        Err(Failure::Usage(format!(
            "{what} needs the application's models, which this binary does not know: run your \
             application's own popoto binary (popoto_cli::main_with(models), see docs/operations.md)"
        )))
    }
}

/// The program: parses `std::env::args`, runs on a tokio runtime, exits with the command's code.
pub fn main_with(models: ModelSet) -> ExitCode {
    main_with_migrations(models, Vec::new())
}

/// [`main_with`], with the application's partition migrations for `popoto migrate`.
pub fn main_with_migrations(models: ModelSet, migrations: Vec<Migration>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("popoto: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr().lock());
    let code = runtime.block_on(run_with(
        std::env::args_os(),
        &models,
        &migrations,
        &mut out,
        &mut err,
    ));
    let _ = out.flush();
    ExitCode::from(code)
}

/// Runs one command line (`args[0]` is the program name) and returns its exit code.
pub async fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    models: &ModelSet,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    run_with(args, models, &[], out, err).await
}

/// [`run`], with the application's partition migrations for `popoto migrate`.
pub async fn run_with(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    models: &ModelSet,
    migrations: &[Migration],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                let _ = write!(err, "{e}");
                EXIT_USAGE
            } else {
                let _ = write!(out, "{e}");
                EXIT_OK
            };
            return code;
        }
    };
    let mut io = Io {
        out,
        err,
        json: cli.json,
    };
    let outcome = match connect(cli.url.as_deref(), models) {
        Ok(ctx) => match cli.command {
            Command::Tenants(cmd) => tenants::run(&ctx, cmd, &mut io).await,
            Command::Export(args) => data::export(&ctx, args, &mut io).await,
            Command::Import(args) => data::import(&ctx, args, &mut io).await,
            Command::Audit(args) => data::audit(&ctx, args, &mut io).await,
            Command::Check(args) => check::check(&ctx, args, &mut io).await,
            Command::Stats => stats::stats(&ctx, &mut io).await,
            Command::Migrate(args) => migrate::migrate(&ctx, migrations, args, &mut io).await,
            Command::Relayout(args) => relayout::relayout(&ctx, args, &mut io).await,
        },
        Err(f) => Err(f),
    };
    match outcome {
        Ok(code) => code,
        Err(Failure::Usage(msg)) => {
            io.note(&format!("popoto: {msg}"));
            EXIT_USAGE
        }
        Err(Failure::Op(e)) => {
            io.note(&format!("popoto: {e}"));
            EXIT_FAILURE
        }
    }
}

/// A registry on the shared server (nothing dialed yet) and its catalog.
fn connect<'m>(url: Option<&str>, models: &'m ModelSet) -> Result<Ctx<'m>, Failure> {
    let url = url.ok_or_else(|| {
        Failure::Usage("no server: pass --url redis://host:port/db or set REDIS_URL".into())
    })?;
    let registry = TenantRegistry::with_catalog(BackendConfig::new(url), Duration::ZERO)
        .map_err(|e| Failure::Usage(format!("--url: {e}")))?;
    let catalog = registry
        .catalog()
        .ok_or_else(|| Failure::Usage("the registry has no catalog".into()))?;
    Ok(Ctx {
        registry,
        catalog,
        models,
    })
}

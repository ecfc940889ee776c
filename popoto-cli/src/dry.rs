//! `--dry-run`: the commands a real run would send, from the same code, recorded instead.
//!
//! Reads still go to the servers (a command plans its writes from what it reads); the writes
//! are put in a [`CommandLog`] by the operations themselves, and any other write is refused
//! before it is sent (`Backend::recording`), so a dry run never changes Redis.

use popoto::{Backend, Catalog, CommandLog, RecordedCommand};
use serde::Serialize;

use crate::{Failure, Io};

/// Whether a command runs for real or records what it would send.
pub(crate) struct Dry {
    log: Option<CommandLog>,
}

/// The JSON of a dry run: the commands, and what the command would have printed.
#[derive(Serialize)]
struct DryJson<'a, T: Serialize> {
    dry_run: bool,
    commands: &'a [RecordedCommand],
    result: &'a T,
}

impl Dry {
    /// A dry run when `on`.
    pub(crate) fn new(on: bool) -> Dry {
        Dry {
            log: on.then(CommandLog::new),
        }
    }

    /// Whether this is a dry run.
    pub(crate) fn is_on(&self) -> bool {
        self.log.is_some()
    }

    /// The log of a dry run.
    pub(crate) fn log(&self) -> Option<&CommandLog> {
        self.log.as_ref()
    }

    /// `backend`, recording in a dry run.
    pub(crate) fn backend(&self, backend: Backend) -> Backend {
        match &self.log {
            Some(log) => backend.recording(log),
            None => backend,
        }
    }

    /// `catalog`, recording its changes in a dry run.
    pub(crate) fn catalog(&self, catalog: &Catalog) -> Catalog {
        match &self.log {
            Some(_) => Catalog::new(self.backend(catalog.backend().clone())),
            None => catalog.clone(),
        }
    }

    /// Writes what the command did: `result` as JSON, or `text`; in a dry run, the recorded
    /// commands first (one per line as `redis-cli` reads them, after a `# <backend>` line for
    /// each backend; in JSON, `{"dry_run": true, "commands": [...], "result": ...}`), and
    /// `text` goes to stderr.
    pub(crate) fn output<T: Serialize>(
        &self,
        io: &mut Io<'_>,
        result: &T,
        text: &[String],
    ) -> Result<(), Failure> {
        let Some(log) = &self.log else {
            if io.json {
                return io.json(result);
            }
            for line in text {
                io.line(line)?;
            }
            return Ok(());
        };
        let commands = log.commands();
        if io.json {
            io.json(&DryJson {
                dry_run: true,
                commands: &commands,
                result,
            })?;
        } else {
            let mut backend: Option<&str> = None;
            for c in &commands {
                if backend != Some(c.backend.as_str()) {
                    io.line(&format!("# {}", c.backend))?;
                    backend = Some(&c.backend);
                }
                io.line(&c.to_string())?;
            }
            for line in text {
                io.note(&format!("dry run: {line}"));
            }
        }
        io.note(&format!(
            "dry run: {} commands would be sent, nothing was written",
            commands.len()
        ));
        Ok(())
    }
}

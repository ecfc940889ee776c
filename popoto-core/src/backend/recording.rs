//! Dry runs: a recording backend sends reads, lets the operations that support a dry run
//! record the writes a real run sends, and refuses every other write before it is sent.

use super::exec::{round_trip, Script, PLANS_PER_ROUND_TRIP};
use super::Backend;
use crate::error::{Error, Result};
use crate::record::{self, CommandLog};

impl Backend {
    /// The same backend (same pool) for a dry run: reads are sent, the writes of operations
    /// that support a dry run are recorded in `log` instead of sent, and any other write is
    /// refused with [`Error::DryRunWrite`] before it leaves the process.
    pub fn recording(&self, log: &CommandLog) -> Backend {
        Backend {
            recorder: Some(log.clone()),
            ..self.clone()
        }
    }

    /// Whether this backend records writes instead of sending them ([`Backend::recording`]).
    pub fn is_recording(&self) -> bool {
        self.recorder.is_some()
    }

    /// The dry-run log, if this backend records.
    pub(crate) fn recorder(&self) -> Option<&CommandLog> {
        self.recorder.as_ref()
    }

    /// Records `cmd` as a write this dry run would send (`false` when not a dry run).
    pub(crate) fn record(&self, cmd: &redis::Cmd) -> bool {
        match &self.recorder {
            Some(log) => {
                log.push(self.url(), cmd);
                true
            }
            None => false,
        }
    }

    /// Records the commands [`Backend::eval_many`] sends for these plans, in its order.
    pub(crate) fn record_many(
        &self,
        script: &Script,
        calls: &[(Vec<String>, Vec<Vec<u8>>)],
    ) -> bool {
        if self.recorder.is_none() {
            return false;
        }
        for chunk in calls.chunks(PLANS_PER_ROUND_TRIP) {
            for cmd in round_trip(script, chunk) {
                self.record(&cmd);
            }
        }
        true
    }

    /// Refuses, on a recording backend, a command that is not a read.
    pub(super) fn guard(&self, op: &'static str, cmd: &redis::Cmd) -> Result<()> {
        if self.recorder.is_some() && !record::is_read_only(cmd) {
            let name = record::args_of(cmd)
                .first()
                .map(|n| String::from_utf8_lossy(n).to_ascii_uppercase())
                .unwrap_or_default();
            return Err(Error::DryRunWrite { op, command: name });
        }
        Ok(())
    }

    /// Refuses, on a recording backend, a script that writes.
    pub(crate) fn guard_script(&self, op: &'static str, script: &Script) -> Result<()> {
        if self.recorder.is_some() && !script.read_only {
            return Err(Error::DryRunWrite {
                op,
                command: format!("EVALSHA {}", script.get_hash()),
            });
        }
        Ok(())
    }
}

//! Pages whose partitions all come from the member keys: one `lua/migrate_page.lua` call per
//! [`PAGE_CALL`] entries, run on the server while the next page is scanned.

use std::collections::{HashMap, HashSet};

use redis::Value as RValue;

use super::*;

/// Entries per `lua/migrate_page.lua` call: the script unpacks them into one command's
/// arguments, which Lua bounds at a few thousand.
const PAGE_CALL: usize = 1000;

/// The script that moves one scanned page of a legacy index (partitions from member keys).
pub(crate) static MIGRATE_PAGE: std::sync::LazyLock<crate::backend::Script> =
    std::sync::LazyLock::new(|| {
        crate::backend::Script::new(crate::script::lua!("migrate_page.lua"))
    });

/// One `lua/migrate_page.lua` call: its command, the members it sends with the index of their
/// destination, and each destination's partition label.
pub(super) struct PageCall {
    pub(super) cmd: redis::Cmd,
    sent: Vec<(String, usize)>,
    labels: Vec<String>,
}

/// Runs the calls of one page in order; owns what it needs, so it can run while the next
/// page is prepared.
pub(super) async fn send_page(
    backend: Backend,
    meta: &'static ModelMeta,
    calls: Vec<PageCall>,
) -> Result<Vec<(PageCall, RValue)>> {
    let mut out = Vec::with_capacity(calls.len());
    for call in calls {
        let reply = backend
            .eval_cmd("migrate to partitions", meta.name, &MIGRATE_PAGE, &call.cmd)
            .await?;
        out.push((call, reply));
    }
    Ok(out)
}

impl<M: Model, P: FnMut(Progress)> Migration<M, P> {
    /// The `lua/migrate_page.lua` calls of one page whose partitions all come from the member
    /// keys, [`PAGE_CALL`] entries per call; members whose key cannot be parsed are reported.
    pub(super) fn prepare_page(&mut self, mut members: Vec<String>) -> Vec<PageCall> {
        // A scan may return a member twice; the script takes each once.
        let mut seen = HashSet::with_capacity(members.len());
        members.retain(|m| seen.insert(m.clone()));
        let mut calls = Vec::with_capacity(members.len().div_ceil(PAGE_CALL));
        while !members.is_empty() {
            let rest = members.split_off(members.len().min(PAGE_CALL));
            if let Some(call) = self.page_call(members) {
                calls.push(call);
            }
            members = rest;
        }
        calls
    }

    /// One call for at most [`PAGE_CALL`] members, or `None` if none of them can be moved.
    fn page_call(&mut self, members: Vec<String>) -> Option<PageCall> {
        // KEYS: the source, then each destination once; `dests` maps partition segments to
        // their KEYS index, `labels` holds each destination's report label.
        let mut keys = vec![self.source.clone()];
        let mut labels: Vec<String> = Vec::new();
        let mut dests: HashMap<Vec<String>, usize> = HashMap::new();
        let mut args: Vec<Vec<u8>> = Vec::with_capacity(1 + members.len());
        args.push(match self.target {
            Target::Confidence => b"H".to_vec(),
            Target::Sorted => b"Z".to_vec(),
        });
        let mut sent = Vec::with_capacity(members.len());
        for member in members {
            let parts = Key::<M>::parse_in(self.backend.layout(), &member)
                .map_err(|e| e.to_string())
                .and_then(|key| partition_segments(&key, &member, self.field, &[], &[]));
            let dest = match parts {
                Ok(parts) => match dests.get(&parts) {
                    Some(&k) => Ok(k),
                    None => self
                        .dest_key(&parts)
                        .map_err(|e| e.to_string())
                        .map(|dest| {
                            labels.push(keys::partition_label(&self.source, &dest));
                            keys.push(dest);
                            dests.insert(parts, keys.len() - 1);
                            keys.len() - 1
                        }),
                },
                Err(e) => Err(e),
            };
            match dest {
                Ok(k) => {
                    args.push((k + 1).to_string().into_bytes());
                    sent.push((member, k - 1));
                }
                Err(e) => self.fail(member, e),
            }
        }
        // The instance keys follow the destinations (the destination indices in ARGV stay
        // valid): the members the script moves and the keys it checks with EXISTS.
        keys.extend(sent.iter().map(|(member, _)| member.clone()));
        (!sent.is_empty()).then(|| PageCall {
            cmd: crate::backend::evalsha(&MIGRATE_PAGE, &keys, &args),
            sent,
            labels,
        })
    }

    /// Records the statuses the page script answered.
    pub(super) fn finish_page(&mut self, sent: Vec<(PageCall, RValue)>) -> Result<()> {
        let meta = M::META;
        for (call, reply) in sent {
            let bad = || protocol(Self::OP, meta, "one code per entry expected");
            let RValue::Array(reply) = reply else {
                return Err(bad());
            };
            let mut reply = reply.into_iter();
            let codes = match reply.next() {
                Some(RValue::BulkString(b)) => b,
                Some(RValue::SimpleString(s)) => s.into_bytes(),
                _ => return Err(bad()),
            };
            if codes.len() != call.sent.len() {
                return Err(bad());
            }
            // Entries moved or kept, per destination.
            let mut moved = vec![0u64; call.labels.len()];
            for ((member, dest), code) in call.sent.into_iter().zip(codes) {
                match code {
                    b'm' => moved[dest] += 1,
                    b'k' => {
                        moved[dest] += 1;
                        self.report.kept_existing += 1;
                    }
                    // Already gone: moved by a concurrent run, or returned twice by the scan.
                    b'g' => {}
                    b'x' => self.fail(member, INSTANCE_NOT_FOUND.into()),
                    b'w' => {
                        let found = match reply.next() {
                            Some(RValue::BulkString(b)) => String::from_utf8_lossy(&b).into_owned(),
                            Some(RValue::SimpleString(s)) => s,
                            _ => return Err(bad()),
                        };
                        self.fail(
                            member,
                            format!(
                                "the partition key holds a {found}, not what popoto stores there"
                            ),
                        );
                    }
                    other => {
                        return Err(protocol(
                            Self::OP,
                            meta,
                            format!("unknown code {:?}", char::from(other)),
                        ))
                    }
                }
            }
            for (label, n) in call.labels.into_iter().zip(moved) {
                if n > 0 {
                    self.report.migrated += n;
                    *self.report.partitions.entry(label).or_default() += n;
                }
            }
        }
        Ok(())
    }
}

//! Calls grouped by slot: on one server every key is in reach of one call; on a Redis Cluster
//! a pipeline or a script reaches one slot, so calls over keys of several slots go as one call
//! per slot (sent together, answered in any order, put back in the caller's order). Reads
//! only: calls of different slots are not one atomic step.

use redis::FromRedisValue;

use super::Backend;
use crate::error::Result;
use crate::keys::slot_text;

impl Backend {
    /// The positions of `keys` grouped by slot, each group in the order given and the groups
    /// in the order of their first key: one group on one server; on a cluster one per hash tag
    /// (or per untagged key: Redis hashes it whole).
    pub(crate) fn slot_groups<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> Vec<Vec<usize>> {
        let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let text = if self.is_cluster() {
                slot_text(key)
            } else {
                ""
            };
            match groups.iter_mut().find(|(t, _)| *t == text) {
                Some((_, g)) => g.push(i),
                None => groups.push((text, vec![i])),
            }
        }
        groups.into_iter().map(|(_, g)| g).collect()
    }

    /// Runs the read-only commands of `cmds` (each with the key it names) as one pipeline per
    /// slot, concurrently; the replies in the order of `cmds`.
    pub(crate) async fn pipeline_per_slot<T: FromRedisValue + Send>(
        &self,
        op: &'static str,
        model: &'static str,
        cmds: &[(String, redis::Cmd)],
    ) -> Result<Vec<T>> {
        let groups = self.slot_groups(cmds.iter().map(|(k, _)| k.as_str()));
        let calls = groups.iter().map(|g| {
            let mut pipe = redis::pipe();
            for &i in g {
                pipe.add_command(cmds[i].1.clone());
            }
            async move { self.pipeline::<Vec<T>>(op, model, &pipe).await }
        });
        let replies = futures_util::future::try_join_all(calls).await?;
        let mut out: Vec<Option<T>> = (0..cmds.len()).map(|_| None).collect();
        for (g, replies) in groups.iter().zip(replies) {
            for (&i, r) in g.iter().zip(replies) {
                out[i] = Some(r);
            }
        }
        out.into_iter()
            .map(|r| {
                r.ok_or_else(|| crate::error::Error::Protocol {
                    op,
                    model,
                    detail: "a pipeline answered fewer replies than it had commands".into(),
                })
            })
            .collect()
    }
}

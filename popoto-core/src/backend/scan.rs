//! Keyspace scans: `SCAN … MATCH` over every key of a backend, on one server with one cursor,
//! on a Redis Cluster over each master in turn (a keyless `SCAN` sent to a cluster reaches one
//! random node, and would silently miss the keys of every other).
//!
//! A scan is no snapshot, on a cluster no more than on one server: a key written, deleted or
//! moved to another master (resharding) while the scan runs may be missed or seen twice.
//! Callers treat what it finds as candidates and check each.

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{FromRedisValue, Value};

use super::{erased, Backend, Conn, Link};
use crate::error::{Error, Result};

/// A node to scan: the one server, or a cluster master by address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Server,
    Master(String, u16),
}

/// A `SCAN MATCH pattern` of every key of a backend, page by page.
#[derive(Debug)]
pub(crate) struct KeyScan {
    pattern: String,
    count: usize,
    /// Nodes left to scan, the current one last (`None` until listed on the first page).
    nodes: Option<Vec<Node>>,
    cursor: u64,
}

impl KeyScan {
    /// A scan of the keys matching `pattern`, `count` per `SCAN` call.
    pub(crate) fn new(pattern: impl Into<String>, count: usize) -> KeyScan {
        KeyScan {
            pattern: pattern.into(),
            count,
            nodes: None,
            cursor: 0,
        }
    }

    /// The next page of keys (UTF-8 only: no other key is one popoto writes), `None` once
    /// every node was scanned. A page may be empty.
    pub(crate) async fn next(
        &mut self,
        backend: &Backend,
        op: &'static str,
        model: &'static str,
    ) -> Result<Option<Vec<String>>> {
        if self.nodes.is_none() {
            let mut nodes = backend.scan_nodes(op, model).await?;
            nodes.reverse();
            self.nodes = Some(nodes);
        }
        let nodes = self.nodes.as_mut().expect("listed above");
        let Some(node) = nodes.last().cloned() else {
            return Ok(None);
        };
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(self.count);
        let (next, raw): (u64, Vec<Vec<u8>>) = backend.query_on(op, model, &node, cmd).await?;
        if next == 0 {
            nodes.pop();
            self.cursor = 0;
        } else {
            self.cursor = next;
        }
        Ok(Some(
            raw.into_iter()
                .filter_map(|k| String::from_utf8(k).ok())
                .collect(),
        ))
    }

    /// Every key the scan finds, sorted and without repeats.
    pub(crate) async fn collect(
        mut self,
        backend: &Backend,
        op: &'static str,
        model: &'static str,
    ) -> Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(page) = self.next(backend, op, model).await? {
            out.extend(page);
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl Backend {
    /// The nodes a keyspace scan reads: the server, or every master of the cluster (from
    /// `CLUSTER SLOTS`, which every supported Redis answers).
    async fn scan_nodes(&self, op: &'static str, model: &'static str) -> Result<Vec<Node>> {
        if !self.is_cluster() {
            return Ok(vec![Node::Server]);
        }
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let slots: Value = self.query_on(op, model, &Node::Server, cmd).await?;
        let mut masters = masters_of(&slots).ok_or_else(|| Error::Protocol {
            op,
            model,
            detail: "CLUSTER SLOTS returned an unexpected reply".into(),
        })?;
        masters.sort();
        masters.dedup();
        Ok(masters
            .into_iter()
            .map(|(host, port)| Node::Master(host, port))
            .collect())
    }

    /// Runs the read-only `cmd` on `node` (a cluster master by address); a dry run lets it
    /// through like any read.
    async fn query_on<T: FromRedisValue + Send>(
        &self,
        op: &'static str,
        model: &'static str,
        node: &Node,
        cmd: redis::Cmd,
    ) -> Result<T> {
        erased(self.with_conn(op, model, async |c| match (c, node) {
            (Link::Shared(Conn::Cluster(cluster)), Node::Master(host, port)) => {
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                });
                Ok(T::from_redis_value(
                    cluster.route_command(cmd, routing).await?,
                )?)
            }
            (c, _) => cmd.query_async(c).await,
        }))
        .await
    }
}

/// The (host, port) of the master of each slot range of a `CLUSTER SLOTS` reply.
fn masters_of(slots: &Value) -> Option<Vec<(String, u16)>> {
    let Value::Array(ranges) = slots else {
        return None;
    };
    ranges
        .iter()
        .map(|range| {
            let Value::Array(parts) = range else {
                return None;
            };
            let Value::Array(master) = parts.get(2)? else {
                return None;
            };
            let host = String::from_redis_value_ref(master.first()?).ok()?;
            let port = u16::from_redis_value_ref(master.get(1)?).ok()?;
            Some((host, port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn masters_are_read_from_a_cluster_slots_reply() {
        let range = |lo, hi, port| {
            Value::Array(vec![
                Value::Int(lo),
                Value::Int(hi),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(port), bulk("id")]),
                Value::Array(vec![bulk("127.0.0.1"), Value::Int(port + 3), bulk("r")]),
            ])
        };
        let reply = Value::Array(vec![range(0, 5460, 7000), range(5461, 10922, 7001)]);
        assert_eq!(
            masters_of(&reply),
            Some(vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7001)])
        );
        assert_eq!(masters_of(&Value::Int(3)), None);
        assert_eq!(
            masters_of(&Value::Array(vec![Value::Array(vec![Value::Int(0)])])),
            None
        );
    }
}

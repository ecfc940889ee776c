//! A dedicated connection one task keeps across calls (a feed pump's blocking reads), with its
//! server-side client id, so that another connection can cut its wait short (`CLIENT UNBLOCK`).

use std::sync::atomic::Ordering;

use super::conn::{is_connection_error, Conn};
use super::{erased, Backend};
use crate::error::{Error, Result};

/// A dedicated connection held by one task; drop it after a connection-level failure.
pub(crate) struct Held {
    conn: Conn,
    /// The pool's object, returned to the pool when dropped (`None`: dialed for a cluster).
    pooled: Option<deadpool_redis::Connection>,
    /// The server's id of the connection (`None` on a cluster, where it names one node's).
    pub(crate) id: Option<i64>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("id", &self.id).finish()
    }
}

impl Backend {
    /// Takes a dedicated connection for the caller alone (on a cluster, dials one) and asks the
    /// server for its client id.
    pub(crate) async fn hold(&self, op: &'static str) -> Result<Held> {
        let refused = |reason: String| {
            self.inner.consecutive.fetch_add(1, Ordering::Relaxed);
            Error::Pool {
                op,
                model: "-",
                reason,
            }
        };
        let mut held = match &self.inner.dedicated {
            Some(pool) => {
                let obj = erased(pool.get())
                    .await
                    .map_err(|e| refused(e.to_string()))?;
                Held {
                    conn: Conn::Single((*obj).clone()),
                    pooled: Some(obj),
                    id: None,
                }
            }
            None => Held {
                conn: erased(self.inner.lanes.dial())
                    .await
                    .map_err(|e| refused(e.to_string()))?,
                pooled: None,
                id: None,
            },
        };
        if self.inner.dedicated.is_some() {
            held.id = Some(
                self.query_held(&mut held, op, redis::cmd("CLIENT").arg("ID"))
                    .await?,
            );
        }
        Ok(held)
    }

    /// Runs one command on a held connection, counted and labelled as any call.
    pub(crate) async fn query_held<T: redis::FromRedisValue + Send>(
        &self,
        held: &mut Held,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        self.guard(op, cmd)?;
        self.inner.round_trips.fetch_add(1, Ordering::Relaxed);
        let result = erased(cmd.query_async(&mut held.conn)).await;
        if matches!(&result, Err(e) if is_connection_error(e)) {
            self.inner.failures.record();
            // Never back to the pool.
            if let Some(obj) = held.pooled.take() {
                drop(deadpool_redis::Connection::take(obj));
            }
        }
        self.settle(op, "-", result)
    }

    /// Cuts a blocking command of the held connection `id` short, as if it timed out (from a
    /// shared connection); whether one was waiting.
    pub(crate) async fn unblock(&self, op: &'static str, id: i64) -> Result<bool> {
        let n: i64 = self
            .query(op, "-", redis::cmd("CLIENT").arg("UNBLOCK").arg(id))
            .await?;
        Ok(n > 0)
    }
}

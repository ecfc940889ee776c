//! Background jobs that carry their tenant: a Redis Stream with a consumer group, so a job a
//! worker took but never acknowledged (it crashed) is handed to another worker; and
//! [`spawn_in_tenant`] for in-process tasks.
//!
//! The job's entry carries the tenant id; the worker re-establishes the scope from it (a tenant
//! [`Session`], and the ambient tenant of `popoto::tenant::with_tenant`) and refuses jobs whose
//! tenant is unknown, destroyed or suspended, exactly as the web layer refuses requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use popoto_core::{keys, Backend, Db, Error, Session, TenantId};
use redis::Value;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::auth::BoxError;
use crate::cache::{catalog_generation, CacheTtl, TtlCache};
use crate::extract::Tenant;
use crate::resolve::check_tenant;
use crate::tenancy::{StatusHook, TenantStatus};

const OP: &str = "jobs";
const MODEL: &str = "-";

/// Runs `f` on a new task with the request's tenant: the session is captured now and handed
/// to `f`, and the task runs with it as the ambient tenant (tokio does not carry task-locals
/// into spawned tasks).
pub fn spawn_in_tenant<F, Fut>(tenant: &Tenant, f: F) -> tokio::task::JoinHandle<Fut::Output>
where
    F: FnOnce(Session) -> Fut,
    Fut: Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let fut = f(tenant.session().clone());
    tokio::spawn(popoto_core::tenant::with_tenant(tenant.id().clone(), fut))
}

/// A job queue: one Redis Stream (`keys::job_stream_key`) and its consumer group. Cheap to
/// clone; it only enqueues and reads jobs (no other access to Redis).
#[derive(Clone, Debug)]
pub struct JobQueue {
    backend: Backend,
    stream: Arc<str>,
    group: Arc<str>,
}

/// A job as a worker receives it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The stream entry id.
    pub id: String,
    /// The tenant it runs for.
    pub tenant: TenantId,
    /// What to do (the application's name for it).
    pub kind: String,
    /// Whether it was taken over from a worker that did not acknowledge it.
    pub redelivered: bool,
    payload: Vec<u8>,
}

impl Job {
    /// The payload, decoded from JSON.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.payload)
    }
}

impl JobQueue {
    /// Opens queue `name` on `db`'s shared backend, creating the stream and its consumer group
    /// (`workers`) if needed.
    pub async fn open(db: &Db, name: &str) -> Result<JobQueue, Error> {
        let queue = JobQueue {
            backend: db.admin().backend().await?,
            stream: keys::job_stream_key(name).into(),
            group: "workers".into(),
        };
        let created = queue
            .backend
            .query::<Value>(
                OP,
                MODEL,
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&*queue.stream)
                    .arg(&*queue.group)
                    .arg("0")
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Ok(_) => Ok(queue),
            Err(Error::Redis { source, .. }) if source.code() == Some("BUSYGROUP") => Ok(queue),
            Err(e) => Err(e),
        }
    }

    /// Enqueues a job of `kind` for `tenant`; returns its id.
    pub async fn enqueue<T: Serialize>(
        &self,
        tenant: &TenantId,
        kind: &str,
        payload: &T,
    ) -> Result<String, Error> {
        let payload = serde_json::to_vec(payload).map_err(|e| Error::InvalidValue {
            model: "job",
            field: "payload",
            reason: e.to_string(),
        })?;
        self.backend
            .query(
                OP,
                MODEL,
                redis::cmd("XADD")
                    .arg(&*self.stream)
                    .arg("*")
                    .arg("tenant")
                    .arg(tenant.as_str())
                    .arg("kind")
                    .arg(kind)
                    .arg("payload")
                    .arg(payload),
            )
            .await
    }

    /// Enqueues a job for the request's tenant.
    pub async fn enqueue_for<T: Serialize>(
        &self,
        tenant: &Tenant,
        kind: &str,
        payload: &T,
    ) -> Result<String, Error> {
        self.enqueue(tenant.id(), kind, payload).await
    }

    /// Jobs taken by a worker and not acknowledged yet.
    pub async fn pending(&self) -> Result<u64, Error> {
        let reply: Value = self
            .backend
            .query(
                OP,
                MODEL,
                redis::cmd("XPENDING").arg(&*self.stream).arg(&*self.group),
            )
            .await?;
        match reply {
            Value::Array(items) => match items.first() {
                Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                _ => Err(protocol("XPENDING", &items)),
            },
            other => Err(protocol("XPENDING", &other)),
        }
    }
}

fn protocol(cmd: &str, reply: &dyn std::fmt::Debug) -> Error {
    let mut detail = format!("{cmd} replied {reply:?}");
    detail.truncate(200);
    Error::Protocol {
        op: OP,
        model: MODEL,
        detail,
    }
}

/// What one [`Worker::poll`] did (serializes as JSON).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkReport {
    /// Jobs done and acknowledged.
    pub done: Vec<String>,
    /// Jobs refused and acknowledged (never run): id and why (unknown, destroyed or suspended
    /// tenant, malformed entry, too many deliveries).
    pub refused: Vec<(String, String)>,
    /// Jobs whose handler failed: left pending, redelivered after the claim delay.
    pub failed: Vec<(String, String)>,
}

/// Takes jobs from a queue and runs them in their tenant. Several workers (processes) share a
/// queue; each needs its own consumer name.
pub struct Worker {
    queue: JobQueue,
    db: Db,
    consumer: String,
    status: Option<StatusHook>,
    statuses: TtlCache<TenantId, TenantStatus>,
    ttl: CacheTtl,
    claim_after: Duration,
    block: Duration,
    batch: usize,
    max_deliveries: u64,
}

impl Worker {
    /// A worker named `consumer` running jobs of `queue` on tenants of `db` (whose registry, if
    /// any, refuses unknown and destroyed tenants). Defaults: jobs idle 30 s are taken over,
    /// reads block 1 s, 16 jobs a batch, a job delivered 5 times is refused.
    pub fn new(queue: JobQueue, db: Db, consumer: &str) -> Worker {
        Worker {
            queue,
            db,
            consumer: consumer.to_owned(),
            status: None,
            statuses: TtlCache::new(),
            ttl: CacheTtl::default(),
            claim_after: Duration::from_secs(30),
            block: Duration::from_secs(1),
            batch: 16,
            max_deliveries: 5,
        }
    }

    /// The tenant status hook (suspended tenants' jobs are refused), as for the web layer.
    pub fn status<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(TenantId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<TenantStatus, BoxError>> + Send + 'static,
    {
        self.status = Some(Arc::new(move |t| Box::pin(f(t))));
        self
    }

    /// How long a job stays with a worker that does not acknowledge it before another takes it.
    pub fn claim_after(mut self, idle: Duration) -> Self {
        self.claim_after = idle;
        self
    }

    /// How long a poll waits for new jobs (zero: not at all).
    pub fn block(mut self, block: Duration) -> Self {
        self.block = block;
        self
    }

    /// Jobs a poll takes at most, and deliveries after which a job is refused.
    pub fn limits(mut self, batch: usize, max_deliveries: u64) -> Self {
        self.batch = batch.max(1);
        self.max_deliveries = max_deliveries.max(1);
        self
    }

    /// Takes over jobs idle longer than the claim delay, then reads new ones, and runs each
    /// with `handler` in its tenant: acknowledged when it returns `Ok`, left pending when it
    /// fails, refused (acknowledged, not run) when its tenant may not be served.
    pub async fn poll<F, Fut>(&self, handler: F) -> Result<WorkReport, Error>
    where
        F: Fn(Job, Session) -> Fut,
        Fut: Future<Output = Result<(), BoxError>>,
    {
        let mut report = WorkReport::default();
        let mut entries = self.claim_stale().await?;
        if entries.len() < self.batch {
            entries.extend(self.read_new(self.batch - entries.len()).await?);
        }
        for (id, fields, redelivered) in entries {
            let job = match self.admit(&id, fields, redelivered).await? {
                Ok(job) => job,
                Err(why) => {
                    tracing::warn!(job = %id, reason = %why, "job refused");
                    self.ack(&id).await?;
                    report.refused.push((id, why));
                    continue;
                }
            };
            let session = self.db.tenant_id(&job.tenant);
            let tenant = job.tenant.clone();
            let run = popoto_core::tenant::with_tenant(tenant, handler(job, session));
            match run.await {
                Ok(()) => {
                    self.ack(&id).await?;
                    report.done.push(id);
                }
                Err(e) => {
                    tracing::warn!(job = %id, error = %e, "job failed; it stays pending");
                    report.failed.push((id, e.to_string()));
                }
            }
        }
        Ok(report)
    }

    /// A job built from an entry, or why it is refused.
    async fn admit(
        &self,
        id: &str,
        fields: Option<Vec<(String, Vec<u8>)>>,
        redelivered: bool,
    ) -> Result<Result<Job, String>, Error> {
        let Some(fields) = fields else {
            return Ok(Err("the entry was deleted from the stream".into()));
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let tenant = match field("tenant").map(String::from_utf8) {
            Some(Ok(t)) => match TenantId::new(&t) {
                Ok(t) => t,
                Err(e) => return Ok(Err(e.to_string())),
            },
            _ => return Ok(Err("no tenant in the entry".into())),
        };
        let kind = match field("kind").map(String::from_utf8) {
            Some(Ok(k)) => k,
            _ => return Ok(Err("no kind in the entry".into())),
        };
        let Some(payload) = field("payload") else {
            return Ok(Err("no payload in the entry".into()));
        };
        if redelivered && self.deliveries(id).await? > self.max_deliveries {
            return Ok(Err(format!(
                "delivered more than {} times",
                self.max_deliveries
            )));
        }
        let hook = self.status.as_ref();
        let generation = match hook {
            Some(_) => catalog_generation(&self.db).await,
            None => Some(0),
        };
        let checked = check_tenant(
            &self.db,
            hook,
            &self.statuses,
            self.ttl,
            &tenant,
            generation,
        );
        if let Err(e) = checked.await {
            return Ok(Err(e.to_string()));
        }
        Ok(Ok(Job {
            id: id.to_owned(),
            tenant,
            kind,
            redelivered,
            payload,
        }))
    }

    async fn ack(&self, id: &str) -> Result<(), Error> {
        let q = &self.queue;
        q.backend
            .query::<Value>(
                OP,
                MODEL,
                redis::cmd("XACK").arg(&*q.stream).arg(&*q.group).arg(id),
            )
            .await
            .map(|_| ())
    }

    /// How often entry `id` was delivered.
    async fn deliveries(&self, id: &str) -> Result<u64, Error> {
        let q = &self.queue;
        let reply: Value = q
            .backend
            .query(
                OP,
                MODEL,
                redis::cmd("XPENDING")
                    .arg(&*q.stream)
                    .arg(&*q.group)
                    .arg(id)
                    .arg(id)
                    .arg(1),
            )
            .await?;
        match &reply {
            Value::Array(rows) => match rows.first() {
                Some(Value::Array(row)) => match row.get(3) {
                    Some(Value::Int(n)) => Ok(u64::try_from(*n).unwrap_or(0)),
                    _ => Err(protocol("XPENDING", &reply)),
                },
                None => Ok(0),
                _ => Err(protocol("XPENDING", &reply)),
            },
            _ => Err(protocol("XPENDING", &reply)),
        }
    }

    /// Entries idle longer than the claim delay, taken over by this worker.
    async fn claim_stale(&self) -> Result<Vec<Entry>, Error> {
        let q = &self.queue;
        let idle = u64::try_from(self.claim_after.as_millis()).unwrap_or(u64::MAX);
        let reply: Value = q
            .backend
            .query(
                OP,
                MODEL,
                redis::cmd("XAUTOCLAIM")
                    .arg(&*q.stream)
                    .arg(&*q.group)
                    .arg(&self.consumer)
                    .arg(idle)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(self.batch),
            )
            .await?;
        match &reply {
            Value::Array(parts) => match parts.get(1) {
                Some(entries) => parse_entries(entries, true),
                None => Err(protocol("XAUTOCLAIM", &reply)),
            },
            _ => Err(protocol("XAUTOCLAIM", &reply)),
        }
    }

    /// New entries, waiting up to the block time.
    async fn read_new(&self, count: usize) -> Result<Vec<Entry>, Error> {
        let q = &self.queue;
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&*q.group)
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if !self.block.is_zero() {
            cmd.arg("BLOCK")
                .arg(u64::try_from(self.block.as_millis()).unwrap_or(u64::MAX));
        }
        cmd.arg("STREAMS").arg(&*q.stream).arg(">");
        // A blocking read holds its connection: a dedicated one, not a shared one.
        let reply: Value = if self.block.is_zero() {
            q.backend.query(OP, MODEL, &cmd).await?
        } else {
            q.backend.query_blocking(OP, MODEL, &cmd).await?
        };
        match &reply {
            Value::Nil => Ok(Vec::new()),
            Value::Array(streams) => match streams.first() {
                Some(Value::Array(stream)) if stream.len() == 2 => parse_entries(&stream[1], false),
                None => Ok(Vec::new()),
                _ => Err(protocol("XREADGROUP", &reply)),
            },
            _ => Err(protocol("XREADGROUP", &reply)),
        }
    }
}

/// An entry: id, fields (`None`: deleted from the stream) and whether it was taken over.
type Entry = (String, Option<Vec<(String, Vec<u8>)>>, bool);

fn parse_entries(v: &Value, redelivered: bool) -> Result<Vec<Entry>, Error> {
    let Value::Array(items) = v else {
        return Err(protocol("stream read", v));
    };
    items
        .iter()
        .map(|item| {
            let Value::Array(pair) = item else {
                return Err(protocol("stream read", item));
            };
            let id = match pair.first() {
                Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                _ => return Err(protocol("stream read", item)),
            };
            let fields = match pair.get(1) {
                Some(Value::Array(kv)) => Some(
                    kv.chunks(2)
                        .filter_map(|c| match c {
                            [Value::BulkString(k), Value::BulkString(v)] => {
                                Some((String::from_utf8_lossy(k).into_owned(), v.clone()))
                            }
                            _ => None,
                        })
                        .collect(),
                ),
                _ => None,
            };
            Ok((id, fields, redelivered))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawned_tasks_get_the_requests_tenant_session_and_ambient_tenant() {
        // Nothing is dialed: the task only needs the handle.
        let db = Db::with_config(popoto_core::BackendConfig::new("redis://127.0.0.1:1/0"))
            .unwrap_or_else(|e| panic!("{e}"));
        let acme = TenantId::new("acme").unwrap_or_else(|e| panic!("{e}"));
        let tenant = Tenant::new(acme.clone(), db.tenant_id(&acme), None);
        let seen = spawn_in_tenant(&tenant, |session| async move {
            (
                session.scope().tenant().cloned(),
                popoto_core::tenant::current_tenant(),
            )
        })
        .await
        .unwrap_or_else(|e| panic!("task: {e}"));
        assert_eq!(seen, (Some(acme.clone()), Some(acme)));
        // A plain spawn has neither.
        let plain = tokio::spawn(async { popoto_core::tenant::current_tenant() })
            .await
            .unwrap_or_else(|e| panic!("task: {e}"));
        assert_eq!(plain, None);
    }
}

//! Background jobs carry their tenant: enqueued through the API, run by a worker in another
//! process, taken over by a second worker after the first one is killed, and refused when
//! their tenant may not be served.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::service::{run_job, Note};
use common::{jwt, send, start, tid};
use popoto::registry::Placement;
use popoto::{BackendConfig, Db, TenantRegistry};
use popoto_axum::{JobQueue, TenantStatus, Worker};
use reqwest::StatusCode;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout};

/// The environment variable that makes [`worker_process`] run: the Redis URL.
const CHILD_URL: &str = "POPOTO_JOBS_CHILD_URL";

/// The worker process (run by the tests below as a child, with `--ignored`): registers the
/// tenants the service serves, then either runs one job and exits (`work`) or takes a job and
/// hangs without acknowledging it (`hang`), printing what it did.
#[tokio::test]
#[ignore = "a child process of the tests below"]
async fn worker_process() {
    let url = std::env::var(CHILD_URL).unwrap_or_else(|_| panic!("{CHILD_URL} is not set"));
    let mode = std::env::var("POPOTO_JOBS_MODE").unwrap_or_else(|_| panic!("no mode"));
    let registry = TenantRegistry::new(BackendConfig::new(&url)).unwrap_or_else(|e| panic!("{e}"));
    for t in common::ACTIVE {
        registry.register(&tid(t), Placement::Shared).await;
    }
    let db = Db::with_registry(registry);
    let queue = JobQueue::open(&db, "tests")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let worker = Worker::new(queue, db, &format!("child-{}", std::process::id()))
        .claim_after(Duration::ZERO)
        .block(Duration::from_secs(5))
        .limits(1, 5);
    let report = worker
        .poll(|job, session| {
            let hang = mode == "hang";
            async move {
                println!(
                    "took {} for {} redelivered={}",
                    job.id, job.tenant, job.redelivered
                );
                if hang {
                    // Killed by the parent while holding the job.
                    std::future::pending::<()>().await;
                }
                run_job(job, session).await
            }
        })
        .await
        .unwrap_or_else(|e| panic!("poll: {e}"));
    println!(
        "report done={} refused={}",
        report.done.len(),
        report.refused.len()
    );
}

/// Starts [`worker_process`] in `mode` and returns it with its stdout lines.
fn child(url: &str, mode: &str) -> (Child, BufReader<ChildStdout>) {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    let mut child = std::process::Command::new(exe)
        .args(["worker_process", "--exact", "--ignored", "--nocapture"])
        .env(CHILD_URL, url)
        .env("POPOTO_JOBS_MODE", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the worker process: {e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("no stdout"));
    (child, BufReader::new(stdout))
}

/// Reads the child's stdout until a line starting with `prefix`; panics if it ends first.
async fn line_starting(
    out: BufReader<ChildStdout>,
    prefix: &'static str,
) -> (String, BufReader<ChildStdout>) {
    tokio::task::spawn_blocking(move || {
        let mut out = out;
        let mut line = String::new();
        loop {
            line.clear();
            let n = out
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("child stdout: {e}"));
            if n == 0 {
                panic!("the worker process ended without printing {prefix:?}");
            }
            if line.starts_with(prefix) {
                return (line.trim_end().to_owned(), out);
            }
        }
    })
    .await
    .unwrap_or_else(|e| panic!("reader: {e}"))
}

async fn titles_of(db: &Db, tenant: &str) -> Vec<String> {
    let session = db.tenant(tenant).unwrap_or_else(|e| panic!("{e}"));
    let notes = session
        .query::<Note>()
        .fetch()
        .await
        .unwrap_or_else(|e| panic!("notes of {tenant}: {e}"));
    notes.into_iter().map(|n| n.title).collect()
}

#[tokio::test]
async fn a_job_runs_in_another_process_and_is_taken_over_after_its_worker_is_killed() {
    let h = start().await;
    let r = send(
        h.post("/notes/later", json!({"title": "from a job", "rank": 1}))
            .bearer_auth(jwt("alice", &["acme"])),
    )
    .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let id = r.json["job"]
        .as_str()
        .unwrap_or_else(|| panic!("{}", r.raw))
        .to_owned();

    // The first worker takes the job and is killed before acknowledging it.
    let (mut first, out) = child(h.redis.url(), "hang");
    let (took, _out) = line_starting(out, "took ").await;
    assert_eq!(took, format!("took {id} for acme redelivered=false"));
    first.kill().unwrap_or_else(|e| panic!("kill: {e}"));
    first.wait().unwrap_or_else(|e| panic!("wait: {e}"));
    assert_eq!(h.jobs.pending().await.unwrap_or_else(|e| panic!("{e}")), 1);
    assert!(titles_of(&h.db, "acme").await.is_empty(), "not run yet");

    // Another worker process takes it over and runs it in its tenant.
    let (mut second, out) = child(h.redis.url(), "work");
    let (took, out) = line_starting(out, "took ").await;
    assert_eq!(took, format!("took {id} for acme redelivered=true"));
    let (report, _out) = line_starting(out, "report ").await;
    assert_eq!(report, "report done=1 refused=0");
    let status = second.wait().unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "{status}");
    assert_eq!(titles_of(&h.db, "acme").await, ["from a job"]);
    assert!(titles_of(&h.db, "globex").await.is_empty());
    assert_eq!(h.jobs.pending().await.unwrap_or_else(|e| panic!("{e}")), 0);
    let r = send(h.get("/notes").bearer_auth(jwt("alice", &["acme"]))).await;
    assert_eq!(r.json["items"][0]["title"], "from a job", "{}", r.raw);
}

#[tokio::test]
async fn workers_refuse_jobs_of_unknown_destroyed_and_suspended_tenants() {
    let h = start().await;
    let input = json!({"title": "t", "rank": 1});
    let mut ids = Vec::new();
    for t in ["ghost", "umbrella", "initech", "globex"] {
        let id = h
            .jobs
            .enqueue(&tid(t), "create_note", &input)
            .await
            .unwrap_or_else(|e| panic!("enqueue for {t}: {e}"));
        ids.push(id);
    }
    let worker = Worker::new(h.jobs.clone(), h.db.clone(), "w1")
        .block(Duration::ZERO)
        .status(|t| async move {
            Ok(if t.as_str() == "initech" {
                TenantStatus::Suspended
            } else {
                TenantStatus::Active
            })
        });
    let report = worker
        .poll(run_job)
        .await
        .unwrap_or_else(|e| panic!("poll: {e}"));
    assert_eq!(report.done, [ids[3].clone()], "{report:?}");
    let refused: Vec<&str> = report.refused.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(refused, [&ids[0], &ids[1], &ids[2]], "{report:?}");
    assert!(
        report.refused[0].1.contains("tenant_not_found"),
        "{report:?}"
    );
    assert!(
        report.refused[1].1.contains("tenant_destroyed"),
        "{report:?}"
    );
    assert!(
        report.refused[2].1.contains("tenant_suspended"),
        "{report:?}"
    );
    // The report is data.
    let json = serde_json::to_string(&report).unwrap_or_else(|e| panic!("{e}"));
    let back: popoto_axum::WorkReport =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, report);
    for t in ["ghost", "umbrella", "initech"] {
        let admin = h.db.admin();
        let all = admin
            .query::<Note>()
            .fetch()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(all.iter().all(|n| n.org != t), "{t} got a note: {all:?}");
    }
    assert_eq!(titles_of(&h.db, "globex").await, ["t"]);
    assert_eq!(
        h.jobs.pending().await.unwrap_or_else(|e| panic!("{e}")),
        0,
        "refused jobs are acknowledged"
    );
}

#[tokio::test]
async fn a_failing_job_stays_pending_and_is_refused_after_too_many_deliveries() {
    let h = start().await;
    let id = h
        .jobs
        .enqueue(&tid("acme"), "no_such_kind", &json!({}))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let worker = Worker::new(h.jobs.clone(), h.db.clone(), "w1")
        .block(Duration::ZERO)
        .claim_after(Duration::ZERO)
        .limits(16, 2);
    for delivery in 1..=2 {
        let report = worker.poll(run_job).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(report.failed.len(), 1, "delivery {delivery}: {report:?}");
        assert_eq!(h.jobs.pending().await.unwrap_or_else(|e| panic!("{e}")), 1);
    }
    let report = worker.poll(run_job).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.refused.len(), 1, "{report:?}");
    assert_eq!(report.refused[0].0, id);
    assert_eq!(h.jobs.pending().await.unwrap_or_else(|e| panic!("{e}")), 0);
}

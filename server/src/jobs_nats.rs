//! Jobs on NATS JetStream workers (`dexlab serve --nats`, `dexlab worker --jobs`).
//!
//! The store stays the record of every job (its state, progress, cancel flag, result); the
//! queue only carries the work. A server with a queue does not run jobs: it publishes each
//! queued job once per attempt as a `job` task, after uploading its inputs (the dataset or
//! feature folder, the model) to the object store. A worker takes the task, claims the job in
//! the store (the same shared PostgreSQL store: a task of another store is refused), fetches the
//! inputs into its cache, and runs the job exactly as a server's runner would, with heartbeats
//! in the store and progress from the child. An evolve job's fitness goes to the queue's
//! workers too.
//!
//! Losing nothing: a worker that dies holding a job stops beating; the server requeues the
//! job as stale (the next attempt is published anew) and the queue redelivers the dead
//! worker's task, which finds the job taken or finished and is dropped. A job is claimed by one
//! runner at a time whatever the number of copies of its task.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use dexlab_queue::{Queue, Task};
use dexlab_store::{JobState, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::jobs::{Jobs, MAX_ATTEMPTS};

/// The task kind of a dashboard job.
pub const JOB: &str = "job";

/// A job as its task carries it: which store holds it, and its inputs' bundles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTask {
    /// The store's URL, password scrubbed.
    pub store: String,
    pub job: i64,
    /// The attempt this task was published for.
    pub attempt: i64,
    /// Each path of the spec's `resolved` inputs, as a bundle hash.
    pub bundles: BTreeMap<String, String>,
}

fn store_tag(store: &Store) -> String {
    hex::encode(&Sha256::digest(store.url().as_bytes())[..8])
}

/// Publishes queued jobs as tasks; requeues jobs whose worker stopped beating.
pub(crate) async fn dispatch_loop(store: Store, jobs: Arc<Jobs>, queue: Queue) {
    let mut published: HashSet<(i64, i64)> = HashSet::new();
    loop {
        crate::jobs::requeue_stale(&store, &jobs).await;
        match store.list_jobs(Some(JobState::Queued), 100, None).await {
            Ok(mut queued) => {
                queued.reverse();
                for job in queued {
                    // `attempts` counts claims: the next one is attempts + 1.
                    let attempt = job.attempts + 1;
                    if published.contains(&(job.id, attempt)) {
                        continue;
                    }
                    match publish(&store, &queue, &job).await {
                        Ok(()) => {
                            tracing::info!(job = job.id, attempt, "job published to the queue");
                            published.insert((job.id, attempt));
                        }
                        Err(e) => tracing::warn!(job = job.id, "publishing the job: {e}"),
                    }
                }
            }
            Err(e) => tracing::warn!("jobs: listing queued jobs: {e}"),
        }
        jobs.wait().await;
    }
}

async fn publish(store: &Store, queue: &Queue, job: &dexlab_store::JobRow) -> Result<(), String> {
    let mut bundles = BTreeMap::new();
    if let Some(resolved) = job.spec["resolved"].as_object() {
        for (k, v) in resolved {
            if let Some(p) = v.as_str() {
                let hash = queue
                    .push_dir(std::path::Path::new(p))
                    .await
                    .map_err(|e| format!("uploading {p}: {e}"))?;
                bundles.insert(k.clone(), hash);
            }
        }
    }
    let attempt = job.attempts + 1;
    let task = JobTask {
        store: store.url().to_owned(),
        job: job.id,
        attempt,
        bundles,
    };
    let key = format!("{}.{}-{attempt}", store_tag(store), job.id);
    let payload = serde_json::to_vec(&task).map_err(|e| e.to_string())?;
    queue
        .submit(JOB, &key, payload.into())
        .await
        .map_err(|e| e.to_string())
}

/// What a worker running jobs needs.
pub struct JobWorker {
    pub queue: Queue,
    pub store: Store,
    /// Runs claimed jobs (its loop is not started: see [`Jobs::runner_only`]).
    pub jobs: Arc<Jobs>,
    /// Where input bundles are kept.
    pub cache: PathBuf,
    pub ack_wait: Duration,
}

/// Takes `job` tasks, `jobs.config.slots` at a time, until the connection is gone.
pub async fn work_jobs(w: Arc<JobWorker>) -> Result<(), String> {
    let slots = w.jobs.config.slots.max(1);
    let tasks = w
        .queue
        .tasks(JOB, w.ack_wait, slots)
        .await
        .map_err(|e| e.to_string())?;
    let ack_wait = tasks.ack_wait;
    tasks
        .run(slots, move |task, slot| {
            let w = w.clone();
            async move {
                if let Err(e) = take(&w, &task, ack_wait).await {
                    tracing::warn!(key = task.key, "job task: {e}");
                }
                drop(slot);
            }
        })
        .await;
    Ok(())
}

async fn take(w: &JobWorker, task: &Task, ack_wait: Duration) -> Result<(), String> {
    let me = w.jobs.runner.as_str();
    let t: JobTask = match serde_json::from_slice(&task.payload) {
        Ok(t) => t,
        Err(e) => {
            return w
                .queue
                .reject(task, &format!("unreadable job task: {e}"), me)
                .await
                .map_err(|e| e.to_string());
        }
    };
    if t.store != w.store.url() {
        // Another worker pool's job (or a misconfigured worker): left for a worker of its store.
        tracing::warn!(
            job = t.job,
            "job of store {}; this worker's store (DATABASE_URL) is {}: left to another worker",
            t.store,
            w.store.url()
        );
        return task
            .retry_later(Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string());
    }
    let now = crate::now();
    let Some(mut row) = w
        .store
        .claim_job_id(t.job, me, now)
        .await
        .map_err(|e| e.to_string())?
    else {
        // Already claimed: running elsewhere (wait and see), or over, or gone.
        let state = w.store.job(t.job).await.map_err(|e| e.to_string())?;
        return match state {
            Some(j) if j.state == JobState::Running && j.attempts < MAX_ATTEMPTS + 1 => task
                .retry_later(Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string()),
            _ => w.queue.finish_cached(task).await.map_err(|e| e.to_string()),
        };
    };
    tracing::info!(
        job = row.id,
        attempt = row.attempts,
        "job taken from the queue"
    );
    // The inputs, from the object store into this worker's cache.
    for (k, hash) in &t.bundles {
        match w.queue.fetch_dir(hash, &w.cache).await {
            Ok(dir) => row.spec["resolved"][k] = dir.display().to_string().into(),
            Err(e) => {
                let end = crate::jobs::failed_end(format!("fetching its {k}: {e}"));
                let _ = w.store.finish_job(row.id, me, &end).await;
                return w
                    .queue
                    .finish(task, Err(&e.to_string()), me)
                    .await
                    .map_err(|e| e.to_string());
            }
        }
    }
    // Alive for the queue while the job runs (the store has its own heartbeat).
    let id = row.id;
    let ended = task
        .keep_alive(
            ack_wait,
            crate::jobs::run_claimed(w.store.clone(), w.jobs.clone(), row),
        )
        .await;
    let summary = match ended {
        Some(r) => serde_json::json!({ "job": id, "state": r.state.as_str() }),
        None => serde_json::json!({ "job": id, "state": "lost" }),
    };
    w.queue
        .finish(task, Ok(summary.to_string().as_bytes()), me)
        .await
        .map_err(|e| e.to_string())
}

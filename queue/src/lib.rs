//! dexlab's work queue on NATS JetStream, for running research work on many machines.
//!
//! Everything lives in JetStream, so a killed worker or coordinator loses nothing:
//! - **tasks**: the work-queue stream `DEXLAB_TASKS`, subjects `dexlab.tasks.<version>.<kind>`.
//!   Each task carries a key (`<scope>.<item>`, hex digests of everything its result depends
//!   on) as its `Nats-Msg-Id`, so the same task published twice within the stream's duplicate
//!   window is stored once. Workers pull with explicit acks; a task not acked within the
//!   consumer's ack wait (its worker died) is delivered again to another worker. Each dexlab
//!   version has its own subjects and consumer: a worker only ever takes tasks of the version
//!   it is, because another build may not compute the same result bit for bit.
//! - **results**: the key-value bucket `dexlab-results`, `r.<key>` holding the worker's id and
//!   the result, `e.<key>` a failure's message. A result is kept for a week: a task whose result
//!   is there is not run again, by the submitter ([`Queue::run_batch`]) or by a worker that gets
//!   it a second time.
//! - **bundles**: folders (datasets, models) in the object store `dexlab-bundles`, addressed by
//!   a hash of their files' names and SHA-256s; every file is stored once whatever the number
//!   of bundles holding it, and checked against its hash when a worker fetches it.
//! - **workers**: the bucket `dexlab-workers`, one entry per live worker (id, version, host,
//!   threads, tasks done), refreshed every few seconds and gone a minute after its worker.
//!
//! No dexlab types: payloads are bytes, and what they mean is the caller's (`dexlab-lab`).

mod bundle;
mod error;
mod tasks;
#[cfg(feature = "test-utils")]
pub mod test_utils;

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

pub use bundle::{BundleFile, BundleManifest};
pub use error::{QueueError, Result};
pub use tasks::{Task, TaskStream, WorkerInfo};

/// The stream that holds every task.
pub const TASKS_STREAM: &str = "DEXLAB_TASKS";
/// The bucket of results and failures.
pub const RESULTS_BUCKET: &str = "dexlab-results";
/// The bucket of live workers.
pub const WORKERS_BUCKET: &str = "dexlab-workers";
/// The object store of datasets and models.
pub const BUNDLES_BUCKET: &str = "dexlab-bundles";

/// How long the stream remembers a task's id to drop a second copy.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// How long a result stays reusable.
const RESULTS_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// A worker's entry outlives its last heartbeat by this much.
const WORKERS_MAX_AGE: Duration = Duration::from_secs(60);

/// The dexlab version this build is: the package version, and the commit when the build was
/// given one (`DEXLAB_BUILD_COMMIT` at compile time). Workers take only their own version's
/// tasks.
pub fn build_version() -> String {
    match option_env!("DEXLAB_BUILD_COMMIT") {
        Some(c) if !c.is_empty() => format!("{}+{c}", env!("CARGO_PKG_VERSION")),
        _ => env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// `version` as one subject token (NATS tokens cannot hold `.`, `*`, `>` or spaces).
pub fn version_token(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `url` without its password or token, for messages and the store.
pub fn scrub_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***@{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// A connection to the queue, with its stream and buckets (created when missing).
#[derive(Clone)]
pub struct Queue {
    js: jetstream::Context,
    results: kv::Store,
    workers: kv::Store,
    bundles: object_store::ObjectStore,
    url: String,
    version: String,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("url", &self.url)
            .field("version", &self.version)
            .finish()
    }
}

impl Queue {
    /// Connects to the NATS server at `url` and makes sure the stream and buckets exist. Gives
    /// up after 10 s with an error that names the server.
    pub async fn connect(url: &str) -> Result<Queue> {
        Self::connect_as(url, &build_version()).await
    }

    /// [`Queue::connect`], acting as dexlab `version`: what a worker of another build would
    /// be (`dexlab worker` takes it from `DEXLAB_WORKER_VERSION` for tests of a mixed fleet).
    pub async fn connect_as(url: &str, version: &str) -> Result<Queue> {
        let shown = scrub_url(url);
        let setup = |what: &str, e: &dyn std::fmt::Display| QueueError::Setup {
            url: shown.clone(),
            what: what.to_owned(),
            message: e.to_string(),
        };
        let client = tokio::time::timeout(
            Duration::from_secs(10),
            async_nats::ConnectOptions::new()
                .name(format!("dexlab {version}"))
                .connection_timeout(Duration::from_secs(5))
                .connect(url),
        )
        .await
        .map_err(|_| QueueError::Connect {
            url: shown.clone(),
            message: "no answer within 10 s".into(),
        })?
        .map_err(|e| QueueError::Connect {
            url: shown.clone(),
            message: e.to_string(),
        })?;
        let js = jetstream::new(client);
        let tasks = stream::Config {
            name: TASKS_STREAM.into(),
            description: Some("dexlab tasks, one subject per dexlab version and kind".into()),
            subjects: vec!["dexlab.tasks.>".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        };
        js.get_or_create_stream(tasks).await.map_err(|e| {
            setup(
                &format!("the stream {TASKS_STREAM} (is JetStream enabled? nats-server -js)"),
                &e,
            )
        })?;
        let results = bucket(&js, RESULTS_BUCKET, RESULTS_MAX_AGE)
            .await
            .map_err(|e| setup(&format!("the bucket {RESULTS_BUCKET}"), &e))?;
        let workers = bucket(&js, WORKERS_BUCKET, WORKERS_MAX_AGE)
            .await
            .map_err(|e| setup(&format!("the bucket {WORKERS_BUCKET}"), &e))?;
        let bundles = match js.get_object_store(BUNDLES_BUCKET).await {
            Ok(b) => b,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: BUNDLES_BUCKET.into(),
                    description: Some("dexlab datasets and models by content hash".into()),
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| setup(&format!("the object store {BUNDLES_BUCKET}"), &e))?,
        };
        Ok(Queue {
            js,
            results,
            workers,
            bundles,
            url: shown,
            version: version.to_owned(),
        })
    }

    /// The server's URL, password scrubbed.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The dexlab version this connection submits and takes tasks as.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn subject(&self, kind: &str) -> String {
        format!("dexlab.tasks.{}.{kind}", version_token(&self.version))
    }
}

async fn bucket(
    js: &jetstream::Context,
    name: &str,
    max_age: Duration,
) -> std::result::Result<kv::Store, String> {
    if let Ok(b) = js.get_key_value(name).await {
        return Ok(b);
    }
    // The bucket's stream, made here as the client's `create_key_value` would make it: that
    // one first asks for the account's info, whose answer from a 2.9 server (Debian's) the
    // client cannot read.
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        max_bytes: -1,
        max_message_size: -1,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.get_key_value(name).await.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_become_one_subject_token() {
        assert_eq!(version_token("0.1.0+abc123"), "0_1_0_abc123");
        assert_eq!(version_token("1.2.3-rc.1"), "1_2_3-rc_1");
    }

    #[test]
    fn urls_lose_their_secrets() {
        assert_eq!(
            scrub_url("nats://user:hunter2@host:4222"),
            "nats://***@host:4222"
        );
        assert_eq!(scrub_url("nats://host:4222"), "nats://host:4222");
    }
}

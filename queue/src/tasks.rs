//! Tasks: submitted in batches whose results come back in order ([`Queue::run_batch`]), taken
//! by workers ([`Queue::tasks`]) and finished with a result or a failure ([`Queue::finish`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use crate::{Queue, QueueError, Result, TASKS_STREAM, version_token};

const KEY_HEADER: &str = "Dexlab-Key";
const VERSION_HEADER: &str = "Dexlab-Version";
/// Publish acknowledgements a batch waits for at once.
const MAX_UNACKED: usize = 1000;

/// A live worker, as it announces itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    pub id: String,
    pub version: String,
    pub host: String,
    pub pid: u32,
    pub threads: usize,
    /// Tasks finished since it started.
    pub done: u64,
    /// Seconds since the Unix epoch.
    pub seen_at: u64,
}

/// A task as its worker holds it. Acknowledged by [`Queue::finish`]; until then it goes back to
/// the queue if the worker stops answering for the consumer's ack wait.
pub struct Task {
    /// `<scope>.<item>`.
    pub key: String,
    /// Its kind (the subject's last token).
    pub kind: String,
    /// The dexlab version that submitted it.
    pub version: String,
    pub payload: Bytes,
    /// 1 the first time, more when a worker died holding it.
    pub delivered: i64,
    msg: jetstream::Message,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("key", &self.key)
            .field("version", &self.version)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl Task {
    /// Tells the server the task is still being worked on (resets its ack wait).
    pub async fn in_progress(&self) -> Result<()> {
        self.msg
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| QueueError::nats(format!("extending task {}", self.key), e))
    }
}

impl Task {
    /// Awaits `work`, telling the server every third of `ack_wait` that the task is still
    /// being worked on, so that it is not handed to another worker meanwhile.
    pub async fn keep_alive<T>(
        &self,
        ack_wait: Duration,
        work: impl std::future::Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let mut tick = tokio::time::interval((ack_wait / 3).max(Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tokio::select! {
                r = &mut work => return r,
                _ = tick.tick() => { let _ = self.in_progress().await; }
            }
        }
    }

    /// Hands the task back to be delivered again after `delay` (to this or another worker).
    pub async fn retry_later(&self, delay: Duration) -> Result<()> {
        self.msg
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(|e| QueueError::nats(format!("handing back task {}", self.key), e))
    }
}

/// The tasks of one kind a worker takes, as they come.
pub struct TaskStream {
    inner: consumer::pull::Stream,
    /// How long a task may go without an ack or a progress signal before it is redelivered.
    pub ack_wait: Duration,
}

impl TaskStream {
    /// Runs `handle` on every task as it comes, at most `slots` at once, until the connection
    /// is gone for good. `handle` gets the task and its slot, which it gives back (drops) when
    /// its share of the work is done. An error taking a task is logged, and taking goes on.
    pub async fn run<F, Fut>(mut self, slots: usize, handle: F)
    where
        F: Fn(Task, tokio::sync::OwnedSemaphorePermit) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let free = std::sync::Arc::new(tokio::sync::Semaphore::new(slots.max(1)));
        loop {
            let permit = free.clone().acquire_owned().await.expect("never closed");
            match self.next().await {
                Some(Ok(t)) => {
                    tokio::spawn(handle(t, permit));
                }
                Some(Err(e)) => {
                    tracing::warn!("{e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                None => return,
            }
        }
    }

    /// The next task (waits for one). `None` when the connection is gone for good.
    pub async fn next(&mut self) -> Option<Result<Task>> {
        let msg = match self.inner.next().await? {
            Ok(m) => m,
            Err(e) => return Some(Err(QueueError::nats("taking a task", e))),
        };
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let delivered = msg.info().map(|i| i.delivered).unwrap_or(1);
        let kind = msg
            .subject
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        Some(Ok(Task {
            kind,
            key: header(KEY_HEADER).unwrap_or_default(),
            version: header(VERSION_HEADER).unwrap_or_default(),
            payload: msg.payload.clone(),
            delivered,
            msg,
        }))
    }
}

fn valid_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A key `<scope>.<item>` checked: two tokens of letters, digits, `-` and `_`.
fn check_key(key: &str) -> Result<()> {
    match key.split_once('.') {
        Some((a, b)) if valid_token(a) && valid_token(b) => Ok(()),
        _ => Err(QueueError::nats(
            format!("task key `{key}`"),
            "not <scope>.<item> (letters, digits, - and _)",
        )),
    }
}

/// A stored result: the worker's id, a newline, the payload.
fn frame(worker: &str, payload: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(worker.len() + 1 + payload.len());
    v.extend_from_slice(worker.as_bytes());
    v.push(b'\n');
    v.extend_from_slice(payload);
    v.into()
}

fn unframe(value: &Bytes) -> (String, Bytes) {
    match value.iter().position(|&b| b == b'\n') {
        Some(i) => (
            String::from_utf8_lossy(&value[..i]).into_owned(),
            value.slice(i + 1..),
        ),
        None => (String::new(), value.clone()),
    }
}

impl Queue {
    fn consumer_name(&self, kind: &str) -> String {
        format!("w-{}-{kind}", version_token(&self.version))
    }

    /// Publishes one task of `kind` (waits for the stream's acknowledgement). A task with the
    /// key of one published within the duplicate window is dropped by the server.
    pub async fn submit(&self, kind: &str, key: &str, payload: Bytes) -> Result<()> {
        check_key(key)?;
        self.publish(kind, key, payload)
            .await?
            .await
            .map(|_| ())
            .map_err(|e| QueueError::nats(format!("publishing task {key}"), e))
    }

    async fn publish(
        &self,
        kind: &str,
        key: &str,
        payload: Bytes,
    ) -> Result<jetstream::context::PublishAckFuture> {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", key);
        headers.insert(KEY_HEADER, key);
        headers.insert(VERSION_HEADER, self.version.as_str());
        self.js
            .publish_with_headers(self.subject(kind), headers, payload)
            .await
            .map_err(|e| QueueError::nats(format!("publishing task {key}"), e))
    }

    /// The stored result of task `key`: the worker that computed it and the payload.
    pub async fn result(&self, key: &str) -> Result<Option<(String, Bytes)>> {
        let v = self
            .results
            .get(format!("r.{key}"))
            .await
            .map_err(|e| QueueError::nats(format!("reading the result of {key}"), e))?;
        Ok(v.map(|v| unframe(&v)))
    }

    /// Runs `items` (each an item key and a payload) as tasks of `kind` under `scope`, and
    /// returns each one's worker and result in the order given. Results already stored are
    /// used as they are; the rest are published and waited for. Fails on the first task a
    /// worker reports failed, or when no result has come for `stall` (no worker of this
    /// version running, or all of them stuck): the error says how many are missing and which
    /// workers are alive.
    pub async fn run_batch(
        &self,
        kind: &str,
        scope: &str,
        items: Vec<(String, Bytes)>,
        stall: Duration,
    ) -> Result<Vec<(String, Bytes)>> {
        let total = items.len();
        let mut index: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, (item, _)) in items.iter().enumerate() {
            check_key(&format!("{scope}.{item}"))?;
            index.entry(item.clone()).or_default().push(i);
        }
        let mut out: Vec<Option<(String, Bytes)>> = vec![None; total];
        // Watch first, then look up: a result stored in between is seen by one or the other.
        let mut watch = self
            .results
            .watch(format!("*.{scope}.*"))
            .await
            .map_err(|e| QueueError::nats("watching results", e))?;
        let stored: Vec<(String, Option<(String, Bytes)>)> =
            futures::stream::iter(index.keys().cloned())
                .map(|item| async move {
                    let r = self.result(&format!("{scope}.{item}")).await?;
                    Ok::<_, QueueError>((item, r))
                })
                .buffer_unordered(64)
                .try_collect()
                .await?;
        let mut pending: HashMap<String, Vec<usize>> = HashMap::new();
        for (item, r) in stored {
            let at = index.remove(&item).expect("indexed");
            match r {
                Some(r) => {
                    for i in at {
                        out[i] = Some(r.clone());
                    }
                }
                None => {
                    pending.insert(item, at);
                }
            }
        }
        // Publish the missing ones in the order given, pipelined, with at most
        // `MAX_UNACKED` acknowledgements outstanding: the client caps those in flight (5,000
        // by default), and waiting for all of them only at the end would wait for ever.
        let mut acks = std::collections::VecDeque::with_capacity(MAX_UNACKED);
        let mut sent = std::collections::HashSet::new();
        for (item, payload) in &items {
            if pending.contains_key(item) && sent.insert(item) {
                if acks.len() == MAX_UNACKED {
                    let a: jetstream::context::PublishAckFuture = acks.pop_front().expect("full");
                    a.await
                        .map_err(|e| QueueError::nats("publishing a task", e))?;
                }
                acks.push_back(
                    self.publish(kind, &format!("{scope}.{item}"), payload.clone())
                        .await?,
                );
            }
        }
        for a in acks {
            a.await
                .map_err(|e| QueueError::nats("publishing a task", e))?;
        }
        let mut last = Instant::now();
        while !pending.is_empty() {
            let left = stall.saturating_sub(last.elapsed());
            let entry = match tokio::time::timeout(left, watch.next()).await {
                Ok(Some(Ok(e))) => e,
                Ok(Some(Err(e))) => return Err(QueueError::nats("watching results", e)),
                Ok(None) => return Err(QueueError::nats("watching results", "the watch ended")),
                Err(_) => {
                    return Err(QueueError::Stalled {
                        kind: kind.into(),
                        version: self.version.clone(),
                        outstanding: pending.values().map(Vec::len).sum(),
                        total,
                        waited_secs: stall.as_secs(),
                        workers: self.describe_workers().await,
                    });
                }
            };
            if entry.operation != async_nats::jetstream::kv::Operation::Put {
                continue;
            }
            let Some((tag, rest)) = entry.key.split_once('.') else {
                continue;
            };
            let Some(item) = rest.strip_prefix(scope).and_then(|r| r.strip_prefix('.')) else {
                continue;
            };
            match tag {
                "r" => {
                    if let Some(at) = pending.remove(item) {
                        let r = unframe(&entry.value);
                        for i in at {
                            out[i] = Some(r.clone());
                        }
                        last = Instant::now();
                    }
                }
                "e" if pending.contains_key(item) => {
                    let (worker, message) = unframe(&entry.value);
                    // Not kept: a rerun after the cause is fixed must try again.
                    let _ = self.results.purge(&entry.key).await;
                    return Err(QueueError::TaskFailed {
                        key: format!("{scope}.{item}"),
                        worker,
                        message: String::from_utf8_lossy(&message).into_owned(),
                    });
                }
                _ => {}
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every item has a result"))
            .collect())
    }

    /// The live workers, sentence-style, for error messages.
    async fn describe_workers(&self) -> String {
        match self.workers().await {
            Ok(ws) if ws.is_empty() => format!(
                "no worker is running: start one with `dexlab worker --nats {}`",
                self.url
            ),
            Ok(ws) => {
                let mine = ws.iter().filter(|w| w.version == self.version).count();
                let list: Vec<String> = ws
                    .iter()
                    .map(|w| format!("{} (dexlab {}, {} threads)", w.id, w.version, w.threads))
                    .collect();
                format!(
                    "{} live workers, {mine} of them of dexlab {} (workers take only their own \
                     version's tasks): {}",
                    ws.len(),
                    self.version,
                    list.join(", ")
                )
            }
            Err(e) => format!("the workers could not be listed: {e}"),
        }
    }

    /// Takes tasks of `kind` (of this connection's version) through the shared durable
    /// consumer; a task is held for `ack_wait` without news before it is redelivered (when the
    /// consumer already exists, its own ack wait applies). `batch` tasks are asked for at a time.
    pub async fn tasks(&self, kind: &str, ack_wait: Duration, batch: usize) -> Result<TaskStream> {
        let stream = self
            .js
            .get_stream(TASKS_STREAM)
            .await
            .map_err(|e| QueueError::nats(format!("the stream {TASKS_STREAM}"), e))?;
        let name = self.consumer_name(kind);
        let c: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &name,
                consumer::pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.subject(kind),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| QueueError::nats(format!("the consumer {name}"), e))?;
        let ack_wait = c.cached_info().config.ack_wait;
        let inner = c
            .stream()
            .max_messages_per_batch(batch.max(1))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
            .map_err(|e| QueueError::nats(format!("taking tasks from {name}"), e))?;
        Ok(TaskStream { inner, ack_wait })
    }

    /// Stores the task's result (or failure) as computed by `worker`, then acknowledges it.
    pub async fn finish(
        &self,
        task: &Task,
        outcome: std::result::Result<&[u8], &str>,
        worker: &str,
    ) -> Result<()> {
        let (tag, payload) = match outcome {
            Ok(p) => ("r", p),
            Err(m) => ("e", m.as_bytes()),
        };
        self.results
            .put(format!("{tag}.{}", task.key), frame(worker, payload))
            .await
            .map_err(|e| QueueError::nats(format!("storing the result of {}", task.key), e))?;
        task.msg
            .ack()
            .await
            .map_err(|e| QueueError::nats(format!("acknowledging {}", task.key), e))
    }

    /// Acknowledges a task whose result is already stored (it came back after a lost ack).
    pub async fn finish_cached(&self, task: &Task) -> Result<()> {
        task.msg
            .ack()
            .await
            .map_err(|e| QueueError::nats(format!("acknowledging {}", task.key), e))
    }

    /// Acknowledges a task that cannot be run at all (a malformed one) after storing why, so
    /// that its submitter hears of it.
    pub async fn reject(&self, task: &Task, why: &str, worker: &str) -> Result<()> {
        if check_key(&task.key).is_ok() {
            let _ = self
                .results
                .put(format!("e.{}", task.key), frame(worker, why.as_bytes()))
                .await;
        }
        task.msg
            .ack_with(AckKind::Term)
            .await
            .map_err(|e| QueueError::nats("rejecting a task", e))
    }

    /// Records `w` as alive (for a minute).
    pub async fn announce(&self, w: &WorkerInfo) -> Result<()> {
        let v = serde_json::to_vec(w).expect("worker info serialises");
        self.workers
            .put(&w.id, v.into())
            .await
            .map(|_| ())
            .map_err(|e| QueueError::nats("announcing the worker", e))
    }

    /// The workers seen in the last minute.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let keys: Vec<String> = match self.workers.keys().await {
            Ok(k) => k
                .try_collect()
                .await
                .map_err(|e| QueueError::nats("listing workers", e))?,
            Err(e) => return Err(QueueError::nats("listing workers", e)),
        };
        let mut out = Vec::new();
        for k in keys {
            if let Ok(Some(v)) = self.workers.get(&k).await
                && let Ok(w) = serde_json::from_slice::<WorkerInfo>(&v)
            {
                out.push(w);
            }
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_carry_their_worker() {
        let f = frame("host-1-42", b"\x00\nbinary");
        assert_eq!(
            unframe(&f),
            ("host-1-42".into(), Bytes::from_static(b"\x00\nbinary"))
        );
    }

    #[test]
    fn keys_are_two_safe_tokens() {
        assert!(check_key("ab12.cd34").is_ok());
        for bad in ["ab12", "a.b.c", "a*.b", ".b", "a. b"] {
            assert!(check_key(bad).is_err(), "{bad}");
        }
    }
}

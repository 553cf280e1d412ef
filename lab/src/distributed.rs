//! Fitness evaluation on NATS JetStream workers (`dexlab evolve --nats`, `dexlab worker`).
//!
//! The coordinator ([`NatsEval`]) uploads the dataset (and the model of a model-driven strategy)
//! to the object store once, then sends each batch of genomes as `eval` tasks, one per genome,
//! keyed by everything the result depends on: the dexlab version, the dataset and model
//! bundles, the window job (strategy, experiment config, seed, blocks) and the genome's bits.
//! Workers ([`run_worker`]) rebuild the window's [`EvalCtx`] from the same files with the same
//! code, so a result is what the local rayon pool would have computed, bit for bit: the
//! experiment does not depend on how many workers ran or which of them died.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dexlab_evolve::optimise::{EvalCtx, Evaluation, Genome, RemoteEval, WindowJob};
use dexlab_evolve::tape::Tape;
use dexlab_evolve::walkforward::markets_at;
use dexlab_queue::{Queue, Task, WorkerInfo};
use dexlab_strategy::market::Market;
use dexlab_strategy::{ModelHandle, ParamSpace, registry};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::error::{LabError, Result};
use crate::model::load_model;

/// The task kind of one genome's fitness.
pub const EVAL: &str = "eval";

/// One genome to evaluate, as a worker receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalTask {
    /// The bundle hash of the dataset folder.
    pub dataset: String,
    /// The bundle hash of the model folder, for a model-driven strategy.
    pub model: Option<String>,
    pub job: WindowJob,
    /// The genes' bits (exact, whatever the encoding).
    pub genome: Vec<u64>,
}

/// The tasks' and results' encoding (CBOR: compact, and exact for every `f64`, NaN included).
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).expect("CBOR into memory does not fail");
    out
}

/// Reads what [`encode`] wrote; the error names `what`.
pub fn decode<T: serde::de::DeserializeOwned>(b: &[u8], what: &str) -> Result<T, String> {
    ciborium::from_reader(b).map_err(|e| format!("unreadable {what}: {e}"))
}

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    // 128 bits: no collision among the tasks one store will ever see.
    hex::encode(&h.finalize()[..16])
}

/// The task key's scope: everything a window's results depend on but the genome.
fn scope(version: &str, dataset: &str, model: Option<&str>, job: &WindowJob) -> String {
    let job = serde_json::to_vec(job).expect("a window job serialises");
    digest(&[
        version.as_bytes(),
        dataset.as_bytes(),
        model.unwrap_or("").as_bytes(),
        &job,
    ])
}

fn item(genome: &[f64]) -> String {
    let bits: Vec<u8> = genome
        .iter()
        .flat_map(|g| g.to_bits().to_le_bytes())
        .collect();
    digest(&[&bits])
}

/// Fitness on the workers of a NATS JetStream queue.
pub struct NatsEval {
    queue: Queue,
    rt: Handle,
    dataset: String,
    model: Option<String>,
    stall: Duration,
    /// Evaluations per worker id.
    workers: Mutex<BTreeMap<String, u64>>,
}

impl NatsEval {
    /// Uploads `data` (and `model`) to the queue's object store (only what it lacks).
    pub async fn new(
        queue: Queue,
        data: &Path,
        model: Option<&Path>,
        stall: Duration,
    ) -> Result<NatsEval> {
        let dataset = queue
            .push_dir(data)
            .await
            .map_err(|e| LabError::Refused(format!("uploading dataset {}: {e}", data.display())))?;
        let model =
            match model {
                Some(m) => Some(queue.push_dir(m).await.map_err(|e| {
                    LabError::Refused(format!("uploading model {}: {e}", m.display()))
                })?),
                None => None,
            };
        Ok(NatsEval {
            queue,
            rt: Handle::current(),
            dataset,
            model,
            stall,
            workers: Mutex::default(),
        })
    }

    /// The dataset's bundle hash in the object store.
    pub fn dataset_bundle(&self) -> &str {
        &self.dataset
    }

    /// What the experiment records about where its fitness was computed.
    pub fn record(&self) -> serde_json::Value {
        let workers = self.workers.lock().expect("workers").clone();
        serde_json::json!({
            "nats": self.queue.url(),
            "version": self.queue.version(),
            "dataset_bundle": self.dataset,
            "model_bundle": self.model,
            "workers": workers,
        })
    }

    async fn evaluate_async(
        &self,
        job: &WindowJob,
        genomes: &[Genome],
    ) -> Result<Vec<Evaluation>, String> {
        let scope = scope(
            self.queue.version(),
            &self.dataset,
            self.model.as_deref(),
            job,
        );
        let items: Vec<(String, Bytes)> = genomes
            .iter()
            .map(|g| {
                let task = EvalTask {
                    dataset: self.dataset.clone(),
                    model: self.model.clone(),
                    job: job.clone(),
                    genome: g.iter().map(|x| x.to_bits()).collect(),
                };
                (item(g), Bytes::from(encode(&task)))
            })
            .collect();
        let results = self
            .queue
            .run_batch(EVAL, &scope, items, self.stall)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(results.len());
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for (worker, payload) in results {
            out.push(decode::<Evaluation>(&payload, "evaluation")?);
            *counts.entry(worker).or_default() += 1;
        }
        let mut w = self.workers.lock().expect("workers");
        for (k, n) in counts {
            *w.entry(k).or_default() += n;
        }
        Ok(out)
    }
}

impl crate::evolve::Remote for NatsEval {
    fn record(&self) -> serde_json::Value {
        NatsEval::record(self)
    }
}

impl RemoteEval for NatsEval {
    fn evaluate(&self, job: &WindowJob, genomes: &[Genome]) -> Result<Vec<Evaluation>, String> {
        // Called from the optimiser's rayon threads, never from the runtime's own.
        self.rt.block_on(self.evaluate_async(job, genomes))
    }
}

/// What a worker is asked to be.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub url: String,
    /// Evaluations at once (and the rayon pool's size).
    pub threads: usize,
    /// Where fetched datasets and models are kept.
    pub cache: PathBuf,
    /// A task held this long without news goes back to the queue (when the worker creates the
    /// shared consumer; an existing one keeps its own).
    pub ack_wait: Duration,
    /// The dexlab version the worker takes tasks of (its own build's, but for tests).
    pub version: String,
    /// The node `ingest` tasks are fetched from (the task names only its chain: an RPC URL may
    /// hold an API key, which never goes into the queue). Without it the worker takes none.
    pub rpc: Option<String>,
}

/// A window's evaluation context, rebuilt from the bundles.
struct WindowCtx {
    tape: Arc<Tape>,
    start: Market,
    space: ParamSpace,
    exec: dexlab_evolve::backtest::ExecConfig,
    job: WindowJob,
}

impl WindowCtx {
    fn evaluate(&self, genome: &[f64]) -> Evaluation {
        let cfg = &self.job.config.ga;
        EvalCtx {
            tape: &self.tape,
            start: &self.start,
            from: self.job.from,
            window: self.job.window.0..self.job.window.1,
            strategy: &self.job.strategy,
            space: &self.space,
            exec: &self.exec,
            objective: cfg.objective,
            min_trades: cfg.min_trades,
            max_drawdown: cfg.max_drawdown,
        }
        .evaluate(genome)
    }
}

type Shared<T> = Arc<tokio::sync::OnceCell<Result<Arc<T>, String>>>;

/// Contexts and tapes a worker keeps between tasks (the last few windows).
#[derive(Default)]
struct Contexts {
    /// Datasets' tapes, oldest first (a tape dropped here lives on in the windows using it).
    tapes: Mutex<Vec<(String, Shared<Tape>)>>,
    windows: Mutex<Vec<(String, Shared<WindowCtx>)>>,
}

const KEPT_WINDOWS: usize = 16;
const KEPT_TAPES: usize = 4;

impl Contexts {
    async fn window(
        &self,
        queue: &Queue,
        cache: &Path,
        scope: &str,
        task: &EvalTask,
    ) -> Result<Arc<WindowCtx>, String> {
        let cell = {
            let mut w = self.windows.lock().expect("windows");
            match w.iter().position(|(s, _)| s == scope) {
                Some(i) => w[i].1.clone(),
                None => {
                    let c: Shared<WindowCtx> = Arc::default();
                    w.push((scope.to_owned(), c.clone()));
                    if w.len() > KEPT_WINDOWS {
                        w.remove(0);
                    }
                    c
                }
            }
        };
        cell.get_or_init(|| self.build(queue, cache, task))
            .await
            .clone()
    }

    async fn tape(
        &self,
        queue: &Queue,
        cache: &Path,
        task: &EvalTask,
    ) -> Result<Arc<Tape>, String> {
        let cell = {
            let mut t = self.tapes.lock().expect("tapes");
            match t.iter().position(|(d, _)| *d == task.dataset) {
                Some(i) => t[i].1.clone(),
                None => {
                    let c: Shared<Tape> = Arc::default();
                    t.push((task.dataset.clone(), c.clone()));
                    if t.len() > KEPT_TAPES {
                        t.remove(0);
                    }
                    c
                }
            }
        };
        cell.get_or_init(|| async {
            let dir = queue
                .fetch_dir(&task.dataset, cache)
                .await
                .map_err(|e| format!("dataset: {e}"))?;
            let tape = tokio::task::spawn_blocking(move || Tape::load(&dir))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("loading the dataset {}: {e}", task.dataset))?;
            if tape.dataset_hash != task.job.dataset_hash {
                return Err(format!(
                    "dataset bundle {} holds dataset {}, not {}",
                    task.dataset, tape.dataset_hash, task.job.dataset_hash
                ));
            }
            Ok(Arc::new(tape))
        })
        .await
        .clone()
    }

    async fn build(
        &self,
        queue: &Queue,
        cache: &Path,
        task: &EvalTask,
    ) -> Result<Arc<WindowCtx>, String> {
        let tape = self.tape(queue, cache, task).await?;
        let model_dir = match &task.model {
            Some(m) => Some(
                queue
                    .fetch_dir(m, cache)
                    .await
                    .map_err(|e| format!("model: {e}"))?,
            ),
            None => None,
        };
        let job = task.job.clone();
        tokio::task::spawn_blocking(move || -> Result<Arc<WindowCtx>, String> {
            let e = |e: &dyn std::fmt::Display| e.to_string();
            let mut exec = job
                .config
                .backtest
                .resolve(&tape, job.seed)
                .map_err(|x| e(&x))?;
            let model = load_model(model_dir.as_deref(), &job.strategy).map_err(|x| e(&x))?;
            exec.env.model = model.map(|m| ModelHandle::memoised(m.handle));
            let id = exec.env.model.as_ref().map(|m| m.id().to_owned());
            if id != job.model {
                return Err(format!(
                    "the model bundle is model {id:?}, the task wants {:?}",
                    job.model
                ));
            }
            let space = registry::info(&job.strategy).map_err(|x| e(&x))?.params;
            let (from, end) = (job.from, job.window.1);
            if from > job.window.0 || job.window.0 >= end || end > tape.blocks.len() {
                return Err(format!(
                    "window {from}, {}..{end} does not fit the tape's {} blocks",
                    job.window.0,
                    tape.blocks.len()
                ));
            }
            let start = markets_at(&tape, &[from]).pop().expect("one edge").1;
            Ok(Arc::new(WindowCtx {
                tape,
                start,
                space,
                exec,
                job,
            }))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}

/// What a worker did before it stopped.
#[derive(Debug, Clone, Default)]
pub struct WorkerStats {
    pub id: String,
    pub done: u64,
    pub failed: u64,
    /// Tasks that reached this worker after another worker held them and died.
    pub redelivered: u64,
}

struct WorkerState {
    queue: Queue,
    cfg: WorkerConfig,
    id: String,
    pool: rayon::ThreadPool,
    contexts: Contexts,
    done: std::sync::atomic::AtomicU64,
    failed: std::sync::atomic::AtomicU64,
    redelivered: std::sync::atomic::AtomicU64,
    /// Tasks taken and not finished yet.
    in_flight: std::sync::atomic::AtomicUsize,
    /// The leakage canary's inputs of the last dataset and config.
    leak_inputs: Mutex<Option<(String, dexlab_features::pipeline::Inputs)>>,
}

/// How long a stopping worker waits for the tasks it is running.
const DRAIN: Duration = Duration::from_secs(10);

/// Takes `eval` tasks (and `ingest` tasks, given a node) until `stop` resolves or the
/// connection is gone, `cfg.threads` evaluations at a time; once stopped, lets the running ones
/// finish (for up to 10 s). Each task's result is stored before the task is acknowledged: a
/// worker killed at any moment loses at most the tasks it held, which the queue hands to
/// another worker after the ack wait.
pub async fn run_worker(
    cfg: WorkerConfig,
    stop: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce(&str),
) -> Result<WorkerStats> {
    let queue = Queue::connect_as(&cfg.url, &cfg.version)
        .await
        .map_err(|e| LabError::Refused(e.to_string()))?;
    let threads = cfg.threads.max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| LabError::Refused(format!("the worker's thread pool: {e}")))?;
    let id = format!("{}-{}", crate::experiments::host_name(), std::process::id());
    // (kind, tasks at once, tasks asked for at a time: a few ahead, so that the next task is
    // here when a thread frees up).
    // The canary runs Polars, which uses every core itself: one cut at a time.
    let mut kinds = vec![(EVAL, threads, 2 * threads), (LEAK, 1, 1)];
    if cfg.rpc.is_some() {
        // I/O-bound: each task keeps its own requests in flight.
        kinds.push((INGEST, 1, 1));
    }
    let mut streams = Vec::new();
    for (kind, slots, batch) in kinds {
        let t = queue
            .tasks(kind, cfg.ack_wait, batch)
            .await
            .map_err(|e| LabError::Refused(e.to_string()))?;
        streams.push((t, slots));
    }
    let state = Arc::new(WorkerState {
        queue,
        cfg,
        id,
        pool,
        contexts: Contexts::default(),
        done: Default::default(),
        failed: Default::default(),
        redelivered: Default::default(),
        in_flight: Default::default(),
        leak_inputs: Mutex::new(None),
    });
    let announce = {
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let info = WorkerInfo {
                    id: s.id.clone(),
                    version: s.queue.version().to_owned(),
                    host: crate::experiments::host_name(),
                    pid: std::process::id(),
                    threads: s.cfg.threads.max(1),
                    done: s.done.load(std::sync::atomic::Ordering::Relaxed),
                    seen_at: crate::experiments::now_secs() as u64,
                };
                if let Err(e) = s.queue.announce(&info).await {
                    tracing::warn!("worker {}: {e}", s.id);
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        })
    };
    on_ready(&state.id);
    let work = futures::future::join_all(streams.into_iter().map(|(tasks, slots)| {
        let state = state.clone();
        let ack_wait = tasks.ack_wait;
        tasks.run(slots, move |task, slot| {
            let s = state.clone();
            s.in_flight
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                handle(&s, task, ack_wait, slot).await;
                s.in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        })
    }));
    tokio::select! {
        _ = work => {}
        _ = stop => {}
    }
    // No new task is taken; those running get `DRAIN` to finish and store their results (what
    // is still running then goes to another worker after the ack wait).
    let until = tokio::time::Instant::now() + DRAIN;
    while state.in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    announce.abort();
    Ok(WorkerStats {
        id: state.id.clone(),
        done: state.done.load(std::sync::atomic::Ordering::Relaxed),
        failed: state.failed.load(std::sync::atomic::Ordering::Relaxed),
        redelivered: state.redelivered.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// Runs one task and stores its outcome. `slot` is given back as soon as the work is done, so
/// that the next task runs while this one's result is being stored.
async fn handle(
    s: &Arc<WorkerState>,
    task: Task,
    ack_wait: Duration,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let key = task.key.clone();
    tracing::debug!("took task {key} (delivery {})", task.delivered);
    if task.delivered > 1 {
        s.redelivered.fetch_add(1, Relaxed);
    }
    let outcome = run_task(s, &task, ack_wait).await;
    drop(slot);
    let r = match outcome {
        Ok(Some(payload)) => {
            s.done.fetch_add(1, Relaxed);
            s.queue.finish(&task, Ok(&payload), &s.id).await
        }
        // Its result was already stored (a redelivery after a lost ack).
        Ok(None) => s.queue.finish_cached(&task).await,
        Err(why) => {
            s.failed.fetch_add(1, Relaxed);
            tracing::warn!("worker {}: task {key}: {why}", s.id);
            s.queue.finish(&task, Err(&why), &s.id).await
        }
    };
    match r {
        Ok(()) => tracing::debug!("finished task {key}"),
        // Left unacknowledged: the queue redelivers it.
        Err(e) => tracing::warn!("worker {}: task {key}: {e}", s.id),
    }
}

async fn run_task(
    s: &Arc<WorkerState>,
    task: &Task,
    ack_wait: Duration,
) -> Result<Option<Vec<u8>>, String> {
    if task.version != s.queue.version() {
        return Err(format!(
            "this worker is dexlab {}; the task was submitted by dexlab {}, whose results this \
             build may not reproduce bit for bit: run a worker of that version",
            s.queue.version(),
            task.version
        ));
    }
    if task.delivered > 1
        && let Ok(Some(_)) = s.queue.result(&task.key).await
    {
        return Ok(None);
    }
    if task.kind == INGEST {
        return run_ingest(s, task, ack_wait).await.map(Some);
    }
    if task.kind == LEAK {
        return run_leak(s, task, ack_wait).await.map(Some);
    }
    let t: EvalTask = decode(&task.payload, "task")?;
    let (scope, _) = task
        .key
        .split_once('.')
        .ok_or_else(|| format!("task key `{}` has no scope", task.key))?;
    let ctx = s.contexts.window(&s.queue, &s.cfg.cache, scope, &t).await?;
    let genome: Genome = t.genome.iter().map(|b| f64::from_bits(*b)).collect();
    if genome.len() != ctx.space.len() {
        return Err(format!(
            "the genome has {} genes; strategy `{}` has {} parameters",
            genome.len(),
            t.job.strategy,
            ctx.space.len()
        ));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    s.pool.spawn(move || {
        let _ = tx.send(ctx.evaluate(&genome));
    });
    let eval = task
        .keep_alive(ack_wait, rx)
        .await
        .map_err(|_| "the evaluation panicked".to_owned())?;
    Ok(Some(encode(&eval)))
}

/// The task kind of one block range of a split ingestion.
pub const INGEST: &str = "ingest";

/// One block range of a split ingestion, as a worker receives it. No RPC URL: the worker
/// fetches from its own node (`dexlab worker --rpc`), which must be of `plan.chain_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestTask {
    pub plan: dexlab_data::ingest::IngestPlan,
    pub first: u64,
    pub last: u64,
    pub chunk_blocks: u64,
    pub concurrency: usize,
    pub rate_per_sec: f64,
    pub timeout_ms: u64,
    pub retries: u32,
    pub initial_span: u64,
}

/// What a worker made of an [`IngestTask`]: its chunk files as a bundle, and its report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestPart {
    pub bundle: String,
    pub report: dexlab_data::ingest::IngestReport,
}

/// What a split ingestion did.
#[derive(Debug, Clone, Serialize)]
pub struct SplitIngestReport {
    pub plan: dexlab_data::ingest::IngestPlan,
    pub tasks: usize,
    /// Ranges per worker id.
    pub workers: BTreeMap<String, u64>,
    /// The parts' reports, summed (blocks, logs, swaps, …).
    pub totals: dexlab_data::ingest::IngestReport,
    pub elapsed_s: f64,
}

/// Ingests `cfg` on the queue's workers: the block range is cut into ranges of
/// `cells_per_task` chunk cells, each ingested by a worker into its own chunk files, which are
/// then placed into one dataset, the same files a single `dexlab data ingest` writes, with the
/// same metadata and checkpoint. Built beside `cfg.out` and put in place when complete. A range
/// whose worker died is ingested again by another: its files replace nothing, since each range
/// is placed once.
pub async fn ingest_split(
    queue: &Queue,
    cfg: &dexlab_data::ingest::IngestConfig,
    cells_per_task: u64,
    stall: Duration,
) -> Result<SplitIngestReport> {
    let started = std::time::Instant::now();
    let plan = dexlab_data::ingest::plan(cfg).await?;
    let staged = dexlab_data::outdir::Staged::begin(&cfg.out, cfg.force, "a dataset")?;
    let ranges =
        dexlab_data::ingest::task_ranges(plan.from, plan.to, cfg.chunk_blocks, cells_per_task);
    let task = |first: u64, last: u64| IngestTask {
        plan: plan.clone(),
        first,
        last,
        chunk_blocks: cfg.chunk_blocks,
        concurrency: cfg.concurrency,
        rate_per_sec: cfg.rate_per_sec,
        timeout_ms: cfg.timeout.as_millis() as u64,
        retries: cfg.retries,
        initial_span: cfg.initial_span,
    };
    let scope = digest(&[
        queue.version().as_bytes(),
        INGEST.as_bytes(),
        &serde_json::to_vec(&task(0, 0)).expect("a task serialises"),
    ]);
    let items: Vec<(String, Bytes)> = ranges
        .iter()
        .map(|&(a, b)| (format!("{a}-{b}"), Bytes::from(encode(&task(a, b)))))
        .collect();
    let results = queue
        .run_batch(INGEST, &scope, items, stall)
        .await
        .map_err(|e| LabError::Refused(format!("ingesting on the workers: {e}")))?;
    let cache = tempfile::Builder::new()
        .prefix(".dexlab-parts-")
        .tempdir_in(staged.path().parent().unwrap_or(Path::new(".")))
        .map_err(|e| LabError::io(staged.path(), e))?;
    let mut workers: BTreeMap<String, u64> = BTreeMap::new();
    let mut totals = dexlab_data::ingest::IngestReport {
        chain_id: plan.chain_id,
        from: plan.from,
        to: plan.to,
        ..Default::default()
    };
    for (worker, payload) in results {
        let part: IngestPart = decode(&payload, "ingest result").map_err(LabError::Refused)?;
        *workers.entry(worker).or_default() += 1;
        let dir = queue
            .fetch_dir(&part.bundle, cache.path())
            .await
            .map_err(|e| LabError::Refused(format!("fetching an ingested range: {e}")))?;
        place(&dir, staged.path())?;
        let r = &part.report;
        totals.blocks += r.blocks;
        totals.logs += r.logs;
        totals.swaps += r.swaps;
        totals.liquidity_events += r.liquidity_events;
        totals.transactions += r.transactions;
        totals.unknown_logs += r.unknown_logs;
        totals.chunks += r.chunks;
        totals.requests += r.requests;
        totals.retries += r.retries;
        totals.splits += r.splits;
        totals.malformed.extend(r.malformed.iter().cloned());
        totals.reorgs.extend(r.reorgs.iter().cloned());
        if totals.receipts_method.is_none() {
            totals.receipts_method = r.receipts_method.clone();
        }
    }
    dexlab_data::ingest::finish_split(cfg, &plan, staged.path()).await?;
    staged.commit()?;
    let elapsed_s = started.elapsed().as_secs_f64();
    totals.elapsed_s = elapsed_s;
    totals.blocks_per_s = totals.blocks as f64 / elapsed_s.max(1e-9);
    totals.logs_per_s = totals.logs as f64 / elapsed_s.max(1e-9);
    Ok(SplitIngestReport {
        plan,
        tasks: ranges.len(),
        workers,
        totals,
        elapsed_s,
    })
}

/// Moves every file under `from` to the same place under `to`; a file already there is an
/// error (two ranges never write the same chunk).
fn place(from: &Path, to: &Path) -> Result<()> {
    let entries = std::fs::read_dir(from).map_err(|e| LabError::io(from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| LabError::io(from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry
            .file_type()
            .map_err(|e| LabError::io(&src, e))?
            .is_dir()
        {
            std::fs::create_dir_all(&dst).map_err(|e| LabError::io(&dst, e))?;
            place(&src, &dst)?;
        } else if dst.exists() {
            return Err(LabError::Refused(format!(
                "{} was written by two ranges",
                dst.display()
            )));
        } else {
            std::fs::rename(&src, &dst)
                .or_else(|_| std::fs::copy(&src, &dst).map(|_| ()))
                .map_err(|e| LabError::io(&dst, e))?;
        }
    }
    Ok(())
}

async fn run_ingest(
    s: &Arc<WorkerState>,
    task: &Task,
    ack_wait: Duration,
) -> Result<Vec<u8>, String> {
    let t: IngestTask = decode(&task.payload, "ingest task")?;
    let rpc = s
        .cfg
        .rpc
        .clone()
        .ok_or("this worker has no node to ingest from (dexlab worker --rpc URL)")?;
    std::fs::create_dir_all(&s.cfg.cache).map_err(|e| format!("{}: {e}", s.cfg.cache.display()))?;
    let tmp = tempfile::Builder::new()
        .prefix(".ingest-")
        .tempdir_in(&s.cfg.cache)
        .map_err(|e| format!("{}: {e}", s.cfg.cache.display()))?;
    let out = tmp.path().join("part");
    let cfg = dexlab_data::ingest::IngestConfig {
        rpc_url: rpc,
        from: Some(t.first),
        to: Some(t.last),
        pools: t.plan.pools.clone(),
        pool_addresses: Vec::new(),
        out: out.clone(),
        confirmations: 0,
        chunk_blocks: t.chunk_blocks,
        concurrency: t.concurrency.max(1),
        rate_per_sec: t.rate_per_sec,
        timeout: Duration::from_millis(t.timeout_ms.max(1)),
        retries: t.retries.max(1),
        initial_span: t.initial_span.max(1),
        progress: false,
        snapshot: false,
        force: true,
    };
    let report = task
        .keep_alive(ack_wait, dexlab_data::ingest::ingest(cfg))
        .await
        .map_err(|e| e.to_string())?;
    if report.chain_id != t.plan.chain_id {
        return Err(format!(
            "this worker's node (--rpc) serves chain {}; the task is of chain {}",
            report.chain_id, t.plan.chain_id
        ));
    }
    if report.to != t.last {
        return Err(format!(
            "this worker's node ingested up to block {}, not {}: is it behind?",
            report.to, t.last
        ));
    }
    // Only the chunk files: the dataset's metadata and checkpoint are the coordinator's.
    for f in ["dataset.json", "pools.parquet", "checkpoint.json"] {
        let _ = std::fs::remove_file(out.join(f));
    }
    let bundle = s.queue.push_dir(&out).await.map_err(|e| e.to_string())?;
    Ok(encode(&IngestPart { bundle, report }))
}

/// The task kind of one cut of the features' leakage canary.
pub const LEAK: &str = "leak";

/// One cut of the leakage canary of a feature build: the pipeline run twice on the dataset,
/// the second time with everything after block `cut` perturbed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakTask {
    /// The bundle hash of the dataset folder.
    pub dataset: String,
    pub config: dexlab_features::FeatureConfig,
    pub cut: i64,
}

/// `dexlab features build --nats`: the table is built here, and the leakage canary (two
/// pipeline runs per cut, most of a build's work) runs one cut per task on the queue's
/// workers. The folder written is the one a local build writes, byte for byte.
pub fn features_build_split(
    queue: &Queue,
    rt: &Handle,
    data: &Path,
    cfg: &dexlab_features::FeatureConfig,
    out: &Path,
    stall: Duration,
) -> Result<dexlab_features::BuildReport> {
    let dataset = rt
        .block_on(queue.push_dir(data))
        .map_err(|e| LabError::Refused(format!("uploading dataset {}: {e}", data.display())))?;
    let mut check =
        |_: &dexlab_features::pipeline::Inputs, cuts: &[i64]| -> dexlab_features::Result<()> {
            let task = |cut: i64| LeakTask {
                dataset: dataset.clone(),
                config: cfg.clone(),
                cut,
            };
            let scope = digest(&[
                queue.version().as_bytes(),
                LEAK.as_bytes(),
                &serde_json::to_vec(&task(0)).expect("a task serialises"),
            ]);
            let items: Vec<(String, Bytes)> = cuts
                .iter()
                .map(|&c| (format!("c{c}"), Bytes::from(encode(&task(c)))))
                .collect();
            let results = rt
                .block_on(queue.run_batch(LEAK, &scope, items, stall))
                .map_err(|e| {
                    dexlab_features::FeatureError::Leakage(format!(
                        "the canary's cuts on the workers: {e}"
                    ))
                })?;
            for (_, payload) in results {
                let leak: Option<String> = decode(&payload, "leakage result")
                    .map_err(dexlab_features::FeatureError::Leakage)?;
                if let Some(m) = leak {
                    return Err(dexlab_features::FeatureError::Leakage(m));
                }
            }
            Ok(())
        };
    Ok(dexlab_features::build_with(data, cfg, out, &mut check)?)
}

async fn run_leak(
    s: &Arc<WorkerState>,
    task: &Task,
    ack_wait: Duration,
) -> Result<Vec<u8>, String> {
    let t: LeakTask = decode(&task.payload, "leakage task")?;
    let dir = s
        .queue
        .fetch_dir(&t.dataset, &s.cfg.cache)
        .await
        .map_err(|e| format!("dataset: {e}"))?;
    let state = s.clone();
    let run = tokio::task::spawn_blocking(move || {
        // The inputs (the dataset read, the depth replayed) once per dataset and config: every
        // cut of a build reads the same.
        let key = format!(
            "{}/{}",
            t.dataset,
            serde_json::to_string(&t.config).map_err(|e| e.to_string())?
        );
        let cached = state
            .leak_inputs
            .lock()
            .expect("inputs")
            .as_ref()
            .filter(|(k, _)| *k == key)
            .map(|(_, i)| i.clone());
        let inputs = match cached {
            Some(i) => i,
            None => {
                let i = dexlab_features::load_inputs(&dir, &t.config).map_err(|e| e.to_string())?;
                *state.leak_inputs.lock().expect("inputs") = Some((key, i.clone()));
                i
            }
        };
        match dexlab_features::leakage::check_at(&inputs, &t.config, t.cut, None) {
            Ok(()) => Ok(None),
            // A leak is the canary's answer, not the worker's failure.
            Err(dexlab_features::FeatureError::Leakage(m)) => Ok(Some(m)),
            Err(e) => Err(e.to_string()),
        }
    });
    let leak: Option<String> = task
        .keep_alive(ack_wait, run)
        .await
        .map_err(|e| format!("the canary panicked: {e}"))??;
    Ok(encode(&leak))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genomes_key_by_their_bits() {
        assert_eq!(item(&[0.5, 0.25]), item(&[0.5, 0.25]));
        assert_ne!(item(&[0.5, 0.25]), item(&[0.25, 0.5]));
        assert_ne!(item(&[0.0]), item(&[-0.0]));
        assert_eq!(item(&[0.5]).len(), 32);
    }

    #[test]
    fn evaluations_cross_the_wire_exactly() {
        let mut e = Evaluation {
            metrics: Default::default(),
            objective: f64::NAN,
            fitness: -(1 << 60) + 7,
            feasible: false,
        };
        e.metrics.sharpe = 0.1 + 0.2;
        e.metrics.sortino = f64::INFINITY;
        let back: Evaluation = decode(&encode(&e), "evaluation").unwrap();
        assert_eq!(back.objective.to_bits(), e.objective.to_bits());
        assert_eq!(back.metrics.sharpe.to_bits(), e.metrics.sharpe.to_bits());
        assert_eq!(back.metrics.sortino, f64::INFINITY);
        assert_eq!(back.fitness, e.fitness);
    }
}

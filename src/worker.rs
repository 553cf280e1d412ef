//! `dexlab worker`: fitness evaluation for `evolve --nats` runs on this machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use dexlab_lab::distributed::{WorkerConfig, run_worker};

#[derive(Args)]
pub struct WorkerArgs {
    /// The NATS JetStream server, e.g. nats://127.0.0.1:4222.
    #[arg(long, value_name = "URL", env = "DEXLAB_NATS")]
    nats: String,
    /// Evaluations at once (the rayon pool's size); 0 = every core.
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Where datasets and models fetched from the object store are kept.
    #[arg(long, default_value = ".dexlab/worker-cache")]
    cache: PathBuf,
    /// Seconds a task may go without news from its worker before the queue gives it to another
    /// (applies when this worker creates the queue's consumer; running workers tell the queue
    /// they are alive every third of it).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    ack_wait_secs: u64,
    /// The node `data ingest --nats` ranges are fetched from (it must serve the ingestion's
    /// chain); without it this worker takes no ingestion.
    #[arg(long, value_name = "URL", env = "DEXLAB_RPC_URL")]
    rpc: Option<String>,
    /// Also run jobs launched from the dashboard of a `dexlab serve --nats` on the same store
    /// (DATABASE_URL, which must be the server's: a shared PostgreSQL).
    #[arg(long)]
    jobs: bool,
    /// With --jobs: each job's folder (config, output, logs) is made under this one.
    #[arg(long, default_value = "jobs", requires = "jobs")]
    jobs_dir: PathBuf,
    /// With --jobs: jobs at once.
    #[arg(long, default_value_t = 1, requires = "jobs")]
    job_slots: usize,
}

pub async fn worker_cmd(a: WorkerArgs) -> anyhow::Result<ExitCode> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = if a.threads == 0 { cores } else { a.threads };
    // A stand-in for a worker built from other sources, for tests of a mixed fleet.
    let version = std::env::var("DEXLAB_WORKER_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(dexlab_queue::build_version);
    if a.ack_wait_secs == 0 {
        anyhow::bail!("--ack-wait-secs must be at least 1");
    }
    let cfg = WorkerConfig {
        url: a.nats.clone(),
        threads,
        cache: a.cache.clone(),
        ack_wait: Duration::from_secs(a.ack_wait_secs),
        version: version.clone(),
        rpc: a.rpc.clone(),
    };
    let stop = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let url = dexlab_queue::scrub_url(&a.nats);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let jobs = if a.jobs {
        Some(job_worker(&a, &version).await?)
    } else {
        None
    };
    let job_loop = {
        let rx = stop_rx.clone();
        async move {
            match jobs {
                Some(w) => tokio::select! {
                    r = dexlab_server::jobs_nats::work_jobs(w) => r,
                    () = stopped(rx) => Ok(()),
                },
                None => Ok(()),
            }
        }
    };
    let evals = run_worker(cfg, stopped(stop_rx), |id| {
        let also = if a.jobs { " and dashboard jobs" } else { "" };
        eprintln!(
            "worker {id}: dexlab {version}, {threads} threads, taking tasks{also} from {url}"
        );
    });
    let signal = async {
        stop.await;
        let _ = stop_tx.send(true);
    };
    let (stats, jobs_result, ()) = tokio::join!(evals, job_loop, signal);
    let stats = stats?;
    if let Err(e) = jobs_result {
        anyhow::bail!("running jobs: {e}");
    }
    eprintln!(
        "worker {}: stopped after {} tasks ({} failed, {} redelivered from a worker that died)",
        stats.id, stats.done, stats.failed, stats.redelivered
    );
    Ok(ExitCode::SUCCESS)
}

/// The dashboard jobs' side of a worker: the store, and a runner that runs what it is handed.
async fn job_worker(
    a: &WorkerArgs,
    version: &str,
) -> anyhow::Result<std::sync::Arc<dexlab_server::jobs_nats::JobWorker>> {
    let store = dexlab_lab::open_store(dexlab_lab::Access::Write).await?;
    let queue = dexlab_queue::Queue::connect_as(&a.nats, version).await?;
    let program = std::env::current_exe()?;
    std::fs::create_dir_all(&a.cache)?;
    let mut config =
        dexlab_server::jobs::JobsConfig::new(program, &a.cache, &a.jobs_dir, a.job_slots)?;
    // An evolve job's fitness goes to the queue's workers too.
    config.child_env = vec![("DEXLAB_NATS".into(), a.nats.clone())];
    let runner = format!(
        "worker {}-{}",
        dexlab_lab::experiments::host_name(),
        std::process::id()
    );
    Ok(std::sync::Arc::new(dexlab_server::jobs_nats::JobWorker {
        queue,
        store,
        jobs: dexlab_server::jobs::Jobs::runner_only(config, runner),
        cache: a.cache.clone(),
        ack_wait: Duration::from_secs(a.ack_wait_secs),
    }))
}

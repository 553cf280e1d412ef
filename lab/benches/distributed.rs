//! Fitness evaluation on NATS JetStream workers next to the local rayon pool, in one run:
//! - evaluations/s on the local pool with 1 and 2 threads, then on 1 and 2 `worker` processes
//!   (1 thread each) through the queue, the same genomes' count, fresh genomes every time (no
//!   result is ever reused from the results bucket);
//! - the queue's overhead per task: a window of 2 blocks through 1 worker, minus the same
//!   evaluations run locally;
//! - JetStream's own message rate on loopback (publish to a work-queue stream, pull, ack), and
//!   from it how many worker threads one queue can feed.
//!
//! `bench/distributed.sh` (mines and ingests a simulated chain, starts nats-server, runs this
//! in the dev profile with our crates at opt-level 3). Needs `DEXLAB_BENCH_DATA` (a dataset
//! folder) and `DEXLAB_BENCH_NATS` (a server URL). `distributed worker URL CACHE` is the worker
//! mode the bench starts itself in.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dexlab_evolve::config::ExperimentConfig;
use dexlab_evolve::optimise::{EvalCtx, Genome, RemoteEval, WindowJob, initial_population};
use dexlab_evolve::tape::Tape;
use dexlab_lab::distributed::{NatsEval, WorkerConfig, run_worker};
use dexlab_strategy::registry;
use rayon::prelude::*;

const STRATEGY: &str = "cross-venue-arb";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("worker") {
        worker(&args[2], Path::new(&args[3]));
        return;
    }
    let data = PathBuf::from(std::env::var("DEXLAB_BENCH_DATA").expect("DEXLAB_BENCH_DATA"));
    let url = std::env::var("DEXLAB_BENCH_NATS").expect("DEXLAB_BENCH_NATS");
    let n: usize = std::env::var("DEXLAB_BENCH_GENOMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let tape = Tape::load(&data).expect("DEXLAB_BENCH_DATA is a dataset");
    let cfg = ExperimentConfig::default();
    let exec = cfg.backtest.resolve(&tape, 1).expect("resolve");
    let space = registry::info(STRATEGY).expect("strategy").params;
    let start = tape.market();
    let full = 0..tape.blocks.len();
    let job = |window: std::ops::Range<usize>, seed: u64| WindowJob {
        strategy: STRATEGY.into(),
        config: cfg.clone(),
        seed,
        dataset_hash: tape.dataset_hash.clone(),
        model: None,
        from: 0,
        window: (window.start, window.end),
    };
    let ctx = |window: std::ops::Range<usize>| EvalCtx {
        tape: &tape,
        start: &start,
        from: 0,
        window,
        strategy: STRATEGY,
        space: &space,
        exec: &exec,
        objective: cfg.ga.objective,
        min_trades: cfg.ga.min_trades,
        max_drawdown: cfg.ga.max_drawdown,
    };
    // Fresh genomes for every measurement: nothing comes from the results bucket.
    let mut draw = 100u64;
    let mut genomes = |k: usize| -> Vec<Genome> {
        draw += 1;
        initial_population(&space, k + 1, draw, 0)[1..].to_vec()
    };
    let local = |threads: usize, window: std::ops::Range<usize>, gs: &[Genome]| -> f64 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        let c = ctx(window);
        let t = Instant::now();
        let fit: i128 = pool.install(|| {
            gs.par_iter()
                .map(|g| i128::from(c.evaluate(g).fitness))
                .sum()
        });
        std::hint::black_box(fit);
        t.elapsed().as_secs_f64()
    };
    eprintln!(
        "dataset: {} blocks, {} events; {n} genomes per measurement",
        tape.blocks.len(),
        tape.events.len()
    );
    let l1 = local(1, full.clone(), &genomes(n));
    let l2 = local(2, full.clone(), &genomes(n));

    let queue = rt
        .block_on(dexlab_queue::Queue::connect(&url))
        .expect("NATS");
    let remote = rt
        .block_on(NatsEval::new(
            queue.clone(),
            &data,
            None,
            Duration::from_secs(120),
        ))
        .expect("upload");
    let cache = tempfile::tempdir().expect("tempdir");
    let mut workers: Vec<Child> = Vec::new();
    let spawn = |i: usize| {
        Command::new(std::env::current_exe().expect("exe"))
            .args(["worker", &url])
            .arg(cache.path().join(format!("w{i}")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("worker")
    };
    let through_queue = |window: std::ops::Range<usize>, seed: u64, gs: &[Genome]| -> f64 {
        let j = job(window, seed);
        let t = Instant::now();
        let evals = remote.evaluate(&j, gs).expect("remote evaluation");
        std::hint::black_box(evals.len());
        t.elapsed().as_secs_f64()
    };
    workers.push(spawn(0));
    // Warm-up: the worker fetches the dataset and builds the window once.
    through_queue(full.clone(), 1, &genomes(4));
    let w1 = through_queue(full.clone(), 1, &genomes(n));
    // The overhead of one task: a 2-block window, through the queue and here.
    let tiny = full.start..(full.start + 2).min(full.end);
    through_queue(tiny.clone(), 1, &genomes(4));
    let tiny_gs = genomes(4 * n);
    let tq = through_queue(tiny.clone(), 1, &tiny_gs);
    let tl = local(1, tiny.clone(), &tiny_gs);
    let overhead_us = (tq - tl) / tiny_gs.len() as f64 * 1e6;
    workers.push(spawn(1));
    through_queue(full.clone(), 2, &genomes(4));
    let w2 = through_queue(full.clone(), 2, &genomes(n));
    for mut w in workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let js = rt.block_on(jetstream_rate(&url, 20_000));

    let rate = |secs: f64| n as f64 / secs;
    let per_core = |secs: f64, cores: f64| rate(secs) / cores / rate(l1) * 100.0;
    println!("| | evaluations/s | per core, of the local 1-thread rate |");
    println!("|---|---:|---:|");
    println!("| local pool, 1 thread | {:.0} | 100 % |", rate(l1));
    println!(
        "| local pool, 2 threads | {:.0} | {:.0} % |",
        rate(l2),
        per_core(l2, 2.0)
    );
    println!(
        "| 1 worker process (1 thread) | {:.0} | {:.0} % |",
        rate(w1),
        per_core(w1, 1.0)
    );
    println!(
        "| 2 worker processes (1 thread each) | {:.0} | {:.0} % |",
        rate(w2),
        per_core(w2, 2.0)
    );
    println!();
    println!(
        "queue overhead per task: {overhead_us:.0} µs (a 2-block window: {:.0} µs per task \
         through the queue, {:.0} µs locally)",
        tq / tiny_gs.len() as f64 * 1e6,
        tl / tiny_gs.len() as f64 * 1e6
    );
    println!("JetStream on loopback: {js:.0} messages/s published, pulled and acknowledged");
    // A task is two stream messages (the task, and its result in the results bucket) plus the
    // ack and the watcher's delivery; the evaluations/s of one worker thread is the local
    // 1-thread rate.
    let tasks_per_sec = js / 2.0;
    println!(
        "on paper: one queue carries about {tasks_per_sec:.0} tasks/s, enough for about {:.0} \
         worker threads at this dataset's {:.0} evaluations/s each",
        tasks_per_sec / rate(l1),
        rate(l1)
    );
}

fn worker(url: &str, cache: &Path) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let cfg = WorkerConfig {
        url: url.into(),
        threads: 1,
        cache: cache.to_path_buf(),
        ack_wait: Duration::from_secs(30),
        version: dexlab_queue::build_version(),
        rpc: None,
    };
    rt.block_on(run_worker(cfg, std::future::pending::<()>(), |_| {}))
        .expect("worker");
}

/// Messages/s through a work-queue stream of its own: published (pipelined), pulled, acked.
async fn jetstream_rate(url: &str, n: usize) -> f64 {
    use async_nats::jetstream::{self, consumer, stream};
    use futures::StreamExt;
    let client = async_nats::connect(url).await.expect("connect");
    let js = jetstream::new(client);
    let _ = js.delete_stream("DEXLAB_BENCH").await;
    let s = js
        .create_stream(stream::Config {
            name: "DEXLAB_BENCH".into(),
            subjects: vec!["dexlab.bench".into()],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .expect("stream");
    let c: consumer::PullConsumer = s
        .create_consumer(consumer::pull::Config {
            durable_name: Some("bench".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let payload = bytes::Bytes::from(vec![7u8; 256]);
    let t = Instant::now();
    let publish = async {
        // Pipelined, with at most 1,000 acknowledgements outstanding (the client caps those in
        // flight: waiting for all of them only at the end would wait for ever).
        let mut acks = std::collections::VecDeque::with_capacity(1000);
        for _ in 0..n {
            if acks.len() == 1000 {
                let a: async_nats::jetstream::context::PublishAckFuture =
                    acks.pop_front().expect("full");
                a.await.expect("stored");
            }
            acks.push_back(
                js.publish("dexlab.bench", payload.clone())
                    .await
                    .expect("publish"),
            );
        }
        for a in acks {
            a.await.expect("stored");
        }
    };
    let consume = async {
        let mut msgs = c
            .stream()
            .max_messages_per_batch(500)
            .messages()
            .await
            .expect("pull");
        for _ in 0..n {
            let m = msgs.next().await.expect("a message").expect("a message");
            m.ack().await.expect("ack");
        }
    };
    tokio::join!(publish, consume);
    let rate = n as f64 / t.elapsed().as_secs_f64();
    let _ = js.delete_stream("DEXLAB_BENCH").await;
    rate
}

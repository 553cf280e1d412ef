//! Fitness on NATS JetStream workers: three `dexlab worker` processes, one of them SIGKILLed in
//! the middle of a run, give the experiment the local rayon pool gives, bit for bit, into a
//! PostgreSQL store that records which workers computed it; a worker of another dexlab version
//! takes nothing and the run says so; a task whose dataset is not in the object store fails
//! with an error that names it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn start(nats: &str, dir: &Path, n: usize, version: Option<&str>) -> Worker {
        Self::start_with(nats, dir, n, version, &[], &[])
    }

    fn start_with(
        nats: &str,
        dir: &Path,
        n: usize,
        version: Option<&str>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Worker {
        let log = dir.join(format!("worker-{n}.log"));
        let mut c = dexlab();
        c.args([
            "worker",
            "--nats",
            nats,
            "--threads",
            "1",
            "--ack-wait-secs",
            "2",
        ])
        .arg("--cache")
        .arg(dir.join(format!("cache-{n}")))
        .args(args)
        .envs(env.iter().copied())
        // Its own folder: it sees nothing of a server's data root.
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        if let Some(v) = version {
            c.env("DEXLAB_WORKER_VERSION", v);
        }
        // Which task it holds, for a kill in the middle of one.
        c.env("DEXLAB_LOG", "info,dexlab_lab=debug");
        let w = Worker {
            child: c.spawn().unwrap(),
            log,
        };
        w.wait_for("taking tasks");
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "worker never said `{what}`: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then what it said.
    fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
        self.log()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn evolve(data: &Path, out: &Path, db: &str, name: &str, extra: &[&str]) -> Command {
    let mut c = dexlab();
    c.args([
        "evolve",
        "--strategy",
        "cross-venue-arb",
        "--seed",
        "5",
        "--folds",
        "2",
        "--population",
        "10",
        "--generations",
        "4",
        "--quiet",
        "--name",
        name,
    ])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .args(extra)
    .env("DATABASE_URL", db)
    .env_remove("DEXLAB_NATS");
    c
}

/// What `experiments show --json` says of where an experiment's fitness was computed.
fn distributed(db: &str, experiment: &str) -> serde_json::Value {
    let o = dexlab()
        .args(["experiments", "show", experiment, "--json"])
        .env("DATABASE_URL", db)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["experiment"]["summary"]["distributed"].clone()
}

fn result(out: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap()
}

fn pg_db(name: &str) -> String {
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let base = std::env::var("DEXLAB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => base,
    }
}

#[test]
fn three_workers_one_killed_give_the_local_experiment() {
    let ch = Chain::up(41, 400);
    let data = ch.dir.path().join("ds");
    ingest(&ch.url(), &ch.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();
    let local_db = format!("sqlite://{}", work.path().join("local.sqlite").display());
    let local = work.path().join("local");
    let o = evolve(&data, &local, &local_db, "local", &[])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let nats = Nats::start();
    let mut workers: Vec<Worker> = (0..3)
        .map(|n| Worker::start(&nats.url, work.path(), n, None))
        .collect();
    // Several machines' runs land in one PostgreSQL store.
    let db = pg_db("dexlab_e2e_distributed");
    let remote = work.path().join("remote");
    let log = work.path().join("evolve.log");
    let mut run = evolve(
        &data,
        &remote,
        &db,
        "remote",
        &["--nats", &nats.url, "--nats-stall-secs", "60"],
    )
    .stdout(Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    // Mid-run (a generation checkpointed, the next one out on the queue), while it evaluates a
    // genome: SIGKILL one worker. Its task goes to another after the 2 s ack wait.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready = false;
    loop {
        let ck = std::fs::read_to_string(remote.join("checkpoint.json")).unwrap_or_default();
        ready |= ck.contains("\"generation\":2");
        let holding = workers[0]
            .log()
            .lines()
            .rev()
            .find(|l| l.contains("took task") || l.contains("finished task"))
            .is_some_and(|l| l.contains("took task"));
        if ready && holding {
            break;
        }
        assert!(Instant::now() < deadline, "worker 0 never held a task");
        assert!(
            run.try_wait().unwrap().is_none(),
            "the run ended before a worker could be killed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut killed = workers.remove(0);
    killed.child.kill().unwrap();
    let killed_log = killed.log();
    drop(killed);
    let status = run.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );

    let (a, b) = (result(&local), result(&remote));
    assert!(
        a["folds"] == b["folds"],
        "the workers' experiment differs from the local one: compare {} and {}",
        local.join("result.json").display(),
        remote.join("result.json").display()
    );
    // The store records who computed it: the killed worker among them, as it did work first.
    let dist = distributed(&db, "remote");
    let ids: Vec<&String> = dist["workers"]
        .as_object()
        .expect("workers")
        .keys()
        .collect();
    assert!(ids.len() >= 2, "{dist}");
    let killed_id = killed_log
        .lines()
        .find_map(|l| l.strip_prefix("worker "))
        .and_then(|l| l.split(':').next())
        .unwrap_or_else(|| panic!("no worker id in {killed_log}"))
        .to_owned();
    assert!(ids.contains(&&killed_id), "{killed_id} not in {dist}");
    let said = String::from_utf8(
        dexlab()
            .args(["experiments", "show", "remote"])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        said.contains("fitness on the workers of nats://127.0.0.1") && said.contains(&killed_id),
        "{said}"
    );
    assert!(
        dist["nats"]
            .as_str()
            .unwrap()
            .starts_with("nats://127.0.0.1"),
        "{dist}"
    );
    // The survivors did the rest, the dead worker's task among it, and stop cleanly.
    let mut redelivered = 0;
    for w in workers {
        let said = w.stop();
        let n: u64 = said
            .split(" redelivered")
            .next()
            .and_then(|h| h.rsplit(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no redelivery count in {said}"));
        redelivered += n;
    }
    assert!(
        redelivered >= 1,
        "the killed worker's task was not redelivered"
    );
    psql("DROP DATABASE IF EXISTS dexlab_e2e_distributed WITH (FORCE)");
}

#[test]
fn a_stopped_worker_finishes_the_task_it_holds() {
    let ch = Chain::up(45, 300);
    let data = ch.dir.path().join("ds");
    ingest(&ch.url(), &ch.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();
    let nats = Nats::start();
    let w = Worker::start(&nats.url, work.path(), 0, None);
    let db = format!("sqlite://{}", work.path().join("s.sqlite").display());
    let mut run = evolve(
        &data,
        &work.path().join("x"),
        &db,
        "x",
        &["--nats", &nats.url, "--nats-stall-secs", "60"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    // SIGTERM while it evaluates a genome.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let last = w
            .log()
            .lines()
            .rev()
            .find(|l| l.contains("took task") || l.contains("finished task"))
            .map(str::to_owned);
        if let Some(l) = last.filter(|l| l.contains("took task")) {
            break l
                .split("took task ")
                .nth(1)
                .and_then(|r| r.split(' ').next())
                .unwrap()
                .to_owned();
        }
        assert!(Instant::now() < deadline, "the worker took no task");
        std::thread::sleep(Duration::from_micros(200));
    };
    let said = w.stop();
    let stop_at = said.find("stopped after").expect("a clean stop");
    assert!(
        said.contains(&format!("finished task {held}")),
        "the task it held ({held}) was dropped: {said}"
    );
    assert!(said[..stop_at].contains(&format!("finished task {held}")));
    // Another worker takes the rest.
    let _w2 = Worker::start(&nats.url, work.path(), 1, None);
    assert!(run.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn other_versions_take_nothing_and_a_missing_dataset_is_named() {
    let ch = Chain::up(42, 200);
    let data = ch.dir.path().join("ds");
    ingest(&ch.url(), &ch.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();
    let nats = Nats::start();

    // Only a worker of another build: it takes none of this version's tasks, and the run
    // fails saying so, instead of waiting for ever or trusting a result it cannot reproduce.
    let other = Worker::start(&nats.url, work.path(), 0, Some("0.0.0-other"));
    let db = format!("sqlite://{}", work.path().join("s.sqlite").display());
    let out = work.path().join("x");
    let o = evolve(
        &data,
        &out,
        &db,
        "x",
        &["--nats", &nats.url, "--nats-stall-secs", "3"],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("no result for") && err.contains("0 of them of dexlab"),
        "{err}"
    );
    assert!(err.contains("0.0.0-other"), "{err}");
    let said = other.stop();
    assert!(said.contains("stopped after 0 tasks"), "{said}");

    // A task whose dataset was never uploaded: the worker fails it, and the error says which
    // bundle is missing from which object store.
    let _w = Worker::start(&nats.url, work.path(), 1, None);
    let queue = dexlab_queue::Queue::connect(&nats.url).await.unwrap();
    let missing = "ab".repeat(32);
    let task = dexlab_lab::distributed::EvalTask {
        dataset: missing.clone(),
        model: None,
        job: dexlab_evolve::optimise::WindowJob {
            strategy: "cross-venue-arb".into(),
            config: dexlab_evolve::config::ExperimentConfig::default(),
            seed: 1,
            dataset_hash: "0".repeat(64),
            model: None,
            from: 0,
            window: (0, 10),
        },
        genome: vec![0.5f64.to_bits(); 3],
    };
    let mut payload = Vec::new();
    ciborium_into(&task, &mut payload);
    let e = queue
        .run_batch(
            dexlab_lab::distributed::EVAL,
            "missingdataset",
            vec![("g0".into(), payload.into())],
            Duration::from_secs(30),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&missing) && e.contains("not in the object store `dexlab-bundles`"),
        "{e}"
    );
    assert!(e.contains("failed on worker"), "{e}");
}

#[test]
fn dashboard_jobs_run_on_the_workers() {
    use crate::jobs::{PASSWORD, finished, launch, login};
    use serde_json::json;
    let ch = Chain::up(43, 300);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    ingest(&ch.url(), &ch.manifest_path, &root.join("chain/base"), &[]);
    let nats = Nats::start();
    let db = pg_db("dexlab_e2e_jobs_nats");
    crate::serve::add_user(&db, "rita", "researcher", PASSWORD);
    let log = work.path().join("serve.log");
    let server_jobs = work.path().join("server-jobs");
    let (server, addr) = crate::serve::serve_with(
        &db,
        Some(&log),
        &[
            "--data-root",
            root.to_str().unwrap(),
            "--jobs-dir",
            server_jobs.to_str().unwrap(),
            "--nats",
            &nats.url,
        ],
    );
    let wdir = work.path().join("worker");
    std::fs::create_dir_all(&wdir).unwrap();
    let w = Worker::start_with(
        &nats.url,
        &wdir,
        0,
        None,
        &["--jobs", "--jobs-dir", "worker-jobs"],
        &[("DATABASE_URL", &db)],
    );
    let rita = login(&addr, "rita");

    let bt = launch(
        &addr,
        &rita,
        json!({ "kind": "backtest", "dataset": "chain/base", "strategy": "cross-venue-arb" }),
    );
    let j = finished(&addr, &rita, bt);
    assert!(j["result"]["metrics"]["net_pnl_quote"].is_number(), "{j:#}");
    assert!(
        j["runner"].as_str().unwrap_or("").starts_with("worker "),
        "{j:#}"
    );
    // The worker ran it from its own copy of the dataset, in its own folder.
    assert!(wdir.join("worker-jobs").is_dir());
    assert!(
        !server_jobs
            .read_dir()
            .unwrap()
            .any(|e| e.unwrap().path().join("stdout.json").exists())
    );

    // An evolve job: its fitness goes to the queue's workers as well.
    let ev = launch(
        &addr,
        &rita,
        json!({
            "kind": "evolve", "dataset": "chain/base", "strategy": "cross-venue-arb",
            "population": 6, "generations": 2, "folds": 2, "seed": 3, "name": "queued-evolve",
        }),
    );
    let j = finished(&addr, &rita, ev);
    let id = j["result"]["experiment_id"]
        .as_i64()
        .expect("an experiment");
    let dist = distributed(&db, &id.to_string());
    assert_eq!(
        dist["workers"].as_object().map(|w| w.len()),
        Some(1),
        "{dist:#}"
    );
    crate::serve::stop(server);
    let said = w.stop();
    assert!(said.contains("stopped after"), "{said}");
    psql("DROP DATABASE IF EXISTS dexlab_e2e_jobs_nats WITH (FORCE)");
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_split_ingestion_is_the_single_run_dataset_whatever_worker_dies() {
    let ch = Chain::up(44, 400);
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("local");
    ingest(
        &ch.url(),
        &ch.manifest_path,
        &local,
        &["--chunk-blocks", "25"],
    );

    let nats = Nats::start();
    let url = ch.url();
    let mut workers: Vec<Worker> = (0..2)
        .map(|n| Worker::start_with(&nats.url, work.path(), n, None, &["--rpc", &url], &[]))
        .collect();
    let split = work.path().join("split");
    let log = work.path().join("ingest.log");
    let mut run = dexlab()
        .args(["data", "ingest", "--rpc", &url, "--json", "--quiet"])
        .arg("--manifest")
        .arg(&ch.manifest_path)
        .arg("--out")
        .arg(&split)
        // Small tasks, slowed down, so that a worker dies holding one.
        .args([
            "--chunk-blocks",
            "25",
            "--chunks-per-task",
            "1",
            "--rate",
            "8",
        ])
        .args(["--nats", &nats.url])
        .stdout(std::fs::File::create(work.path().join("ingest.json")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the ingestion ended before a worker could be killed: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(workers.remove(0));
    let status = run.wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.path().join("ingest.json")).unwrap()).unwrap();
    assert!(report["tasks"].as_u64().unwrap() >= 10, "{report}");

    // The same files, byte for byte: chunks, metadata, snapshot, checkpoint.
    let (a, b) = (files(&local), files(&split));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the file lists differ"
    );
    for (k, v) in &a {
        assert!(b[k] == *v, "{k} differs from the single run's");
    }
    assert_eq!(tables(&local), tables(&split));
    // A later ingestion resumes it like any other.
    let again = ingest(&url, &ch.manifest_path, &split, &["--chunk-blocks", "25"]);
    assert_eq!(again["blocks"], 0, "{again}");
}

#[test]
fn features_built_with_the_canary_on_workers_are_the_local_ones() {
    let ch = Chain::up(46, 300);
    let data = ch.dir.path().join("ds");
    ingest(&ch.url(), &ch.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();
    let build = |out: &Path, extra: &[&str]| {
        let o = dexlab()
            .args(["features", "build", "--json", "--data"])
            .arg(&data)
            .arg("--out")
            .arg(out)
            .args(extra)
            .env_remove("DEXLAB_NATS")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let local = work.path().join("local");
    let a = build(&local, &[]);
    let nats = Nats::start();
    let workers: Vec<Worker> = (0..2)
        .map(|n| Worker::start(&nats.url, work.path(), n, None))
        .collect();
    let split = work.path().join("split");
    let b = build(&split, &["--nats", &nats.url]);
    assert_eq!(a["leakage_check_blocks"], b["leakage_check_blocks"]);
    let cuts = a["leakage_check_blocks"].as_array().unwrap().len();
    assert!(cuts >= 2, "{a}");
    // Every cut was checked on a worker.
    let done: usize = workers
        .into_iter()
        .map(|w| {
            w.stop()
                .lines()
                .filter(|l| l.contains("finished task"))
                .count()
        })
        .sum();
    assert_eq!(done, cuts);
    for f in ["features.parquet", "manifest.json"] {
        assert!(
            std::fs::read(local.join(f)).unwrap() == std::fs::read(split.join(f)).unwrap(),
            "{f} differs from the local build's"
        );
    }
}

fn ciborium_into<T: serde::Serialize>(v: &T, out: &mut Vec<u8>) {
    let bytes = dexlab_lab::distributed::encode(v);
    out.extend_from_slice(&bytes);
}

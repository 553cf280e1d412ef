//! `dexlab demo`: the whole loop on embedded defaults, each stage a `dexlab` command of its own
//! (what a user would type), its output shown as it goes:
//!
//! 1. a living local chain (`chain up --live`: the real DEX contracts, a market trading a block
//!    every 200 ms, an operator with its executor contract);
//! 2. its history ingested (up to the block the market began living, so a second run gets the
//!    same dataset and reuses it), 3. features, 4. a model on the features a strategy can
//!    compute online;
//! 5. the arbitrage and the model-gated strategies evolved walk-forward (the model scored only
//!    on blocks it has not seen);
//! 6. the better one whose out-of-sample result beats not trading promoted (or, plainly, none);
//! 7. paper-traded, then 8. live-traded through the executor, on the running chain;
//! 9. `dexlab serve` over all of it, with the URL and a first admin's one-time password.
//!
//! A second run with the same folder reuses the dataset, features, model and experiments (each
//! command resumes or recognises its own output). Ctrl-C or SIGTERM stops every process it
//! started.

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Args)]
pub struct DemoArgs {
    /// Where everything goes (the store too, unless DATABASE_URL says otherwise).
    #[arg(long, default_value = "dexlab-demo")]
    pub out: PathBuf,
    /// The local chain's port.
    #[arg(long, default_value_t = 18545)]
    pub port: u16,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Blocks of market history before the chain goes live (the dataset).
    #[arg(long, default_value_t = 3000)]
    pub blocks: u64,
    #[arg(long, default_value_t = 16)]
    pub population: usize,
    #[arg(long, default_value_t = 6)]
    pub generations: usize,
    #[arg(long, default_value_t = 3)]
    pub folds: usize,
    /// Blocks of paper trading, then of live trading.
    #[arg(long, default_value_t = 100)]
    pub trade_blocks: u64,
    /// Where the dashboard listens at the end.
    #[arg(long, default_value = dexlab_server::DEFAULT_BIND)]
    pub bind: String,
}

const RISK: &str = include_str!("../examples/risk.toml");
const EVOLVE: &str = include_str!("../examples/evolve-devnet.toml");

/// The processes the demo started, to stop on Ctrl-C or at the end.
#[derive(Default)]
struct Children(Mutex<Vec<u32>>);

impl Children {
    fn add(&self, pid: Option<u32>) {
        if let Some(p) = pid {
            self.0.lock().expect("children").push(p);
        }
    }

    fn remove(&self, pid: Option<u32>) {
        self.0.lock().expect("children").retain(|p| Some(*p) != pid);
    }

    /// SIGTERM to each (a chain stops its anvil, a session stops between blocks), then waits
    /// until they are gone, SIGKILL after 20 s.
    async fn stop(&self) {
        let pids: Vec<u32> = std::mem::take(&mut *self.0.lock().expect("children"));
        let alive = |p: u32| {
            i32::try_from(p)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
                .is_some_and(|pid| rustix::process::test_kill_process(pid).is_ok())
        };
        let signal = |p: u32, s: rustix::process::Signal| {
            if let Some(pid) = i32::try_from(p)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, s);
            }
        };
        for &p in &pids {
            signal(p, rustix::process::Signal::TERM);
        }
        for _ in 0..200 {
            if !pids.iter().any(|&p| alive(p)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for &p in &pids {
            signal(p, rustix::process::Signal::KILL);
        }
    }
}

struct Demo {
    exe: PathBuf,
    out: PathBuf,
    db: String,
    children: Arc<Children>,
}

impl Demo {
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.exe);
        c.args(args).env("DATABASE_URL", &self.db);
        c
    }

    /// Runs `dexlab ARGS` to the end, its output shown as it is.
    async fn run(&self, args: &[&str]) -> anyhow::Result<()> {
        let text = self.capture(args).await?;
        print!("{text}");
        Ok(())
    }

    /// Runs `dexlab ARGS` to the end, its stderr shown; returns its stdout.
    async fn capture(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut c = self.command(args);
        c.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let child = c.spawn().context("starting dexlab")?;
        let pid = child.id();
        self.children.add(pid);
        let out = child.wait_with_output().await;
        self.children.remove(pid);
        let out = out?;
        if !out.status.success() {
            bail!("`dexlab {}` failed ({})", args.join(" "), out.status);
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    async fn json(&self, args: &[&str]) -> anyhow::Result<Value> {
        let text = self.capture(args).await?;
        serde_json::from_str(&text)
            .with_context(|| format!("`dexlab {}`: not JSON", args.join(" ")))
    }

    /// `dexlab ARGS` whose failure is an answer, not an error.
    async fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = self
            .command(args)
            .stderr(Stdio::null())
            .output()
            .await
            .ok()?;
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn path(&self, rel: &str) -> String {
        self.out.join(rel).to_string_lossy().into_owned()
    }
}

fn stage(n: u32, what: &str) {
    eprintln!("\n== demo {n}/9: {what}");
}

/// The features a strategy can compute online (`dexlab_strategy::online`) for the pool of the
/// first 5-block forward-return label, and that label.
fn online_features(manifest: &Value) -> anyhow::Result<(String, Vec<String>)> {
    let columns: Vec<(&str, &str)> = manifest["columns"]
        .as_array()
        .context("the features manifest lists no columns")?
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?, c["kind"].as_str()?)))
        .collect();
    let target = columns
        .iter()
        .find(|(n, k)| *k == "label" && n.starts_with("label_fwd_ret_5__"))
        .map(|(n, _)| (*n).to_owned())
        .context("the features have no 5-block forward-return label")?;
    let pool = target.trim_start_matches("label_fwd_ret_5__").to_owned();
    let features: Vec<String> = columns
        .iter()
        .filter(|(_, k)| *k == "feature")
        .map(|(n, _)| *n)
        .filter(|n| {
            n.strip_prefix(&format!("{pool}__"))
                .is_some_and(|rest| rest.starts_with("ret_") || rest.starts_with("vol_"))
                || (n.starts_with("spread_bps__") && n.contains(&pool))
        })
        .map(str::to_owned)
        .collect();
    if features.is_empty() {
        bail!("no online feature of pool {pool} in the features");
    }
    Ok((target, features))
}

/// The GA's out-of-sample net PnL and not trading's, from an experiment's summary.
fn oos(e: &Value) -> (Option<f64>, Option<f64>) {
    let runs = &e["experiment"]["summary"]["runs"];
    (
        runs["ga"]["out_of_sample_net_pnl_quote"].as_f64(),
        runs["no_trade"]["out_of_sample_net_pnl_quote"].as_f64(),
    )
}

async fn run(a: DemoArgs, d: Demo) -> anyhow::Result<()> {
    std::fs::create_dir_all(&d.out).with_context(|| format!("creating {}", d.out.display()))?;
    std::fs::write(d.out.join("risk.toml"), RISK)?;
    std::fs::write(d.out.join("evolve.toml"), EVOLVE)?;

    stage(
        1,
        "a living local chain with the real DEX contracts and a market",
    );
    let manifest = d.path("chain.json");
    let _ = std::fs::remove_file(&manifest);
    let mut chain = d
        .command(&[
            "chain",
            "up",
            "--live",
            "--port",
            &a.port.to_string(),
            "--seed",
            &a.seed.to_string(),
            "--blocks",
            &a.blocks.to_string(),
            "--manifest",
            &manifest,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the chain")?;
    d.children.add(chain.id());
    let mut lines = BufReader::new(chain.stdout.take().context("the chain's stdout")?).lines();
    let mut ws = None;
    while let Some(line) = lines.next_line().await? {
        if let Some(u) = line.strip_prefix("ws ") {
            ws = Some(u.to_owned());
            break;
        }
    }
    let ws = ws.context("the chain stopped before it was ready")?;
    // The rest of its stdout is drained, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let m: Value = serde_json::from_slice(&std::fs::read(&manifest)?)?;
    let history_end = m["last_block"]
        .as_u64()
        .context("the manifest has no last_block")?;
    let rpc = ws.replacen("ws://", "http://", 1);

    stage(2, "ingest its history into Parquet");
    d.run(&[
        "data",
        "ingest",
        "--rpc",
        &rpc,
        "--manifest",
        &manifest,
        "--out",
        &d.path("devnet"),
        "--to",
        &history_end.to_string(),
    ])
    .await?;

    stage(3, "features and labels (Polars), with the leakage canary");
    let features = d.path("features");
    if d.out.join("features/manifest.json").is_file() {
        eprintln!("reusing {features}");
    } else {
        d.run(&[
            "features",
            "build",
            "--data",
            &d.path("devnet"),
            "--out",
            &features,
        ])
        .await?;
    }

    stage(4, "a model on the features a strategy can compute online");
    let fm: Value = serde_json::from_slice(&std::fs::read(d.out.join("features/manifest.json"))?)?;
    let (target, cols) = online_features(&fm)?;
    let cfg = format!(
        "# Written by `dexlab demo`: the features the model-gated strategy computes online.\n\
         features = [{}]\nhidden = [32, 16]\nbatch_size = 128\n",
        cols.iter()
            .map(|c| format!("{c:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(d.out.join("train-gate.toml"), cfg)?;
    let model = d.path("models/demo-gate");
    if d.try_json(&["models", "show", "demo-gate", "--json"])
        .await
        .is_some()
    {
        eprintln!("reusing the registered model demo-gate");
    } else {
        d.run(&[
            "train",
            "--features",
            &features,
            "--model",
            "mlp",
            "--task",
            "regression",
            "--target",
            &target,
            "--config",
            &d.path("train-gate.toml"),
            "--seed",
            "1",
            "--epochs",
            "20",
            "--out",
            &model,
            "--name",
            "demo-gate",
        ])
        .await?;
    }

    stage(
        5,
        "evolve the arbitrage and the model-gated strategies, walk-forward",
    );
    let (pop, gens, folds) = (
        a.population.to_string(),
        a.generations.to_string(),
        a.folds.to_string(),
    );
    let mut results = Vec::new();
    for (name, strategy, extra) in [
        ("demo-arb", "cross-venue-arb", None),
        ("demo-gated", "model-gated", Some(model.as_str())),
    ] {
        let data = d.path("devnet");
        let out = d.path(&format!("experiments/{name}"));
        let cfg = d.path("evolve.toml");
        let mut args = Vec::new();
        args.extend([
            "evolve",
            "--data",
            &data,
            "--strategy",
            strategy,
            "--config",
            &cfg,
            "--seed",
            "1",
            "--population",
            &pop,
            "--generations",
            &gens,
            "--folds",
            &folds,
            "--name",
            name,
            "--out",
            &out,
            "--quiet",
        ]);
        if let Some(m) = extra {
            args.extend(["--model", m]);
        }
        d.run(&args).await?;
        let e = d.json(&["experiments", "show", name, "--json"]).await?;
        let (ga, none) = oos(&e);
        eprintln!(
            "{name}: out of sample, net PnL {} against {} for not trading",
            ga.map_or("–".into(), |v| format!("{v:.2}")),
            none.map_or("–".into(), |v| format!("{v:.2}"))
        );
        results.push((name, ga, none));
    }

    stage(
        6,
        "promote the better one, if it beats not trading out of sample",
    );
    let best = results
        .iter()
        .filter_map(|(n, ga, none)| Some((*n, (*ga)?, (*none)?)))
        .filter(|(_, ga, none)| ga > none)
        .max_by(|x, y| x.1.total_cmp(&y.1));
    let Some((winner, ga, none)) = best else {
        eprintln!(
            "neither strategy beat not trading out of sample: nothing is promoted, and nothing \
             trades"
        );
        return serve(&a, &d).await;
    };
    eprintln!("{winner}: {ga:.2} out of sample against {none:.2} for not trading");
    let current = d
        .try_json(&["deployments", "show", "demo", "--json"])
        .await
        .and_then(|v| {
            v["deployment"]["experiment_name"]
                .as_str()
                .map(str::to_owned)
        });
    if current.as_deref() == Some(winner) {
        eprintln!("the deployment `demo` already runs {winner}");
    } else {
        d.run(&[
            "promote",
            winner,
            "--risk",
            &d.path("risk.toml"),
            "--name",
            "demo",
            "--note",
            "dexlab demo",
        ])
        .await?;
    }

    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs());
    for (n, mode) in [(7, "paper"), (8, "live")] {
        stage(
            n,
            &format!(
                "{mode}-trade the deployment on the running chain ({} blocks)",
                a.trade_blocks
            ),
        );
        d.run(&[
            "live",
            "--rpc",
            &ws,
            "--mode",
            mode,
            "--manifest",
            &manifest,
            "--deployment",
            "demo",
            "--session",
            &d.path(&format!("sessions/{mode}-{stamp}")),
            "--blocks",
            &a.trade_blocks.to_string(),
        ])
        .await?;
    }
    serve(&a, &d).await
}

async fn serve(a: &DemoArgs, d: &Demo) -> anyhow::Result<()> {
    stage(9, "the dashboard over all of it");
    let exists = d
        .try_json(&["users", "list", "--json"])
        .await
        .and_then(|v| {
            v.as_array()
                .or_else(|| v["users"].as_array())
                .map(|u| u.iter().any(|x| x["username"] == "admin"))
        })
        .unwrap_or(false);
    let password = if exists {
        None
    } else {
        let text = d
            .capture(&["users", "add", "admin", "--role", "admin"])
            .await?;
        Some(text)
    };
    let mut server = d
        .command(&["serve", "--bind", &a.bind, "--data-root", &d.path("")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting the server")?;
    d.children.add(server.id());
    let mut lines = BufReader::new(server.stdout.take().context("the server's stdout")?).lines();
    let url = loop {
        match lines.next_line().await? {
            Some(l) => {
                if let Some(u) = l.strip_prefix("listening on ") {
                    break u.to_owned();
                }
            }
            None => bail!("the server stopped before it listened"),
        }
    };
    println!("dashboard: {url}/");
    match password {
        Some(p) => println!("{}", p.trim()),
        None => println!(
            "the account `admin` exists (its one-time password was shown by the first run; \
             `dexlab users add NAME --role admin` makes another)"
        ),
    }
    println!("stop with Ctrl-C: the server, the sessions and the chain stop with it");
    let status = server.wait().await?;
    d.children.remove(server.id());
    if !status.success() {
        bail!("the server stopped: {status}");
    }
    Ok(())
}

pub async fn demo_cmd(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the dexlab binary")?;
    std::fs::create_dir_all(&a.out)?;
    let out = std::fs::canonicalize(&a.out)?;
    let db = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| format!("sqlite://{}", out.join("dexlab.sqlite").display()));
    let children = Arc::new(Children::default());
    let demo = Demo {
        exe,
        out: out.clone(),
        db,
        children: children.clone(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let outcome = tokio::select! {
        r = run(a, demo) => r.map(|()| ExitCode::SUCCESS),
        _ = tokio::signal::ctrl_c() => Ok(ExitCode::from(130)),
        _ = term.recv() => Ok(ExitCode::from(143)),
    };
    eprintln!("demo: stopping what it started");
    children.stop().await;
    outcome
}

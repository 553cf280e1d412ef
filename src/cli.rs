//! Argument parsing and dispatch. Raw arguments become validated configs here and nowhere else.

use std::path::PathBuf;
use std::process::ExitCode;

use alloy::primitives::Address;
use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use dexlab_data::devnet::{self, ChainUpConfig, DEFAULT_LIVE_BLOCK_TIME_MS};
use dexlab_data::import::{ImportOptions, import};
use dexlab_data::ingest::{IngestConfig, ingest};
use dexlab_data::manifest::ChainManifest;
use dexlab_data::outdir::Staged;
use dexlab_data::types::PoolInfo;

#[derive(Parser)]
#[command(
    name = "dexlab",
    version,
    about = "From DEX research to live trading on EVM chains"
)]
struct Cli {
    /// Log filter (RUST_LOG syntax), e.g. `info` or `dexlab_data=debug`.
    #[arg(long, global = true, env = "DEXLAB_LOG", default_value = "info")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Local chains with real DEX contracts.
    #[command(subcommand)]
    Chain(ChainCmd),
    /// Chain data: ingest, import, inspect.
    #[command(subcommand)]
    Data(DataCmd),
    /// Feature and label datasets.
    #[command(subcommand)]
    Features(FeaturesCmd),
    /// Trading strategies and their parameter spaces.
    #[command(subcommand)]
    Strategies(crate::research::StrategiesCmd),
    /// Replay a dataset through a strategy with simulated on-chain execution.
    Backtest(crate::research::BacktestArgs),
    /// Tune a strategy's parameters with the genetic optimiser, walk-forward, against baselines.
    Evolve(crate::research::EvolveArgs),
    /// Evaluate fitness for `evolve --nats` runs: take tasks from a NATS JetStream queue until
    /// stopped (Ctrl-C, SIGTERM, or killed at any moment: its tasks go to other workers).
    Worker(crate::worker::WorkerArgs),
    /// Experiments in the store (DATABASE_URL, default ./dexlab.sqlite).
    #[command(subcommand)]
    Experiments(crate::research::ExperimentsCmd),
    /// Plots (PNG, SVG) and an HTML page for an experiment.
    Report(crate::research::ReportArgs),
    /// Train a predictive model (burn) on a features folder, evaluated next to naive baselines.
    Train(crate::ml::TrainArgs),
    /// Trained models in the registry (DATABASE_URL, default ./dexlab.sqlite): list, show, compare.
    #[command(subcommand)]
    Models(crate::ml::ModelsCmd),
    /// Reinforcement-learning agents (DQN, PPO) trained in the backtester, evaluated out of
    /// sample next to a random policy, no trading and the tuned heuristic.
    #[command(subcommand)]
    Rl(crate::rl::RlCmd),
    /// Trade on a node (paper: simulated fills at the head), recording the session; `live
    /// replay DIR` checks a recorded session decision for decision.
    Live(Box<crate::live::LiveArgs>),
    /// The on-chain executor contract (`contracts/DexlabExecutor.sol`): deploy it.
    #[command(subcommand)]
    Executor(crate::live::ExecutorCmd),
    /// Promote an experiment's tuned strategy (and its model) with risk limits to a named
    /// deployment that `dexlab live --deployment NAME` runs.
    Promote(crate::deploy::PromoteArgs),
    /// Deployments in the store: list, show, roll back.
    #[command(subcommand)]
    Deployments(crate::deploy::DeploymentsCmd),
    /// Accounts of the dashboard and API server (roles viewer, researcher, operator, admin).
    #[command(subcommand)]
    Users(crate::users::UsersCmd),
    /// The whole loop on embedded defaults: a living local chain, ingest, features, a model,
    /// two strategies evolved walk-forward, the better one promoted if it beats not trading,
    /// paper- then live-traded on the chain, and the dashboard over all of it.
    Demo(crate::demo::DemoArgs),
    /// The configuration reference: every TOML key with its default, every environment variable.
    #[command(subcommand)]
    Config(crate::config_ref::ConfigCmd),
    /// Backups: one archive of the store and its model, agent and session folders; restore.
    #[command(subcommand)]
    Backup(crate::backup::BackupCmd),
    /// The dashboard and API server: the REST API (/api/v1, OpenAPI at /api/v1/openapi.json,
    /// Swagger UI at /docs), /metrics, /healthz, /readyz.
    Serve(Box<crate::serve::ServeArgs>),
}

#[derive(Subcommand)]
enum FeaturesCmd {
    /// Build per-block features and labels (Polars) from a dataset, with a leakage check.
    Build(FeaturesBuildArgs),
}

#[derive(Args)]
struct FeaturesBuildArgs {
    /// Dataset folder (from `dexlab data ingest` or `import`).
    #[arg(long)]
    data: PathBuf,
    /// TOML feature config; defaults apply to what it leaves out (no file: all defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    out: PathBuf,
    /// Replace a non-empty --out (atomically, once the new features are complete).
    #[arg(long)]
    force: bool,
    /// Run the leakage canary's cuts (most of the work) on the workers of this NATS JetStream
    /// server; the folder written is the one a local build writes.
    #[arg(long, value_name = "URL", env = "DEXLAB_NATS")]
    nats: Option<String>,
    /// With --nats: give up when no cut has come back for this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS", requires = "nats")]
    nats_stall_secs: u64,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ChainCmd {
    /// Start anvil, deploy Uniswap V2 (x2), Uniswap V3 and PancakeSwap V3 from their npm bytecode,
    /// mine a reproducible market, write the manifest and keep serving until stopped; with
    /// `--live`, keep the market trading block after block until stopped.
    Up(ChainUpArgs),
}

#[derive(Args)]
struct ChainUpArgs {
    #[arg(long, default_value_t = 8545)]
    port: u16,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Market blocks to mine after deployment.
    #[arg(long, default_value_t = 1000)]
    blocks: u64,
    #[arg(long, default_value = "chain-manifest.json")]
    manifest: PathBuf,
    #[arg(long, default_value_t = 31337)]
    chain_id: u64,
    /// Seconds between the history's blocks.
    #[arg(long, default_value_t = 2)]
    block_time: u64,
    /// Exit after writing the manifest instead of serving.
    #[arg(long, conflicts_with = "live")]
    exit: bool,
    /// After the history, keep mining market blocks in real time until stopped (Ctrl-C or
    /// SIGTERM). Prints the node's RPC and WebSocket URLs on stdout once the manifest is written.
    #[arg(long)]
    live: bool,
    /// Milliseconds between live blocks [default: 200, like Base]. Block timestamps stay whole
    /// seconds: shorter blocks share them.
    #[arg(long, requires = "live", value_name = "N")]
    block_time_ms: Option<u64>,
}

#[derive(Subcommand)]
enum DataCmd {
    /// Pull pool logs, block headers and the receipts of the transactions that emitted the logs
    /// (what they paid) from a JSON-RPC node into a Parquet dataset (resumable).
    Ingest(IngestArgs),
    /// Import eth_getLogs JSON or cryo logs Parquet into a dataset.
    Import(ImportArgs),
    /// Summarise a dataset.
    Inspect(InspectArgs),
    /// Replay every pool's state and check each swap against dexlab's exact math.
    Verify(InspectArgs),
}

#[derive(Args)]
struct IngestArgs {
    #[arg(long, env = "DEXLAB_RPC_URL")]
    rpc: String,
    /// First block (default: the manifest's first block).
    #[arg(long)]
    from: Option<u64>,
    /// Last block (default: the node's head minus --confirmations).
    #[arg(long)]
    to: Option<u64>,
    /// Pools and tokens to ingest, as written by `dexlab chain up`.
    #[arg(long, conflicts_with = "pool")]
    manifest: Option<PathBuf>,
    /// Pool addresses (protocol, tokens and decimals are read from the chain).
    #[arg(long, num_args = 1..)]
    pool: Vec<Address>,
    #[arg(long)]
    out: PathBuf,
    /// Only ingest blocks at least this deep.
    #[arg(long, default_value_t = 0)]
    confirmations: u64,
    /// Blocks per Parquet chunk.
    #[arg(long, default_value_t = 1000)]
    chunk_blocks: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Requests per second at most (0 = unlimited).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Seconds before a request is abandoned and retried.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Attempts per request before giving up.
    #[arg(long, default_value_t = 8)]
    retries: u32,
    /// Block span of the first eth_getLogs request; it adapts from there.
    #[arg(long, default_value_t = 2000)]
    initial_span: u64,
    /// Print the run summary as JSON.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Do not snapshot V3 pools' ticks at the first block (replay is then exact only for pools
    /// whose history starts inside the range).
    #[arg(long)]
    no_snapshot: bool,
    /// Start over in a non-empty --out that holds something else than this ingestion.
    #[arg(long)]
    force: bool,
    /// Ingest on the workers of this NATS JetStream server (`dexlab worker --rpc URL`, each
    /// with its own node of the same chain): the block range is cut into tasks of whole chunks,
    /// and the dataset is the one a single run makes. A new dataset only (or --force).
    #[arg(long, value_name = "URL", env = "DEXLAB_NATS")]
    nats: Option<String>,
    /// With --nats: chunks (of --chunk-blocks) per task.
    #[arg(long, default_value_t = 10, requires = "nats")]
    chunks_per_task: u64,
    /// With --nats: give up when no range has come back for this many seconds.
    #[arg(long, default_value_t = 600, value_name = "SECS", requires = "nats")]
    nats_stall_secs: u64,
}

#[derive(Args)]
struct ImportArgs {
    /// eth_getLogs JSON (array or JSON lines), or a cryo logs Parquet file or folder.
    path: PathBuf,
    #[arg(long)]
    out: PathBuf,
    /// `block_number,timestamp` CSV (unix seconds or `YYYY-MM-DD HH:MM:SS` UTC).
    #[arg(long)]
    timestamps: Option<PathBuf>,
    /// Pool metadata (protocol, tokens, decimals) in the chain-manifest format.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Chain id of the logs (default: the manifest's, else 0 = unknown).
    #[arg(long)]
    chain_id: Option<u64>,
    #[arg(long, default_value_t = 10_000)]
    chunk_blocks: u64,
    /// Replace a non-empty --out (atomically, once the new dataset is complete).
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct InspectArgs {
    dir: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(quiet_clients(&cli.log)).context("--log")?,
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: not in log files or a job's log.
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Chain(ChainCmd::Up(a)) => rt.block_on(chain_up_cmd(a)),
        Command::Data(DataCmd::Ingest(a)) => rt.block_on(ingest_cmd(a)),
        Command::Data(DataCmd::Import(a)) => import_cmd(a),
        Command::Data(DataCmd::Inspect(a)) => inspect_cmd(a),
        Command::Data(DataCmd::Verify(a)) => verify_cmd(a),
        Command::Features(FeaturesCmd::Build(a)) => features_build_cmd(a, &rt),
        Command::Strategies(crate::research::StrategiesCmd::List { json }) => {
            crate::research::strategies_list(json)
        }
        Command::Backtest(a) => crate::research::backtest_cmd(a),
        Command::Evolve(a) => crate::research::evolve_cmd(a, &rt),
        Command::Worker(a) => rt.block_on(crate::worker::worker_cmd(a)),
        Command::Experiments(c) => crate::research::experiments_cmd(c, &rt),
        Command::Report(a) => crate::research::report_cmd(a, &rt),
        Command::Train(a) => crate::ml::train_cmd(a, &rt),
        Command::Models(c) => crate::ml::models_cmd(c, &rt),
        Command::Rl(c) => crate::rl::rl_cmd(c, &rt),
        Command::Live(a) => crate::live::live_cmd(*a, &rt),
        Command::Executor(c) => rt.block_on(crate::live::executor_cmd(c)),
        Command::Promote(a) => rt.block_on(crate::deploy::promote_cmd(a)),
        Command::Deployments(c) => rt.block_on(crate::deploy::deployments_cmd(c)),
        Command::Users(c) => rt.block_on(crate::users::users_cmd(c)),
        Command::Backup(c) => rt.block_on(crate::backup::backup_cmd(c)),
        Command::Demo(a) => rt.block_on(crate::demo::demo_cmd(a)),
        Command::Config(c) => crate::config_ref::config_cmd(c),
        Command::Serve(a) => rt.block_on(crate::serve::serve_cmd(*a)),
    }
}

/// `filter`, with the NATS client's connection events (connected, closed: one pair per
/// command) below the default level unless the filter names the client.
fn quiet_clients(filter: &str) -> String {
    if filter.contains("async_nats") {
        filter.to_owned()
    } else {
        format!("{filter},async_nats=warn")
    }
}

async fn chain_up_cmd(a: ChainUpArgs) -> anyhow::Result<ExitCode> {
    let cfg = ChainUpConfig {
        port: a.port,
        seed: a.seed,
        blocks: a.blocks,
        chain_id: a.chain_id,
        block_time: a.block_time,
        manifest: a.manifest.clone(),
        live_block_time_ms: a
            .live
            .then(|| a.block_time_ms.unwrap_or(DEFAULT_LIVE_BLOCK_TIME_MS)),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let started = std::time::Instant::now();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A stop during the start-up drops it, and anvil with it.
    let mut devnet = tokio::select! {
        d = devnet::start(&cfg, progress) => d?,
        _ = tokio::signal::ctrl_c() => bail!("stopped before the chain was ready"),
        _ = term.recv() => bail!("stopped before the chain was ready"),
    };
    let m = &devnet.manifest;
    eprintln!(
        "chain {} on {} ready in {:.1}s: {} pools on {} DEXes, blocks {}..{}; manifest {}",
        m.chain_id,
        devnet.node.url,
        started.elapsed().as_secs_f64(),
        m.pools.len(),
        m.dexes.len(),
        m.first_block,
        m.last_block,
        a.manifest.display()
    );
    if a.exit {
        devnet.node.stop().await;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(ms) = cfg.live_block_time_ms {
        println!("rpc {}", devnet.http_url());
        println!("ws {}", devnet.ws_url());
        eprintln!("live: a market block every {ms} ms until stopped (Ctrl-C or SIGTERM)");
        let stop = async {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        let report = devnet.mine_live(ms, stop).await;
        devnet.node.stop().await;
        let r = report.context("live mining stopped")?;
        eprintln!(
            "stopped after {} live blocks ({} trades, {} late), last block {}",
            r.blocks, r.trades, r.late_blocks, r.last_block
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("serving until stopped (Ctrl-C or SIGTERM)");
    let mut node = devnet.node;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => { node.stop().await; }
        _ = term.recv() => { node.stop().await; }
        r = node.wait() => { r?; bail!("anvil exited unexpectedly"); }
    }
    Ok(ExitCode::SUCCESS)
}

async fn ingest_cmd(a: IngestArgs) -> anyhow::Result<ExitCode> {
    let manifest = a.manifest.as_deref().map(ChainManifest::load).transpose()?;
    if manifest.is_none() && a.pool.is_empty() {
        bail!("say which pools to ingest: --manifest FILE or --pool ADDR...");
    }
    let cfg = IngestConfig {
        rpc_url: a.rpc,
        from: a.from.or(manifest.as_ref().map(|m| m.first_block)),
        to: a.to,
        pools: manifest
            .as_ref()
            .map(|m| m.pools.clone())
            .unwrap_or_default(),
        pool_addresses: a.pool,
        out: a.out,
        confirmations: a.confirmations,
        chunk_blocks: a.chunk_blocks,
        concurrency: a.concurrency,
        rate_per_sec: a.rate,
        timeout: std::time::Duration::from_secs_f64(a.timeout),
        retries: a.retries,
        initial_span: a.initial_span,
        progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        snapshot: !a.no_snapshot,
        force: a.force,
    };
    if let Some(url) = &a.nats {
        if a.chunks_per_task == 0 {
            bail!("--chunks-per-task must be at least 1");
        }
        let queue = dexlab_queue::Queue::connect(url).await?;
        let r = dexlab_lab::distributed::ingest_split(
            &queue,
            &cfg,
            a.chunks_per_task,
            std::time::Duration::from_secs(a.nats_stall_secs.max(1)),
        )
        .await?;
        if a.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            eprintln!(
                "{}{} ranges on {} workers of {}",
                r.totals,
                r.tasks,
                r.workers.len(),
                dexlab_queue::scrub_url(url)
            );
        }
        return Ok(if r.totals.malformed.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        });
    }
    let report = ingest(cfg).await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!("{report}");
    }
    Ok(if report.malformed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn import_cmd(a: ImportArgs) -> anyhow::Result<ExitCode> {
    let manifest = a.manifest.as_deref().map(ChainManifest::load).transpose()?;
    let pools: Vec<PoolInfo> = manifest
        .as_ref()
        .map(|m| m.pools.clone())
        .unwrap_or_default();
    // Built beside --out and put in place when complete: an existing dataset is never mixed with
    // this one, and a failed import leaves it as it was.
    let staged = Staged::begin(&a.out, a.force, "a dataset")?;
    let opts = ImportOptions {
        input: a.path.clone(),
        out: staged.path().to_path_buf(),
        timestamps: a.timestamps,
        pools,
        chain_id: match (a.chain_id, &manifest) {
            (Some(c), Some(m)) if c != m.chain_id => bail!(
                "--chain-id {c} contradicts the manifest {}, which is for chain {}",
                a.manifest
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                m.chain_id
            ),
            (c, m) => c.or(m.as_ref().map(|m| m.chain_id)).unwrap_or(0),
        },
        chunk_blocks: a.chunk_blocks,
    };
    let r = import(&opts)?;
    if r.logs == 0 {
        bail!(
            "{}: no logs to import ({} removed, {} unreadable lines{}); {} was left as it was",
            a.path.display(),
            r.removed_logs,
            r.skipped_lines.len(),
            r.skipped_lines
                .first()
                .map(|l| format!(", the first: {l}"))
                .unwrap_or_default(),
            a.out.display()
        );
    }
    staged.commit()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        eprintln!(
            "imported {} logs into {} chunk(s): {} swaps, {} liquidity events, {} block timestamps; {} unknown, {} malformed, {} unreadable lines",
            r.logs,
            r.chunks,
            r.swaps,
            r.liquidity_events,
            r.blocks,
            r.unknown,
            r.malformed.len(),
            r.skipped_lines.len()
        );
        for m in r.malformed.iter().chain(&r.skipped_lines) {
            eprintln!("  skipped: {m}");
        }
    }
    Ok(if r.malformed.is_empty() && r.skipped_lines.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}

fn inspect_cmd(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let r = dexlab_data::inspect::inspect(&a.dir)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{r}");
    }
    // A damaged or incomplete dataset is reported above, file by file, and fails the command.
    Ok(if r.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "error: {} is damaged or incomplete: {} problem(s), listed above",
            a.dir.display(),
            r.problems.len()
        );
        ExitCode::FAILURE
    })
}

fn verify_cmd(a: InspectArgs) -> anyhow::Result<ExitCode> {
    let meta = dexlab_data::dataset::read_meta(&a.dir)?;
    let logs = dexlab_data::dataset::read_all_logs(&a.dir)?;
    let snaps = dexlab_data::snapshot::load(&a.dir)?;
    let r = dexlab_data::replay::verify(&logs, &meta.pools, &snaps)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let pct = if r.swaps == 0 {
        0.0
    } else {
        100.0 * r.exact as f64 / r.swaps as f64
    };
    println!(
        "{} of {} swaps reproduced exactly ({pct:.2} %)",
        r.exact, r.swaps
    );
    if r.fee_changes > 0 {
        println!(
            "  {} of them under a fee the pool's fee module had changed (recovered from the swap)",
            r.fee_changes
        );
    }
    for (pool, (n, ok)) in &r.by_pool {
        println!("  {pool}  {ok}/{n}");
    }
    for (class, n) in &r.mismatches {
        println!("{n:>7} {class}: {}", dexlab_data::replay::explain(class));
        for e in r.examples.get(class).into_iter().flatten() {
            println!("          e.g. {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn features_build_cmd(
    a: FeaturesBuildArgs,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    let cfg = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            dexlab_features::FeatureConfig::from_toml(&text, &p.display().to_string())?
        }
        None => dexlab_features::FeatureConfig::default(),
    };
    let started = std::time::Instant::now();
    let staged = Staged::begin(&a.out, a.force, "a feature folder")?;
    let mut r = match &a.nats {
        Some(url) => {
            let queue = rt.block_on(dexlab_queue::Queue::connect(url))?;
            dexlab_lab::distributed::features_build_split(
                &queue,
                rt.handle(),
                &a.data,
                &cfg,
                staged.path(),
                std::time::Duration::from_secs(a.nats_stall_secs.max(1)),
            )?
        }
        None => dexlab_features::build(&a.data, &cfg, staged.path())?,
    };
    r.out = staged.commit()?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        eprintln!(
            "{} rows, {} features, {} labels in {:.2}s; leakage canary passed at blocks {:?}; wrote {}/features.parquet and manifest.json",
            r.rows,
            r.features,
            r.labels,
            started.elapsed().as_secs_f64(),
            r.leakage_check_blocks,
            r.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

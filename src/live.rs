//! `dexlab live`: paper trading on a node, and the replay of a recorded session.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use dexlab_engine::session;
use dexlab_models::scorer::ModelScorer;
use dexlab_strategy::market::Market;
use dexlab_strategy::{Strategy, TradingEnv, registry};

/// `dexlab live [--mode paper] …` runs a session; `dexlab live replay DIR` checks one.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct LiveArgs {
    #[command(subcommand)]
    pub cmd: Option<LiveCmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Subcommand)]
pub enum LiveCmd {
    /// Replay a recorded session through the backtester's driver and check that every decision
    /// (same bundles, same block) is the one the session took.
    Replay(ReplayArgs),
    /// Sessions in the store (DATABASE_URL, default ./dexlab.sqlite), newest first.
    Sessions(SessionsArgs),
    /// The kill switch: the session sends no new bundle from its next block on, until cleared.
    Kill(KillArgs),
    /// End a halt of a session: the kill switch, or a risk limit's (reverts, daily_loss).
    Clear(ClearArgs),
}

#[derive(Args)]
pub struct KillArgs {
    /// The session: its folder or its id (`dexlab live sessions`).
    pub session: String,
    /// Why, recorded with the command.
    #[arg(long, default_value = "operator's kill switch")]
    pub reason: String,
}

#[derive(Args)]
pub struct ClearArgs {
    /// The session: its folder or its id.
    pub session: String,
    /// The halt to end.
    #[arg(long, value_parser = ["kill_switch", "reverts", "daily_loss", "reconciliation"])]
    pub halt: String,
    #[arg(long, default_value = "cleared by an operator")]
    pub reason: String,
}

#[derive(Args)]
pub struct SessionsArgs {
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Simulated fills at the node's head; nothing is signed or sent.
    Paper,
    /// Signed transactions through the executor contract.
    Live,
}

#[derive(Args)]
pub struct RunArgs {
    /// The node: ws://… (subscriptions) or http://… (polling).
    #[arg(long, required = true)]
    pub rpc: Option<String>,
    /// Polled over HTTP while the WebSocket is down.
    #[arg(long)]
    pub http_fallback: Option<String>,
    #[arg(long, value_enum, default_value = "paper")]
    pub mode: Mode,
    /// Pools to track, with their metadata (`dexlab chain up` writes one).
    #[arg(long, conflicts_with = "pool")]
    pub manifest: Option<PathBuf>,
    /// Pools to track, their metadata read from the node.
    #[arg(long)]
    pub pool: Vec<alloy::primitives::Address>,
    /// A promoted deployment (strategy, parameters, model and risk limits).
    #[arg(long, conflicts_with = "strategy")]
    pub deployment: Option<String>,
    #[arg(long)]
    pub strategy: Option<String>,
    /// Strategy parameters as a JSON object (`{}`: defaults).
    #[arg(long, default_value = "{}")]
    pub params: String,
    /// The model directory of a model-driven strategy.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Experiment config; its `[backtest]` section is the execution config.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Seed of the simulated competition.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The session folder: created, or resumed when it holds one.
    #[arg(long, required = true)]
    pub session: Option<PathBuf>,
    /// Stop after this many blocks.
    #[arg(long)]
    pub blocks: Option<u64>,
    /// Risk limits of a new session (`examples/risk.toml` lists every key and its default);
    /// without it only the kill switch acts.
    #[arg(long)]
    pub risk: Option<PathBuf>,
    /// Live: the executor contract the key owns (`dexlab executor deploy`); by default the
    /// manifest's `operator.executor`.
    #[arg(long)]
    pub executor: Option<alloy::primitives::Address>,
    /// Live: the operator's key, from an encrypted keystore (its password from
    /// --password-file or DEXLAB_KEYSTORE_PASSWORD) or else DEXLAB_PRIVATE_KEY; by default the
    /// manifest's `operator.keystore`.
    #[command(flatten)]
    pub key: KeyArgs,
    /// Live: reconcile the books with the chain every this many blocks.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_every: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The session folder (`--session` of `dexlab live`).
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// Loads the model a spec names, checked against the content hash recorded with it.
fn load_model(m: &session::ModelRef) -> anyhow::Result<dexlab_strategy::ModelHandle> {
    let scorer = ModelScorer::load(&m.dir)
        .with_context(|| format!("loading the model {}", m.dir.display()))?;
    let hash = dexlab_store::content_hash(&m.dir)?;
    if hash != m.hash {
        bail!(
            "the model at {} has changed since it was recorded (sha256 {}… then, {}… now): \
             restore that model",
            m.dir.display(),
            &m.hash[..m.hash.len().min(12)],
            &hash[..hash.len().min(12)]
        );
    }
    Ok(scorer.into_handle())
}

/// Builds a session's strategies from their specs: parameters parsed, the model loaded and
/// checked against its recorded hash (once per directory), put in the environment it builds with.
// The factory is an unnameable closure; spelling its type out is the clearest it gets.
#[allow(clippy::type_complexity)]
pub(crate) fn strategy_factory()
-> impl FnMut(&session::StrategySpec, &Market, &TradingEnv) -> Result<Box<dyn Strategy>, String> + use<>
{
    let mut models: Vec<(session::ModelRef, dexlab_strategy::ModelHandle)> = Vec::new();
    move |spec: &session::StrategySpec, market: &Market, env: &TradingEnv| {
        let params = registry::parse_params(&spec.strategy, &spec.params)
            .map_err(|e| format!("the parameters of `{}`: {e}", spec.strategy))?;
        let mut env = env.clone();
        if let Some(m) = &spec.model {
            let handle = match models.iter().find(|(r, _)| r == m) {
                Some((_, h)) => h.clone(),
                None => {
                    let h = load_model(m).map_err(|e| format!("{e:#}"))?;
                    models.push((m.clone(), h.clone()));
                    h
                }
            };
            env.model = Some(handle);
        }
        registry::build(&spec.strategy, market, &env, &params).map_err(|e| e.to_string())
    }
}

pub fn live_cmd(a: LiveArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    match a.cmd {
        Some(LiveCmd::Replay(r)) => replay_cmd(&r.dir, r.json),
        Some(LiveCmd::Sessions(a)) => rt.block_on(sessions_cmd(a.json)),
        Some(LiveCmd::Kill(k)) => rt.block_on(command_cmd(
            &k.session,
            dexlab_store::RiskCommand::Kill,
            &k.reason,
        )),
        Some(LiveCmd::Clear(c)) => rt.block_on(command_cmd(
            &c.session,
            dexlab_store::RiskCommand::Clear { trip: c.halt },
            &c.reason,
        )),
        None => rt.block_on(run_cmd(a.run)),
    }
}

async fn run_cmd(a: RunArgs) -> anyhow::Result<ExitCode> {
    if a.mode == Mode::Paper && (a.executor.is_some() || a.key.keystore.is_some()) {
        bail!("--executor and --keystore are for --mode live; paper mode signs nothing");
    }
    if a.deployment.is_some() && (a.risk.is_some() || a.model.is_some() || a.config.is_some()) {
        bail!(
            "--deployment brings its own risk limits, model and execution config: drop --risk, \
             --model and --config"
        );
    }
    let (Some(rpc), Some(dir)) = (a.rpc, a.session) else {
        bail!("--rpc and --session are required");
    };
    let resuming = dir.join(session::META_FILE).exists();
    let store = dexlab_lab::open_store(dexlab_lab::Access::Write).await?;
    let new = match (&a.strategy, &a.deployment) {
        (None, Some(name)) => {
            let row = store.current_deployment(name).await?.with_context(|| {
                format!(
                    "no deployment {name} in {} (`dexlab promote` makes one; `dexlab deployments \
                     list`)",
                    store.url()
                )
            })?;
            let (sw, backtest) = dexlab_live::paper::deployment_switch(&store, &row)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            let pools = match &a.manifest {
                Some(m) => dexlab_data::manifest::ChainManifest::load(m)?.pools,
                None if a.pool.is_empty() => {
                    bail!("say which pools to track: --manifest FILE or --pool ADDR...")
                }
                None => Vec::new(),
            };
            Some(dexlab_live::paper::NewSession {
                risk: sw.risk,
                pools,
                pool_addresses: a.pool.clone(),
                strategy: sw.spec.strategy,
                params: sw.spec.params,
                backtest,
                seed: a.seed,
                model: sw.spec.model,
                deployment: Some(sw.deployment),
            })
        }
        (None, None) if resuming => None,
        (None, None) => {
            bail!("say what to trade: --deployment NAME, or --strategy NAME [--params JSON]")
        }
        (Some(name), _) => {
            let params: serde_json::Value = serde_json::from_str(&a.params)
                .map_err(|e| anyhow::anyhow!("--params is not JSON: {e}"))?;
            // Refused here rather than after connecting: a wrong name or value says so at once.
            registry::parse_params(name, &params).context("--params")?;
            let cfg = match &a.config {
                Some(p) => dexlab_evolve::config::ExperimentConfig::load(p)?,
                None => dexlab_evolve::config::ExperimentConfig::default(),
            };
            let pools = match &a.manifest {
                Some(m) => dexlab_data::manifest::ChainManifest::load(m)?.pools,
                None if a.pool.is_empty() => {
                    bail!("say which pools to track: --manifest FILE or --pool ADDR...")
                }
                None => Vec::new(),
            };
            let model = match &a.model {
                None => None,
                Some(d) => Some(session::ModelRef {
                    dir: std::path::absolute(d)?,
                    hash: dexlab_store::content_hash(d)?,
                }),
            };
            let risk = match &a.risk {
                Some(p) => Some(
                    dexlab_engine::risk::RiskLimits::load(p)
                        .map_err(|e| anyhow::anyhow!("--risk {e}"))?,
                ),
                None => None,
            };
            Some(dexlab_live::paper::NewSession {
                risk,
                pools,
                pool_addresses: a.pool.clone(),
                strategy: name.clone(),
                params,
                backtest: cfg.backtest,
                seed: a.seed,
                model,
                deployment: None,
            })
        }
    };
    let mut build = strategy_factory();
    let live = match a.mode {
        Mode::Paper => None,
        Mode::Live => {
            let operator = match &a.manifest {
                Some(m) => dexlab_data::manifest::ChainManifest::load(m)?.operator,
                None => None,
            };
            let executor = match (a.executor, &operator) {
                (Some(e), _) => e,
                (None, Some(o)) => o.executor,
                (None, None) => bail!(
                    "--mode live: say which executor contract to trade through: --executor ADDR \
                     (`dexlab executor deploy` makes one)"
                ),
            };
            let source = match (&a.key.keystore, &operator) {
                (None, Some(o)) if std::env::var_os(dexlab_live::signer::KEY_ENV).is_none() => {
                    dexlab_live::signer::KeySource::Keystore {
                        path: o.keystore.clone(),
                        password_file: o.password_file.clone(),
                    }
                }
                _ => a.key.source(),
            };
            Some(dexlab_live::onchain::LiveOptions {
                signer: dexlab_live::signer::load_key(&source)?,
                executor,
                reconcile_every: a.reconcile_every,
            })
        }
    };
    let opts = dexlab_live::paper::PaperOptions {
        live,
        rpc,
        http_fallback: a.http_fallback,
        session: dir,
        blocks: a.blocks,
        // The session's row, for `dexlab live sessions` and the dashboard.
        registry: Some(dexlab_live::paper::Registry {
            store,
            host: dexlab_lab::experiments::host_name(),
        }),
    };
    let quiet = a.json;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let summary = dexlab_live::paper::run_paper(&opts, new, &mut build, stop, |p| {
        // A disagreement between the node and the exact math is an error, printed even with
        // --json (on stderr, so the summary on stdout stays one JSON document).
        for c in &p.mismatches {
            eprintln!("error: node check: {c}");
        }
        if !quiet && (p.sent > 0 || p.outcomes > 0) {
            eprintln!(
                "block {}: {} log(s), {} bundle(s) sent, {} outcome(s)",
                p.block, p.logs, p.sent, p.outcomes
            );
        }
    })
    .await?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!(
            "{} block(s) ({}..={}), {} bundle(s): {} filled, {} reverted, {} rejected, {} \
             expired; {} reorg(s); session {} ({} blocks{})",
            summary.blocks,
            summary.first_block.map_or("-".into(), |b| b.to_string()),
            summary.last_block.map_or("-".into(), |b| b.to_string()),
            summary.bundles,
            summary.fills,
            summary.reverts,
            summary.rejected,
            summary.expired,
            summary.reorgs,
            summary.session.display(),
            summary.session_blocks,
            if summary.resumed { ", resumed" } else { "" }
        );
        println!(
            "risk: {} bundle(s) refused{}{}",
            summary.risk_refused,
            summary
                .risk_events
                .iter()
                .map(|e| format!("; {e}"))
                .collect::<String>(),
            if summary.halted.is_empty() {
                String::new()
            } else {
                format!("; HALTED at the end: {}", summary.halted.join("; "))
            }
        );
        for d in &summary.deployment_switches {
            println!("deployment: {d} took over");
        }
        for d in &summary.deployment_errors {
            println!("deployment: ERROR {d}");
        }
        if let Some(l) = &summary.live {
            println!(
                "live: executor {} (operator {}): {} transaction(s) sent, {} bundle(s) not \
                 sent{}, {} cancelled; {} reconciliation(s), {} difference(s){}",
                l.executor,
                l.operator,
                l.sent,
                l.dropped_by_check,
                l.first_drop
                    .as_deref()
                    .map(|d| format!(" (first {d})"))
                    .unwrap_or_default(),
                l.cancelled,
                l.reconciliations,
                l.differences.len(),
                l.differences
                    .iter()
                    .map(|d| format!("\n  DIFFERENCE {d}"))
                    .collect::<String>()
            );
            for t in &l.tokens {
                println!(
                    "  {:<8} on chain {} (change {}), ledger {} (change {}){}",
                    t.symbol,
                    t.onchain,
                    t.onchain_balance_change,
                    t.ledger,
                    t.ledger_balance_change,
                    if t.agrees { "" } else { "  DIFFERS" }
                );
            }
        }
        println!(
            "node check: {} bundle(s) simulated on the node, {} disagreed with the exact math, \
             {} could not be asked{}",
            summary.node_checked,
            summary.node_mismatches,
            summary.node_unavailable,
            summary
                .first_node_unavailable
                .as_deref()
                .map_or(String::new(), |r| format!(" (first: {r})"))
        );
    }
    if summary.node_mismatches > 0 {
        eprintln!(
            "error: {} bundle(s) where the node and the exact math disagree; first: {}",
            summary.node_mismatches,
            summary.first_node_mismatch.as_deref().unwrap_or("-")
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds an operator's command to a session in the store; the running engine applies it before
/// its next block.
async fn command_cmd(
    session: &str,
    command: dexlab_store::RiskCommand,
    reason: &str,
) -> anyhow::Result<ExitCode> {
    let store = dexlab_lab::open_store(dexlab_lab::Access::Write).await?;
    // A folder is stored absolute; an id is all digits.
    let key = if session.bytes().all(|b| b.is_ascii_digit()) {
        session.to_owned()
    } else {
        std::path::absolute(session)?.display().to_string()
    };
    let Some(row) = store.find_session(&key).await? else {
        bail!(
            "no session {session} in {} (`dexlab live sessions` lists them)",
            store.url()
        );
    };
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let by = format!("{user}@{}", dexlab_lab::experiments::host_name());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let id = store
        .add_risk_command(row.id, &command, reason, &by, now)
        .await?;
    let what = match &command {
        dexlab_store::RiskCommand::Kill => "kill switch".to_owned(),
        dexlab_store::RiskCommand::Clear { trip } => format!("clear of the {trip} halt"),
    };
    println!(
        "{what} for session {} ({}) recorded as command {id}{}",
        row.id,
        row.dir,
        if row.status == dexlab_store::SessionStatus::Running {
            "; the engine applies it before its next block"
        } else {
            "; the session is not running: it applies when the session is resumed"
        }
    );
    Ok(ExitCode::SUCCESS)
}

async fn sessions_cmd(json: bool) -> anyhow::Result<ExitCode> {
    let store = dexlab_lab::open_store(dexlab_lab::Access::Read).await?;
    let rows = store.list_sessions().await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("no sessions in {}", store.url());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>4}  {:<5}  {:<8}  {:<18}  {:>8}  {:>10}  {:>7}  {:>6}  dir",
        "id", "mode", "status", "strategy", "blocks", "last", "bundles", "fills"
    );
    for r in rows {
        println!(
            "{:>4}  {:<5}  {:<8}  {:<18}  {:>8}  {:>10}  {:>7}  {:>6}  {}{}",
            r.id,
            r.mode.as_str(),
            r.status.as_str(),
            r.strategy,
            r.progress.blocks,
            r.progress.last_block.map_or("-".into(), |b| b.to_string()),
            r.progress.bundles,
            r.progress.fills,
            r.dir,
            r.error.map_or(String::new(), |e| format!("  ({e})"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn replay_cmd(dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let rec = session::read(dir)?;
    let mut build = strategy_factory();
    let cfg = session::SessionRun::exec_config(&rec.meta)?;
    let mut run = session::SessionRun::start(&rec.meta, &cfg, &mut build)?;
    let diff = run.replay(&rec.blocks, true, &mut build)?;
    let report = session::ReplayReport {
        blocks: rec.blocks.len() as u64,
        decisions: rec.blocks.iter().map(|b| b.sent.len() as u64).sum(),
        identical: diff.is_none(),
        first_difference: diff,
        reorgs: rec.reorgs,
        torn_last_line: rec.torn,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} blocks, {} decisions, {} reorg(s){}: {}",
            report.blocks,
            report.decisions,
            report.reorgs,
            if report.torn_last_line {
                "; the last line was torn (a killed process) and left out"
            } else {
                ""
            },
            if report.identical {
                "every decision identical"
            } else {
                "decisions differ"
            }
        );
        if let Some(d) = &report.first_difference {
            println!(
                "first difference at block {}: recorded {}, replayed {}",
                d.block,
                serde_json::to_string(&d.recorded)?,
                serde_json::to_string(&d.replayed)?
            );
        }
    }
    Ok(if report.identical {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[derive(Subcommand)]
pub enum ExecutorCmd {
    /// Deploy the executor from the operator's account and print its address.
    Deploy(DeployArgs),
}

/// Where the operator's key is: `--keystore FILE` (password from `--password-file` or
/// DEXLAB_KEYSTORE_PASSWORD), else the environment variable DEXLAB_PRIVATE_KEY.
#[derive(Args)]
pub struct KeyArgs {
    #[arg(long)]
    pub keystore: Option<PathBuf>,
    #[arg(long, requires = "keystore")]
    pub password_file: Option<PathBuf>,
}

impl KeyArgs {
    pub fn source(&self) -> dexlab_live::signer::KeySource {
        match &self.keystore {
            Some(path) => dexlab_live::signer::KeySource::Keystore {
                path: path.clone(),
                password_file: self.password_file.clone(),
            },
            None => dexlab_live::signer::KeySource::Env,
        }
    }
}

#[derive(Args)]
pub struct DeployArgs {
    #[arg(long)]
    pub rpc: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Highest gas price to pay, wei per gas.
    #[arg(long, default_value_t = 1_000_000_000)]
    pub max_gas_price_wei: u128,
    /// How long to wait for the deployment to be mined, seconds.
    #[arg(long, default_value_t = 60)]
    pub wait: u64,
    #[arg(long)]
    pub json: bool,
}

pub async fn executor_cmd(c: ExecutorCmd) -> anyhow::Result<ExitCode> {
    let ExecutorCmd::Deploy(a) = c;
    let key = dexlab_live::signer::load_key(&a.key.source())?;
    let provider = alloy::providers::ProviderBuilder::new()
        .connect(&a.rpc)
        .await
        .with_context(|| format!("connecting to {}", dexlab_data::ingest::redact(&a.rpc)))?
        .erased();
    use alloy::providers::Provider as _;
    let head = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await?
        .context("the node has no head block")?;
    let base_fee = u128::from(head.header.base_fee_per_gas.unwrap_or(0));
    let fees = dexlab_live::signer::Fees::for_block(base_fee, 0, a.max_gas_price_wei)
        .with_context(|| {
            format!(
                "the base fee is {base_fee} wei, over --max-gas-price-wei {}",
                a.max_gas_price_wei
            )
        })?;
    let code = dexlab_data::tools::artifact("DexlabExecutor")?.bytecode;
    // The deployment's own nonce bookkeeping lives only as long as the command.
    let scratch = tempfile::tempdir()?;
    let (mut sender, _) = dexlab_live::signer::Sender::open(provider, key, scratch.path()).await?;
    let owner = sender.address();
    let (address, receipt) = sender
        .deploy(
            code,
            3_000_000,
            fees,
            std::time::Duration::from_secs(a.wait),
        )
        .await?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "executor": address,
                "owner": owner,
                "tx": receipt.hash,
                "block": receipt.block,
                "gas_used": receipt.gas_used,
                "cost_wei": receipt.cost_wei().to_string(),
            })
        );
    } else {
        println!(
            "executor {address} (owner {owner}), deployed in block {} by {}",
            receipt.block.unwrap_or(0),
            receipt.hash
        );
    }
    Ok(ExitCode::SUCCESS)
}

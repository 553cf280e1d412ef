//! Paper trading: the session engine of `dexlab-engine` driven by the node feed, bundles filled
//! by the simulated executor at the head, every block recorded in the session folder.
//!
//! Every bundle is also put to the node: simulated through the executor contract's code with
//! `eth_call` and a state override at its decision block, next to the engine's exact math on the
//! same state (the chain's, without our simulated trades). Both are recorded; any difference is
//! an error naming the block and the bundle.
//!
//! A new session bootstraps the tracked pools' state from the node at its head (pinned by hash)
//! and starts the feed right after that block. An existing session is resumed: its records are
//! replayed through the same engine (which must take the same decisions again, or the code or
//! the model changed and the session is refused), and the feed starts after its last recorded
//! block, so a killed process loses at most the block it was writing. A reorg is recorded, and
//! the engine is rebuilt from the records up to the common ancestor before the new branch is
//! applied, so its state is what a run that never saw the dropped blocks would have.

use std::future::Future;
use std::path::PathBuf;
use std::time::Instant;

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::BlockId;
use dexlab_data::types::PoolInfo;
use dexlab_engine::backtest::ExecConfig;
use dexlab_engine::config::BacktestConfig;
use dexlab_engine::driver::Executor as _;
use dexlab_engine::risk::{RiskEvent, RiskLimits, TripKind};
use dexlab_engine::session::{
    self, BlockRecord, ModelRef, NodeCheck, Record, SessionMeta, SessionMode, SessionRun,
    SessionWriter, StrategyFactory,
};
use dexlab_strategy::FillStatus;
use dexlab_strategy::market::{BlockInfo, PoolState};
use serde::Serialize;

use crate::executor::NodeSim;
use crate::feed::{BlockRef, FeedConfig, FeedEvent, NodeFeed, Start};

/// Why a paper session stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum PaperError {
    #[error(transparent)]
    Session(#[from] session::SessionError),
    #[error(transparent)]
    Feed(#[from] crate::FeedError),
    #[error(transparent)]
    Bootstrap(#[from] crate::BootstrapError),
    #[error("node {url}: {message}")]
    Node { url: String, message: String },
    #[error("session {}: {message}", dir.display())]
    Refused { dir: PathBuf, message: String },
    #[error("session {}: the store: {source}", dir.display())]
    Store {
        dir: PathBuf,
        #[source]
        source: dexlab_store::StoreError,
    },
    #[error("session {}: live: {source}", dir.display())]
    Live {
        dir: PathBuf,
        #[source]
        source: crate::onchain::LiveError,
    },
}

/// Where and how long to trade.
#[derive(Debug, Clone)]
pub struct PaperOptions {
    /// `ws://…` (subscriptions) or `http://…` (polling).
    pub rpc: String,
    /// Polled while the WebSocket is down.
    pub http_fallback: Option<String>,
    pub session: PathBuf,
    /// Stop after this many blocks of this run.
    pub blocks: Option<u64>,
    /// Where the session's row goes (the store the dashboard reads), if anywhere.
    pub registry: Option<Registry>,
    /// Live mode: bundles signed and sent through the operator's executor contract. `None`:
    /// paper mode, simulated fills.
    pub live: Option<crate::onchain::LiveOptions>,
}

/// The store that lists sessions, and this machine's name for their rows.
#[derive(Clone)]
pub struct Registry {
    pub store: dexlab_store::Store,
    pub host: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("store", &self.store.url())
            .field("host", &self.host)
            .finish()
    }
}

/// How often a running session's row is brought up to date.
const ROW_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Live events each session keeps in the store (about 11 hours of 200 ms blocks), pruned every
/// [`PRUNE_EVERY`] blocks.
const EVENTS_KEPT: u32 = 200_000;
const PRUNE_EVERY: u64 = 1_000;

/// One block's counts for its live event.
#[derive(Default)]
struct BlockEvent {
    sent: u64,
    filled: u64,
    reverted: u64,
    rejected: u64,
    expired: u64,
    risk: Vec<serde_json::Value>,
}

fn finite_or_null(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What a new session runs (a resumed one runs what it recorded).
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Pools with their metadata (a manifest's) ...
    pub pools: Vec<PoolInfo>,
    /// ... and pools to discover from the node by address.
    pub pool_addresses: Vec<alloy::primitives::Address>,
    pub strategy: String,
    pub params: serde_json::Value,
    pub backtest: BacktestConfig,
    pub seed: u64,
    pub model: Option<ModelRef>,
    /// Risk limits (`None`: only the kill switch).
    pub risk: Option<RiskLimits>,
    /// The deployment these come from, whose later versions take over the running session at
    /// block boundaries (read from the registry's store before every block).
    pub deployment: Option<session::DeploymentRef>,
}

/// The run's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PaperSummary {
    pub session: PathBuf,
    /// Blocks processed by this run.
    pub blocks: u64,
    /// Blocks in the session after this run (a resumed session counts its earlier ones too).
    pub session_blocks: u64,
    pub first_block: Option<u64>,
    pub last_block: Option<u64>,
    /// Bundles sent, and how they ended, in this run.
    pub bundles: u64,
    pub fills: u64,
    pub reverts: u64,
    pub rejected: u64,
    pub expired: u64,
    pub reorgs: u64,
    /// Bundles simulated on the node through the executor's code (paper mode's node check) ...
    pub node_checked: u64,
    /// ... of which the node and the exact math disagreed: each is an error, logged with its
    /// block and bundle, and the first is kept here.
    pub node_mismatches: u64,
    pub first_node_mismatch: Option<String>,
    /// Bundles the node could not be asked about (RPC error, state no longer kept, a family
    /// the executor does not trade yet), and the first reason.
    pub node_unavailable: u64,
    pub first_node_unavailable: Option<String>,
    /// Blocks after the bootstrap block that warmed the strategy up (no trading) ...
    pub warmup_blocks: u64,
    /// ... or why the session started cold although the strategy asked for a warm-up.
    pub warmup_skipped: Option<String>,
    /// The run continued a session found in the folder.
    pub resumed: bool,
    /// Bundles the risk manager refused in this run, and each halt it began or ended (with
    /// its block), operators' commands included.
    pub risk_refused: u64,
    pub risk_events: Vec<String>,
    /// The halts in force at the end (a halt outlives the process: a resumed session replays
    /// into it).
    pub halted: Vec<String>,
    /// Time inside the engine per block (logs in, decision out; the node's time excluded).
    pub step_us_p50: Option<f64>,
    pub step_us_p99: Option<f64>,
    /// Bundles still in flight at the end (sent, no outcome yet).
    pub in_flight: u64,
    /// Deployment versions that took over during this run (with their block), and those that
    /// could not (with why).
    pub deployment_switches: Vec<String>,
    pub deployment_errors: Vec<String>,
    /// Live mode: transactions, checks, cancellations, and the executor's holdings by the chain
    /// and by the books at the last reconciliation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<crate::onchain::LiveSummary>,
    /// The tracked pools' state as the chain has it at the end (our simulated trades left out),
    /// for checks against a fresh bootstrap.
    #[serde(skip)]
    pub reference_states: Vec<PoolState>,
}

/// One block as it went, for progress lines.
#[derive(Debug, Clone)]
pub struct Progress {
    pub block: u64,
    pub logs: usize,
    pub sent: usize,
    pub outcomes: usize,
    /// Node checks of this block that disagreed with the exact math.
    pub mismatches: Vec<NodeCheck>,
}

async fn connect(url: &str) -> Result<DynProvider, PaperError> {
    let p = ProviderBuilder::new()
        .connect(url)
        .await
        .map_err(|e| PaperError::Node {
            url: dexlab_data::ingest::redact(url),
            message: e.to_string(),
        })?;
    Ok(p.erased())
}

/// Runs a paper session until `stop` resolves, the block budget is spent, or an error.
pub async fn run_paper(
    opts: &PaperOptions,
    new: Option<NewSession>,
    build: &mut StrategyFactory<'_>,
    stop: impl Future<Output = ()>,
    mut progress: impl FnMut(&Progress),
) -> Result<PaperSummary, PaperError> {
    let dir = opts.session.clone();
    let refused = |message: String| PaperError::Refused {
        dir: dir.clone(),
        message,
    };
    // One writer per session: a second `dexlab live` on it is refused, naming the first.
    let _lock =
        dexlab_data::outdir::OutputLock::acquire(&dir).map_err(|e| refused(e.to_string()))?;
    let provider = connect(&opts.rpc).await?;
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| PaperError::Node {
            url: dexlab_data::ingest::redact(&opts.rpc),
            message: format!("eth_chainId: {e}"),
        })?;
    let resumed = dir.join(session::META_FILE).exists();
    let mode = if opts.live.is_some() {
        SessionMode::Live
    } else {
        SessionMode::Paper
    };
    let node_err = |message: String| PaperError::Node {
        url: dexlab_data::ingest::redact(&opts.rpc),
        message,
    };
    let mut warmup_skipped = None;
    let (meta, start_after, mut writer, records) = if resumed {
        let rec = session::read(&dir)?;
        if rec.meta.mode != mode {
            return Err(refused(format!(
                "it is a {:?} session; resume it in the mode it was started in",
                rec.meta.mode
            )));
        }
        if let (Some(l), Some(o)) = (&rec.meta.live, &opts.live)
            && (l.operator != o.signer.address() || l.executor != o.executor)
        {
            return Err(refused(format!(
                "it trades through executor {} owned by {}; the key given is {}'s and the \
                 executor {}",
                l.executor,
                l.operator,
                o.signer.address(),
                o.executor
            )));
        }
        if rec.meta.chain_id != chain_id {
            return Err(refused(format!(
                "it trades chain {}, the node serves chain {chain_id}",
                rec.meta.chain_id
            )));
        }
        if let Some(n) = &new
            && n.deployment.is_some()
        {
            let (had, has) = (
                rec.meta.deployment.as_ref().map(|d| &d.name),
                n.deployment.as_ref().map(|d| &d.name),
            );
            if had != has {
                return Err(refused(format!(
                    "it runs deployment {}; resume it with the same --deployment, or choose \
                     another --session folder",
                    had.map_or("none (it was started with --strategy)".into(), |d| d
                        .clone())
                )));
            }
        } else if let Some(n) = &new
            && n.risk != rec.meta.risk
        {
            return Err(refused(format!(
                "it trades under the risk limits {:?}; resume it with the same --risk file, or \
                 choose another --session folder",
                rec.meta.risk
            )));
        }
        if let Some(n) = &new
            && (n.strategy != rec.meta.strategy || n.params != rec.meta.params)
        {
            return Err(refused(format!(
                "it runs `{}` with {}; resume it with the same strategy and parameters, or \
                 choose another --session folder",
                rec.meta.strategy, rec.meta.params
            )));
        }
        let after = match rec.blocks.last() {
            Some(b) => BlockRef {
                number: b.block.number,
                hash: b.hash.ok_or_else(|| {
                    refused(format!(
                        "block {} was recorded without its hash",
                        b.block.number
                    ))
                })?,
            },
            None => bootstrap_ref(&rec.meta, &provider).await?,
        };
        let writer = SessionWriter::append_to(&dir, rec.complete_len)?;
        (rec.meta.clone(), after, writer, rec.blocks)
    } else {
        let Some(n) = new else {
            return Err(refused(
                "holds no session; give the strategy to start one".into(),
            ));
        };
        let mut pools = n.pools;
        if !n.pool_addresses.is_empty() {
            pools.extend(
                dexlab_data::discover::discover_pools(&provider, &n.pool_addresses)
                    .await
                    .map_err(|e| refused(format!("--pool: {e}")))?,
            );
        }
        dexlab_data::manifest::validate_pools(&pools)
            .map_err(|m| refused(format!("pool metadata: {m}")))?;
        // The strategy's warm-up, as a backtest gives it: the session starts that many blocks
        // back and watches them before it trades. A node that no longer keeps the state there
        // (not an archive node) gives a cold start, said in the summary.
        let want = {
            let (metas, _) = dexlab_engine::tape::initial_market(&pools, &[])
                .map_err(session::SessionError::from)?;
            let probe = n
                .backtest
                .resolve_for(&metas, n.seed)
                .map_err(session::SessionError::from)?;
            let spec = session::StrategySpec {
                strategy: n.strategy.clone(),
                params: n.params.clone(),
                model: n.model.clone(),
            };
            let s = build(
                &spec,
                &dexlab_strategy::market::Market::new(metas),
                &probe.env,
            )
            .map_err(|m| refused(format!("strategy `{}`: {m}", n.strategy)))?;
            s.warmup_blocks().min(probe.max_warmup_blocks) as u64
        };
        let states = match warm_start(&provider, &pools, want).await {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!("cold start: {reason}");
                warmup_skipped = Some(reason);
                crate::bootstrap_latest(&provider, &pools).await?
            }
        };
        let head = provider
            .get_block_number()
            .await
            .map_err(|e| PaperError::Node {
                url: dexlab_data::ingest::redact(&opts.rpc),
                message: format!("eth_blockNumber: {e}"),
            })?;
        let warmup_blocks = if warmup_skipped.is_some() {
            0
        } else {
            want.min(head.saturating_sub(states.block.number))
        };
        // Live: the executor must be the key's, and the books start from what it holds.
        let live = match &opts.live {
            None => None,
            Some(o) => {
                let at = BlockId::hash(states.block.hash);
                let owner = crate::executor::owner_of(&provider, o.executor, at)
                    .await
                    .map_err(|m| refused(format!("--executor: {m}")))?;
                if owner != o.signer.address() {
                    return Err(refused(format!(
                        "the executor {} is owned by {owner}, not by the key's account {}",
                        o.executor,
                        o.signer.address()
                    )));
                }
                let mut tokens: Vec<_> = pools
                    .iter()
                    .flat_map(|p| [p.token0.address, p.token1.address])
                    .collect();
                tokens.sort();
                tokens.dedup();
                let mut balances = Vec::new();
                for t in tokens {
                    let amount = crate::executor::balance_of(&provider, t, o.executor, at)
                        .await
                        .map_err(node_err)?;
                    if !amount.is_zero() {
                        balances.push(session::TokenBalance { token: t, amount });
                    }
                }
                let operator_balance = provider
                    .get_balance(o.signer.address())
                    .block_id(at)
                    .await
                    .map_err(|e| node_err(format!("eth_getBalance: {e}")))?;
                Some(session::LiveMeta {
                    executor: o.executor,
                    operator: o.signer.address(),
                    balances,
                    operator_balance,
                    reconcile_every: o.reconcile_every.max(1),
                })
            }
        };
        let meta = SessionMeta {
            format: session::FORMAT,
            mode,
            chain_id,
            pools,
            strategy: n.strategy,
            params: n.params,
            backtest: n.backtest,
            seed: n.seed,
            model: n.model,
            bootstrap_block: states.block.number,
            bootstrap_hash: Some(states.block.hash),
            warmup_blocks,
            snapshots: states.pools,
            risk: n.risk,
            live,
            deployment: n.deployment,
        };
        let writer = SessionWriter::create(&dir, &meta)?;
        (meta, states.block, writer, Vec::new())
    };

    let cfg: ExecConfig = SessionRun::exec_config(&meta)?;
    let mut run = SessionRun::start(&meta, &cfg, &mut *build)?;
    // What the books were worth at the bootstrap block: the live events' PnL is against it.
    let start_equity = run.driver.valuation().0;
    if let Some(d) = run.replay(&records, true, &mut *build)? {
        return Err(refused(format!(
            "replaying its records decides otherwise at block {} than the session did (the \
             code, the model or the config changed since it was recorded): check it with \
             `dexlab live replay`, and start a new session",
            d.block
        )));
    }
    // The deployment version in force: the session's last switch, or the one it started with.
    let mut following = meta.deployment.as_ref().map(|d| {
        let v = records
            .iter()
            .rev()
            .find_map(|b| b.switch.as_ref().map(|s| s.deployment.version))
            .unwrap_or(d.version);
        (d.name.clone(), v)
    });
    // A version that could not take over is not tried again every block.
    let mut refused_version: Option<u32> = None;
    let mut session_blocks = records.len() as u64;
    // The session's totals before this run, for its row.
    let before = dexlab_store::SessionProgress {
        blocks: session_blocks,
        last_block: records.last().map(|b| b.block.number),
        bundles: records.iter().map(|b| b.sent.len() as u64).sum(),
        fills: records
            .iter()
            .flat_map(|b| &b.outcomes)
            .filter(|o| o.status == FillStatus::Filled)
            .count() as u64,
        node_mismatches: records
            .iter()
            .flat_map(|b| &b.node_checks)
            .filter(|c| c.agrees() == Some(false))
            .count() as u64,
        updated_at: unix_now(),
    };
    drop(records);
    let store_err = |source| PaperError::Store {
        dir: dir.clone(),
        source,
    };
    let row = match &opts.registry {
        None => None,
        Some(r) => {
            let abs = std::path::absolute(&dir).map_err(|e| refused(e.to_string()))?;
            let id = r
                .store
                .start_session(&dexlab_store::NewSessionRow {
                    dir: abs.display().to_string(),
                    mode: meta.mode,
                    chain_id: meta.chain_id,
                    strategy: meta.strategy.clone(),
                    params: meta.params.clone(),
                    model_hash: meta.model.as_ref().map(|m| m.hash.clone()),
                    bootstrap_block: meta.bootstrap_block,
                    pid: i64::from(std::process::id()),
                    host: r.host.clone(),
                    started_at: unix_now(),
                })
                .await
                .map_err(store_err)?;
            Some((&r.store, id))
        }
    };

    let next_block = start_after.number + 1;
    let addresses = meta.pools.iter().map(|p| p.address).collect();
    let mut feed_cfg =
        FeedConfig::new(opts.rpc.clone(), addresses).starting(Start::After(start_after));
    if let Some(h) = &opts.http_fallback {
        feed_cfg = feed_cfg.with_http_fallback(h.clone());
    }
    let mut feed = NodeFeed::new(feed_cfg)?;
    let mut node_sim =
        NodeSim::from_artifact(provider.clone()).map_err(|message| PaperError::Node {
            url: dexlab_data::ingest::redact(&opts.rpc),
            message: format!("node check: {message}"),
        })?;
    // Node errors can quote the URL, which may hold an API key.
    let live_err = |source: crate::onchain::LiveError| {
        let mut m = source.to_string();
        for u in std::iter::once(&opts.rpc).chain(opts.http_fallback.as_ref()) {
            m = m.replace(u.as_str(), &dexlab_data::ingest::redact(u));
        }
        PaperError::Live {
            dir: dir.clone(),
            source: crate::onchain::LiveError::Node(m),
        }
    };
    let mut live = match (&opts.live, &meta.live) {
        (Some(o), Some(l)) => {
            let gas_cap = meta
                .risk
                .as_ref()
                .map_or(u128::MAX, |r| r.max_gas_price_wei);
            Some(
                crate::onchain::LiveExec::open(
                    provider.clone(),
                    o,
                    &dir,
                    &run,
                    gas_cap,
                    l.balances.clone(),
                    l.operator_balance,
                    next_block,
                )
                .await
                .map_err(live_err)?,
            )
        }
        _ => None,
    };
    let reconcile_every = meta.live.as_ref().map_or(0, |l| l.reconcile_every.max(1));
    // A reconciliation's difference halts trading from the next block on (recorded there).
    let mut trip: Option<RiskEvent> = None;
    // Commands of blocks a reorg dropped, to bind again at the next block.
    let mut carried: Vec<RiskEvent> = Vec::new();
    let mut last_ref: Option<BlockRef> = None;
    let mut summary = PaperSummary {
        session: dir.clone(),
        warmup_blocks: meta.warmup_blocks,
        warmup_skipped,
        resumed,
        ..PaperSummary::default()
    };
    let mut step_us: Vec<f64> = Vec::new();
    tokio::pin!(stop);
    let mut row_at = Instant::now();
    let progress_of = |s: &PaperSummary, blocks: u64, before: &dexlab_store::SessionProgress| {
        dexlab_store::SessionProgress {
            blocks,
            last_block: s.last_block.or(before.last_block),
            bundles: before.bundles + s.bundles,
            fills: before.fills + s.fills,
            node_mismatches: before.node_mismatches + s.node_mismatches,
            updated_at: unix_now(),
        }
    };
    let ended: Result<(), PaperError> = async {
        loop {
            if opts.blocks.is_some_and(|n| summary.blocks >= n) {
                break;
            }
            let ev = tokio::select! {
                () = &mut stop => break,
                ev = feed.next() => ev?,
            };
            match ev {
                FeedEvent::Block(b) => {
                    let block = BlockInfo {
                        number: b.number,
                        timestamp: b.timestamp,
                        timestamp_ms: b.timestamp_ms,
                        base_fee: b.base_fee,
                        l1: None,
                    };
                    // Operators' commands issued since the last block bind this block's decision.
                    let pending = match row {
                        Some((store, id)) => {
                            store.pending_risk_commands(id).await.map_err(store_err)?
                        }
                        None => Vec::new(),
                    };
                    let mut commands: Vec<RiskEvent> = pending.iter().map(risk_event).collect();
                    commands.extend(trip.take());
                    commands.append(&mut carried);
                    // A new version of the deployment takes over at this block boundary.
                    let mut switch = None;
                    if let (Some((store, _)), Some((name, version))) = (row, following.as_mut())
                        && let Some(cur) =
                            store.current_deployment(name).await.map_err(store_err)?
                        && cur.version != *version
                        && refused_version != Some(cur.version)
                    {
                        let taken = match deployment_switch(store, &cur).await {
                            Ok((sw, bt)) if bt == meta.backtest => run
                                .switch(&sw, &mut *build)
                                .map(|()| sw)
                                .map_err(|e| e.to_string()),
                            Ok(_) => Err("its execution config ([backtest]) differs from the \
                                          session's: start a new session to run it"
                                .to_owned()),
                            Err(e) => Err(e),
                        };
                        match taken {
                            Ok(sw) => {
                                *version = cur.version;
                                tracing::warn!(
                                    "block {}: deployment {} takes over",
                                    b.number,
                                    sw.deployment
                                );
                                summary
                                    .deployment_switches
                                    .push(format!("block {}: {}", b.number, sw.deployment));
                                switch = Some(sw);
                            }
                            Err(why) => {
                                refused_version = Some(cur.version);
                                let m = format!(
                                    "block {}: deployment {name}@v{} did not take over: {why}",
                                    b.number, cur.version
                                );
                                tracing::error!("{m}");
                                summary.deployment_errors.push(m);
                            }
                        }
                    }
                    // Live: what the chain did with our bundles, up to this block.
                    let chain = match live.as_mut() {
                        Some(l) => l.before_block(&b).await.map_err(live_err)?,
                        None => Vec::new(),
                    };
                    let t = Instant::now();
                    let log = run.step_with(block, &b.logs, &commands, &chain)?;
                    step_us.push(t.elapsed().as_secs_f64() * 1e6);
                    // The node check. Paper: every bundle sent here, simulated through the
                    // executor's code on the node's state at this block, next to the exact math
                    // on the same state. Live: put to the deployed executor the same way, and
                    // only sent if it would fill.
                    let maths: Vec<_> = match live {
                        Some(_) => Vec::new(),
                        None => log
                            .sent
                            .iter()
                            .map(|p| run.driver.reference_legs(&p.bundle))
                            .collect(),
                    };
                    let mut node_checks = Vec::with_capacity(log.sent.len());
                    if let Some(l) = live.as_mut() {
                        let refused: Vec<u64> = log.outcomes.iter().map(|o| o.id).collect();
                        node_checks = l.check(&run, &b, &log.sent, &refused).await;
                    }
                    for (p, math) in log.sent.iter().zip(maths) {
                        let at = BlockId::hash(b.hash);
                        let pools = &run.driver.market.pools;
                        let mut check = NodeCheck {
                            id: p.id,
                            block: b.number,
                            math,
                            node: node_sim.simulate(at, pools, &p.bundle).await,
                        };
                        // A node may answer a call at its head from live state that the next
                        // block changes while the call waits (anvil does): a disagreement seen
                        // after the head moved on is asked again, now of the stored state.
                        if check.agrees() == Some(false)
                            && provider
                                .get_block_number()
                                .await
                                .is_ok_and(|h| h > b.number)
                        {
                            check.node = node_sim.simulate(at, pools, &p.bundle).await;
                        }
                        node_checks.push(check);
                    }
                    let mut mismatches = Vec::new();
                    for c in &node_checks {
                        match c.agrees() {
                            Some(true) => summary.node_checked += 1,
                            Some(false) => {
                                summary.node_checked += 1;
                                summary.node_mismatches += 1;
                                tracing::error!("node check: {c}");
                                summary
                                    .first_node_mismatch
                                    .get_or_insert_with(|| c.to_string());
                                mismatches.push(c.clone());
                            }
                            None => {
                                summary.node_unavailable += 1;
                                if summary.first_node_unavailable.is_none() {
                                    tracing::warn!("node check: {c}");
                                    summary.first_node_unavailable = Some(c.to_string());
                                }
                            }
                        }
                    }
                    for o in &log.outcomes {
                        match o.status {
                            FillStatus::Filled => summary.fills += 1,
                            FillStatus::Reverted => summary.reverts += 1,
                            FillStatus::Rejected => summary.rejected += 1,
                            FillStatus::Expired => summary.expired += 1,
                        }
                    }
                    summary.bundles += log.sent.len() as u64;
                    for e in &log.risk {
                        match e {
                            RiskEvent::Refused { .. } => summary.risk_refused += 1,
                            other => {
                                tracing::warn!("block {}: risk: {other:?}", b.number);
                                summary
                                    .risk_events
                                    .push(format!("block {}: {other:?}", b.number));
                            }
                        }
                    }
                    // This block's part of the live event (the log moves into the record).
                    let mut here = BlockEvent {
                        sent: log.sent.len() as u64,
                        ..BlockEvent::default()
                    };
                    for o in &log.outcomes {
                        match o.status {
                            FillStatus::Filled => here.filled += 1,
                            FillStatus::Reverted => here.reverted += 1,
                            FillStatus::Rejected => here.rejected += 1,
                            FillStatus::Expired => here.expired += 1,
                        }
                    }
                    here.risk = log
                        .risk
                        .iter()
                        .filter(|e| !matches!(e, RiskEvent::Refused { .. }))
                        .filter_map(|e| serde_json::to_value(e).ok())
                        .collect();
                    progress(&Progress {
                        block: b.number,
                        logs: b.logs.len(),
                        sent: log.sent.len(),
                        outcomes: log.outcomes.len(),
                        mismatches,
                    });
                    writer.write(&Record::Block(Box::new(BlockRecord {
                        block,
                        hash: Some(b.hash),
                        parent_hash: Some(b.parent_hash),
                        logs: b.logs,
                        sent: log.sent,
                        outcomes: log.outcomes,
                        node_checks,
                        risk: log.risk,
                        chain,
                        switch,
                    })))?;
                    // Live: what was checked leaves now that its decision is on disk; then, every
                    // N blocks, the books against the chain.
                    if let Some(l) = live.as_mut() {
                        let cap = run.driver.risk.as_ref().map(|r| r.limits.max_gas_price_wei);
                        l.send(b.number, b.base_fee, cap).await.map_err(live_err)?;
                        let here = BlockRef {
                            number: b.number,
                            hash: b.hash,
                        };
                        last_ref = Some(here);
                        if summary.blocks == 0 || b.number % reconcile_every == 0 {
                            let diffs = l.reconcile(&run, here).await.map_err(live_err)?;
                            if !diffs.is_empty() {
                                trip = Some(RiskEvent::Tripped {
                                    kind: TripKind::Reconciliation,
                                    reason: format!(
                                        "the chain differs from the books: {}",
                                        diffs.join("; ")
                                    ),
                                });
                            }
                        }
                    }
                    // Recorded first, marked after: a process killed in between applies the
                    // command again at the next block, where it changes nothing.
                    if let Some((store, _)) = row {
                        for c in &pending {
                            store
                                .mark_risk_command_applied(c.id, b.number, unix_now())
                                .await
                                .map_err(store_err)?;
                        }
                    }
                    summary.blocks += 1;
                    session_blocks += 1;
                    summary.first_block.get_or_insert(b.number);
                    summary.last_block = Some(b.number);
                    if let Some((store, id)) = row {
                        let (equity, exposure) = run.driver.valuation();
                        let halted: Vec<TripKind> = run
                            .driver
                            .risk
                            .as_ref()
                            .map(|r| r.halts().iter().map(|(k, _)| *k).collect())
                            .unwrap_or_default();
                        let p = progress_of(&summary, session_blocks, &before);
                        let event = serde_json::json!({
                            "session_id": id,
                            "mode": meta.mode.as_str(),
                            "block": b.number,
                            "timestamp": b.timestamp,
                            "timestamp_ms": b.timestamp_ms,
                            "sent": here.sent,
                            "filled": here.filled,
                            "reverted": here.reverted,
                            "rejected": here.rejected,
                            "expired": here.expired,
                            "risk": here.risk,
                            "halted": halted,
                            "bundles_total": p.bundles,
                            "fills_total": p.fills,
                            "reverts_this_run": summary.reverts,
                            "equity_quote": finite_or_null(equity),
                            "exposure_quote": finite_or_null(exposure),
                            "pnl_quote": finite_or_null(equity - start_equity),
                            "step_us": step_us.last().copied(),
                            "spreads": run.driver.market.pair_spreads(),
                            "deployment": run.driver.label,
                        });
                        store
                            .add_live_event(id, b.number, unix_ms(), &event)
                            .await
                            .map_err(store_err)?;
                        if session_blocks.is_multiple_of(PRUNE_EVERY) {
                            store
                                .prune_live_events(id, EVENTS_KEPT)
                                .await
                                .map_err(store_err)?;
                        }
                    }
                    if let Some((store, id)) = row
                        && row_at.elapsed() >= ROW_EVERY
                    {
                        let p = progress_of(&summary, session_blocks, &before);
                        store.update_session(id, &p).await.map_err(store_err)?;
                        row_at = Instant::now();
                    }
                }
                FeedEvent::Reorg {
                    common_ancestor, ..
                } => {
                    if common_ancestor < meta.bootstrap_block {
                        return Err(refused(format!(
                            "the chain reorganised below block {}, where the session's pool state \
                             was read: start a new session",
                            meta.bootstrap_block
                        )));
                    }
                    // Operators' commands and reconciliation halts recorded in the dropped blocks
                    // bind again from the next block (a kill switch does not undo itself).
                    let dropped: Vec<RiskEvent> = session::read(&dir)?
                        .blocks
                        .iter()
                        .filter(|b| b.block.number > common_ancestor)
                        .flat_map(|b| b.risk.iter().filter(|e| e.is_command()).cloned())
                        .collect();
                    writer.write(&Record::Reorg { common_ancestor })?;
                    summary.reorgs += 1;
                    // Rebuild from the records the reorg left standing.
                    let rec = session::read(&dir)?;
                    run = SessionRun::start(&meta, &cfg, &mut *build)?;
                    run.replay(&rec.blocks, false, &mut *build)?;
                    // Live: our transactions settled in the dropped blocks are settled anew.
                    if let Some(l) = live.as_mut() {
                        l.after_reorg(&run, common_ancestor)
                            .await
                            .map_err(live_err)?;
                    }
                    carried.extend(dropped);
                    // The deployment version in force is the surviving records' last switch.
                    if let (Some((_, version)), Some(d)) = (following.as_mut(), &meta.deployment) {
                        *version = rec
                            .blocks
                            .iter()
                            .rev()
                            .find_map(|b| b.switch.as_ref().map(|s| s.deployment.version))
                            .unwrap_or(d.version);
                        refused_version = None;
                    }
                    session_blocks = rec.blocks.len() as u64;
                    writer = SessionWriter::append_to(&dir, rec.complete_len)?;
                    summary.last_block = Some(common_ancestor);
                }
            }
        }
        Ok(())
    }
    .await;
    if let Some((store, id)) = row {
        let p = progress_of(&summary, session_blocks, &before);
        let (status, error) = match &ended {
            Ok(()) => (dexlab_store::SessionStatus::Stopped, None),
            Err(e) => (dexlab_store::SessionStatus::Failed, Some(e.to_string())),
        };
        let done = store.finish_session(id, status, error.as_deref(), &p).await;
        // The session's own error says more than the store's.
        if ended.is_ok() {
            done.map_err(store_err)?;
        }
    }
    ended?;
    if let (Some(l), Some(r)) = (live.as_mut(), last_ref) {
        l.reconcile(&run, r).await.map_err(live_err)?;
    }
    summary.live = live.map(|l| l.summary);
    summary.in_flight = run.driver.inflight.len() as u64;
    summary.session_blocks = session_blocks;
    if let Some(r) = &run.driver.risk {
        summary.halted = r
            .halts()
            .iter()
            .map(|(k, why)| format!("{k:?}: {why}"))
            .collect();
    }
    summary.reference_states = (0..run.driver.market.pools.len())
        .map(|i| run.driver.exec.reference(&run.driver.market, i).clone())
        .collect();
    if !step_us.is_empty() {
        step_us.sort_by(f64::total_cmp);
        let q = |p: f64| step_us[((step_us.len() - 1) as f64 * p).round() as usize];
        summary.step_us_p50 = Some(q(0.5));
        summary.step_us_p99 = Some(q(0.99));
    }
    Ok(summary)
}

/// Pool state `want` blocks before the head (pinned by hash), or why not.
async fn warm_start(
    provider: &DynProvider,
    pools: &[PoolInfo],
    want: u64,
) -> Result<crate::PoolStates, String> {
    if want == 0 {
        return crate::bootstrap_latest(provider, pools)
            .await
            .map_err(|e| e.to_string());
    }
    let head = provider
        .get_block_number()
        .await
        .map_err(|e| format!("eth_blockNumber: {e}"))?;
    let at = head.saturating_sub(want);
    let block = provider
        .get_block_by_number(at.into())
        .await
        .map_err(|e| format!("eth_getBlockByNumber({at}): {e}"))?
        .ok_or_else(|| format!("the node has no block {at}"))?;
    let start = BlockRef {
        number: at,
        hash: block.header.hash,
    };
    crate::bootstrap(provider, pools, start).await.map_err(|e| {
        format!("the strategy warms up on {want} blocks, but the pools' state at block {at} could not be read ({e})")
    })
}

/// The block a session without records starts after: its bootstrap block, which must still be
/// the node's.
async fn bootstrap_ref(meta: &SessionMeta, provider: &DynProvider) -> Result<BlockRef, PaperError> {
    let hash = meta.bootstrap_hash.ok_or_else(|| PaperError::Node {
        url: "the node".into(),
        message: "the session recorded no hash for its bootstrap block".into(),
    })?;
    let _ = provider;
    Ok(BlockRef {
        number: meta.bootstrap_block,
        hash,
    })
}

/// A stored operator's command as the risk manager takes it.
fn risk_event(c: &dexlab_store::RiskCommandRow) -> RiskEvent {
    let by = format!("{} ({})", c.issued_by, c.reason);
    match &c.command {
        dexlab_store::RiskCommand::Kill => RiskEvent::Tripped {
            kind: TripKind::KillSwitch,
            reason: format!("kill switch by {by}"),
        },
        dexlab_store::RiskCommand::Clear { trip } => RiskEvent::Cleared {
            kind: match trip.as_str() {
                "reverts" => TripKind::Reverts,
                "daily_loss" => TripKind::DailyLoss,
                "reconciliation" => TripKind::Reconciliation,
                _ => TripKind::KillSwitch,
            },
            by,
        },
    }
}

/// What a stored deployment version runs, as a session takes it: its strategy, parameters and
/// model (the registry's directory, with the content hash promoted), its risk limits, and its
/// execution config. Refused when the model's row no longer holds the promoted content.
pub async fn deployment_switch(
    store: &dexlab_store::Store,
    row: &dexlab_store::DeploymentRow,
) -> Result<(session::Switch, BacktestConfig), String> {
    let d = &row.deployment;
    let what = format!("deployment {}@v{}", d.name, row.version);
    let backtest: BacktestConfig = serde_json::from_value(d.backtest.clone())
        .map_err(|e| format!("{what}: its execution config: {e}"))?;
    let risk: RiskLimits = serde_json::from_value(d.risk.clone())
        .map_err(|e| format!("{what}: its risk limits: {e}"))?;
    let model = match (d.model_id, &d.model_hash) {
        (None, _) => None,
        (Some(id), hash) => {
            let m = store
                .model_by_name_or_id(&id.to_string())
                .await
                .map_err(|e| format!("{what}: model {id}: {e}"))?
                .ok_or_else(|| format!("{what}: model {id} is not in the registry"))?;
            let hash = hash.clone().unwrap_or_default();
            if m.model.content_hash != hash {
                return Err(format!(
                    "{what}: model `{}` is registered with content {}…, the deployment promoted \
                     {}…",
                    m.model.name,
                    &m.model.content_hash[..m.model.content_hash.len().min(12)],
                    &hash[..hash.len().min(12)]
                ));
            }
            Some(ModelRef {
                dir: PathBuf::from(&m.model.dir),
                hash,
            })
        }
    };
    Ok((
        session::Switch {
            deployment: session::DeploymentRef {
                name: d.name.clone(),
                version: row.version,
            },
            spec: session::StrategySpec {
                strategy: d.strategy.clone(),
                params: d.params.clone(),
                model,
            },
            risk: Some(risk),
        },
        backtest,
    ))
}

//! A paper or live session on disk, and its replay through the backtester's driver.
//!
//! A session folder holds `session.json` (what was run: chain, pools, strategy, parameters,
//! execution config, seed, and the pool snapshots it started from) and `blocks.jsonl`, one line
//! per block in the order the engine processed them: the header facts, the tracked pools' raw
//! logs, the bundles the strategy sent and the outcomes booked in that block. A reorg is a line
//! of its own that voids the blocks after the common ancestor. Each line is written and synced
//! before the next block is read, so a killed process loses at most the block in progress; a
//! torn last line is recognised and dropped when the session is read or resumed.
//!
//! [`SessionRun`] is the engine of a session whatever feeds it: [`SessionRun::replay`] rebuilds
//! one from its records (to resume it, or to check it), and [`replay`] reports whether a fresh
//! run of the recorded blocks takes every decision the session took.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use alloy_primitives::{Address, B256, U256};
use dexlab_data::RawLog;
use dexlab_data::events::block_events;
use dexlab_data::snapshot::PoolSnapshot;
use dexlab_data::types::PoolInfo;
use dexlab_strategy::market::{BlockInfo, Market, PoolEvent, PoolState};
use dexlab_strategy::{Strategy, TradingEnv};
use serde::{Deserialize, Serialize};

use crate::backtest::ExecConfig;
use crate::chain::{ChainExecutor, ChainOutcome};
use crate::config::BacktestConfig;
use crate::driver::{Driver, Executor, InFlight, Observer, OutcomeRecord, StepLog};
use crate::ledger::Ledger;
use crate::risk::{RiskEvent, RiskLimits, RiskManager};
use crate::sim::SimExecutor;
use crate::tape::{initial_market, pool_index, watches_fee};
use dexlab_market::fees::FeeWatch;

pub const META_FILE: &str = "session.json";
pub const BLOCKS_FILE: &str = "blocks.jsonl";
/// The format this build writes and reads.
pub const FORMAT: u32 = 1;

/// Why a session cannot be used, saying which file and what.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(transparent)]
    Data(#[from] dexlab_data::DataError),
    #[error("session config: {0}")]
    Config(#[from] crate::config::ConfigError),
}

pub type Result<T, E = SessionError> = std::result::Result<T, E>;

/// How bundles were carried out (paper: simulated fills; live: signed transactions).
pub use dexlab_types::SessionMode;

/// What a session runs, fixed when it starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionMeta {
    pub format: u32,
    pub mode: SessionMode,
    pub chain_id: u64,
    pub pools: Vec<PoolInfo>,
    pub strategy: String,
    pub params: serde_json::Value,
    pub backtest: BacktestConfig,
    pub seed: u64,
    /// The model directory of a model-driven strategy, and its content hash.
    #[serde(default)]
    pub model: Option<ModelRef>,
    /// The session starts from the pools' state at the end of this block.
    pub bootstrap_block: u64,
    #[serde(default)]
    pub bootstrap_hash: Option<B256>,
    /// The first this many blocks after the bootstrap block warm the strategy up, as a backtest's
    /// blocks before its window do: it sees them with no balances and sends nothing. Trading
    /// starts with the block after them.
    #[serde(default)]
    pub warmup_blocks: u64,
    pub snapshots: Vec<PoolSnapshot>,
    /// The risk limits the session trades under (`None`: none but the kill switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskLimits>,
    /// Live mode: the executor contract and the account that trades through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveMeta>,
    /// The deployment the session started with (`dexlab live --deployment NAME`), whose later
    /// versions take over at block boundaries (see [`BlockRecord::switch`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment: Option<DeploymentRef>,
}

impl SessionMeta {
    /// What the session starts running.
    pub fn spec(&self) -> StrategySpec {
        StrategySpec {
            strategy: self.strategy.clone(),
            params: self.params.clone(),
            model: self.model.clone(),
        }
    }
}

/// A deployment's name and version: every decision of a session running one names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentRef {
    pub name: String,
    pub version: u32,
}

impl std::fmt::Display for DeploymentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@v{}", self.name, self.version)
    }
}

/// What a strategy is built from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StrategySpec {
    pub strategy: String,
    pub params: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
}

/// A new version of the session's deployment taking over at a block: the strategy is rebuilt
/// from it before the block is stepped (it starts without warm-up), and its risk limits replace
/// the old ones. Halts in force stay in force, bundles in flight keep their outcomes coming.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Switch {
    pub deployment: DeploymentRef,
    #[serde(flatten)]
    pub spec: StrategySpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskLimits>,
}

/// What a live session trades with, fixed when it starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveMeta {
    /// The executor contract (`contracts/DexlabExecutor.sol`) the bundles go through.
    pub executor: Address,
    /// Its owner, the account that signs and pays the gas.
    pub operator: Address,
    /// The executor's balance of every token of the tracked pools at the bootstrap block: the
    /// books start from them, not from the config's capital.
    pub balances: Vec<TokenBalance>,
    /// The operator account's native balance at the bootstrap block, wei.
    pub operator_balance: U256,
    /// Every this many blocks the engine reconciles its books with the chain.
    pub reconcile_every: u64,
}

/// A token and an amount of it, raw units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBalance {
    pub token: Address,
    pub amount: U256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRef {
    pub dir: PathBuf,
    pub hash: String,
}

/// One block as the engine processed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRecord {
    pub block: BlockInfo,
    pub hash: Option<B256>,
    pub parent_hash: Option<B256>,
    /// The tracked pools' logs of the block.
    pub logs: Vec<RawLog>,
    /// Bundles the strategy sent on this block's final state.
    pub sent: Vec<InFlight>,
    /// Outcomes booked in this block (fills, reverts, refusals, expiries).
    pub outcomes: Vec<OutcomeRecord>,
    /// Paper mode: what the node said of each bundle sent here, when it was asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_checks: Vec<NodeCheck>,
    /// The risk manager's events of the block, operators' commands (kill, clear) included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub risk: Vec<RiskEvent>,
    /// Live mode: what the chain did with our bundles, read before the block was stepped (the
    /// replay's input).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainOutcome>,
    /// A new deployment version took over before this block was stepped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<Switch>,
}

/// A bundle simulated on the node (paper mode), next to the engine's exact math on the same state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCheck {
    /// The bundle's id.
    pub id: u64,
    /// The block whose state both sides used (the bundle's decision block).
    pub block: u64,
    /// Each leg's output by the engine's exact math on the chain's state (without our simulated
    /// trades); `None`: the math says the bundle reverts.
    pub math: Option<Vec<U256>>,
    pub node: NodeAnswer,
}

/// What the node said of a simulated bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum NodeAnswer {
    /// The executor's call returned each leg's output.
    Filled { amounts: Vec<U256> },
    /// The call reverted, with the decoded reason.
    Reverted { reason: String },
    /// The node could not be asked (an RPC error, state it no longer keeps, a token whose
    /// balance slot could not be found, a family the executor does not trade yet).
    Unavailable { reason: String },
}

impl NodeCheck {
    /// `Some(true)` when the node and the math agree to the wei (both revert, or both fill with
    /// the same output on every leg), `Some(false)` when they differ, `None` when the node could
    /// not be asked.
    pub fn agrees(&self) -> Option<bool> {
        match (&self.math, &self.node) {
            (_, NodeAnswer::Unavailable { .. }) => None,
            (Some(m), NodeAnswer::Filled { amounts }) => Some(m == amounts),
            (None, NodeAnswer::Reverted { .. }) => Some(true),
            _ => Some(false),
        }
    }
}

impl std::fmt::Display for NodeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let math = match &self.math {
            Some(m) => format!("fills with {}", join(m)),
            None => "reverts".into(),
        };
        let node = match &self.node {
            NodeAnswer::Filled { amounts } => format!("fills with {}", join(amounts)),
            NodeAnswer::Reverted { reason } => format!("reverts ({reason})"),
            NodeAnswer::Unavailable { reason } => format!("could not be asked ({reason})"),
        };
        write!(
            f,
            "block {} bundle {}: the exact math {math}, the node {node}",
            self.block, self.id
        )
    }
}

fn join(xs: &[U256]) -> String {
    xs.iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(" -> ")
}

/// A line of `blocks.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    Block(Box<BlockRecord>),
    /// The chain reorganised: blocks after `common_ancestor` are void.
    Reorg {
        common_ancestor: u64,
    },
}

/// A session's records, reorgs applied: the blocks of the chain the session ended on.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub meta: SessionMeta,
    pub blocks: Vec<BlockRecord>,
    pub reorgs: u64,
    /// Bytes of `blocks.jsonl` that hold complete lines (a torn last line is not counted).
    pub complete_len: u64,
    /// A torn last line was found (the process was killed while writing it).
    pub torn: bool,
}

/// Reads a session folder.
pub fn read(dir: &Path) -> Result<Recorded> {
    let meta_path = dir.join(META_FILE);
    let text = std::fs::read_to_string(&meta_path).map_err(|source| SessionError::Io {
        path: meta_path.clone(),
        source,
    })?;
    let meta: SessionMeta = serde_json::from_str(&text).map_err(|e| SessionError::Invalid {
        path: meta_path.clone(),
        message: e.to_string(),
    })?;
    if meta.format != FORMAT {
        return Err(SessionError::Invalid {
            path: meta_path,
            message: format!("format {} (this build reads format {FORMAT})", meta.format),
        });
    }
    let path = dir.join(BLOCKS_FILE);
    let mut blocks: Vec<BlockRecord> = Vec::new();
    let mut reorgs = 0;
    let mut complete_len = 0u64;
    let mut torn = false;
    let file = match File::open(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => return Err(SessionError::Io { path, source }),
    };
    if let Some(file) = file {
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        let mut n = 0u64;
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .map_err(|source| SessionError::Io {
                    path: path.clone(),
                    source,
                })?;
            if read == 0 {
                break;
            }
            n += 1;
            if !line.ends_with('\n') {
                // Killed mid-write: the block it held was not finished, so it never counted.
                torn = true;
                break;
            }
            let record: Record =
                serde_json::from_str(line.trim_end()).map_err(|e| SessionError::Invalid {
                    path: path.clone(),
                    message: format!("line {n}: {e}"),
                })?;
            match record {
                Record::Block(b) => {
                    if let Some(last) = blocks.last()
                        && b.block.number != last.block.number + 1
                    {
                        return Err(SessionError::Invalid {
                            path: path.clone(),
                            message: format!(
                                "line {n}: block {} follows block {} (a session has every block)",
                                b.block.number, last.block.number
                            ),
                        });
                    }
                    blocks.push(*b);
                }
                Record::Reorg { common_ancestor } => {
                    reorgs += 1;
                    blocks.retain(|b| b.block.number <= common_ancestor);
                }
            }
            complete_len += read as u64;
        }
    }
    Ok(Recorded {
        meta,
        blocks,
        reorgs,
        complete_len,
        torn,
    })
}

/// Appends records, one synced line each.
pub struct SessionWriter {
    path: PathBuf,
    file: File,
}

impl SessionWriter {
    /// Creates a new session folder (refused if it already holds a session).
    pub fn create(dir: &Path, meta: &SessionMeta) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| SessionError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let meta_path = dir.join(META_FILE);
        if meta_path.exists() {
            return Err(SessionError::Invalid {
                path: meta_path,
                message: "already holds a session: resume it with the same command, or choose \
                          another --session folder"
                    .into(),
            });
        }
        let text = serde_json::to_string_pretty(meta).map_err(|e| SessionError::Invalid {
            path: meta_path.clone(),
            message: e.to_string(),
        })?;
        let tmp = dir.join(format!(".{META_FILE}.tmp"));
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &meta_path).map_err(io(&meta_path))?;
        Self::append_to(dir, 0)
    }

    /// Opens a session's `blocks.jsonl` for appending after its first `complete_len` bytes
    /// (dropping a torn last line).
    pub fn append_to(dir: &Path, complete_len: u64) -> Result<Self> {
        let path = dir.join(BLOCKS_FILE);
        let io = |source| SessionError::Io {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        file.set_len(complete_len).map_err(io)?;
        let mut w = Self { path, file };
        use std::io::Seek;
        w.file
            .seek(std::io::SeekFrom::Start(complete_len))
            .map_err(|source| SessionError::Io {
                path: w.path.clone(),
                source,
            })?;
        Ok(w)
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let mut line = serde_json::to_string(record).map_err(|e| SessionError::Invalid {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push('\n');
        let io = |source| SessionError::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)
    }
}

/// Builds a session's strategy from its spec on the market at hand (the factory loads the spec's
/// model, checking its content hash, and puts it in the environment it builds with).
pub type StrategyFactory<'a> = dyn FnMut(&StrategySpec, &Market, &TradingEnv) -> std::result::Result<Box<dyn Strategy>, String>
    + 'a;

/// A session's executor: simulated fills (paper) or the chain's (live).
pub enum SessionExec<'c> {
    Sim(SimExecutor<'c>),
    Chain(ChainExecutor),
}

impl Executor for SessionExec<'_> {
    fn run_block(
        &mut self,
        market: &mut Market,
        events: &[PoolEvent],
        inflight: &[InFlight],
        obs: &mut Observer<'_>,
    ) {
        match self {
            SessionExec::Sim(e) => e.run_block(market, events, inflight, obs),
            SessionExec::Chain(e) => e.run_block(market, events, inflight, obs),
        }
    }

    fn reference<'m>(&'m self, market: &'m Market, pool: usize) -> &'m PoolState {
        match self {
            SessionExec::Sim(e) => e.reference(market, pool),
            SessionExec::Chain(e) => e.reference(market, pool),
        }
    }

    fn settles_expiry(&self) -> bool {
        match self {
            SessionExec::Sim(e) => e.settles_expiry(),
            SessionExec::Chain(e) => e.settles_expiry(),
        }
    }
}

/// A session's engine: the driver with the session's executor, its strategy, and the index that
/// turns logs into pool events.
pub struct SessionRun<'c> {
    pub driver: Driver<'c, SessionExec<'c>>,
    pub strategy: Box<dyn Strategy>,
    index: HashMap<Address, u32>,
    /// History's fees of the pools whose fee changes without a pool event.
    fees: FeeWatch,
    pub blocks: u64,
    /// The last warm-up block.
    warm_until: u64,
}

impl<'c> SessionRun<'c> {
    /// The execution config of a session, resolved against its pools.
    pub fn exec_config(meta: &SessionMeta) -> Result<ExecConfig> {
        let (metas, _) = initial_market(&meta.pools, &[])?;
        Ok(meta.backtest.resolve_for(&metas, meta.seed)?)
    }

    /// A session at its bootstrap state, before any block.
    pub fn start(
        meta: &SessionMeta,
        cfg: &'c ExecConfig,
        build: &mut StrategyFactory<'_>,
    ) -> Result<Self> {
        let (metas, states) = initial_market(&meta.pools, &meta.snapshots)?;
        let index = pool_index(&metas);
        let mut market = Market::new(metas);
        market.states = states;
        market.block = BlockInfo::at(meta.bootstrap_block, 0);
        let fees = FeeWatch::new(&market.pools, &market.states, |i| {
            watches_fee(&meta.pools[i])
        });
        let strategy =
            build(&meta.spec(), &market, &cfg.env).map_err(|message| SessionError::Invalid {
                path: META_FILE.into(),
                message: format!("strategy `{}`: {message}", meta.strategy),
            })?;
        let quote_dec = market.decimals(cfg.env.quote).unwrap_or(18);
        let (ledger, exec) = match (meta.mode, &meta.live) {
            (SessionMode::Paper, _) => {
                let ledger =
                    Ledger::new(cfg.env.quote, cfg.env.native, quote_dec, cfg.capital, false);
                // The node feed has no receipts: our place in a block follows the queue
                // assumption.
                let exec = SimExecutor::new(cfg, market.pools.len(), false);
                (ledger, SessionExec::Sim(exec))
            }
            (SessionMode::Live, Some(live)) => {
                // The books start from what the executor holds, each token other than the quote
                // at its worth at the bootstrap state (its cost basis: selling it later realises
                // only what it gained since, not all of it).
                let mut ledger =
                    Ledger::new(cfg.env.quote, cfg.env.native, quote_dec, U256::ZERO, false);
                for b in &live.balances {
                    *ledger.balances.entry(b.token).or_default() += b.amount;
                    if b.token != cfg.env.quote
                        && let Some(v) = dexlab_strategy::gas::convert_with(
                            &market.pools,
                            |i| &market.states[i],
                            b.amount,
                            b.token,
                            cfg.env.quote,
                        )
                    {
                        *ledger.basis.entry(b.token).or_default() += v;
                    }
                }
                (ledger, SessionExec::Chain(ChainExecutor::default()))
            }
            (SessionMode::Live, None) => {
                return Err(SessionError::Invalid {
                    path: META_FILE.into(),
                    message: "a live session without its executor (`live`)".into(),
                });
            }
        };
        let mut driver = Driver::new(&cfg.env, cfg.timing, market, exec, ledger);
        driver.log = Some(StepLog::default());
        driver.label = meta.deployment.as_ref().map(|d| d.to_string());
        // Without limits a session still obeys its operator's kill switch.
        driver.risk = Some(RiskManager::new(
            meta.risk.clone().unwrap_or_else(RiskLimits::unlimited),
        ));
        Ok(Self {
            driver,
            strategy,
            index,
            fees,
            blocks: 0,
            warm_until: meta.bootstrap_block.saturating_add(meta.warmup_blocks),
        })
    }

    /// One block: its logs become pool events, the driver steps, and the decisions and
    /// outcomes of the block are returned for the record.
    pub fn step(&mut self, block: BlockInfo, logs: &[RawLog]) -> Result<StepLog> {
        self.step_with(block, logs, &[], &[])
    }

    /// [`SessionRun::step`] after the operators' `commands` (kill, clear) that arrived before the
    /// block, which bind its decision and are returned in its log, and (live) with what the chain
    /// did with our bundles, read from the receipts up to this block.
    pub fn step_with(
        &mut self,
        block: BlockInfo,
        logs: &[RawLog],
        commands: &[RiskEvent],
        chain: &[ChainOutcome],
    ) -> Result<StepLog> {
        match &mut self.driver.exec {
            SessionExec::Chain(e) => e.due = chain.to_vec(),
            SessionExec::Sim(_) if !chain.is_empty() => {
                return Err(SessionError::Invalid {
                    path: BLOCKS_FILE.into(),
                    message: format!("block {}: chain outcomes in a paper session", block.number),
                });
            }
            SessionExec::Sim(_) => {}
        }
        if let Some(r) = self.driver.risk.as_mut() {
            for c in commands {
                r.command(c);
            }
        }
        let mut events = block_events(logs, &self.index)?;
        if self.fees.is_watching() {
            self.fees.mark(events.iter_mut());
        }
        if block.number <= self.warm_until {
            self.driver
                .warm(block, &events, self.strategy.as_mut(), true);
        } else {
            self.driver.step(block, &events, self.strategy.as_mut());
        }
        if let SessionExec::Chain(e) = &mut self.driver.exec
            && !e.unmatched.is_empty()
        {
            let ids = std::mem::take(&mut e.unmatched);
            return Err(SessionError::Invalid {
                path: BLOCKS_FILE.into(),
                message: format!(
                    "block {}: the chain reported outcomes of bundles {ids:?}, which are not in \
                     flight (settled twice, or never sent by this session)",
                    block.number
                ),
            });
        }
        self.blocks += 1;
        Ok(self
            .driver
            .log
            .replace(StepLog::default())
            .unwrap_or_default())
    }

    /// A new deployment version takes over from the next block on (see [`Switch`]).
    pub fn switch(&mut self, sw: &Switch, build: &mut StrategyFactory<'_>) -> Result<()> {
        let strategy =
            build(&sw.spec, &self.driver.market, self.driver.env).map_err(|message| {
                SessionError::Invalid {
                    path: BLOCKS_FILE.into(),
                    message: format!(
                        "deployment {} (strategy `{}`): {message}",
                        sw.deployment, sw.spec.strategy
                    ),
                }
            })?;
        self.strategy = strategy;
        if let Some(r) = self.driver.risk.as_mut() {
            r.limits = sw.risk.clone().unwrap_or_else(RiskLimits::unlimited);
        }
        self.driver.label = Some(sw.deployment.to_string());
        Ok(())
    }

    /// Re-runs recorded blocks (building the strategy of each deployment switch with `build`).
    /// With `check`, stops at the first block whose decisions differ from the record and
    /// returns it.
    pub fn replay(
        &mut self,
        blocks: &[BlockRecord],
        check: bool,
        build: &mut StrategyFactory<'_>,
    ) -> Result<Option<Difference>> {
        for (i, b) in blocks.iter().enumerate() {
            if let Some(sw) = &b.switch {
                self.switch(sw, build)?;
            }
            let commands: Vec<RiskEvent> =
                b.risk.iter().filter(|e| e.is_command()).cloned().collect();
            let log = self.step_with(b.block, &b.logs, &commands, &b.chain)?;
            if check && (log.sent != b.sent || log.risk != b.risk) {
                return Ok(Some(Difference {
                    block: b.block.number,
                    index: i,
                    recorded: b.sent.clone(),
                    replayed: log.sent,
                    recorded_risk: b.risk.clone(),
                    replayed_risk: log.risk,
                }));
            }
        }
        Ok(None)
    }
}

/// Where a replay first decided otherwise than the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    pub block: u64,
    /// Position of the block in the session.
    pub index: usize,
    pub recorded: Vec<InFlight>,
    pub replayed: Vec<InFlight>,
    /// The risk manager's events of the block (refusals, halts), recorded and replayed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub recorded_risk: Vec<RiskEvent>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub replayed_risk: Vec<RiskEvent>,
}

/// What a replay found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    pub blocks: u64,
    /// Bundles the session sent.
    pub decisions: u64,
    pub identical: bool,
    pub first_difference: Option<Difference>,
    pub reorgs: u64,
    /// The session's last line was torn (a killed process) and was left out.
    pub torn_last_line: bool,
}

/// Replays a session through the backtester's driver and compares every decision.
pub fn replay(dir: &Path, build: &mut StrategyFactory<'_>) -> Result<ReplayReport> {
    let rec = read(dir)?;
    let cfg = SessionRun::exec_config(&rec.meta)?;
    let mut run = SessionRun::start(&rec.meta, &cfg, build)?;
    let diff = run.replay(&rec.blocks, true, build)?;
    Ok(ReplayReport {
        blocks: rec.blocks.len() as u64,
        decisions: rec.blocks.iter().map(|b| b.sent.len() as u64).sum(),
        identical: diff.is_none(),
        first_difference: diff,
        reorgs: rec.reorgs,
        torn_last_line: rec.torn,
    })
}

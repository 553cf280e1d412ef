//! A bundle's life through the driver (ids, reservations, one outcome each, expiry), and sessions:
//! recorded block by block, read back after a kill, replayed with identical decisions.

use std::collections::BTreeMap;

use alloy_primitives::U256;
use dexlab_engine::backtest::run;
use dexlab_engine::config::BacktestConfig;
use dexlab_engine::driver::{Driver, Executor, InFlight, Observer, StepLog};
use dexlab_engine::ledger::Ledger;
use dexlab_engine::risk::{RiskEvent, RiskLimits, RiskManager, Rule, TripKind};
use dexlab_engine::session::{
    self, BlockRecord, Record, SessionMeta, SessionMode, SessionRun, SessionWriter,
};
use dexlab_engine::sim::SimExecutor;
use dexlab_strategy::market::{BlockInfo, Market, PoolEvent, PoolState, apply};
use dexlab_strategy::{
    Action, Bundle, BundleTag, Context, Fill, FillStatus, Leg, Strategy, registry,
};

use crate::support::*;

/// Sends `n` bundles of `fraction` of its available USDC in the first block, then records the
/// USDC balance it is shown every block and every fill it is told of.
struct Spender {
    n: usize,
    fraction: u64,
    sent: bool,
    seen: Vec<U256>,
    fills: Vec<Fill>,
}

impl Spender {
    fn new(n: usize, fraction: u64) -> Self {
        Self {
            n,
            fraction,
            sent: false,
            seen: Vec::new(),
            fills: Vec::new(),
        }
    }
}

impl Strategy for Spender {
    fn name(&self) -> &'static str {
        "spender"
    }
    fn on_block(&mut self, _: &Market, ctx: &Context<'_>, out: &mut Vec<Action>) {
        let available = ctx.balance(usdc());
        self.seen.push(available);
        if std::mem::replace(&mut self.sent, true) {
            return;
        }
        for _ in 0..self.n {
            out.push(Action::Submit(Bundle {
                legs: vec![Leg {
                    pool: 0,
                    token_in: usdc(),
                }],
                amount_in: available / U256::from(self.fraction),
                min_amount_out: U256::ZERO,
                priority_fee: 0,
                expected_out: U256::ZERO,
                tag: BundleTag::Buy,
            }));
        }
    }
    fn on_fill(&mut self, fill: &Fill) {
        self.fills.push(fill.clone());
    }
}

fn flat() -> Vec<(u32, U256, U256)> {
    vec![(0, e6(2_000_000), e18(1000)), (1, e6(2_000_000), e18(1000))]
}

#[test]
fn what_a_bundle_in_flight_commits_is_reserved_when_it_is_sent() {
    // Latency 3: the bundle sent at block 100 lands at 103. Until then its input is committed,
    // so the strategy is shown the rest, and a second bundle for the same money is refused at
    // once (never sent, no gas) instead of being found short when it lands.
    let tape = two_pool_tape(&[flat(), vec![], vec![], vec![], vec![]]);
    let mut cfg = exec(e6(1000), 0.0);
    cfg.timing.latency_blocks = 3;
    let market = tape.market();
    let mut s = Spender::new(1, 2);
    let r = run(&tape, &market, 0..tape.blocks.len(), &mut s, &cfg, true);
    assert_eq!(s.seen[0], e6(1000));
    assert_eq!(&s.seen[1..3], &[e6(500), e6(500)], "half is in flight");
    assert_eq!((r.metrics.filled, r.metrics.rejected), (1, 0));
    // Two bundles for half each fit together: both are sent.
    let mut s = Spender::new(2, 2);
    let r = run(&tape, &market, 0..tape.blocks.len(), &mut s, &cfg, true);
    assert_eq!(s.seen[1], U256::ZERO);
    assert_eq!(
        (r.metrics.filled, r.metrics.rejected),
        (2, 0),
        "{:#?}",
        r.trades
    );
    // Now each asks for all of it: the second is refused in the block it was decided.
    let mut s = Spender::new(2, 1);
    let r = run(&tape, &market, 0..tape.blocks.len(), &mut s, &cfg, true);
    assert_eq!((r.metrics.filled, r.metrics.rejected), (1, 1));
    let rejected = r
        .trades
        .iter()
        .find(|t| t.status == FillStatus::Rejected)
        .unwrap();
    assert_eq!(
        (rejected.decided_block, rejected.included_block),
        (100, 100)
    );
    assert_eq!(rejected.gas_used, 0);
    assert_eq!(
        s.seen[1],
        U256::ZERO,
        "everything is committed to the bundle in flight"
    );
    assert_eq!(s.fills[0].status, FillStatus::Rejected, "told at once");
    assert_eq!(s.fills[1].status, FillStatus::Filled);
    assert_eq!(s.fills[1].included_block, 103);
}

/// An executor that applies history and never includes anything: the chain that ignores us.
struct Ignored;

impl Executor for Ignored {
    fn run_block(
        &mut self,
        market: &mut Market,
        events: &[PoolEvent],
        _: &[InFlight],
        obs: &mut Observer<'_>,
    ) {
        for e in events {
            apply(market, e);
            obs.pool_updated(market, e.pool as usize);
        }
    }
    fn reference<'m>(&'m self, market: &'m Market, pool: usize) -> &'m PoolState {
        &market.states[pool]
    }
}

#[test]
fn a_bundle_never_included_expires_at_its_deadline_and_frees_its_input() {
    let tape = two_pool_tape(&[flat(), vec![], vec![], vec![], vec![], vec![]]);
    let cfg = exec(e6(1000), 0.0);
    let timing = dexlab_engine::driver::Timing {
        latency_blocks: 1,
        deadline_blocks: 2,
    };
    let ledger = Ledger::new(usdc(), weth(), 6, cfg.capital, false);
    let mut d = Driver::new(&cfg.env, timing, tape.market(), Ignored, ledger);
    d.log = Some(StepLog::default());
    let mut s = Spender::new(1, 1);
    let mut outcomes = Vec::new();
    for (i, b) in tape.blocks.iter().enumerate() {
        d.step(*b, tape.events_of(i), &mut s);
        outcomes.extend(d.log.replace(StepLog::default()).unwrap().outcomes);
    }
    // Sent at 100, could land at 101..=103: expired in block 103, never before.
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    assert_eq!(outcomes[0].status, FillStatus::Expired);
    assert_eq!(outcomes[0].included_block, 103);
    assert_eq!(s.fills.len(), 1);
    assert_eq!(s.seen[1..3], [U256::ZERO, U256::ZERO]);
    assert_eq!(
        s.seen[3],
        e6(1000),
        "the reservation is released, no gas was paid"
    );
    assert!(d.inflight.is_empty());
    assert_eq!(d.ledger.tally.expired, 1);
}

/// Mean reversion on the real sample (its two fee tiers never drift apart by more than their
/// fees, so the arbitrage would not trade there), as a session would run it.
fn sample_meta() -> SessionMeta {
    let ds = sample_dataset();
    let meta = dexlab_data::dataset::read_meta(ds).unwrap();
    let backtest = BacktestConfig {
        quote: "USDC".into(),
        native: "WETH".into(),
        ..BacktestConfig::default()
    };
    SessionMeta {
        format: session::FORMAT,
        mode: SessionMode::Paper,
        chain_id: meta.chain_id,
        pools: meta.pools,
        strategy: "price-reversion".into(),
        params: serde_json::json!({"window_blocks": 20, "entry_z": 0.5}),
        backtest,
        seed: 7,
        model: None,
        bootstrap_block: 0,
        bootstrap_hash: None,
        warmup_blocks: 0,
        snapshots: Vec::new(),
        risk: None,
        live: None,
        deployment: None,
    }
}

fn build(
    _meta: &SessionMeta,
) -> impl FnMut(
    &session::StrategySpec,
    &Market,
    &dexlab_strategy::TradingEnv,
) -> Result<Box<dyn Strategy>, String> {
    move |spec, market, env| {
        let p = registry::parse_params(&spec.strategy, &spec.params).map_err(|e| e.to_string())?;
        registry::build(&spec.strategy, market, env, &p).map_err(|e| e.to_string())
    }
}

/// Records the sample as a session would, block by block; returns the session's records.
fn record_sample(dir: &std::path::Path, meta: &SessionMeta) -> Vec<BlockRecord> {
    record_sample_with(dir, meta, |_| Vec::new())
}

/// [`record_sample`] with the operators' commands that arrive before each block.
fn record_sample_with(
    dir: &std::path::Path,
    meta: &SessionMeta,
    commands: impl Fn(u64) -> Vec<RiskEvent>,
) -> Vec<BlockRecord> {
    let ds = sample_dataset();
    let logs = dexlab_data::dataset::read_all_logs(ds).unwrap();
    let headers = dexlab_data::dataset::read_all_blocks(ds).unwrap();
    let mut by_block: BTreeMap<u64, Vec<dexlab_data::RawLog>> = BTreeMap::new();
    for l in logs {
        by_block.entry(l.block_number).or_default().push(l);
    }
    let cfg = SessionRun::exec_config(meta).unwrap();
    let mut run = SessionRun::start(meta, &cfg, &mut build(meta)).unwrap();
    let mut w = SessionWriter::create(dir, meta).unwrap();
    let mut out = Vec::new();
    let first = headers[0].number;
    let last = headers.last().unwrap().number;
    let stamps: BTreeMap<u64, u64> = headers.iter().map(|h| (h.number, h.timestamp)).collect();
    for n in first..=last {
        // A session has every block, with or without events.
        let block = BlockInfo::at(n, stamps.get(&n).copied().unwrap_or(0));
        let logs = by_block.remove(&n).unwrap_or_default();
        let log = run.step_with(block, &logs, &commands(n), &[]).unwrap();
        let rec = BlockRecord {
            block,
            hash: None,
            parent_hash: None,
            logs,
            sent: log.sent,
            outcomes: log.outcomes,
            node_checks: Vec::new(),
            risk: log.risk,
            chain: Vec::new(),
            switch: None,
        };
        w.write(&Record::Block(Box::new(rec.clone()))).unwrap();
        out.push(rec);
    }
    out
}

#[test]
fn a_recorded_session_replays_with_identical_decisions_and_a_tampered_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let meta = sample_meta();
    let recs = record_sample(dir.path(), &meta);
    let decisions: usize = recs.iter().map(|r| r.sent.len()).sum();
    assert!(
        decisions > 3,
        "the sample must make the strategy trade: {decisions}"
    );
    // Every bundle sent got exactly one outcome, and ids are unique.
    let mut sent: Vec<u64> = recs
        .iter()
        .flat_map(|r| r.sent.iter().map(|s| s.id))
        .collect();
    let mut done: Vec<u64> = recs
        .iter()
        .flat_map(|r| r.outcomes.iter().map(|o| o.id))
        .collect();
    sent.sort_unstable();
    done.sort_unstable();
    let n = sent.len();
    sent.dedup();
    assert_eq!(sent.len(), n, "ids are unique");
    // The last bundles may still be in flight when the data ends.
    assert!(done.len() <= n && done.iter().all(|id| sent.binary_search(id).is_ok()));
    let mut once = done.clone();
    once.dedup();
    assert_eq!(once, done, "one outcome per bundle");

    let report = session::replay(dir.path(), &mut build(&meta)).unwrap();
    assert!(report.identical, "{:#?}", report.first_difference);
    assert_eq!(report.blocks as usize, recs.len());
    assert_eq!(report.decisions as usize, decisions);

    // Change one recorded decision: the replay finds it, at its block.
    let (i, rec) = recs
        .iter()
        .enumerate()
        .find(|(_, r)| !r.sent.is_empty())
        .unwrap();
    let text = std::fs::read_to_string(dir.path().join(session::BLOCKS_FILE)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut changed = rec.clone();
    changed.sent[0].bundle.amount_in += U256::ONE;
    lines[i] = serde_json::to_string(&Record::Block(Box::new(changed))).unwrap();
    std::fs::write(
        dir.path().join(session::BLOCKS_FILE),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let report = session::replay(dir.path(), &mut build(&meta)).unwrap();
    assert!(!report.identical);
    let d = report.first_difference.unwrap();
    assert_eq!(d.block, rec.block.number);
    assert_eq!(d.replayed, rec.sent);
}

#[test]
fn a_session_killed_mid_write_loses_only_that_block_and_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let meta = sample_meta();
    let recs = record_sample(dir.path(), &meta);
    let path = dir.path().join(session::BLOCKS_FILE);
    let full = std::fs::read_to_string(&path).unwrap();
    // Keep 60 % of the blocks, then half of the next line: a process killed while writing.
    let keep = recs.len() * 6 / 10;
    let lines: Vec<&str> = full.lines().collect();
    let mut torn = lines[..keep].join("\n") + "\n";
    torn.push_str(&lines[keep][..lines[keep].len() / 2]);
    std::fs::write(&path, &torn).unwrap();

    let read = session::read(dir.path()).unwrap();
    assert!(read.torn);
    assert_eq!(read.blocks.len(), keep);
    // Resume: rebuild the engine from the records, drop the torn line, go on with the rest.
    let cfg = SessionRun::exec_config(&read.meta).unwrap();
    let mut run = SessionRun::start(&read.meta, &cfg, &mut build(&meta)).unwrap();
    assert_eq!(
        run.replay(&read.blocks, true, &mut build(&meta)).unwrap(),
        None
    );
    let mut w = SessionWriter::append_to(dir.path(), read.complete_len).unwrap();
    for rec in &recs[keep..] {
        let log = run.step(rec.block, &rec.logs).unwrap();
        let again = BlockRecord {
            sent: log.sent,
            outcomes: log.outcomes,
            risk: log.risk,
            ..rec.clone()
        };
        w.write(&Record::Block(Box::new(again))).unwrap();
    }
    // The resumed session is the uninterrupted one, line for line.
    assert_eq!(std::fs::read_to_string(&path).unwrap(), full);
    let report = session::replay(dir.path(), &mut build(&meta)).unwrap();
    assert!(report.identical && !report.torn_last_line);
}

#[test]
fn a_reorg_record_voids_the_blocks_after_the_common_ancestor() {
    let dir = tempfile::tempdir().unwrap();
    let meta = sample_meta();
    let recs = record_sample(dir.path(), &meta);
    let ancestor = recs[recs.len() / 2].block.number;
    let mut w = SessionWriter::append_to(
        dir.path(),
        std::fs::metadata(dir.path().join(session::BLOCKS_FILE))
            .unwrap()
            .len(),
    )
    .unwrap();
    w.write(&Record::Reorg {
        common_ancestor: ancestor,
    })
    .unwrap();
    let read = session::read(dir.path()).unwrap();
    assert_eq!(read.reorgs, 1);
    assert_eq!(read.blocks.last().unwrap().block.number, ancestor);
    assert_eq!(read.blocks.len(), recs.len() / 2 + 1);
    // A gap is refused, with the line.
    let mut w = SessionWriter::append_to(dir.path(), read.complete_len).unwrap();
    let mut skip = recs[recs.len() - 1].clone();
    skip.block.number = ancestor + 5;
    w.write(&Record::Block(Box::new(skip))).unwrap();
    let e = session::read(dir.path()).unwrap_err().to_string();
    assert!(e.contains("follows block"), "{e}");
}

/// Sends one bundle of 1 USDC every block whose minimum output no pool can give: it reverts.
struct Reverter;

impl Strategy for Reverter {
    fn name(&self) -> &'static str {
        "reverter"
    }
    fn on_block(&mut self, _: &Market, _: &Context<'_>, out: &mut Vec<Action>) {
        out.push(Action::Submit(Bundle {
            legs: vec![Leg {
                pool: 0,
                token_in: usdc(),
            }],
            amount_in: e6(1),
            min_amount_out: U256::MAX,
            priority_fee: 0,
            expected_out: U256::ZERO,
            tag: BundleTag::Buy,
        }));
    }
}

/// Runs `s` over the tape with the simulated executor under `limits`; each block's log.
fn run_with_risk(
    tape: &dexlab_engine::tape::Tape,
    s: &mut dyn Strategy,
    limits: RiskLimits,
) -> (Vec<StepLog>, Driver<'static, SimExecutor<'static>>) {
    let cfg: &'static _ = Box::leak(Box::new(exec(e6(1000), 0.0)));
    let ledger = Ledger::new(usdc(), weth(), 6, cfg.capital, false);
    let sim = SimExecutor::new(cfg, tape.market().pools.len(), false);
    let mut d = Driver::new(&cfg.env, cfg.timing, tape.market(), sim, ledger);
    d.log = Some(StepLog::default());
    d.risk = Some(RiskManager::new(limits));
    let mut logs = Vec::new();
    for (i, b) in tape.blocks.iter().enumerate() {
        d.step(*b, tape.events_of(i), s);
        logs.push(d.log.replace(StepLog::default()).unwrap());
    }
    (logs, d)
}

fn refusals(logs: &[StepLog]) -> Vec<Rule> {
    logs.iter()
        .flat_map(|l| &l.risk)
        .filter_map(|e| match e {
            RiskEvent::Refused { rule, .. } => Some(*rule),
            _ => None,
        })
        .collect()
}

#[test]
fn the_risk_limits_refuse_before_the_ledger_and_reverts_in_a_row_halt() {
    let tape = two_pool_tape(&[flat(), vec![], vec![], vec![], vec![], vec![]]);
    // Two bundles of a quarter each in one block, one allowed per block.
    let limits = RiskLimits {
        max_bundles_per_block: 1,
        ..RiskLimits::default()
    };
    let (logs, d) = run_with_risk(&tape, &mut Spender::new(2, 4), limits);
    assert_eq!(refusals(&logs), vec![Rule::BundlesPerBlock]);
    assert_eq!((d.ledger.tally.filled, d.ledger.tally.rejected), (1, 1));
    // A refused bundle is never sent: no gas, nothing reserved, the strategy is told at once.
    assert_eq!(logs[0].outcomes.len(), 1);
    assert_eq!(logs[0].outcomes[0].status, FillStatus::Rejected);

    // 250 USDC over a 100 USDC notional limit.
    let limits = RiskLimits {
        max_notional_quote: 100.0,
        ..RiskLimits::default()
    };
    let (logs, d) = run_with_risk(&tape, &mut Spender::new(1, 4), limits);
    assert_eq!(refusals(&logs), vec![Rule::Notional]);
    assert_eq!(d.ledger.tally.filled, 0);
    // Under the limit it fills.
    let limits = RiskLimits {
        max_notional_quote: 300.0,
        ..RiskLimits::default()
    };
    let (logs, d) = run_with_risk(&tape, &mut Spender::new(1, 4), limits);
    assert!(refusals(&logs).is_empty());
    assert_eq!(d.ledger.tally.filled, 1);

    // Every bundle reverts: two in a row halt trading; what follows is refused, no gas paid.
    let limits = RiskLimits {
        max_consecutive_reverts: 2,
        ..RiskLimits::default()
    };
    let (logs, d) = run_with_risk(&tape, &mut Reverter, limits);
    assert_eq!(d.ledger.tally.reverted, 2, "{logs:#?}");
    let tripped: Vec<_> = logs
        .iter()
        .flat_map(|l| &l.risk)
        .filter(|e| {
            matches!(
                e,
                RiskEvent::Tripped {
                    kind: TripKind::Reverts,
                    ..
                }
            )
        })
        .collect();
    assert_eq!(tripped.len(), 1);
    let halted = refusals(&logs);
    assert!(!halted.is_empty() && halted.iter().all(|r| *r == Rule::Halted));
    assert!(d.risk.as_ref().unwrap().halted());
}

#[test]
fn a_kill_binds_the_next_decision_outlives_a_restart_and_replays_from_the_record() {
    // Limits that never bind on the sample: what stops trading here is the kill alone.
    let meta = SessionMeta {
        risk: Some(RiskLimits {
            max_notional_quote: 1e15,
            max_exposure_quote: 1e15,
            daily_loss_quote: 1e15,
            max_bundles_per_block: 1_000,
            ..RiskLimits::default()
        }),
        ..sample_meta()
    };
    let plain = tempfile::tempdir().unwrap();
    let recs = record_sample(plain.path(), &meta);
    let deciding: Vec<u64> = recs
        .iter()
        .filter(|r| !r.sent.is_empty())
        .map(|r| r.block.number)
        .collect();
    assert!(deciding.len() >= 2, "{deciding:?}");
    // Killed before the first block that trades, cleared after the second.
    let (kill_at, clear_at) = (deciding[0], deciding[1] + 1);
    let commands = |n: u64| {
        if n == kill_at {
            vec![RiskEvent::Tripped {
                kind: TripKind::KillSwitch,
                reason: "kill switch by test".into(),
            }]
        } else if n == clear_at {
            vec![RiskEvent::Cleared {
                kind: TripKind::KillSwitch,
                by: "test".into(),
            }]
        } else {
            Vec::new()
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let killed = record_sample_with(dir.path(), &meta, commands);
    // Every bundle decided while killed is refused, none filled.
    let during: Vec<_> = killed
        .iter()
        .filter(|r| (kill_at..clear_at).contains(&r.block.number))
        .collect();
    let sent: usize = during.iter().map(|r| r.sent.len()).sum();
    assert!(sent > 0);
    for r in &during {
        for p in &r.sent {
            assert!(
                r.risk.iter().any(|e| matches!(
                    e,
                    RiskEvent::Refused { id, rule: Rule::Halted, .. } if *id == p.id
                )),
                "bundle {} of block {} was not refused: {:?}",
                p.id,
                r.block.number,
                r.risk
            );
        }
    }
    // Refused means never sent: each one's outcome is a rejection in its own block, no gas.
    for r in &during {
        for p in &r.sent {
            let o = r
                .outcomes
                .iter()
                .find(|o| o.id == p.id)
                .expect("an outcome");
            assert_eq!(o.status, FillStatus::Rejected);
        }
    }
    // Without the kill, nothing was refused.
    assert!(recs.iter().all(|r| r.risk.is_empty()));

    // The replay takes the commands from the record: identical.
    let report = session::replay(dir.path(), &mut build(&meta)).unwrap();
    assert!(report.identical, "{:#?}", report.first_difference);

    // The kill moved one block later in the record: the replay sees the first refusal differ.
    let text = std::fs::read_to_string(dir.path().join(session::BLOCKS_FILE)).unwrap();
    let mut moved: Vec<BlockRecord> = killed.clone();
    let i = moved
        .iter()
        .position(|r| r.block.number == kill_at)
        .unwrap();
    let kill = moved[i].risk.remove(0);
    moved[i + 1].risk.insert(0, kill);
    let lines: Vec<String> = moved
        .iter()
        .map(|r| serde_json::to_string(&Record::Block(Box::new(r.clone()))).unwrap())
        .collect();
    std::fs::write(
        dir.path().join(session::BLOCKS_FILE),
        lines.join("\n") + "\n",
    )
    .unwrap();
    let report = session::replay(dir.path(), &mut build(&meta)).unwrap();
    assert!(!report.identical);
    assert_eq!(report.first_difference.unwrap().block, kill_at);
    std::fs::write(dir.path().join(session::BLOCKS_FILE), text).unwrap();

    // A session stopped while killed is still killed when its engine is rebuilt from the record.
    let cut = killed
        .iter()
        .position(|r| r.block.number == clear_at)
        .unwrap();
    let cfg = SessionRun::exec_config(&meta).unwrap();
    let mut run = SessionRun::start(&meta, &cfg, &mut build(&meta)).unwrap();
    assert_eq!(
        run.replay(&killed[..cut], true, &mut build(&meta)).unwrap(),
        None
    );
    let halts = run.driver.risk.as_ref().unwrap().halts();
    assert_eq!(halts.len(), 1);
    assert_eq!(halts[0].0, TripKind::KillSwitch);
}

/// What the test's "chain" does with the `k`-th bundle it sees.
fn chain_outcome(
    k: u64,
    id: u64,
    block: u64,
    expected: U256,
) -> dexlab_engine::chain::ChainOutcome {
    use dexlab_engine::chain::ChainOutcome;
    let base = ChainOutcome {
        id,
        status: FillStatus::Filled,
        block,
        amount_out: U256::ZERO,
        gas_used: 0,
        l2_fee_wei: 0,
        l1_fee_wei: 0,
        operator_fee_wei: 0,
        tx: None,
        reason: None,
    };
    match k % 4 {
        // Filled one unit short of what the strategy expected: the books take the chain's figure.
        0 | 1 => ChainOutcome {
            amount_out: expected.saturating_sub(U256::from(1)),
            gas_used: 150_000,
            l2_fee_wei: 150_000 * 1_000_000_000,
            l1_fee_wei: 7_000_000_000,
            ..base
        },
        2 => ChainOutcome {
            status: FillStatus::Reverted,
            gas_used: 160_000,
            l2_fee_wei: 160_000 * 1_000_000_000,
            reason: Some("InsufficientOutput".into()),
            ..base
        },
        // Not mined by its deadline, replaced by the sender's cancellation, which cost gas.
        _ => ChainOutcome {
            status: FillStatus::Expired,
            gas_used: 21_000,
            l2_fee_wei: 21_000 * 1_000_000_000,
            ..base
        },
    }
}

#[test]
fn a_live_session_books_what_the_chain_reports_and_replays_from_it() {
    use dexlab_engine::session::{LiveMeta, TokenBalance};
    let paper = sample_meta();
    let cfg = SessionRun::exec_config(&paper).unwrap();
    let usdc = cfg.env.quote;
    let start = U256::from(10_000_000_000u64);
    let meta = SessionMeta {
        mode: SessionMode::Live,
        live: Some(LiveMeta {
            executor: alloy_primitives::Address::repeat_byte(0xe1),
            operator: alloy_primitives::Address::repeat_byte(0x0b),
            balances: vec![TokenBalance {
                token: usdc,
                amount: start,
            }],
            operator_balance: U256::from(10u64).pow(U256::from(18)),
            reconcile_every: 10,
        }),
        ..paper
    };
    let ds = sample_dataset();
    let logs = dexlab_data::dataset::read_all_logs(ds).unwrap();
    let headers = dexlab_data::dataset::read_all_blocks(ds).unwrap();
    let mut by_block: BTreeMap<u64, Vec<dexlab_data::RawLog>> = BTreeMap::new();
    for l in logs {
        by_block.entry(l.block_number).or_default().push(l);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut run = SessionRun::start(&meta, &cfg, &mut build(&meta)).unwrap();
    let mut w = SessionWriter::create(dir.path(), &meta).unwrap();
    // What the executor holds by the chain's own account, kept apart from the engine's books.
    let mut held: BTreeMap<alloy_primitives::Address, U256> = BTreeMap::from([(usdc, start)]);
    // Filled, reverted, expired.
    let mut fed = [0u64; 3];
    let mut due: Vec<InFlight> = Vec::new();
    let mut k = 0u64;
    // The last bundle sent is never reported: the chain has not settled it, so it stays in
    // flight however long past its deadline.
    let mut unreported = None;
    let first = headers[0].number;
    let last = headers.last().unwrap().number;
    for n in first..=last {
        let block = BlockInfo::at(
            n,
            headers
                .iter()
                .find(|h| h.number == n)
                .map_or(0, |h| h.timestamp),
        );
        let chain: Vec<_> = due
            .drain(..)
            .map(|p| {
                let c = chain_outcome(k, p.id, n, p.bundle.expected_out);
                k += 1;
                fed[match c.status {
                    FillStatus::Filled => 0,
                    FillStatus::Reverted => 1,
                    _ => 2,
                }] += 1;
                if c.status == FillStatus::Filled {
                    let out = dexlab_engine::ledger::last_token_out(&run.driver.market, &p.bundle);
                    let t_in = p.bundle.token_in();
                    *held.get_mut(&t_in).unwrap() -= p.bundle.amount_in;
                    *held.entry(out).or_default() += c.amount_out;
                }
                c
            })
            .collect();
        let logs = by_block.remove(&n).unwrap_or_default();
        let log = run.step_with(block, &logs, &[], &chain).unwrap();
        for p in &log.sent {
            if log.outcomes.iter().any(|o| o.id == p.id) {
                continue; // refused at sending: never on the chain
            }
            if n < last - 20 {
                due.push(p.clone());
            } else {
                unreported.get_or_insert(p.id);
            }
        }
        let rec = BlockRecord {
            block,
            hash: None,
            parent_hash: None,
            logs,
            sent: log.sent,
            outcomes: log.outcomes,
            node_checks: Vec::new(),
            risk: log.risk,
            chain,
            switch: None,
        };
        w.write(&Record::Block(Box::new(rec))).unwrap();
    }
    assert!(
        fed.iter().all(|&n| n >= 2),
        "too few bundles to test: {fed:?}"
    );
    let t = &run.driver.ledger.tally;
    assert_eq!([t.filled, t.reverted, t.expired], fed);
    assert!(t.gas_quote > U256::ZERO);
    // The books, gas put back, are what the chain holds, to the unit.
    let books: BTreeMap<_, _> = run
        .driver
        .ledger
        .executor_balances()
        .into_iter()
        .filter(|(_, v)| !v.is_zero())
        .collect();
    held.retain(|_, v| !v.is_zero());
    assert_eq!(books, held);
    // The chain decides expiry: a bundle it has not settled is still in flight past its deadline.
    if let Some(id) = unreported {
        let p = run.driver.inflight.iter().find(|p| p.id == id).unwrap();
        assert!(p.deadline < last, "{p:?}");
    }
    // The replay takes the chain's outcomes from the record and decides the same.
    let r = session::replay(dir.path(), &mut build(&meta)).unwrap();
    assert!(r.identical, "{r:?}");
    // An outcome for a bundle that is not in flight is an error that names it.
    let e = run
        .step_with(
            BlockInfo::at(last + 1, 0),
            &[],
            &[],
            &[chain_outcome(0, 9_999, last + 1, U256::ZERO)],
        )
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("9999") && e.contains("not in flight"), "{e}");
}

#[test]
fn a_backtest_runs_under_the_configs_risk_limits_as_a_session_does() {
    // Two bundles for half the money each, in one block: both fill without limits ...
    let tape = two_pool_tape(&[flat(), vec![], vec![], vec![], vec![]]);
    let market = tape.market();
    let mut cfg = exec(e6(1000), 0.0);
    let mut s = Spender::new(2, 2);
    let r = run(&tape, &market, 0..tape.blocks.len(), &mut s, &cfg, true);
    assert_eq!((r.metrics.filled, r.metrics.rejected), (2, 0));
    // ... and one is refused, never sent, under `max_bundles_per_block = 1`, read from
    // `[backtest.risk]` as an experiment config gives it.
    let b: BacktestConfig = toml::from_str("[risk]\nmax_bundles_per_block = 1\n").unwrap();
    b.validate().unwrap();
    cfg.risk = b.risk;
    assert_eq!(cfg.risk.as_ref().unwrap().max_bundles_per_block, 1);
    let mut s = Spender::new(2, 2);
    let r = run(&tape, &market, 0..tape.blocks.len(), &mut s, &cfg, true);
    assert_eq!((r.metrics.filled, r.metrics.rejected), (1, 1));
    // A wrong limit is refused by its full key.
    let b: BacktestConfig = toml::from_str("[risk]\nmax_bundles_per_block = 0\n").unwrap();
    let e = b.validate().unwrap_err();
    assert!(e.contains("backtest.risk.max_bundles_per_block"), "{e}");
}

#[test]
fn a_live_sessions_starting_holdings_carry_their_worth_as_cost_basis() {
    use dexlab_data::snapshot::{PoolSnapshot, ReservesSnapshot};
    use dexlab_data::types::{PoolInfo, Protocol, TokenInfo};
    use dexlab_engine::session::{LiveMeta, TokenBalance};
    let token = |b: u8, symbol: &str, decimals: u8| TokenInfo {
        address: alloy_primitives::Address::with_last_byte(b),
        symbol: symbol.into(),
        decimals,
    };
    let (usdc, weth) = (token(0x05, "USDC", 6), token(0xee, "WETH", 18));
    let pool = PoolInfo {
        address: alloy_primitives::Address::with_last_byte(1),
        protocol: Protocol::UniswapV2,
        dex: "uniswap-v2".into(),
        token0: usdc.clone(),
        token1: weth.clone(),
        fee: 3000,
        tick_spacing: None,
        stable: None,
    };
    // 2,000,000 USDC against 1,000 WETH: 2,000 USDC a WETH.
    let meta = SessionMeta {
        mode: SessionMode::Live,
        pools: vec![pool.clone()],
        snapshots: vec![PoolSnapshot::Reserves(ReservesSnapshot {
            pool: pool.address,
            block: 99,
            reserve0: e6(2_000_000).to_string(),
            reserve1: e18(1_000).to_string(),
        })],
        bootstrap_block: 99,
        live: Some(LiveMeta {
            executor: alloy_primitives::Address::repeat_byte(0xe1),
            operator: alloy_primitives::Address::repeat_byte(0x0b),
            balances: vec![
                TokenBalance {
                    token: usdc.address,
                    amount: e6(1_000),
                },
                TokenBalance {
                    token: weth.address,
                    amount: e18(3),
                },
            ],
            operator_balance: e18(1),
            reconcile_every: 10,
        }),
        ..sample_meta()
    };
    let cfg = SessionRun::exec_config(&meta).unwrap();
    let run = SessionRun::start(&meta, &cfg, &mut build(&meta)).unwrap();
    let l = &run.driver.ledger;
    assert_eq!(l.balances[&weth.address], e18(3));
    assert_eq!(l.balances[&usdc.address], e6(1_000));
    // 3 WETH at 2,000: 6,000 USDC of basis (to the unit, at the mid price).
    assert_eq!(l.basis.get(&weth.address).copied(), Some(e6(6_000)));
    assert_eq!(l.basis.get(&usdc.address), None);
}

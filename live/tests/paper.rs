//! Paper sessions on the devnet: through a reorg (anvil `evm_snapshot` / `evm_revert`) it records
//! the reorg and ends with the pools' state equal to a fresh bootstrap at the new head, every
//! bundle checked on the node and agreeing with the exact math, and its row in the store; through
//! a dropped WebSocket it loses no block; a strategy that warms up starts that many blocks back.

use std::time::{Duration, Instant};

use alloy::providers::{Provider, ext::AnvilApi};
use dexlab_engine::config::BacktestConfig;
use dexlab_engine::session;
use dexlab_engine::tape::initial_market;
use dexlab_live::paper::{NewSession, PaperOptions, PaperSummary, run_paper};
use dexlab_live::{bootstrap, head_ref};
use dexlab_strategy::market::Market;
use dexlab_strategy::{Strategy, TradingEnv, registry};

use crate::reorg::mine_other_block;
use crate::support::*;

fn devnet_backtest_config() -> BacktestConfig {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/evolve-devnet.toml"
    ))
    .unwrap();
    #[derive(serde::Deserialize)]
    struct Experiment {
        backtest: BacktestConfig,
    }
    toml::from_str::<Experiment>(&text)
        .expect("[backtest]")
        .backtest
}

/// A new session of `strategy` with `params` on `pools`, on the devnet's execution config.
fn new_session(
    pools: &[dexlab_data::types::PoolInfo],
    strategy: &str,
    params: &serde_json::Value,
) -> NewSession {
    NewSession {
        pools: pools.to_vec(),
        pool_addresses: Vec::new(),
        strategy: strategy.into(),
        params: params.clone(),
        backtest: devnet_backtest_config(),
        seed: 5,
        model: None,
        risk: None,
        deployment: None,
    }
}

/// The factory `dexlab live` builds for `strategy` with `params`.
fn factory(
    strategy: &'static str,
    params: &serde_json::Value,
) -> impl FnMut(&session::StrategySpec, &Market, &TradingEnv) -> Result<Box<dyn Strategy>, String> + use<>
{
    let parsed = registry::parse_params(strategy, params).unwrap();
    move |_: &session::StrategySpec, m: &Market, env: &TradingEnv| {
        registry::build(strategy, m, env, &parsed).map_err(|e| e.to_string())
    }
}

/// The last recorded block of the session (reorgs applied) and its hash.
fn recorded_head(dir: &std::path::Path) -> Option<(u64, alloy::primitives::B256)> {
    let r = session::read(dir).ok()?;
    let b = r.blocks.last()?;
    Some((b.block.number, b.hash?))
}

async fn wait_recorded(dir: &std::path::Path, p: &alloy::providers::DynProvider) {
    let head = p
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header;
    let deadline = Instant::now() + Duration::from_secs(60);
    while recorded_head(dir) != Some((head.number, head.hash)) {
        assert!(
            Instant::now() < deadline,
            "the session did not reach block {} ({}): it stands at {:?}",
            head.number,
            head.hash,
            recorded_head(dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paper_session_through_a_reorg_ends_on_the_state_of_a_fresh_bootstrap() {
    let (mut d, _dir) = devnet(43, 30).await;
    let p = http_provider(d.http_url());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("session");
    let opts = PaperOptions {
        rpc: d.ws_url(),
        http_fallback: None,
        session: dir.clone(),
        blocks: None,
        live: None,
        registry: Some(dexlab_live::paper::Registry {
            store: dexlab_store::Store::connect(&format!(
                "sqlite:{}",
                tmp.path().join("dexlab.sqlite").display()
            ))
            .await
            .unwrap(),
            host: "test-host".into(),
        }),
    };
    let store = opts.registry.as_ref().unwrap().store.clone();
    let params = serde_json::json!({"min_profit_bps": 0});
    let new = new_session(&d.manifest.pools, "cross-venue-arb", &params);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut build = factory("cross-venue-arb", &params);
    // The session and the chain's driver run side by side in this task.
    let paper = run_paper(
        &opts,
        Some(new),
        &mut build,
        async {
            let _ = stop_rx.await;
        },
        |_| {},
    );
    let chain = async {
        // Wait for the session to exist, then trade a while.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join(session::META_FILE).exists() {
            assert!(Instant::now() < deadline, "the session never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..60 {
            d.mine_block(200).await.unwrap();
        }
        wait_recorded(&dir, &p).await;
        // A branch of 3 blocks the session sees, then dropped for one of 5.
        let snap = p.anvil_snapshot().await.unwrap();
        for _ in 0..3 {
            d.mine_block(200).await.unwrap();
        }
        wait_recorded(&dir, &p).await;
        assert!(p.anvil_revert(snap).await.unwrap());
        let ts = head_timestamp(&p).await;
        for i in 0..5 {
            mine_other_block(&p, &d, i, ts + 1 + i).await;
        }
        wait_recorded(&dir, &p).await;
        stop_tx.send(()).unwrap();
    };
    let (s, ()) = tokio::join!(paper, chain);
    let s: PaperSummary = s.unwrap();

    assert_eq!(s.reorgs, 1, "{s:?}");
    assert!(
        s.bundles > 0,
        "no bundle in the session: the check is weak {s:?}"
    );
    assert_eq!(s.node_mismatches, 0, "{s:?}");
    assert_eq!(s.node_unavailable, 0, "{s:?}");
    assert!(s.node_checked > 0, "{s:?}");
    let head = head_ref(&p).await.unwrap();
    let fresh = bootstrap(&p, &d.manifest.pools, head).await.unwrap();
    let (_, states) = initial_market(&d.manifest.pools, &fresh.pools).unwrap();
    assert_eq!(s.reference_states.len(), states.len());
    for (i, (a, b)) in s.reference_states.iter().zip(&states).enumerate() {
        assert_eq!(a, b, "pool {i} ({})", d.manifest.pools[i].address);
    }
    let rec = session::read(&dir).unwrap();
    assert_eq!(rec.reorgs, 1);
    let checks: usize = rec.blocks.iter().map(|b| b.node_checks.len()).sum();
    let sent: usize = rec.blocks.iter().map(|b| b.sent.len()).sum();
    assert_eq!(checks, sent, "every bundle recorded with its node check");

    // The session's row: stopped, with the session's totals.
    let rows = store.list_sessions().await.unwrap();
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r.status, dexlab_store::SessionStatus::Stopped);
    assert_eq!(
        r.dir,
        std::path::absolute(&dir).unwrap().display().to_string()
    );
    assert_eq!(r.strategy, "cross-venue-arb");
    assert_eq!(r.progress.blocks, rec.blocks.len() as u64);
    assert_eq!(
        r.progress.last_block,
        rec.blocks.last().map(|b| b.block.number)
    );
    assert_eq!(r.progress.bundles, s.bundles);
    assert_eq!(r.host, "test-host");
    assert_eq!(r.error, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_strategy_that_warms_up_starts_that_many_blocks_back_and_watches_them() {
    let (d, _dir) = devnet(44, 100).await;
    let p = http_provider(d.http_url());
    let head = p.get_block_number().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("session");
    // price-reversion asks for 4 EMA windows of history: 40 blocks.
    let params = serde_json::json!({"window_blocks": 10});
    let opts = PaperOptions {
        rpc: d.http_url().to_string(),
        http_fallback: None,
        session: dir.clone(),
        blocks: Some(40),
        registry: None,
        live: None,
    };
    let new = new_session(&d.manifest.pools, "price-reversion", &params);
    let mut build = factory("price-reversion", &params);
    let s = run_paper(&opts, Some(new), &mut build, std::future::pending(), |_| {})
        .await
        .unwrap();
    assert_eq!(s.warmup_blocks, 40, "{s:?}");
    assert_eq!(s.warmup_skipped, None);
    assert_eq!(s.blocks, 40);
    assert_eq!(s.bundles, 0, "a bundle sent while warming up: {s:?}");
    let rec = session::read(&dir).unwrap();
    assert_eq!(rec.meta.bootstrap_block, head - 40);
    assert_eq!(rec.meta.warmup_blocks, 40);
    assert_eq!(rec.blocks.last().unwrap().block.number, head);
    let r = session::replay(&dir, &mut build).unwrap();
    assert!(r.identical, "{r:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paper_session_through_a_dropped_websocket_loses_no_block() {
    let mut chain = LiveChain::start(45, 0, 200).await;
    let proxy = TcpProxy::start(chain.port).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("session");
    let params = serde_json::json!({"min_profit_bps": 0});
    let opts = PaperOptions {
        rpc: proxy.ws_url(),
        http_fallback: None,
        session: dir.clone(),
        blocks: None,
        registry: None,
        live: None,
    };
    let new = new_session(&chain.pools, "cross-venue-arb", &params);
    let mut build = factory("cross-venue-arb", &params);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let paper = run_paper(
        &opts,
        Some(new),
        &mut build,
        async {
            let _ = stop_rx.await;
        },
        |_| {},
    );
    // Blocks recorded once the session has sent a bundle (so that the node check is exercised).
    let recorded = |dir: &std::path::Path| {
        session::read(dir).map_or(0, |r| {
            if r.blocks.iter().any(|b| !b.sent.is_empty()) {
                r.blocks.len()
            } else {
                0
            }
        })
    };
    let p = chain.provider();
    let outage = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while recorded(&dir) < 8 {
            assert!(
                Instant::now() < deadline,
                "the session did not start trading"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Cut the socket and keep the node out of reach while it mines on.
        proxy.set_refusing(true);
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let head_in_outage = p.get_block_number().await.unwrap();
        proxy.set_refusing(false);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = session::read(&dir)
                .ok()
                .and_then(|r| r.blocks.last().map(|b| b.block.number));
            if last.is_some_and(|l| l >= head_in_outage + 5) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the session did not come back: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(()).unwrap();
        head_in_outage
    };
    let (s, head_in_outage) = tokio::join!(paper, outage);
    let s = s.unwrap();
    chain.stop().await;
    assert!(
        proxy.refused() > 0,
        "the session tried to reconnect during the outage"
    );
    let rec = session::read(&dir).unwrap();
    let numbers: Vec<u64> = rec.blocks.iter().map(|b| b.block.number).collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "a block missed or repeated: {numbers:?}"
    );
    assert!(*numbers.last().unwrap() >= head_in_outage + 5);
    assert_eq!(s.node_mismatches, 0, "{s:?}");
    // The node checks' connection came back too.
    assert_eq!(s.node_unavailable, 0, "{s:?}");
    assert!(s.node_checked > 0, "{s:?}");
    let r = session::replay(&dir, &mut build).unwrap();
    assert!(r.identical, "{r:?}");
}

/// Live mode through a reorg: the transactions the dropped blocks had settled are settled anew
/// from the new branch (here: gone with it, so their bundles expire at no gas), the nonces follow
/// the new branch, and the books still equal what the executor holds on chain.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_session_through_a_reorg_keeps_its_books_equal_to_the_chain() {
    let (mut d, _dir) = devnet(43, 30).await;
    let p = http_provider(d.http_url());
    let op = d
        .manifest
        .operator
        .clone()
        .expect("chain up makes an operator");
    let signer = operator_key(&op);
    assert_eq!(signer.address(), op.address);
    // The session bootstraps at the block before the head: past the executor's funding.
    for _ in 0..2 {
        d.mine_block(200).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("session");
    let opts = PaperOptions {
        rpc: d.ws_url(),
        http_fallback: None,
        session: dir.clone(),
        blocks: None,
        live: Some(dexlab_live::onchain::LiveOptions {
            signer,
            executor: op.executor,
            reconcile_every: 3,
        }),
        registry: None,
    };
    let params = serde_json::json!({"min_profit_bps": 0});
    let mut new = new_session(&d.manifest.pools, "cross-venue-arb", &params);
    // Bundles may land up to 3 blocks late: the test mines as it pleases.
    new.backtest.deadline_blocks = 3;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut build = factory("cross-venue-arb", &params);
    let live = run_paper(
        &opts,
        Some(new),
        &mut build,
        async {
            let _ = stop_rx.await;
        },
        |_| {},
    );
    let chain = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join(session::META_FILE).exists() {
            assert!(Instant::now() < deadline, "the session never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for _ in 0..80 {
            d.mine_block(200).await.unwrap();
            wait_recorded(&dir, &p).await;
        }
        // Until a transaction of ours waits in the pool: decided on the block about to become
        // the common ancestor, it is mined in the branch the reorg drops.
        mine_until_ours_pending(&mut d, &p, &dir, op.address).await;
        // A branch of 3 blocks the session sees, then dropped for one of 15.
        let snap = p.anvil_snapshot().await.unwrap();
        for _ in 0..3 {
            d.mine_block(200).await.unwrap();
            wait_recorded(&dir, &p).await;
        }
        assert!(p.anvil_revert(snap).await.unwrap());
        let ts = head_timestamp(&p).await;
        for i in 0..15 {
            mine_other_block(&p, &d, i, ts + 1 + i).await;
            wait_recorded(&dir, &p).await;
        }
        stop_tx.send(()).unwrap();
    };
    let (s, ()) = tokio::join!(live, chain);
    let s: PaperSummary = s.unwrap();
    assert_eq!(s.reorgs, 1, "{s:?}");
    let l = s.live.as_ref().unwrap();
    assert!(l.sent > 0, "no transaction: the check is weak {s:?}");
    assert!(l.differences.is_empty(), "{:?}", l.differences);
    assert!(!l.tokens.is_empty());
    for t in &l.tokens {
        assert!(t.agrees, "{t:?}");
    }
    assert_eq!(
        l.operator_spent_wei.as_deref(),
        Some(l.gas_booked_wei.as_str())
    );
    // The case in point happened: a transaction of ours was mined in a block the reorg dropped.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(dir.join(session::BLOCKS_FILE))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ancestor = lines
        .iter()
        .find_map(|v| v["reorg"]["common_ancestor"].as_u64())
        .unwrap();
    let reorg_at = lines.iter().position(|v| v.get("reorg").is_some()).unwrap();
    let mined_on_dropped = lines[..reorg_at]
        .iter()
        .filter(|v| v["block"]["block"]["number"].as_u64() > Some(ancestor))
        .flat_map(|v| v["block"]["chain"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["tx"].is_string() && c["status"] != "expired")
        .count();
    assert!(
        mined_on_dropped > 0,
        "no transaction of ours in the dropped blocks"
    );
    // And nothing is left hanging: every bundle the dropped blocks had settled was settled
    // anew from the new branch (here: gone with it, so expired at no gas).
    assert_eq!(s.in_flight, 0, "{s:?}");
    let r = session::replay(&dir, &mut build).unwrap();
    assert!(r.identical, "{r:?}");
}

/// Live mode through a dropped WebSocket: the socket is cut and the node kept out of reach while
/// the chain mines on; the session comes back with no block missed or repeated, its transactions
/// followed through the outage, its books still what the executor holds on chain.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_session_through_a_dropped_websocket_loses_no_block() {
    let mut chain = LiveChain::start(45, 0, 200).await;
    let p = chain.provider();
    // The session bootstraps at the block before the head: past the executor's funding.
    let funded = chain.manifest.last_block;
    let deadline = Instant::now() + Duration::from_secs(30);
    while p.get_block_number().await.unwrap() < funded + 2 {
        assert!(Instant::now() < deadline, "the chain does not mine");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let op = chain.manifest.operator.clone().unwrap();
    let signer = operator_key(&op);
    let proxy = TcpProxy::start(chain.port).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("session");
    let params = serde_json::json!({"min_profit_bps": 0});
    let opts = PaperOptions {
        rpc: proxy.ws_url(),
        http_fallback: None,
        session: dir.clone(),
        blocks: None,
        registry: None,
        live: Some(dexlab_live::onchain::LiveOptions {
            signer,
            executor: op.executor,
            reconcile_every: 4,
        }),
    };
    let mut new = new_session(&chain.pools, "cross-venue-arb", &params);
    new.backtest.deadline_blocks = 3;
    let mut build = factory("cross-venue-arb", &params);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let live = run_paper(
        &opts,
        Some(new),
        &mut build,
        async {
            let _ = stop_rx.await;
        },
        |_| {},
    );
    // Blocks recorded once a transaction has been sent.
    let recorded = |dir: &std::path::Path| {
        session::read(dir).map_or(0, |r| {
            if r.blocks.iter().any(|b| !b.sent.is_empty()) {
                r.blocks.len()
            } else {
                0
            }
        })
    };
    let outage = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while recorded(&dir) < 30 {
            assert!(
                Instant::now() < deadline,
                "the session did not start trading"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        proxy.set_refusing(true);
        proxy.cut();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let head_in_outage = p.get_block_number().await.unwrap();
        proxy.set_refusing(false);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = session::read(&dir)
                .ok()
                .and_then(|r| r.blocks.last().map(|b| b.block.number));
            if last.is_some_and(|l| l >= head_in_outage + 30) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the session did not come back: {last:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop_tx.send(()).unwrap();
        head_in_outage
    };
    let (s, head_in_outage) = tokio::join!(live, outage);
    let s = s.unwrap();
    chain.stop().await;
    assert!(
        proxy.refused() > 0,
        "the session tried to reconnect during the outage"
    );
    let rec = session::read(&dir).unwrap();
    let numbers: Vec<u64> = rec.blocks.iter().map(|b| b.block.number).collect();
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1),
        "a block missed or repeated: {numbers:?}"
    );
    assert!(*numbers.last().unwrap() >= head_in_outage + 30);
    let l = s.live.as_ref().unwrap();
    assert!(l.sent > 0, "no transaction: the check is weak {s:?}");
    assert!(s.fills > 0, "{s:?}");
    assert!(l.differences.is_empty(), "{:?}", l.differences);
    for t in &l.tokens {
        assert!(t.agrees, "{t:?}");
    }
    let r = session::replay(&dir, &mut build).unwrap();
    assert!(r.identical, "{r:?}");
}

/// Live mode's revert breaker: a transaction that passed its `eth_call` check reverts on chain
/// (the executor's tokens vanish between the check and the block), it is booked as a revert with
/// the gas its receipt says, and both `max_consecutive_reverts = 1` and the daily loss limit halt
/// trading from the next block.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_revert_is_booked_with_its_gas_and_trips_the_breaker_and_the_loss_limit() {
    let (mut d, _dir) = devnet(43, 30).await;
    let p = http_provider(d.http_url());
    let op = d.manifest.operator.clone().unwrap();
    let signer = operator_key(&op);
    // The executor holds the quote token only, so that its equity moves by what it trades and
    // pays, not by the marks of other holdings.
    let tokens: Vec<_> = d.manifest.tokens.clone();
    let mut sim = dexlab_live::executor::NodeSim::from_artifact(p.clone()).unwrap();
    for t in tokens.iter().filter(|t| t.symbol != "USDC") {
        zero_balance(&p, &mut sim, t.address, op.executor).await;
    }
    for _ in 0..2 {
        d.mine_block(200).await.unwrap();
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("session");
    let opts = PaperOptions {
        rpc: d.ws_url(),
        http_fallback: None,
        session: dir.clone(),
        blocks: None,
        live: Some(dexlab_live::onchain::LiveOptions {
            signer,
            executor: op.executor,
            reconcile_every: 1_000,
        }),
        registry: None,
    };
    let params = serde_json::json!({"min_profit_bps": 0});
    let mut new = new_session(&d.manifest.pools, "cross-venue-arb", &params);
    new.backtest.deadline_blocks = 3;
    // The revert breaker, and a daily loss limit any gas paid for nothing is over (limits are
    // written to session.json: finite).
    new.risk = Some(dexlab_engine::risk::RiskLimits {
        max_notional_quote: 1e12,
        max_exposure_quote: 1e12,
        daily_loss_quote: 1e-9,
        max_gas_price_wei: 10u128.pow(15),
        max_consecutive_reverts: 1,
        max_bundles_per_block: 100,
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut build = factory("cross-venue-arb", &params);
    let live = run_paper(
        &opts,
        Some(new),
        &mut build,
        async {
            let _ = stop_rx.await;
        },
        |_| {},
    );
    let chain = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !dir.join(session::META_FILE).exists() {
            assert!(Instant::now() < deadline, "the session never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        mine_until_ours_pending(&mut d, &p, &dir, op.address).await;
        // The executor's tokens vanish after the check: its first transaction reverts on chain.
        for t in &tokens {
            zero_balance(&p, &mut sim, t.address, op.executor).await;
        }
        for _ in 0..4 {
            d.mine_block(200).await.unwrap();
            wait_recorded(&dir, &p).await;
        }
        stop_tx.send(()).unwrap();
    };
    let (s, ()) = tokio::join!(live, chain);
    let s: PaperSummary = s.unwrap();
    assert!(s.reverts >= 1, "{s:?}");
    // Both halts: reverts in a row, and the day's loss (the revert's gas, nothing gained).
    for kind in ["Reverts", "DailyLoss"] {
        assert!(
            s.halted.iter().any(|h| h.starts_with(kind)),
            "{kind}: {:?} {:?}",
            s.halted,
            s.risk_events
        );
    }
    assert_eq!(
        s.fills, 0,
        "the first transaction is the one that reverted: {s:?}"
    );
    // The revert's gas is the receipt's: booked, and what the operator's account paid.
    let rec = session::read(&dir).unwrap();
    let reverted: Vec<_> = rec
        .blocks
        .iter()
        .flat_map(|b| &b.chain)
        .filter(|c| c.status == dexlab_strategy::FillStatus::Reverted)
        .collect();
    assert!(!reverted.is_empty());
    for c in &reverted {
        assert!(c.gas_used > 21_000 && c.l2_fee_wei > 0, "{c:?}");
        let r = p
            .get_transaction_receipt(c.tx.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(!r.status());
        assert_eq!(r.gas_used, c.gas_used);
        assert_eq!(u128::from(r.gas_used) * r.effective_gas_price, c.l2_fee_wei);
    }
    let l = s.live.as_ref().unwrap();
    assert_eq!(
        l.operator_spent_wei.as_deref(),
        Some(l.gas_booked_wei.as_str())
    );
    let r = session::replay(&dir, &mut build).unwrap();
    assert!(r.identical, "{r:?}");
}

/// Sets `holder`'s balance of `token` to zero in the token's storage (anvil).
async fn zero_balance(
    p: &alloy::providers::DynProvider,
    sim: &mut dexlab_live::executor::NodeSim,
    token: alloy::primitives::Address,
    holder: alloy::primitives::Address,
) {
    let layout = sim
        .balance_layout(token, alloy::eips::BlockId::latest())
        .await
        .unwrap();
    p.anvil_set_storage_at(
        token,
        alloy::primitives::U256::from_be_bytes(layout.key(holder).0),
        alloy::primitives::B256::ZERO,
    )
    .await
    .unwrap();
}

/// The devnet operator's key, from its keystore.
fn operator_key(
    op: &dexlab_data::manifest::OperatorInfo,
) -> alloy::signers::local::PrivateKeySigner {
    dexlab_live::signer::load_key(&dexlab_live::signer::KeySource::Keystore {
        path: op.keystore.clone(),
        password_file: op.password_file.clone(),
    })
    .unwrap()
}

/// Mines block after block until a transaction of `operator`'s waits in the node's pool (sent by
/// the session after the last block, not mined yet).
async fn mine_until_ours_pending(
    d: &mut dexlab_data::devnet::Devnet,
    p: &alloy::providers::DynProvider,
    dir: &std::path::Path,
    operator: alloy::primitives::Address,
) {
    let count = |tag: &'static str| async move {
        let v: alloy::primitives::U64 = p
            .raw_request("eth_getTransactionCount".into(), (operator, tag))
            .await
            .unwrap();
        v.to::<u64>()
    };
    for _ in 0..300 {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(300) {
            if count("pending").await > count("latest").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        d.mine_block(200).await.unwrap();
        wait_recorded(dir, p).await;
    }
    panic!("the session sent nothing");
}

//! The backtester must not flatter a strategy: our trades leave a mark on the pools, and our bundle
//! queues behind the block's higher-priority transactions.

use alloy_primitives::U256;
use dexlab_amm::v2::get_amount_out;
use dexlab_engine::backtest::run;
use dexlab_strategy::gas::{bundle_gas, convert, cost_wei};
use dexlab_strategy::market::Market;
use dexlab_strategy::registry;
use dexlab_strategy::{Action, Bundle, BundleTag, Context, FillStatus, Leg, Strategy};

use crate::support::*;

/// WETH at 2000 USDC in pool 0 and 2100 in pool 1, then `noise` blocks in which each pool sees a
/// tiny historical swap (one USDC in, its WETH out), so both keep roughly the gap they had.
fn gap_then_noise(noise: usize) -> Blocks {
    let mut blocks = vec![vec![
        (0, e6(2_000_000), e18(1000)),
        (1, e6(2_100_000), e18(1000)),
    ]];
    let (mut a, mut b) = ((e6(2_000_000), e18(1000)), (e6(2_100_000), e18(1000)));
    for _ in 0..noise {
        let out_a = get_amount_out(e6(1), a.0, a.1, 3000).unwrap();
        a = (a.0 + e6(1), a.1 - out_a);
        let out_b = get_amount_out(e6(1), b.0, b.1, 2500).unwrap();
        b = (b.0 + e6(1), b.1 - out_b);
        blocks.push(vec![(0, a.0, a.1), (1, b.0, b.1)]);
    }
    blocks
}

#[test]
fn a_gap_is_captured_once_not_once_per_noise_swap() {
    let tape = two_pool_tape(&gap_then_noise(30));
    let cfg = exec(e6(1_000_000), 0.0);
    let market = tape.market();
    let params = registry::parse_params(
        "cross-venue-arb",
        &serde_json::json!({"min_profit_bps": 0.0, "max_notional_frac": 1.0}),
    )
    .unwrap();
    let mut s = registry::build("cross-venue-arb", &market, &cfg.env, &params).unwrap();
    let r = run(&tape, &market, 0..tape.blocks.len(), s.as_mut(), &cfg, true);
    // What one capture of the gap is worth at most: the optimal two-pool arbitrage before gas.
    let m = tape.market_at(1);
    let route = [
        Leg {
            pool: 0,
            token_in: usdc(),
        },
        Leg {
            pool: 1,
            token_in: weth(),
        },
    ];
    let best = dexlab_strategy::arb::optimal_input(&m, &route, e6(1_000_000)).unwrap();
    let once = dexlab_strategy::market::to_human(best.amount_out - best.amount_in, 6);
    assert!(
        r.metrics.filled <= 2,
        "one gap, {} fills: {:#?}",
        r.metrics.filled,
        r.trades
    );
    assert!(
        r.metrics.net_pnl_quote <= once,
        "made {} from a gap worth {once}",
        r.metrics.net_pnl_quote
    );
}

/// Buys WETH with `amount` USDC in pool 0 once, at block 100, with the given slippage bound.
struct BuyOnce {
    amount: U256,
    slippage_bps: u64,
    priority_fee: u128,
    done: bool,
}

impl Strategy for BuyOnce {
    fn name(&self) -> &'static str {
        "buy-once"
    }

    fn on_block(&mut self, market: &Market, _ctx: &Context<'_>, out: &mut Vec<Action>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let q = market.quote(0, usdc(), self.amount).unwrap().amount_out;
        out.push(Action::Submit(Bundle {
            legs: vec![Leg {
                pool: 0,
                token_in: usdc(),
            }],
            amount_in: self.amount,
            min_amount_out: q - q * U256::from(self.slippage_bps) / U256::from(10_000u64),
            priority_fee: self.priority_fee,
            expected_out: q,
            tag: BundleTag::Buy,
        }));
    }
}

/// Runs [`BuyOnce`] over the whole tape, recording.
fn buy_once(
    tape: &dexlab_engine::tape::Tape,
    cfg: &dexlab_engine::backtest::ExecConfig,
    amount: U256,
    slippage_bps: u64,
    priority_fee: u128,
) -> dexlab_engine::backtest::BacktestResult {
    let mut s = BuyOnce {
        amount,
        slippage_bps,
        priority_fee,
        done: false,
    };
    run(
        tape,
        &tape.market(),
        0..tape.blocks.len(),
        &mut s,
        cfg,
        true,
    )
}

/// Block 100 sets pool 0 at 2000 USDC per WETH; block 101 holds a large historical buy of WETH in
/// pool 0 (100,000 USDC in), which lifts its price by about 10 %.
/// Blocks of (pool, USDC reserve, WETH reserve) updates, as `two_pool_tape` takes them.
type Blocks = Vec<Vec<(u32, U256, U256)>>;

fn pump_in_the_inclusion_block() -> (Blocks, (U256, U256)) {
    let (r0, r1) = (e6(2_000_000), e18(1000));
    let out = get_amount_out(e6(100_000), r0, r1, 3000).unwrap();
    let after = (r0 + e6(100_000), r1 - out);
    (
        vec![
            vec![(0, r0, r1), (1, e6(2_000_000), e18(1000))],
            vec![(0, after.0, after.1)],
            vec![],
        ],
        after,
    )
}

#[test]
fn without_fee_data_our_bundle_queues_behind_the_block_and_fills_at_the_moved_price() {
    let (blocks, after) = pump_in_the_inclusion_block();
    let tape = two_pool_tape(&blocks);
    let cfg = exec(e6(1_000_000), 0.0);
    let r = buy_once(&tape, &cfg, e6(10_000), 10_000, 0);
    let t = &r.trades[0];
    assert_eq!(t.status, FillStatus::Filled);
    let want = get_amount_out(e6(10_000), after.0, after.1, 3000).unwrap();
    assert_eq!(
        t.amount_out,
        want.to_string(),
        "filled at the pre-pump price"
    );
}

#[test]
fn a_single_swap_slips_and_its_minimum_output_binds() {
    let (blocks, _) = pump_in_the_inclusion_block();
    let tape = two_pool_tape(&blocks);
    let cfg = exec(e6(1_000_000), 0.0);
    let r = buy_once(&tape, &cfg, e6(10_000), 50, 0);
    assert_eq!(
        r.trades[0].status,
        FillStatus::Reverted,
        "a 10 % move against a 0.5 % bound must revert: {:#?}",
        r.trades
    );
}

/// The same pump, in a tape that records each transaction's priority fee: the pump paid `fee`.
fn priced_pump(fee: u64) -> (dexlab_engine::tape::Tape, (U256, U256)) {
    let (blocks, after) = pump_in_the_inclusion_block();
    let mut tape = two_pool_tape(&blocks);
    for e in &mut tape.events {
        e.priority_fee = fee;
    }
    tape.has_priority_fees = true;
    (tape, after)
}

#[test]
fn with_fee_data_the_higher_bid_goes_first() {
    let fill_with_bid = |bid: u128| {
        let (tape, _) = priced_pump(1_000_000);
        let cfg = exec(e6(1_000_000), 0.0);
        let r = buy_once(&tape, &cfg, e6(10_000), 10_000, bid);
        assert!(r.metrics.queue_assumption.is_none());
        r.trades[0].clone()
    };
    let (r0, r1) = (e6(2_000_000), e18(1000));
    // Outbid by the pump: we land behind it and buy at the moved price.
    let behind = fill_with_bid(999_999);
    let (_, after) = priced_pump(0);
    assert_eq!(behind.queue_position, 1);
    assert_eq!(
        behind.amount_out,
        get_amount_out(e6(10_000), after.0, after.1, 3000)
            .unwrap()
            .to_string()
    );
    // An equal bid does not jump the queue either (who came first among equals is unknown).
    assert_eq!(fill_with_bid(1_000_000).queue_position, 1);
    // Outbidding it puts us in front, at the price before the pump.
    let ahead = fill_with_bid(1_000_001);
    assert_eq!(ahead.queue_position, 0);
    assert_eq!(
        ahead.amount_out,
        get_amount_out(e6(10_000), r0, r1, 3000)
            .unwrap()
            .to_string()
    );
}

#[test]
fn our_fill_persists_and_later_swaps_replay_as_flows_on_our_state() {
    // Block 0 sets pool 0; block 1 we buy WETH; block 2 holds a historical sale of 1 WETH, then a
    // historical buy of 1,000 USDC worth. On history they land on the untouched pool; here on
    // the pool our buy moved: the sale runs in full (it moves the price back toward history's),
    // the buy not at all (our buy already lifted WETH past the price history's buyer left).
    let (r0, r1) = (e6(2_000_000), e18(1000));
    let sale_out = get_amount_out(e18(1), r1, r0, 3000).unwrap();
    let (s0, s1) = (r0 - sale_out, r1 + e18(1));
    let buy_out = get_amount_out(e6(1_000), s0, s1, 3000).unwrap();
    let tape = two_pool_tape(&[
        vec![(0, r0, r1), (1, r0, r1)],
        vec![],
        vec![(0, s0, s1), (0, s0 + e6(1_000), s1 - buy_out)],
        vec![],
    ]);
    let cfg = exec(e6(1_000_000), 0.0);
    let r = buy_once(&tape, &cfg, e6(50_000), 10_000, 0);
    let ours: U256 = r.trades[0].amount_out.parse().unwrap();
    assert_eq!(r.trades[0].status, FillStatus::Filled);
    assert_eq!(r.metrics.diverged_events, 2);
    assert_eq!(r.metrics.failed_flows, 0);
    // After us: (r0 + 50k, r1 - ours); then the sale: 1 WETH in on that state; the buy is skipped.
    let (a0, a1) = (r0 + e6(50_000), r1 - ours);
    let flow_out = get_amount_out(e18(1), a1, a0, 3000).unwrap();
    let (b0, b1) = (a0 - flow_out, a1 + e18(1));
    // Equity marks the WETH at history's price (untouched by our buy), then closing it sells
    // into the pool as we left it, paying one V2 swap's gas at the base fee (valued at history's
    // price too): the close cost is what that sale loses to fees and impact.
    let sale = get_amount_out(ours, b1, b0, 3000).unwrap();
    assert!(
        sale > get_amount_out(ours, r1, r0, 2500).unwrap(),
        "pool 0 is the best exit"
    );
    let history = tape.market_at(tape.blocks.len());
    let gas = bundle_gas(&cfg.env.gas, &history, &[0], 0);
    let cost = cost_wei(&cfg.env.gas, Some(50_000_000), gas, 0, 1);
    let close_gas = convert(&history, U256::from(cost.total()), weth(), usdc()).unwrap();
    let t = &r.trades[0];
    let buy_gas_wei = t.l2_fee_wei.parse::<U256>().unwrap() + t.l1_fee_wei.parse::<U256>().unwrap();
    let buy_gas = convert(&tape.market_at(2), buy_gas_wei, weth(), usdc()).unwrap();
    let cash = e6(1_000_000) - e6(50_000) - buy_gas;
    let want = dexlab_strategy::market::to_human(cash + sale - close_gas, 6);
    assert!(
        (r.metrics.final_equity - want).abs() < 1e-9,
        "final {} vs {want}",
        r.metrics.final_equity
    );
    // Our buy lifted pool 0 above history's price, so selling back into it returns more than
    // the mark: the close cost is negative here, and it is what the two differ by.
    assert!(r.metrics.close_cost_quote < 0.0);
}

#[test]
fn gas_that_cannot_be_priced_is_an_error_not_free() {
    let (blocks, _) = pump_in_the_inclusion_block();
    let tape = two_pool_tape(&blocks);
    let mut cfg = exec(e6(1_000_000), 0.0);
    // A gas token no pool of the dataset holds.
    cfg.env.native = alloy_primitives::Address::with_last_byte(0x77);
    let r = buy_once(&tape, &cfg, e6(10_000), 10_000, 0);
    assert!(r.metrics.errors >= 1, "{:#?}", r.metrics);
    let first = r.metrics.first_error.as_deref().unwrap();
    assert!(first.contains("gas could not be priced"), "{first}");
}

#[test]
fn a_window_warms_the_strategy_up_on_the_blocks_before_it() {
    // Both pools' price wobbles for 300 blocks, then drops 3 % inside a 20-block window: a
    // reversion strategy with a 100-block window cannot trade a cold 20-block window, and can
    // once it has watched the blocks before it.
    let mut blocks = Vec::new();
    for i in 0..320u32 {
        let wobble = if i % 2 == 0 { 1_000 } else { 0 };
        let usdc = if i >= 305 {
            1_940_000
        } else {
            2_000_000 + wobble
        };
        blocks.push(vec![(0, e6(usdc), e18(1000)), (1, e6(usdc), e18(1000))]);
    }
    let tape = two_pool_tape(&blocks);
    let cfg = exec(e6(1_000_000), 0.0);
    let params = registry::parse_params(
        "price-reversion",
        &serde_json::json!({"window_blocks": 100.0, "entry_z": 1.0, "exit_z": 0.0}),
    )
    .unwrap();
    let window = 300..320;
    let run_with = |from: usize| {
        let start = tape.market_at(from);
        let mut s = registry::build("price-reversion", &start, &cfg.env, &params).unwrap();
        dexlab_engine::backtest::run_from(
            &tape,
            &start,
            from,
            window.clone(),
            s.as_mut(),
            &cfg,
            true,
        )
    };
    let cold = run_with(300);
    assert_eq!((cold.metrics.trades, cold.metrics.warmup_blocks), (0, 0));
    let warm = run_with(0);
    assert!(
        warm.metrics.warmup_blocks >= 100,
        "{}",
        warm.metrics.warmup_blocks
    );
    assert!(warm.metrics.trades > 0, "{:#?}", warm.metrics);
    assert!(
        warm.trades
            .iter()
            .all(|t| t.decided_block >= tape.blocks[300].number)
    );
}

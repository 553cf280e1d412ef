//! Execution simulation: exact fills, gas, reverts, competition, balances.

use alloy_primitives::U256;
use dexlab_amm::v2::get_amount_out;
use dexlab_engine::backtest::run;
use dexlab_strategy::gas::{bundle_gas, convert, cost_wei};
use dexlab_strategy::market::Market;
use dexlab_strategy::registry;
use dexlab_strategy::{Action, Bundle, BundleTag, Context, FillStatus, Leg, Strategy};

use crate::support::*;

/// Pool 0 prices WETH at 2000 USDC, pool 1 at 2100: a gap far above both fees.
fn gap() -> Vec<(u32, U256, U256)> {
    vec![(0, e6(2_000_000), e18(1000)), (1, e6(2_100_000), e18(1000))]
}

fn arb() -> dexlab_strategy::Params {
    registry::parse_params(
        "cross-venue-arb",
        &serde_json::json!({"min_profit_bps": 0.0, "max_notional_frac": 1.0}),
    )
    .unwrap()
}

#[test]
fn an_arbitrage_fills_at_the_exact_pool_math_and_pays_gas() {
    let tape = two_pool_tape(&[gap(), vec![], vec![]]);
    let cfg = exec(e6(1_000_000), 0.0);
    let market = tape.market();
    let mut s = registry::build("cross-venue-arb", &market, &cfg.env, &arb()).unwrap();
    let r = run(&tape, &market, 0..tape.blocks.len(), s.as_mut(), &cfg, true);
    assert_eq!(r.trades.len(), 1, "{:#?}", r.trades);
    let t = &r.trades[0];
    assert_eq!(t.status, FillStatus::Filled);
    assert_eq!((t.decided_block, t.included_block), (100, 101));
    // Recompute the fill with the V2 formula: USDC -> WETH in pool 0, WETH -> USDC in pool 1.
    let x: U256 = t.amount_in.parse().unwrap();
    let weth_out = get_amount_out(x, e6(2_000_000), e18(1000), 3000).unwrap();
    let usdc_out = get_amount_out(weth_out, e18(1000), e6(2_100_000), 2500).unwrap();
    assert_eq!(t.amount_out, usdc_out.to_string());
    // Gas: two V2 legs at base fee + the bid, plus the L1 fee, valued at the post-trade mid.
    let after = {
        let mut m = tape.market_at(1);
        m.states[0] = dexlab_strategy::PoolState::V2 {
            reserve0: e6(2_000_000) + x,
            reserve1: e18(1000) - weth_out,
        };
        m.states[1] = dexlab_strategy::PoolState::V2 {
            reserve0: e6(2_100_000) - usdc_out,
            reserve1: e18(1000) + weth_out,
        };
        m.block = tape.blocks[1];
        m
    };
    let gas = bundle_gas(&cfg.env.gas, &after, &[0, 1], 0);
    assert_eq!(t.gas_used, gas);
    // The bid: half of the expected profit left after base-fee gas, priced on the decision state.
    let decided = tape.market_at(1);
    let expected: U256 = t.expected_out.parse().unwrap();
    let (priority, _) =
        dexlab_strategy::arb::bid(&decided, &cfg.env, usdc(), gas, 2, expected - x, 0.5).unwrap();
    assert!(priority > 0);
    let cost = cost_wei(&cfg.env.gas, Some(50_000_000), gas, priority, 2);
    assert_eq!(t.l2_fee_wei, cost.l2_wei.to_string());
    assert_eq!(t.l1_fee_wei, cost.l1_wei.to_string());
    // Gas is valued at history's price of the pools (our own trade does not move the mark).
    let gas_q = convert(&decided, U256::from(cost.total()), weth(), usdc()).unwrap();
    let _ = after;
    // Final balance: capital - x + out - gas, to the last unit.
    let final_usdc = e6(1_000_000) - x + usdc_out - gas_q;
    let want = dexlab_strategy::market::to_human(final_usdc, 6);
    assert!(
        (r.metrics.final_equity - want).abs() < 1e-9,
        "{} vs {want}",
        r.metrics.final_equity
    );
    assert!(r.metrics.net_pnl_quote > 0.0);
    assert_eq!(
        (r.metrics.filled, r.metrics.reverts, r.metrics.hit_rate),
        (1, 0, 1.0)
    );
}

#[test]
fn a_bundle_reverts_when_the_gap_closes_before_inclusion_and_still_pays_gas() {
    // Decided at block 100 with latency 2; block 101 closes the gap; included at 102.
    let closed = vec![(0, e6(2_050_000), e18(1000)), (1, e6(2_050_000), e18(1000))];
    let tape = two_pool_tape(&[gap(), closed, vec![]]);
    let mut cfg = exec(e6(1_000_000), 0.0);
    cfg.timing.latency_blocks = 2;
    let market = tape.market();
    let mut s = registry::build("cross-venue-arb", &market, &cfg.env, &arb()).unwrap();
    let r = run(&tape, &market, 0..tape.blocks.len(), s.as_mut(), &cfg, true);
    let t = &r.trades[0];
    assert_eq!(t.status, FillStatus::Reverted);
    assert_eq!(t.included_block, 102);
    assert!(t.gas_quote > 0.0);
    assert_eq!(r.metrics.reverts, 1);
    assert!(r.metrics.net_pnl_quote < 0.0, "a revert costs gas");
    assert!((r.metrics.net_pnl_quote + r.metrics.gas_spent_quote).abs() < 1e-9);
}

#[test]
fn a_rival_takes_the_opportunity_unless_we_outbid_it() {
    // A gap opens every third block; the next block (where our bundle lands) is empty; the one
    // after resets both pools (replayed as flows once our trades have moved them, so later gaps
    // differ from the first).
    let flat = || vec![(0, e6(2_000_000), e18(1000)), (1, e6(2_000_000), e18(1000))];
    let blocks: Vec<_> = (0..150)
        .map(|i| match i % 3 {
            0 => gap(),
            1 => vec![],
            _ => flat(),
        })
        .collect();
    let tape = two_pool_tape(&blocks);
    let market = tape.market();
    let outcome = |p_rival: f64, bid_share: f64| {
        let cfg = exec(e6(1_000_000), p_rival);
        let params = registry::parse_params(
            "cross-venue-arb",
            &serde_json::json!({"min_profit_bps": 0.0, "max_notional_frac": 1.0, "bid_share": bid_share}),
        )
        .unwrap();
        let mut s = registry::build("cross-venue-arb", &market, &cfg.env, &params).unwrap();
        run(&tape, &market, 0..tape.blocks.len(), s.as_mut(), &cfg, true).metrics
    };
    let none = outcome(0.0, 0.0);
    assert_eq!((none.lost_to_competition, none.rival_fills), (0, 0));
    assert!(none.filled > 0);
    // A rival every time, and we bid nothing: it always lands first and takes the gap.
    let always = outcome(1.0, 0.0);
    assert_eq!(always.filled, 0, "the rival closed every gap first");
    assert!(always.lost_to_competition > 0);
    assert_eq!(always.lost_to_competition, always.rival_fills);
    // Rivals bid 20-90 % of the profit: a 95 % bid always wins, a 50 % bid sometimes.
    let outbid = outcome(1.0, 0.95);
    assert_eq!(outbid.lost_to_competition, 0);
    let half = outcome(1.0, 0.5);
    assert!(
        half.lost_to_competition > 0 && half.lost_to_competition < always.lost_to_competition,
        "{} of {}",
        half.lost_to_competition,
        always.lost_to_competition
    );
    // Winning costs the bid: no rival at a zero bid beats winning every race at 95 %.
    assert!(none.net_pnl_quote > outbid.net_pnl_quote);
}

/// Submits one bundle for `.1` times its USDC balance.
struct Greedy(bool, u64);

impl Strategy for Greedy {
    fn name(&self) -> &'static str {
        "greedy"
    }
    fn on_block(&mut self, _: &Market, ctx: &Context<'_>, out: &mut Vec<Action>) {
        if std::mem::replace(&mut self.0, true) {
            return;
        }
        out.push(Action::Submit(Bundle {
            legs: vec![Leg {
                pool: 0,
                token_in: usdc(),
            }],
            amount_in: ctx.balance(usdc()) * U256::from(self.1),
            min_amount_out: U256::ZERO,
            priority_fee: 0,
            expected_out: U256::ZERO,
            tag: BundleTag::Buy,
        }));
    }
}

#[test]
fn a_bundle_over_the_balance_is_rejected_without_gas() {
    let tape = two_pool_tape(&[gap(), vec![], vec![]]);
    let cfg = exec(e6(1000), 0.0);
    let market = tape.market();
    let r = run(
        &tape,
        &market,
        0..tape.blocks.len(),
        &mut Greedy(false, 2),
        &cfg,
        true,
    );
    assert_eq!(r.trades.len(), 1);
    assert_eq!(r.trades[0].status, FillStatus::Rejected);
    assert_eq!(
        (r.metrics.rejected, r.metrics.filled, r.metrics.reverts),
        (1, 0, 0)
    );
    assert_eq!(r.metrics.gas_spent_quote, 0.0);
    assert_eq!(r.metrics.net_pnl_quote, 0.0);
}

#[test]
fn spending_the_whole_balance_fills_and_carries_the_gas_as_a_debt() {
    // Gas is paid by the sender, the swap spends the executor's tokens: a bundle of the whole
    // quote balance fills, and the gas it cannot cover is owed (once this underflowed).
    let tape = two_pool_tape(&[gap(), vec![], vec![]]);
    let cfg = exec(e6(1000), 0.0);
    let market = tape.market();
    let r = run(
        &tape,
        &market,
        0..tape.blocks.len(),
        &mut Greedy(false, 1),
        &cfg,
        true,
    );
    let t = &r.trades[0];
    assert_eq!(t.status, FillStatus::Filled);
    let out: U256 = t.amount_out.parse().unwrap();
    assert_eq!(
        out,
        get_amount_out(e6(1000), e6(2_000_000), e18(1000), 3000).unwrap()
    );
    assert!(t.gas_quote > 0.0);
    // Equity: closing the WETH in its best pool, less that sale's gas and the debt, both valued
    // at history's price.
    let history = tape.market_at(tape.blocks.len());
    let gas_wei = |l2: &str, l1: &str| l2.parse::<U256>().unwrap() + l1.parse::<U256>().unwrap();
    let debt = convert(
        &history,
        gas_wei(&t.l2_fee_wei, &t.l1_fee_wei),
        weth(),
        usdc(),
    )
    .unwrap();
    // The best pool to sell WETH in is pool 1 (2,100 USDC per WETH), which we never touched.
    let sale = get_amount_out(out, e18(1000), e6(2_100_000), 2500).unwrap();
    let close_gas = bundle_gas(&cfg.env.gas, &history, &[1], 0);
    let cost = cost_wei(&cfg.env.gas, Some(50_000_000), close_gas, 0, 1);
    let close = convert(&history, U256::from(cost.total()), weth(), usdc()).unwrap();
    let want = dexlab_strategy::market::to_human(sale, 6)
        - dexlab_strategy::market::to_human(close, 6)
        - dexlab_strategy::market::to_human(debt, 6);
    assert!(
        (r.metrics.final_equity - want).abs() < 1e-9,
        "{} vs {want}",
        r.metrics.final_equity
    );
    // Closing in the dearer pool is a real trade at the end of the window: it may gain.
    assert!(r.metrics.close_cost_quote < 0.0);
}

#[test]
fn same_inputs_give_bit_identical_metrics_on_the_real_sample() {
    let tape = sample_tape();
    let mut cfg = exec(e6(100_000), 0.3);
    cfg.env.quote = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
        .parse()
        .unwrap();
    cfg.env.native = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
        .parse()
        .unwrap();
    for name in ["cross-venue-arb", "price-reversion"] {
        let params = registry::info(name).unwrap().params.defaults();
        let once = || {
            let market = tape.market();
            let mut s = registry::build(name, &market, &cfg.env, &params).unwrap();
            let r = run(tape, &market, 0..tape.blocks.len(), s.as_mut(), &cfg, true);
            serde_json::to_string(&r).unwrap()
        };
        let a = once();
        assert_eq!(a, once(), "{name}");
        assert!(a.contains("\"periods\""));
    }
}

//! Proof of exactness: random swaps through the real deployed Uniswap V2, Uniswap V3 and
//! PancakeSwap V3 contracts, and through Aerodrome and Aerodrome Slipstream built from their
//! published source, give exactly what dexlab-amm computes (amounts, sqrt price, tick,
//! liquidity, reserves). For V2 the pair's own K check is the judge: the computed amount passes and
//! one wei more (or less input) reverts. Replay a failure with `DEXLAB_EXACTNESS_SEED=<seed>`.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, I256, U256, aliases::U160};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::sol_types::{SolCall, SolEvent};
use dexlab_amm::{tick_math, v2};
use dexlab_data::decode::{pancakev3, univ2, univ3};
use dexlab_data::replay::{PoolState, Replayer};
use dexlab_data::types::{PoolInfo, Protocol};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::support::{Chain, mine};

alloy::sol! {
    interface IRouter {
        function v2SwapRaw(address pair, address tokenIn, uint256 amountIn, uint256 amountOut, address to) external;
        function v3Swap(address pool, bool zeroForOne, int256 amountSpecified, uint160 sqrtPriceLimitX96) external returns (int256 amount0, int256 amount1);
    }
    #[sol(rpc)]
    interface IPool {
        // The leading words of every V3-style pool's slot0 (Slipstream's has no fee protocol).
        function slot0() external view returns (uint160 sqrtPriceX96, int24 tick);
        function liquidity() external view returns (uint128);
    }
    interface IToken {
        function mint(address to, uint256 amount) external;
    }
}

const V3_SWAPS: usize = 8_500;
const V2_SWAPS: usize = 1_500;
const BATCH: usize = 50;

fn tx(from: Address, to: Address, input: Vec<u8>, nonce: u64) -> TransactionRequest {
    TransactionRequest::default()
        .with_from(from)
        .with_to(to)
        .with_input(input)
        .with_nonce(nonce)
        .with_gas_limit(15_000_000)
        .with_max_fee_per_gas(100_000_000_000)
        .with_max_priority_fee_per_gas(1)
        .with_chain_id(31337)
}

/// Log-uniform amount from 1 wei to 10^max_exp.
fn amount(rng: &mut ChaCha8Rng, max_exp: f64) -> U256 {
    let e: f64 = rng.random_range(0.0..max_exp);
    U256::from(10f64.powf(e) as u128).max(U256::from(1))
}

/// A swap that ran out of liquidity and stopped at the end of the price range.
fn drains(r: &dexlab_amm::v3::SwapResult) -> bool {
    r.liquidity == 0
        && (r.sqrt_price_x96 <= tick_math::MIN_SQRT_RATIO + U256::ONE
            || r.sqrt_price_x96 >= tick_math::MAX_SQRT_RATIO - U256::ONE)
}

async fn mine_all(p: &DynProvider) {
    loop {
        let status: serde_json::Value = p.raw_request("txpool_status".into(), ()).await.unwrap();
        let pending = u64::from_str_radix(
            status["pending"]
                .as_str()
                .unwrap_or("0x0")
                .trim_start_matches("0x"),
            16,
        )
        .unwrap_or(0);
        if pending == 0 {
            break;
        }
        mine(p, 1).await;
    }
}

/// Sends a swap through the devnet router's `v3Swap` from `(trader, router, nonce)`, unmined.
async fn send_v3_swap(
    p: &DynProvider,
    (trader, router, nonce): (Address, Address, u64),
    pool: Address,
    zero_for_one: bool,
    spec: I256,
    limit: U160,
) -> alloy::primitives::TxHash {
    let call = IRouter::v3SwapCall {
        pool,
        zeroForOne: zero_for_one,
        amountSpecified: spec,
        sqrtPriceLimitX96: limit,
    };
    *p.send_transaction(tx(trader, router, call.abi_encode(), nonce))
        .await
        .unwrap()
        .tx_hash()
}

/// Sends `t`, mines it, and requires that it succeeded.
async fn send_ok(p: &DynProvider, t: TransactionRequest) {
    let h = *p.send_transaction(t).await.unwrap().tx_hash();
    mine_all(p).await;
    assert!(
        p.get_transaction_receipt(h)
            .await
            .unwrap()
            .unwrap()
            .status()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_thousand_random_swaps_match_the_deployed_contracts() {
    let seed: u64 = std::env::var("DEXLAB_EXACTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261124);
    eprintln!("exactness seed {seed} (replay with DEXLAB_EXACTNESS_SEED={seed})");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let ch = Chain::up(31, 40);
    let m = &ch.manifest;
    let p = ch.provider();
    let router = m.router.unwrap();
    let trader = p.get_accounts().await.unwrap()[3];

    // Pool states from the chain's own history, checked against the contracts.
    let logs = p
        .get_logs(
            &Filter::new()
                .address(m.pools.iter().map(|x| x.address).collect::<Vec<_>>())
                .from_block(0)
                .to_block(m.last_block),
        )
        .await
        .unwrap();
    let mut rp = Replayer::new(&m.pools);
    for l in &logs {
        rp.apply(&dexlab_data::ingest::raw_log(l, m.chain_id).unwrap());
    }
    let v3: Vec<&PoolInfo> = m.pools.iter().filter(|x| x.protocol.is_v3()).collect();
    let v2p: Vec<&PoolInfo> = m
        .pools
        .iter()
        .filter(|x| x.protocol == Protocol::UniswapV2)
        .collect();
    for pool in &v3 {
        let Some(PoolState::V3 {
            pool: st,
            complete_ticks: true,
        }) = rp.state(&pool.address)
        else {
            panic!("no replayed state for {}", pool.address)
        };
        let s0 = IPool::new(pool.address, &p).slot0().call().await.unwrap();
        assert_eq!(
            (st.sqrt_price_x96, st.tick),
            (U256::from(s0.sqrtPriceX96), s0.tick.as_i32())
        );
        assert_eq!(
            st.liquidity,
            IPool::new(pool.address, &p)
                .liquidity()
                .call()
                .await
                .unwrap()
        );
    }

    // Balances for any swap the pools can take, even at extreme prices.
    let mut nonce = p.get_transaction_count(trader).await.unwrap();
    for t in &m.tokens {
        let call = IToken::mintCall {
            to: trader,
            amount: U256::from(1) << 200usize,
        }
        .abi_encode();
        let _ = p
            .send_transaction(tx(trader, t.address, call, nonce))
            .await
            .unwrap();
        nonce += 1;
    }
    mine_all(&p).await;

    // V3: batches of random swaps, then each receipt's Swap event against the simulation.
    let (mut crossed, mut exact_out, mut limited, mut done) = (0u64, 0u64, 0u64, 0usize);
    while done < V3_SWAPS {
        let mut sent = Vec::new();
        while sent.len() < BATCH && done + sent.len() < V3_SWAPS {
            let pool = v3[rng.random_range(0..v3.len())];
            let Some(PoolState::V3 { pool: st, .. }) = rp.states.get_mut(&pool.address) else {
                unreachable!()
            };
            let zfo = rng.random_bool(0.5);
            let exact_in = rng.random_bool(0.6);
            let (tin, tout) = if zfo {
                (&pool.token0, &pool.token1)
            } else {
                (&pool.token1, &pool.token0)
            };
            // Up to far beyond the in-range liquidity (the pools hold a few million USD).
            let dec = if exact_in {
                tin.decimals
            } else {
                tout.decimals
            } as f64;
            let amt = amount(&mut rng, dec + 7.0);
            let spec = if exact_in {
                I256::from_raw(amt)
            } else {
                -I256::from_raw(amt)
            };
            let limit = if rng.random_bool(0.3) {
                let t = st.tick
                    + if zfo {
                        -rng.random_range(1..3000)
                    } else {
                        rng.random_range(1..3000)
                    };
                tick_math::get_sqrt_ratio_at_tick(
                    t.clamp(tick_math::MIN_TICK + 1, tick_math::MAX_TICK - 1),
                )
                .ok()
            } else {
                None
            };
            let Ok(expected) = st.swap(zfo, spec, limit) else {
                continue;
            };
            // On tick spacing 1 a swap that drains the pool walks ~3,500 empty bitmap words to
            // the end of the price range: more gas than a block has (see the Slipstream test).
            if pool.tick_spacing == Some(1) && drains(&expected) {
                continue;
            }
            st.apply(&expected);
            let h = send_v3_swap(
                &p,
                (trader, router, nonce),
                pool.address,
                zfo,
                spec,
                U160::from(limit.unwrap_or_default()),
            )
            .await;
            nonce += 1;
            crossed += u64::from(expected.ticks_crossed > 0);
            exact_out += u64::from(!exact_in);
            limited += u64::from(limit.is_some());
            sent.push((h, pool, zfo, spec, limit, expected));
        }
        mine_all(&p).await;
        for (i, (h, pool, zfo, spec, limit, want)) in sent.into_iter().enumerate() {
            let r = p.get_transaction_receipt(h).await.unwrap().unwrap();
            let ctx = format!(
                "seed {seed}, swap {}: {} zfo={zfo} spec={spec} limit={limit:?}",
                done + i,
                pool.address
            );
            if !r.status() {
                // The call trace names the revert reason and where it happened.
                let trace: serde_json::Value = p
                    .raw_request(
                        "debug_traceTransaction".into(),
                        (h, serde_json::json!({"tracer": "callTracer"})),
                    )
                    .await
                    .unwrap();
                eprintln!(
                    "trace: {}",
                    serde_json::to_string(&trace)
                        .unwrap()
                        .chars()
                        .take(3000)
                        .collect::<String>()
                );
            }
            assert!(
                r.status(),
                "reverted on chain but simulated fine: {ctx}; expected {want:?}; gas used {}",
                r.gas_used
            );
            let log = r
                .inner
                .logs()
                .iter()
                .find(|l| l.address() == pool.address)
                .unwrap_or_else(|| panic!("no pool log: {ctx}"));
            let got = if pool.protocol == Protocol::PancakeV3 {
                let e = pancakev3::Swap::decode_log_data(log.data()).unwrap();
                (
                    e.amount0,
                    e.amount1,
                    U256::from(e.sqrtPriceX96),
                    e.tick.as_i32(),
                    e.liquidity,
                )
            } else {
                let e = univ3::Swap::decode_log_data(log.data()).unwrap();
                (
                    e.amount0,
                    e.amount1,
                    U256::from(e.sqrtPriceX96),
                    e.tick.as_i32(),
                    e.liquidity,
                )
            };
            assert_eq!(
                got,
                (
                    want.amount0,
                    want.amount1,
                    want.sqrt_price_x96,
                    want.tick,
                    want.liquidity
                ),
                "{ctx}"
            );
        }
        done += BATCH.min(V3_SWAPS - done);
    }
    assert!(
        crossed > 500 && exact_out > 2000 && limited > 1500,
        "coverage: crossed {crossed}, exact out {exact_out}, limited {limited}"
    );

    // V2: the pair accepts the computed amount and rejects one wei more output (or less input).
    for k in 0..V2_SWAPS {
        let pool = v2p[rng.random_range(0..v2p.len())];
        let Some(PoolState::Reserves { reserve0, reserve1 }) =
            rp.states.get(&pool.address).cloned()
        else {
            panic!("no reserves for {}", pool.address)
        };
        let zfo = rng.random_bool(0.5);
        let (tin, rin, rout) = if zfo {
            (&pool.token0, reserve0, reserve1)
        } else {
            (&pool.token1, reserve1, reserve0)
        };
        let (ain, aout, worse) = if rng.random_bool(0.5) {
            let ain = amount(&mut rng, f64::from(rin).log10() + 1.0);
            let Ok(out) = v2::get_amount_out(ain, rin, rout, pool.fee) else {
                continue;
            };
            (ain, out, (ain, out + U256::from(1)))
        } else {
            let out = amount(&mut rng, (f64::from(rout) * 0.9).log10());
            let Ok(ain) = v2::get_amount_in(out, rin, rout, pool.fee) else {
                continue;
            };
            (ain, out, (ain - U256::from(1), out))
        };
        let ctx = format!(
            "seed {seed}, v2 swap {k}: {} zfo={zfo} in={ain} out={aout}",
            pool.address
        );
        let call = |a: U256, o: U256| {
            IRouter::v2SwapRawCall {
                pair: pool.address,
                tokenIn: tin.address,
                amountIn: a,
                amountOut: o,
                to: trader,
            }
            .abi_encode()
        };
        if !aout.is_zero() {
            let bad = p
                .call(tx(trader, router, call(worse.0, worse.1), nonce))
                .await;
            assert!(
                bad.is_err(),
                "the pair accepted one wei past dexlab's bound: {ctx}"
            );
        }
        let h = *p
            .send_transaction(tx(trader, router, call(ain, aout), nonce))
            .await
            .unwrap()
            .tx_hash();
        nonce += 1;
        mine(&p, 1).await;
        let r = p.get_transaction_receipt(h).await.unwrap().unwrap();
        if aout.is_zero() {
            // The pair refuses zero output; so must the math's caller.
            assert!(!r.status(), "{ctx}");
            continue;
        }
        assert!(r.status(), "the pair refused dexlab's amount: {ctx}");
        let sync = r
            .inner
            .logs()
            .iter()
            .find(|l| l.topics()[0] == univ2::Sync::SIGNATURE_HASH)
            .unwrap();
        let s = univ2::Sync::decode_log_data(sync.data()).unwrap();
        let (n0, n1) = if zfo {
            (reserve0 + ain, reserve1 - aout)
        } else {
            (reserve0 - aout, reserve1 + ain)
        };
        assert_eq!(
            (U256::from(s.reserve0), U256::from(s.reserve1)),
            (n0, n1),
            "{ctx}"
        );
        rp.states.insert(
            pool.address,
            PoolState::Reserves {
                reserve0: n0,
                reserve1: n1,
            },
        );
    }
}

mod aerodrome {
    //! Aerodrome and Slipstream, built from their published source (npm
    //! `sphere-mezo-solidity-files@1.2.0`, compiled by the setup; not Base's deployed bytecode):
    //! random swaps through the deployed pools against dexlab-amm.

    use super::*;
    use alloy::sol_types::SolValue;
    use dexlab_amm::slipstream;
    use dexlab_amm::solidly::SolidlyPool;
    use dexlab_data::decode::solidly;

    alloy::sol! {
        interface IAeroRouter {
            function solidlySwap(address pool, address tokenIn, uint256 amountIn, uint256 amountOutMin, address to) external returns (uint256 amountOut);
        }
        #[sol(rpc)]
        interface IAeroPool {
            function getAmountOut(uint256 amountIn, address tokenIn) external view returns (uint256);
            function getReserves() external view returns (uint256, uint256, uint256);
        }
        interface IAeroFactory {
            function setCustomFee(address pool, uint256 fee) external;
        }
        #[sol(rpc)]
        interface IAeroFactoryView {
            function getFee(address pool, bool stable) external view returns (uint256);
        }
        interface IClFactory {
            function setSwapFeeModule(address module) external;
        }
        interface IClFeeModule {
            function setCustomFee(address pool, uint24 fee) external;
        }
        #[sol(rpc)]
        interface IClPool {
            function slot0() external view returns (uint160 sqrtPriceX96, int24 tick);
            function liquidity() external view returns (uint128);
            function stakedLiquidity() external view returns (uint128);
            function gaugeFees() external view returns (uint128 token0, uint128 token1);
            function unstakedFee() external view returns (uint24);
            function fee() external view returns (uint24);
        }
    }

    const SOLIDLY_SWAPS: usize = 600;
    const SLIPSTREAM_SWAPS: usize = 1_500;

    #[tokio::test(flavor = "multi_thread")]
    async fn random_swaps_match_aerodrome_and_slipstream_built_from_published_source() {
        let seed: u64 = std::env::var("DEXLAB_EXACTNESS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20261203);
        eprintln!("aerodrome exactness seed {seed} (replay with DEXLAB_EXACTNESS_SEED={seed})");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // The devnet's own Aerodrome and Slipstream pools, after 40 blocks of its market.
        let ch = Chain::up(33, 40);
        let m = &ch.manifest;
        let p = ch.provider();
        let pools: Vec<PoolInfo> = m
            .pools
            .iter()
            .filter(|x| matches!(x.protocol, Protocol::Solidly | Protocol::Slipstream))
            .cloned()
            .collect();
        let factory = |protocol| {
            m.dexes
                .iter()
                .find(|x| x.protocol == protocol)
                .unwrap()
                .factory
        };
        let pool_factory = factory(Protocol::Solidly);
        // The Slipstream pool the devnet staked half of the LP's widest position of (its ticks
        // are initialized, so staked liquidity moves at crossings).
        let mut staked_pool = None;
        for x in pools.iter().filter(|x| x.protocol == Protocol::Slipstream) {
            let l = IClPool::new(x.address, &p)
                .stakedLiquidity()
                .call()
                .await
                .unwrap();
            if l > 0 {
                staked_pool = Some((x.clone(), l));
            }
        }
        let (staked_pool, staked_now) =
            staked_pool.expect("the devnet stakes a Slipstream position");
        let mut widest = (0i32, 0i32, 0u128);
        for l in &p
            .get_logs(&Filter::new().address(staked_pool.address).from_block(0))
            .await
            .unwrap()
        {
            if let Ok(e) = univ3::Mint::decode_log_data(l.data())
                && e.tickUpper.as_i32() - e.tickLower.as_i32() > widest.1 - widest.0
            {
                widest = (e.tickLower.as_i32(), e.tickUpper.as_i32(), e.amount);
            }
        }

        // Each pool's state from its own history, as dexlab replays it.
        let logs = p
            .get_logs(
                &Filter::new()
                    .address(pools.iter().map(|x| x.address).collect::<Vec<_>>())
                    .from_block(0),
            )
            .await
            .unwrap();
        let mut rp = Replayer::new(&pools);
        for l in &logs {
            rp.apply(&dexlab_data::ingest::raw_log(l, m.chain_id).unwrap());
        }
        let router = m.router.unwrap();
        let trader = p.get_accounts().await.unwrap()[3];
        let mut nonce = p.get_transaction_count(trader).await.unwrap();
        for t in &m.tokens {
            let call = IToken::mintCall {
                to: trader,
                amount: U256::from(1) << 200usize,
            };
            let _ = p
                .send_transaction(tx(trader, t.address, call.abi_encode(), nonce))
                .await
                .unwrap();
            nonce += 1;
        }
        mine_all(&p).await;

        // Solidly: the pool's own quote, what it pays and the reserves its Sync reports.
        let solidly: Vec<&PoolInfo> = pools
            .iter()
            .filter(|x| x.protocol == Protocol::Solidly)
            .collect();
        let mut done = 0;
        let mut stable_swaps = 0;
        let mut quoted = 0;
        let mut fee_now: std::collections::HashMap<Address, u32> =
            solidly.iter().map(|x| (x.address, x.fee)).collect();
        let changed = solidly[0].clone();
        while done < SOLIDLY_SWAPS {
            if done == SOLIDLY_SWAPS / 2 {
                // The fee manager changes a pool's fee mid-history (0.30 % -> 0.25 %): the
                // manifest keeps the old one.
                let deployer = p.get_accounts().await.unwrap()[0];
                let n = p.get_transaction_count(deployer).await.unwrap();
                let call = IAeroFactory::setCustomFeeCall {
                    pool: changed.address,
                    fee: U256::from(25),
                };
                send_ok(&p, tx(deployer, pool_factory, call.abi_encode(), n)).await;
                fee_now.insert(changed.address, 2500);
            }
            let mut sent = Vec::new();
            let mut touched = std::collections::HashSet::new();
            while sent.len() < BATCH && done + sent.len() < SOLIDLY_SWAPS {
                let pool = solidly[rng.random_range(0..solidly.len())];
                let Some(PoolState::Reserves { reserve0, reserve1 }) =
                    rp.states.get(&pool.address).cloned()
                else {
                    panic!("no reserves for {}", pool.address)
                };
                let mut sp = SolidlyPool::new(
                    reserve0,
                    reserve1,
                    pool.token0.decimals,
                    pool.token1.decimals,
                    pool.stable.unwrap(),
                    fee_now[&pool.address],
                );
                let zfo = rng.random_bool(0.5);
                let (tin, rin) = if zfo {
                    (&pool.token0, reserve0)
                } else {
                    (&pool.token1, reserve1)
                };
                let ain = amount(&mut rng, f64::from(rin).log10() + 0.5);
                // The pool's own quote, while its mined state is the one we simulate on (its
                // first swap of the batch); every swap is checked against its events below.
                let quote = if touched.insert(pool.address) {
                    Some(
                        IAeroPool::new(pool.address, &p)
                            .getAmountOut(ain, tin.address)
                            .call()
                            .await,
                    )
                } else {
                    None
                };
                let Ok(want) = sp.swap_exact_in(ain, zfo) else {
                    if let Some(q) = quote {
                        assert!(
                            q.as_ref().is_err() || q.as_ref().is_ok_and(|q| q.is_zero()),
                            "dexlab refused a swap the pool quotes: {q:?}"
                        );
                    }
                    continue;
                };
                if let Some(q) = quote {
                    assert_eq!(
                        q.unwrap(),
                        want,
                        "getAmountOut, seed {seed}: {} zfo={zfo} in={ain}, reserves {reserve0} {reserve1}",
                        pool.address
                    );
                    quoted += 1;
                }
                if want.is_zero() {
                    continue;
                }
                rp.states.insert(
                    pool.address,
                    PoolState::Reserves {
                        reserve0: sp.reserve0,
                        reserve1: sp.reserve1,
                    },
                );
                let call = IAeroRouter::solidlySwapCall {
                    pool: pool.address,
                    tokenIn: tin.address,
                    amountIn: ain,
                    amountOutMin: want,
                    to: trader,
                };
                let h = *p
                    .send_transaction(tx(trader, router, call.abi_encode(), nonce))
                    .await
                    .unwrap()
                    .tx_hash();
                nonce += 1;
                stable_swaps += usize::from(pool.stable == Some(true));
                sent.push((h, pool, zfo, ain, want, (sp.reserve0, sp.reserve1)));
            }
            mine_all(&p).await;
            for (h, pool, zfo, ain, want, reserves) in sent {
                let ctx = format!("seed {seed}: {} zfo={zfo} in={ain}", pool.address);
                let r = p.get_transaction_receipt(h).await.unwrap().unwrap();
                assert!(r.status(), "reverted on chain: {ctx}");
                let mut paid = None;
                let mut synced = None;
                for l in r
                    .inner
                    .logs()
                    .iter()
                    .filter(|l| l.address() == pool.address)
                {
                    if let Ok(e) = solidly::Swap::decode_log_data(l.data()) {
                        paid = Some(if zfo {
                            (e.amount0In, e.amount1Out)
                        } else {
                            (e.amount1In, e.amount0Out)
                        });
                    }
                    if let Ok(e) = solidly::Sync::decode_log_data(l.data()) {
                        synced = Some((e.reserve0, e.reserve1));
                    }
                }
                assert_eq!(paid, Some((ain, want)), "amounts: {ctx}");
                assert_eq!(
                    synced,
                    Some(reserves),
                    "reserves after the swap (the Sync): {ctx}"
                );
            }
            done += BATCH.min(SOLIDLY_SWAPS - done);
        }
        assert!(
            stable_swaps > 100 && quoted > 30,
            "coverage: {stable_swaps} stable swaps, {quoted} checked against getAmountOut"
        );
        // `data verify`'s replay, with the manifest's (old) fee: each swap is priced with the fee
        // it paid (its Fees event), so the change loses no swap.
        let all = p
            .get_logs(
                &Filter::new()
                    .address(solidly.iter().map(|x| x.address).collect::<Vec<_>>())
                    .from_block(0),
            )
            .await
            .unwrap();
        let mut fresh = Replayer::new(&pools);
        let (mut checked, mut after_change) = (0, 0);
        for l in &all {
            if let Some(c) = fresh.apply(&dexlab_data::ingest::raw_log(l, m.chain_id).unwrap()) {
                assert_eq!(
                    c.result,
                    Ok(()),
                    "replay of {} on {} (fee changed on {})",
                    c.location,
                    c.pool,
                    changed.address
                );
                checked += 1;
                after_change += usize::from(c.pool == changed.address);
            }
        }
        assert!(
            checked >= SOLIDLY_SWAPS && after_change > 50,
            "{checked} checked, {after_change} on the changed pool"
        );
        for pool in &solidly {
            let Some(PoolState::Reserves { reserve0, reserve1 }) =
                rp.states.get(&pool.address).cloned()
            else {
                unreachable!()
            };
            let r = IAeroPool::new(pool.address, &p)
                .getReserves()
                .call()
                .await
                .unwrap();
            assert_eq!((r._0, r._1), (reserve0, reserve1), "{}", pool.address);
        }

        // Slipstream: amounts, sqrt price, tick and liquidity of every swap, exact in and out,
        // with and without price limits, through staked and unstaked liquidity.
        let cl: Vec<&PoolInfo> = pools
            .iter()
            .filter(|x| x.protocol == Protocol::Slipstream)
            .collect();
        // The staked pool's gauge share of every fee, step by step, against its gaugeFees.
        let unstaked_fee = IClPool::new(staked_pool.address, &p)
            .unstakedFee()
            .call()
            .await
            .unwrap()
            .to::<u32>();
        assert!(unstaked_fee > 0, "the gauge stand-in is not alive");
        // Half the widest position, staked when the devnet was deployed; what is staked in the
        // active range now is the pool's own figure.
        let half = (widest.2 / 2) as i128;
        let mut staked_side = slipstream::Staked {
            liquidity: staked_now,
            net: [(widest.0, half), (widest.1, -half)].into_iter().collect(),
        };
        // What the gauge earned in the devnet's history, before these swaps.
        let before = IClPool::new(staked_pool.address, &p)
            .gaugeFees()
            .call()
            .await
            .unwrap();
        let (mut gauge0, mut gauge1) = (U256::from(before.token0), U256::from(before.token1));
        let (mut crossed, mut exact_out, mut limited, mut done) = (0u64, 0u64, 0u64, 0usize);
        let mut drained = 0u64;
        while done < SLIPSTREAM_SWAPS {
            let mut sent = Vec::new();
            while sent.len() < BATCH && done + sent.len() < SLIPSTREAM_SWAPS {
                let pool = cl[rng.random_range(0..cl.len())];
                let Some(PoolState::V3 { pool: st, .. }) = rp.states.get_mut(&pool.address) else {
                    panic!("no V3 state for {}", pool.address)
                };
                let zfo = rng.random_bool(0.5);
                let exact_in = rng.random_bool(0.6);
                let (tin, tout) = if zfo {
                    (&pool.token0, &pool.token1)
                } else {
                    (&pool.token1, &pool.token0)
                };
                let dec = if exact_in {
                    tin.decimals
                } else {
                    tout.decimals
                } as f64;
                let amt = amount(&mut rng, dec + 6.5);
                let spec = if exact_in {
                    I256::from_raw(amt)
                } else {
                    -I256::from_raw(amt)
                };
                let limit = if rng.random_bool(0.3) {
                    let t = st.tick
                        + if zfo {
                            -rng.random_range(1..3000)
                        } else {
                            rng.random_range(1..3000)
                        };
                    tick_math::get_sqrt_ratio_at_tick(
                        t.clamp(tick_math::MIN_TICK + 1, tick_math::MAX_TICK - 1),
                    )
                    .ok()
                } else {
                    None
                };
                let expected = if pool.address == staked_pool.address {
                    match slipstream::swap(st, &staked_side, unstaked_fee, zfo, spec, limit) {
                        Ok(split) if !drains(&split.swap) => {
                            if zfo {
                                gauge0 += split.gauge_fee;
                            } else {
                                gauge1 += split.gauge_fee;
                            }
                            staked_side.liquidity = split.staked_liquidity;
                            Ok(split.swap)
                        }
                        Ok(split) => Ok(split.swap),
                        Err(e) => Err(e),
                    }
                } else {
                    st.swap(zfo, spec, limit)
                };
                let Ok(expected) = expected else {
                    continue;
                };
                // A swap that runs out of liquidity walks the empty bitmap to the end of the
                // price range, one word per step; Slipstream asks its factory (and the voter)
                // for the fees at every step, so on tick spacing 1 that walk takes more gas than
                // a block has, on chain as here. Such swaps are left out (and counted).
                if drains(&expected) {
                    drained += 1;
                    continue;
                }
                st.apply(&expected);
                let h = send_v3_swap(
                    &p,
                    (trader, router, nonce),
                    pool.address,
                    zfo,
                    spec,
                    U160::from(limit.unwrap_or_default()),
                )
                .await;
                nonce += 1;
                crossed += u64::from(expected.ticks_crossed > 0);
                exact_out += u64::from(!exact_in);
                limited += u64::from(limit.is_some());
                sent.push((h, pool, zfo, spec, expected));
            }
            mine_all(&p).await;
            for (h, pool, zfo, spec, want) in sent {
                let ctx = format!("seed {seed}: {} zfo={zfo} spec={spec}", pool.address);
                let r = p.get_transaction_receipt(h).await.unwrap().unwrap();
                if !r.status() {
                    let trace: serde_json::Value = p
                        .raw_request(
                            "debug_traceTransaction".into(),
                            (h, serde_json::json!({"tracer": "callTracer"})),
                        )
                        .await
                        .unwrap();
                    let t = serde_json::to_string(&trace).unwrap();
                    eprintln!("trace: {}", t.chars().take(3000).collect::<String>());
                }
                assert!(
                    r.status(),
                    "reverted on chain but simulated fine: {ctx}; expected {want:?}; gas used {}",
                    r.gas_used
                );
                let log = r
                    .inner
                    .logs()
                    .iter()
                    .find(|l| l.address() == pool.address)
                    .unwrap();
                let e = univ3::Swap::decode_log_data(log.data()).unwrap();
                assert_eq!(
                    (
                        e.amount0,
                        e.amount1,
                        U256::from(e.sqrtPriceX96),
                        e.tick.as_i32(),
                        e.liquidity
                    ),
                    (
                        want.amount0,
                        want.amount1,
                        want.sqrt_price_x96,
                        want.tick,
                        want.liquidity
                    ),
                    "{ctx}"
                );
            }
            done += BATCH.min(SLIPSTREAM_SWAPS - done);
        }
        assert!(
            crossed > 60 && exact_out > 300 && limited > 200 && drained < 300,
            "coverage: crossed {crossed}, exact out {exact_out}, limited {limited}, {drained} left out as draining"
        );
        let fees = IClPool::new(staked_pool.address, &p)
            .gaugeFees()
            .call()
            .await
            .unwrap();
        assert!(
            fees.token0 > before.token0 && fees.token1 > before.token1,
            "the staked liquidity earned the gauge no fee"
        );
        assert_eq!(
            (U256::from(fees.token0), U256::from(fees.token1)),
            (gauge0, gauge1),
            "the gauge's share of the fees (unstaked fee {unstaked_fee} pips)"
        );

        // Fees that change mid-history. Slipstream's fee comes from its factory's swap-fee module,
        // which a fee manager (or a dynamic module) changes with no event of the pool: wire
        // Slipstream's custom module and give one pool a fee of its own, then trade it.
        let deployer = p.get_accounts().await.unwrap()[0];
        let cl_factory = factory(Protocol::Slipstream);
        let mut dn = p.get_transaction_count(deployer).await.unwrap();
        let mut code = dexlab_data::tools::artifact("SlipstreamCustomSwapFeeModule")
            .unwrap()
            .bytecode
            .to_vec();
        code.extend(cl_factory.abi_encode());
        let create = TransactionRequest::default()
            .with_from(deployer)
            .with_deploy_code(code)
            .with_nonce(dn)
            .with_gas_limit(3_000_000)
            .with_max_fee_per_gas(100_000_000_000)
            .with_max_priority_fee_per_gas(1)
            .with_chain_id(31337);
        let h = *p.send_transaction(create).await.unwrap().tx_hash();
        dn += 1;
        mine_all(&p).await;
        let module = p
            .get_transaction_receipt(h)
            .await
            .unwrap()
            .unwrap()
            .contract_address
            .expect("the fee module deployed");
        // The deepest Slipstream pool now, traded in small steps of its active range so that no
        // swap runs out of liquidity (a swap that does ends at the price bound whatever its fee).
        let depth = |x: &PoolInfo| match rp.states.get(&x.address) {
            Some(PoolState::V3 { pool, .. }) => pool.liquidity,
            _ => 0,
        };
        let changed_cl = (*cl.iter().max_by_key(|x| depth(x)).unwrap()).clone();
        let PoolState::V3 { pool: cl_state, .. } = rp.states[&changed_cl.address].clone() else {
            unreachable!()
        };
        let q96 = U256::from(1) << 96usize;
        let virtual0 = U256::from(cl_state.liquidity) * q96 / cl_state.sqrt_price_x96;
        let virtual1 = U256::from(cl_state.liquidity) * cl_state.sqrt_price_x96 / q96;
        // `data verify` up to here: the fee change must add no swap it cannot reproduce.
        let raw_of = |logs: &[alloy::rpc::types::Log]| -> Vec<dexlab_data::RawLog> {
            logs.iter()
                .map(|l| dexlab_data::ingest::raw_log(l, m.chain_id).unwrap())
                .collect()
        };
        let addrs: Vec<Address> = pools.iter().map(|x| x.address).collect();
        let history = Filter::new().address(addrs).from_block(0);
        let before_change =
            dexlab_data::replay::verify(&raw_of(&p.get_logs(&history).await.unwrap()), &pools, &[])
                .unwrap();
        let new_fee = 1_234u32;
        for (to, input) in [
            (
                cl_factory,
                IClFactory::setSwapFeeModuleCall { module }.abi_encode(),
            ),
            (
                module,
                IClFeeModule::setCustomFeeCall {
                    pool: changed_cl.address,
                    fee: alloy::primitives::aliases::U24::from(new_fee),
                }
                .abi_encode(),
            ),
        ] {
            send_ok(&p, tx(deployer, to, input, dn)).await;
            dn += 1;
        }
        assert_eq!(
            IClPool::new(changed_cl.address, &p)
                .fee()
                .call()
                .await
                .unwrap()
                .to::<u32>(),
            new_fee
        );
        let mut traded = 0;
        for k in 0..40u64 {
            let zfo = k % 2 == 0;
            let reserve = if zfo { virtual0 } else { virtual1 };
            let amt = reserve / U256::from(rng.random_range(100u64..10_000));
            let spec = if k % 3 == 0 {
                -I256::from_raw(amt)
            } else {
                I256::from_raw(amt)
            };
            let h = send_v3_swap(
                &p,
                (trader, router, nonce),
                changed_cl.address,
                zfo,
                spec,
                U160::ZERO,
            )
            .await;
            nonce += 1;
            mine_all(&p).await;
            traded += usize::from(
                p.get_transaction_receipt(h)
                    .await
                    .unwrap()
                    .unwrap()
                    .status(),
            );
        }
        assert!(
            traded > 30,
            "{traded} of 40 swaps on the pool with its own fee went through"
        );

        // The whole history of these pools, as `data verify` and the backtester read it.
        let raw = raw_of(&p.get_logs(&history).await.unwrap());
        let report = dexlab_data::replay::verify(&raw, &pools, &[]).unwrap();
        assert!(report.swaps >= before_change.swaps + 30);
        assert_eq!(
            report.swaps - report.exact,
            before_change.swaps - before_change.exact,
            "data verify after the fee change: {:?} (before it: {:?})",
            report.mismatches,
            before_change.mismatches
        );
        assert!(
            report.fee_changes >= 1,
            "the Slipstream fee change was not seen"
        );
        // The backtester's tape ends with every pool at the fee the chain charges now, and its
        // quotes are the pools' own.
        let tape = dexlab_engine::tape::Tape::build(&pools, &raw, &[], &[], None).unwrap();
        let market = tape.market_at(tape.blocks.len());
        for (i, pool) in pools.iter().enumerate() {
            let chain_fee = if pool.protocol == Protocol::Solidly {
                IAeroFactoryView::new(pool_factory, &p)
                    .getFee(pool.address, pool.stable == Some(true))
                    .call()
                    .await
                    .unwrap()
                    .to::<u32>()
                    * 100
            } else {
                IClPool::new(pool.address, &p)
                    .fee()
                    .call()
                    .await
                    .unwrap()
                    .to::<u32>()
            };
            assert_eq!(
                market.fee(i),
                chain_fee,
                "the tape's fee of {} {} (listed {})",
                pool.dex,
                pool.address,
                pool.fee
            );
            if pool.protocol == Protocol::Solidly {
                let x = U256::from(10u64).pow(U256::from(pool.token0.decimals)) / U256::from(7);
                let ours = market
                    .quote(i, pool.token0.address, x)
                    .map(|q| q.amount_out);
                let theirs = IAeroPool::new(pool.address, &p)
                    .getAmountOut(x, pool.token0.address)
                    .call()
                    .await
                    .unwrap();
                assert_eq!(ours, Some(theirs), "the tape's quote on {}", pool.address);
            }
        }
    }
}

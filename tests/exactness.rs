//! Proof of exactness: random swaps through the real deployed Uniswap V2, Uniswap V3 and
//! PancakeSwap V3 contracts give exactly what dexlab-amm computes (amounts, sqrt price, tick,
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
        function slot0() external view returns (uint160 sqrtPriceX96, int24 tick, uint16, uint16, uint16, uint32, bool);
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
            st.apply(&expected);
            let call = IRouter::v3SwapCall {
                pool: pool.address,
                zeroForOne: zfo,
                amountSpecified: spec,
                sqrtPriceLimitX96: U160::from(limit.unwrap_or_default()),
            };
            let h = *p
                .send_transaction(tx(trader, router, call.abi_encode(), nonce))
                .await
                .unwrap()
                .tx_hash();
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

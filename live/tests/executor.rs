//! The executor contract on the devnet's real DEX contracts: random bundles simulated through its
//! code give exactly the engine's math, and the check sees a difference when the math is stale;
//! deployed for real, it fills a bundle to the wei of the math and refuses strangers, non-owners
//! and late bundles.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{BlockId, TransactionRequest};
use alloy::sol_types::SolCall;
use dexlab_engine::driver::leg_outputs;
use dexlab_engine::session::NodeAnswer;
use dexlab_engine::tape::initial_market;
use dexlab_live::bootstrap_latest;
use dexlab_live::executor::{
    IDexlabExecutor, NodeSim, execute_calldata, executor_legs, revert_reason,
};
use dexlab_strategy::market::{PoolMeta, PoolState};
use dexlab_strategy::{Bundle, BundleTag, Leg};

use crate::support::*;

/// Deterministic random numbers for the bundles (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn reserve_of(s: &PoolState, meta: &PoolMeta, token: Address) -> U256 {
    match s {
        PoolState::V2 { reserve0, reserve1 } => {
            if token == meta.token0 {
                *reserve0
            } else {
                *reserve1
            }
        }
        // A V3 pool's in-range depth is not a reserve; its liquidity is a fair scale.
        PoolState::V3(p) => U256::from(p.liquidity),
        _ => U256::ZERO,
    }
}

/// A route of 1 to 3 legs chained by token, selling between 1e-9 and 3 % of the first pool's
/// depth (some large enough to cross ticks, a few too small to give anything).
fn random_bundle(rng: &mut Rng, metas: &[PoolMeta], states: &[PoolState]) -> Bundle {
    let first = rng.below(metas.len());
    let m = &metas[first];
    let mut token = if rng.next().is_multiple_of(2) {
        m.token0
    } else {
        m.token1
    };
    let depth = reserve_of(&states[first], m, token);
    let ppb = [1u64, 1_000, 100_000, 1_000_000, 30_000_000][rng.below(5)];
    let amount_in = (depth * U256::from(ppb) / U256::from(1_000_000_000u64)).max(U256::from(1));
    let mut legs = Vec::new();
    let mut pool = first;
    for _ in 0..1 + rng.below(3) {
        legs.push(Leg {
            pool,
            token_in: token,
        });
        let meta = &metas[pool];
        token = if meta.token0 == token {
            meta.token1
        } else {
            meta.token0
        };
        let next: Vec<usize> = (0..metas.len())
            .filter(|&i| metas[i].token0 == token || metas[i].token1 == token)
            .collect();
        pool = next[rng.below(next.len())];
    }
    Bundle {
        legs,
        amount_in,
        min_amount_out: U256::ZERO,
        priority_fee: 0,
        expected_out: U256::ZERO,
        tag: BundleTag::Sell,
    }
}

async fn market_at_head(
    p: &DynProvider,
    pools: &[dexlab_data::types::PoolInfo],
) -> (B256, Vec<PoolMeta>, Vec<PoolState>) {
    let s = bootstrap_latest(p, pools).await.unwrap();
    let (metas, states) = initial_market(pools, &s.pools).unwrap();
    (s.block.hash, metas, states)
}

#[tokio::test(flavor = "multi_thread")]
async fn random_bundles_through_the_executor_code_on_the_node_match_the_exact_math() {
    let (mut d, _dir) = devnet(41, 40).await;
    let p = http_provider(d.http_url());
    let pools = d.manifest.pools.clone();
    let (hash, metas, states) = market_at_head(&p, &pools).await;
    let mut sim = NodeSim::from_artifact(p.clone()).unwrap();
    let mut rng = Rng(7);
    let (mut filled, mut reverted, mut multi) = (0, 0, 0);
    let mut bundles = Vec::new();
    let mut venues = std::collections::BTreeSet::new();
    for _ in 0..90 {
        let b = random_bundle(&mut rng, &metas, &states);
        let math = leg_outputs(&metas, |i| &states[i], &b);
        let node = sim.simulate(BlockId::hash(hash), &metas, &b).await;
        match (&math, &node) {
            (Some(m), NodeAnswer::Filled { amounts }) => {
                assert_eq!(m, amounts, "bundle {b:?}");
                filled += 1;
                multi += usize::from(b.legs.len() > 1);
                for l in &b.legs {
                    venues.insert(metas[l.pool].dex.clone());
                }
            }
            (None, NodeAnswer::Reverted { .. }) => reverted += 1,
            _ => panic!("math {math:?}, node {node:?} for {b:?}"),
        }
        bundles.push((b, math));
    }
    assert!(
        filled >= 45 && multi >= 15,
        "{filled} filled ({multi} multi-leg)"
    );
    // Legs through every venue, Aerodrome (Solidly, volatile and stable) and Slipstream included.
    let all: std::collections::BTreeSet<_> = metas.iter().map(|m| m.dex.clone()).collect();
    assert_eq!(venues, all, "venues never filled through the executor");
    assert!(
        reverted >= 1,
        "no bundle too small to fill: the revert path is untested"
    );

    // The market moves on: the math of the old state no longer matches the node at the new
    // head for the bundles through moved pools, and the check says so.
    for _ in 0..5 {
        d.mine_block(200).await.unwrap();
    }
    let head = p.get_block_number().await.unwrap();
    let mut differ = 0;
    for (b, math) in bundles.iter().filter(|(_, m)| m.is_some()) {
        let node = sim.simulate(BlockId::number(head), &metas, b).await;
        let check = dexlab_engine::session::NodeCheck {
            id: 0,
            block: head,
            math: math.clone(),
            node,
        };
        differ += usize::from(check.agrees() == Some(false));
    }
    assert!(
        differ > 0,
        "stale math agreed with the node on every bundle"
    );
}

/// Sends a transaction from an unlocked dev account and mines it; returns its receipt's status.
async fn send(p: &DynProvider, from: Address, to: Option<Address>, input: Bytes) -> bool {
    let mut tx = TransactionRequest::default()
        .from(from)
        .input(input.into())
        .gas_limit(5_000_000);
    match to {
        Some(to) => tx = tx.to(to),
        None => tx.set_create(),
    }
    let hash = *p.send_transaction(tx).await.unwrap().tx_hash();
    mine_one(p).await;
    p.get_transaction_receipt(hash)
        .await
        .unwrap()
        .unwrap()
        .status()
}

alloy::sol! {
    interface ITestToken {
        function mint(address to, uint256 amount) external;
        function balanceOf(address holder) external view returns (uint256);
    }
}

async fn revert_of(p: &DynProvider, from: Address, to: Address, input: Bytes) -> String {
    let tx = TransactionRequest::default()
        .from(from)
        .to(to)
        .input(input.into());
    let e = p.call(tx).await.expect_err("the call should revert");
    let data = e
        .as_error_resp()
        .and_then(|r| r.as_revert_data())
        .unwrap_or_else(|| panic!("no revert data in {e}"));
    revert_reason(&data)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_deployed_executor_fills_to_the_wei_and_refuses_strangers_and_late_bundles() {
    let (d, _dir) = devnet(42, 20).await;
    let p = http_provider(d.http_url());
    let accounts = p.get_accounts().await.unwrap();
    // Accounts 14.. are not used by the devnet's market.
    let (owner, stranger) = (accounts[14], accounts[15]);
    let code = dexlab_data::tools::artifact("DexlabExecutor")
        .unwrap()
        .bytecode;
    let nonce = p.get_transaction_count(owner).await.unwrap();
    assert!(send(&p, owner, None, code).await, "deploy");
    let exec = owner.create(nonce);
    assert_eq!(
        IDexlabExecutor::ownerCall::abi_decode_returns(
            &p.call(
                TransactionRequest::default()
                    .to(exec)
                    .input(IDexlabExecutor::ownerCall {}.abi_encode().into())
            )
            .await
            .unwrap()
        )
        .unwrap(),
        owner
    );

    let pools = d.manifest.pools.clone();
    let (_, metas, states) = market_at_head(&p, &pools).await;
    // A two-leg cycle through a V2 pair and a V3 pool sharing both tokens.
    let (v2, v3) = (0..metas.len())
        .flat_map(|i| (0..metas.len()).map(move |j| (i, j)))
        .find(|&(i, j)| {
            metas[i].family == dexlab_strategy::market::Family::V2
                && metas[j].family == dexlab_strategy::market::Family::V3
                && metas[i].has_tokens(metas[j].token0, metas[j].token1)
        })
        .expect("a V2 pair and a V3 pool on the same tokens");
    let t = metas[v2].token0;
    let amount_in = reserve_of(&states[v2], &metas[v2], t) / U256::from(1000);
    let bundle = Bundle {
        legs: vec![
            Leg {
                pool: v2,
                token_in: t,
            },
            Leg {
                pool: v3,
                token_in: metas[v2].token1,
            },
        ],
        amount_in,
        min_amount_out: U256::ZERO,
        priority_fee: 0,
        expected_out: U256::ZERO,
        tag: BundleTag::Arb,
    };
    let math = leg_outputs(&metas, |i| &states[i], &bundle).expect("the math fills it");
    let legs = executor_legs(&metas, &bundle).unwrap();
    assert!(
        send(
            &p,
            owner,
            Some(t),
            ITestToken::mintCall {
                to: exec,
                amount: amount_in
            }
            .abi_encode()
            .into()
        )
        .await
    );
    let balance = |who: Address, token: Address| {
        let p = p.clone();
        async move {
            ITestToken::balanceOfCall::abi_decode_returns(
                &p.call(
                    TransactionRequest::default().to(token).input(
                        ITestToken::balanceOfCall { holder: who }
                            .abi_encode()
                            .into(),
                    ),
                )
                .await
                .unwrap(),
            )
            .unwrap()
        }
    };

    let head = p.get_block_number().await.unwrap();
    let call = |deadline: u64, min: U256| execute_calldata(legs.clone(), amount_in, min, deadline);
    // Refused: a non-owner, a deadline already past, an output below the minimum.
    let r = revert_of(&p, stranger, exec, call(head + 10, U256::ZERO)).await;
    assert!(r.contains("NotOwner"), "{r}");
    let r = revert_of(&p, owner, exec, call(head, U256::ZERO)).await;
    assert!(r.contains("Expired"), "{r}");
    let r = revert_of(&p, owner, exec, call(head + 10, math[1] + U256::from(1))).await;
    assert!(r.contains("InsufficientOutput"), "{r}");
    // A callback from anyone but the pool of the leg in progress.
    let cb = IDexlabExecutor::uniswapV3SwapCallbackCall {
        amount0Delta: alloy::primitives::I256::try_from(1).unwrap(),
        amount1Delta: alloy::primitives::I256::ZERO,
        data: Bytes::new(),
    }
    .abi_encode();
    let r = revert_of(&p, stranger, exec, cb.clone().into()).await;
    assert!(r.contains("UnexpectedCallback"), "{r}");
    let r = revert_of(&p, owner, exec, cb.into()).await;
    assert!(r.contains("UnexpectedCallback"), "{r}");

    // Sent for real, at exactly the math's minimum: filled, output to the wei.
    let out_token = metas[v2].token0;
    let before = balance(exec, out_token).await;
    assert!(send(&p, owner, Some(exec), call(head + 10, math[1])).await);
    let after = balance(exec, out_token).await;
    assert_eq!(after + amount_in - before, math[1]);

    // The owner withdraws; nobody else can.
    let w = IDexlabExecutor::withdrawCall {
        token: out_token,
        to: stranger,
        amount: after,
    }
    .abi_encode();
    let r = revert_of(&p, stranger, exec, w.clone().into()).await;
    assert!(r.contains("NotOwner"), "{r}");
    assert!(send(&p, owner, Some(exec), w.into()).await);
    assert_eq!(balance(exec, out_token).await, U256::ZERO);
    assert_eq!(balance(stranger, out_token).await, after);
}

/// The backtester's gas table (`GasConfig::default()`, which `examples/evolve-devnet.toml`
/// repeats) is the executor's measured gas: every two-leg pair of leg kinds within 10 % on
/// average, every bundle that crosses no tick within 20 %, and the bundles that cross ticks
/// within 10 % in all. Each measured bundle's output is also checked to the wei against the
/// exact math.
#[tokio::test(flavor = "multi_thread")]
async fn the_backtesters_gas_table_is_the_executors_measured_gas() {
    use dexlab_live::gas::{GasProbe, calibrate};
    let (d, _dir) = devnet(43, 20).await;
    let p = http_provider(d.http_url());
    let accounts = p.get_accounts().await.unwrap();
    let mut probe = GasProbe::deploy(p.clone(), accounts[14]).await.unwrap();
    assert_eq!(probe.owner().await.unwrap(), accounts[14]);
    let table = dexlab_strategy::gas::GasConfig::default();
    let cal = calibrate(&mut probe, &d.manifest.pools, &table)
        .await
        .unwrap();
    assert!(cal.samples.len() >= 150, "{} bundles", cal.samples.len());
    assert!(
        cal.samples.iter().any(|s| s.ticks_crossed > 0),
        "no bundle crossed a tick"
    );
    let pairs = cal.pairs();
    assert!(pairs.len() >= 5, "{pairs:?}");
    for r in &pairs {
        let off = r.model as f64 / r.mean as f64 - 1.0;
        assert!(
            off.abs() <= 0.10,
            "{:?}: measured {} on average ({}–{}), the table says {}",
            r.kinds,
            r.mean,
            r.min,
            r.max,
            r.model
        );
    }
    // A tick's crossing costs 24k or 58k gas depending on whether its outside accumulators
    // are still zero (a first crossing writes fresh storage): one figure per tick can only be
    // right on average, and is held to that.
    let crossing: Vec<_> = cal.samples.iter().filter(|s| s.ticks_crossed > 0).collect();
    let measured: u64 = crossing.iter().map(|s| s.gas_used).sum();
    let model: u64 = crossing.iter().map(|s| s.model_gas).sum();
    assert!(
        (model as f64 / measured as f64 - 1.0).abs() <= 0.10,
        "{} bundles crossing ticks: measured {measured} in all, the table says {model}",
        crossing.len()
    );
    for s in cal.samples.iter().filter(|s| s.ticks_crossed == 0) {
        let off = s.model_gas as f64 / s.gas_used as f64 - 1.0;
        assert!(
            off.abs() <= 0.20,
            "{:?} crossing {} ticks: measured {}, the table says {}",
            s.venues,
            s.ticks_crossed,
            s.gas_used,
            s.model_gas
        );
    }
    assert!(cal.fitted.is_some());
}

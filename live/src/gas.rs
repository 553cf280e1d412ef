//! The executor's gas, measured: bundles sent for real through a deployed `DexlabExecutor` on an
//! anvil node (the devnet, or a fork of a real chain with its real pools and tokens), each one's
//! receipt gas next to what the backtester's [`GasConfig`] assumes for it, and a least-squares fit
//! of that table to the receipts.
//!
//! A measured bundle is funded by writing the executor's balance of the input token into the
//! token's storage (the slot found by [`crate::executor::NodeSim`]'s probe), sent from the owner
//! (impersonated, so any account works on a fork), and mined; its output must equal dexlab's
//! exact math to the wei, or the measurement is refused: gas of a bundle that did something else
//! would calibrate nothing.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::ext::AnvilApi;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{BlockId, TransactionRequest};
use alloy::sol_types::SolCall;
use dexlab_data::types::PoolInfo;
use dexlab_strategy::gas::{GasConfig, bundle_gas};
use dexlab_strategy::market::{Family, Market, PoolMeta, PoolState};
use dexlab_strategy::{Bundle, BundleTag, Leg};

use crate::executor::{IDexlabExecutor, NodeSim, execute_calldata, executor_legs};

/// Why a measurement failed.
#[derive(Debug, thiserror::Error)]
pub enum GasError {
    #[error("node: {0}")]
    Node(String),
    #[error("bundle {bundle}: {message}")]
    Bundle { bundle: String, message: String },
}

/// What a leg costs depends on its venue's code, not only its family: the kinds the report keeps
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LegKind {
    V2,
    V3,
    SolidlyVolatile,
    SolidlyStable,
}

impl LegKind {
    pub fn of(meta: &PoolMeta) -> LegKind {
        match (meta.family, meta.stable) {
            (Family::V2, _) => LegKind::V2,
            (Family::V3, _) => LegKind::V3,
            (Family::Solidly, false) => LegKind::SolidlyVolatile,
            (Family::Solidly, true) => LegKind::SolidlyStable,
        }
    }

    pub fn family(self) -> Family {
        match self {
            LegKind::V2 => Family::V2,
            LegKind::V3 => Family::V3,
            LegKind::SolidlyVolatile | LegKind::SolidlyStable => Family::Solidly,
        }
    }
}

/// One bundle sent through the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GasSample {
    /// Each leg's venue (`uniswap-v3`, `aerodrome`, ...) and kind.
    pub venues: Vec<String>,
    pub kinds: Vec<LegKind>,
    /// Initialized ticks the V3 legs crossed, by the exact math.
    pub ticks_crossed: u32,
    /// The receipt's L2 gas.
    pub gas_used: u64,
    /// What the backtester charges for it with the config it was measured against.
    pub model_gas: u64,
    /// The transaction's calldata, for the L1 data fee.
    pub calldata_len: usize,
    pub amount_out: U256,
}

/// A `DexlabExecutor` deployed on an anvil node, and the means to send it bundles.
pub struct GasProbe {
    provider: DynProvider,
    owner: Address,
    pub executor: Address,
    sim: NodeSim,
}

alloy::sol! {
    interface IGasErc20 {
        function balanceOf(address holder) external view returns (uint256);
    }
}

impl GasProbe {
    /// Deploys the executor from `owner` (impersonated).
    pub async fn deploy(provider: DynProvider, owner: Address) -> Result<GasProbe, GasError> {
        let node = |e: String| GasError::Node(e);
        provider
            .anvil_impersonate_account(owner)
            .await
            .map_err(|e| node(format!("anvil_impersonateAccount: {e}")))?;
        let artifact =
            dexlab_data::tools::artifact("DexlabExecutor").map_err(|e| node(e.to_string()))?;
        let sim = NodeSim::from_artifact(provider.clone()).map_err(node)?;
        let nonce = provider
            .get_transaction_count(owner)
            .await
            .map_err(|e| node(format!("eth_getTransactionCount: {e}")))?;
        let mut probe = GasProbe {
            provider,
            owner,
            executor: owner.create(nonce),
            sim,
        };
        let mut tx = TransactionRequest::default()
            .from(owner)
            .input(artifact.bytecode.into())
            .gas_limit(5_000_000);
        tx.set_create();
        let (ok, _) = probe.send(tx).await?;
        if !ok {
            return Err(node("the executor's deployment reverted".into()));
        }
        Ok(probe)
    }

    /// Sends and mines one transaction; its status and gas.
    async fn send(&mut self, tx: TransactionRequest) -> Result<(bool, u64), GasError> {
        let node = |e: String| GasError::Node(e);
        let hash = *self
            .provider
            .send_transaction(tx)
            .await
            .map_err(|e| node(format!("eth_sendTransaction: {e}")))?
            .tx_hash();
        let mined = self
            .provider
            .get_transaction_receipt(hash)
            .await
            .map_err(|e| node(format!("eth_getTransactionReceipt: {e}")))?;
        let receipt = match mined {
            Some(r) => r,
            // A node that mines by hand: one block, a second after its head (its own clock,
            // not the wall's, so a devnet stays reproducible).
            None => {
                let head = self
                    .provider
                    .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                    .await
                    .map_err(|e| node(format!("eth_getBlockByNumber: {e}")))?
                    .ok_or_else(|| node("the node has no head block".into()))?;
                self.provider
                    .anvil_set_next_block_timestamp(head.header.timestamp + 1)
                    .await
                    .map_err(|e| node(format!("anvil_setNextBlockTimestamp: {e}")))?;
                self.provider
                    .evm_mine(None)
                    .await
                    .map_err(|e| node(format!("evm_mine: {e}")))?;
                self.provider
                    .get_transaction_receipt(hash)
                    .await
                    .map_err(|e| node(format!("eth_getTransactionReceipt: {e}")))?
                    .ok_or_else(|| node(format!("transaction {hash} was not mined")))?
            }
        };
        Ok((receipt.status(), receipt.gas_used))
    }

    /// The state of `pools` at the node's head.
    pub async fn market(&self, pools: &[PoolInfo]) -> Result<Market, GasError> {
        let head = crate::head_ref(&self.provider)
            .await
            .map_err(|e| GasError::Node(e.to_string()))?;
        let s = crate::bootstrap(&self.provider, pools, head)
            .await
            .map_err(|e| GasError::Node(e.to_string()))?;
        let (metas, states) = dexlab_engine::tape::initial_market(pools, &s.pools)
            .map_err(|e| GasError::Node(e.to_string()))?;
        let mut m = Market::new(metas);
        m.states = states;
        Ok(m)
    }

    /// Sends `bundle` through the executor at the state in `market` and measures it. The output
    /// must be the exact math's; the bundle's swaps are then applied to `market`, which so stays
    /// the node's state as long as nothing else trades on the node (a chain that mines only what
    /// this probe sends: start from [`GasProbe::market`]).
    pub async fn measure(
        &mut self,
        market: &mut Market,
        bundle: &Bundle,
        cfg: &GasConfig,
    ) -> Result<GasSample, GasError> {
        let refuse = |message: String| GasError::Bundle {
            bundle: format!("{bundle:?}"),
            message,
        };
        let (math_out, ticks, moved) = exact_run(&market.pools, &market.states, bundle)
            .ok_or_else(|| refuse("the exact math does not fill it".into()))?;
        let first = bundle
            .legs
            .first()
            .ok_or_else(|| refuse("no legs".into()))?;
        let last = bundle.legs.last().ok_or_else(|| refuse("no legs".into()))?;
        let out_meta = &market.pools[last.pool];
        let token_out = if out_meta.token0 == last.token_in {
            out_meta.token1
        } else {
            out_meta.token0
        };
        self.fund(first.token_in, bundle.amount_in).await?;
        let before = self.balance(token_out).await?;
        let legs = executor_legs(&market.pools, bundle).map_err(|e| refuse(e.to_string()))?;
        let input = execute_calldata(legs, bundle.amount_in, math_out, u64::MAX);
        let calldata_len = input.len();
        let tx = TransactionRequest::default()
            .from(self.owner)
            .to(self.executor)
            .input(input.into())
            .gas_limit(3_000_000);
        let (ok, gas_used) = self.send(tx).await?;
        if !ok {
            return Err(refuse(format!(
                "reverted on the node ({gas_used} gas) where the exact math fills it with {math_out}"
            )));
        }
        let after = self.balance(token_out).await?;
        let got = if first.token_in == token_out {
            after + bundle.amount_in - before
        } else {
            after - before
        };
        if got != math_out {
            return Err(refuse(format!(
                "the executor received {got}, the exact math says {math_out}"
            )));
        }
        for (i, state) in moved {
            market.states[i] = state;
        }
        let pools: Vec<usize> = bundle.legs.iter().map(|l| l.pool).collect();
        Ok(GasSample {
            venues: pools.iter().map(|&i| market.pools[i].dex.clone()).collect(),
            kinds: pools
                .iter()
                .map(|&i| LegKind::of(&market.pools[i]))
                .collect(),
            ticks_crossed: ticks,
            gas_used,
            model_gas: bundle_gas(cfg, market, &pools, ticks),
            calldata_len,
            amount_out: got,
        })
    }

    /// Gas of `bundle` when it fails at the executor's last check (output one unit below the
    /// minimum), after every swap ran: what a bundle overtaken by the market burns at most. The
    /// market does not move.
    pub async fn measure_revert(
        &mut self,
        market: &Market,
        bundle: &Bundle,
    ) -> Result<u64, GasError> {
        let refuse = |message: String| GasError::Bundle {
            bundle: format!("{bundle:?}"),
            message,
        };
        let (math_out, _, _) = exact_run(&market.pools, &market.states, bundle)
            .ok_or_else(|| refuse("the exact math does not fill it".into()))?;
        let first = bundle
            .legs
            .first()
            .ok_or_else(|| refuse("no legs".into()))?;
        self.fund(first.token_in, bundle.amount_in).await?;
        let legs = executor_legs(&market.pools, bundle).map_err(|e| refuse(e.to_string()))?;
        let tx = TransactionRequest::default()
            .from(self.owner)
            .to(self.executor)
            .input(
                execute_calldata(legs, bundle.amount_in, math_out + U256::from(1), u64::MAX).into(),
            )
            .gas_limit(3_000_000);
        let (ok, gas) = self.send(tx).await?;
        if ok {
            return Err(refuse("filled above the exact math's output".into()));
        }
        Ok(gas)
    }

    /// Gives the executor one unit of `token` if it holds none.
    async fn hold_at_least_one(&mut self, token: Address) -> Result<(), GasError> {
        if !self.balance(token).await?.is_zero() {
            return Ok(());
        }
        self.set_balance(token, U256::from(1)).await
    }

    /// Adds `amount` of `token` to what the executor holds (at least one unit: an executor that
    /// trades holds inventory, and a balance emptied to zero would earn a storage refund no live
    /// bundle gets).
    async fn fund(&mut self, token: Address, amount: U256) -> Result<(), GasError> {
        let held = self.balance(token).await?.max(U256::from(1));
        self.set_balance(token, held + amount).await
    }

    /// Writes the executor's balance of `token` into the token's storage.
    async fn set_balance(&mut self, token: Address, amount: U256) -> Result<(), GasError> {
        let layout = self
            .sim
            .balance_layout(token, BlockId::latest())
            .await
            .map_err(GasError::Node)?;
        self.provider
            .anvil_set_storage_at(
                token,
                U256::from_be_bytes(layout.key(self.executor).0),
                B256::from(amount),
            )
            .await
            .map_err(|e| GasError::Node(format!("anvil_setStorageAt: {e}")))?;
        Ok(())
    }

    async fn balance(&self, token: Address) -> Result<U256, GasError> {
        let tx = TransactionRequest::default().to(token).input(
            IGasErc20::balanceOfCall {
                holder: self.executor,
            }
            .abi_encode()
            .into(),
        );
        let ret: Bytes = self
            .provider
            .call(tx)
            .await
            .map_err(|e| GasError::Node(format!("balanceOf on {token}: {e}")))?;
        IGasErc20::balanceOfCall::abi_decode_returns(&ret)
            .map_err(|e| GasError::Node(format!("balanceOf on {token} returned {ret}: {e}")))
    }

    /// The executor's owner check, for callers that want to see it deployed.
    pub async fn owner(&self) -> Result<Address, GasError> {
        let ret = self
            .provider
            .call(
                TransactionRequest::default()
                    .to(self.executor)
                    .input(IDexlabExecutor::ownerCall {}.abi_encode().into()),
            )
            .await
            .map_err(|e| GasError::Node(format!("owner(): {e}")))?;
        IDexlabExecutor::ownerCall::abi_decode_returns(&ret)
            .map_err(|e| GasError::Node(format!("owner() returned {ret}: {e}")))
    }
}

/// A pool's depth in `token`, raw units: a V2 or Solidly reserve, a V3 pool's virtual reserve at
/// its price (`L / sqrtP` of token0, `L × sqrtP` of token1).
fn depth(meta: &PoolMeta, state: &PoolState, token: Address) -> U256 {
    let zero = meta.token0 == token;
    match state {
        PoolState::V2 { reserve0, reserve1 } => {
            if zero {
                *reserve0
            } else {
                *reserve1
            }
        }
        PoolState::Solidly(p) => {
            if zero {
                p.reserve0
            } else {
                p.reserve1
            }
        }
        PoolState::V3(p) if !p.sqrt_price_x96.is_zero() => {
            let l = U256::from(p.liquidity);
            if zero {
                (l << 96) / p.sqrt_price_x96
            } else {
                (l * p.sqrt_price_x96) >> 96
            }
        }
        _ => U256::ZERO,
    }
}

fn bundle(legs: Vec<Leg>, amount_in: U256) -> Bundle {
    Bundle {
        legs,
        amount_in,
        min_amount_out: U256::ZERO,
        priority_fee: 0,
        expected_out: U256::ZERO,
        tag: BundleTag::Arb,
    }
}

/// Millionths of a pool's depth that a calibration bundle sells: small enough to stay inside the
/// current tick of the devnet's V3 pools.
const SMALL_PPM: u64 = 2;
/// Sizes of the single V3 legs that cross ticks.
const CROSSING_PPM: [u64; 3] = [5_000, 20_000, 60_000];

/// The calibration set on `market`: every pool alone, both ways; every two-leg cycle of two pools
/// on the same pair of tokens, both ways (the family pairs an arbitrage trades); all at
/// [`SMALL_PPM`] of the first pool's depth; and single V3 legs large enough to cross initialized
/// ticks, for the per-tick figure. Bundles the exact math cannot fill are left out.
pub fn calibration_bundles(market: &Market) -> Vec<Bundle> {
    let (metas, states) = (&market.pools, &market.states);
    let n = metas.len();
    let amount = |i: usize, token: Address, ppm: u64| {
        (depth(&metas[i], &states[i], token) * U256::from(ppm) / U256::from(1_000_000u64))
            .max(U256::from(1))
    };
    let mut out = Vec::new();
    for i in 0..n {
        for t in [metas[i].token0, metas[i].token1] {
            out.push(bundle(
                vec![Leg {
                    pool: i,
                    token_in: t,
                }],
                amount(i, t, SMALL_PPM),
            ));
            if metas[i].family == Family::V3 {
                for ppm in CROSSING_PPM {
                    out.push(bundle(
                        vec![Leg {
                            pool: i,
                            token_in: t,
                        }],
                        amount(i, t, ppm),
                    ));
                }
            }
        }
        for j in 0..n {
            if i == j || !metas[i].has_tokens(metas[j].token0, metas[j].token1) {
                continue;
            }
            for (t, u) in [
                (metas[i].token0, metas[i].token1),
                (metas[i].token1, metas[i].token0),
            ] {
                out.push(bundle(
                    vec![
                        Leg {
                            pool: i,
                            token_in: t,
                        },
                        Leg {
                            pool: j,
                            token_in: u,
                        },
                    ],
                    amount(i, t, SMALL_PPM),
                ));
            }
        }
    }
    out.retain(|b| exact_run(metas, states, b).is_some());
    out
}

/// Every bundle measured, and the table that fits them.
#[derive(Debug, Clone)]
pub struct Calibration {
    pub samples: Vec<GasSample>,
    /// `None` when a family or the tick term had no sample to fit.
    pub fitted: Option<GasConfig>,
}

/// Two-leg bundles of one pair of leg kinds (in either order), no tick crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairRow {
    pub kinds: (LegKind, LegKind),
    pub samples: usize,
    pub min: u64,
    pub max: u64,
    pub mean: u64,
    /// What the backtester charges (the config the samples were measured against).
    pub model: u64,
}

impl Calibration {
    /// The two-leg rows, one per unordered pair of leg kinds.
    pub fn pairs(&self) -> Vec<PairRow> {
        let mut groups: std::collections::BTreeMap<(LegKind, LegKind), Vec<&GasSample>> =
            Default::default();
        for s in &self.samples {
            if let [a, b] = s.kinds[..]
                && s.ticks_crossed == 0
            {
                groups.entry((a.min(b), a.max(b))).or_default().push(s);
            }
        }
        groups
            .into_iter()
            .map(|(kinds, v)| PairRow {
                kinds,
                samples: v.len(),
                min: v.iter().map(|s| s.gas_used).min().unwrap_or(0),
                max: v.iter().map(|s| s.gas_used).max().unwrap_or(0),
                mean: v.iter().map(|s| s.gas_used).sum::<u64>() / v.len() as u64,
                model: v.iter().map(|s| s.model_gas).sum::<u64>() / v.len() as u64,
            })
            .collect()
    }
}

/// Sends every [`calibration_bundles`] bundle through `probe`'s executor on the node's current
/// state (after one unrecorded trade each way through every pool) and fits the table. The node
/// must mine only what the probe sends.
pub async fn calibrate(
    probe: &mut GasProbe,
    pools: &[PoolInfo],
    cfg: &GasConfig,
) -> Result<Calibration, GasError> {
    let mut market = probe.market(pools).await?;
    // One unit of every token first: an executor in service holds some of each token it
    // trades, so an output never lands in an empty balance (a first write costs 17,100 more).
    let mut tokens: Vec<Address> = market
        .pools
        .iter()
        .flat_map(|m| [m.token0, m.token1])
        .collect();
    tokens.sort();
    tokens.dedup();
    for t in tokens {
        probe.hold_at_least_one(t).await?;
    }
    let bundles = calibration_bundles(&market);
    // Every pool traded once each way first, unrecorded: a pool's first swap writes storage that
    // is still zero on a young chain (V2's price accumulators, for one: 34,000 gas more), which no
    // pool in service pays.
    let warm: Vec<Bundle> = bundles
        .iter()
        .filter(|b| b.legs.len() == 1)
        .filter(|b| {
            let meta = &market.pools[b.legs[0].pool];
            b.amount_in
                <= (depth(meta, &market.states[b.legs[0].pool], b.legs[0].token_in)
                    * U256::from(SMALL_PPM)
                    / U256::from(1_000_000u64))
                .max(U256::from(1))
        })
        .cloned()
        .collect();
    for b in &warm {
        if exact_run(&market.pools, &market.states, b).is_some() {
            probe.measure(&mut market, b, cfg).await?;
        }
    }
    let mut samples = Vec::with_capacity(bundles.len());
    for b in &bundles {
        // The market moved since the set was drawn: a bundle that no longer fills is skipped.
        if exact_run(&market.pools, &market.states, b).is_none() {
            continue;
        }
        samples.push(probe.measure(&mut market, b, cfg).await?);
    }
    let fitted = fit(&samples, cfg);
    Ok(Calibration { samples, fitted })
}

/// The bundle through the exact math on `states`: its output, the ticks it crossed and the new
/// state of each pool it moved.
pub fn exact_run(metas: &[PoolMeta], states: &[PoolState], b: &Bundle) -> Option<ExactRun> {
    if b.legs.iter().any(|l| l.pool >= states.len()) {
        return None;
    }
    let r = dexlab_engine::driver::run_route(metas, |i| &states[i], b)?;
    Some((*r.outputs.last()?, r.ticks_crossed, r.moved))
}

/// A bundle's output, the ticks it crossed, and each moved pool's new state.
pub type ExactRun = (U256, u32, Vec<(usize, PoolState)>);

/// The gas table that fits `samples` best (least squares on `base`, one figure per leg family and
/// `per_tick_crossed`), rounded up to the next 100 gas, with `template`'s other keys. Stable and
/// volatile Solidly legs share `per_solidly_leg`, as the backtester's table does: the fit weighs
/// them by how many samples each has.
pub fn fit(samples: &[GasSample], template: &GasConfig) -> Option<GasConfig> {
    // Unknowns: base, v2, v3, solidly, tick.
    const N: usize = 5;
    let mut ata = [[0f64; N]; N];
    let mut atb = [0f64; N];
    for s in samples {
        let mut row = [0f64; N];
        row[0] = 1.0;
        for k in &s.kinds {
            match k.family() {
                Family::V2 => row[1] += 1.0,
                Family::V3 => row[2] += 1.0,
                Family::Solidly => row[3] += 1.0,
            }
        }
        row[4] = f64::from(s.ticks_crossed);
        for i in 0..N {
            for j in 0..N {
                ata[i][j] += row[i] * row[j];
            }
            atb[i] += row[i] * s.gas_used as f64;
        }
    }
    let x = solve(ata, atb)?;
    let up = |v: f64| -> Option<u64> {
        (v.is_finite() && v >= 0.0).then(|| ((v / 100.0 - 1e-6).ceil() * 100.0) as u64)
    };
    Some(GasConfig {
        base: up(x[0])?,
        per_v2_leg: up(x[1])?,
        per_v3_leg: up(x[2])?,
        per_solidly_leg: up(x[3])?,
        per_tick_crossed: up(x[4])?,
        ..template.clone()
    })
}

/// Gaussian elimination with partial pivoting; `None` when the system is singular (a family or
/// the tick term without samples).
fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> Option<[f64; N]> {
    for col in 0..N {
        let piv = (col..N).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-9 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let pivot = a[col];
        for r in col + 1..N {
            let f = a[r][col] / pivot[col];
            for (x, p) in a[r][col..].iter_mut().zip(&pivot[col..]) {
                *x -= f * p;
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = [0f64; N];
    for r in (0..N).rev() {
        let s: f64 = (r + 1..N).map(|c| a[r][c] * x[c]).sum();
        x[r] = (b[r] - s) / a[r][r];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(kinds: &[LegKind], ticks: u32, gas: u64) -> GasSample {
        GasSample {
            venues: vec![],
            kinds: kinds.to_vec(),
            ticks_crossed: ticks,
            gas_used: gas,
            model_gas: 0,
            calldata_len: 0,
            amount_out: U256::ZERO,
        }
    }

    #[test]
    fn the_fit_recovers_an_exact_table_and_refuses_an_unmeasured_family() {
        use LegKind::*;
        let truth = |k: &[LegKind], t: u32| {
            40_000
                + k.iter()
                    .map(|k| match k.family() {
                        Family::V2 => 50_000,
                        Family::V3 => 80_000,
                        Family::Solidly => 65_000,
                    })
                    .sum::<u64>()
                + 20_000 * u64::from(t)
        };
        let shapes: Vec<(Vec<LegKind>, u32)> = vec![
            (vec![V2], 0),
            (vec![V3], 0),
            (vec![SolidlyVolatile], 0),
            (vec![V2, V3], 0),
            (vec![V3, SolidlyStable], 2),
            (vec![V2, SolidlyVolatile], 0),
            (vec![V3, V3], 1),
        ];
        let samples: Vec<_> = shapes
            .iter()
            .map(|(k, t)| sample(k, *t, truth(k, *t)))
            .collect();
        let f = fit(&samples, &GasConfig::default()).unwrap();
        assert_eq!(
            (
                f.base,
                f.per_v2_leg,
                f.per_v3_leg,
                f.per_solidly_leg,
                f.per_tick_crossed
            ),
            (40_000, 50_000, 80_000, 65_000, 20_000)
        );
        // No Solidly sample: its figure cannot be told.
        let no_solidly: Vec<_> = samples
            .into_iter()
            .filter(|s| s.kinds.iter().all(|k| k.family() != Family::Solidly))
            .collect();
        assert!(fit(&no_solidly, &GasConfig::default()).is_none());
    }
}

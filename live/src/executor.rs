//! The on-chain executor (`contracts/DexlabExecutor.sol`): its interface, a bundle's legs as the
//! contract takes them, and the node check of paper trading.
//!
//! [`NodeSim`] asks the node what the executor would do with a bundle at a block, without
//! deploying anything: an `eth_call` with a state override that puts the executor's runtime code at
//! a fixed address, makes the caller its owner, and gives it the bundle's input tokens. The token's
//! balance slot is found once per token by probing (one call that writes a distinct marker into
//! every candidate slot of the Solidity and Vyper mapping layouts, then one that confirms the
//! winner), so it works for any plain ERC-20, not only the devnet's.

use std::collections::HashMap;

use alloy::primitives::{Address, B256, Bytes, U256, address, keccak256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::state::AccountOverride;
use alloy::rpc::types::{BlockId, TransactionRequest};
use alloy::sol_types::{SolCall, SolInterface};
use dexlab_engine::session::NodeAnswer;
use dexlab_strategy::Bundle;
use dexlab_strategy::market::{Family, PoolMeta};

alloy::sol! {
    /// The executor's external interface (contracts/DexlabExecutor.sol).
    #[sol(all_derives)]
    interface IDexlabExecutor {
        struct Leg {
            address pool;
            address tokenIn;
            uint8 kind;
            bool zeroForOne;
            uint24 fee;
        }

        function execute(Leg[] legs, uint256 amountIn, uint256 minAmountOut, uint256 deadline)
            external returns (uint256[] amounts);
        function owner() external view returns (address);
        function withdraw(address token, address to, uint256 amount) external;
        function uniswapV3SwapCallback(int256 amount0Delta, int256 amount1Delta, bytes data) external;

        error NotOwner();
        error Expired(uint256 deadline, uint256 blockNumber);
        error EmptyBundle();
        error BadLeg(uint256 index);
        error PartialFill(uint256 index, uint256 amountIn, uint256 taken);
        error ZeroOutput(uint256 index);
        error InsufficientOutput(uint256 amountOut, uint256 minAmountOut);
        error UnexpectedCallback(address caller);
        error TransferFailed(address token, address to, uint256 amount);
    }

    interface IErc20Balance {
        function balanceOf(address holder) external view returns (uint256);
    }
}

pub use IDexlabExecutor::Leg as ExecutorLeg;

/// The contract's leg kinds.
pub const KIND_V2: u8 = 0;
pub const KIND_V3: u8 = 1;
pub const KIND_SOLIDLY: u8 = 2;

/// Where a paper session's simulated executor lives: an address with no key and no code on any
/// chain (the state override gives it code for one call).
pub const SIM_EXECUTOR: Address = address!("00000000000000000000000000000000de1ab0e0");
/// Its simulated owner, the `from` of the call.
pub const SIM_OWNER: Address = address!("00000000000000000000000000000000de1ab0e1");

/// Slots probed for a token's balance mapping.
const PROBE_SLOTS: u64 = 64;

/// Why a bundle cannot be put to the executor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegError {
    #[error("leg {index}: no pool {pool} in the market")]
    NoPool { index: usize, pool: usize },
    #[error("leg {index}: token {token} is not in pool {pool}")]
    NotInPool {
        index: usize,
        pool: Address,
        token: Address,
    },
}

/// A bundle's legs as the executor contract takes them.
pub fn executor_legs(pools: &[PoolMeta], bundle: &Bundle) -> Result<Vec<ExecutorLeg>, LegError> {
    bundle
        .legs
        .iter()
        .enumerate()
        .map(|(index, leg)| {
            let meta = pools.get(leg.pool).ok_or(LegError::NoPool {
                index,
                pool: leg.pool,
            })?;
            if meta.token0 != leg.token_in && meta.token1 != leg.token_in {
                return Err(LegError::NotInPool {
                    index,
                    pool: meta.address,
                    token: leg.token_in,
                });
            }
            let kind = match meta.family {
                Family::V2 => KIND_V2,
                Family::V3 => KIND_V3,
                Family::Solidly => KIND_SOLIDLY,
            };
            Ok(ExecutorLeg {
                pool: meta.address,
                tokenIn: leg.token_in,
                kind,
                zeroForOne: meta.token0 == leg.token_in,
                fee: alloy::primitives::aliases::U24::from(meta.fee.min(0xff_ffff)),
            })
        })
        .collect()
}

/// The calldata of `execute`.
pub fn execute_calldata(
    legs: Vec<ExecutorLeg>,
    amount_in: U256,
    min_amount_out: U256,
    deadline: u64,
) -> Bytes {
    IDexlabExecutor::executeCall {
        legs,
        amountIn: amount_in,
        minAmountOut: min_amount_out,
        deadline: U256::from(deadline),
    }
    .abi_encode()
    .into()
}

/// What the deployed executor at `executor` does with `calldata` sent by `owner` on the state at
/// the end of `block`, its own balances and all (live mode's check before sending).
pub async fn call_deployed(
    provider: &DynProvider,
    block: BlockId,
    executor: Address,
    owner: Address,
    calldata: Bytes,
) -> NodeAnswer {
    let tx = TransactionRequest::default()
        .from(owner)
        .to(executor)
        .input(calldata.into());
    answer(provider.call(tx).block(block).await)
}

/// An `execute` call's answer: each leg's output, the decoded revert, or why there is none.
fn answer(r: alloy::transports::TransportResult<Bytes>) -> NodeAnswer {
    match r {
        Ok(ret) => match IDexlabExecutor::executeCall::abi_decode_returns(&ret) {
            Ok(amounts) => NodeAnswer::Filled { amounts },
            Err(e) => NodeAnswer::Unavailable {
                reason: format!("undecodable return {ret}: {e}"),
            },
        },
        Err(e) => match e.as_error_resp() {
            Some(resp) if resp.message.contains("revert") => NodeAnswer::Reverted {
                reason: resp
                    .as_revert_data()
                    .map(|d| revert_reason(&d))
                    .unwrap_or_else(|| resp.message.to_string()),
            },
            _ => NodeAnswer::Unavailable {
                reason: format!("eth_call: {e}"),
            },
        },
    }
}

/// Where a token keeps balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BalanceLayout {
    /// `mapping(address => uint256)` at this slot, Solidity's hashing (`keccak(holder . slot)`).
    Solidity(u64),
    /// Vyper's hashing (`keccak(slot . holder)`).
    Vyper(u64),
}

impl BalanceLayout {
    pub fn key(self, holder: Address) -> B256 {
        let mut buf = [0u8; 64];
        let (h, s) = match self {
            BalanceLayout::Solidity(s) => (0, s),
            BalanceLayout::Vyper(s) => (32, s),
        };
        buf[h + 12..h + 32].copy_from_slice(holder.as_slice());
        let so = 32 - h;
        buf[so + 24..so + 32].copy_from_slice(&s.to_be_bytes());
        keccak256(buf)
    }

    fn candidates() -> impl Iterator<Item = BalanceLayout> {
        (0..PROBE_SLOTS).flat_map(|s| [BalanceLayout::Solidity(s), BalanceLayout::Vyper(s)])
    }
}

/// Simulates bundles through the executor's code on a node.
pub struct NodeSim {
    provider: DynProvider,
    code: Bytes,
    slots: HashMap<Address, Result<BalanceLayout, String>>,
}

impl NodeSim {
    /// `code`: the executor's runtime code (the `deployedBytecode` of its artifact).
    pub fn new(provider: DynProvider, code: Bytes) -> Self {
        Self {
            provider,
            code,
            slots: HashMap::new(),
        }
    }

    /// With the runtime code from `.dexlab/artifacts` (written by the setup).
    pub fn from_artifact(provider: DynProvider) -> Result<Self, String> {
        let a = dexlab_data::tools::artifact("DexlabExecutor").map_err(|e| e.to_string())?;
        let code = a.deployed_bytecode.filter(|c| !c.is_empty()).ok_or(
            "the DexlabExecutor artifact has no runtime code; run `bash scripts/setup.sh` again",
        )?;
        Ok(Self::new(provider, code))
    }

    /// What the executor does with `bundle` on the state at the end of `block`: each leg's
    /// output, the decoded revert, or why the node could not be asked.
    pub async fn simulate(
        &mut self,
        block: BlockId,
        pools: &[PoolMeta],
        bundle: &Bundle,
    ) -> NodeAnswer {
        let unavailable = |reason: String| NodeAnswer::Unavailable { reason };
        let legs = match executor_legs(pools, bundle) {
            Ok(l) => l,
            Err(e) => return unavailable(e.to_string()),
        };
        let Some(first) = bundle.legs.first() else {
            return unavailable("the bundle has no legs".into());
        };
        let token = first.token_in;
        let layout = match self.balance_layout(token, block).await {
            Ok(l) => l,
            Err(e) => return unavailable(e),
        };
        let overrides = [
            (
                SIM_EXECUTOR,
                AccountOverride::default()
                    .with_code(self.code.clone())
                    .with_state_diff([(B256::ZERO, SIM_OWNER.into_word())]),
            ),
            (
                token,
                AccountOverride::default()
                    .with_state_diff([(layout.key(SIM_EXECUTOR), B256::from(bundle.amount_in))]),
            ),
        ];
        let tx = TransactionRequest::default()
            .from(SIM_OWNER)
            .to(SIM_EXECUTOR)
            .input(execute_calldata(legs, bundle.amount_in, U256::ZERO, u64::MAX).into());
        let call = self.provider.call(tx).block(block).overrides(
            overrides
                .into_iter()
                .collect::<alloy::rpc::types::state::StateOverride>(),
        );
        answer(call.await)
    }

    /// The token's balance layout, found on first use and kept.
    pub async fn balance_layout(
        &mut self,
        token: Address,
        block: BlockId,
    ) -> Result<BalanceLayout, String> {
        if let Some(r) = self.slots.get(&token) {
            return r.clone();
        }
        match self.probe(token, block).await {
            // A node that could not answer is not remembered: the next bundle asks again.
            Err(Probe::Node(e)) => Err(e),
            r => {
                let r = r.map_err(|e| e.to_string());
                self.slots.insert(token, r.clone());
                r
            }
        }
    }

    async fn probe(&self, token: Address, block: BlockId) -> Result<BalanceLayout, Probe> {
        let holder = SIM_EXECUTOR;
        let candidates: Vec<BalanceLayout> = BalanceLayout::candidates().collect();
        // Marker k+1 in candidate k's slot: the balance read back names the slot.
        let base = U256::from(0xde1ab_u64) << 128;
        let diff = candidates
            .iter()
            .enumerate()
            .map(|(k, l)| (l.key(holder), B256::from(base + U256::from(k + 1))));
        let found = self
            .balance_with(
                token,
                block,
                AccountOverride::default().with_state_diff(diff),
            )
            .await?;
        let k = found
            .checked_sub(base)
            .filter(|k| *k >= U256::from(1) && *k <= U256::from(candidates.len()))
            .map(|k| k.to::<usize>() - 1)
            .ok_or_else(|| {
                Probe::Token(format!(
                    "token {token}: no balance mapping found in storage slots 0..{PROBE_SLOTS} \
                     (a proxy or rebasing token?)"
                ))
            })?;
        let layout = candidates[k];
        // Confirm with that slot alone.
        let want = U256::from(0x5eed_u64) << 64;
        let got = self
            .balance_with(
                token,
                block,
                AccountOverride::default()
                    .with_state_diff([(layout.key(holder), B256::from(want))]),
            )
            .await?;
        if got != want {
            return Err(Probe::Token(format!(
                "token {token}: the balance slot {layout:?} does not hold the balance alone"
            )));
        }
        Ok(layout)
    }

    async fn balance_with(
        &self,
        token: Address,
        block: BlockId,
        o: AccountOverride,
    ) -> Result<U256, Probe> {
        let tx = TransactionRequest::default().to(token).input(
            IErc20Balance::balanceOfCall {
                holder: SIM_EXECUTOR,
            }
            .abi_encode()
            .into(),
        );
        let ret = self
            .provider
            .call(tx)
            .block(block)
            .overrides(
                [(token, o)]
                    .into_iter()
                    .collect::<alloy::rpc::types::state::StateOverride>(),
            )
            .await
            .map_err(|e| Probe::Node(format!("eth_call balanceOf on {token}: {e}")))?;
        IErc20Balance::balanceOfCall::abi_decode_returns(&ret)
            .map_err(|e| Probe::Token(format!("token {token}: balanceOf returned {ret}: {e}")))
    }
}

/// `holder`'s balance of `token` at the end of `block`.
pub async fn balance_of(
    provider: &DynProvider,
    token: Address,
    holder: Address,
    block: BlockId,
) -> Result<U256, String> {
    let tx = TransactionRequest::default()
        .to(token)
        .input(IErc20Balance::balanceOfCall { holder }.abi_encode().into());
    let ret = provider
        .call(tx)
        .block(block)
        .await
        .map_err(|e| format!("balanceOf({holder}) on {token}: {e}"))?;
    IErc20Balance::balanceOfCall::abi_decode_returns(&ret)
        .map_err(|e| format!("token {token}: balanceOf returned {ret}: {e}"))
}

/// The executor's owner, by its `owner()` at `block`.
pub async fn owner_of(
    provider: &DynProvider,
    executor: Address,
    block: BlockId,
) -> Result<Address, String> {
    let tx = TransactionRequest::default()
        .to(executor)
        .input(IDexlabExecutor::ownerCall {}.abi_encode().into());
    let ret = provider
        .call(tx)
        .block(block)
        .await
        .map_err(|e| format!("owner() on {executor}: {e}"))?;
    IDexlabExecutor::ownerCall::abi_decode_returns(&ret)
        .map_err(|e| format!("{executor} is not a DexlabExecutor: owner() returned {ret}: {e}"))
}

/// Why a token's balance slot was not found.
#[derive(Debug)]
enum Probe {
    /// The node did not answer: worth asking again.
    Node(String),
    /// The token itself: the same answer every time.
    Token(String),
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Probe::Node(m) | Probe::Token(m) => f.write_str(m),
        }
    }
}

/// A revert's reason: the executor's own error by name and fields, a `require` string, or the raw
/// bytes.
pub fn revert_reason(data: &[u8]) -> String {
    if let Ok(e) = IDexlabExecutor::IDexlabExecutorErrors::abi_decode(data) {
        return format!("{e:?}");
    }
    // `Error(string)` of a `require`, `Panic(uint256)` of an assert or an overflow.
    let standard =
        data.starts_with(&[0x08, 0xc3, 0x79, 0xa0]) || data.starts_with(&[0x4e, 0x48, 0x7b, 0x71]);
    standard
        .then(|| alloy::sol_types::decode_revert_reason(data))
        .flatten()
        .unwrap_or_else(|| format!("0x{}", alloy::primitives::hex::encode(data)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solidity_and_vyper_keys_follow_their_hashing() {
        let holder = address!("00000000000000000000000000000000000000aa");
        let mut sol = [0u8; 64];
        sol[31] = 0xaa;
        sol[63] = 3;
        assert_eq!(BalanceLayout::Solidity(3).key(holder), keccak256(sol));
        let mut vy = [0u8; 64];
        vy[31] = 3;
        vy[63] = 0xaa;
        assert_eq!(BalanceLayout::Vyper(3).key(holder), keccak256(vy));
    }

    #[test]
    fn reverts_are_named() {
        let e = IDexlabExecutor::ZeroOutput {
            index: U256::from(1),
        };
        let data = alloy::sol_types::SolError::abi_encode(&e);
        assert!(
            revert_reason(&data).contains("ZeroOutput"),
            "{}",
            revert_reason(&data)
        );
        assert_eq!(revert_reason(&[1, 2]), "0x0102");
    }
}

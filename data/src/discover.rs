//! Pool metadata read from the chain, for pools given by address only.
//!
//! The protocol is told apart by what the pool answers: V3 pools have `tickSpacing()`, and
//! PancakeSwap V3 pools also `lmPool()`, Slipstream pools `unstakedFee()` (their `fee()` is the
//! factory's current swap fee for the pool); Solidly pools have `stable()`; anything else with
//! `getReserves()` is taken as Uniswap-V2 style with the canonical 0.30 % fee (a fork with another
//! fee must be described in a manifest).

use alloy::primitives::Address;
use alloy::providers::DynProvider;

use crate::error::{DataError, Result};
use crate::types::{PoolInfo, Protocol, TokenInfo};

alloy::sol! {
    #[sol(rpc)]
    interface IPoolProbe {
        function token0() external view returns (address);
        function token1() external view returns (address);
        function fee() external view returns (uint24);
        function tickSpacing() external view returns (int24);
        function lmPool() external view returns (address);
        function unstakedFee() external view returns (uint24);
        function stable() external view returns (bool);
        function factory() external view returns (address);
        function getReserves() external view returns (uint256, uint256, uint256);
    }

    #[sol(rpc)]
    interface ISolidlyFactory {
        function getFee(address pool, bool stable) external view returns (uint256);
    }

    #[sol(rpc)]
    interface IErc20Meta {
        function decimals() external view returns (uint8);
        function symbol() external view returns (string);
    }
}

async fn token(provider: &DynProvider, a: Address) -> Result<TokenInfo> {
    let t = IErc20Meta::new(a, provider);
    let decimals = t
        .decimals()
        .call()
        .await
        .map_err(|e| DataError::Config(format!("token {a}: decimals(): {e}")))?;
    // Some tokens (MKR) return bytes32 symbols; a missing symbol is not fatal.
    let symbol = t
        .symbol()
        .call()
        .await
        .unwrap_or_else(|_| format!("{a:#x}")[..10].to_string());
    Ok(TokenInfo {
        address: a,
        symbol,
        decimals,
    })
}

pub async fn discover_pools(provider: &DynProvider, addrs: &[Address]) -> Result<Vec<PoolInfo>> {
    let mut out = Vec::new();
    for &a in addrs {
        let p = IPoolProbe::new(a, provider);
        let bad = |what: &str, e: String| {
            DataError::Config(format!(
                "--pool {a}: {what}: {e} (is it a DEX pool on this chain?)"
            ))
        };
        let t0 = p
            .token0()
            .call()
            .await
            .map_err(|e| bad("token0()", e.to_string()))?;
        let t1 = p
            .token1()
            .call()
            .await
            .map_err(|e| bad("token1()", e.to_string()))?;
        let (token0, token1) = (token(provider, t0).await?, token(provider, t1).await?);
        let info = if let Ok(ts) = p.tickSpacing().call().await {
            let fee = p
                .fee()
                .call()
                .await
                .map_err(|e| bad("fee()", e.to_string()))?;
            let protocol = if p.lmPool().call().await.is_ok() {
                Protocol::PancakeV3
            } else if p.unstakedFee().call().await.is_ok() {
                Protocol::Slipstream
            } else {
                Protocol::UniswapV3
            };
            PoolInfo {
                address: a,
                protocol,
                dex: protocol.as_str().replace('_', "-"),
                token0,
                token1,
                fee: fee.to::<u32>(),
                tick_spacing: Some(ts.as_i32()),
                stable: None,
            }
        } else if let Ok(stable) = p.stable().call().await {
            let factory = p
                .factory()
                .call()
                .await
                .map_err(|e| bad("factory()", e.to_string()))?;
            // Solidly fees are in basis points of 10 000; pips are 1 000 000.
            let fee_bps = ISolidlyFactory::new(factory, provider)
                .getFee(a, stable)
                .call()
                .await
                .map_err(|e| bad("factory getFee()", e.to_string()))?;
            PoolInfo {
                address: a,
                protocol: Protocol::Solidly,
                dex: "solidly".into(),
                token0,
                token1,
                fee: fee_bps.to::<u32>() * 100,
                tick_spacing: None,
                stable: Some(stable),
            }
        } else {
            p.getReserves()
                .call()
                .await
                .map_err(|e| bad("getReserves()", e.to_string()))?;
            PoolInfo {
                address: a,
                protocol: Protocol::UniswapV2,
                dex: "uniswap-v2".into(),
                token0,
                token1,
                fee: 3000,
                tick_spacing: None,
                stable: None,
            }
        };
        out.push(info);
    }
    Ok(out)
}

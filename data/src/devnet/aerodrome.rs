//! Aerodrome (Solidly-style volatile and stable pools) and Aerodrome Slipstream (concentrated
//! liquidity keyed by tick spacing) on a devnet.
//!
//! Both come from the Solidity sources published on npm (`sphere-mezo-solidity-files@1.2.0`),
//! compiled by the setup with the compiler each pragma pins: they are builds of the published
//! source, not Base's deployed bytecode. Aerodrome's `PoolFactory` needs nothing else; Slipstream's
//! `CLFactory` and `CLPool` call the rest of Aerodrome (its Voter, FactoryRegistry and legacy CL
//! factory), which `SlipstreamVoterStandIn` answers; `SlipstreamGaugeStandIn` stakes liquidity as
//! a gauge would, so that the unstaked fee is exercised.

use alloy::primitives::Address;
use alloy::primitives::aliases::{I24, U160};
use alloy::sol_types::{SolCall, SolValue};

use super::bindings::*;
use super::deploy::{Deployment, sqrt_price_x96};
use crate::error::{DataError, Result};
use crate::manifest::DexDeployment;
use crate::types::{PoolInfo, Protocol, TokenInfo};

/// Venue names of the two DEXes in manifests and reports.
pub const AERODROME: &str = "aerodrome";
pub const SLIPSTREAM: &str = "aerodrome-slipstream";

/// A pool to create.
#[derive(Debug, Clone)]
pub enum AeroPool {
    /// An Aerodrome pool: volatile (x·y = k) or stable (x³y + xy³ = k).
    Solidly {
        a: TokenInfo,
        b: TokenInfo,
        stable: bool,
    },
    /// A Slipstream pool of one of the factory's tick spacings, initialized at the devnet's
    /// reference price.
    Slipstream {
        a: TokenInfo,
        b: TokenInfo,
        tick_spacing: i32,
    },
}

/// The deployed Aerodrome and Slipstream contracts.
#[derive(Debug, Clone, Copy)]
pub struct Aerodrome {
    pub pool_factory: Address,
    pub cl_factory: Address,
    pub voter: Address,
    pub gauge: Address,
}

fn rpc(e: impl std::fmt::Display) -> DataError {
    DataError::Devnet(e.to_string())
}

/// Deploys both factories (and the stand-ins Slipstream needs) from the deployer account, and
/// records them in `d.dexes`. Mines one block.
pub async fn deploy_factories(d: &mut Deployment) -> Result<Aerodrome> {
    let dep = d.accounts[super::deploy::DEPLOYER];
    let pool_impl = d
        .deploy_code(
            dep,
            "AerodromePool",
            vec![],
            8_000_000,
            "deploy aerodrome pool implementation",
        )
        .await?;
    let pool_factory = d
        .deploy_code(
            dep,
            "AerodromePoolFactory",
            (pool_impl,).abi_encode_params(),
            4_000_000,
            "deploy aerodrome pool factory",
        )
        .await?;
    let voter = d
        .deploy_code(
            dep,
            "SlipstreamVoterStandIn",
            vec![],
            1_000_000,
            "deploy slipstream voter stand-in",
        )
        .await?;
    let gauge = d
        .deploy_code(
            dep,
            "SlipstreamGaugeStandIn",
            vec![],
            1_000_000,
            "deploy slipstream gauge stand-in",
        )
        .await?;
    let cl_impl = d
        .deploy_code(
            dep,
            "SlipstreamPool",
            vec![],
            10_000_000,
            "deploy slipstream pool implementation",
        )
        .await?;
    // The voter stand-in is also the legacy CL factory, which has no pools.
    let cl_factory = d
        .deploy_code(
            dep,
            "SlipstreamFactory",
            (voter, voter, cl_impl).abi_encode_params(),
            6_000_000,
            "deploy slipstream factory",
        )
        .await?;
    d.mine_checked().await?;
    d.dexes.push(DexDeployment {
        name: AERODROME.into(),
        protocol: Protocol::Solidly,
        factory: pool_factory,
        pool_deployer: None,
        fixed_fee: None,
    });
    d.dexes.push(DexDeployment {
        name: SLIPSTREAM.into(),
        protocol: Protocol::Slipstream,
        factory: cl_factory,
        pool_deployer: None,
        fixed_fee: None,
    });
    Ok(Aerodrome {
        pool_factory,
        cl_factory,
        voter,
        gauge,
    })
}

fn sorted(a: &TokenInfo, b: &TokenInfo) -> (TokenInfo, TokenInfo) {
    if a.address < b.address {
        (a.clone(), b.clone())
    } else {
        (b.clone(), a.clone())
    }
}

fn i24(t: i32) -> Result<I24> {
    I24::try_from(t).map_err(|_| DataError::Devnet(format!("{t} does not fit int24")))
}

/// Queues the creation of `pools` (Slipstream pools initialized at the reference price).
pub async fn queue_creations(
    d: &mut Deployment,
    aero: &Aerodrome,
    pools: &[AeroPool],
) -> Result<()> {
    let dep = d.accounts[super::deploy::DEPLOYER];
    for p in pools {
        let (to, input) = match p {
            AeroPool::Solidly { a, b, stable } => (
                aero.pool_factory,
                IAerodromePoolFactory::createPoolCall {
                    tokenA: a.address,
                    tokenB: b.address,
                    stable: *stable,
                }
                .abi_encode(),
            ),
            AeroPool::Slipstream { a, b, tick_spacing } => {
                let (token0, token1) = sorted(a, b);
                let probe = PoolInfo {
                    address: Address::ZERO,
                    protocol: Protocol::Slipstream,
                    dex: SLIPSTREAM.into(),
                    token0,
                    token1,
                    fee: 0,
                    tick_spacing: Some(*tick_spacing),
                    stable: None,
                };
                let raw = d.raw_price(&probe, &d.usd);
                (
                    aero.cl_factory,
                    ISlipstreamFactory::createPoolCall {
                        tokenA: a.address,
                        tokenB: b.address,
                        tickSpacing: i24(*tick_spacing)?,
                        sqrtPriceX96: U160::from(sqrt_price_x96(raw)),
                    }
                    .abi_encode(),
                )
            }
        };
        d.send(dep, Some(to), input, 9_000_000, "create aerodrome pool")
            .await?;
    }
    Ok(())
}

/// Reads the pools [`queue_creations`] created (once mined): address and current fee, and adds
/// them to `d.pools`.
pub async fn read_created(
    d: &mut Deployment,
    aero: &Aerodrome,
    pools: &[AeroPool],
) -> Result<Vec<PoolInfo>> {
    let mut out = Vec::with_capacity(pools.len());
    for p in pools {
        let info = match p {
            AeroPool::Solidly { a, b, stable } => {
                let (token0, token1) = sorted(a, b);
                let f = IAerodromePoolFactory::new(aero.pool_factory, &d.provider);
                let address = f
                    .getPool(token0.address, token1.address, *stable)
                    .call()
                    .await
                    .map_err(rpc)?;
                let fee_bps = f.getFee(address, *stable).call().await.map_err(rpc)?;
                PoolInfo {
                    address,
                    protocol: Protocol::Solidly,
                    dex: AERODROME.into(),
                    token0,
                    token1,
                    fee: u32::try_from(fee_bps)
                        .map_err(|_| DataError::Devnet(format!("aerodrome fee {fee_bps}")))?
                        * 100,
                    tick_spacing: None,
                    stable: Some(*stable),
                }
            }
            AeroPool::Slipstream { a, b, tick_spacing } => {
                let (token0, token1) = sorted(a, b);
                let address = ISlipstreamFactory::new(aero.cl_factory, &d.provider)
                    .getPool(token0.address, token1.address, i24(*tick_spacing)?)
                    .call()
                    .await
                    .map_err(rpc)?;
                let fee = if address == Address::ZERO {
                    0
                } else {
                    ISlipstreamPool::new(address, &d.provider)
                        .fee()
                        .call()
                        .await
                        .map_err(rpc)?
                        .to::<u32>()
                };
                PoolInfo {
                    address,
                    protocol: Protocol::Slipstream,
                    dex: SLIPSTREAM.into(),
                    token0,
                    token1,
                    fee,
                    tick_spacing: Some(*tick_spacing),
                    stable: None,
                }
            }
        };
        if info.address == Address::ZERO {
            return Err(DataError::Devnet(format!(
                "{} did not create the {}/{} pool",
                info.dex, info.token0.symbol, info.token1.symbol
            )));
        }
        d.pools.push(info.clone());
        out.push(info);
    }
    Ok(out)
}

/// Gives the Slipstream pool `pool` the gauge stand-in (alive), and stakes `liquidity` of the
/// range `[lower, upper)` with it: liquidity the LP has minted there becomes staked, so the
/// pool's unstaked fee applies to the rest. Queued, not mined.
pub async fn stake(
    d: &mut Deployment,
    aero: &Aerodrome,
    pool: Address,
    liquidity: u128,
    lower: i32,
    upper: i32,
) -> Result<()> {
    let dep = d.accounts[super::deploy::DEPLOYER];
    let set = ISlipstreamVoterStandIn::setGaugeCall {
        pool,
        gauge: aero.gauge,
        nft: aero.gauge,
        alive: true,
    };
    d.send(
        dep,
        Some(aero.voter),
        set.abi_encode(),
        300_000,
        "set slipstream gauge",
    )
    .await?;
    let delta = i128::try_from(liquidity)
        .map_err(|_| DataError::Devnet(format!("liquidity {liquidity} above int128")))?;
    let call = ISlipstreamGaugeStandIn::stakeCall {
        pool,
        liquidityDelta: delta,
        tickLower: i24(lower)?,
        tickUpper: i24(upper)?,
    };
    d.send(
        dep,
        Some(aero.gauge),
        call.abi_encode(),
        500_000,
        "stake slipstream liquidity",
    )
    .await?;
    Ok(())
}

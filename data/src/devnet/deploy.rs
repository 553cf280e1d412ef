//! Deployment of tokens, DEXes, pools and liquidity from the real npm bytecode.

use std::collections::HashMap;

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256, aliases::I24, aliases::U24};
use alloy::providers::{DynProvider, Provider, ext::AnvilApi};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::{SolCall, SolValue};

use super::bindings::*;
use super::{AnvilProcess, ChainUpConfig, GENESIS_TIMESTAMP};
use crate::error::{DataError, Result};
use crate::manifest::{ChainManifest, DexDeployment};
use crate::tools::artifact;
use crate::types::{PoolInfo, Protocol, TokenInfo};

/// Priority fee of every deployment transaction and the least any trader bids (wei per gas).
pub const DEFAULT_PRIORITY_FEE: u128 = 1_000_000;
/// Max fee per gas minus priority fee, the same for every transaction. anvil's fee order ranks
/// transactions by their max fee, so a constant headroom makes that the priority-fee order, as on
/// Base; and as the base fee stays far below it, every transaction pays its full priority fee.
const FEE_HEADROOM: u128 = 50_000_000_000 - DEFAULT_PRIORITY_FEE;

fn rpc(e: impl std::fmt::Display) -> DataError {
    DataError::Devnet(e.to_string())
}

/// A deployed devnet and the bookkeeping needed to keep sending to it.
pub struct Deployment {
    pub provider: DynProvider,
    pub chain_id: u64,
    pub url: String,
    pub accounts: Vec<Address>,
    nonces: HashMap<Address, u64>,
    pub timestamp: u64,
    pub block_time: u64,
    pub tokens: Vec<TokenInfo>,
    /// Initial USD price of each token (same order as `tokens`).
    pub usd: Vec<f64>,
    pub dexes: Vec<DexDeployment>,
    pub router: Address,
    pub pools: Vec<PoolInfo>,
    pub first_block: u64,
    pub last_block: u64,
    pending: Vec<(B256, &'static str)>,
}

impl Deployment {
    /// Queues a transaction from an unlocked dev account; it is mined by the next [`Self::mine`].
    pub async fn send(
        &mut self,
        from: Address,
        to: Option<Address>,
        input: Vec<u8>,
        gas: u64,
        what: &'static str,
    ) -> Result<B256> {
        self.send_with_priority_fee(from, to, input, gas, DEFAULT_PRIORITY_FEE, what)
            .await
    }

    /// [`Self::send`] bidding `priority_fee` wei per gas: the block orders by it.
    pub async fn send_with_priority_fee(
        &mut self,
        from: Address,
        to: Option<Address>,
        input: Vec<u8>,
        gas: u64,
        priority_fee: u128,
        what: &'static str,
    ) -> Result<B256> {
        let nonce = self.nonces.entry(from).or_insert(0);
        let mut tx = TransactionRequest::default()
            .with_from(from)
            .with_input(Bytes::from(input))
            .with_nonce(*nonce)
            .with_gas_limit(gas)
            .with_max_fee_per_gas(FEE_HEADROOM + priority_fee)
            .with_max_priority_fee_per_gas(priority_fee)
            .with_chain_id(self.chain_id);
        match to {
            Some(to) => tx.set_to(to),
            None => tx.set_create(),
        }
        *nonce += 1;
        let pending = self
            .provider
            .send_transaction(tx)
            .await
            .map_err(|e| rpc(format!("{what}: {e}")))?;
        let hash = *pending.tx_hash();
        self.pending.push((hash, what));
        Ok(hash)
    }

    /// Mines one block `block_time` seconds after the last. Returns its number.
    pub async fn mine(&mut self) -> Result<u64> {
        self.mine_at(self.timestamp + self.block_time).await
    }

    /// Mines one block with this timestamp (seconds), which may equal the last block's: blocks
    /// shorter than a second share their second, as on Base. Returns its number.
    pub async fn mine_at(&mut self, timestamp: u64) -> Result<u64> {
        if timestamp < self.timestamp {
            return Err(DataError::Devnet(format!(
                "block timestamp {timestamp} is before the last block's {}",
                self.timestamp
            )));
        }
        self.timestamp = timestamp;
        self.provider
            .anvil_set_next_block_timestamp(self.timestamp)
            .await
            .map_err(rpc)?;
        self.provider.evm_mine(None).await.map_err(rpc)?;
        let n = self.provider.get_block_number().await.map_err(rpc)?;
        self.last_block = n;
        Ok(n)
    }

    /// Mines until every queued transaction is in a block, and fails if any reverted.
    pub async fn mine_checked(&mut self) -> Result<u64> {
        let pending = std::mem::take(&mut self.pending);
        let mut n = self.mine().await?;
        for (hash, what) in pending {
            let mut tries = 0;
            let receipt = loop {
                match self
                    .provider
                    .get_transaction_receipt(hash)
                    .await
                    .map_err(rpc)?
                {
                    Some(r) => break r,
                    None if tries < 50 => {
                        n = self.mine().await?;
                        tries += 1;
                    }
                    None => {
                        return Err(DataError::Devnet(format!(
                            "{what}: transaction {hash} never mined"
                        )));
                    }
                }
            };
            if !receipt.status() {
                return Err(DataError::Devnet(format!(
                    "{what}: transaction {hash} reverted"
                )));
            }
        }
        Ok(n)
    }

    /// Forgets queued transactions without checking them (market trades may revert, as on chain).
    pub fn forget_pending(&mut self) {
        self.pending.clear();
    }

    pub async fn deploy_code(
        &mut self,
        from: Address,
        name: &str,
        args: Vec<u8>,
        gas: u64,
        what: &'static str,
    ) -> Result<Address> {
        let art = artifact(name)?;
        let nonce = *self.nonces.get(&from).unwrap_or(&0);
        let mut code = art.bytecode.to_vec();
        code.extend(args);
        self.send(from, None, code, gas, what).await?;
        Ok(from.create(nonce))
    }

    pub fn manifest(&self, cfg: &ChainUpConfig) -> Result<ChainManifest> {
        let m = ChainManifest {
            chain_id: self.chain_id,
            rpc_url: Some(self.url.clone()),
            ws_url: Some(self.url.replacen("http://", "ws://", 1)),
            seed: Some(cfg.seed),
            first_block: self.first_block,
            last_block: self.last_block,
            dexes: self.dexes.clone(),
            router: Some(self.router),
            tokens: self.tokens.clone(),
            pools: self.pools.clone(),
            operator: None,
        };
        m.validate().map_err(DataError::Devnet)?;
        Ok(m)
    }

    pub fn token(&self, a: Address) -> (usize, &TokenInfo) {
        self.tokens
            .iter()
            .enumerate()
            .find(|(_, t)| t.address == a)
            .expect("pool tokens are deployment tokens")
    }

    /// Token1 per token0 in raw units at the given USD prices.
    pub fn raw_price(&self, pool: &PoolInfo, usd: &[f64]) -> f64 {
        let (i0, t0) = self.token(pool.token0.address);
        let (i1, t1) = self.token(pool.token1.address);
        usd[i0] / usd[i1] * 10f64.powi(t1.decimals as i32 - t0.decimals as i32)
    }
}

/// Converts a positive float to an integer amount, saturating at zero.
pub fn u256_of(x: f64) -> U256 {
    if !x.is_finite() || x < 1.0 {
        U256::ZERO
    } else {
        U256::try_from(x.floor()).unwrap_or(U256::MAX)
    }
}

pub fn sqrt_price_x96(raw_price: f64) -> U256 {
    u256_of(raw_price.sqrt() * 2f64.powi(96))
}

fn tick_of(raw_price: f64) -> i32 {
    (raw_price.ln() / 1.0001f64.ln()).floor() as i32
}

/// The dev accounts' roles.
pub const DEPLOYER: usize = 0;
pub const LP: usize = 1;
pub const NOISE: std::ops::Range<usize> = 2..10;
pub const INFORMED: std::ops::Range<usize> = 10..14;

/// Deploys everything and adds liquidity. Mines about a dozen blocks.
pub async fn deploy(node: &AnvilProcess, cfg: &ChainUpConfig) -> Result<Deployment> {
    let provider = node.provider();
    let accounts = provider.get_accounts().await.map_err(rpc)?;
    if accounts.len() < INFORMED.end {
        return Err(DataError::Devnet(format!(
            "anvil has {} accounts, need {}",
            accounts.len(),
            INFORMED.end
        )));
    }
    let mut d = Deployment {
        provider,
        chain_id: cfg.chain_id,
        url: node.url.clone(),
        accounts: accounts.clone(),
        nonces: HashMap::new(),
        timestamp: GENESIS_TIMESTAMP,
        block_time: cfg.block_time,
        tokens: Vec::new(),
        usd: Vec::new(),
        dexes: Vec::new(),
        router: Address::ZERO,
        pools: Vec::new(),
        first_block: 0,
        last_block: 0,
        pending: Vec::new(),
    };
    let dep = accounts[DEPLOYER];

    // Block: tokens, factories, the PancakeSwap pool deployer and the router.
    let token_specs = [
        ("Wrapped Ether", "WETH", 18u8, 3000.0),
        ("USD Coin", "USDC", 6, 1.0),
        ("Wrapped BTC", "WBTC", 8, 60_000.0),
        // A second dollar with other decimals than USDC's: the stable pair.
        ("Dai Stablecoin", "DAI", 18, 1.0),
    ];
    let mut tokens = Vec::new();
    for (name, sym, dec, usd) in token_specs {
        let a = d
            .deploy_code(
                dep,
                "TestToken",
                (name.to_string(), sym.to_string(), U256::from(dec)).abi_encode_params(),
                2_000_000,
                "deploy token",
            )
            .await?;
        tokens.push((
            TokenInfo {
                address: a,
                symbol: sym.into(),
                decimals: dec,
            },
            usd,
        ));
    }
    let uni_v2 = d
        .deploy_code(
            dep,
            "UniswapV2Factory",
            (dep,).abi_encode_params(),
            6_000_000,
            "deploy uniswap-v2 factory",
        )
        .await?;
    let base_v2 = d
        .deploy_code(
            dep,
            "UniswapV2Factory",
            (dep,).abi_encode_params(),
            6_000_000,
            "deploy baseswap factory",
        )
        .await?;
    let uni_v3 = d
        .deploy_code(
            dep,
            "UniswapV3Factory",
            vec![],
            8_000_000,
            "deploy uniswap-v3 factory",
        )
        .await?;
    let pool_code = artifact("PancakeV3Pool")?.bytecode;
    let holder = d
        .deploy_code(
            dep,
            "CodeHolder",
            (pool_code,).abi_encode_params(),
            8_000_000,
            "deploy pancake pool code holder",
        )
        .await?;
    let pdeployer = d
        .deploy_code(
            dep,
            "PancakeV3PoolDeployer",
            (holder,).abi_encode_params(),
            2_000_000,
            "deploy pancake pool deployer",
        )
        .await?;
    let pancake = d
        .deploy_code(
            dep,
            "PancakeV3Factory",
            (pdeployer,).abi_encode_params(),
            4_000_000,
            "deploy pancake v3 factory",
        )
        .await?;
    let router = d
        .deploy_code(dep, "DexlabRouter", vec![], 3_000_000, "deploy router")
        .await?;
    d.mine_checked().await?;
    d.send(
        dep,
        Some(pdeployer),
        IPancakeV3PoolDeployer::setFactoryAddressCall { factory: pancake }.abi_encode(),
        100_000,
        "pancake setFactoryAddress",
    )
    .await?;
    d.mine_checked().await?;

    // Tokens sorted by address inside each pool, as the contracts do.
    tokens.sort_by_key(|(t, _)| t.address);
    d.usd = tokens.iter().map(|(_, u)| *u).collect();
    d.tokens = tokens.into_iter().map(|(t, _)| t).collect();
    d.router = router;
    d.dexes = vec![
        DexDeployment {
            name: "uniswap-v2".into(),
            protocol: Protocol::UniswapV2,
            factory: uni_v2,
            pool_deployer: None,
            fixed_fee: Some(3000),
        },
        DexDeployment {
            name: "baseswap".into(),
            protocol: Protocol::UniswapV2,
            factory: base_v2,
            pool_deployer: None,
            fixed_fee: Some(3000),
        },
        DexDeployment {
            name: "uniswap-v3".into(),
            protocol: Protocol::UniswapV3,
            factory: uni_v3,
            pool_deployer: None,
            fixed_fee: None,
        },
        DexDeployment {
            name: "pancakeswap-v3".into(),
            protocol: Protocol::PancakeV3,
            factory: pancake,
            pool_deployer: Some(pdeployer),
            fixed_fee: None,
        },
    ];

    // Aerodrome and Slipstream, from their published source (a block of their own).
    let aero = super::aerodrome::deploy_factories(&mut d).await?;
    // Uniswap V3's 0.01 % tier (tick spacing 1), as governance enabled it on every chain.
    d.send(
        dep,
        Some(uni_v3),
        IV3Factory::enableFeeAmountCall {
            fee: U24::from(100),
            tickSpacing: I24::ONE,
        }
        .abi_encode(),
        100_000,
        "uniswap-v3 enableFeeAmount(100, 1)",
    )
    .await?;
    d.mine_checked().await?;

    // Pools: the same two pairs on every DEX, plus a second Uniswap V3 fee tier and a second
    // Slipstream tick spacing for WETH/USDC, and the stable pair USDC/DAI on every family that
    // has a design for it: Aerodrome's stable curve, Slipstream's tick spacing 1 and the 0.01 %
    // tiers of Uniswap V3 and PancakeSwap V3.
    let sym = |s: &str| {
        d.tokens
            .iter()
            .find(|t| t.symbol == s)
            .cloned()
            .expect("deployed token")
    };
    let (weth, usdc, wbtc, dai) = (sym("WETH"), sym("USDC"), sym("WBTC"), sym("DAI"));
    let pairs = [(weth.clone(), usdc.clone()), (wbtc.clone(), weth.clone())];
    let mut specs: Vec<(String, Protocol, TokenInfo, TokenInfo, u32, Option<i32>)> = Vec::new();
    for (a, b) in &pairs {
        let (t0, t1) = if a.address < b.address {
            (a.clone(), b.clone())
        } else {
            (b.clone(), a.clone())
        };
        specs.push((
            "uniswap-v2".into(),
            Protocol::UniswapV2,
            t0.clone(),
            t1.clone(),
            3000,
            None,
        ));
        specs.push((
            "baseswap".into(),
            Protocol::UniswapV2,
            t0.clone(),
            t1.clone(),
            3000,
            None,
        ));
        specs.push((
            "uniswap-v3".into(),
            Protocol::UniswapV3,
            t0.clone(),
            t1.clone(),
            500,
            Some(10),
        ));
        specs.push((
            "pancakeswap-v3".into(),
            Protocol::PancakeV3,
            t0.clone(),
            t1.clone(),
            500,
            Some(10),
        ));
        if a.symbol == "WETH" && b.symbol == "USDC" {
            specs.push((
                "uniswap-v3".into(),
                Protocol::UniswapV3,
                t0,
                t1,
                3000,
                Some(60),
            ));
        }
    }
    {
        let (t0, t1) = if usdc.address < dai.address {
            (usdc.clone(), dai.clone())
        } else {
            (dai.clone(), usdc.clone())
        };
        for (dex, proto) in [
            ("uniswap-v3", Protocol::UniswapV3),
            ("pancakeswap-v3", Protocol::PancakeV3),
        ] {
            specs.push((dex.into(), proto, t0.clone(), t1.clone(), 100, Some(1)));
        }
    }
    use super::aerodrome::AeroPool;
    let aero_specs = [
        AeroPool::Solidly {
            a: weth.clone(),
            b: usdc.clone(),
            stable: false,
        },
        AeroPool::Solidly {
            a: wbtc.clone(),
            b: weth.clone(),
            stable: false,
        },
        AeroPool::Solidly {
            a: usdc.clone(),
            b: dai.clone(),
            stable: true,
        },
        AeroPool::Slipstream {
            a: weth.clone(),
            b: usdc.clone(),
            tick_spacing: 100,
        },
        AeroPool::Slipstream {
            a: weth.clone(),
            b: usdc.clone(),
            tick_spacing: 200,
        },
        AeroPool::Slipstream {
            a: wbtc.clone(),
            b: weth.clone(),
            tick_spacing: 100,
        },
        AeroPool::Slipstream {
            a: usdc.clone(),
            b: dai.clone(),
            tick_spacing: 1,
        },
    ];
    for (dex, proto, t0, t1, fee, _) in &specs {
        let factory = d
            .dexes
            .iter()
            .find(|x| &x.name == dex)
            .expect("dex")
            .factory;
        let input = match proto {
            Protocol::UniswapV2 => IUniswapV2Factory::createPairCall {
                tokenA: t0.address,
                tokenB: t1.address,
            }
            .abi_encode(),
            _ => IV3Factory::createPoolCall {
                tokenA: t0.address,
                tokenB: t1.address,
                fee: U24::from(*fee),
            }
            .abi_encode(),
        };
        d.send(dep, Some(factory), input, 7_000_000, "create pool")
            .await?;
    }
    super::aerodrome::queue_creations(&mut d, &aero, &aero_specs).await?;
    d.first_block = d.mine_checked().await?;
    for (dex, proto, t0, t1, fee, ts) in specs {
        let factory = d.dexes.iter().find(|x| x.name == dex).expect("dex").factory;
        let address = match proto {
            Protocol::UniswapV2 => IUniswapV2Factory::new(factory, &d.provider)
                .getPair(t0.address, t1.address)
                .call()
                .await
                .map_err(rpc)?,
            _ => IV3Factory::new(factory, &d.provider)
                .getPool(t0.address, t1.address, U24::from(fee))
                .call()
                .await
                .map_err(rpc)?,
        };
        if address == Address::ZERO {
            return Err(DataError::Devnet(format!(
                "{dex} did not create the {}/{} pool",
                t0.symbol, t1.symbol
            )));
        }
        d.pools.push(PoolInfo {
            address,
            protocol: proto,
            dex,
            token0: t0,
            token1: t1,
            fee,
            tick_spacing: ts,
            stable: None,
        });
    }

    super::aerodrome::read_created(&mut d, &aero, &aero_specs).await?;

    // Balances and approvals for the LP and the traders.
    for &acct in &accounts[LP..INFORMED.end] {
        for t in d.tokens.clone() {
            let amount = U256::from(10u64).pow(U256::from(t.decimals as u64 + 12));
            d.send(
                dep,
                Some(t.address),
                ITestToken::mintCall { to: acct, amount }.abi_encode(),
                100_000,
                "mint",
            )
            .await?;
            d.send(
                acct,
                Some(t.address),
                ITestToken::approveCall {
                    spender: router,
                    amount: U256::MAX,
                }
                .abi_encode(),
                100_000,
                "approve",
            )
            .await?;
        }
    }
    d.mine_checked().await?;

    // Liquidity at the reference price: V2 reserves, and V3 positions over several ranges.
    let mut staked = None;
    for pool in d.pools.clone() {
        let tvl_usd = match (
            pool.dex.as_str(),
            pool.token1.symbol == "USDC" || pool.token0.symbol == "USDC",
        ) {
            ("uniswap-v2", true) => 8e6,
            ("uniswap-v2", false) => 3e6,
            ("baseswap", true) => 2e6,
            ("baseswap", false) => 8e5,
            (_, true) => 6e6,
            (_, false) => 2e6,
        };
        let positions = seed_liquidity(&mut d, &pool, tvl_usd).await?;
        // Half of the widest position of the first Slipstream pool is staked in its gauge, so
        // that the pool's unstaked fee applies to the rest.
        if pool.protocol == Protocol::Slipstream && staked.is_none() {
            staked = positions
                .into_iter()
                .max_by_key(|(lo, hi, _)| hi - lo)
                .map(|(lo, hi, l)| (pool.address, lo, hi, l / 2));
        }
    }
    d.mine_checked().await?;
    if let Some((pool, lo, hi, l)) = staked {
        super::aerodrome::stake(&mut d, &aero, pool, l, lo, hi).await?;
    }
    d.mine_checked().await?;
    Ok(d)
}

/// Adds liquidity worth about `tvl_usd` to `pool` at the devnet's reference price, from the LP
/// account: V2 and Solidly reserves (a stable pool's first deposit in equal 18-decimal amounts, as
/// Aerodrome requires), and V3-style positions over several ranges, most of it near the price.
/// V3 pools are initialized first unless they already are (Slipstream's `createPool` does it).
/// Returns the V3-style positions minted, as (lower tick, upper tick, liquidity).
pub async fn seed_liquidity(
    d: &mut Deployment,
    pool: &PoolInfo,
    tvl_usd: f64,
) -> Result<Vec<(i32, i32, u128)>> {
    let mut positions = Vec::new();
    let lp = d.accounts[LP];
    let router = d.router;
    let raw = d.raw_price(pool, &d.usd);
    let (i1, _) = d.token(pool.token1.address);
    let usd1 = d.usd[i1];
    let one1 = 10f64.powi(pool.token1.decimals as i32);
    match pool.protocol {
        Protocol::UniswapV2 | Protocol::Solidly => {
            let (amount0, amount1) = if pool.stable == Some(true) {
                // Whole dollars of each token, so that amount * 1e18 / 10^decimals is equal.
                let dollars = U256::from((tvl_usd / 2.0) as u64);
                let scale = |dec: u8| U256::from(10u64).pow(U256::from(dec));
                (
                    dollars * scale(pool.token0.decimals),
                    dollars * scale(pool.token1.decimals),
                )
            } else {
                let amount1 = tvl_usd / 2.0 / usd1 * one1;
                (u256_of(amount1 / raw), u256_of(amount1))
            };
            let call = IDexlabRouter::v2AddLiquidityCall {
                pair: pool.address,
                amount0,
                amount1,
                to: lp,
            };
            d.send(
                lp,
                Some(router),
                call.abi_encode(),
                400_000,
                "v2 add liquidity",
            )
            .await?;
        }
        Protocol::UniswapV3 | Protocol::PancakeV3 | Protocol::Slipstream => {
            let slot0 = IV3Pool::new(pool.address, &d.provider)
                .slot0()
                .call()
                .await
                .map_err(rpc)?;
            if slot0.sqrtPriceX96.is_zero() {
                let call = IV3Pool::initializeCall {
                    sqrtPriceX96: alloy::primitives::aliases::U160::from(sqrt_price_x96(raw)),
                };
                d.send(
                    lp,
                    Some(pool.address),
                    call.abi_encode(),
                    300_000,
                    "v3 initialize",
                )
                .await?;
            }
            let spacing = pool.tick_spacing.expect("v3 pools have a tick spacing");
            let center = tick_of(raw);
            let s = raw.sqrt();
            // (half width, share of the pool's value): most liquidity near the price, a long tail.
            for (half_width, share) in [
                (0.004, 0.20),
                (0.015, 0.25),
                (0.05, 0.25),
                (0.15, 0.20),
                (0.6, 0.10),
            ] {
                let w = ((1.0f64 + half_width).ln() / 1.0001f64.ln()).ceil() as i32;
                let lo = ((center - w).div_euclid(spacing)) * spacing;
                let hi = ((center + w).div_euclid(spacing) + 1) * spacing;
                let sa = 1.0001f64.powf(lo as f64 / 2.0);
                let sb = 1.0001f64.powf(hi as f64 / 2.0);
                let budget1 = tvl_usd * share / usd1 * one1;
                let liquidity = budget1 / (2.0 * s - sa - s * s / sb);
                let call = IDexlabRouter::v3MintCall {
                    pool: pool.address,
                    tickLower: I24::try_from(lo).expect("tick fits int24"),
                    tickUpper: I24::try_from(hi).expect("tick fits int24"),
                    liquidity: liquidity as u128,
                };
                d.send(lp, Some(router), call.abi_encode(), 1_000_000, "v3 mint")
                    .await?;
                positions.push((lo, hi, liquidity as u128));
            }
        }
    }
    Ok(positions)
}

//! Test fixtures (feature `test-utils`): a two-venue WETH/USDC tape built by hand, the execution
//! config tests use, and the real sample imported once.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::backtest::{Competition, ExecConfig, QueueAssumption, Timing};
use crate::tape::{PoolEvent, Tape, Update};
use alloy_primitives::{Address, U256};
use dexlab_strategy::TradingEnv;
use dexlab_strategy::gas::GasConfig;
use dexlab_strategy::market::{BlockInfo, Family, PoolMeta, PoolState};

pub fn weth() -> Address {
    Address::with_last_byte(0xEE)
}

pub fn usdc() -> Address {
    Address::with_last_byte(0x05)
}

fn pool(i: u8, dex: &str, fee: u32) -> PoolMeta {
    PoolMeta {
        address: Address::with_last_byte(i),
        family: Family::V2,
        dex: dex.into(),
        token0: usdc(),
        token1: weth(),
        symbol0: "USDC".into(),
        symbol1: "WETH".into(),
        decimals0: 6,
        decimals1: 18,
        fee,
        tick_spacing: 1,
        stable: false,
    }
}

pub fn e6(x: u128) -> U256 {
    U256::from(x * 1_000_000)
}

pub fn e18(x: u128) -> U256 {
    U256::from(x) * U256::from(10u128.pow(18))
}

/// Two constant-product pools (0.30 % and 0.25 % fees). `updates[b]` are the reserves set in
/// block `b` (pool, usdc, weth).
pub fn two_pool_tape(updates: &[Vec<(u32, U256, U256)>]) -> Tape {
    let pools = vec![pool(1, "uniswap-v2", 3000), pool(2, "baseswap", 2500)];
    let mut blocks = Vec::new();
    let mut starts = Vec::new();
    let mut events = Vec::new();
    for (b, ups) in updates.iter().enumerate() {
        starts.push(events.len() as u32);
        blocks.push(BlockInfo {
            number: 100 + b as u64,
            timestamp: 1_700_000_000 + 2 * b as u64,
            base_fee: Some(50_000_000),
            ..BlockInfo::default()
        });
        for &(p, r0, r1) in ups {
            events.push(PoolEvent {
                pool: p,
                priority_fee: 0,
                update: Update::Reserves {
                    reserve0: r0,
                    reserve1: r1,
                    swap: None,
                    fee: dexlab_market::PaidFee::UNKNOWN,
                },
            });
        }
    }
    starts.push(events.len() as u32);
    Tape {
        initial: vec![PoolState::Unknown; pools.len()],
        pools,
        blocks,
        block_starts: starts,
        events,
        chain_id: 8453,
        dataset_hash: "test".into(),
        has_priority_fees: false,
    }
}

/// Execution with a rival present with probability `p_rival`.
pub fn exec(capital: U256, p_rival: f64) -> ExecConfig {
    ExecConfig {
        env: TradingEnv {
            quote: usdc(),
            native: weth(),
            gas: GasConfig::default(),
            model: None,
        },
        capital,
        competition: Competition {
            p_rival,
            ..Competition::default()
        },
        periods: 10,
        block_time_secs: 2.0,
        seed: 7,
        queue_without_fees: QueueAssumption::Last,
        max_warmup_blocks: 2_000,
        timing: Timing::default(),
        risk: None,
    }
}

pub fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/univ3-usdc-weth-2024-01-05")
}

/// The real sample, imported once per test binary into a temporary dataset.
pub fn sample_tape() -> &'static Tape {
    &sample().tape
}

/// The folder of the imported sample dataset.
pub fn sample_dataset() -> &'static Path {
    &sample().root
}

struct Sample {
    _dir: tempfile::TempDir,
    root: PathBuf,
    tape: Tape,
}

fn sample() -> &'static Sample {
    static SAMPLE: OnceLock<Sample> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let root = dir.path().join("ds");
        let tape = Tape::import_jsonl(
            &sample_dir().join("logs.jsonl"),
            &sample_dir().join("block_timestamps.csv"),
            &repo.join("examples/univ3-usdc-weth-mainnet.manifest.json"),
            1,
            &root,
        )
        .expect("import the sample");
        Sample {
            _dir: dir,
            root,
            tape,
        }
    })
}

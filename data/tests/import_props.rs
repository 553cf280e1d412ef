//! Property test of `data import`: arbitrary JSON lines and arbitrary log fields for the pools of a
//! small manifest, with or without a timestamps CSV, end in an error or in a dataset that opens
//! (the self-check every command runs) and that `data verify`'s replay accepts; never in a panic.

use std::fmt::Write as _;
use std::path::Path;

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolEvent;
use dexlab_data::decode::{pancakev3, solidly, univ2, univ3};
use dexlab_data::import::{ImportOptions, import};
use dexlab_data::types::{PoolInfo, Protocol, TokenInfo};
use dexlab_data::{dataset, replay};
use proptest::prelude::*;

fn token(byte: u8, symbol: &str, decimals: u8) -> TokenInfo {
    TokenInfo {
        address: Address::repeat_byte(byte),
        symbol: symbol.into(),
        decimals,
    }
}

fn pools() -> Vec<PoolInfo> {
    let pool = |byte: u8, protocol, fee, tick_spacing, stable| PoolInfo {
        address: Address::repeat_byte(byte),
        protocol,
        dex: protocol.to_string(),
        token0: token(1, "USDC", 6),
        token1: token(2, "WETH", 18),
        fee,
        tick_spacing,
        stable,
    };
    vec![
        pool(0xa2, Protocol::UniswapV2, 3000, None, None),
        pool(0xa3, Protocol::UniswapV3, 500, Some(10), None),
        pool(0xa4, Protocol::PancakeV3, 2500, Some(50), None),
        pool(0xa5, Protocol::Solidly, 3000, None, Some(false)),
    ]
}

const TOPIC0: [B256; 13] = [
    univ2::Swap::SIGNATURE_HASH,
    univ2::Sync::SIGNATURE_HASH,
    univ2::Mint::SIGNATURE_HASH,
    univ2::Burn::SIGNATURE_HASH,
    univ3::Swap::SIGNATURE_HASH,
    univ3::Mint::SIGNATURE_HASH,
    univ3::Burn::SIGNATURE_HASH,
    univ3::Collect::SIGNATURE_HASH,
    univ3::Initialize::SIGNATURE_HASH,
    pancakev3::Swap::SIGNATURE_HASH,
    solidly::Swap::SIGNATURE_HASH,
    solidly::Sync::SIGNATURE_HASH,
    solidly::Fees::SIGNATURE_HASH,
];

/// A 32-byte word as logs carry them: small amounts of either sign, prices near 2^96, values
/// at and beyond the edges of narrower types, addresses, anything.
fn word() -> impl Strategy<Value = B256> {
    let u = |v: U256| B256::from(v.to_be_bytes::<32>());
    prop_oneof![
        (0u64..1_000_000).prop_map(move |v| u(U256::from(v))),
        (1u64..1_000_000).prop_map(|v| B256::from((U256::MAX - U256::from(v) + U256::from(1)).to_be_bytes::<32>())),
        (0u32..64).prop_map(move |s| u((U256::from(1) << 96) + U256::from(s) * U256::from(1u64 << 40))),
        prop::sample::select(vec![0usize, 24, 112, 128, 160, 200, 255])
            .prop_map(move |b| u(U256::from(1) << b)),
        (-900_000i64..900_000).prop_map(|t| B256::from(alloy::primitives::I256::try_from(t).unwrap().to_be_bytes::<32>())),
        any::<[u8; 20]>().prop_map(|a| Address::from(a).into_word()),
        any::<[u8; 32]>().prop_map(B256::from),
    ]
}

fn hex_num() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => (0u64..300).prop_map(|v| format!("{v:#x}")),
        1 => Just("0xffffffff".to_string()),
        1 => Just("0x100000000".to_string()),
        1 => any::<u64>().prop_map(|v| format!("{v:#x}")),
        1 => Just("0x".to_string()),
        1 => Just("12".to_string()),
    ]
}

/// One JSON line: a log of one of the pools (or another address) with random fields, or junk.
fn line() -> impl Strategy<Value = String> {
    let addresses: Vec<Address> = pools()
        .iter()
        .map(|p| p.address)
        .chain([Address::repeat_byte(0xee)])
        .collect();
    let log = (
        prop::sample::select(addresses),
        prop_oneof![
            8 => prop::sample::select(TOPIC0.to_vec()),
            1 => any::<[u8; 32]>().prop_map(B256::from),
        ],
        prop::collection::vec(word(), 0..4),
        prop::collection::vec(word(), 0..8),
        prop::collection::vec(any::<u8>(), 0..3),
        hex_num(),
        hex_num(),
        hex_num(),
        prop::bool::weighted(0.05),
    )
        .prop_map(|(address, topic0, topics, words, tail, block, txi, li, removed)| {
            let topics: Vec<String> = std::iter::once(topic0)
                .chain(topics)
                .map(|t| format!("\"{t}\""))
                .collect();
            let mut data = String::from("0x");
            for w in &words {
                data.push_str(&hex::encode(w));
            }
            data.push_str(&hex::encode(tail));
            format!(
                r#"{{"address":"{address}","topics":[{}],"data":"{data}","blockNumber":"{block}","transactionHash":"{}","transactionIndex":"{txi}","logIndex":"{li}","removed":{removed}}}"#,
                topics.join(","),
                B256::repeat_byte(7),
            )
        });
    prop_oneof![
        12 => log,
        1 => "\\PC{0,40}",
        1 => Just(r#"{"address": 12}"#.to_string()),
        1 => Just(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"boom"}}"#.to_string()),
        1 => Just(String::new()),
    ]
}

/// How the lines are laid out: a JSON array, an RPC answer, or JSON lines.
fn layout(lines: &[String], how: u8) -> String {
    // Only the lines that are JSON can go in an array.
    let body = || {
        lines
            .iter()
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",")
    };
    match how {
        0 => format!("[{}]", body()),
        1 => format!(r#"{{"jsonrpc":"2.0","id":1,"result":[{}]}}"#, body()),
        _ => lines.join("\n"),
    }
}

fn blocks_of(text: &str) -> Vec<u64> {
    let mut out: Vec<u64> = text
        .lines()
        .flat_map(|l| l.split("\"blockNumber\":\"").skip(1))
        .filter_map(|s| s.split('"').next())
        .filter_map(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn check(text: &str, csv: Option<String>, dir: &Path) -> Result<(), TestCaseError> {
    let input = dir.join("logs.jsonl");
    std::fs::write(&input, text).unwrap();
    let timestamps = csv.map(|c| {
        let p = dir.join("ts.csv");
        std::fs::write(&p, c).unwrap();
        p
    });
    let out = dir.join("out");
    let r = import(&ImportOptions {
        input,
        out: out.clone(),
        timestamps,
        pools: pools(),
        chain_id: 1,
        chunk_blocks: 64,
    });
    let Ok(report) = r else {
        return Ok(());
    };
    // Whatever was written opens, reads back and replays.
    let meta = dataset::read_meta(&out)
        .map_err(|e| TestCaseError::fail(format!("import said {report:?} but: {e}")))?;
    let logs = dataset::read_all_logs(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(logs.len(), report.logs);
    replay::verify(&logs, &meta.pools, &[]).map_err(|e| TestCaseError::fail(e.to_string()))?;
    dexlab_data::inspect::inspect(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn import_never_panics_and_what_it_writes_opens(
        lines in prop::collection::vec(line(), 0..24),
        how in 0u8..3,
        csv_kind in 0u8..4,
        junk in "\\PC{0,30}",
    ) {
        let text = layout(&lines, how);
        let blocks = blocks_of(&text);
        let csv = match csv_kind {
            0 => None,
            // Every block, in order, 12 s apart.
            1 => {
                let mut c = String::from("block_number,timestamp\n");
                for b in &blocks {
                    writeln!(c, "{b},{}", 1_700_000_000u64.saturating_add(b.saturating_mul(12))).unwrap();
                }
                Some(c)
            }
            // No header, and one block repeated.
            2 => {
                let mut c = String::new();
                for b in blocks.iter().chain(blocks.first()) {
                    writeln!(c, "{b},{}", 1_700_000_000u64.saturating_add(b.saturating_mul(12))).unwrap();
                }
                Some(c)
            }
            _ => Some(format!("block_number,timestamp\n{junk}\n")),
        };
        let dir = tempfile::tempdir().unwrap();
        check(&text, csv, dir.path())?;
    }
}

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
        pool(0xa6, Protocol::Solidly, 500, None, Some(true)),
        pool(0xa7, Protocol::Slipstream, 500, Some(100), None),
    ]
}

/// What a field of an event holds, for generating sane values.
#[derive(Debug, Clone, Copy)]
enum F {
    Addr,
    Amount,
    Signed,
    Sqrt,
    Liq,
    Tick,
}

/// Every event the decoder handles: topic0, the fields in its topics, the fields in its data.
fn events() -> Vec<(B256, Vec<F>, Vec<F>)> {
    use F::*;
    vec![
        (
            univ2::Swap::SIGNATURE_HASH,
            vec![Addr, Addr],
            vec![Amount; 4],
        ),
        (univ2::Sync::SIGNATURE_HASH, vec![], vec![Amount; 2]),
        (univ2::Mint::SIGNATURE_HASH, vec![Addr], vec![Amount; 2]),
        (
            univ2::Burn::SIGNATURE_HASH,
            vec![Addr, Addr],
            vec![Amount; 2],
        ),
        (
            univ3::Swap::SIGNATURE_HASH,
            vec![Addr, Addr],
            vec![Signed, Signed, Sqrt, Liq, Tick],
        ),
        (
            pancakev3::Swap::SIGNATURE_HASH,
            vec![Addr, Addr],
            vec![Signed, Signed, Sqrt, Liq, Tick, Liq, Liq],
        ),
        (
            univ3::Mint::SIGNATURE_HASH,
            vec![Addr, Tick, Tick],
            vec![Addr, Liq, Amount, Amount],
        ),
        (
            univ3::Burn::SIGNATURE_HASH,
            vec![Addr, Tick, Tick],
            vec![Liq, Amount, Amount],
        ),
        (
            univ3::Collect::SIGNATURE_HASH,
            vec![Addr, Tick, Tick],
            vec![Addr, Liq, Liq],
        ),
        (univ3::Initialize::SIGNATURE_HASH, vec![], vec![Sqrt, Tick]),
        (
            solidly::Swap::SIGNATURE_HASH,
            vec![Addr, Addr],
            vec![Amount; 4],
        ),
        (solidly::Sync::SIGNATURE_HASH, vec![], vec![Amount; 2]),
        (
            solidly::Burn::SIGNATURE_HASH,
            vec![Addr, Addr],
            vec![Amount; 2],
        ),
        (solidly::Fees::SIGNATURE_HASH, vec![Addr], vec![Amount; 2]),
    ]
}

fn u(v: U256) -> B256 {
    B256::from(v.to_be_bytes::<32>())
}

fn i(v: i128) -> B256 {
    B256::from(
        alloy::primitives::I256::try_from(v)
            .unwrap()
            .to_be_bytes::<32>(),
    )
}

/// A 32-byte word at and beyond the edges of the narrower types, or anything.
fn edge_word() -> impl Strategy<Value = B256> {
    prop_oneof![
        prop::sample::select(vec![0usize, 24, 112, 128, 160, 200, 255])
            .prop_map(|b| u(U256::from(1) << b)),
        prop::sample::select(vec![0usize, 24, 112, 128, 160])
            .prop_map(|b| u((U256::from(1) << b) - U256::from(1))),
        (-900_000i128..900_000).prop_map(i),
        any::<[u8; 32]>().prop_map(B256::from),
    ]
}

/// A sane value for a field of kind `f`; one in twenty is an edge word instead.
fn value(f: F) -> BoxedStrategy<B256> {
    let sane: BoxedStrategy<B256> = match f {
        F::Addr => any::<[u8; 20]>()
            .prop_map(|a| Address::from(a).into_word())
            .boxed(),
        F::Amount | F::Liq => (0u128..10u128.pow(24))
            .prop_map(|v| u(U256::from(v)))
            .boxed(),
        F::Signed => (-(10i128.pow(24))..10i128.pow(24)).prop_map(i).boxed(),
        F::Sqrt => (-(1i128 << 90)..(1i128 << 90))
            .prop_map(|d| i((1i128 << 96) + d))
            .boxed(),
        F::Tick => (-20i128..20).prop_map(|t| i(t * 50)).boxed(),
    };
    prop_oneof![19 => sane, 1 => edge_word()].boxed()
}

fn hex_num(small: std::ops::Range<u64>) -> impl Strategy<Value = String> {
    prop_oneof![
        200 => small.prop_map(|v| format!("{v:#x}")),
        1 => Just("0xffffffff".to_string()),
        1 => Just("0x100000000".to_string()),
        1 => any::<u64>().prop_map(|v| format!("{v:#x}")),
        1 => Just("0x".to_string()),
        1 => Just("12".to_string()),
    ]
}

/// The events a pool of `protocol` emits (all of them for an address without metadata).
fn events_of(protocol: Option<Protocol>) -> Vec<(B256, Vec<F>, Vec<F>)> {
    let all = events();
    let pick = |idx: &[usize]| idx.iter().map(|&i| all[i].clone()).collect();
    match protocol {
        Some(Protocol::UniswapV2) => pick(&[0, 1, 2, 3]),
        Some(Protocol::UniswapV3) => pick(&[4, 6, 7, 8, 9]),
        Some(Protocol::PancakeV3) => pick(&[5, 6, 7, 8, 9]),
        Some(Protocol::Solidly) => pick(&[10, 11, 2, 12, 13]),
        // Slipstream's pools emit Uniswap V3's events.
        Some(Protocol::Slipstream) => pick(&[4, 6, 7, 8, 9]),
        None => all,
    }
}

/// A log of one of the pools (or of another address), mostly shaped as an event of its pool's
/// protocol with sane or edge values, sometimes any event, a topic too few or a word too many.
fn log_line() -> impl Strategy<Value = String> {
    let targets: Vec<(Address, Option<Protocol>)> = pools()
        .iter()
        .map(|p| (p.address, Some(p.protocol)))
        .chain([(Address::repeat_byte(0xee), None)])
        .collect();
    let event = prop::sample::select(targets).prop_flat_map(|(address, protocol)| {
        (
            Just(address),
            prop_oneof![
                10 => prop::sample::select(events_of(protocol)),
                1 => prop::sample::select(events()),
            ],
        )
    });
    let shaped = event.prop_flat_map(|(address, (t0, topics, data))| {
        let topics: Vec<BoxedStrategy<B256>> = topics.into_iter().map(value).collect();
        let data: Vec<BoxedStrategy<B256>> = data.into_iter().map(value).collect();
        (
            Just(address),
            prop_oneof![20 => Just(t0), 1 => any::<[u8; 32]>().prop_map(B256::from)],
            topics,
            data,
            prop_oneof![40 => Just(0i8), 1 => Just(-1i8), 1 => Just(1i8)],
            prop_oneof![20 => Just(Vec::new()), 1 => prop::collection::vec(any::<u8>(), 1..3)],
        )
    });
    (
        shaped,
        hex_num(0..200),
        hex_num(0..3),
        hex_num(0..40),
        0u8..4,
        prop::bool::weighted(0.03),
    )
        .prop_map(
            |((address, topic0, mut topics, mut words, reshape, tail), block, txi, li, tx, removed)| {
                match reshape {
                    -1 => {
                        topics.pop();
                    }
                    1 => words.push(B256::repeat_byte(1)),
                    _ => {}
                }
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
                    B256::repeat_byte(tx),
                )
            },
        )
}

/// One JSON line: a log, or junk.
fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        30 => log_line(),
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
        .filter(|&b| b <= u64::from(u32::MAX))
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
        if std::env::var_os("DEXLAB_PROPS_STATS").is_some() {
            eprintln!("STAT err {}", r.unwrap_err());
        }
        return Ok(());
    };
    if std::env::var_os("DEXLAB_PROPS_STATS").is_some() {
        eprintln!(
            "STAT ok logs={} swaps={} liq={} malformed={} unknown={}",
            report.logs,
            report.swaps,
            report.liquidity_events,
            report.malformed.len(),
            report.unknown
        );
    }
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
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn import_never_panics_and_what_it_writes_opens(
        lines in prop::collection::vec(line(), 0..40),
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

/// A raw log at `pool`: a known event's topic0 (or any word), then arbitrary topics and data,
/// sometimes exactly the event's shape with arbitrary words in it.
fn raw_log() -> impl Strategy<Value = dexlab_data::types::RawLog> {
    let topic0s: Vec<B256> = events().into_iter().map(|(t, _, _)| t).collect();
    let addrs: Vec<Address> = pools().iter().map(|p| p.address).collect();
    (
        prop::sample::select(addrs),
        prop_oneof![3 => prop::sample::select(topic0s), 1 => any::<[u8; 32]>().prop_map(B256::from)],
        prop::collection::vec(any::<[u8; 32]>().prop_map(B256::from), 0..4),
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..300),
            prop::collection::vec(any::<[u8; 32]>(), 0..9).prop_map(|w| w.concat()),
        ],
        (any::<u64>(), any::<u64>(), any::<u64>()),
    )
        .prop_map(|(address, t0, rest, data, (b, t, l))| {
            let mut topics = vec![t0];
            topics.extend(rest);
            dexlab_data::types::RawLog {
                block_number: b % 1_000,
                block_hash: None,
                transaction_index: t % 4,
                log_index: l % 8,
                transaction_hash: B256::ZERO,
                address,
                topics,
                data: data.into(),
                chain_id: 1,
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    /// Every family's decoder and the replay that checks swaps take arbitrary topics and data
    /// without a panic: a log is decoded, or refused with an error, and the replay goes on.
    #[test]
    fn arbitrary_logs_never_panic_the_decoders_or_the_replay(
        logs in prop::collection::vec(raw_log(), 1..30),
    ) {
        let pools = pools();
        let mut rp = replay::Replayer::new(&pools);
        let mut sorted = logs.clone();
        sorted.sort_by_key(|l| (l.block_number, l.transaction_index, l.log_index));
        for l in &sorted {
            let _ = dexlab_data::decode::decode_log(l);
            let _ = rp.apply(l);
        }
    }
}

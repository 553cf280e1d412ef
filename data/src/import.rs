//! `dexlab data import`: logs from `eth_getLogs` JSON (an array, or one log per line) or from cryo
//! logs Parquet (a file or a folder of them) into a dataset.
//!
//! A line that is not a log is reported with its file and line and skipped; the rest goes on.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256, Bytes};
use serde::Deserialize;

use crate::dataset::{self, DatasetMeta};
use crate::derive::{ChunkSummary, write_chunk};
use crate::error::{DataError, Result};
use crate::types::{BlockRow, PoolInfo, RawLog};

/// Options of one import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub input: PathBuf,
    pub out: PathBuf,
    pub timestamps: Option<PathBuf>,
    pub pools: Vec<PoolInfo>,
    pub chain_id: u64,
    /// Blocks per output chunk.
    pub chunk_blocks: u64,
}

/// What an import did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct ImportReport {
    pub logs: usize,
    pub skipped_lines: Vec<String>,
    pub removed_logs: usize,
    pub swaps: usize,
    pub liquidity_events: usize,
    pub blocks: usize,
    pub malformed: Vec<String>,
    pub by_kind: std::collections::BTreeMap<String, u64>,
    pub unknown: u64,
    pub chunks: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonLog {
    address: Address,
    #[serde(default)]
    topics: Vec<B256>,
    data: Bytes,
    block_number: alloy::primitives::U64,
    #[serde(default)]
    block_hash: Option<B256>,
    transaction_hash: B256,
    transaction_index: alloy::primitives::U64,
    log_index: alloy::primitives::U64,
    #[serde(default)]
    removed: bool,
}

impl JsonLog {
    fn into_raw(self, chain_id: u64) -> RawLog {
        RawLog {
            block_number: self.block_number.to(),
            block_hash: self.block_hash,
            transaction_index: self.transaction_index.to(),
            log_index: self.log_index.to(),
            transaction_hash: self.transaction_hash,
            address: self.address,
            topics: self.topics,
            data: self.data,
            chain_id,
        }
    }
}

/// Parses `eth_getLogs` JSON: a JSON array, an RPC response object with `result`, or JSON lines.
/// Returns the logs and one message per line that could not be read.
pub fn parse_json_logs(
    path: &Path,
    text: &str,
    chain_id: u64,
) -> (Vec<RawLog>, Vec<String>, usize) {
    let mut logs = Vec::new();
    let mut skipped = Vec::new();
    let mut removed = 0;
    let trimmed = text.trim_start();
    let mut push = |l: JsonLog| {
        if l.removed {
            removed += 1;
        } else {
            logs.push(l.into_raw(chain_id));
        }
    };
    if trimmed.starts_with('[') || trimmed.starts_with("{\"jsonrpc\"") {
        #[derive(Deserialize)]
        struct Resp {
            result: Vec<serde_json::Value>,
        }
        let values: std::result::Result<Vec<serde_json::Value>, _> = if trimmed.starts_with('[') {
            serde_json::from_str(text)
        } else {
            serde_json::from_str::<Resp>(text).map(|r| r.result)
        };
        match values {
            Ok(vs) => {
                for (i, v) in vs.into_iter().enumerate() {
                    match serde_json::from_value::<JsonLog>(v) {
                        Ok(l) => push(l),
                        Err(e) => {
                            skipped.push(format!("{}: element {i}: not a log: {e}", path.display()))
                        }
                    }
                }
            }
            Err(e) => skipped.push(format!(
                "{}:{}: invalid JSON: {e}",
                path.display(),
                e.line()
            )),
        }
    } else {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<JsonLog>(line) {
                Ok(l) => push(l),
                Err(e) => skipped.push(format!("{}:{}: not a log: {e}", path.display(), i + 1)),
            }
        }
    }
    (logs, skipped, removed)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses a UTC timestamp: unix seconds, or `YYYY-MM-DD HH:MM:SS` (a `T` and a trailing `Z` are fine).
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Some(n);
    }
    let s = s.trim_end_matches('Z').trim_end_matches("+00:00");
    let (date, time) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-').map(|x| x.parse::<i64>());
    let (y, mo, da) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let mut t = time.split(':').map(|x| x.parse::<f64>());
    let (h, mi, se) = (
        t.next()?.ok()?,
        t.next()?.ok()?,
        t.next().unwrap_or(Ok(0.0)).ok()?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let secs =
        days_from_civil(y, mo, da) * 86_400 + (h as i64) * 3600 + (mi as i64) * 60 + se as i64;
    u64::try_from(secs).ok()
}

/// Reads `block_number,timestamp` CSV (header row required; timestamp as unix seconds or UTC date-time).
pub fn read_timestamps(path: &Path) -> Result<HashMap<u64, u64>> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| DataError::Parse {
        path: path.into(),
        line: 0,
        message: e.to_string(),
    })?;
    let mut out = HashMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| DataError::Parse {
            path: path.into(),
            line,
            message: e.to_string(),
        })?;
        let bad = |m: String| DataError::Parse {
            path: path.into(),
            line,
            message: m,
        };
        let n: u64 = rec.get(0).unwrap_or("").trim().parse().map_err(|_| {
            bad(format!(
                "block number `{}` is not an integer",
                rec.get(0).unwrap_or("")
            ))
        })?;
        let raw = rec.get(1).unwrap_or("");
        let ts = parse_timestamp(raw).ok_or_else(|| {
            bad(format!(
                "timestamp `{raw}` is neither unix seconds nor YYYY-MM-DD HH:MM:SS"
            ))
        })?;
        out.insert(n, ts);
    }
    Ok(out)
}

fn read_input(opts: &ImportOptions, report: &mut ImportReport) -> Result<Vec<RawLog>> {
    let p = &opts.input;
    let is_parquet = |p: &Path| p.extension().is_some_and(|e| e == "parquet");
    if p.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(p)
            .map_err(|e| DataError::io(p, e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| is_parquet(f))
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(DataError::Config(format!(
                "{}: no .parquet files in this folder",
                p.display()
            )));
        }
        let mut out = Vec::new();
        for f in files {
            out.extend(dataset::read_logs_file(&f, opts.chain_id)?);
        }
        Ok(out)
    } else if is_parquet(p) {
        dataset::read_logs_file(p, opts.chain_id)
    } else {
        let text = fs::read_to_string(p).map_err(|e| DataError::io(p, e))?;
        let (logs, skipped, removed) = parse_json_logs(p, &text, opts.chain_id);
        for s in &skipped {
            tracing::warn!("{s}");
        }
        report.skipped_lines = skipped;
        report.removed_logs = removed;
        Ok(logs)
    }
}

/// Imports logs into a dataset folder.
pub fn import(opts: &ImportOptions) -> Result<ImportReport> {
    if opts.chunk_blocks == 0 {
        return Err(DataError::Config(
            "--chunk-blocks must be at least 1".into(),
        ));
    }
    let mut report = ImportReport::default();
    let mut logs = read_input(opts, &mut report)?;
    logs.sort_by_key(RawLog::key);
    logs.dedup_by_key(|l| l.key());
    let timestamps = match &opts.timestamps {
        Some(p) => read_timestamps(p)?,
        None => HashMap::new(),
    };
    let pools: HashMap<Address, PoolInfo> =
        opts.pools.iter().map(|p| (p.address, p.clone())).collect();
    fs::create_dir_all(&opts.out).map_err(|e| DataError::io(&opts.out, e))?;
    let chain_id = logs.first().map(|l| l.chain_id).unwrap_or(opts.chain_id);
    dataset::write_meta(
        &opts.out,
        &DatasetMeta {
            dexlab_version: env!("CARGO_PKG_VERSION").into(),
            chain_id,
            source: format!("import:{}", opts.input.display()),
            pools: opts.pools.clone(),
        },
    )?;
    let mut start = 0;
    while start < logs.len() {
        let first = logs[start].block_number / opts.chunk_blocks * opts.chunk_blocks;
        let last = first + opts.chunk_blocks - 1;
        let end = start + logs[start..].partition_point(|l| l.block_number <= last);
        let chunk = &logs[start..end];
        let mut blocks: Vec<BlockRow> = timestamps
            .iter()
            .filter(|(n, _)| (first..=last).contains(*n))
            .map(|(&number, &timestamp)| BlockRow {
                number,
                hash: None,
                parent_hash: None,
                timestamp,
                base_fee_per_gas: None,
                gas_used: None,
                gas_limit: None,
                chain_id,
            })
            .collect();
        blocks.sort_by_key(|b| b.number);
        let s: ChunkSummary = write_chunk(&opts.out, first, last, chunk, &blocks, None, &pools)?;
        report.logs += s.logs;
        report.blocks += s.blocks;
        report.swaps += s.swaps;
        report.liquidity_events += s.liquidity_events;
        report.unknown += s.stats.unknown;
        for (k, v) in s.stats.by_kind {
            *report.by_kind.entry(k).or_default() += v;
        }
        report
            .malformed
            .extend(s.malformed.iter().map(ToString::to_string));
        report.chunks += 1;
        start = end;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::univ3;
    use crate::types::{Protocol, TokenInfo};
    use alloy::sol_types::SolEvent;

    const POOL: &str = "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640";
    const TX: &str = "0x0bb5e0dc49ae0b5a1949beabadc64522dd5615415a168650a3b592a84ae5ee05";

    fn pool() -> PoolInfo {
        let token = |a: u8, symbol: &str, decimals| TokenInfo {
            address: Address::repeat_byte(a),
            symbol: symbol.into(),
            decimals,
        };
        PoolInfo {
            address: POOL.parse().unwrap(),
            protocol: Protocol::UniswapV3,
            dex: "uniswap-v3".into(),
            token0: token(1, "USDC", 6),
            token1: token(2, "WETH", 18),
            fee: 500,
            tick_spacing: Some(10),
            stable: None,
        }
    }

    /// A well-formed V3 swap of `address` as one eth_getLogs JSON line.
    fn swap_line(address: &str, block: &str, tx_index: &str, log_index: &str) -> String {
        let word = |hex: &str| format!("{hex:0>64}");
        let data = [
            word("3e8"),
            "f".repeat(61) + "c22",
            word("1000000000000000000000000"),
            word("de0b6b3a7640000"),
            word("0"),
        ]
        .concat();
        format!(
            r#"{{"address":"{address}","topics":["{}","0x{}","0x{}"],"data":"0x{data}","blockNumber":"{block}","transactionHash":"{TX}","transactionIndex":"{tx_index}","logIndex":"{log_index}","removed":false}}"#,
            univ3::Swap::SIGNATURE_HASH,
            word("1"),
            word("2"),
        )
    }

    struct Imported {
        dir: tempfile::TempDir,
        result: Result<ImportReport>,
    }

    impl Imported {
        fn out(&self) -> PathBuf {
            self.dir.path().join("out")
        }
    }

    /// Imports `text` (as `logs.jsonl`) with `csv` (as `ts.csv`) and the one-pool manifest.
    fn import_text(text: &str, csv: Option<&str>) -> Imported {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("logs.jsonl");
        fs::write(&input, text).unwrap();
        let timestamps = csv.map(|c| {
            let p = dir.path().join("ts.csv");
            fs::write(&p, c).unwrap();
            p
        });
        let result = import(&ImportOptions {
            input,
            out: dir.path().join("out"),
            timestamps,
            pools: vec![pool()],
            chain_id: 1,
            chunk_blocks: 100,
        });
        Imported { dir, result }
    }

    #[test]
    fn a_valid_swap_imports() {
        let r = import_text(&swap_line(POOL, "0x10", "0x1", "0x2"), Some("block_number,timestamp\n16,1704412823\n"));
        let report = r.result.as_ref().unwrap();
        assert_eq!((report.logs, report.swaps), (1, 1), "{report:?}");
        assert!(report.malformed.is_empty(), "{report:?}");
    }

    /// The dataset stores block numbers, transaction and log indices as u32: a larger value is a
    /// malformed log naming its line and field, never saturated to 4294967295 or a panic.
    #[test]
    fn indices_and_block_numbers_beyond_u32_are_malformed() {
        for (line, field) in [
            (swap_line(POOL, "0x10", "0x1", "0x10000000000"), "logIndex"),
            (swap_line(POOL, "0x10", "0x100000000", "0x2"), "transactionIndex"),
            (swap_line(POOL, "0x100000000", "0x1", "0x2"), "blockNumber"),
        ] {
            let good = swap_line(POOL, "0x11", "0x1", "0x2");
            let r = import_text(&format!("{good}\n{line}\n"), None);
            let report = r.result.as_ref().unwrap();
            assert_eq!(report.malformed.len(), 1, "{field}: {report:?}");
            let m = &report.malformed[0];
            assert!(m.contains("logs.jsonl:2"), "{m}");
            assert!(m.contains(field), "{m}");
            let logs = dataset::read_all_logs(&r.out()).unwrap();
            assert_eq!(logs.len(), 1, "{field}: only the good log is stored");
            assert_eq!(logs[0].log_index, 2);
        }
    }

    /// The same for a cryo Parquet file whose columns are 64-bit.
    #[test]
    fn parquet_rows_beyond_u32_are_malformed_not_a_panic() {
        use arrow::array::{BinaryArray, UInt64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("cryo.parquet");
        let bin = |n: &str, null: bool| Field::new(n, DataType::Binary, null);
        let schema = Arc::new(Schema::new(vec![
            Field::new("block_number", DataType::UInt64, false),
            Field::new("transaction_index", DataType::UInt64, false),
            Field::new("log_index", DataType::UInt64, false),
            bin("transaction_hash", false),
            bin("address", false),
            bin("topic0", true),
            bin("data", false),
        ]));
        let tx = TX.parse::<B256>().unwrap();
        let addr = POOL.parse::<Address>().unwrap();
        let topic = B256::repeat_byte(9);
        let b = arrow::array::RecordBatch::try_new(
            schema,
            vec![
                Arc::new(UInt64Array::from(vec![16, 1 << 40])),
                Arc::new(UInt64Array::from(vec![0, 0])),
                Arc::new(UInt64Array::from(vec![0, 1])),
                Arc::new(BinaryArray::from(vec![tx.as_slice(), tx.as_slice()])),
                Arc::new(BinaryArray::from(vec![addr.as_slice(), addr.as_slice()])),
                Arc::new(BinaryArray::from(vec![topic.as_slice(), topic.as_slice()])),
                Arc::new(BinaryArray::from(vec![&b""[..], &b""[..]])),
            ],
        )
        .unwrap();
        dataset::write_parquet(&input, &b).unwrap();
        let out = dir.path().join("out");
        let report = import(&ImportOptions {
            input,
            out: out.clone(),
            timestamps: None,
            pools: vec![pool()],
            chain_id: 1,
            chunk_blocks: 100,
        })
        .unwrap();
        assert_eq!(report.malformed.len(), 1, "{report:?}");
        let m = &report.malformed[0];
        assert!(m.contains("cryo.parquet") && m.contains("row 1"), "{m}");
        assert!(m.contains("block_number"), "{m}");
        assert_eq!(dataset::read_all_logs(&out).unwrap().len(), 1);
    }

    /// A saved RPC answer that is an error object: the node's code and message, not
    /// "missing field `result`".
    #[test]
    fn an_rpc_error_object_reports_the_nodes_code_and_message() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"query returned more than 10000 results"}}"#,
            r#"{ "id": 1, "jsonrpc": "2.0", "error": { "code": -32000, "message": "query returned more than 10000 results" } }"#,
        ] {
            let r = import_text(text, None);
            let e = r.result.expect_err(text).to_string();
            assert!(e.contains("logs.jsonl"), "{e}");
            assert!(e.contains("-32000"), "{e}");
            assert!(e.contains("query returned more than 10000 results"), "{e}");
        }
        // One error object among JSON lines: that line, with the node's message.
        let good = swap_line(POOL, "0x10", "0x1", "0x2");
        let err = r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32005,"message":"limit exceeded"}}"#;
        let r = import_text(&format!("{good}\n{err}\n"), None);
        let report = r.result.unwrap();
        assert_eq!(report.skipped_lines.len(), 1);
        let m = &report.skipped_lines[0];
        assert!(m.contains("logs.jsonl:2") && m.contains("-32005") && m.contains("limit exceeded"), "{m}");
    }

    /// A swap of a pool the manifest does not list is no swap row with a null price: it is an
    /// unknown log, kept in `logs` only.
    #[test]
    fn a_log_of_a_pool_not_in_the_manifest_is_unknown_not_a_swap() {
        let other = "0x8ad599c3a0ff1de082011efddc58f1908eb6e6d8";
        let text = format!(
            "{}\n{}\n",
            swap_line(POOL, "0x10", "0x1", "0x2"),
            swap_line(other, "0x10", "0x1", "0x3")
        );
        let r = import_text(&text, None);
        let report = r.result.as_ref().unwrap();
        assert_eq!(report.logs, 2, "{report:?}");
        assert_eq!(report.swaps, 1, "{report:?}");
        assert_eq!(report.unknown, 1, "{report:?}");
        for (_, _, p) in dataset::list_chunks(&r.out(), dataset::SWAPS).unwrap() {
            for b in dataset::read_parquet(&p).unwrap() {
                let prices = dataset::f64_column(&p, &b, "price_float").unwrap();
                assert!(prices.iter().all(Option::is_some), "{prices:?}");
            }
        }
    }

    fn ts_err(csv: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ts.csv");
        fs::write(&p, csv).unwrap();
        match read_timestamps(&p) {
            Ok(m) => panic!("{csv:?} was accepted as {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn timestamps_csv_refuses_what_would_change_results_silently() {
        // A duplicate block with another timestamp: the later row used to win silently.
        let e = ts_err("block_number,timestamp\n10,1704412823\n11,1704412835\n10,1893456000\n");
        assert!(e.contains("ts.csv:4") && e.contains("block 10") && e.contains("line 2"), "{e}");
        // Time going backwards as blocks go forward.
        let e = ts_err("block_number,timestamp\n10,1704412835\n11,1704412823\n");
        assert!(e.contains("ts.csv:3") && e.contains("block 11") && e.contains("block 10"), "{e}");
        let e = ts_err("block_number,timestamp\n11,1704412823\n10,1704412835\n");
        assert!(e.contains("ts.csv:2") && e.contains("block 11") && e.contains("block 10"), "{e}");
        // Not plausible unix seconds: u64::MAX used to show as 1969-12-31.
        let e = ts_err("block_number,timestamp\n10,18446744073709551615\n");
        assert!(e.contains("ts.csv:2") && e.contains("18446744073709551615"), "{e}");
        let e = ts_err("block_number,timestamp\n10,10000-01-01 00:00:00\n");
        assert!(e.contains("ts.csv:2"), "{e}");
        // Impossible clock times and dates.
        for bad in ["2024-01-05 24:00:00", "2024-02-30 00:00:00", "2024-01-05 00:60:00", "2024-01-05 00:00:nan"] {
            let e = ts_err(&format!("block_number,timestamp\n10,{bad}\n"));
            assert!(e.contains("ts.csv:2"), "{bad}: {e}");
        }
        // A block number the dataset cannot store.
        let e = ts_err("block_number,timestamp\n4294967296,1704412823\n");
        assert!(e.contains("ts.csv:2") && e.contains("4294967296"), "{e}");
    }

    #[test]
    fn timestamps_csv_accepts_identical_duplicates_and_a_missing_header() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ts.csv");
        fs::write(&p, "block_number,timestamp\n10,1704412823\n10,1704412823\n11,1704412823\n").unwrap();
        let m = read_timestamps(&p).unwrap();
        assert_eq!((m.len(), m[&10], m[&11]), (2, 1_704_412_823, 1_704_412_823));
        // Without a header the first row is data, not lost.
        fs::write(&p, "10,1704412823\n11,2024-01-05 00:00:35\n").unwrap();
        let m = read_timestamps(&p).unwrap();
        assert_eq!(m.get(&10), Some(&1_704_412_823), "{m:?}");
        assert_eq!(m.get(&11), Some(&1_704_412_835), "{m:?}");
    }

    /// Every block with a log needs its timestamp when a CSV is given: a partial file would leave
    /// events without time.
    #[test]
    fn a_timestamps_csv_missing_a_block_with_logs_is_refused() {
        let text = format!(
            "{}\n{}\n",
            swap_line(POOL, "0x10", "0x1", "0x2"),
            swap_line(POOL, "0x12", "0x1", "0x2")
        );
        let r = import_text(&text, Some("block_number,timestamp\n16,1704412823\n"));
        let e = r.result.expect_err("partial timestamps").to_string();
        assert!(e.contains("ts.csv") && e.contains("block 18"), "{e}");
    }

    #[test]
    fn timestamps_parse_both_forms() {
        assert_eq!(parse_timestamp("2024-01-05 00:00:23"), Some(1_704_412_823));
        assert_eq!(parse_timestamp("2024-01-05T00:00:23Z"), Some(1_704_412_823));
        assert_eq!(parse_timestamp("1704412823"), Some(1_704_412_823));
        assert_eq!(parse_timestamp("2024-13-05 00:00:23"), None);
    }

    #[test]
    fn bad_json_lines_are_reported_with_line_and_skipped() {
        let good = r#"{"address":"0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640","topics":[],"data":"0x","blockNumber":"0x10","transactionHash":"0x0bb5e0dc49ae0b5a1949beabadc64522dd5615415a168650a3b592a84ae5ee05","transactionIndex":"0x1","logIndex":"0x2","removed":false}"#;
        let text = format!("{good}\n{{\"address\": 12}}\n\n{good}\n");
        let (logs, skipped, removed) = parse_json_logs(Path::new("x.jsonl"), &text, 1);
        assert_eq!(logs.len(), 2);
        assert_eq!(removed, 0);
        assert_eq!(skipped.len(), 1);
        assert!(skipped[0].starts_with("x.jsonl:2:"), "{}", skipped[0]);
    }
}

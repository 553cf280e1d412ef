//! `dexlab data import`: logs from `eth_getLogs` JSON (an array, one log per line, or a saved RPC
//! answer) or from cryo logs Parquet (a file or a folder of them) into a dataset.
//!
//! What is wrong is said with its file and line (or Parquet row) and skipped, and the rest goes
//! on: a line that is not a log, a log whose block number or indices do not fit the dataset's u32
//! columns (malformed, never saturated), a log whose fields do not fit its event (malformed, see
//! [`crate::decode`]). Logs of pools the manifest does not list are kept in `logs` only and
//! counted as unknown ([`crate::derive::derive`]). What would make the whole dataset wrong ends
//! the import with an error: an RPC answer that is an error object (with the node's code and
//! message), logs of another chain than the import's, a timestamps CSV that is not a consistent
//! block clock or lacks a block that has logs.

use std::collections::{BTreeMap, HashMap};
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
    /// Chain of the logs; 0 = unknown (then a Parquet input's `chain_id` column decides).
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
    /// Logs that gave no swap or liquidity row: unknown topic0, or a pool not in the manifest.
    pub unknown: u64,
    /// Of `unknown`, the logs of pools the manifest does not list (stored in `logs` only).
    pub unknown_pool: u64,
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

/// What a JSON input held.
#[derive(Debug, Default, Clone)]
pub struct ParsedLogs {
    pub logs: Vec<RawLog>,
    /// One message per line or element that is not a log, with its file and line.
    pub skipped: Vec<String>,
    /// One message per log whose values the dataset cannot store, with file, line and field.
    pub malformed: Vec<String>,
    /// Logs marked `removed` (reorged out), left out.
    pub removed: usize,
}

/// The node's error, when `v` is a JSON-RPC answer carrying an error object.
fn rpc_error(v: &serde_json::Value) -> Option<String> {
    let e = v.as_object()?.get("error")?;
    let code = e
        .get("code")
        .map_or_else(|| "?".into(), ToString::to_string);
    let message = match e.get("message") {
        Some(serde_json::Value::String(m)) => m.clone(),
        Some(other) => other.to_string(),
        None => e.to_string(),
    };
    let mut s = format!("the node answered with error {code}: {message}");
    if let Some(data) = e.get("data").filter(|d| !d.is_null()) {
        s.push_str(&format!(" ({data})"));
    }
    Some(s)
}

impl ParsedLogs {
    /// Takes one parsed log, or says why it cannot be stored; `at` is `file:line` or
    /// `file: element i`.
    fn push(&mut self, l: JsonLog, chain_id: u64, at: impl FnOnce() -> String) {
        if l.removed {
            self.removed += 1;
            return;
        }
        let raw = l.into_raw(chain_id);
        match dataset::log_fits(&raw) {
            Ok(()) => self.logs.push(raw),
            Err((field, v)) => {
                let name = match field {
                    "block_number" => "blockNumber",
                    "transaction_index" => "transactionIndex",
                    _ => "logIndex",
                };
                self.malformed.push(format!(
                    "{}: malformed log: `{name}` {v:#x} does not fit the dataset's u32 {field} column",
                    at()
                ));
            }
        }
    }

    fn push_value(&mut self, v: serde_json::Value, chain_id: u64, at: impl Fn() -> String) {
        if let Some(e) = rpc_error(&v) {
            self.skipped.push(format!("{}: {e}", at()));
            return;
        }
        match serde_json::from_value::<JsonLog>(v) {
            Ok(l) => self.push(l, chain_id, at),
            Err(e) => self.skipped.push(format!("{}: not a log: {e}", at())),
        }
    }
}

/// Parses `eth_getLogs` JSON: a JSON array, an RPC answer object with `result`, or JSON lines.
/// An RPC answer that is an error object is an error with the node's code and message.
pub fn parse_json_logs(path: &Path, text: &str, chain_id: u64) -> Result<ParsedLogs> {
    let mut out = ParsedLogs::default();
    let trimmed = text.trim_start();
    let file = path.display();
    let elements = |vs: Vec<serde_json::Value>, out: &mut ParsedLogs| {
        for (i, v) in vs.into_iter().enumerate() {
            out.push_value(v, chain_id, || format!("{file}: element {i}"));
        }
    };
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<serde_json::Value>>(text) {
            Ok(vs) => elements(vs, &mut out),
            Err(e) => out
                .skipped
                .push(format!("{file}:{}: invalid JSON: {e}", e.line())),
        }
        return Ok(out);
    }
    if trimmed.starts_with('{') {
        // One JSON-RPC answer (a single log object on one line is JSON lines).
        if let Ok(mut v) = serde_json::from_str::<serde_json::Value>(text)
            && v.as_object().is_some_and(|o| {
                o.contains_key("result") || o.contains_key("error") || o.contains_key("jsonrpc")
            })
        {
            if let Some(e) = rpc_error(&v) {
                return Err(DataError::Input {
                    path: path.into(),
                    message: format!("{e} (a saved RPC answer without logs)"),
                });
            }
            return match v.get_mut("result").map(serde_json::Value::take) {
                Some(serde_json::Value::Array(vs)) => {
                    elements(vs, &mut out);
                    Ok(out)
                }
                other => Err(DataError::Input {
                    path: path.into(),
                    message: format!(
                        "an RPC answer whose `result` is not a list of logs: {}",
                        other.map_or_else(|| "missing".into(), |r| r.to_string())
                    ),
                }),
            };
        }
    }
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{file}:{}", i + 1);
        match serde_json::from_str::<JsonLog>(line) {
            Ok(l) => out.push(l, chain_id, at),
            Err(e) => match serde_json::from_str::<serde_json::Value>(line) {
                Ok(v) if rpc_error(&v).is_some() => out.push_value(v, chain_id, at),
                _ => out.skipped.push(format!("{}: not a log: {e}", at())),
            },
        }
    }
    Ok(out)
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

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The latest block timestamp accepted: 9999-12-31 23:59:59 UTC. Beyond it a value is not
/// plausible unix seconds (u64::MAX used to print as 1969-12-31 once read as a signed number).
pub const MAX_TIMESTAMP: u64 = 253_402_300_799;

/// Parses a UTC timestamp: unix seconds up to [`MAX_TIMESTAMP`], or `YYYY-MM-DD HH:MM:SS`
/// (a `T` and a trailing `Z` or `+00:00` are fine, fractions of a second are dropped) of a real
/// date and clock time between 1970 and 9999.
pub fn parse_timestamp(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse::<u64>().ok().filter(|&n| n <= MAX_TIMESTAMP);
    }
    let s = s.trim_end_matches('Z').trim_end_matches("+00:00");
    let (date, time) = s.split_once([' ', 'T'])?;
    let num = |x: &str| -> Option<i64> {
        (!x.is_empty() && x.len() <= 4 && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let mut d = date.split('-');
    let (y, mo, da) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
    let mut t = time.split(':');
    let (h, mi) = (num(t.next()?)?, num(t.next()?)?);
    let se = match t.next() {
        None => 0,
        Some(x) => {
            let (whole, frac) = x.split_once('.').unwrap_or((x, "0"));
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            num(whole)?
        }
    };
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&da)
        || !(0..24).contains(&h)
        || !(0..60).contains(&mi)
        || !(0..60).contains(&se)
    {
        return None;
    }
    let secs = days_from_civil(y, mo, da) * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok()
}

/// Reads a `block_number,timestamp` CSV (timestamp as unix seconds or UTC date-time).
///
/// The header row is optional: a first row whose block number is an integer is data. The file
/// must be a consistent block clock, or the backtest would run on a wrong one without a word:
/// a block listed twice with two timestamps, time going backwards as block numbers grow, a
/// timestamp that is not plausible unix seconds (see [`MAX_TIMESTAMP`]) or a block number beyond
/// the dataset's u32 are errors with the file and line. A block listed twice with the same
/// timestamp is fine.
pub fn read_timestamps(path: &Path) -> Result<HashMap<u64, u64>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .map_err(|e| DataError::Parse {
            path: path.into(),
            line: 0,
            message: e.to_string(),
        })?;
    // Block -> (timestamp, line).
    let mut seen: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (i, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| DataError::Parse {
            path: path.into(),
            line: e.position().map_or(i + 1, |p| p.line() as usize),
            message: e.to_string(),
        })?;
        let line = rec.position().map_or(i as u64 + 1, |p| p.line());
        let bad = |m: String| DataError::Parse {
            path: path.into(),
            line: line as usize,
            message: m,
        };
        let field0 = rec.get(0).unwrap_or("").trim();
        if i == 0 && field0.parse::<u64>().is_err() {
            // The header.
            continue;
        }
        let n: u64 = field0
            .parse()
            .map_err(|_| bad(format!("block number `{field0}` is not an integer")))?;
        if u32::try_from(n).is_err() {
            return Err(bad(format!(
                "block number {n} does not fit the dataset's u32 block numbers"
            )));
        }
        let raw = rec.get(1).unwrap_or("").trim();
        let ts = match parse_timestamp(raw) {
            Some(ts) => ts,
            None if raw.parse::<u64>().is_ok() => {
                return Err(bad(format!(
                    "timestamp {raw} is not plausible unix seconds (after 9999-12-31 23:59:59 UTC, {MAX_TIMESTAMP})"
                )));
            }
            None => {
                return Err(bad(format!(
                    "timestamp `{raw}` is neither unix seconds nor a UTC date and time YYYY-MM-DD HH:MM:SS between 1970 and 9999"
                )));
            }
        };
        match seen.get(&n) {
            Some(&(t, _)) if t == ts => {}
            Some(&(t, l)) => {
                return Err(bad(format!(
                    "block {n} appears again with timestamp {ts}, but line {l} gave it {t}"
                )));
            }
            None => {
                seen.insert(n, (ts, line));
            }
        }
    }
    let mut prev: Option<(u64, u64, u64)> = None;
    for (&n, &(ts, line)) in &seen {
        if let Some((pn, pts, pline)) = prev
            && ts < pts
        {
            return Err(DataError::Parse {
                path: path.into(),
                line: line as usize,
                message: format!(
                    "time goes backwards: block {n} has timestamp {ts}, before block {pn}'s {pts} (line {pline})"
                ),
            });
        }
        prev = Some((n, ts, line));
    }
    Ok(seen.into_iter().map(|(n, (ts, _))| (n, ts)).collect())
}

/// Drops (and reports as malformed) the logs of a Parquet input that the dataset cannot store.
fn keep_fitting(file: &Path, logs: Vec<RawLog>, report: &mut ImportReport) -> Vec<RawLog> {
    let mut out = Vec::with_capacity(logs.len());
    for (row, l) in logs.into_iter().enumerate() {
        match dataset::log_fits(&l) {
            Ok(()) => out.push(l),
            Err((field, v)) => report.malformed.push(format!(
                "{}: row {row}: malformed log: `{field}` {v} does not fit the dataset's u32 {field} column",
                file.display()
            )),
        }
    }
    out
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
            let logs = dataset::read_logs_file(&f, opts.chain_id)?;
            out.extend(keep_fitting(&f, logs, report));
        }
        Ok(out)
    } else if is_parquet(p) {
        let logs = dataset::read_logs_file(p, opts.chain_id)?;
        Ok(keep_fitting(p, logs, report))
    } else {
        let text = fs::read_to_string(p).map_err(|e| DataError::io(p, e))?;
        let parsed = parse_json_logs(p, &text, opts.chain_id)?;
        for s in parsed.skipped.iter().chain(&parsed.malformed) {
            tracing::warn!("{s}");
        }
        report.skipped_lines = parsed.skipped;
        report.malformed = parsed.malformed;
        report.removed_logs = parsed.removed;
        Ok(parsed.logs)
    }
}

/// Imports logs into a dataset folder.
pub fn import(opts: &ImportOptions) -> Result<ImportReport> {
    if opts.chunk_blocks == 0 {
        return Err(DataError::Config(
            "--chunk-blocks must be at least 1".into(),
        ));
    }
    crate::manifest::validate_pools(&opts.pools)
        .map_err(|message| DataError::Config(format!("pool metadata of the import: {message}")))?;
    let mut report = ImportReport::default();
    let mut logs = read_input(opts, &mut report)?;
    // One chain per dataset: the import's, or else the one the input names.
    let chain_id = if opts.chain_id != 0 {
        opts.chain_id
    } else {
        logs.first().map_or(0, |l| l.chain_id)
    };
    if let Some(l) = logs.iter().find(|l| l.chain_id != chain_id) {
        return Err(DataError::Input {
            path: opts.input.clone(),
            message: format!(
                "the log at {} is from chain {}, but this import is for chain {chain_id}",
                l.location(),
                l.chain_id
            ),
        });
    }
    logs.sort_by_key(RawLog::key);
    // The same log twice (overlapping exports) is kept once; two different logs at one place
    // cannot both be the chain's.
    let mut deduped: Vec<RawLog> = Vec::with_capacity(logs.len());
    for l in logs {
        match deduped.last() {
            Some(prev) if prev.key() == l.key() => {
                if *prev != l {
                    report.malformed.push(format!(
                        "{}: two different logs at block {} log index {}: the second (tx {}) is skipped",
                        opts.input.display(),
                        l.block_number,
                        l.log_index,
                        l.transaction_hash
                    ));
                }
            }
            _ => deduped.push(l),
        }
    }
    let logs = deduped;
    let timestamps = match &opts.timestamps {
        Some(p) => {
            let ts = read_timestamps(p)?;
            let mut lacking = logs
                .iter()
                .map(|l| l.block_number)
                .filter(|n| !ts.contains_key(n))
                .collect::<Vec<_>>();
            lacking.dedup();
            if let Some(first) = lacking.first() {
                return Err(DataError::Input {
                    path: p.clone(),
                    message: format!(
                        "no timestamp for block {first}, which has logs ({} block(s) with logs have none); every block with a log needs one",
                        lacking.len()
                    ),
                });
            }
            ts
        }
        None => HashMap::new(),
    };
    let pools: HashMap<Address, PoolInfo> =
        opts.pools.iter().map(|p| (p.address, p.clone())).collect();
    fs::create_dir_all(&opts.out).map_err(|e| DataError::io(&opts.out, e))?;
    dataset::write_meta(
        &opts.out,
        &DatasetMeta {
            dexlab_version: env!("CARGO_PKG_VERSION").into(),
            chain_id,
            source: format!("import:{}", opts.input.display()),
            pools: opts.pools.clone(),
            transactions: None,
        },
    )?;
    let mut start = 0;
    while start < logs.len() {
        let first = logs[start].block_number / opts.chunk_blocks * opts.chunk_blocks;
        let last = first.saturating_add(opts.chunk_blocks - 1);
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
        report.unknown_pool += s.stats.unknown_pool;
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
    use alloy::sol_types::SolEvent;

    const POOL: &str = "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640";
    const TX: &str = "0x0bb5e0dc49ae0b5a1949beabadc64522dd5615415a168650a3b592a84ae5ee05";

    /// The crate's test pool (`dataset::fixtures`) at the address these logs come from.
    fn pool() -> PoolInfo {
        PoolInfo {
            address: POOL.parse().unwrap(),
            ..crate::dataset::fixtures::pool()
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
        let r = import_text(
            &swap_line(POOL, "0x10", "0x1", "0x2"),
            Some("block_number,timestamp\n16,1704412823\n"),
        );
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
            (
                swap_line(POOL, "0x10", "0x100000000", "0x2"),
                "transactionIndex",
            ),
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
        assert!(
            m.contains("logs.jsonl:2") && m.contains("-32005") && m.contains("limit exceeded"),
            "{m}"
        );
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
        assert!(
            e.contains("ts.csv:4") && e.contains("block 10") && e.contains("line 2"),
            "{e}"
        );
        // Time going backwards as blocks go forward.
        let e = ts_err("block_number,timestamp\n10,1704412835\n11,1704412823\n");
        assert!(
            e.contains("ts.csv:3") && e.contains("block 11") && e.contains("block 10"),
            "{e}"
        );
        let e = ts_err("block_number,timestamp\n11,1704412823\n10,1704412835\n");
        assert!(
            e.contains("ts.csv:2") && e.contains("block 11") && e.contains("block 10"),
            "{e}"
        );
        // Not plausible unix seconds: u64::MAX used to show as 1969-12-31.
        let e = ts_err("block_number,timestamp\n10,18446744073709551615\n");
        assert!(
            e.contains("ts.csv:2") && e.contains("18446744073709551615"),
            "{e}"
        );
        let e = ts_err("block_number,timestamp\n10,10000-01-01 00:00:00\n");
        assert!(e.contains("ts.csv:2"), "{e}");
        // Impossible clock times and dates.
        for bad in [
            "2024-01-05 24:00:00",
            "2024-02-30 00:00:00",
            "2024-01-05 00:60:00",
            "2024-01-05 00:00:nan",
        ] {
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
        fs::write(
            &p,
            "block_number,timestamp\n10,1704412823\n10,1704412823\n11,1704412823\n",
        )
        .unwrap();
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
        let p = parse_json_logs(Path::new("x.jsonl"), &text, 1).unwrap();
        assert_eq!(p.logs.len(), 2);
        assert_eq!(p.removed, 0);
        assert_eq!(p.skipped.len(), 1);
        assert!(p.skipped[0].starts_with("x.jsonl:2:"), "{}", p.skipped[0]);
    }
}

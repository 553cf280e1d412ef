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

//! `dexlab data inspect`: what a dataset holds.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::dataset::{self, BLOCKS, LOGS, Problem, SWAPS, TRANSACTIONS};
use crate::decode::EventKind;
use crate::error::Result;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PoolSummary {
    pub pool: String,
    pub protocol: String,
    pub dex: Option<String>,
    pub pair: Option<String>,
    pub swaps: u64,
    /// Token1 per token0, human units, over the dataset's swaps.
    pub price_min: Option<f64>,
    pub price_max: Option<f64>,
}

/// The `transactions` table: what the transactions that emitted tracked events paid.
/// Wei amounts are exact base-10 strings, as in the table.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TransactionsSummary {
    pub rows: u64,
    /// Blocks holding at least one of them.
    pub blocks: u64,
    pub reverted: u64,
    /// Priority fee per gas (effective gas price − base fee), wei.
    pub priority_fee_min: Option<String>,
    pub priority_fee_median: Option<String>,
    pub priority_fee_max: Option<String>,
    /// Rows without a priority fee (no base fee in the block, or OP-stack deposits).
    pub priority_fee_null: u64,
    pub effective_gas_price_min: Option<String>,
    pub effective_gas_price_max: Option<String>,
    /// Rows with an OP-stack L1 fee.
    pub l1_fee_rows: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct InspectReport {
    pub chain_id: u64,
    pub source: String,
    pub logs: u64,
    pub first_block: Option<u64>,
    pub last_block: Option<u64>,
    /// Block headers stored.
    pub blocks: u64,
    pub first_timestamp: Option<u64>,
    pub last_timestamp: Option<u64>,
    pub events: BTreeMap<String, u64>,
    pub pools: Vec<PoolSummary>,
    pub chunks: usize,
    /// `None` when the dataset has no transactions table (imported logs carry no receipts).
    pub transactions: Option<TransactionsSummary>,
    /// What is missing or damaged ([`dataset::check`], plus any file that failed to read here).
    /// Counts above leave those files out. Non-empty: other commands refuse the dataset.
    pub problems: Vec<Problem>,
}

fn transactions_summary(rows: &[crate::types::TxRow]) -> TransactionsSummary {
    let mut fees: Vec<u128> = rows.iter().filter_map(|t| t.priority_fee_per_gas).collect();
    fees.sort_unstable();
    let s = |v: Option<&u128>| v.map(ToString::to_string);
    let mut blocks: Vec<u64> = rows.iter().map(|t| t.block_number).collect();
    blocks.dedup();
    TransactionsSummary {
        rows: rows.len() as u64,
        blocks: blocks.len() as u64,
        reverted: rows.iter().filter(|t| !t.status).count() as u64,
        priority_fee_min: s(fees.first()),
        priority_fee_median: s(fees.get(fees.len() / 2)),
        priority_fee_max: s(fees.last()),
        priority_fee_null: (rows.len() - fees.len()) as u64,
        effective_gas_price_min: s(rows.iter().map(|t| t.effective_gas_price).min().as_ref()),
        effective_gas_price_max: s(rows.iter().map(|t| t.effective_gas_price).max().as_ref()),
        l1_fee_rows: rows.iter().filter(|t| t.l1_fee.is_some()).count() as u64,
    }
}

/// Summarises a dataset, and says what is missing or damaged instead of failing on it: the
/// summary covers the files that can be read.
pub fn inspect(root: &Path) -> Result<InspectReport> {
    let meta = dataset::read_meta_unchecked(root)?;
    let mut problems = dataset::check(root, &meta);
    let bad: HashSet<PathBuf> = problems.iter().map(|p| p.path.clone()).collect();
    // The readable files of a table; a file that fails to read here joins the problems.
    let read = |table: &str,
                problems: &mut Vec<Problem>,
                f: &mut dyn FnMut(&Path) -> Result<()>|
     -> Result<()> {
        for (_, _, p) in dataset::list_chunks(root, table)? {
            if bad.contains(&p) {
                continue;
            }
            if let Err(e) = f(&p) {
                problems.push(Problem::damaged(table, p.clone(), e.to_string()));
            }
        }
        Ok(())
    };
    let mut logs = Vec::new();
    read(LOGS, &mut problems, &mut |p| {
        logs.extend(dataset::read_logs_file(p, 0)?);
        Ok(())
    })?;
    let mut blocks = Vec::new();
    read(BLOCKS, &mut problems, &mut |p| {
        blocks.extend(dataset::read_blocks_file(p)?);
        Ok(())
    })?;
    let mut events: BTreeMap<String, u64> = BTreeMap::new();
    for l in &logs {
        *events
            .entry(EventKind::from_topic0(l.topic0()).name().to_owned())
            .or_default() += 1;
    }
    let mut per_pool: BTreeMap<String, (String, u64, Option<f64>, Option<f64>)> = BTreeMap::new();
    read(SWAPS, &mut problems, &mut |p| {
        for b in dataset::read_parquet(p)? {
            let pools = dataset::string_column(p, &b, "pool")?;
            let protos = dataset::string_column(p, &b, "protocol")?;
            let prices = dataset::f64_column(p, &b, "price_float")?;
            for i in 0..b.num_rows() {
                let e = per_pool
                    .entry(pools[i].clone().unwrap_or_default())
                    .or_insert((protos[i].clone().unwrap_or_default(), 0, None, None));
                e.1 += 1;
                if let Some(px) = prices[i].filter(|x| x.is_finite()) {
                    e.2 = Some(e.2.map_or(px, |m: f64| m.min(px)));
                    e.3 = Some(e.3.map_or(px, |m: f64| m.max(px)));
                }
            }
        }
        Ok(())
    })?;
    let transactions = if problems.iter().any(|p| p.table == TRANSACTIONS) {
        None
    } else {
        match dataset::read_all_transactions(root) {
            Ok(t) => t.as_deref().map(transactions_summary),
            Err(e) => {
                problems.push(Problem::damaged(
                    TRANSACTIONS,
                    root.join(TRANSACTIONS),
                    e.to_string(),
                ));
                None
            }
        }
    };
    for p in &meta.pools {
        per_pool.entry(format!("{:#x}", p.address)).or_insert((
            p.protocol.to_string(),
            0,
            None,
            None,
        ));
    }
    let pools = per_pool
        .into_iter()
        .map(|(pool, (protocol, swaps, lo, hi))| {
            let info = meta
                .pools
                .iter()
                .find(|p| format!("{:#x}", p.address) == pool);
            PoolSummary {
                dex: info.map(|i| i.dex.clone()),
                pair: info.map(|i| {
                    format!(
                        "{}/{} {:.2}%",
                        i.token0.symbol,
                        i.token1.symbol,
                        i.fee as f64 / 10_000.0
                    )
                }),
                pool,
                protocol,
                swaps,
                price_min: lo,
                price_max: hi,
            }
        })
        .collect();
    Ok(InspectReport {
        chain_id: meta.chain_id,
        source: meta.source,
        logs: logs.len() as u64,
        first_block: logs
            .first()
            .map(|l| l.block_number)
            .into_iter()
            .chain(blocks.first().map(|b| b.number))
            .min(),
        last_block: logs
            .last()
            .map(|l| l.block_number)
            .into_iter()
            .chain(blocks.last().map(|b| b.number))
            .max(),
        blocks: blocks.len() as u64,
        first_timestamp: blocks.iter().map(|b| b.timestamp).min(),
        last_timestamp: blocks.iter().map(|b| b.timestamp).max(),
        events,
        pools,
        chunks: dataset::list_chunks(root, dataset::LOGS)?.len(),
        transactions,
        problems,
    })
}

fn fmt_ts(ts: u64) -> String {
    utc_datetime(ts as i64, true)
}

/// `YYYY-MM-DD HH:MM[:SS] UTC` of unix seconds (civil_from_days, Howard Hinnant).
pub fn utc_datetime(ts: i64, seconds: bool) -> String {
    let (days, secs) = (ts.div_euclid(86_400), ts.rem_euclid(86_400));
    // civil_from_days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let hm = format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        secs % 3600 / 60
    );
    if seconds {
        format!("{hm}:{:02} UTC", secs % 60)
    } else {
        format!("{hm} UTC")
    }
}

impl std::fmt::Display for InspectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "source      {}", self.source)?;
        writeln!(f, "chain id    {}", self.chain_id)?;
        if !self.problems.is_empty() {
            writeln!(
                f,
                "problems    {}: backtest, verify and features refuse this dataset; the counts below leave these files out",
                self.problems.len()
            )?;
            for p in &self.problems {
                writeln!(f, "  {p}")?;
            }
        }
        match (self.first_block, self.last_block) {
            (Some(a), Some(b)) => writeln!(
                f,
                "blocks      {a} .. {b} ({} headers stored, {} chunks)",
                self.blocks, self.chunks
            )?,
            _ => writeln!(f, "blocks      none")?,
        }
        if let (Some(a), Some(b)) = (self.first_timestamp, self.last_timestamp) {
            writeln!(f, "time        {} .. {}", fmt_ts(a), fmt_ts(b))?;
        }
        writeln!(f, "logs        {}", self.logs)?;
        match &self.transactions {
            Some(t) => {
                write!(
                    f,
                    "transactions {} (in {} blocks, {} reverted)",
                    t.rows, t.blocks, t.reverted
                )?;
                if let (Some(lo), Some(med), Some(hi)) = (
                    &t.priority_fee_min,
                    &t.priority_fee_median,
                    &t.priority_fee_max,
                ) {
                    write!(f, ", priority fee {lo} .. {hi} wei/gas (median {med})")?;
                }
                if t.priority_fee_null > 0 {
                    write!(f, ", {} without a priority fee", t.priority_fee_null)?;
                }
                if t.l1_fee_rows > 0 {
                    write!(f, ", {} with an L1 fee", t.l1_fee_rows)?;
                }
                writeln!(f)?;
            }
            // Ingestion records receipts; a dataset from a node without them predates that.
            None if self.source.contains("://") => writeln!(
                f,
                "transactions: none (ingested by a dexlab that did not record receipts yet)"
            )?,
            None => writeln!(f, "transactions: none (imported logs carry no fees)")?,
        }
        writeln!(f, "events")?;
        for (k, v) in &self.events {
            writeln!(f, "  {k:<18} {v}")?;
        }
        writeln!(f, "pools")?;
        for p in &self.pools {
            write!(
                f,
                "  {} {:<11} {:<14} {:<22} swaps {:>7}",
                p.pool,
                p.protocol,
                p.dex.as_deref().unwrap_or("-"),
                p.pair.as_deref().unwrap_or("-"),
                p.swaps
            )?;
            if let (Some(lo), Some(hi)) = (p.price_min, p.price_max) {
                write!(
                    f,
                    "  price {lo:.6e} .. {hi:.6e} (inverse {:.6e} .. {:.6e})",
                    1.0 / hi,
                    1.0 / lo
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::dataset::{self, fixtures::fixture};

    #[test]
    fn formats_utc() {
        assert_eq!(super::fmt_ts(1_704_412_823), "2024-01-05 00:00:23 UTC");
    }

    /// `inspect` says which table is missing or which file is damaged instead of `swaps 0`.
    #[test]
    fn inspect_reports_missing_tables_and_damaged_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fixture(root);
        let r = super::inspect(root).unwrap();
        let text = r.to_string();
        assert!(
            !text.contains("missing") && !text.contains("damaged"),
            "{text}"
        );
        std::fs::remove_dir_all(root.join(dataset::SWAPS)).unwrap();
        std::fs::write(
            dataset::chunk_path(root, dataset::LIQUIDITY_EVENTS, 0, 99),
            b"garbage",
        )
        .unwrap();
        let r = super::inspect(root).unwrap();
        let text = r.to_string();
        let swaps = root.join(dataset::SWAPS).display().to_string();
        assert!(
            text.contains(&format!("swaps: missing ({swaps})")),
            "{text}"
        );
        assert!(
            text.contains("liquidity_events_0000000000_0000000099.parquet"),
            "{text}"
        );
        assert!(text.contains("damaged"), "{text}");
        // What is readable is still summarised.
        assert_eq!(r.logs, 3, "{text}");
    }
}

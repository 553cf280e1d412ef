//! Ingestion from any JSON-RPC node: pool logs and block headers into the Parquet dataset.
//!
//! * `eth_getLogs` spans adapt: a span is halved when the node refuses the range or the answer is
//!   too large, and doubled after small answers.
//! * Requests are rate limited, bounded in number in flight, and retried with exponential backoff
//!   and full jitter on timeouts, dropped connections, HTTP 429 and 5xx.
//! * Chunks are fetched concurrently but committed in block order; after each committed chunk a
//!   checkpoint (written atomically) records the next block and the hashes of the last blocks. A run
//!   killed at any moment and started again deletes whatever lies past the checkpoint and goes on,
//!   so the dataset has no gap and no duplicate.
//! * Every transaction that emitted a tracked event gets a row in `transactions` from its receipt:
//!   `eth_getBlockReceipts` for each block with such logs (in JSON-RPC batches), or, when the node
//!   does not serve that method, `eth_getTransactionReceipt` per transaction. Both go through the
//!   same rate limit, timeout and retries as the logs.
//! * At start, the checkpoint's tail is compared with the node's hashes; during the run, every
//!   header's parent hash with the previous header, and every log's and receipt's block hash with
//!   its header. A mismatch is a reorg: the chunks past the fork point are deleted and fetched
//!   again.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alloy::primitives::{Address, B256, U64};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, Log};
use alloy::transports::{RpcError, TransportErrorKind};
use futures::{StreamExt, TryStreamExt};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{self, CHUNK_TABLES, DatasetMeta};
use crate::derive::write_chunk;
use crate::error::{DataError, Result};
use crate::receipts::{Receipt, method_unsupported};
use crate::types::{BlockRow, PoolInfo, RawLog, TxRow};

/// Validated ingestion settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub rpc_url: String,
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// Pools with known metadata (from a manifest).
    pub pools: Vec<PoolInfo>,
    /// Pools given by address only; their metadata is read from the chain.
    pub pool_addresses: Vec<Address>,
    pub out: PathBuf,
    pub confirmations: u64,
    pub chunk_blocks: u64,
    pub concurrency: usize,
    /// 0 = unlimited.
    pub rate_per_sec: f64,
    pub timeout: Duration,
    pub retries: u32,
    pub initial_span: u64,
    pub progress: bool,
    /// Snapshot every pool (V3: slot0, liquidity, ticks; V2/Solidly: reserves) at `from - 1` on a
    /// new ingestion, so the replay is exact from the first block even when the pools are older.
    pub snapshot: bool,
    /// Start over when `out` holds anything but a checkpoint of this same ingestion.
    pub force: bool,
}

impl IngestConfig {
    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(DataError::Config(m.into()));
        if self.chunk_blocks == 0 {
            return bad("--chunk-blocks must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("--concurrency must be at least 1");
        }
        if self.rate_per_sec < 0.0 || !self.rate_per_sec.is_finite() {
            return bad("--rate must be a non-negative number of requests per second");
        }
        if self.retries == 0 {
            return bad("--retries must be at least 1");
        }
        if self.initial_span == 0 {
            return bad("--initial-span must be at least 1");
        }
        if self.timeout.is_zero() {
            return bad("--timeout must be positive");
        }
        if let (Some(a), Some(b)) = (self.from, self.to)
            && a > b
        {
            return Err(DataError::Config(format!("--from {a} is after --to {b}")));
        }
        if self.from.is_none() {
            return bad("--from is required when no manifest gives the first block");
        }
        Ok(())
    }
}

/// Block hashes kept in the checkpoint to detect reorgs.
const TAIL: usize = 128;
/// Largest eth_getLogs answer we accept before shrinking the span.
const MAX_LOGS_PER_REQUEST: usize = 10_000;
/// Headers per JSON-RPC batch.
const HEADER_BATCH: u64 = 100;
/// `eth_getBlockReceipts` calls per JSON-RPC batch (a busy L2 block's receipts run to megabytes).
const BLOCK_RECEIPTS_BATCH: usize = 10;
/// `eth_getTransactionReceipt` calls per JSON-RPC batch.
const TX_RECEIPTS_BATCH: usize = 100;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Checkpoint {
    chain_id: u64,
    pools: Vec<Address>,
    from: u64,
    /// First block not yet in the dataset.
    next_block: u64,
    /// (number, hash) of the last committed blocks, ascending.
    tail: Vec<(u64, B256)>,
}

/// A reorg that was detected and repaired.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReorgEvent {
    /// Last block that both chains share.
    pub common_ancestor: u64,
    /// Block from which the dataset was fetched again.
    pub refetched_from: u64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct IngestReport {
    pub chain_id: u64,
    pub from: u64,
    pub to: u64,
    pub resumed_at: Option<u64>,
    pub blocks: u64,
    pub logs: u64,
    pub swaps: u64,
    pub liquidity_events: u64,
    /// Rows written to `transactions`: the transactions that emitted a tracked event.
    pub transactions: u64,
    /// `eth_getBlockReceipts`, or `eth_getTransactionReceipt` when the node lacks it.
    pub receipts_method: Option<String>,
    pub unknown_logs: u64,
    pub malformed: Vec<String>,
    pub chunks: u64,
    pub requests: u64,
    pub retries: u64,
    pub splits: u64,
    pub reorgs: Vec<ReorgEvent>,
    pub elapsed_s: f64,
    pub blocks_per_s: f64,
    pub logs_per_s: f64,
}

impl std::fmt::Display for IngestReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ingested chain {} blocks {}..{} in {:.2}s ({:.0} blocks/s, {:.0} logs/s)",
            self.chain_id, self.from, self.to, self.elapsed_s, self.blocks_per_s, self.logs_per_s
        )?;
        if let Some(r) = self.resumed_at {
            writeln!(f, "  resumed at block {r}")?;
        }
        writeln!(
            f,
            "  {} blocks, {} logs, {} swaps, {} liquidity events, {} transactions, {} unknown logs, {} malformed",
            self.blocks,
            self.logs,
            self.swaps,
            self.liquidity_events,
            self.transactions,
            self.unknown_logs,
            self.malformed.len()
        )?;
        writeln!(
            f,
            "  {} chunks, {} requests, {} retries, {} span splits, {} reorgs",
            self.chunks,
            self.requests,
            self.retries,
            self.splits,
            self.reorgs.len()
        )?;
        for r in &self.reorgs {
            writeln!(
                f,
                "  reorg: common ancestor {}, refetched from {}",
                r.common_ancestor, r.refetched_from
            )?;
        }
        for m in &self.malformed {
            writeln!(f, "  skipped {m}")?;
        }
        Ok(())
    }
}

/// Shared request machinery: rate limit, timeouts, retries, counters.
struct Rpc {
    provider: DynProvider,
    /// The same endpoint, for JSON-RPC batches.
    client: alloy::rpc::client::RpcClient,
    timeout: Duration,
    retries: u32,
    min_interval: Option<Duration>,
    next_slot: tokio::sync::Mutex<Instant>,
    requests: AtomicU64,
    retried: AtomicU64,
    splits: AtomicU64,
    span: AtomicU64,
    max_span: u64,
    /// Cleared when the node turns out not to serve `eth_getBlockReceipts`.
    block_receipts: AtomicBool,
    /// Spellings of the endpoint (it may hold an API key) and how it may be printed.
    url_spellings: Vec<String>,
    url_redacted: String,
}

/// How a failed request should be handled.
enum Failure {
    /// Ask for less: the node refused the range or the answer was too large.
    TooLarge(String),
    Transient(String),
    Fatal(String),
}

impl Failure {
    fn message(self) -> String {
        match self {
            Failure::TooLarge(m) | Failure::Transient(m) | Failure::Fatal(m) => m,
        }
    }
}

fn classify(e: &RpcError<TransportErrorKind>) -> Failure {
    match e {
        RpcError::ErrorResp(p) => {
            let m = p.message.to_lowercase();
            let too_large = [
                "range",
                "too many",
                "too large",
                "limit",
                "exceed",
                "more than",
                "response size",
                "block count",
            ];
            if p.code == -32005 || too_large.iter().any(|w| m.contains(w)) && !m.contains("rate") {
                Failure::TooLarge(p.to_string())
            } else if p.code == 429
                || m.contains("rate")
                || m.contains("timeout")
                || m.contains("busy")
                || m.contains("header not found")
                || m.contains("unknown block")
            {
                Failure::Transient(p.to_string())
            } else {
                Failure::Fatal(p.to_string())
            }
        }
        RpcError::Transport(TransportErrorKind::HttpError(h))
        | RpcError::Transport(TransportErrorKind::HttpErrorWithRetryAfter { error: h, .. }) => {
            match h.status {
                413 => Failure::TooLarge(format!("HTTP 413: {}", h.body)),
                429 | 408 | 500..=599 => Failure::Transient(format!("HTTP {}", h.status)),
                s => Failure::Fatal(format!(
                    "HTTP {s}: {}",
                    h.body.chars().take(200).collect::<String>()
                )),
            }
        }
        RpcError::DeserError { err, .. } => {
            Failure::Transient(format!("unreadable response: {err}"))
        }
        other => Failure::Transient(other.to_string()),
    }
}

impl Rpc {
    async fn throttle(&self) {
        if let Some(iv) = self.min_interval {
            let wait_until = {
                let mut next = self.next_slot.lock().await;
                let now = Instant::now();
                let slot = (*next).max(now);
                *next = slot + iv;
                slot
            };
            tokio::time::sleep_until(wait_until.into()).await;
        }
    }

    /// Runs `call` with timeout and retries; `TooLarge` is returned to the caller to split.
    async fn call<T, F, Fut>(&self, what: &str, mut call: F) -> std::result::Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, RpcError<TransportErrorKind>>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.throttle().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let failure = match tokio::time::timeout(self.timeout, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => classify(&e),
                Err(_) => Failure::Transient(format!("no answer within {:?}", self.timeout)),
            };
            // HTTP client errors quote the URL, and hosted RPC URLs carry API keys.
            let failure = match failure {
                Failure::TooLarge(m) => Failure::TooLarge(self.scrub(m)),
                Failure::Transient(m) => Failure::Transient(self.scrub(m)),
                Failure::Fatal(m) => Failure::Fatal(self.scrub(m)),
            };
            match failure {
                Failure::Transient(m) if attempt < self.retries => {
                    self.retried.fetch_add(1, Ordering::Relaxed);
                    // Exponential backoff with full jitter: 100 ms, 200 ms, ... capped at 10 s.
                    let cap = Duration::from_millis(100u64.saturating_mul(1 << attempt.min(7)))
                        .min(Duration::from_secs(10));
                    let sleep = cap.mul_f64(rand::rng().random::<f64>());
                    tracing::debug!(what, attempt, %m, ?sleep, "retrying");
                    tokio::time::sleep(sleep).await;
                }
                Failure::Transient(m) => {
                    return Err(Failure::Fatal(format!(
                        "{what}: gave up after {attempt} attempts: {m}"
                    )));
                }
                Failure::Fatal(m) => return Err(Failure::Fatal(format!("{what}: {m}"))),
                Failure::TooLarge(m) => return Err(Failure::TooLarge(m)),
            }
        }
    }

    fn scrub(&self, mut m: String) -> String {
        for u in &self.url_spellings {
            m = m.replace(u.as_str(), &self.url_redacted);
        }
        m
    }

    fn fatal(method: &str, m: String) -> DataError {
        DataError::Rpc {
            method: method.into(),
            attempts: 0,
            message: m,
        }
    }

    /// All logs of `pools` in `[a, b]`, splitting spans as needed.
    async fn logs(&self, pools: &[Address], a: u64, b: u64) -> Result<Vec<Log>> {
        let mut out = Vec::new();
        let mut start = a;
        while start <= b {
            let span = self.span.load(Ordering::Relaxed).max(1);
            let end = b.min(start + span - 1);
            let filter = Filter::new()
                .address(pools.to_vec())
                .from_block(start)
                .to_block(end);
            match self
                .call("eth_getLogs", || self.provider.get_logs(&filter))
                .await
            {
                Ok(logs) if logs.len() > MAX_LOGS_PER_REQUEST && end > start => {
                    self.splits.fetch_add(1, Ordering::Relaxed);
                    self.span
                        .store((end - start).div_ceil(2).max(1), Ordering::Relaxed);
                }
                Ok(logs) => {
                    if logs.len() < MAX_LOGS_PER_REQUEST / 4 && end - start + 1 == span {
                        self.span
                            .store((span * 2).min(self.max_span), Ordering::Relaxed);
                    }
                    out.extend(logs);
                    start = end + 1;
                }
                Err(Failure::TooLarge(m)) if end > start => {
                    tracing::debug!(start, end, %m, "range refused, splitting");
                    self.splits.fetch_add(1, Ordering::Relaxed);
                    self.span
                        .store((end - start).div_ceil(2).max(1), Ordering::Relaxed);
                }
                Err(Failure::TooLarge(m)) | Err(Failure::Fatal(m)) | Err(Failure::Transient(m)) => {
                    return Err(Self::fatal(
                        "eth_getLogs",
                        format!("blocks {start}..{end}: {m}"),
                    ));
                }
            }
        }
        Ok(out)
    }

    /// Headers of `[a, b]` in JSON-RPC batches.
    async fn headers(&self, chain_id: u64, a: u64, b: u64) -> Result<Vec<BlockRow>> {
        let mut out = Vec::with_capacity((b - a + 1) as usize);
        let mut start = a;
        while start <= b {
            let end = b.min(start + HEADER_BATCH - 1);
            let blocks = self
                .call("eth_getBlockByNumber", || async {
                    let mut batch = self.client.new_batch();
                    let mut waiters = Vec::new();
                    for n in start..=end {
                        waiters.push(batch.add_call::<_, Option<alloy::rpc::types::Block>>(
                            "eth_getBlockByNumber",
                            &(U64::from(n), false),
                        )?);
                    }
                    batch.send().await?;
                    let mut got = Vec::with_capacity(waiters.len());
                    for w in waiters {
                        got.push(w.await?);
                    }
                    Ok(got)
                })
                .await
                .map_err(|f| {
                    let m = f.message();
                    Self::fatal(
                        "eth_getBlockByNumber",
                        format!("blocks {start}..{end}: {m}"),
                    )
                })?;
            for (n, blk) in (start..=end).zip(blocks) {
                let blk = blk.ok_or_else(|| {
                    Self::fatal(
                        "eth_getBlockByNumber",
                        format!("block {n} is not known to the node"),
                    )
                })?;
                let h = &blk.header;
                out.push(BlockRow {
                    number: h.number,
                    hash: Some(h.hash),
                    parent_hash: Some(h.parent_hash),
                    timestamp: h.timestamp,
                    base_fee_per_gas: h.base_fee_per_gas,
                    gas_used: Some(h.gas_used),
                    gas_limit: Some(h.gas_limit),
                    chain_id,
                });
            }
            start = end + 1;
        }
        Ok(out)
    }

    /// Receipt objects of each of `numbers`' blocks by `eth_getBlockReceipts`, in JSON-RPC batches.
    /// `None` when the node does not serve the method (or refuses even one block's receipts as
    /// too large): the caller then asks for each transaction's receipt.
    async fn block_receipts(
        &self,
        numbers: &[u64],
    ) -> Result<Option<Vec<(u64, Vec<serde_json::Value>)>>> {
        const METHOD: &str = "eth_getBlockReceipts";
        let mut out = Vec::with_capacity(numbers.len());
        let mut size = BLOCK_RECEIPTS_BATCH;
        let mut i = 0;
        while i < numbers.len() {
            let group = &numbers[i..numbers.len().min(i + size)];
            let got = self
                .call(METHOD, || async {
                    let mut batch = self.client.new_batch();
                    let mut waiters = Vec::with_capacity(group.len());
                    for n in group {
                        waiters.push(batch.add_call::<_, Option<Vec<serde_json::Value>>>(
                            METHOD,
                            &(U64::from(*n),),
                        )?);
                    }
                    batch.send().await?;
                    let mut got = Vec::with_capacity(waiters.len());
                    for w in waiters {
                        got.push(w.await?);
                    }
                    Ok(got)
                })
                .await;
            let got = match got {
                Ok(got) => got,
                Err(Failure::TooLarge(m)) if size > 1 => {
                    tracing::debug!(%m, "block receipts too large in a batch: one block per call");
                    size = 1;
                    continue;
                }
                Err(Failure::TooLarge(m)) => {
                    tracing::warn!(block = group[0], %m, "block receipts refused as too large");
                    return Ok(None);
                }
                Err(f) => {
                    let m = f.message();
                    if method_unsupported(&m) {
                        tracing::warn!(%m, "the node does not serve {METHOD}");
                        return Ok(None);
                    }
                    return Err(Self::fatal(
                        METHOD,
                        format!("blocks {}..{}: {m}", group[0], group[group.len() - 1]),
                    ));
                }
            };
            for (n, r) in group.iter().zip(got) {
                let r = r.ok_or_else(|| {
                    Self::fatal(METHOD, format!("block {n} is not known to the node"))
                })?;
                out.push((*n, r));
            }
            i += group.len();
        }
        Ok(Some(out))
    }

    /// Receipt objects of `hashes` by `eth_getTransactionReceipt`, in JSON-RPC batches; a
    /// transaction the node does not know is left out (the caller treats that as a reorg).
    async fn tx_receipts(&self, hashes: &[B256]) -> Result<Vec<serde_json::Value>> {
        const METHOD: &str = "eth_getTransactionReceipt";
        let mut out = Vec::with_capacity(hashes.len());
        for group in hashes.chunks(TX_RECEIPTS_BATCH) {
            let got = self
                .call(METHOD, || async {
                    let mut batch = self.client.new_batch();
                    let mut waiters = Vec::with_capacity(group.len());
                    for h in group {
                        waiters
                            .push(batch.add_call::<_, Option<serde_json::Value>>(METHOD, &(*h,))?);
                    }
                    batch.send().await?;
                    let mut got = Vec::with_capacity(waiters.len());
                    for w in waiters {
                        got.push(w.await?);
                    }
                    Ok(got)
                })
                .await
                .map_err(|f| {
                    let m = f.message();
                    Self::fatal(METHOD, format!("tx {} and following: {m}", group[0]))
                })?;
            out.extend(got.into_iter().flatten());
        }
        Ok(out)
    }

    /// The `transactions` rows of a chunk: one per transaction that emitted one of `logs`.
    async fn transactions(
        &self,
        chain_id: u64,
        logs: &[RawLog],
        blocks: &[BlockRow],
    ) -> Result<ChunkReceipts> {
        let mut out = ChunkReceipts::default();
        // Transaction hash -> (block, index) as the logs place it.
        let want: HashMap<B256, (u64, u64)> = logs
            .iter()
            .map(|l| (l.transaction_hash, (l.block_number, l.transaction_index)))
            .collect();
        if want.is_empty() {
            return Ok(out);
        }
        let mut raw: Option<(&str, Vec<serde_json::Value>)> = None;
        if self.block_receipts.load(Ordering::Relaxed) {
            let mut numbers: Vec<u64> = want.values().map(|w| w.0).collect();
            numbers.sort_unstable();
            numbers.dedup();
            match self.block_receipts(&numbers).await? {
                Some(by_block) => {
                    raw = Some((
                        "eth_getBlockReceipts",
                        by_block.into_iter().flat_map(|b| b.1).collect(),
                    ))
                }
                None => self.block_receipts.store(false, Ordering::Relaxed),
            }
        }
        let (method, raw): (&str, Vec<serde_json::Value>) = match raw {
            Some(r) => r,
            None => {
                let mut hashes: Vec<B256> = want.keys().copied().collect();
                hashes.sort_unstable();
                (
                    "eth_getTransactionReceipt",
                    self.tx_receipts(&hashes).await?,
                )
            }
        };
        let base_fee: HashMap<u64, Option<u64>> = blocks
            .iter()
            .map(|b| (b.number, b.base_fee_per_gas))
            .collect();
        let mut found: HashSet<B256> = HashSet::with_capacity(want.len());
        let mismatch = |n: u64, out: &mut ChunkReceipts| {
            out.mismatch = Some(out.mismatch.map_or(n, |m: u64| m.min(n)));
        };
        for v in &raw {
            // Most of a block's receipts belong to transactions we do not track: only those we do
            // are parsed, so an odd receipt elsewhere in the block cannot stop the ingestion.
            let Some(hash) = v
                .get("transactionHash")
                .and_then(|h| h.as_str())
                .and_then(|h| h.parse::<B256>().ok())
            else {
                continue;
            };
            let Some(&(block, index)) = want.get(&hash) else {
                continue;
            };
            let r = Receipt::from_json(v)
                .map_err(|m| Self::fatal(method, format!("block {block}: {m}")))?;
            if r.block_number() != block || r.transaction_index() != index {
                mismatch(block, &mut out);
                continue;
            }
            if let Some(h) = r.block_hash {
                out.block_hashes.push((block, h));
            }
            let row = r
                .to_row(chain_id, base_fee.get(&block).copied().flatten())
                .map_err(|m| Self::fatal(method, m))?;
            if found.insert(hash) {
                out.rows.push(row);
            }
        }
        for (hash, (block, _)) in &want {
            if !found.contains(hash) {
                mismatch(*block, &mut out);
            }
        }
        out.rows
            .sort_by_key(|t| (t.block_number, t.transaction_index));
        out.block_hashes.sort_unstable();
        out.block_hashes.dedup();
        Ok(out)
    }

    async fn block_hashes(&self, numbers: &[u64]) -> Result<Vec<Option<B256>>> {
        let mut out = Vec::new();
        for n in numbers {
            let b = self
                .call("eth_getBlockByNumber", || {
                    std::future::IntoFuture::into_future(
                        self.provider.get_block_by_number((*n).into()),
                    )
                })
                .await
                .map_err(|f| {
                    let m = f.message();
                    Self::fatal("eth_getBlockByNumber", m)
                })?;
            out.push(b.map(|b| b.header.hash));
        }
        Ok(out)
    }
}

/// A log from an RPC answer as a dataset row; pending logs (no block number) are rejected.
pub fn raw_log(l: &Log, chain_id: u64) -> Result<RawLog> {
    let missing = |f: &str| DataError::Rpc {
        method: "eth_getLogs".into(),
        attempts: 0,
        message: format!("log without {f} (pending logs are not ingested)"),
    };
    let raw = RawLog {
        block_number: l.block_number.ok_or_else(|| missing("blockNumber"))?,
        block_hash: l.block_hash,
        transaction_index: l
            .transaction_index
            .ok_or_else(|| missing("transactionIndex"))?,
        log_index: l.log_index.ok_or_else(|| missing("logIndex"))?,
        transaction_hash: l
            .transaction_hash
            .ok_or_else(|| missing("transactionHash"))?,
        address: l.address(),
        topics: l.topics().to_vec(),
        data: l.data().data.clone(),
        chain_id,
    };
    // The dataset stores these as u32: a node answering more is refused, not saturated.
    if let Err((field, v)) = dataset::log_fits(&raw) {
        return Err(DataError::Rpc {
            method: "eth_getLogs".into(),
            attempts: 0,
            message: format!(
                "log at {}: `{field}` {v} does not fit the dataset's u32 column",
                raw.location()
            ),
        });
    }
    Ok(raw)
}

/// The `transactions` rows of a chunk and what the receipts say about the chain.
#[derive(Debug, Default)]
struct ChunkReceipts {
    rows: Vec<TxRow>,
    /// (number, hash) of the blocks the receipts came from, checked against the headers.
    block_hashes: Vec<(u64, B256)>,
    /// First block whose receipts disagree with its logs (a transaction missing or placed
    /// elsewhere): the chain changed between the requests.
    mismatch: Option<u64>,
}

/// A fetched, not yet committed chunk.
struct Fetched {
    first: u64,
    last: u64,
    logs: Vec<RawLog>,
    blocks: Vec<BlockRow>,
    receipts: ChunkReceipts,
}

enum ChunkCheck {
    Ok,
    /// The chain changed under us: reorg at or before this block.
    Reorg(u64),
}

fn check_chunk(c: &Fetched, prev: Option<&(u64, B256)>) -> ChunkCheck {
    let mut prev_hash = prev.map(|p| p.1);
    for b in &c.blocks {
        if let (Some(ph), Some(parent)) = (prev_hash, b.parent_hash)
            && ph != parent
        {
            return ChunkCheck::Reorg(b.number);
        }
        prev_hash = b.hash;
    }
    let by_number: HashMap<u64, Option<B256>> =
        c.blocks.iter().map(|b| (b.number, b.hash)).collect();
    for l in &c.logs {
        if let (Some(lh), Some(Some(bh))) = (l.block_hash, by_number.get(&l.block_number))
            && lh != *bh
        {
            return ChunkCheck::Reorg(l.block_number);
        }
    }
    if let Some(n) = c.receipts.mismatch {
        return ChunkCheck::Reorg(n);
    }
    for (n, rh) in &c.receipts.block_hashes {
        if let Some(Some(bh)) = by_number.get(n)
            && rh != bh
        {
            return ChunkCheck::Reorg(*n);
        }
    }
    ChunkCheck::Ok
}

fn remove_chunks_from(root: &Path, from_block: u64) -> Result<Option<u64>> {
    let mut earliest = None;
    for table in CHUNK_TABLES {
        for (first, last, path) in dataset::list_chunks(root, table)? {
            if last >= from_block {
                std::fs::remove_file(&path).map_err(|e| DataError::io(&path, e))?;
                earliest = Some(earliest.map_or(first, |e: u64| e.min(first)));
            }
        }
        // Leftover temporary files of a killed run.
        if let Ok(rd) = std::fs::read_dir(root.join(table)) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    Ok(earliest)
}

/// Reads pool metadata from the chain for pools given by address.
async fn discover_pools(provider: &DynProvider, addrs: &[Address]) -> Result<Vec<PoolInfo>> {
    crate::discover::discover_pools(provider, addrs).await
}

/// Commits fetched chunks in order: tables, then the checkpoint.
struct Committer {
    root: PathBuf,
    cp_path: PathBuf,
    cp: Checkpoint,
    report: IngestReport,
    pool_map: HashMap<Address, PoolInfo>,
    bar: indicatif::ProgressBar,
    started: Instant,
}

impl Committer {
    fn commit(&mut self, chunk: Fetched) -> Result<()> {
        let s = write_chunk(
            &self.root,
            chunk.first,
            chunk.last,
            &chunk.logs,
            &chunk.blocks,
            Some(&chunk.receipts.rows),
            &self.pool_map,
        )?;
        let r = &mut self.report;
        r.transactions += s.transactions as u64;
        r.blocks += s.blocks as u64;
        r.logs += s.logs as u64;
        r.swaps += s.swaps as u64;
        r.liquidity_events += s.liquidity_events as u64;
        r.unknown_logs += s.stats.unknown;
        r.malformed
            .extend(s.malformed.iter().map(ToString::to_string));
        r.chunks += 1;
        let cp = &mut self.cp;
        cp.tail.extend(
            chunk
                .blocks
                .iter()
                .filter_map(|b| b.hash.map(|h| (b.number, h))),
        );
        if cp.tail.len() > TAIL {
            cp.tail.drain(..cp.tail.len() - TAIL);
        }
        cp.next_block = chunk.last + 1;
        dataset::write_json_atomic(&self.cp_path, cp)?;
        self.bar.inc(chunk.last - chunk.first + 1);
        let el = self.started.elapsed().as_secs_f64().max(1e-9);
        self.bar
            .set_message(format!("{:.0} logs/s", r.logs as f64 / el));
        Ok(())
    }
}

/// The node of `cfg`, with its rate limit, timeout and retries.
fn connect(cfg: &IngestConfig) -> Result<(Arc<Rpc>, DynProvider)> {
    let url: alloy::transports::http::reqwest::Url = cfg
        .rpc_url
        .parse()
        .map_err(|e| DataError::Config(format!("--rpc `{}`: {e}", redact(&cfg.rpc_url))))?;
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url.clone())
        .erased();
    let rpc = Arc::new(Rpc {
        provider: provider.clone(),
        client: alloy::rpc::client::RpcClient::new_http(url.clone()),
        timeout: cfg.timeout,
        retries: cfg.retries,
        min_interval: (cfg.rate_per_sec > 0.0)
            .then(|| Duration::from_secs_f64(1.0 / cfg.rate_per_sec)),
        next_slot: tokio::sync::Mutex::new(Instant::now()),
        requests: AtomicU64::new(0),
        retried: AtomicU64::new(0),
        splits: AtomicU64::new(0),
        span: AtomicU64::new(cfg.initial_span.min(cfg.chunk_blocks)),
        max_span: cfg.chunk_blocks,
        block_receipts: AtomicBool::new(true),
        url_spellings: url_spellings(&cfg.rpc_url, &url),
        url_redacted: redact(&cfg.rpc_url),
    });
    Ok((rpc, provider))
}

/// Runs (or resumes) an ingestion.
pub async fn ingest(cfg: IngestConfig) -> Result<IngestReport> {
    cfg.validate()?;
    let started = Instant::now();
    let (rpc, provider) = connect(&cfg)?;
    let chain_id = rpc
        .call("eth_chainId", || provider.get_chain_id())
        .await
        .map_err(|f| {
            let m = f.message();
            Rpc::fatal("eth_chainId", m)
        })?;
    let mut pools = cfg.pools.clone();
    if !cfg.pool_addresses.is_empty() {
        pools.extend(discover_pools(&provider, &cfg.pool_addresses).await?);
    }
    crate::manifest::validate_pools(&pools)
        .map_err(|m| DataError::Config(format!("pool metadata: {m}")))?;
    let mut pool_addrs: Vec<Address> = pools.iter().map(|p| p.address).collect();
    pool_addrs.sort();
    pool_addrs.dedup();
    let pool_map: HashMap<Address, PoolInfo> =
        pools.iter().map(|p| (p.address, p.clone())).collect();
    let from = cfg.from.expect("validated");
    let root = &cfg.out;
    // One writer at a time; held until the run ends (or the process dies).
    let _lock = crate::outdir::OutputLock::acquire(root)?;
    let cp_path = root.join("checkpoint.json");
    let same_run =
        |cp: &Checkpoint| cp.chain_id == chain_id && cp.pools == pool_addrs && cp.from == from;
    if !crate::outdir::is_empty_or_absent(root)? {
        // Resume only what this run can prove is its own: a checkpoint of the same chain, pools
        // and first block. Anything else is replaced only when asked.
        let resumable = match cp_path.exists() {
            true => same_run(&dataset::read_json::<Checkpoint>(&cp_path)?),
            false => false,
        };
        if !resumable && cfg.force {
            crate::outdir::clear(root)?;
        } else if !cp_path.exists() {
            return Err(crate::outdir::exists_error(
                root,
                "files that are not an ingestion in progress (no checkpoint.json)",
            ));
        }
    }
    std::fs::create_dir_all(root).map_err(|e| DataError::io(root, e))?;

    let mut cp: Checkpoint = if cp_path.exists() {
        let cp: Checkpoint = dataset::read_json(&cp_path)?;
        if !same_run(&cp) {
            return Err(DataError::Dataset {
                path: root.clone(),
                message: format!(
                    "holds an ingestion of chain {} from block {} for {} pool(s); this run asks for chain {chain_id} from block {from} for {} pool(s): use another --out, or --force to start over",
                    cp.chain_id,
                    cp.from,
                    cp.pools.len(),
                    pool_addrs.len()
                ),
            });
        }
        cp
    } else {
        Checkpoint {
            chain_id,
            pools: pool_addrs.clone(),
            from,
            next_block: from,
            tail: Vec::new(),
        }
    };
    if cfg.snapshot && !cp_path.exists() && from > 0 {
        let snaps = crate::snapshot::snapshot_pools(&provider, &pools, from - 1).await?;
        crate::snapshot::save(root, &snaps)?;
    }
    let mut report = IngestReport {
        chain_id,
        from,
        resumed_at: (cp.next_block > from).then_some(cp.next_block),
        ..Default::default()
    };
    dataset::write_meta(
        root,
        &DatasetMeta {
            dexlab_version: env!("CARGO_PKG_VERSION").into(),
            chain_id,
            source: redact(&cfg.rpc_url),
            pools,
            transactions: Some(true),
        },
    )?;

    // Reorg check of what is already committed.
    if !cp.tail.is_empty() {
        let numbers: Vec<u64> = cp.tail.iter().map(|t| t.0).collect();
        let hashes = rpc.block_hashes(&numbers).await?;
        if let Some(pos) = cp
            .tail
            .iter()
            .zip(&hashes)
            .position(|((_, h), node)| node.as_ref() != Some(h))
        {
            let ancestor = if pos == 0 {
                cp.tail[0].0.saturating_sub(1).max(from.saturating_sub(1))
            } else {
                cp.tail[pos - 1].0
            };
            if pos == 0 && cp.tail[0].0 > from {
                tracing::warn!(
                    "reorg deeper than the {TAIL} checked blocks: refetching from {}",
                    cp.tail[0].0
                );
            }
            let refetch = (ancestor + 1).max(from);
            tracing::warn!(
                ancestor,
                "reorg detected in committed blocks; refetching from {refetch}"
            );
            cp.tail.retain(|t| t.0 < refetch);
            cp.next_block = refetch;
            report.reorgs.push(ReorgEvent {
                common_ancestor: ancestor,
                refetched_from: refetch,
            });
        }
    }

    loop {
        // Whatever lies past the checkpoint is from a killed run or a reorged branch.
        if let Some(earliest) = remove_chunks_from(root, cp.next_block)?
            && earliest < cp.next_block
        {
            // A partial chunk straddled next_block: its earlier blocks must be fetched again.
            cp.tail.retain(|t| t.0 < earliest);
            cp.next_block = earliest;
        }
        dataset::write_json_atomic(&cp_path, &cp)?;
        let head = rpc
            .call("eth_blockNumber", || provider.get_block_number())
            .await
            .map_err(|f| {
                let m = f.message();
                Rpc::fatal("eth_blockNumber", m)
            })?;
        let safe_head = head.saturating_sub(cfg.confirmations);
        let to = cfg.to.map_or(safe_head, |t| t.min(safe_head));
        if u32::try_from(to).is_err() {
            return Err(DataError::Config(format!(
                "block {to} does not fit the dataset's u32 block numbers"
            )));
        }
        report.to = to;
        if cp.next_block > to {
            break;
        }
        let mut ranges = Vec::new();
        let mut s = cp.next_block;
        while s <= to {
            let cell_end = from + ((s - from) / cfg.chunk_blocks + 1) * cfg.chunk_blocks - 1;
            let e = cell_end.min(to);
            ranges.push((s, e));
            s = e + 1;
        }
        let bar = if cfg.progress {
            indicatif::ProgressBar::new(to - cp.next_block + 1)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} blocks {per_sec} {msg} eta {eta}",
            )
            .expect("valid template"),
        );
        let committer_tail_hint = cp.tail.last().copied();
        let rpc2 = rpc.clone();
        let addrs = pool_addrs.clone();
        let mut stream = futures::stream::iter(ranges)
            .map(move |(a, b)| {
                let rpc = rpc2.clone();
                let addrs = addrs.clone();
                async move {
                    let (logs, blocks) =
                        tokio::try_join!(rpc.logs(&addrs, a, b), rpc.headers(chain_id, a, b))?;
                    let mut logs = logs
                        .iter()
                        .map(|l| raw_log(l, chain_id))
                        .collect::<Result<Vec<_>>>()?;
                    logs.sort_by_key(RawLog::key);
                    let receipts = rpc.transactions(chain_id, &logs, &blocks).await?;
                    Ok::<_, DataError>(Fetched {
                        first: a,
                        last: b,
                        logs,
                        blocks,
                        receipts,
                    })
                }
            })
            .buffered(cfg.concurrency);
        // Writing runs on a blocking thread while the next chunks are fetched.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Fetched>(1);
        let mut committer = Committer {
            root: root.clone(),
            cp_path: cp_path.clone(),
            cp,
            report,
            pool_map: pool_map.clone(),
            bar,
            started,
        };
        let writer = tokio::task::spawn_blocking(move || -> Result<Committer> {
            while let Some(chunk) = rx.blocking_recv() {
                committer.commit(chunk)?;
            }
            Ok(committer)
        });
        let mut last_ok = committer_tail_hint;
        let mut reorg_at = None;
        let mut fetch_error = None;
        loop {
            match stream.try_next().await {
                Ok(Some(chunk)) => {
                    if let ChunkCheck::Reorg(n) = check_chunk(&chunk, last_ok.as_ref()) {
                        reorg_at = Some(n);
                        break;
                    }
                    last_ok = chunk
                        .blocks
                        .last()
                        .and_then(|b| b.hash.map(|h| (b.number, h)));
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed: its error is reported below
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    fetch_error = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        drop(stream);
        let committer = writer.await.map_err(|e| DataError::Dataset {
            path: root.clone(),
            message: format!("writer task failed: {e}"),
        })??;
        committer.bar.finish_and_clear();
        cp = committer.cp;
        report = committer.report;
        if let Some(e) = fetch_error {
            return Err(e);
        }
        let Some(n) = reorg_at else { break };
        // The chain changed during the run: step back past the fork and go again.
        let back = n.saturating_sub(TAIL as u64 / 2).max(from);
        let ancestor = back.saturating_sub(1);
        tracing::warn!(
            block = n,
            "reorg detected during ingestion; refetching from {back}"
        );
        report.reorgs.push(ReorgEvent {
            common_ancestor: ancestor,
            refetched_from: back,
        });
        cp.tail.retain(|t| t.0 < back);
        cp.next_block = back.min(cp.next_block);
    }
    report.receipts_method = Some(
        if rpc.block_receipts.load(Ordering::Relaxed) {
            "eth_getBlockReceipts"
        } else {
            "eth_getTransactionReceipt"
        }
        .into(),
    );
    report.requests = rpc.requests.load(Ordering::Relaxed);
    report.retries = rpc.retried.load(Ordering::Relaxed);
    report.splits = rpc.splits.load(Ordering::Relaxed);
    report.elapsed_s = started.elapsed().as_secs_f64();
    report.blocks_per_s = report.blocks as f64 / report.elapsed_s.max(1e-9);
    report.logs_per_s = report.logs as f64 / report.elapsed_s.max(1e-9);
    Ok(report)
}

/// An ingestion resolved against its node before any block is fetched: what
/// `dexlab data ingest --nats` splits into tasks that workers ingest apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestPlan {
    pub chain_id: u64,
    /// Every pool, with its metadata (those given by address read from the chain).
    pub pools: Vec<PoolInfo>,
    pub from: u64,
    /// The last block: `--to`, or the node's head less the confirmations.
    pub to: u64,
    /// The hash of block `to` when planned: a task's stored result is reused only for the same
    /// chain.
    pub to_hash: B256,
}

/// Resolves `cfg` against its node: the chain, the pools and the last block.
pub async fn plan(cfg: &IngestConfig) -> Result<IngestPlan> {
    cfg.validate()?;
    let (rpc, provider) = connect(cfg)?;
    let chain_id = rpc
        .call("eth_chainId", || provider.get_chain_id())
        .await
        .map_err(|f| Rpc::fatal("eth_chainId", f.message()))?;
    let mut pools = cfg.pools.clone();
    if !cfg.pool_addresses.is_empty() {
        pools.extend(discover_pools(&provider, &cfg.pool_addresses).await?);
    }
    crate::manifest::validate_pools(&pools)
        .map_err(|m| DataError::Config(format!("pool metadata: {m}")))?;
    let head = rpc
        .call("eth_blockNumber", || provider.get_block_number())
        .await
        .map_err(|f| Rpc::fatal("eth_blockNumber", f.message()))?;
    let from = cfg.from.expect("validated");
    let safe_head = head.saturating_sub(cfg.confirmations);
    let to = cfg.to.map_or(safe_head, |t| t.min(safe_head));
    if to < from {
        return Err(DataError::Config(format!(
            "nothing to ingest: the last block with {} confirmations is {to}, before --from {from}",
            cfg.confirmations
        )));
    }
    if u32::try_from(to).is_err() {
        return Err(DataError::Config(format!(
            "block {to} does not fit the dataset's u32 block numbers"
        )));
    }
    let to_hash = rpc.block_hashes(&[to]).await?[0].ok_or_else(|| {
        DataError::Config(format!("the node has no block {to} (its head is {head})"))
    })?;
    Ok(IngestPlan {
        chain_id,
        pools,
        from,
        to,
        to_hash,
    })
}

/// The block ranges of a split ingestion: whole chunk cells of `chunk_blocks` counted from
/// `from` (as one ingestion counts them, so that every task writes the very chunk files a
/// single run would), `cells` of them per range.
pub fn task_ranges(from: u64, to: u64, chunk_blocks: u64, cells: u64) -> Vec<(u64, u64)> {
    let step = chunk_blocks.max(1).saturating_mul(cells.max(1));
    let mut out = Vec::new();
    let mut a = from;
    while a <= to {
        let b = a.saturating_add(step - 1).min(to);
        out.push((a, b));
        if b == u64::MAX {
            break;
        }
        a = b + 1;
    }
    out
}

/// Makes `root`, whose chunk files of `plan.from..=plan.to` were ingested apart and placed in
/// it, the dataset one ingestion of `cfg` would have made: the pools' snapshot (when asked),
/// the metadata, and the checkpoint a later `dexlab data ingest` resumes from. Refused when
/// the blocks are not one unbroken chain (a reorg between tasks): then run it again.
pub async fn finish_split(cfg: &IngestConfig, plan: &IngestPlan, root: &Path) -> Result<()> {
    if cfg.snapshot && plan.from > 0 {
        let (_, provider) = connect(cfg)?;
        let snaps = crate::snapshot::snapshot_pools(&provider, &plan.pools, plan.from - 1).await?;
        crate::snapshot::save(root, &snaps)?;
    }
    dataset::write_meta(
        root,
        &DatasetMeta {
            dexlab_version: env!("CARGO_PKG_VERSION").into(),
            chain_id: plan.chain_id,
            source: redact(&cfg.rpc_url),
            pools: plan.pools.clone(),
            transactions: Some(true),
        },
    )?;
    let blocks = dataset::read_all_blocks(root)?;
    let bad = |message: String| DataError::Dataset {
        path: root.to_path_buf(),
        message,
    };
    let mut expect = plan.from;
    for (i, b) in blocks.iter().enumerate() {
        if b.number != expect {
            return Err(bad(format!(
                "block {expect} is missing from the assembled chunks (found {} next)",
                b.number
            )));
        }
        if i > 0 && b.parent_hash.is_some() && b.parent_hash != blocks[i - 1].hash {
            return Err(bad(format!(
                "block {}'s parent is not the block {} of the chunk before: the chain \
                 reorganised between tasks; run the ingestion again",
                b.number,
                b.number - 1
            )));
        }
        expect += 1;
    }
    if expect != plan.to + 1 {
        return Err(bad(format!(
            "the assembled chunks end at block {}, not {}",
            expect.saturating_sub(1),
            plan.to
        )));
    }
    let mut pools: Vec<Address> = plan.pools.iter().map(|p| p.address).collect();
    pools.sort();
    pools.dedup();
    let tail: Vec<(u64, B256)> = blocks
        .iter()
        .filter_map(|b| b.hash.map(|h| (b.number, h)))
        .collect();
    let cp = Checkpoint {
        chain_id: plan.chain_id,
        pools,
        from: plan.from,
        next_block: plan.to + 1,
        tail: tail[tail.len().saturating_sub(TAIL)..].to_vec(),
    };
    dataset::write_json_atomic(&root.join("checkpoint.json"), &cp)
}

/// Every way an HTTP client may print `url` (with or without user info and trailing slash),
/// longest first so that replacing them in order leaves no fragment.
fn url_spellings(raw: &str, url: &alloy::transports::http::reqwest::Url) -> Vec<String> {
    let mut bare = url.clone();
    let _ = bare.set_username("");
    let _ = bare.set_password(None);
    let mut v: Vec<String> = [raw.to_string(), url.to_string(), bare.to_string()]
        .into_iter()
        .flat_map(|s| [s.clone(), s.trim_end_matches('/').to_string()])
        .filter(|s| !s.is_empty())
        .collect();
    v.sort_by_key(|s| std::cmp::Reverse(s.len()));
    v.dedup();
    v
}

/// An RPC URL fit for logs: user info and query strings (where API keys live) removed.
pub fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            let rest = rest.split(['?', '#']).next().unwrap_or(rest);
            // Path segments of hosted RPCs often carry the key: keep only the host.
            let host = rest.split('/').next().unwrap_or(rest);
            let had_path = rest.len() > host.len() + 1;
            format!("{scheme}://{host}{}", if had_path { "/…" } else { "" })
        }
        None => "<rpc>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_credentials() {
        assert_eq!(
            redact("https://user:pw@rpc.example.org/v2/SECRETKEY?x=1"),
            "https://rpc.example.org/…"
        );
        assert_eq!(redact("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
    }

    #[test]
    fn split_ranges_are_whole_cells_from_the_first_block() {
        // Cells of 25 from block 10, two per range: 10..=59, 60..=109, then the rest.
        assert_eq!(
            task_ranges(10, 130, 25, 2),
            vec![(10, 59), (60, 109), (110, 130)]
        );
        assert_eq!(task_ranges(5, 5, 1000, 10), vec![(5, 5)]);
        assert!(task_ranges(6, 5, 10, 1).is_empty());
        // Every block once, in order, whatever the sizes.
        for (chunk, cells) in [(1, 1), (7, 3), (1000, 1)] {
            let r = task_ranges(100, 1234, chunk, cells);
            assert_eq!(r[0].0, 100);
            assert_eq!(r.last().unwrap().1, 1234);
            assert!(r.windows(2).all(|w| w[1].0 == w[0].1 + 1));
            assert!(r.iter().all(|(a, _)| (a - 100) % (chunk * cells) == 0));
        }
    }

    #[test]
    fn chunk_check_catches_broken_parent_links() {
        let b = |n: u64, h: u8, p: u8| BlockRow {
            number: n,
            hash: Some(B256::repeat_byte(h)),
            parent_hash: Some(B256::repeat_byte(p)),
            timestamp: 0,
            base_fee_per_gas: None,
            gas_used: None,
            gas_limit: None,
            chain_id: 1,
        };
        let ok = Fetched {
            first: 1,
            last: 2,
            logs: vec![],
            blocks: vec![b(1, 1, 0), b(2, 2, 1)],
            receipts: ChunkReceipts::default(),
        };
        assert!(matches!(
            check_chunk(&ok, Some(&(0, B256::repeat_byte(0)))),
            ChunkCheck::Ok
        ));
        assert!(matches!(
            check_chunk(&ok, Some(&(0, B256::repeat_byte(9)))),
            ChunkCheck::Reorg(1)
        ));
        let bad = Fetched {
            first: 1,
            last: 2,
            logs: vec![],
            blocks: vec![b(1, 1, 0), b(2, 2, 7)],
            receipts: ChunkReceipts::default(),
        };
        assert!(matches!(check_chunk(&bad, None), ChunkCheck::Reorg(2)));
        // Receipts from another version of block 2, or missing a transaction of block 1.
        let other_receipts = Fetched {
            receipts: ChunkReceipts {
                block_hashes: vec![(1, B256::repeat_byte(1)), (2, B256::repeat_byte(8))],
                ..Default::default()
            },
            ..ok
        };
        assert!(matches!(
            check_chunk(&other_receipts, None),
            ChunkCheck::Reorg(2)
        ));
        let missing = Fetched {
            receipts: ChunkReceipts {
                mismatch: Some(1),
                ..Default::default()
            },
            ..other_receipts
        };
        assert!(matches!(check_chunk(&missing, None), ChunkCheck::Reorg(1)));
    }
}

//! The on-disk dataset: one Parquet file per table and block-range chunk.
//!
//! ```text
//! DIR/
//!   dataset.json                       chain id, pools, ranges written (see [`DatasetMeta`])
//!   checkpoint.json                    ingestion progress (see `ingest`)
//!   pools.parquet
//!   logs/logs_<first>_<last>.parquet   cryo's logs layout, so cryo output and ours mix
//!   blocks/blocks_<first>_<last>.parquet
//!   swaps/swaps_<first>_<last>.parquet
//!   liquidity_events/liquidity_events_<first>_<last>.parquet
//!   transactions/transactions_<first>_<last>.parquet   ingested datasets only (see below)
//! ```
//!
//! `transactions` has one row per transaction that emitted a tracked event, from its receipt:
//! sender, status, gas used, effective gas price, the priority fee it paid over the block's base
//! fee, and on OP-stack chains the receipt's L1 fee fields ([`TxRow`]). Imported logs carry no
//! receipts, so an imported dataset has no such table ([`read_all_transactions`] gives `None`).
//!
//! Every file is written to `*.tmp` and renamed, so a reader never sees half a file.
//!
//! A dataset checks itself when it is opened ([`read_meta`] runs [`check`]): every table present
//! with a file for every block range, every file readable by its footer and holding only blocks of
//! its range, a header for every block with a log, usable pool metadata. A dataset that fails is
//! refused with the list of what is missing or damaged, each with its file; `data inspect` shows
//! the same list instead of refusing.
//!
//! Representation of wide integers: 256-bit amounts and reserves, 160-bit sqrt prices and 128-bit
//! liquidities are `Utf8` columns holding the exact base-10 integer (signed amounts with a leading
//! `-`). That is lossless, readable by every Parquet reader and castable to Decimal/Int128 where the
//! value fits. `*_float` columns next to them are human-unit conveniences for features and reports,
//! never for money paths. In `logs`, hashes, addresses, topics and data are raw `Binary` as in cryo;
//! in derived tables hashes and addresses are `0x…` lowercase hex strings.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes};
use arrow::array::{
    Array, ArrayRef, AsArray, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder,
    RecordBatch, StringBuilder, UInt8Builder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
pub use crate::types::TxRow;
use crate::types::{BlockRow, PoolInfo, RawLog};

pub const LOGS: &str = "logs";
pub const BLOCKS: &str = "blocks";
pub const SWAPS: &str = "swaps";
pub const LIQUIDITY_EVENTS: &str = "liquidity_events";
pub const TRANSACTIONS: &str = "transactions";
pub const CHUNK_TABLES: [&str; 5] = [LOGS, BLOCKS, SWAPS, LIQUIDITY_EVENTS, TRANSACTIONS];

/// The columns every event table starts with: which log, of which pool, when.
#[derive(Debug, Clone, PartialEq)]
pub struct EventKey {
    pub chain_id: u64,
    pub block_number: u64,
    pub block_timestamp: Option<u64>,
    pub transaction_hash: B256,
    pub transaction_index: u64,
    pub log_index: u64,
    pub pool: Address,
    pub protocol: String,
}

/// One row of `swaps`: the same schema for every protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct SwapRow {
    pub key: EventKey,
    /// Pool's delta of token0, raw units, positive = into the pool (exact signed integer).
    pub amount0: String,
    pub amount1: String,
    pub sqrt_price_x96: Option<String>,
    pub liquidity: Option<String>,
    pub tick: Option<i32>,
    pub reserve0: Option<String>,
    pub reserve1: Option<String>,
    pub protocol_fee0: Option<String>,
    pub protocol_fee1: Option<String>,
    pub amount0_float: Option<f64>,
    pub amount1_float: Option<f64>,
    /// Token1 per token0 in human units after the swap.
    pub price_float: Option<f64>,
}

/// One row of `liquidity_events`: mint, burn, collect (with tick ranges on V3) and V3 initialize.
#[derive(Debug, Clone, PartialEq)]
pub struct LiquidityEventRow {
    pub key: EventKey,
    pub kind: &'static str,
    pub owner: Option<Address>,
    pub tick_lower: Option<i32>,
    pub tick_upper: Option<i32>,
    pub liquidity: Option<String>,
    pub amount0: Option<String>,
    pub amount1: Option<String>,
    pub sqrt_price_x96: Option<String>,
    pub tick: Option<i32>,
}

/// What `dataset.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DatasetMeta {
    pub dexlab_version: String,
    pub chain_id: u64,
    /// Where the data came from: an RPC URL with credentials removed, or an imported file.
    pub source: String,
    pub pools: Vec<PoolInfo>,
    /// Whether the dataset has a `transactions` table (ingested from a node with receipts).
    /// `None` in imported datasets and in those written before it was recorded: then the table
    /// is optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<bool>,
}

fn hex_str(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + b.len() * 2);
    s.push_str("0x");
    s.push_str(&hex::encode(b));
    s
}

pub fn logs_schema() -> SchemaRef {
    let bin = |n: &str, null: bool| Field::new(n, DataType::Binary, null);
    Arc::new(Schema::new(vec![
        Field::new("block_number", DataType::UInt32, false),
        bin("block_hash", true),
        Field::new("transaction_index", DataType::UInt32, false),
        Field::new("log_index", DataType::UInt32, false),
        bin("transaction_hash", false),
        bin("address", false),
        bin("topic0", true),
        bin("topic1", true),
        bin("topic2", true),
        bin("topic3", true),
        bin("data", false),
        Field::new("n_data_bytes", DataType::UInt32, false),
        Field::new("chain_id", DataType::UInt64, false),
    ]))
}

pub fn blocks_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("block_number", DataType::UInt32, false),
        Field::new("block_hash", DataType::Binary, true),
        Field::new("parent_hash", DataType::Binary, true),
        Field::new("timestamp", DataType::UInt64, false),
        Field::new("base_fee_per_gas", DataType::UInt64, true),
        Field::new("gas_used", DataType::UInt64, true),
        Field::new("gas_limit", DataType::UInt64, true),
        Field::new("chain_id", DataType::UInt64, false),
    ]))
}

fn event_prefix_fields() -> Vec<Field> {
    vec![
        Field::new("chain_id", DataType::UInt64, false),
        Field::new("block_number", DataType::UInt32, false),
        Field::new("block_timestamp", DataType::UInt64, true),
        Field::new("transaction_hash", DataType::Utf8, false),
        Field::new("transaction_index", DataType::UInt32, false),
        Field::new("log_index", DataType::UInt32, false),
        Field::new("pool", DataType::Utf8, false),
        Field::new("protocol", DataType::Utf8, false),
    ]
}

pub fn swaps_schema() -> SchemaRef {
    let mut f = event_prefix_fields();
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    f.extend([
        s("amount0", false),
        s("amount1", false),
        s("sqrt_price_x96", true),
        s("liquidity", true),
        Field::new("tick", DataType::Int32, true),
        s("reserve0", true),
        s("reserve1", true),
        s("protocol_fee0", true),
        s("protocol_fee1", true),
        Field::new("amount0_float", DataType::Float64, true),
        Field::new("amount1_float", DataType::Float64, true),
        Field::new("price_float", DataType::Float64, true),
    ]);
    Arc::new(Schema::new(f))
}

pub fn liquidity_events_schema() -> SchemaRef {
    let mut f = event_prefix_fields();
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    f.extend([
        Field::new("kind", DataType::Utf8, false),
        s("owner"),
        Field::new("tick_lower", DataType::Int32, true),
        Field::new("tick_upper", DataType::Int32, true),
        s("liquidity"),
        s("amount0"),
        s("amount1"),
        s("sqrt_price_x96"),
        Field::new("tick", DataType::Int32, true),
    ]);
    Arc::new(Schema::new(f))
}

pub fn pools_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        s("address"),
        s("protocol"),
        s("dex"),
        s("token0"),
        s("token0_symbol"),
        Field::new("token0_decimals", DataType::UInt8, false),
        s("token1"),
        s("token1_symbol"),
        Field::new("token1_decimals", DataType::UInt8, false),
        Field::new("fee", DataType::UInt32, false),
        Field::new("tick_spacing", DataType::Int32, true),
        Field::new("stable", DataType::Boolean, true),
        Field::new("chain_id", DataType::UInt64, false),
    ]))
}

pub fn transactions_schema() -> SchemaRef {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let u = |n: &str| Field::new(n, DataType::UInt64, true);
    Arc::new(Schema::new(vec![
        Field::new("chain_id", DataType::UInt64, false),
        Field::new("block_number", DataType::UInt32, false),
        Field::new("transaction_index", DataType::UInt32, false),
        s("transaction_hash", false),
        s("from", false),
        s("to", true),
        Field::new("status", DataType::Boolean, false),
        Field::new("gas_used", DataType::UInt64, false),
        s("effective_gas_price", false),
        s("priority_fee_per_gas", true),
        s("l1_fee", true),
        s("l1_gas_used", true),
        s("l1_gas_price", true),
        u("l1_base_fee_scalar"),
        s("l1_blob_base_fee", true),
        u("l1_blob_base_fee_scalar"),
        u("operator_fee_scalar"),
        u("operator_fee_constant"),
    ]))
}

/// `v` as the u32 the dataset stores it in; `at` says where, for the error.
fn u32_at(v: u64, field: &'static str, at: impl FnOnce() -> String) -> Result<u32> {
    u32::try_from(v).map_err(|_| DataError::OutOfRange {
        at: at(),
        field,
        value: v,
        ty: "u32",
    })
}

/// Whether a log's block number and indices fit the dataset's u32 columns: the first field that
/// does not, with its value.
pub fn log_fits(l: &RawLog) -> std::result::Result<(), (&'static str, u64)> {
    for (field, v) in [
        ("block_number", l.block_number),
        ("transaction_index", l.transaction_index),
        ("log_index", l.log_index),
    ] {
        if u32::try_from(v).is_err() {
            return Err((field, v));
        }
    }
    Ok(())
}

fn batch(schema: SchemaRef, cols: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(schema, cols).expect("column builders match their schema")
}

/// The `logs` rows of `logs`. A block number or index beyond u32 is an error naming the log.
pub fn logs_batch(logs: &[RawLog]) -> Result<RecordBatch> {
    let n = logs.len();
    let mut bn = UInt32Builder::with_capacity(n);
    let mut bh = BinaryBuilder::with_capacity(n, n * 32);
    let mut ti = UInt32Builder::with_capacity(n);
    let mut li = UInt32Builder::with_capacity(n);
    let mut th = BinaryBuilder::with_capacity(n, n * 32);
    let mut ad = BinaryBuilder::with_capacity(n, n * 20);
    let mut tp: [BinaryBuilder; 4] =
        std::array::from_fn(|_| BinaryBuilder::with_capacity(n, n * 32));
    let mut da = BinaryBuilder::with_capacity(n, n * 128);
    let mut nd = UInt32Builder::with_capacity(n);
    let mut ci = UInt64Builder::with_capacity(n);
    for l in logs {
        let at = || format!("log at {}", l.location());
        bn.append_value(u32_at(l.block_number, "block_number", at)?);
        bh.append_option(l.block_hash.as_ref().map(|h| h.as_slice()));
        ti.append_value(u32_at(l.transaction_index, "transaction_index", at)?);
        li.append_value(u32_at(l.log_index, "log_index", at)?);
        th.append_value(l.transaction_hash.as_slice());
        ad.append_value(l.address.as_slice());
        for (i, b) in tp.iter_mut().enumerate() {
            b.append_option(l.topics.get(i).map(|t| t.as_slice()));
        }
        da.append_value(&l.data[..]);
        nd.append_value(u32_at(l.data.len() as u64, "n_data_bytes", at)?);
        ci.append_value(l.chain_id);
    }
    let [t0, t1, t2, t3] = tp;
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(bn.finish()),
        Arc::new(bh.finish()),
        Arc::new(ti.finish()),
        Arc::new(li.finish()),
        Arc::new(th.finish()),
        Arc::new(ad.finish()),
    ];
    for mut b in [t0, t1, t2, t3] {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(da.finish()));
    cols.push(Arc::new(nd.finish()));
    cols.push(Arc::new(ci.finish()));
    Ok(batch(logs_schema(), cols))
}

pub fn blocks_batch(blocks: &[BlockRow]) -> Result<RecordBatch> {
    let n = blocks.len();
    let mut num = UInt32Builder::with_capacity(n);
    let mut h = BinaryBuilder::with_capacity(n, n * 32);
    let mut p = BinaryBuilder::with_capacity(n, n * 32);
    let mut ts = UInt64Builder::with_capacity(n);
    let mut bf = UInt64Builder::with_capacity(n);
    let mut gu = UInt64Builder::with_capacity(n);
    let mut gl = UInt64Builder::with_capacity(n);
    let mut ci = UInt64Builder::with_capacity(n);
    for b in blocks {
        num.append_value(u32_at(b.number, "block_number", || {
            format!("block {}", b.number)
        })?);
        h.append_option(b.hash.as_ref().map(|x| x.as_slice()));
        p.append_option(b.parent_hash.as_ref().map(|x| x.as_slice()));
        ts.append_value(b.timestamp);
        bf.append_option(b.base_fee_per_gas);
        gu.append_option(b.gas_used);
        gl.append_option(b.gas_limit);
        ci.append_value(b.chain_id);
    }
    Ok(batch(
        blocks_schema(),
        vec![
            Arc::new(num.finish()),
            Arc::new(h.finish()),
            Arc::new(p.finish()),
            Arc::new(ts.finish()),
            Arc::new(bf.finish()),
            Arc::new(gu.finish()),
            Arc::new(gl.finish()),
            Arc::new(ci.finish()),
        ],
    ))
}

struct PrefixBuilders {
    ci: UInt64Builder,
    bn: UInt32Builder,
    ts: UInt64Builder,
    th: StringBuilder,
    ti: UInt32Builder,
    li: UInt32Builder,
    pool: StringBuilder,
    proto: StringBuilder,
}

impl PrefixBuilders {
    fn new(n: usize) -> Self {
        Self {
            ci: UInt64Builder::with_capacity(n),
            bn: UInt32Builder::with_capacity(n),
            ts: UInt64Builder::with_capacity(n),
            th: StringBuilder::with_capacity(n, n * 66),
            ti: UInt32Builder::with_capacity(n),
            li: UInt32Builder::with_capacity(n),
            pool: StringBuilder::with_capacity(n, n * 42),
            proto: StringBuilder::with_capacity(n, n * 10),
        }
    }

    fn push(&mut self, k: &EventKey) -> Result<()> {
        let at = || {
            format!(
                "event at block {} tx {} log index {}",
                k.block_number, k.transaction_hash, k.log_index
            )
        };
        self.ci.append_value(k.chain_id);
        self.bn
            .append_value(u32_at(k.block_number, "block_number", at)?);
        self.ts.append_option(k.block_timestamp);
        self.th.append_value(hex_str(k.transaction_hash.as_slice()));
        self.ti
            .append_value(u32_at(k.transaction_index, "transaction_index", at)?);
        self.li.append_value(u32_at(k.log_index, "log_index", at)?);
        self.pool.append_value(hex_str(k.pool.as_slice()));
        self.proto.append_value(&k.protocol);
        Ok(())
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.ci.finish()),
            Arc::new(self.bn.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.th.finish()),
            Arc::new(self.ti.finish()),
            Arc::new(self.li.finish()),
            Arc::new(self.pool.finish()),
            Arc::new(self.proto.finish()),
        ]
    }
}

pub fn swaps_batch(rows: &[SwapRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut pre = PrefixBuilders::new(n);
    let mut s: [StringBuilder; 9] =
        std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 24));
    let mut tick = Int32Builder::with_capacity(n);
    let mut f: [Float64Builder; 3] = std::array::from_fn(|_| Float64Builder::with_capacity(n));
    for r in rows {
        pre.push(&r.key)?;
        s[0].append_value(&r.amount0);
        s[1].append_value(&r.amount1);
        s[2].append_option(r.sqrt_price_x96.as_deref());
        s[3].append_option(r.liquidity.as_deref());
        tick.append_option(r.tick);
        s[4].append_option(r.reserve0.as_deref());
        s[5].append_option(r.reserve1.as_deref());
        s[6].append_option(r.protocol_fee0.as_deref());
        s[7].append_option(r.protocol_fee1.as_deref());
        f[0].append_option(r.amount0_float);
        f[1].append_option(r.amount1_float);
        f[2].append_option(r.price_float);
    }
    let mut cols = pre.finish();
    let [a0, a1, sp, liq, r0, r1, pf0, pf1, _] = s;
    for mut b in [a0, a1, sp, liq] {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(tick.finish()));
    for mut b in [r0, r1, pf0, pf1] {
        cols.push(Arc::new(b.finish()));
    }
    for mut b in f {
        cols.push(Arc::new(b.finish()));
    }
    Ok(batch(swaps_schema(), cols))
}

pub fn liquidity_events_batch(rows: &[LiquidityEventRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut pre = PrefixBuilders::new(n);
    let mut kind = StringBuilder::with_capacity(n, n * 8);
    let mut owner = StringBuilder::with_capacity(n, n * 42);
    let mut tl = Int32Builder::with_capacity(n);
    let mut tu = Int32Builder::with_capacity(n);
    let mut s: [StringBuilder; 4] =
        std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 24));
    let mut tick = Int32Builder::with_capacity(n);
    for r in rows {
        pre.push(&r.key)?;
        kind.append_value(r.kind);
        owner.append_option(r.owner.map(|a| hex_str(a.as_slice())));
        tl.append_option(r.tick_lower);
        tu.append_option(r.tick_upper);
        s[0].append_option(r.liquidity.as_deref());
        s[1].append_option(r.amount0.as_deref());
        s[2].append_option(r.amount1.as_deref());
        s[3].append_option(r.sqrt_price_x96.as_deref());
        tick.append_option(r.tick);
    }
    let mut cols = pre.finish();
    cols.push(Arc::new(kind.finish()));
    cols.push(Arc::new(owner.finish()));
    cols.push(Arc::new(tl.finish()));
    cols.push(Arc::new(tu.finish()));
    for mut b in s {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(tick.finish()));
    Ok(batch(liquidity_events_schema(), cols))
}

pub fn pools_batch(pools: &[PoolInfo], chain_id: u64) -> RecordBatch {
    let n = pools.len();
    let mut s: [StringBuilder; 7] =
        std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 42));
    let mut d0 = UInt8Builder::with_capacity(n);
    let mut d1 = UInt8Builder::with_capacity(n);
    let mut fee = UInt32Builder::with_capacity(n);
    let mut ts = Int32Builder::with_capacity(n);
    let mut st = BooleanBuilder::with_capacity(n);
    let mut ci = UInt64Builder::with_capacity(n);
    for p in pools {
        s[0].append_value(hex_str(p.address.as_slice()));
        s[1].append_value(p.protocol.as_str());
        s[2].append_value(&p.dex);
        s[3].append_value(hex_str(p.token0.address.as_slice()));
        s[4].append_value(&p.token0.symbol);
        s[5].append_value(hex_str(p.token1.address.as_slice()));
        s[6].append_value(&p.token1.symbol);
        d0.append_value(p.token0.decimals);
        d1.append_value(p.token1.decimals);
        fee.append_value(p.fee);
        ts.append_option(p.tick_spacing);
        st.append_option(p.stable);
        ci.append_value(chain_id);
    }
    let [addr, proto, dex, t0, t0s, t1, t1s] = s;
    let mut cols: Vec<ArrayRef> = Vec::new();
    for mut b in [addr, proto, dex, t0, t0s] {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(d0.finish()));
    for mut b in [t1, t1s] {
        cols.push(Arc::new(b.finish()));
    }
    cols.push(Arc::new(d1.finish()));
    cols.push(Arc::new(fee.finish()));
    cols.push(Arc::new(ts.finish()));
    cols.push(Arc::new(st.finish()));
    cols.push(Arc::new(ci.finish()));
    batch(pools_schema(), cols)
}

pub fn transactions_batch(rows: &[TxRow]) -> Result<RecordBatch> {
    let n = rows.len();
    let mut ci = UInt64Builder::with_capacity(n);
    let mut bn = UInt32Builder::with_capacity(n);
    let mut ti = UInt32Builder::with_capacity(n);
    let mut th = StringBuilder::with_capacity(n, n * 66);
    let mut from = StringBuilder::with_capacity(n, n * 42);
    let mut to = StringBuilder::with_capacity(n, n * 42);
    let mut st = BooleanBuilder::with_capacity(n);
    let mut gu = UInt64Builder::with_capacity(n);
    // effective_gas_price, priority_fee_per_gas, l1_fee, l1_gas_used, l1_gas_price, l1_blob_base_fee
    let mut w: [StringBuilder; 6] =
        std::array::from_fn(|_| StringBuilder::with_capacity(n, n * 12));
    // l1_base_fee_scalar, l1_blob_base_fee_scalar, operator_fee_scalar, operator_fee_constant
    let mut u: [UInt64Builder; 4] = std::array::from_fn(|_| UInt64Builder::with_capacity(n));
    for r in rows {
        let at = || {
            format!(
                "transaction {} in block {}",
                r.transaction_hash, r.block_number
            )
        };
        ci.append_value(r.chain_id);
        bn.append_value(u32_at(r.block_number, "block_number", at)?);
        ti.append_value(u32_at(r.transaction_index, "transaction_index", at)?);
        th.append_value(hex_str(r.transaction_hash.as_slice()));
        from.append_value(hex_str(r.from.as_slice()));
        to.append_option(r.to.map(|a| hex_str(a.as_slice())));
        st.append_value(r.status);
        gu.append_value(r.gas_used);
        w[0].append_value(r.effective_gas_price.to_string());
        for (b, v) in w[1..].iter_mut().zip([
            r.priority_fee_per_gas,
            r.l1_fee,
            r.l1_gas_used,
            r.l1_gas_price,
            r.l1_blob_base_fee,
        ]) {
            b.append_option(v.map(|x| x.to_string()));
        }
        for (b, v) in u.iter_mut().zip([
            r.l1_base_fee_scalar,
            r.l1_blob_base_fee_scalar,
            r.operator_fee_scalar,
            r.operator_fee_constant,
        ]) {
            b.append_option(v);
        }
    }
    let [mut egp, mut pf, mut l1f, mut l1gu, mut l1gp, mut l1bbf] = w;
    let [mut l1bfs, mut l1bbfs, mut ofs, mut ofc] = u;
    Ok(batch(
        transactions_schema(),
        vec![
            Arc::new(ci.finish()),
            Arc::new(bn.finish()),
            Arc::new(ti.finish()),
            Arc::new(th.finish()),
            Arc::new(from.finish()),
            Arc::new(to.finish()),
            Arc::new(st.finish()),
            Arc::new(gu.finish()),
            Arc::new(egp.finish()),
            Arc::new(pf.finish()),
            Arc::new(l1f.finish()),
            Arc::new(l1gu.finish()),
            Arc::new(l1gp.finish()),
            Arc::new(l1bfs.finish()),
            Arc::new(l1bbf.finish()),
            Arc::new(l1bbfs.finish()),
            Arc::new(ofs.finish()),
            Arc::new(ofc.finish()),
        ],
    ))
}

/// Writes `batch` to `path` through `path.tmp` and a rename.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = path.with_extension("parquet.tmp");
    let file = fs::File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid zstd level"),
        ))
        .build();
    let pq = |source| DataError::Parquet {
        path: tmp.clone(),
        source,
    };
    let mut w = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(pq)?;
    w.write(batch).map_err(pq)?;
    let file = w.into_inner().map_err(pq)?;
    file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))?;
    Ok(())
}

/// Reads every record batch of one Parquet file.
pub fn read_parquet(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let pq = |source| DataError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq)?
        .with_batch_size(64 * 1024)
        .build()
        .map_err(pq)?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|source| DataError::Arrow {
            path: path.to_path_buf(),
            source,
        })
}

/// A chunk's file name: block range zero-padded so names sort by block.
pub fn chunk_path(root: &Path, table: &str, first: u64, last: u64) -> PathBuf {
    root.join(table)
        .join(format!("{table}_{first:010}_{last:010}.parquet"))
}

/// `(first, last, path)` of every chunk file of a table, in block order.
pub fn list_chunks(root: &Path, table: &str) -> Result<Vec<(u64, u64, PathBuf)>> {
    let dir = root.join(table);
    let mut out = Vec::new();
    let rd = match fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(DataError::io(&dir, e)),
    };
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(&dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".parquet") else {
            continue;
        };
        let mut parts = stem.rsplitn(3, '_');
        let (Some(last), Some(first)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(f), Ok(l)) = (first.parse(), last.parse()) {
            out.push((f, l, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn col<'a>(path: &Path, b: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    b.column_by_name(name).ok_or_else(|| DataError::Column {
        path: path.to_path_buf(),
        column: name.into(),
        message: "missing".into(),
    })
}

/// Reads an integer column whatever its integer width (cryo writes u32, others u64 or i64).
fn int_values(path: &Path, name: &str, a: &ArrayRef) -> Result<Vec<Option<u64>>> {
    use arrow::datatypes::*;
    let bad = |m: String| DataError::Column {
        path: path.to_path_buf(),
        column: name.into(),
        message: m,
    };
    macro_rules! conv {
        ($t:ty) => {
            a.as_primitive::<$t>()
                .iter()
                .map(|v| {
                    v.map(|x| u64::try_from(x).map_err(|_| bad(format!("negative value {x}"))))
                })
                .map(|o| o.transpose())
                .collect()
        };
    }
    match a.data_type() {
        DataType::UInt32 => conv!(UInt32Type),
        DataType::UInt64 => conv!(UInt64Type),
        DataType::Int32 => conv!(Int32Type),
        DataType::Int64 => conv!(Int64Type),
        other => Err(bad(format!("expected an integer column, found {other}"))),
    }
}

/// Reads a bytes column stored as Binary, LargeBinary or 0x-hex Utf8 (cryo `--hex`).
fn bytes_values(path: &Path, name: &str, a: &ArrayRef) -> Result<Vec<Option<Vec<u8>>>> {
    let bad = |m: String| DataError::Column {
        path: path.to_path_buf(),
        column: name.into(),
        message: m,
    };
    match a.data_type() {
        DataType::Binary => Ok(a
            .as_binary::<i32>()
            .iter()
            .map(|v| v.map(<[u8]>::to_vec))
            .collect()),
        DataType::LargeBinary => Ok(a
            .as_binary::<i64>()
            .iter()
            .map(|v| v.map(<[u8]>::to_vec))
            .collect()),
        DataType::BinaryView => Ok(a
            .as_binary_view()
            .iter()
            .map(|v| v.map(<[u8]>::to_vec))
            .collect()),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let strs: Vec<Option<String>> = match a.data_type() {
                DataType::Utf8 => a
                    .as_string::<i32>()
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect(),
                DataType::LargeUtf8 => a
                    .as_string::<i64>()
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect(),
                _ => a
                    .as_string_view()
                    .iter()
                    .map(|v| v.map(str::to_owned))
                    .collect(),
            };
            strs.into_iter()
                .enumerate()
                .map(|(i, s)| {
                    s.map(|s| {
                        hex::decode(s.trim_start_matches("0x"))
                            .map_err(|e| bad(format!("row {i}: bad hex: {e}")))
                    })
                    .transpose()
                })
                .collect()
        }
        other => Err(bad(format!(
            "expected a binary or hex string column, found {other}"
        ))),
    }
}

fn fixed<const N: usize>(path: &Path, name: &str, row: usize, v: &[u8]) -> Result<[u8; N]> {
    v.try_into().map_err(|_| DataError::Column {
        path: path.to_path_buf(),
        column: name.into(),
        message: format!("row {row}: expected {N} bytes, found {}", v.len()),
    })
}

/// Reads a logs file in our or cryo's layout. `chain_id` fills in for files that lack the column.
pub fn read_logs_file(path: &Path, default_chain_id: u64) -> Result<Vec<RawLog>> {
    let mut out = Vec::new();
    for b in read_parquet(path)? {
        let n = b.num_rows();
        let bn = int_values(path, "block_number", col(path, &b, "block_number")?)?;
        let ti = int_values(
            path,
            "transaction_index",
            col(path, &b, "transaction_index")?,
        )?;
        let li = int_values(path, "log_index", col(path, &b, "log_index")?)?;
        let th = bytes_values(path, "transaction_hash", col(path, &b, "transaction_hash")?)?;
        let ad = bytes_values(path, "address", col(path, &b, "address")?)?;
        let data = bytes_values(path, "data", col(path, &b, "data")?)?;
        let bh = match b.column_by_name("block_hash") {
            Some(a) => bytes_values(path, "block_hash", a)?,
            None => vec![None; n],
        };
        let ci = match b.column_by_name("chain_id") {
            Some(a) => int_values(path, "chain_id", a)?,
            None => vec![None; n],
        };
        let mut topics: Vec<Vec<Option<Vec<u8>>>> = Vec::with_capacity(4);
        for t in ["topic0", "topic1", "topic2", "topic3"] {
            topics.push(match b.column_by_name(t) {
                Some(a) => bytes_values(path, t, a)?,
                None => vec![None; n],
            });
        }
        let need = |v: Option<u64>, name: &str, row: usize| {
            v.ok_or_else(|| DataError::Column {
                path: path.to_path_buf(),
                column: name.into(),
                message: format!("row {row}: null"),
            })
        };
        for i in 0..n {
            let mut ts = Vec::with_capacity(4);
            for t in &topics {
                match &t[i] {
                    Some(v) => ts.push(B256::from(fixed::<32>(path, "topic", i, v)?)),
                    None => break,
                }
            }
            out.push(RawLog {
                block_number: need(bn[i], "block_number", i)?,
                block_hash: bh[i]
                    .as_deref()
                    .map(|v| fixed::<32>(path, "block_hash", i, v).map(B256::from))
                    .transpose()?,
                transaction_index: need(ti[i], "transaction_index", i)?,
                log_index: need(li[i], "log_index", i)?,
                transaction_hash: B256::from(fixed::<32>(
                    path,
                    "transaction_hash",
                    i,
                    th[i].as_deref().unwrap_or_default(),
                )?),
                address: Address::from(fixed::<20>(
                    path,
                    "address",
                    i,
                    ad[i].as_deref().unwrap_or_default(),
                )?),
                topics: ts,
                data: Bytes::from(data[i].clone().unwrap_or_default()),
                chain_id: ci[i].unwrap_or(default_chain_id),
            });
        }
    }
    Ok(out)
}

/// Reads a blocks file.
pub fn read_blocks_file(path: &Path) -> Result<Vec<BlockRow>> {
    let mut out = Vec::new();
    for b in read_parquet(path)? {
        let n = b.num_rows();
        let num = int_values(path, "block_number", col(path, &b, "block_number")?)?;
        let h = bytes_values(path, "block_hash", col(path, &b, "block_hash")?)?;
        let p = bytes_values(path, "parent_hash", col(path, &b, "parent_hash")?)?;
        let ts = int_values(path, "timestamp", col(path, &b, "timestamp")?)?;
        let bf = int_values(path, "base_fee_per_gas", col(path, &b, "base_fee_per_gas")?)?;
        let gu = int_values(path, "gas_used", col(path, &b, "gas_used")?)?;
        let gl = int_values(path, "gas_limit", col(path, &b, "gas_limit")?)?;
        let ci = int_values(path, "chain_id", col(path, &b, "chain_id")?)?;
        for i in 0..n {
            let h32 = |v: &Option<Vec<u8>>, name| {
                v.as_deref()
                    .map(|v| fixed::<32>(path, name, i, v).map(B256::from))
                    .transpose()
            };
            out.push(BlockRow {
                number: num[i].unwrap_or_default(),
                hash: h32(&h[i], "block_hash")?,
                parent_hash: h32(&p[i], "parent_hash")?,
                timestamp: ts[i].unwrap_or_default(),
                base_fee_per_gas: bf[i],
                gas_used: gu[i],
                gas_limit: gl[i],
                chain_id: ci[i].unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// The first chunk of `tables` that does not read whole, as the error that names it: for
/// readers (Polars) whose own errors do not say which file failed.
pub fn first_unreadable(root: &Path, tables: &[&str]) -> Option<DataError> {
    for t in tables {
        let chunks = match list_chunks(root, t) {
            Ok(c) => c,
            Err(e) => return Some(e),
        };
        for (_, _, p) in chunks {
            if let Err(e) = read_parquet(&p) {
                return Some(e);
            }
        }
    }
    None
}

/// All rows of a chunked table, in file order.
pub fn read_table(root: &Path, table: &str) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for (_, _, p) in list_chunks(root, table)? {
        out.extend(read_parquet(&p)?);
    }
    Ok(out)
}

/// Every log of a dataset, in (block, log index) order.
pub fn read_all_logs(root: &Path) -> Result<Vec<RawLog>> {
    let mut out = Vec::new();
    for (_, _, p) in list_chunks(root, LOGS)? {
        out.extend(read_logs_file(&p, 0)?);
    }
    Ok(out)
}

/// Every block of a dataset, in order.
pub fn read_all_blocks(root: &Path) -> Result<Vec<BlockRow>> {
    let mut out = Vec::new();
    for (_, _, p) in list_chunks(root, BLOCKS)? {
        out.extend(read_blocks_file(&p)?);
    }
    Ok(out)
}

/// Reads a transactions file.
pub fn read_transactions_file(path: &Path) -> Result<Vec<TxRow>> {
    let mut out = Vec::new();
    for b in read_parquet(path)? {
        let n = b.num_rows();
        let ints = |name: &str| int_values(path, name, col(path, &b, name)?);
        let strs = |name: &str| string_column(path, &b, name);
        let ci = ints("chain_id")?;
        let bn = ints("block_number")?;
        let ti = ints("transaction_index")?;
        let gu = ints("gas_used")?;
        let [l1bfs, l1bbfs, ofs, ofc] = [
            ints("l1_base_fee_scalar")?,
            ints("l1_blob_base_fee_scalar")?,
            ints("operator_fee_scalar")?,
            ints("operator_fee_constant")?,
        ];
        let th = strs("transaction_hash")?;
        let from = strs("from")?;
        let to = strs("to")?;
        let [egp, pf, l1f, l1gu, l1gp, l1bbf] = [
            strs("effective_gas_price")?,
            strs("priority_fee_per_gas")?,
            strs("l1_fee")?,
            strs("l1_gas_used")?,
            strs("l1_gas_price")?,
            strs("l1_blob_base_fee")?,
        ];
        let status = col(path, &b, "status")?;
        let status = match status.data_type() {
            DataType::Boolean => status.as_boolean(),
            other => {
                return Err(DataError::Column {
                    path: path.to_path_buf(),
                    column: "status".into(),
                    message: format!("expected Boolean, found {other}"),
                });
            }
        };
        let bad = |column: &str, row: usize, m: String| DataError::Column {
            path: path.to_path_buf(),
            column: column.into(),
            message: format!("row {row}: {m}"),
        };
        let need = |v: Option<u64>, column: &str, row: usize| {
            v.ok_or_else(|| bad(column, row, "null".into()))
        };
        let wide = |v: &Option<String>, column: &str, row: usize| -> Result<Option<u128>> {
            v.as_deref()
                .map(|s| {
                    s.parse::<u128>()
                        .map_err(|e| bad(column, row, format!("`{s}`: {e}")))
                })
                .transpose()
        };
        let hexed = |v: &Option<String>, column: &str, row: usize| -> Result<Option<Vec<u8>>> {
            v.as_deref()
                .map(|s| {
                    hex::decode(s.trim_start_matches("0x"))
                        .map_err(|e| bad(column, row, format!("bad hex: {e}")))
                })
                .transpose()
        };
        for i in 0..n {
            let hash = hexed(&th[i], "transaction_hash", i)?
                .ok_or_else(|| bad("transaction_hash", i, "null".into()))?;
            let sender =
                hexed(&from[i], "from", i)?.ok_or_else(|| bad("from", i, "null".into()))?;
            out.push(TxRow {
                chain_id: need(ci[i], "chain_id", i)?,
                block_number: need(bn[i], "block_number", i)?,
                transaction_index: need(ti[i], "transaction_index", i)?,
                transaction_hash: B256::from(fixed::<32>(path, "transaction_hash", i, &hash)?),
                from: Address::from(fixed::<20>(path, "from", i, &sender)?),
                to: hexed(&to[i], "to", i)?
                    .map(|a| fixed::<20>(path, "to", i, &a).map(Address::from))
                    .transpose()?,
                status: status.is_valid(i) && status.value(i),
                gas_used: need(gu[i], "gas_used", i)?,
                effective_gas_price: wide(&egp[i], "effective_gas_price", i)?
                    .ok_or_else(|| bad("effective_gas_price", i, "null".into()))?,
                priority_fee_per_gas: wide(&pf[i], "priority_fee_per_gas", i)?,
                l1_fee: wide(&l1f[i], "l1_fee", i)?,
                l1_gas_used: wide(&l1gu[i], "l1_gas_used", i)?,
                l1_gas_price: wide(&l1gp[i], "l1_gas_price", i)?,
                l1_base_fee_scalar: l1bfs[i],
                l1_blob_base_fee: wide(&l1bbf[i], "l1_blob_base_fee", i)?,
                l1_blob_base_fee_scalar: l1bbfs[i],
                operator_fee_scalar: ofs[i],
                operator_fee_constant: ofc[i],
            });
        }
    }
    Ok(out)
}

/// Every transaction of a dataset that emitted a tracked event, sorted by (block number,
/// transaction index). `None` when the dataset has no transactions table (e.g. imported logs).
///
/// A table that covers other block ranges than the logs (a dataset ingested in part by a dexlab
/// that did not record transactions yet) is an error rather than a silently partial answer.
pub fn read_all_transactions(root: &Path) -> Result<Option<Vec<TxRow>>> {
    let chunks = list_chunks(root, TRANSACTIONS)?;
    if chunks.is_empty() {
        return Ok(None);
    }
    let ranges = |c: &[(u64, u64, PathBuf)]| c.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>();
    let logs = list_chunks(root, LOGS)?;
    if ranges(&chunks) != ranges(&logs) {
        return Err(DataError::Dataset {
            path: root.to_path_buf(),
            message: format!(
                "the transactions table has {} chunk(s) but the logs have {} over other block ranges: part of this dataset was ingested without transactions; ingest it again into a new directory",
                chunks.len(),
                logs.len()
            ),
        });
    }
    let mut out = Vec::new();
    for (_, _, p) in chunks {
        out.extend(read_transactions_file(&p)?);
    }
    out.sort_by_key(|t| (t.block_number, t.transaction_index));
    Ok(Some(out))
}

pub fn write_meta(root: &Path, meta: &DatasetMeta) -> Result<()> {
    write_json_atomic(&root.join("dataset.json"), meta)?;
    write_parquet(
        &root.join("pools.parquet"),
        &pools_batch(&meta.pools, meta.chain_id),
    )
}

/// Opens a dataset: reads `dataset.json` and runs the self-check ([`check`]). Every command that
/// reads a dataset (verify, features, backtest, evolve, train through features) comes through
/// here, so none of them runs on a dataset with a missing table or a damaged file; the error
/// lists each problem with its file.
pub fn read_meta(root: &Path) -> Result<DatasetMeta> {
    let meta = read_meta_unchecked(root)?;
    let problems = check(root, &meta);
    if !problems.is_empty() {
        return Err(DataError::Damaged {
            path: root.to_path_buf(),
            problems,
        });
    }
    Ok(meta)
}

/// `dataset.json` alone, without the self-check: for `inspect`, which reports the problems
/// instead of refusing the dataset.
pub fn read_meta_unchecked(root: &Path) -> Result<DatasetMeta> {
    read_json(&root.join("dataset.json"))
}

/// One thing wrong with a dataset on disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `logs`, `blocks`, `swaps`, `liquidity_events`, `transactions` or `pools`.
    pub table: String,
    /// The folder or file that is missing or damaged.
    pub path: PathBuf,
    /// True when `path` does not exist.
    pub missing: bool,
    pub message: String,
}

impl Problem {
    pub fn missing(table: &str, path: PathBuf, message: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            path,
            missing: true,
            message: message.into(),
        }
    }

    pub fn damaged(table: &str, path: PathBuf, message: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            path,
            missing: false,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.missing { "missing" } else { "damaged" };
        write!(f, "{}: {state} ({})", self.table, self.path.display())?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

/// `(first block, last block, file)` of one chunk file, as [`list_chunks`] gives it.
type Chunk = (u64, u64, PathBuf);

/// Columns a file of each table must have to be read as one.
fn required_columns(table: &str) -> Vec<String> {
    let names = |s: SchemaRef| s.fields().iter().map(|f| f.name().clone()).collect();
    match table {
        // What `read_logs_file` needs (the other columns are optional in cryo's layout).
        LOGS => [
            "block_number",
            "transaction_index",
            "log_index",
            "transaction_hash",
            "address",
            "data",
        ]
        .map(String::from)
        .to_vec(),
        BLOCKS => names(blocks_schema()),
        SWAPS => names(swaps_schema()),
        LIQUIDITY_EVENTS => names(liquidity_events_schema()),
        TRANSACTIONS => names(transactions_schema()),
        _ => names(pools_schema()),
    }
}

/// Opens a Parquet file of `table` by its footer, checks its columns, and reads one column
/// (`block_number`, or nothing when `column` is `None`). Returns the row count and the column.
fn probe(
    table: &str,
    path: &Path,
    column: Option<&str>,
) -> std::result::Result<(usize, Vec<u64>), String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("not a readable Parquet file: {e}"))?;
    let schema = builder.schema().clone();
    for c in required_columns(table) {
        if schema.field_with_name(&c).is_err() {
            return Err(format!("no column `{c}`: not a {table} file"));
        }
    }
    let rows = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let Some(column) = column else {
        return Ok((rows, Vec::new()));
    };
    let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), [column]);
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| format!("unreadable: {e}"))?;
    let mut out = Vec::with_capacity(rows);
    for b in reader {
        let b = b.map_err(|e| format!("unreadable: {e}"))?;
        let a = col(path, &b, column).map_err(|e| e.to_string())?;
        for (i, v) in int_values(path, column, a)
            .map_err(|e| e.to_string())?
            .into_iter()
            .enumerate()
        {
            out.push(v.ok_or_else(|| format!("row {}: `{column}` is null", out.len() + i))?);
        }
    }
    Ok((rows, out))
}

/// The self-check of a dataset, without reading it whole: what is missing or damaged, each with
/// its file. Empty when the dataset can be used.
///
/// - the pool metadata in `dataset.json` is usable ([`crate::manifest::validate_pools`]) and
///   `pools.parquet` holds it;
/// - `logs`, `blocks`, `swaps` and `liquidity_events` have a file for every block range any
///   table has (and `transactions` too where the dataset records one), and ranges do not overlap;
/// - every file opens by its footer, has its table's columns, and its `block_number` column (the
///   one column read) lies within the range its name gives;
/// - every block with a log has a header row, in datasets from a node and in imports with a
///   timestamps file (an import without one has no headers at all).
///
/// A dataset with no chunk in any table (an empty import) passes. Data pages beyond the one
/// column are not decoded here; a damaged page elsewhere is reported, with its file, by the
/// reader that meets it.
pub fn check(root: &Path, meta: &DatasetMeta) -> Vec<Problem> {
    let mut problems = Vec::new();
    if let Err(m) = crate::manifest::validate_pools(&meta.pools) {
        problems.push(Problem::damaged("pools", root.join("dataset.json"), m));
    }
    let pools_file = root.join("pools.parquet");
    match probe("pools", &pools_file, None) {
        Ok((rows, _)) if rows != meta.pools.len() => problems.push(Problem::damaged(
            "pools",
            pools_file,
            format!(
                "{rows} row(s) for the {} pool(s) of dataset.json",
                meta.pools.len()
            ),
        )),
        Ok(_) => {}
        Err(_) if !pools_file.exists() => problems.push(Problem::missing("pools", pools_file, "")),
        Err(m) => problems.push(Problem::damaged("pools", pools_file, m)),
    }
    // Each table's chunks; `None` when its folder does not exist.
    let mut tables: Vec<(&str, Option<Vec<Chunk>>)> = Vec::new();
    for t in CHUNK_TABLES {
        if !root.join(t).exists() {
            tables.push((t, None));
            continue;
        }
        match list_chunks(root, t) {
            Ok(c) => tables.push((t, Some(c))),
            Err(e) => {
                problems.push(Problem::damaged(t, root.join(t), e.to_string()));
                tables.push((t, Some(Vec::new())));
            }
        }
    }
    let ranges: std::collections::BTreeSet<(u64, u64)> = tables
        .iter()
        .flat_map(|(_, c)| c.iter().flatten().map(|c| (c.0, c.1)))
        .collect();
    if ranges.is_empty() {
        return problems;
    }
    let mut prev: Option<(u64, u64)> = None;
    for &(f, l) in &ranges {
        if let Some((pf, pl)) = prev
            && f <= pl
        {
            let with = tables
                .iter()
                .flat_map(|(_, c)| c.iter().flatten())
                .find(|c| (c.0, c.1) == (f, l))
                .map_or_else(|| root.to_path_buf(), |c| c.2.clone());
            problems.push(Problem::damaged(
                "chunks",
                with,
                format!("blocks {f}..={l} overlap another chunk's {pf}..={pl}"),
            ));
        }
        if f > l {
            problems.push(Problem::damaged(
                "chunks",
                root.to_path_buf(),
                format!("a chunk is named for blocks {f}..={l}"),
            ));
        }
        prev = Some((f, l));
    }
    let transactions_required = meta.transactions == Some(true)
        || tables
            .iter()
            .any(|(t, c)| *t == TRANSACTIONS && c.as_ref().is_some_and(|c| !c.is_empty()));
    // Blocks with logs, and blocks with headers, per range (of the files that could be read).
    let mut log_blocks: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
    let mut headers: BTreeMap<(u64, u64), Vec<u64>> = BTreeMap::new();
    for (t, chunks) in &tables {
        if *t == TRANSACTIONS && !transactions_required {
            continue;
        }
        let Some(chunks) = chunks else {
            problems.push(Problem::missing(t, root.join(t), ""));
            continue;
        };
        for &(f, l) in &ranges {
            if !chunks.iter().any(|c| (c.0, c.1) == (f, l)) {
                problems.push(Problem::missing(
                    t,
                    chunk_path(root, t, f, l),
                    format!("other tables have blocks {f}..={l}"),
                ));
            }
        }
        for (f, l, p) in chunks {
            match probe(t, p, Some("block_number")) {
                Err(m) => problems.push(Problem::damaged(t, p.clone(), m)),
                Ok((_, blocks)) => {
                    let (lo, hi) = (blocks.iter().min(), blocks.iter().max());
                    if let (Some(&lo), Some(&hi)) = (lo, hi)
                        && (lo < *f || hi > *l)
                    {
                        problems.push(Problem::damaged(
                            t,
                            p.clone(),
                            format!(
                                "rows of blocks {lo}..={hi}, outside the file's range {f}..={l}"
                            ),
                        ));
                        continue;
                    }
                    match *t {
                        LOGS => {
                            log_blocks.insert((*f, *l), blocks);
                        }
                        BLOCKS => {
                            headers.insert((*f, *l), blocks);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let any_headers = headers.values().any(|h| !h.is_empty());
    if any_headers || meta.source.contains("://") {
        for (range, blocks) in &log_blocks {
            let Some(h) = headers.get(range) else {
                continue;
            };
            let h: std::collections::HashSet<u64> = h.iter().copied().collect();
            let mut lacking: Vec<u64> = blocks.iter().copied().filter(|b| !h.contains(b)).collect();
            lacking.sort_unstable();
            lacking.dedup();
            if let Some(first) = lacking.first() {
                problems.push(Problem::damaged(
                    BLOCKS,
                    chunk_path(root, BLOCKS, range.0, range.1),
                    format!(
                        "no header for block {first} ({} block(s) with logs in this range have none)",
                        lacking.len()
                    ),
                ));
            }
        }
    }
    problems
}

pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(value).expect("serialisable");
    fs::write(&tmp, text).map_err(|e| DataError::io(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| DataError::io(path, e))
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| DataError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })
}

/// Read a Utf8 column as owned strings (for tests and inspect).
pub fn string_column(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let a = col(path, b, name)?;
    match a.data_type() {
        DataType::Utf8 => Ok(a
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()),
        DataType::LargeUtf8 => Ok(a
            .as_string::<i64>()
            .iter()
            .map(|v| v.map(str::to_owned))
            .collect()),
        other => Err(DataError::Column {
            path: path.to_path_buf(),
            column: name.into(),
            message: format!("expected Utf8, found {other}"),
        }),
    }
}

/// Read an integer column (any width) of a batch.
pub fn int_column(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Option<u64>>> {
    int_values(path, name, col(path, b, name)?)
}

/// Read an Int32 column of a batch.
pub fn i32_column(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Option<i32>>> {
    let a = col(path, b, name)?;
    match a.data_type() {
        DataType::Int32 => Ok(a
            .as_primitive::<arrow::datatypes::Int32Type>()
            .iter()
            .collect()),
        other => Err(DataError::Column {
            path: path.to_path_buf(),
            column: name.into(),
            message: format!("expected Int32, found {other}"),
        }),
    }
}

/// Read a Float64 column of a batch.
pub fn f64_column(path: &Path, b: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>> {
    let a = col(path, b, name)?;
    match a.data_type() {
        DataType::Float64 => Ok(a
            .as_primitive::<arrow::datatypes::Float64Type>()
            .iter()
            .collect()),
        other => Err(DataError::Column {
            path: path.to_path_buf(),
            column: name.into(),
            message: format!("expected Float64, found {other}"),
        }),
    }
}

/// SHA-256 of what a dataset's consumers read (pool metadata, logs, blocks, swaps, transactions,
/// in file order): recorded by feature builds and experiments so a result names the exact data it
/// came from.
pub fn content_hash(root: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut files = vec![root.join("pools.parquet")];
    for t in [LOGS, BLOCKS, SWAPS, TRANSACTIONS] {
        files.extend(list_chunks(root, t)?.into_iter().map(|c| c.2));
    }
    for f in files {
        let bytes = fs::read(&f).map_err(|source| DataError::Io {
            path: f.clone(),
            source,
        })?;
        h.update(
            f.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
                .as_bytes(),
        );
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// A small dataset on disk for tests across the crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::types::{Protocol, TokenInfo};
    use alloy::primitives::U256;
    use alloy::sol_types::SolEvent;

    pub(crate) fn pool() -> PoolInfo {
        let token = |a: u8, symbol: &str, decimals| TokenInfo {
            address: Address::repeat_byte(a),
            symbol: symbol.into(),
            decimals,
        };
        PoolInfo {
            address: Address::repeat_byte(0x88),
            protocol: Protocol::UniswapV3,
            dex: "uniswap-v3".into(),
            token0: token(1, "USDC", 6),
            token1: token(2, "WETH", 18),
            fee: 500,
            tick_spacing: Some(10),
            stable: None,
        }
    }

    pub(crate) fn swap_log(block: u64, log_index: u64) -> RawLog {
        let w = |v: U256| B256::from(v.to_be_bytes::<32>());
        let i = |v: i64| {
            B256::from(
                alloy::primitives::I256::try_from(v)
                    .unwrap()
                    .to_be_bytes::<32>(),
            )
        };
        let words = [
            i(1000),
            i(-990),
            w(U256::from(1) << 96),
            w(U256::from(10u64.pow(18))),
            i(0),
        ];
        RawLog {
            block_number: block,
            block_hash: None,
            transaction_index: 0,
            log_index,
            transaction_hash: B256::repeat_byte(block as u8),
            address: pool().address,
            topics: vec![
                crate::decode::univ3::Swap::SIGNATURE_HASH,
                Address::repeat_byte(3).into_word(),
                Address::repeat_byte(4).into_word(),
            ],
            data: Bytes::from(words.iter().flat_map(|w| w.0).collect::<Vec<u8>>()),
            chain_id: 1,
        }
    }

    pub(crate) fn header(number: u64) -> BlockRow {
        BlockRow {
            number,
            hash: None,
            parent_hash: None,
            timestamp: 1_704_412_823 + number * 12,
            base_fee_per_gas: None,
            gas_used: None,
            gas_limit: None,
            chain_id: 1,
        }
    }

    /// A two-chunk dataset with a swap in blocks 10, 11 and 150 and their headers.
    pub(crate) fn fixture(root: &Path) {
        let pools = vec![pool()];
        write_meta(
            root,
            &DatasetMeta {
                dexlab_version: "test".into(),
                chain_id: 1,
                source: "import:test".into(),
                pools: pools.clone(),
                ..Default::default()
            },
        )
        .unwrap();
        let map = pools.iter().map(|p| (p.address, p.clone())).collect();
        crate::derive::write_chunk(
            root,
            0,
            99,
            &[swap_log(10, 0), swap_log(11, 4)],
            &[header(10), header(11)],
            None,
            &map,
        )
        .unwrap();
        crate::derive::write_chunk(
            root,
            100,
            199,
            &[swap_log(150, 1)],
            &[header(150)],
            None,
            &map,
        )
        .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    #[test]
    fn a_whole_dataset_opens() {
        let dir = tempfile::tempdir().unwrap();
        fixture(dir.path());
        let meta = read_meta(dir.path()).unwrap();
        assert_eq!(meta.pools, vec![pool()]);
    }

    /// What a dataset needs to be opened: every table, every chunk readable and inside its block
    /// range, a header for every block with an event, pool metadata that the math can use.
    #[test]
    fn a_dataset_missing_a_table_or_with_a_damaged_file_does_not_open() {
        let garbage = |p: PathBuf| fs::write(p, b"not a parquet file").unwrap();
        type Damage = Box<dyn Fn(&Path)>;
        let cases: Vec<(&str, Damage, &str)> = vec![
            (
                "no blocks folder",
                Box::new(|r| fs::remove_dir_all(r.join(BLOCKS)).unwrap()),
                "blocks",
            ),
            (
                "no swaps folder",
                Box::new(|r| fs::remove_dir_all(r.join(SWAPS)).unwrap()),
                "swaps",
            ),
            (
                "no logs folder",
                Box::new(|r| fs::remove_dir_all(r.join(LOGS)).unwrap()),
                "logs",
            ),
            (
                "corrupt swaps",
                Box::new(move |r| garbage(chunk_path(r, SWAPS, 100, 199))),
                "swaps_0000000100_0000000199.parquet",
            ),
            (
                "corrupt liquidity_events",
                Box::new(move |r| garbage(chunk_path(r, LIQUIDITY_EVENTS, 0, 99))),
                "liquidity_events_0000000000_0000000099.parquet",
            ),
            (
                "truncated logs",
                Box::new(|r| {
                    let p = chunk_path(r, LOGS, 0, 99);
                    let bytes = fs::read(&p).unwrap();
                    fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
                }),
                "logs_0000000000_0000000099.parquet",
            ),
            (
                "one swaps chunk missing",
                Box::new(|r| fs::remove_file(chunk_path(r, SWAPS, 0, 99)).unwrap()),
                "swaps_0000000000_0000000099.parquet",
            ),
            (
                "a chunk whose rows lie outside its name's range",
                Box::new(|r| {
                    fs::rename(
                        chunk_path(r, SWAPS, 100, 199),
                        chunk_path(r, SWAPS, 200, 299),
                    )
                    .unwrap();
                    fs::copy(chunk_path(r, SWAPS, 0, 99), chunk_path(r, SWAPS, 100, 199)).unwrap();
                }),
                "swaps_0000000100_0000000199.parquet",
            ),
            (
                "a block with events but no header",
                Box::new(|r| {
                    write_parquet(
                        &chunk_path(r, BLOCKS, 0, 99),
                        &blocks_batch(&[header(10)]).unwrap(),
                    )
                    .unwrap()
                }),
                "block 11",
            ),
            (
                "a swaps file in place of a blocks file",
                Box::new(|r| {
                    fs::copy(chunk_path(r, SWAPS, 0, 99), chunk_path(r, BLOCKS, 0, 99)).unwrap();
                }),
                "blocks_0000000000_0000000099.parquet",
            ),
            (
                "corrupt pools.parquet",
                Box::new(move |r| garbage(r.join("pools.parquet"))),
                "pools.parquet",
            ),
            (
                "tick spacing 0 in dataset.json",
                Box::new(|r| {
                    let p = r.join("dataset.json");
                    let t = fs::read_to_string(&p).unwrap();
                    fs::write(&p, t.replace("\"tick_spacing\": 10", "\"tick_spacing\": 0"))
                        .unwrap();
                }),
                "tick_spacing",
            ),
        ];
        for (what, damage, fragment) in cases {
            let dir = tempfile::tempdir().unwrap();
            fixture(dir.path());
            damage(dir.path());
            match read_meta(dir.path()) {
                Ok(_) => panic!("{what}: the dataset opened"),
                Err(e) => {
                    let m = e.to_string();
                    assert!(m.contains(fragment), "{what}: {m}");
                }
            }
        }
    }

    fn row(block: u64, index: u64, op: bool) -> TxRow {
        TxRow {
            chain_id: 8453,
            block_number: block,
            transaction_index: index,
            transaction_hash: B256::repeat_byte(index as u8 + 1),
            from: Address::repeat_byte(0xaa),
            to: index.is_multiple_of(2).then(|| Address::repeat_byte(0xbb)),
            status: index != 3,
            gas_used: 150_000 + index,
            // Beyond u64 and f64's exact range: only an exact string keeps every digit.
            effective_gas_price: u128::MAX - index as u128,
            priority_fee_per_gas: (index != 2).then_some(1_000_000_000_000_000_000_001),
            l1_fee: op.then_some(0x150c88b38050),
            l1_gas_used: op.then_some(0x4d7c),
            l1_gas_price: op.then_some(0x32a3ed345),
            l1_base_fee_scalar: op.then_some(0x21f9),
            l1_blob_base_fee: op.then_some(0x4d137e31b),
            l1_blob_base_fee_scalar: op.then_some(0xc5f4f),
            operator_fee_scalar: None,
            operator_fee_constant: op.then_some(u64::MAX),
        }
    }

    #[test]
    fn transactions_round_trip_exactly_and_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        assert_eq!(read_all_transactions(root).unwrap(), None);
        let a = vec![row(10, 0, true), row(10, 3, false), row(12, 2, true)];
        let b = vec![row(20, 1, false)];
        for (first, last, rows) in [(10, 19, &a), (20, 29, &b)] {
            write_parquet(
                &chunk_path(root, LOGS, first, last),
                &logs_batch(&[]).unwrap(),
            )
            .unwrap();
            write_parquet(
                &chunk_path(root, TRANSACTIONS, first, last),
                &transactions_batch(rows).unwrap(),
            )
            .unwrap();
        }
        let all = read_all_transactions(root).unwrap().unwrap();
        assert_eq!(all, [a, b].concat());
        // The wide integers are stored as exact base-10 strings.
        let p = chunk_path(root, TRANSACTIONS, 10, 19);
        let batch = &read_parquet(&p).unwrap()[0];
        assert_eq!(
            string_column(&p, batch, "effective_gas_price").unwrap()[0].as_deref(),
            Some("340282366920938463463374607431768211455")
        );
        // Logs over a block range the transactions table lacks: an error, not a partial answer.
        write_parquet(&chunk_path(root, LOGS, 30, 39), &logs_batch(&[]).unwrap()).unwrap();
        let e = read_all_transactions(root).unwrap_err().to_string();
        assert!(e.contains("without transactions"), "{e}");
    }
}

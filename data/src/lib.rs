//! dexlab-data: everything that gets DEX events out of a node or a file and into a Parquet dataset.
//!
//! The crate is split along the path the data takes. [`devnet`] starts a local anvil chain with the
//! real Uniswap V2/V3 and PancakeSwap V3 bytecode and mines a reproducible market on it; [`ingest`]
//! pulls logs, block headers and the receipts of the transactions behind the logs ([`receipts`])
//! from any JSON-RPC node with adaptive chunking, retries, a checkpoint and reorg detection; [`import`] reads `eth_getLogs` JSON and cryo Parquet; [`decode`] turns raw logs
//! into typed DEX events with alloy's `sol!`; [`dataset`] owns the on-disk layout (one Parquet file
//! per block range and table, written to a temporary file and renamed) and [`inspect`] summarises a
//! dataset.
//!
//! Money values are never floats: 256-bit amounts, 160-bit sqrt prices and 128-bit liquidities are
//! stored as base-10 strings of the exact integer (see [`dataset`]), with `*_float` convenience
//! columns in human units beside them.
//!
//! No cargo features yet.

pub mod dataset;
pub mod decode;
pub mod derive;
pub mod devnet;
pub mod discover;
pub mod error;
pub mod events;
pub mod import;
pub mod ingest;
pub mod inspect;
pub mod manifest;
pub mod outdir;
pub mod receipts;
pub mod replay;
pub mod snapshot;
pub mod tools;
pub mod types;

pub use error::{DataError, Result};
pub use types::{BlockRow, LogLocation, Protocol, RawLog, TxRow};

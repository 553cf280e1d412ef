//! Transaction receipts as the `transactions` table needs them.
//!
//! Receipts are read from the raw JSON rather than through alloy's typed receipts: OP-stack nodes
//! (Base, Optimism) add fields that alloy's Ethereum receipt does not know (`l1Fee`, `l1GasUsed`,
//! `l1GasPrice`, Ecotone's `l1BaseFeeScalar`, `l1BlobBaseFee`, `l1BlobBaseFeeScalar`, Isthmus'
//! `operatorFeeScalar`, `operatorFeeConstant`), and their deposit receipts (type `0x7e`) do not fit
//! alloy's Ethereum receipt envelope at all. Only the fields we store are read; every other field
//! is ignored, so a node that adds more does not break ingestion.

use alloy::primitives::{Address, B256, U64, U128};
use serde::Deserialize;

use crate::types::TxRow;

/// The fields of one `eth_getTransactionReceipt` / `eth_getBlockReceipts` entry that we keep.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub transaction_hash: B256,
    pub transaction_index: U64,
    #[serde(default)]
    pub block_hash: Option<B256>,
    pub block_number: U64,
    pub from: Address,
    #[serde(default)]
    pub to: Option<Address>,
    /// Absent before Byzantium (those receipts carry a state root instead).
    #[serde(default)]
    pub status: Option<U64>,
    pub gas_used: U64,
    /// Absent on some pre-London nodes.
    #[serde(default)]
    pub effective_gas_price: Option<U128>,
    #[serde(default)]
    pub l1_fee: Option<U128>,
    #[serde(default)]
    pub l1_gas_used: Option<U128>,
    #[serde(default)]
    pub l1_gas_price: Option<U128>,
    #[serde(default)]
    pub l1_base_fee_scalar: Option<U64>,
    #[serde(default)]
    pub l1_blob_base_fee: Option<U128>,
    #[serde(default)]
    pub l1_blob_base_fee_scalar: Option<U64>,
    #[serde(default)]
    pub operator_fee_scalar: Option<U64>,
    #[serde(default)]
    pub operator_fee_constant: Option<U64>,
}

impl Receipt {
    /// Parses one receipt object of a JSON-RPC answer.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, String> {
        Receipt::deserialize(v).map_err(|e| {
            let hash = v
                .get("transactionHash")
                .and_then(|h| h.as_str())
                .unwrap_or("<no transactionHash>");
            format!("receipt of tx {hash}: {e}")
        })
    }

    pub fn block_number(&self) -> u64 {
        self.block_number.to()
    }

    pub fn transaction_index(&self) -> u64 {
        self.transaction_index.to()
    }

    /// The dataset row of this receipt, in a block whose base fee is `base_fee`.
    ///
    /// A receipt without `status` (pre-Byzantium) counts as successful: the transactions we keep
    /// emitted logs, and a reverted transaction emits none.
    pub fn to_row(&self, chain_id: u64, base_fee: Option<u64>) -> Result<TxRow, String> {
        let effective_gas_price: u128 = self
            .effective_gas_price
            .ok_or_else(|| {
                format!(
                    "block {} tx {} (index {}): receipt without effectiveGasPrice",
                    self.block_number(),
                    self.transaction_hash,
                    self.transaction_index()
                )
            })?
            .to();
        Ok(TxRow {
            chain_id,
            block_number: self.block_number(),
            transaction_index: self.transaction_index(),
            transaction_hash: self.transaction_hash,
            from: self.from,
            to: self.to,
            status: self.status.is_none_or(|s| !s.is_zero()),
            gas_used: self.gas_used.to(),
            effective_gas_price,
            // Below the base fee only for OP-stack deposits, which pay no gas price at all.
            priority_fee_per_gas: base_fee
                .and_then(|b| effective_gas_price.checked_sub(u128::from(b))),
            l1_fee: self.l1_fee.map(|x| x.to()),
            l1_gas_used: self.l1_gas_used.map(|x| x.to()),
            l1_gas_price: self.l1_gas_price.map(|x| x.to()),
            l1_base_fee_scalar: self.l1_base_fee_scalar.map(|x| x.to()),
            l1_blob_base_fee: self.l1_blob_base_fee.map(|x| x.to()),
            l1_blob_base_fee_scalar: self.l1_blob_base_fee_scalar.map(|x| x.to()),
            operator_fee_scalar: self.operator_fee_scalar.map(|x| x.to()),
            operator_fee_constant: self.operator_fee_constant.map(|x| x.to()),
        })
    }
}

/// Whether a failed request's message says the node does not serve the method at all (as
/// opposed to a failure of this one request).
pub fn method_unsupported(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "-32601",
        "method not found",
        "does not exist",
        "not supported",
        "unsupported",
        "not available",
        "unknown method",
        "not whitelisted",
    ]
    .iter()
    .any(|w| m.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An OP-stack (World Chain, the same op-geth receipt as Base's) receipt from the example
    /// answer of QuickNode's `eth_getTransactionReceipt` page for World Chain
    /// (<https://quicknode.com/docs/worldchain/eth_getTransactionReceipt>). Every fee field and
    /// number is the doc's. The doc's excerpt we had cut off after `l1GasUsed`, so
    /// `transactionHash`, `transactionIndex`, `to`, `status` and `type` are placeholders, marked.
    const OP_STACK_RECEIPT: &str = r#"{
        "blockHash": "0x8c2b3c8d546e87ef54e2bb56dbe8d8b78bbf39b90c2bd4f78756ca7ae3a41a25",
        "blockNumber": "0x657db5",
        "contractAddress": null,
        "cumulativeGasUsed": "0x285afa",
        "effectiveGasPrice": "0x186a0",
        "from": "0x63a0ae2049741f574f9fa7bccb5fbcf552be9e31",
        "gasUsed": "0xdc090",
        "l1BaseFeeScalar": "0x21f9",
        "l1BlobBaseFee": "0x4d137e31b",
        "l1BlobBaseFeeScalar": "0xc5f4f",
        "l1Fee": "0x150c88b38050",
        "l1GasPrice": "0x32a3ed345",
        "l1GasUsed": "0x4d7c",
        "logs": [],
        "transactionHash": "0x1111111111111111111111111111111111111111111111111111111111111111",
        "transactionIndex": "0x3",
        "to": "0x2222222222222222222222222222222222222222",
        "status": "0x1",
        "type": "0x2"
    }"#;

    /// A real OP mainnet deposit receipt (type 0x7e), as op-alloy's receipt test quotes it
    /// (alloy-rs/op-alloy `crates/rpc-types/src/receipt.rs`, `parse_rpc_receipt`).
    const DEPOSIT_RECEIPT: &str = r#"{
        "blockHash": "0x9e6a0fb7e22159d943d760608cc36a0fb596d1ab3c997146f5b7c55c8c718c67",
        "blockNumber": "0x6cfef89",
        "contractAddress": null,
        "cumulativeGasUsed": "0xfa0d",
        "depositNonce": "0x8a2d11",
        "effectiveGasPrice": "0x0",
        "from": "0xdeaddeaddeaddeaddeaddeaddeaddeaddead0001",
        "gasUsed": "0xfa0d",
        "logs": [],
        "status": "0x1",
        "to": "0x4200000000000000000000000000000000000015",
        "transactionHash": "0xb7c74afdeb7c89fb9de2c312f49b38cb7a850ba36e064734c5223a477e83fdc9",
        "transactionIndex": "0x0",
        "type": "0x7e"
    }"#;

    fn parse(s: &str) -> Receipt {
        Receipt::from_json(&serde_json::from_str(s).unwrap()).unwrap()
    }

    #[test]
    fn reads_the_l1_fee_fields_of_an_op_stack_receipt() {
        let r = parse(OP_STACK_RECEIPT);
        assert_eq!(r.block_number(), 0x657db5);
        // A base fee below the effective price of 100,000 wei: the rest is the priority fee.
        let row = r.to_row(480, Some(0x186a0 - 1_000)).unwrap();
        assert_eq!(row.effective_gas_price, 100_000);
        assert_eq!(row.priority_fee_per_gas, Some(1_000));
        assert_eq!(row.gas_used, 0xdc090);
        assert_eq!(
            row.from,
            "0x63a0ae2049741f574f9fa7bccb5fbcf552be9e31"
                .parse::<Address>()
                .unwrap()
        );
        assert_eq!(row.l1_fee, Some(0x150c88b38050));
        assert_eq!(row.l1_gas_used, Some(0x4d7c));
        assert_eq!(row.l1_gas_price, Some(0x32a3ed345));
        assert_eq!(row.l1_base_fee_scalar, Some(0x21f9));
        assert_eq!(row.l1_blob_base_fee, Some(0x4d137e31b));
        assert_eq!(row.l1_blob_base_fee_scalar, Some(0xc5f4f));
        // Pre-Isthmus: no operator fee.
        assert_eq!(
            (row.operator_fee_scalar, row.operator_fee_constant),
            (None, None)
        );
        assert!(row.status);
        // No base fee in the block: no priority fee.
        assert_eq!(r.to_row(480, None).unwrap().priority_fee_per_gas, None);
    }

    #[test]
    fn reads_isthmus_operator_fee_fields_when_present() {
        // Synthetic values: only the field names and their quantity encoding are Isthmus'.
        let mut v: serde_json::Value = serde_json::from_str(OP_STACK_RECEIPT).unwrap();
        v["operatorFeeScalar"] = "0x2".into();
        v["operatorFeeConstant"] = "0x3e8".into();
        let row = Receipt::from_json(&v).unwrap().to_row(480, None).unwrap();
        assert_eq!(row.operator_fee_scalar, Some(2));
        assert_eq!(row.operator_fee_constant, Some(1000));
    }

    #[test]
    fn a_deposit_pays_no_priority_fee_and_has_no_l1_fee() {
        let row = parse(DEPOSIT_RECEIPT).to_row(10, Some(1)).unwrap();
        assert_eq!(row.effective_gas_price, 0);
        assert_eq!(row.priority_fee_per_gas, None);
        assert_eq!(row.l1_fee, None);
        assert_eq!(row.transaction_index, 0);
        assert_eq!(row.block_number, 0x6cfef89);
    }

    #[test]
    fn an_ethereum_receipt_has_no_l1_fields_and_a_bad_one_says_which_tx() {
        let mut v: serde_json::Value = serde_json::from_str(OP_STACK_RECEIPT).unwrap();
        for k in [
            "l1BaseFeeScalar",
            "l1BlobBaseFee",
            "l1BlobBaseFeeScalar",
            "l1Fee",
            "l1GasPrice",
            "l1GasUsed",
        ] {
            v.as_object_mut().unwrap().remove(k);
        }
        v["status"] = "0x0".into();
        let row = Receipt::from_json(&v).unwrap().to_row(1, Some(7)).unwrap();
        assert!(!row.status);
        assert_eq!(row.l1_fee, None);
        v["gasUsed"] = "not a number".into();
        let e = Receipt::from_json(&v).unwrap_err();
        assert!(e.contains("0x1111111111111111"), "{e}");
        v.as_object_mut().unwrap().remove("effectiveGasPrice");
        v["gasUsed"] = "0x1".into();
        let e = Receipt::from_json(&v)
            .unwrap()
            .to_row(1, Some(7))
            .unwrap_err();
        assert!(
            e.contains("effectiveGasPrice") && e.contains("block 6651317"),
            "{e}"
        );
    }

    #[test]
    fn recognises_unsupported_methods() {
        assert!(method_unsupported(
            "eth_getBlockReceipts: error code -32601: the method eth_getBlockReceipts does not exist/is not available"
        ));
        assert!(method_unsupported("Method not found"));
        assert!(!method_unsupported("error code -32000: header not found"));
    }
}

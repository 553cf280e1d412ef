//! The chain as the executor: live trading's side of the driver's seam.
//!
//! In live trading our bundles are real transactions, so the chain itself applies them: the
//! tracked pools' logs of a block already hold our own swaps, in the order the chain ran them, and
//! the market follows those logs and nothing else. What the engine cannot see in pool logs is what
//! became of each transaction; the live engine reads that from the receipts (and from the node
//! check that keeps a bundle that would revert from being sent) and hands it to
//! [`ChainExecutor`] as one [`ChainOutcome`] per bundle before the block is stepped. A session
//! records those outcomes with the block, so that its replay hands the same outcomes to the same
//! executor and takes the same decisions: the chain's answers are the replay's inputs.
//!
//! The chain also decides when a bundle is over: a transaction not mined by its deadline is
//! cancelled by the sender (or reverts on the executor contract's deadline check if it lands
//! late), and only then is its outcome known, with the gas the cancellation or the revert cost.
//! So the driver leaves expiry to this executor ([`Executor::settles_expiry`]).

use alloy_primitives::{B256, U256};
use dexlab_strategy::FillStatus;
use dexlab_strategy::gas::{TxCost, convert_with};
use dexlab_strategy::market::{Market, PoolEvent, PoolState, apply};
use serde::{Deserialize, Serialize};

use crate::driver::{Executor, InFlight, Observer, Outcome};
use crate::ledger::last_token_out;

/// What the chain did with one of our bundles, as the live engine read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainOutcome {
    /// The bundle's id.
    pub id: u64,
    /// `Filled` or `Reverted` (mined), `Expired` (dropped by the node, or replaced by its
    /// cancellation, which was mined and cost gas), `Rejected` (never sent: the node check said
    /// it would revert, or the fees it needed were over the risk limit).
    pub status: FillStatus,
    /// The block it was mined in, or (never mined) the block in which that became known.
    pub block: u64,
    /// The output the executor received, read from the transaction's Transfer logs.
    #[serde(default)]
    pub amount_out: U256,
    #[serde(default)]
    pub gas_used: u64,
    /// Gas used × effective gas price, wei.
    #[serde(default)]
    pub l2_fee_wei: u128,
    /// The OP-stack L1 data fee and operator fee of the receipt, wei.
    #[serde(default)]
    pub l1_fee_wei: u128,
    #[serde(default)]
    pub operator_fee_wei: u128,
    /// The transaction that settled it (the cancellation's, for a cancelled bundle).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<B256>,
    /// Why it reverted, was refused or dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ChainOutcome {
    pub fn cost(&self) -> TxCost {
        TxCost {
            l2_wei: self.l2_fee_wei,
            l1_wei: self.l1_fee_wei,
            operator_wei: self.operator_fee_wei,
        }
    }
}

/// Applies a block as the chain ran it, and reports the outcomes the live engine read for it.
#[derive(Debug, Default, Clone)]
pub struct ChainExecutor {
    /// The outcomes of the block about to be stepped (set before each step, drained by it).
    pub due: Vec<ChainOutcome>,
    /// Ids of outcomes that matched no bundle in flight (a second outcome for a bundle, or one
    /// for a bundle this session never sent): never booked, kept for the caller to report.
    pub unmatched: Vec<u64>,
}

impl Executor for ChainExecutor {
    fn run_block(
        &mut self,
        market: &mut Market,
        events: &[PoolEvent],
        inflight: &[InFlight],
        obs: &mut Observer<'_>,
    ) {
        // Our own swaps are among these: the chain already ran them.
        for e in events {
            apply(market, e);
            obs.pool_updated(market, e.pool as usize);
        }
        for c in std::mem::take(&mut self.due) {
            let Some(p) = inflight.iter().find(|p| p.id == c.id) else {
                self.unmatched.push(c.id);
                continue;
            };
            let o = Outcome {
                status: c.status,
                included_block: c.block,
                amount_out: if c.status == FillStatus::Filled {
                    c.amount_out
                } else {
                    U256::ZERO
                },
                token_out: last_token_out(market, &p.bundle),
                lost_to_competitor: false,
                queue_position: 0,
                gas_used: c.gas_used,
                cost: c.cost(),
            };
            let value = |a, f, t| convert_with(&market.pools, |i| &market.states[i], a, f, t);
            obs.outcome(p, &o, market, &value);
        }
    }

    /// The chain's state: our trades are real, so there is no other.
    fn reference<'m>(&'m self, market: &'m Market, pool: usize) -> &'m PoolState {
        &market.states[pool]
    }

    fn settles_expiry(&self) -> bool {
        true
    }
}

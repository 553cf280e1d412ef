//! Live mode's executor side: the bundles the engine decides go to the chain as signed calls of
//! the operator's executor contract, and what the chain did with them comes back as the engine's
//! [`ChainOutcome`]s.
//!
//! Each block, in the session loop of [`crate::paper`]:
//! 1. **Before the step**, the sender's receipts are read ([`LiveExec::before_block`]): a bundle
//!    mined in this block or earlier is filled (its output read from the transaction's `Transfer`
//!    logs, which must move the executor's tokens exactly as the bundle says) or reverted, with
//!    the gas the receipt says, L1 fee included; a transaction past its deadline is cancelled by
//!    the sender and, once the cancellation is mined, its bundle has expired with the
//!    cancellation's gas. Outcomes are handed to the engine in the block the chain settled them,
//!    so that the books match the chain at the end of every block.
//! 2. **After the step**, every bundle the engine sent is put to the deployed executor with
//!    `eth_call` on the state of the block just processed ([`LiveExec::check`]): one that would
//!    revert (or that the node cannot answer for) is never sent, and is rejected in the next
//!    block, at no gas. The checks are recorded with the block.
//! 3. **After the record is written**, the rest are signed and sent ([`LiveExec::send`]) with
//!    EIP-1559 fees under the risk limit's gas price, through the sender, which persists its
//!    nonces and transactions before each leaves.
//! 4. **Every N blocks** (and at the first), [`LiveExec::reconcile`] compares what the executor
//!    holds of every token at that block with the engine's books (the gas the books charge to
//!    the quote token put back: the operator's account paid it), and the account's nonce and
//!    pending transactions with the node's. A difference it cannot explain halts trading.
//!
//! A session killed at any point resumes: its records replay the engine into the same bundles in
//! flight, the sender's state says which of them left, and one that never left expires at no
//! gas.

use std::collections::{BTreeMap, HashMap};

use alloy::primitives::{Address, I256, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::BlockId;
use alloy::signers::local::PrivateKeySigner;
use dexlab_engine::chain::ChainOutcome;
use dexlab_engine::driver::InFlight;
use dexlab_engine::ledger::last_token_out;
use dexlab_engine::session::{NodeAnswer, NodeCheck, SessionRun, TokenBalance};
use dexlab_strategy::FillStatus;
use dexlab_strategy::gas::bundle_gas;
use dexlab_strategy::market::Market;
use serde::Serialize;

use crate::executor::{balance_of, execute_calldata, executor_legs};
use crate::feed::{BlockRef, NodeBlock};
use crate::signer::{Fees, Sender, Settled};

/// What live mode needs beyond a paper session's options.
#[derive(Clone)]
pub struct LiveOptions {
    /// The operator's key (never printed: its `Debug` shows the address only).
    pub signer: PrivateKeySigner,
    /// The executor contract the operator owns.
    pub executor: Address,
    /// Reconcile with the chain every this many blocks (at least 1).
    pub reconcile_every: u64,
}

impl std::fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOptions")
            .field("operator", &self.signer.address())
            .field("executor", &self.executor)
            .field("reconcile_every", &self.reconcile_every)
            .finish()
    }
}

/// One token of the executor: what it held when the session started and now, by the chain and
/// by the books. Amounts are raw units, as decimal strings (exact at any size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenReport {
    pub token: Address,
    pub symbol: String,
    pub start: String,
    /// What the executor holds by the chain, and by the engine's ledger (gas put back).
    pub onchain: String,
    pub ledger: String,
    /// `onchain - start` and `ledger - start`, signed.
    pub onchain_balance_change: String,
    pub ledger_balance_change: String,
    pub agrees: bool,
}

/// Live mode's figures in a run's summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LiveSummary {
    pub executor: Address,
    pub operator: Address,
    /// Transactions sent in this run.
    pub sent: u64,
    /// Bundles not sent: the deployed executor would revert them (or the node could not say),
    /// they were decided on a block the chain had left past their deadline (catching up), or
    /// their fees were over the limit; and the first reason.
    pub dropped_by_check: u64,
    pub first_drop: Option<String>,
    /// Transactions the sender replaced by a cancellation.
    pub cancelled: u64,
    /// Reconciliations run, and the differences found (each one halted trading).
    pub reconciliations: u64,
    pub differences: Vec<String>,
    /// Per token, at the last reconciliation.
    pub tokens: Vec<TokenReport>,
    /// The operator's native balance spent since the session started by the chain at the last
    /// reconciliation, and the gas of the receipts the books took up to that block (wei, decimal
    /// strings): equal unless the account was paid or spent otherwise.
    pub operator_spent_wei: Option<String>,
    pub gas_booked_wei: String,
}

/// Why live mode stopped.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("node: {0}")]
    Node(String),
    #[error(transparent)]
    Send(#[from] crate::signer::SendError),
}

/// A bundle of ours on its way, as far as the chain goes.
#[derive(Debug, Clone)]
struct Following {
    token_in: Address,
    token_out: Address,
    amount_in: U256,
}

/// The live engine's link to the executor contract.
pub struct LiveExec {
    provider: DynProvider,
    sender: Sender,
    executor: Address,
    following: HashMap<u64, Following>,
    /// Outcomes known but not yet handed to the engine (each goes in the block it belongs to).
    ready: Vec<ChainOutcome>,
    /// Bundles checked and about to be sent, with their calldata.
    to_send: Vec<(InFlight, alloy::primitives::Bytes, u64)>,
    gas_cap: u128,
    start: Vec<TokenBalance>,
    operator_start: U256,
    /// Transactions whose `Transfer` logs the bundle does not explain, for the next
    /// reconciliation to report (once).
    unexplained: Vec<String>,
    pub summary: LiveSummary,
}

impl LiveExec {
    /// Opens the operator's sender in the session folder and picks up the bundles the replayed
    /// engine has in flight: each the sender tracks is followed; one it settled while the
    /// process was away is ready; one that never left (killed before sending) expires.
    #[allow(clippy::too_many_arguments)]
    pub async fn open(
        provider: DynProvider,
        opts: &LiveOptions,
        dir: &std::path::Path,
        run: &SessionRun<'_>,
        gas_cap: u128,
        start: Vec<TokenBalance>,
        operator_start: U256,
        next_block: u64,
    ) -> Result<LiveExec, LiveError> {
        let (sender, reconciled) = Sender::open(provider.clone(), opts.signer.clone(), dir).await?;
        let mut me = LiveExec {
            provider,
            sender,
            executor: opts.executor,
            following: HashMap::new(),
            ready: Vec::new(),
            to_send: Vec::new(),
            gas_cap,
            start,
            operator_start,
            unexplained: Vec::new(),
            summary: LiveSummary {
                executor: opts.executor,
                operator: opts.signer.address(),
                ..LiveSummary::default()
            },
        };
        let market = &run.driver.market;
        for p in &run.driver.inflight {
            me.following.insert(p.id, following(market, p));
        }
        for s in reconciled.settled {
            me.settled(s, next_block);
        }
        // Settled while the session was away or before its block was recorded (a reorg, a
        // process stopped between a receipt and its block's record): asked again; and the
        // transactions of decisions the records no longer hold (a reorg's) are cancelled.
        let inflight: Vec<u64> = run.driver.inflight.iter().map(|p| p.id).collect();
        let unhanded: Vec<u64> = inflight
            .iter()
            .copied()
            .filter(|id| !me.ready.iter().any(|o| o.id == *id))
            .collect();
        me.sender.retrack(&unhanded)?;
        me.sender.orphan(&inflight)?;
        let tracked: Vec<u64> = me
            .sender
            .tracked()
            .iter()
            .filter_map(|t| t.bundle)
            .collect();
        for p in &run.driver.inflight {
            if !tracked.contains(&p.id) && !me.ready.iter().any(|o| o.id == p.id) {
                me.ready.push(never_sent(
                    p.id,
                    next_block,
                    "never sent: the process stopped between recording the decision and \
                     sending it",
                ));
            }
        }
        Ok(me)
    }

    /// The chain dropped every block after `ancestor`, and the engine was rebuilt from its records
    /// up to it (`run`). What the dropped blocks settled is unsettled again (the sender asks the
    /// node anew: mined again on the new branch, still waiting, or gone and so expired at no
    /// gas); what was decided on them is no longer the engine's, and its transactions, detached
    /// from any bundle, are cancelled (should one be mined anyway, the reconciliation sees it).
    pub async fn after_reorg(
        &mut self,
        run: &SessionRun<'_>,
        ancestor: u64,
    ) -> Result<(), LiveError> {
        self.sender.unsettle_after(ancestor)?;
        let inflight: Vec<u64> = run.driver.inflight.iter().map(|p| p.id).collect();
        self.sender.retrack(&inflight)?;
        self.ready
            .retain(|o| o.block <= ancestor && inflight.contains(&o.id));
        self.to_send.clear();
        let orphans = self.sender.orphan(&inflight)?;
        if !orphans.is_empty() {
            tracing::warn!(
                "reorg to block {ancestor}: cancelling the transactions (nonces {orphans:?}) of \
                 bundles decided on dropped blocks"
            );
        }
        self.following.clear();
        let market = &run.driver.market;
        for p in &run.driver.inflight {
            self.following.insert(p.id, following(market, p));
        }
        // The nonces as the new branch has them (what it dropped is dropped, gaps filled).
        let r = self.sender.reconcile().await?;
        for s in r.settled {
            self.settled(s, ancestor + 1);
        }
        let tracked: Vec<u64> = self
            .sender
            .tracked()
            .iter()
            .filter_map(|t| t.bundle)
            .collect();
        for p in &run.driver.inflight {
            if !tracked.contains(&p.id) && !self.ready.iter().any(|o| o.id == p.id) {
                self.ready.push(never_sent(
                    p.id,
                    ancestor + 1,
                    "never sent: decided before a reorg, its transaction was not found again",
                ));
            }
        }
        Ok(())
    }

    /// The outcomes the chain settled up to block `b`, read from the receipts, for the engine's
    /// step of `b`; cancels what is past its deadline.
    pub async fn before_block(&mut self, b: &NodeBlock) -> Result<Vec<ChainOutcome>, LiveError> {
        let base_fee = b.base_fee.unwrap_or(0);
        let was_cancelled: Vec<u64> = self
            .sender
            .tracked()
            .iter()
            .filter(|t| t.cancelled)
            .map(|t| t.nonce)
            .collect();
        let settled = self.sender.poll(b.number, base_fee).await?;
        self.summary.cancelled += self
            .sender
            .tracked()
            .iter()
            .filter(|t| t.cancelled && !was_cancelled.contains(&t.nonce))
            .count() as u64;
        for s in settled {
            self.settled(s, b.number);
        }
        Ok(self.take_ready(b.number))
    }

    fn take_ready(&mut self, block: u64) -> Vec<ChainOutcome> {
        let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.ready)
            .into_iter()
            .partition(|o| o.block <= block);
        self.ready = later;
        for o in &now {
            self.following.remove(&o.id);
        }
        now
    }

    /// Turns a settled transaction into its bundle's outcome (kept until its block is stepped).
    fn settled(&mut self, s: Settled, head: u64) {
        let Some(id) = s.bundle else { return };
        let Some(f) = self.following.get(&id).cloned() else {
            return;
        };
        if self.ready.iter().any(|o| o.id == id) {
            return;
        }
        let base = ChainOutcome {
            id,
            status: FillStatus::Expired,
            block: s.block.unwrap_or(head),
            amount_out: U256::ZERO,
            gas_used: s.gas_used,
            l2_fee_wei: u128::from(s.gas_used).saturating_mul(s.effective_gas_price),
            l1_fee_wei: s.l1_fee,
            operator_fee_wei: s.operator_fee,
            tx: Some(s.hash),
            reason: None,
        };
        let o = if s.block.is_none() {
            ChainOutcome {
                reason: Some("dropped: the node no longer has the transaction".into()),
                ..base
            }
        } else if s.cancelled {
            ChainOutcome {
                reason: Some("not mined by its deadline: replaced by a cancellation".into()),
                ..base
            }
        } else if !s.success {
            ChainOutcome {
                status: FillStatus::Reverted,
                reason: Some("the transaction reverted".into()),
                ..base
            }
        } else {
            let (out, odd) = amount_out(&s, self.executor, &f);
            if let Some(why) = &odd {
                // Booked with the output the logs show; the next reconciliation halts trading.
                self.unexplained.push(format!(
                    "block {}: bundle {id} ({}): {why}",
                    base.block, s.hash
                ));
            }
            ChainOutcome {
                status: FillStatus::Filled,
                amount_out: out,
                reason: odd,
                ..base
            }
        };
        self.ready.push(o);
    }

    /// Puts each bundle the engine sent in block `b` to the deployed executor, on `b`'s state:
    /// the checks to record, and the bundles that may go out. One that may not is rejected in
    /// the next block.
    pub async fn check(
        &mut self,
        run: &SessionRun<'_>,
        b: &NodeBlock,
        sent: &[InFlight],
        refused: &[u64],
    ) -> Vec<NodeCheck> {
        let market = &run.driver.market;
        let operator = self.sender.address();
        let mut checks = Vec::new();
        for p in sent.iter().filter(|p| !refused.contains(&p.id)) {
            self.following.insert(p.id, following(market, p));
            let legs = match executor_legs(&market.pools, &p.bundle) {
                Ok(l) => l,
                Err(e) => {
                    self.drop_bundle(p.id, b.number + 1, e.to_string());
                    continue;
                }
            };
            let calldata = execute_calldata(
                legs,
                p.bundle.amount_in,
                p.bundle.min_amount_out,
                p.deadline,
            );
            let ask = || {
                crate::executor::call_deployed(
                    &self.provider,
                    BlockId::hash(b.hash),
                    self.executor,
                    operator,
                    calldata.clone(),
                )
            };
            let run_math =
                dexlab_engine::driver::run_route(&market.pools, |i| &market.states[i], &p.bundle);
            let math = run_math.as_ref().map(|r| r.outputs.clone());
            let mut check = NodeCheck {
                id: p.id,
                block: b.number,
                math,
                node: ask().await,
            };
            // A node may answer a call at its head from live state that the next block changes
            // while the call waits (anvil does): asked again once the head has moved on.
            if check.agrees() == Some(false)
                && self
                    .provider
                    .get_block_number()
                    .await
                    .is_ok_and(|h| h > b.number)
            {
                check.node = ask().await;
            }
            match &check.node {
                NodeAnswer::Filled { .. } => {
                    let pools: Vec<usize> = p.bundle.legs.iter().map(|l| l.pool).collect();
                    let ticks = run_math.as_ref().map_or(0, |r| r.ticks_crossed);
                    let table = bundle_gas(&run.driver.env.gas, market, &pools, ticks);
                    // Generous: unused gas is not paid, and a limit too tight reverts.
                    let limit = table.saturating_mul(2).max(300_000);
                    self.to_send.push((p.clone(), calldata, limit));
                }
                NodeAnswer::Reverted { reason } => {
                    self.drop_bundle(
                        p.id,
                        b.number + 1,
                        format!("the executor would revert: {reason}"),
                    );
                }
                NodeAnswer::Unavailable { reason } => {
                    self.drop_bundle(
                        p.id,
                        b.number + 1,
                        format!("the node could not check it: {reason}"),
                    );
                }
            }
            checks.push(check);
        }
        checks
    }

    fn drop_bundle(&mut self, id: u64, block: u64, reason: String) {
        self.summary.dropped_by_check += 1;
        self.summary
            .first_drop
            .get_or_insert_with(|| format!("bundle {id}: {reason}"));
        tracing::warn!("bundle {id} not sent: {reason}");
        self.ready.push(ChainOutcome {
            status: FillStatus::Rejected,
            ..never_sent(id, block, &reason)
        });
    }

    /// Signs and sends the checked bundles of block `b`. One that cannot be sent is rejected in
    /// the next block.
    /// `gas_cap`: the risk limits' highest gas price in force (a deployment switch may change it).
    pub async fn send(
        &mut self,
        block: u64,
        base_fee: Option<u128>,
        gas_cap: Option<u128>,
    ) -> Result<(), LiveError> {
        if let Some(c) = gas_cap {
            self.gas_cap = c;
        }
        let base_fee = base_fee.unwrap_or(0);
        let to_send = std::mem::take(&mut self.to_send);
        if to_send.is_empty() {
            return Ok(());
        }
        // A block the engine is still catching up on may be long gone: a bundle that can no
        // longer land by its deadline is not sent (it would only pay for a revert).
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(|e| LiveError::Node(format!("eth_blockNumber: {e}")))?;
        for (p, calldata, limit) in to_send {
            if head >= p.deadline {
                self.drop_bundle(
                    p.id,
                    block + 1,
                    format!(
                        "stale: decided on block {}, the chain is at block {head}, past its \
                         deadline block {}",
                        p.decided, p.deadline
                    ),
                );
                continue;
            }
            let Some(fees) = Fees::for_block(base_fee, p.bundle.priority_fee, self.gas_cap) else {
                self.drop_bundle(
                    p.id,
                    block + 1,
                    format!(
                        "base fee {base_fee} + priority fee {} is over the gas price limit {}",
                        p.bundle.priority_fee, self.gas_cap
                    ),
                );
                continue;
            };
            match self
                .sender
                .send(self.executor, calldata, limit, fees, Some(p.id), p.deadline)
                .await
            {
                Ok(_) => self.summary.sent += 1,
                Err(e) => self.drop_bundle(p.id, block + 1, format!("not sent: {e}")),
            }
        }
        Ok(())
    }

    /// Compares the executor's holdings at block `b` with the books and the account's nonces
    /// with the node's; the differences, if any (each halts trading).
    pub async fn reconcile(
        &mut self,
        run: &SessionRun<'_>,
        b: BlockRef,
    ) -> Result<Vec<String>, LiveError> {
        self.summary.reconciliations += 1;
        let at = BlockId::hash(b.hash);
        let market = &run.driver.market;
        let books = run.driver.ledger.executor_balances();
        let mut tokens: Vec<Address> = market
            .pools
            .iter()
            .flat_map(|p| [p.token0, p.token1])
            .chain(books.keys().copied())
            .collect();
        tokens.sort();
        tokens.dedup();
        let mut diffs = std::mem::take(&mut self.unexplained);
        let mut report = Vec::new();
        for t in tokens {
            let chain = balance_of(&self.provider, t, self.executor, at)
                .await
                .map_err(LiveError::Node)?;
            let book = books.get(&t).copied().unwrap_or_default();
            let start = self
                .start
                .iter()
                .find(|s| s.token == t)
                .map_or(U256::ZERO, |s| s.amount);
            let symbol = market
                .symbol(t)
                .map_or_else(|| format!("{t:#x}"), str::to_owned);
            if chain != book {
                diffs.push(format!(
                    "block {}: the executor holds {chain} {symbol}, the books say {book} \
                     (the chain has {} more)",
                    b.number,
                    signed(chain, book)
                ));
            }
            report.push(TokenReport {
                token: t,
                symbol,
                start: start.to_string(),
                onchain: chain.to_string(),
                ledger: book.to_string(),
                onchain_balance_change: signed(chain, start).to_string(),
                ledger_balance_change: signed(book, start).to_string(),
                agrees: chain == book,
            });
        }
        self.summary.tokens = report;
        // The account: what the node has mined of ours must be what the sender knows of.
        let r = self.sender.reconcile().await?;
        for s in r.settled {
            if s.block.is_none() && s.bundle.is_some() && s.nonce < r.chain_nonce {
                diffs.push(format!(
                    "nonce {}: a transaction the sender does not know used it (bundle {:?} \
                     never landed): is another process using the operator's key?",
                    s.nonce, s.bundle
                ));
            }
            self.settled(s, b.number + 1);
        }
        let eth = self
            .provider
            .get_balance(self.sender.address())
            .block_id(at)
            .await
            .map_err(|e| LiveError::Node(format!("eth_getBalance: {e}")))?;
        self.summary.operator_spent_wei = Some(signed(self.operator_start, eth).to_string());
        self.summary.gas_booked_wei = run.driver.ledger.gas_paid_wei.to_string();
        for d in &diffs {
            tracing::error!("reconciliation: {d}");
        }
        self.summary.differences.extend(diffs.iter().cloned());
        Ok(diffs)
    }
}

fn following(market: &Market, p: &InFlight) -> Following {
    Following {
        token_in: p.bundle.token_in(),
        token_out: last_token_out(market, &p.bundle),
        amount_in: p.bundle.amount_in,
    }
}

fn never_sent(id: u64, block: u64, reason: &str) -> ChainOutcome {
    ChainOutcome {
        id,
        status: FillStatus::Expired,
        block,
        amount_out: U256::ZERO,
        gas_used: 0,
        l2_fee_wei: 0,
        l1_fee_wei: 0,
        operator_fee_wei: 0,
        tx: None,
        reason: Some(reason.to_owned()),
    }
}

/// `a - b`, signed (saturating at I256's range).
fn signed(a: U256, b: U256) -> I256 {
    let mag = |x: U256| I256::try_from(x).unwrap_or(I256::MAX);
    if a >= b { mag(a - b) } else { -mag(b - a) }
}

/// The bundle's output by the transaction's `Transfer` logs, and what in them its bundle does
/// not explain: they must move the bundle's input out of the executor and one output in, and
/// nothing else.
fn amount_out(s: &Settled, executor: Address, f: &Following) -> (U256, Option<String>) {
    let big = |x: U256| I256::try_from(x).unwrap_or(I256::MAX);
    let mut net: BTreeMap<Address, I256> = BTreeMap::new();
    for t in &s.transfers {
        if t.to == executor {
            *net.entry(t.token).or_default() += big(t.amount);
        }
        if t.from == executor {
            *net.entry(t.token).or_default() -= big(t.amount);
        }
    }
    let amount_in = big(f.amount_in);
    let out_net = net.remove(&f.token_out).unwrap_or_default();
    let mut odd = None;
    let out = if f.token_in == f.token_out {
        out_net + amount_in
    } else {
        let in_net = net.remove(&f.token_in).unwrap_or_default();
        if in_net != -amount_in {
            odd = Some(format!(
                "the executor's {} changed by {in_net}, the bundle's input is {}",
                f.token_in, f.amount_in
            ));
        }
        out_net
    };
    if let Some((t, v)) = net.iter().find(|(_, v)| !v.is_zero()) {
        odd.get_or_insert_with(|| {
            format!("the executor's {t} changed by {v}, which no leg explains")
        });
    }
    if out.is_negative() {
        odd.get_or_insert_with(|| format!("the executor's {} fell by {}", f.token_out, -out));
        return (U256::ZERO, odd);
    }
    (out.into_raw(), odd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signer::Transfer;
    use alloy::primitives::B256;

    fn settled(transfers: Vec<Transfer>) -> Settled {
        Settled {
            bundle: Some(1),
            nonce: 0,
            hash: B256::ZERO,
            block: Some(10),
            success: true,
            cancelled: false,
            gas_used: 100_000,
            effective_gas_price: 1,
            l1_fee: 0,
            operator_fee: 0,
            transfers,
        }
    }

    #[test]
    fn a_bundles_output_is_what_the_transfers_leave_in_the_executor_and_nothing_else() {
        let (ex, p1, p2) = (
            Address::repeat_byte(0xe1),
            Address::repeat_byte(0x01),
            Address::repeat_byte(0x02),
        );
        let (usdc, weth, dai) = (
            Address::repeat_byte(0xa0),
            Address::repeat_byte(0xa1),
            Address::repeat_byte(0xa2),
        );
        let t = |token, from, to, amount: u64| Transfer {
            token,
            from,
            to,
            amount: U256::from(amount),
        };
        // A cycle USDC -> WETH -> USDC, the intermediate passing through the executor.
        let cycle = Following {
            token_in: usdc,
            token_out: usdc,
            amount_in: U256::from(1_000u64),
        };
        let s = settled(vec![
            t(usdc, ex, p1, 1_000),
            t(weth, p1, ex, 7),
            t(weth, ex, p2, 7),
            t(usdc, p2, ex, 1_013),
        ]);
        assert_eq!(amount_out(&s, ex, &cycle), (U256::from(1_013u64), None));
        // A loss is still the output the executor got.
        let s = settled(vec![t(usdc, ex, p1, 1_000), t(usdc, p1, ex, 990)]);
        assert_eq!(amount_out(&s, ex, &cycle), (U256::from(990u64), None));
        // Two tokens: the input must leave in full.
        let buy = Following {
            token_in: usdc,
            token_out: weth,
            amount_in: U256::from(1_000u64),
        };
        let s = settled(vec![t(usdc, ex, p1, 1_000), t(weth, p1, ex, 5)]);
        assert_eq!(amount_out(&s, ex, &buy), (U256::from(5u64), None));
        let s = settled(vec![t(usdc, ex, p1, 999), t(weth, p1, ex, 5)]);
        let (out, odd) = amount_out(&s, ex, &buy);
        assert_eq!(out, U256::from(5u64));
        assert!(odd.unwrap().contains("changed by -999"));
        // A token no leg explains.
        let s = settled(vec![
            t(usdc, ex, p1, 1_000),
            t(weth, p1, ex, 5),
            t(dai, p2, ex, 3),
        ]);
        let odd = amount_out(&s, ex, &buy).1.unwrap();
        assert!(
            odd.contains(&format!("{dai}")) && odd.contains("which no leg explains"),
            "{odd}"
        );
    }
}

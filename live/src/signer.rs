//! The operator's key, and the transactions it signs: nonces, EIP-1559 fees, receipts, and what
//! becomes of a transaction the chain does not take.
//!
//! **The key** comes from the environment variable [`KEY_ENV`] or from an encrypted keystore file
//! (Web3 Secret Storage, as geth, foundry's `cast wallet` and alloy write it) whose password comes
//! from a file or [`PASSWORD_ENV`]. No error, log line or file of dexlab's holds the key or the
//! password: errors name the variable or the file and say what is wrong with it, never what it
//! holds.
//!
//! **The sender** keeps the account's nonces locally, so that bundles go out without a round trip
//! per nonce, and persists them with every transaction it tracks (`sender.json` in the session
//! folder, replaced atomically). [`Sender::reconcile`] compares them with the chain at start and
//! after any error: a tracked transaction that was mined is settled from its receipt, one the node
//! no longer has is dropped, and the next nonce becomes the chain's when nothing of ours is
//! pending. A transaction still unmined after its deadline block is cancelled: a zero-value
//! transfer to ourselves with the same nonce and fees at least [`BUMP_PERCENT`] % higher (a node
//! refuses a replacement with less), cheaper than letting the executor's deadline check revert it;
//! a cancellation still unmined three blocks later is bumped again. Every transaction is recorded
//! before it leaves. Settled transactions are kept a while, so that a reorg or a restart that
//! finds a bundle still in flight can have its receipt read again; a nonce gap under a pending
//! transaction of ours is filled with a zero-value transfer to ourselves.
//!
//! **Gas** is what the receipt says: L2 gas used times the effective gas price, plus the OP-stack
//! L1 data fee (`l1Fee`) and operator fee (`operatorFee`) when the receipt carries them.

use std::path::{Path, PathBuf};

use alloy::consensus::TxEnvelope;
use alloy::eips::eip2718::Encodable2718;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

/// The environment variable that may hold the operator's private key (hex, 32 bytes).
pub const KEY_ENV: &str = "DEXLAB_PRIVATE_KEY";
/// The environment variable that may hold a keystore's password.
pub const PASSWORD_ENV: &str = "DEXLAB_KEYSTORE_PASSWORD";
/// A replacement's fees over the replaced transaction's, in percent (nodes require 10 %).
pub const BUMP_PERCENT: u128 = 125;

/// Why the key could not be loaded. Never holds the key or the password.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no key: the environment variable {var} is not set, and no --keystore FILE was given")]
    EnvMissing { var: &'static str },
    #[error("the environment variable {var} is not a hex private key of 32 bytes")]
    EnvInvalid { var: &'static str },
    #[error("keystore {}: {reason}", path.display())]
    Keystore { path: PathBuf, reason: String },
    #[error("password file {}: {reason}", path.display())]
    PasswordFile { path: PathBuf, reason: String },
    #[error(
        "no password for keystore {}: give --password-file FILE or set {PASSWORD_ENV}",
        path.display()
    )]
    NoPassword { path: PathBuf },
}

/// Where the key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// [`KEY_ENV`].
    Env,
    /// An encrypted keystore; its password from `password_file`, else [`PASSWORD_ENV`].
    Keystore {
        path: PathBuf,
        password_file: Option<PathBuf>,
    },
}

/// Loads the operator's key.
pub fn load_key(source: &KeySource) -> Result<PrivateKeySigner, KeyError> {
    load_key_with(source, |var| std::env::var(var).ok())
}

/// [`load_key`] with the environment `env`.
fn load_key_with(
    source: &KeySource,
    env: impl Fn(&str) -> Option<String>,
) -> Result<PrivateKeySigner, KeyError> {
    match source {
        KeySource::Env => {
            let text = env(KEY_ENV).ok_or(KeyError::EnvMissing { var: KEY_ENV })?;
            text.trim()
                .parse::<PrivateKeySigner>()
                .map_err(|_| KeyError::EnvInvalid { var: KEY_ENV })
        }
        KeySource::Keystore {
            path,
            password_file,
        } => {
            let password = match password_file {
                Some(f) => {
                    let mut p = std::fs::read_to_string(f).map_err(|e| KeyError::PasswordFile {
                        path: f.clone(),
                        reason: e.kind().to_string(),
                    })?;
                    // The line end an editor adds is not part of the password.
                    while p.ends_with('\n') || p.ends_with('\r') {
                        p.pop();
                    }
                    p
                }
                None => {
                    env(PASSWORD_ENV).ok_or_else(|| KeyError::NoPassword { path: path.clone() })?
                }
            };
            PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| KeyError::Keystore {
                path: path.clone(),
                reason: keystore_reason(&e),
            })
        }
    }
}

/// What went wrong with a keystore, in words that hold no secret.
fn keystore_reason(e: &alloy::signers::local::LocalSignerError) -> String {
    let text = e.to_string();
    if text.contains("Mac Mismatch") || text.contains("MacMismatch") {
        "wrong password (the keystore's MAC does not match)".into()
    } else if text.contains("No such file") || text.contains("not found") {
        "no such file".into()
    } else {
        // eth-keystore's errors are about the file (I/O, JSON, KDF parameters), never its secret.
        format!("not a readable keystore ({text})")
    }
}

/// Why a transaction could not be sent or tracked.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("node: {0}")]
    Node(String),
    #[error("{}: {message}", path.display())]
    State { path: PathBuf, message: String },
    #[error("signing: {0}")]
    Sign(String),
}

/// EIP-1559 fees of one transaction, wei per gas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fees {
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
}

impl Fees {
    /// Fees that stay valid while the base fee doubles, never over `cap` (the risk limit's
    /// highest gas price); `None` when even the current base fee plus `priority` is over it.
    pub fn for_block(base_fee: u128, priority: u128, cap: u128) -> Option<Fees> {
        let now = base_fee.checked_add(priority)?;
        if now > cap {
            return None;
        }
        let max = base_fee.saturating_mul(2).saturating_add(priority).min(cap);
        Some(Fees {
            max_fee_per_gas: max,
            max_priority_fee_per_gas: priority,
        })
    }

    /// A replacement's fees: both at least [`BUMP_PERCENT`] % of these (rounded up), and the
    /// max fee enough for `base_fee` now.
    pub fn bumped(self, base_fee: u128) -> Fees {
        let up = |x: u128| x.saturating_mul(BUMP_PERCENT).div_ceil(100).max(x + 1);
        let priority = up(self.max_priority_fee_per_gas);
        Fees {
            max_fee_per_gas: up(self.max_fee_per_gas)
                .max(base_fee.saturating_mul(2).saturating_add(priority)),
            max_priority_fee_per_gas: priority,
        }
    }
}

/// A transaction of ours the chain has not settled yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// The bundle it carries (`None` for a cancellation's own bookkeeping).
    pub bundle: Option<u64>,
    pub nonce: u64,
    /// Every hash sent with this nonce, the newest last (a cancellation adds one).
    pub hashes: Vec<B256>,
    pub fees: Fees,
    /// The last block it may be included in; after it, it is cancelled.
    pub deadline: u64,
    pub cancelled: bool,
}

/// What the chain did with a tracked transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settled {
    pub bundle: Option<u64>,
    pub nonce: u64,
    pub hash: B256,
    /// The block it was mined in; `None` when it was dropped.
    pub block: Option<u64>,
    /// The receipt's status (a dropped or cancelled bundle is not a success).
    pub success: bool,
    /// The bundle's own transaction was replaced by the cancellation, which is what was mined.
    pub cancelled: bool,
    pub gas_used: u64,
    pub effective_gas_price: u128,
    /// OP-stack L1 data fee and operator fee from the receipt (0 where it has none).
    pub l1_fee: u128,
    pub operator_fee: u128,
    /// The ERC-20 `Transfer` logs of the receipt, in order.
    #[serde(default)]
    pub transfers: Vec<Transfer>,
}

/// An ERC-20 `Transfer` log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub token: Address,
    pub from: Address,
    pub to: Address,
    pub amount: U256,
}

/// `keccak256("Transfer(address,address,uint256)")`.
pub const TRANSFER_TOPIC: B256 =
    alloy::primitives::b256!("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef");

/// The ERC-20 `Transfer` logs of a receipt (JSON), in order; other logs are skipped.
fn receipt_transfers(r: &serde_json::Value) -> Result<Vec<Transfer>, String> {
    let mut out = Vec::new();
    let Some(logs) = r.get("logs").and_then(|l| l.as_array()) else {
        return Ok(out);
    };
    for (i, l) in logs.iter().enumerate() {
        let topics: Vec<B256> = match l.get("topics") {
            Some(t) => {
                serde_json::from_value(t.clone()).map_err(|e| format!("log {i}: topics: {e}"))?
            }
            None => continue,
        };
        if topics.len() != 3 || topics[0] != TRANSFER_TOPIC {
            continue;
        }
        let token: Address = l
            .get("address")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("log {i}: address: {e}"))?
            .ok_or_else(|| format!("log {i}: no address"))?;
        let data: Bytes = l
            .get("data")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("log {i}: data: {e}"))?
            .unwrap_or_default();
        if data.len() != 32 {
            // Not an ERC-20 Transfer (an ERC-721's has its id in a topic): not counted. A bundle
            // whose tokens it moved shows as unexplained at the reconciliation.
            tracing::warn!(
                "log {i}: a Transfer of {token} with {} data bytes, skipped",
                data.len()
            );
            continue;
        }
        out.push(Transfer {
            token,
            from: Address::from_word(topics[1]),
            to: Address::from_word(topics[2]),
            amount: U256::from_be_slice(&data),
        });
    }
    Ok(out)
}

impl Settled {
    /// Everything the transaction cost the sender, wei.
    pub fn cost_wei(&self) -> u128 {
        u128::from(self.gas_used)
            .saturating_mul(self.effective_gas_price)
            .saturating_add(self.l1_fee)
            .saturating_add(self.operator_fee)
    }
}

/// What [`Sender::reconcile`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// The chain's count of mined transactions of the account.
    pub chain_nonce: u64,
    /// The next nonce the sender will use.
    pub next_nonce: u64,
    pub settled: Vec<Settled>,
    /// Transactions of ours still waiting in the node's pool.
    pub pending: usize,
}

/// What the sender persists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct SenderState {
    from: Address,
    chain_id: u64,
    next_nonce: u64,
    tracked: Vec<Tracked>,
    /// Transactions settled by a mined receipt, with the block it named, kept for a while: a
    /// reorg that drops that block makes them unsettled again.
    #[serde(default)]
    recent: Vec<(Tracked, u64)>,
}

/// How many settled transactions [`Sender`] keeps for reorgs.
const RECENT: usize = 512;

/// Signs, sends and follows the operator's transactions.
pub struct Sender {
    provider: DynProvider,
    wallet: EthereumWallet,
    path: PathBuf,
    state: SenderState,
    /// Settled by a reconcile inside [`Sender::send`]; handed out by the next [`Sender::poll`].
    pending_settled: Vec<Settled>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("from", &self.state.from)
            .field("next_nonce", &self.state.next_nonce)
            .field("tracked", &self.state.tracked.len())
            .finish_non_exhaustive()
    }
}

/// The file a sender keeps in its session folder.
pub const STATE_FILE: &str = "sender.json";

impl Sender {
    /// Opens the sender of `signer` on `provider`, its state in `dir` (created when new), and
    /// reconciles it with the chain.
    pub async fn open(
        provider: DynProvider,
        signer: PrivateKeySigner,
        dir: &Path,
    ) -> Result<(Sender, Reconciled), SendError> {
        let path = dir.join(STATE_FILE);
        let from = signer.address();
        let chain_id = provider
            .get_chain_id()
            .await
            .map_err(|e| SendError::Node(format!("eth_chainId: {e}")))?;
        let state = match std::fs::read_to_string(&path) {
            Ok(text) => {
                let s: SenderState = serde_json::from_str(&text).map_err(|e| SendError::State {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                if s.from != from || s.chain_id != chain_id {
                    return Err(SendError::State {
                        path,
                        message: format!(
                            "it follows account {} on chain {}, not {from} on chain {chain_id}",
                            s.from, s.chain_id
                        ),
                    });
                }
                s
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SenderState {
                from,
                chain_id,
                ..SenderState::default()
            },
            Err(e) => {
                return Err(SendError::State {
                    path,
                    message: e.to_string(),
                });
            }
        };
        let mut s = Sender {
            provider,
            wallet: EthereumWallet::from(signer),
            path,
            state,
            pending_settled: Vec::new(),
        };
        let r = s.reconcile().await?;
        Ok((s, r))
    }

    pub fn address(&self) -> Address {
        self.state.from
    }

    pub fn next_nonce(&self) -> u64 {
        self.state.next_nonce
    }

    pub fn tracked(&self) -> &[Tracked] {
        &self.state.tracked
    }

    /// Keeps a mined transaction for [`Sender::unsettle_after`].
    fn remember(&mut self, t: &Tracked, s: &Settled) {
        if let Some(b) = s.block {
            self.state.recent.push((t.clone(), b));
            let over = self.state.recent.len().saturating_sub(RECENT);
            self.state.recent.drain(..over);
        }
    }

    /// The chain dropped every block after `ancestor`: the transactions settled in them are
    /// tracked again (mined again on the new branch, waiting in the pool, or gone: the next
    /// [`Sender::poll`] and [`Sender::reconcile`] say which). Returns their bundles.
    pub fn unsettle_after(&mut self, ancestor: u64) -> Result<Vec<u64>, SendError> {
        let (back, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.recent)
            .into_iter()
            .partition(|(_, b)| *b > ancestor);
        self.state.recent = keep;
        let bundles = back.iter().filter_map(|(t, _)| t.bundle).collect();
        for (t, _) in back {
            if !self.state.tracked.iter().any(|x| x.nonce == t.nonce) {
                self.state.tracked.push(t);
            }
        }
        self.state.tracked.sort_by_key(|t| t.nonce);
        self.save()?;
        Ok(bundles)
    }

    /// Tracks again the settled transactions of `bundles` (bundles the engine still has in flight
    /// after a restart: their outcome was read but never recorded); the next poll settles them
    /// anew.
    pub fn retrack(&mut self, bundles: &[u64]) -> Result<(), SendError> {
        let (back, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.state.recent)
            .into_iter()
            .partition(|(t, _)| t.bundle.is_some_and(|b| bundles.contains(&b)));
        self.state.recent = keep;
        for (t, _) in back {
            if !self.state.tracked.iter().any(|x| x.nonce == t.nonce) {
                self.state.tracked.push(t);
            }
        }
        self.state.tracked.sort_by_key(|t| t.nonce);
        self.save()
    }

    /// Detaches the tracked transactions of bundles the engine no longer has in flight (decided
    /// on blocks a reorg dropped): they carry no bundle from now on, and are cancelled at the
    /// next [`Sender::poll`]. Returns their nonces.
    pub fn orphan(&mut self, keep: &[u64]) -> Result<Vec<u64>, SendError> {
        let mut nonces = Vec::new();
        for t in &mut self.state.tracked {
            if let Some(b) = t.bundle
                && !keep.contains(&b)
            {
                t.bundle = None;
                t.deadline = 0;
                nonces.push(t.nonce);
            }
        }
        self.save()?;
        Ok(nonces)
    }

    fn save(&self) -> Result<(), SendError> {
        let err = |message: String| SendError::State {
            path: self.path.clone(),
            message,
        };
        let text = serde_json::to_string_pretty(&self.state).map_err(|e| err(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err(e.to_string()))
    }

    /// Brings the local nonces and tracked transactions in line with the chain: mined ones are
    /// settled from their receipts, ones the node no longer knows are dropped, and the next nonce
    /// is the chain's when nothing of ours is still pending.
    pub async fn reconcile(&mut self) -> Result<Reconciled, SendError> {
        let node = |m: String| SendError::Node(m);
        let from = self.state.from;
        let chain_nonce = self
            .provider
            .get_transaction_count(from)
            .latest()
            .await
            .map_err(|e| node(format!("eth_getTransactionCount(latest): {e}")))?;
        let mut settled = Vec::new();
        let mut keep = Vec::new();
        // Decided on a copy and committed at the end: an error on the way changes nothing.
        for t in self.state.tracked.clone() {
            match self.settle(&t).await? {
                Some(s) => {
                    self.remember(&t, &s);
                    settled.push(s);
                }
                None if t.nonce < chain_nonce => {
                    // Its nonce was used by a transaction we do not know: nothing of ours landed.
                    settled.push(dropped(&t));
                }
                None => {
                    if self.in_pool(&t).await? {
                        keep.push(t);
                    } else {
                        settled.push(dropped(&t));
                    }
                }
            }
        }
        self.state.tracked = keep;
        // A nonce under a pending transaction of ours that nothing holds any more (its own
        // transaction dropped, or taken by a reorg) keeps that transaction from ever being
        // mined: filled with a zero-value transfer to ourselves, at the waiting one's fees.
        let held: Vec<u64> = self.state.tracked.iter().map(|t| t.nonce).collect();
        if let Some(&top) = held.iter().max() {
            let fees = self
                .state
                .tracked
                .iter()
                .map(|t| t.fees)
                .max_by_key(|f| f.max_fee_per_gas)
                .unwrap_or(Fees {
                    max_fee_per_gas: 0,
                    max_priority_fee_per_gas: 0,
                });
            for n in chain_nonce..top {
                if held.contains(&n) {
                    continue;
                }
                let fill = self.request(n, 21_000, fees).with_to(self.state.from);
                let envelope = sign(&self.wallet, fill).await?;
                // Recorded before it leaves.
                self.state.tracked.push(Tracked {
                    bundle: None,
                    nonce: n,
                    hashes: vec![*envelope.tx_hash()],
                    fees,
                    deadline: u64::MAX,
                    cancelled: true,
                });
                self.state.tracked.sort_by_key(|t| t.nonce);
                self.save()?;
                match self
                    .provider
                    .send_raw_transaction(&envelope.encoded_2718())
                    .await
                {
                    Ok(_) => tracing::warn!("nonce {n}: filled a gap under a pending transaction"),
                    Err(e) => tracing::warn!("nonce {n}: filling a gap: {e}"),
                }
            }
        }
        let highest = self.state.tracked.iter().map(|t| t.nonce + 1).max();
        self.state.next_nonce = match highest {
            Some(h) => h.max(chain_nonce),
            None => chain_nonce,
        };
        self.save()?;
        Ok(Reconciled {
            chain_nonce,
            next_nonce: self.state.next_nonce,
            settled,
            pending: self.state.tracked.len(),
        })
    }

    /// Whether any hash of `t` is still in the node's pool.
    async fn in_pool(&self, t: &Tracked) -> Result<bool, SendError> {
        for h in &t.hashes {
            let tx: Option<serde_json::Value> = self
                .provider
                .raw_request("eth_getTransactionByHash".into(), (h,))
                .await
                .map_err(|e| SendError::Node(format!("eth_getTransactionByHash({h}): {e}")))?;
            if tx.is_some_and(|v| !v.is_null()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The receipt of whichever of `t`'s hashes was mined, if one was.
    async fn settle(&self, t: &Tracked) -> Result<Option<Settled>, SendError> {
        for (k, h) in t.hashes.iter().enumerate() {
            let r: Option<serde_json::Value> = self
                .provider
                .raw_request("eth_getTransactionReceipt".into(), (h,))
                .await
                .map_err(|e| SendError::Node(format!("eth_getTransactionReceipt({h}): {e}")))?;
            let Some(r) = r.filter(|v| !v.is_null()) else {
                continue;
            };
            let q = |field: &str| -> Result<u128, SendError> {
                match r.get(field).and_then(|v| v.as_str()) {
                    None => Ok(0),
                    Some(s) => u128::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| {
                        SendError::Node(format!("receipt of {h}: {field} = {s}: {e}"))
                    }),
                }
            };
            // A receipt without its block or status is not a mined one (yet): asked again later.
            if r.get("blockNumber").is_none_or(|v| v.is_null())
                || r.get("status").is_none_or(|v| v.is_null())
            {
                continue;
            }
            let cancelled = t.cancelled && k + 1 == t.hashes.len();
            let transfers = receipt_transfers(&r)
                .map_err(|e| SendError::Node(format!("receipt of {h}: {e}")))?;
            return Ok(Some(Settled {
                bundle: t.bundle,
                nonce: t.nonce,
                hash: *h,
                block: Some(q("blockNumber")? as u64),
                success: q("status")? == 1 && !cancelled,
                cancelled,
                gas_used: q("gasUsed")? as u64,
                effective_gas_price: q("effectiveGasPrice")?,
                l1_fee: q("l1Fee")?,
                operator_fee: q("operatorFee")?,
                transfers,
            }));
        }
        Ok(None)
    }

    /// A transaction from the operator with `nonce`, `gas_limit` and `fees`, no value; the caller
    /// sets its recipient (or makes it a creation) and input.
    fn request(&self, nonce: u64, gas_limit: u64, fees: Fees) -> TransactionRequest {
        request(self.state.from, self.state.chain_id, nonce, gas_limit, fees)
    }

    async fn sign_and_send(&self, tx: TransactionRequest) -> Result<B256, SendError> {
        let envelope = sign(&self.wallet, tx).await?;
        let raw = envelope.encoded_2718();
        let hash = *envelope.tx_hash();
        let _pending = self
            .provider
            .send_raw_transaction(&raw)
            .await
            .map_err(|e| SendError::Node(format!("eth_sendRawTransaction: {e}")))?;
        Ok(hash)
    }

    /// Signs and sends a call to `to` with the next nonce; tracked until settled or cancelled
    /// after block `deadline`. The state is saved before the transaction leaves, so a process
    /// killed in between finds it at the next reconcile (sent or not).
    pub async fn send(
        &mut self,
        to: Address,
        input: Bytes,
        gas_limit: u64,
        fees: Fees,
        bundle: Option<u64>,
        deadline: u64,
    ) -> Result<B256, SendError> {
        let nonce = self.state.next_nonce;
        let tx = self
            .request(nonce, gas_limit, fees)
            .with_to(to)
            .with_input(input);
        let envelope = sign(&self.wallet, tx).await?;
        let hash = *envelope.tx_hash();
        self.state.tracked.push(Tracked {
            bundle,
            nonce,
            hashes: vec![hash],
            fees,
            deadline,
            cancelled: false,
        });
        self.state.next_nonce += 1;
        self.save()?;
        if let Err(e) = self
            .provider
            .send_raw_transaction(&envelope.encoded_2718())
            .await
        {
            // The node may have taken it all the same (a timeout, a retry's "already known"):
            // the chain says. What the reconcile settles is handed out by the next poll.
            match self.reconcile().await {
                Ok(r) => {
                    let mined = r
                        .settled
                        .iter()
                        .any(|s| s.nonce == nonce && s.block.is_some());
                    let waiting = self.state.tracked.iter().any(|t| t.nonce == nonce);
                    self.pending_settled.extend(r.settled);
                    if !mined && !waiting {
                        return Err(SendError::Node(format!("eth_sendRawTransaction: {e}")));
                    }
                    tracing::warn!("eth_sendRawTransaction: {e}; the node has it all the same");
                }
                // Unknown: it stays tracked, and the next poll or reconcile tells.
                Err(r) => tracing::warn!("eth_sendRawTransaction: {e}; then {r}"),
            }
        }
        Ok(hash)
    }

    /// Deploys `code` (creation bytecode) with the next nonce and waits up to `wait` for its
    /// receipt; returns the contract's address and the receipt's figures.
    pub async fn deploy(
        &mut self,
        code: Bytes,
        gas_limit: u64,
        fees: Fees,
        wait: std::time::Duration,
    ) -> Result<(Address, Settled), SendError> {
        let nonce = self.state.next_nonce;
        let mut tx = self.request(nonce, gas_limit, fees).with_input(code);
        tx.set_create();
        let hash = self.sign_and_send(tx).await?;
        let tracked = Tracked {
            bundle: None,
            nonce,
            hashes: vec![hash],
            fees,
            deadline: u64::MAX,
            cancelled: false,
        };
        self.state.tracked.push(tracked.clone());
        self.state.next_nonce += 1;
        self.save()?;
        let until = std::time::Instant::now() + wait;
        loop {
            if let Some(s) = self.settle(&tracked).await? {
                self.state.tracked.retain(|t| t.nonce != nonce);
                self.save()?;
                if !s.success {
                    return Err(SendError::Node(format!("the deployment {hash} reverted")));
                }
                return Ok((self.state.from.create(nonce), s));
            }
            if std::time::Instant::now() > until {
                return Err(SendError::Node(format!(
                    "the deployment {hash} was not mined within {:.0} s (is the chain mining?)",
                    wait.as_secs_f64()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// After block `head` (base fee `base_fee`): settles what was mined, and cancels what is past
    /// its deadline and still unmined.
    pub async fn poll(&mut self, head: u64, base_fee: u128) -> Result<Vec<Settled>, SendError> {
        // What an earlier reconcile settled and nobody has taken yet comes first.
        let mut out = std::mem::take(&mut self.pending_settled);
        let nonces: Vec<u64> = self.state.tracked.iter().map(|t| t.nonce).collect();
        for n in nonces {
            let Some(t) = self.state.tracked.iter().find(|t| t.nonce == n).cloned() else {
                continue;
            };
            // Each change is saved as it happens: an error further on loses none of them.
            if let Some(s) = self.settle(&t).await? {
                self.state.tracked.retain(|x| x.nonce != n);
                self.remember(&t, &s);
                self.save()?;
                out.push(s);
                continue;
            }
            // Past its deadline: cancelled; a cancellation still unmined three blocks on (the
            // base fee rose over it) is bumped again.
            let due = if t.cancelled {
                head > t
                    .deadline
                    .saturating_add(3u64.saturating_mul(t.hashes.len() as u64))
            } else {
                head > t.deadline
            };
            if due {
                let fees = t.fees.bumped(base_fee);
                let cancel = self.request(n, 21_000, fees).with_to(self.state.from);
                let envelope = sign(&self.wallet, cancel).await?;
                // Recorded before it leaves, as every transaction of ours.
                if let Some(x) = self.state.tracked.iter_mut().find(|x| x.nonce == n) {
                    x.hashes.push(*envelope.tx_hash());
                    x.fees = fees;
                    x.cancelled = true;
                }
                self.save()?;
                if let Err(e) = self
                    .provider
                    .send_raw_transaction(&envelope.encoded_2718())
                    .await
                {
                    tracing::warn!("cancelling nonce {n}: {e}");
                }
            }
        }
        Ok(out)
    }
}

/// An EIP-1559 transaction from `from` on `chain_id` with `nonce`, `gas_limit` and `fees`, no
/// value; the caller sets its recipient (or makes it a creation) and input.
pub fn request(
    from: Address,
    chain_id: u64,
    nonce: u64,
    gas_limit: u64,
    fees: Fees,
) -> TransactionRequest {
    TransactionRequest::default()
        .with_from(from)
        .with_nonce(nonce)
        .with_chain_id(chain_id)
        .with_gas_limit(gas_limit)
        .with_max_fee_per_gas(fees.max_fee_per_gas)
        .with_max_priority_fee_per_gas(fees.max_priority_fee_per_gas)
        .with_value(U256::ZERO)
}

/// Signs a complete transaction request locally (no node involved).
pub async fn sign(
    wallet: &EthereumWallet,
    tx: TransactionRequest,
) -> Result<TxEnvelope, SendError> {
    tx.build(wallet)
        .await
        .map_err(|e| SendError::Sign(e.to_string()))
}

fn dropped(t: &Tracked) -> Settled {
    Settled {
        bundle: t.bundle,
        nonce: t.nonce,
        hash: *t.hashes.last().unwrap_or(&B256::ZERO),
        block: None,
        success: false,
        cancelled: t.cancelled,
        gas_used: 0,
        effective_gas_price: 0,
        l1_fee: 0,
        operator_fee: 0,
        transfers: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_stay_under_the_cap_and_a_bump_is_at_least_ten_percent() {
        assert_eq!(
            Fees::for_block(100, 10, 1_000),
            Some(Fees {
                max_fee_per_gas: 210,
                max_priority_fee_per_gas: 10
            })
        );
        assert_eq!(Fees::for_block(100, 10, 150).unwrap().max_fee_per_gas, 150);
        assert_eq!(Fees::for_block(100, 10, 109), None);
        for (max, prio, base) in [(210u128, 10u128, 100u128), (1, 0, 0), (7, 7, 1_000)] {
            let f = Fees {
                max_fee_per_gas: max,
                max_priority_fee_per_gas: prio,
            };
            let b = f.bumped(base);
            assert!(b.max_fee_per_gas * 10 >= max * 11 && b.max_fee_per_gas > max);
            assert!(
                b.max_priority_fee_per_gas * 10 >= prio * 11 && b.max_priority_fee_per_gas > prio
            );
            assert!(b.max_fee_per_gas >= 2 * base + b.max_priority_fee_per_gas);
        }
    }

    #[test]
    fn key_errors_never_hold_the_secret() {
        // A fresh key: no key-shaped literal in the source.
        let key = PrivateKeySigner::random();
        let secret = format!("0x{}", alloy::primitives::hex::encode(key.to_bytes()));
        let marker = &secret[2..14];
        let short = &secret[..50];
        let e = load_key_with(&KeySource::Env, |_| Some(short.into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(KEY_ENV) && !e.contains(marker), "{e}");
        let k = load_key_with(&KeySource::Env, |_| Some(secret.clone())).unwrap();
        assert_eq!(k.address(), key.address());
        assert!(!format!("{k:?}").contains(marker));
        let e = load_key_with(&KeySource::Env, |_| None).unwrap_err();
        assert!(matches!(e, KeyError::EnvMissing { .. }));
        let dir = tempfile::tempdir().unwrap();
        let password = format!("pw-{}", &secret[40..52]);
        PrivateKeySigner::encrypt_keystore(
            dir.path(),
            &mut rand08::thread_rng(),
            key.to_bytes(),
            &password,
            Some("op.json"),
        )
        .unwrap();
        let path = dir.path().join("op.json");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, format!("{password}\n")).unwrap();
        let k = load_key(&KeySource::Keystore {
            path: path.clone(),
            password_file: Some(pw.clone()),
        })
        .unwrap();
        assert_eq!(k.address(), key.address());
        std::fs::write(&pw, "not-the-password").unwrap();
        let e = load_key(&KeySource::Keystore {
            path,
            password_file: Some(pw),
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("wrong password")
                && !e.contains("not-the-password")
                && !e.contains(&password),
            "{e}"
        );
    }
}

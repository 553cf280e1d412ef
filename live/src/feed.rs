//! The node feed: blocks and the tracked pools' logs, in chain order, from a running node.
//!
//! Heads from the `newHeads` subscription (or from polling `eth_getBlockByNumber("latest")` over
//! HTTP) only tell the feed how far the node is. The blocks themselves are fetched by number and
//! chained by parent hash against a bounded window of the blocks already delivered, so every
//! kind of trouble ends in the same place: a missed notification, a dropped connection or a
//! restart leave the feed behind the head, and it backfills from its last block; a block whose
//! parent is not the last block delivered starts a walk back through the window to the newest
//! block still canonical, reported as [`FeedEvent::Reorg`] before the new branch's blocks.
//!
//! Logs of the block at the head are fetched by block hash (EIP-234), so they belong to exactly
//! that header. A backfill asks for a range of blocks by number at once and checks every log's
//! block hash against the headers, and the last header again after the logs, so that a reorg in
//! between is refetched rather than delivered half old, half new.
//!
//! The feed reconnects by itself: the WebSocket transport is told not to reconnect on its own, so
//! that every reconnect goes through one place with a backoff, a retry budget, the HTTP fallback
//! and a check that the node still serves the same chain.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use alloy::primitives::{Address, B256, U64, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::pubsub::{ConnectionHandle, PubSubConnect, Subscription};
use alloy::rpc::types::{Filter, Log};
use alloy::transports::ws::WsConnect;
use alloy::transports::{RpcError, TransportErrorKind, TransportResult};
use dexlab_data::RawLog;
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::error::FeedError;

/// A block by number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub number: u64,
    pub hash: B256,
}

/// One block as the feed delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeBlock {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
    /// Seconds since the Unix epoch, as in the header: consecutive blocks may share one (Base
    /// mines five blocks a second).
    pub timestamp: u64,
    /// Milliseconds since the Unix epoch when the node sends them (Base's `timestampMs`, BSC's
    /// and Sei's `milliTimestamp`, Tempo's `timestampMillis`); kept only when it falls inside
    /// `timestamp`'s second.
    pub timestamp_ms: Option<u64>,
    pub base_fee: Option<u128>,
    pub gas_used: u64,
    /// The tracked pools' logs, in log-index order.
    pub logs: Vec<RawLog>,
    /// When the feed had the block complete, by the local wall clock.
    pub received_at: SystemTime,
}

impl NodeBlock {
    pub fn block_ref(&self) -> BlockRef {
        BlockRef {
            number: self.number,
            hash: self.hash,
        }
    }
}

/// What the feed yields, in order. Block numbers rise by one from event to event; after a
/// `Reorg`, they continue from `common_ancestor + 1` on the new branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    Block(NodeBlock),
    /// The blocks after `common_ancestor` that the feed delivered (`dropped`, oldest first) are
    /// no longer canonical. State built on them must be rolled back to the end of block
    /// `common_ancestor`; the new branch follows.
    Reorg {
        common_ancestor: u64,
        dropped: Vec<BlockRef>,
    },
}

/// Where the feed starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The node's head when the feed first connects is the first block delivered.
    Head,
    /// This block first, then on to the head and beyond (a backfill when it is in the past).
    Block(u64),
    /// The block after this one first, checked to be its child: the block a bootstrap read its
    /// state at (see [`crate::bootstrap`]). A reorg of it shows as [`FeedEvent::Reorg`] or, when
    /// it goes deeper, [`FeedError::ReorgTooDeep`].
    After(BlockRef),
}

/// How the feed hears about new heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    Http,
}

/// Counters, for health checks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub blocks: u64,
    pub reorgs: u64,
    /// Connections made, and how many of them replaced a lost one.
    pub connects: u64,
    pub reconnects: u64,
    /// Connections made over HTTP because the WebSocket could not be (re)established.
    pub http_fallbacks: u64,
    /// Failed steps (requests, connects), each followed by a retry.
    pub failures: u64,
    pub transport: Option<Transport>,
    /// The node's head as last heard.
    pub head: Option<u64>,
}

/// Feed options. [`FeedConfig::new`] picks the transport from the URL's scheme and sets the
/// defaults; the fields can be changed before [`NodeFeed::new`] validates them.
#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// `ws://` or `wss://`: heads by subscription.
    pub ws_url: Option<String>,
    /// `http://` or `https://`: polled when there is no WebSocket URL or it cannot be
    /// (re)established.
    pub http_url: Option<String>,
    /// Pools whose logs each block carries. Empty: blocks without logs (no `eth_getLogs` at all,
    /// as a filter without addresses would match every log of the chain).
    pub pools: Vec<Address>,
    pub start: Start,
    /// Blocks remembered for finding where a reorg's branches meet.
    pub reorg_window: usize,
    /// Most blocks fetched per backfill step.
    pub max_batch: u64,
    /// Requests in flight during a backfill.
    pub concurrency: usize,
    /// HTTP polling period.
    pub poll_interval: Duration,
    /// Without a new head for this long, the feed asks the node for its head (a stalled or
    /// silently dead subscription).
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries wait `backoff_initial`, twice that, ... up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// The feed gives up when nothing succeeded for this long.
    pub give_up_after: Duration,
    /// While on the HTTP fallback, try the WebSocket again this often.
    pub ws_retry_interval: Duration,
}

impl FeedConfig {
    /// A feed of `pools` from `url`: WebSocket for `ws://` and `wss://`, HTTP polling otherwise.
    pub fn new(url: impl Into<String>, pools: Vec<Address>) -> Self {
        let url = url.into();
        let ws = url.starts_with("ws://") || url.starts_with("wss://");
        Self {
            ws_url: ws.then(|| url.clone()),
            http_url: (!ws).then_some(url),
            pools,
            start: Start::Head,
            reorg_window: 256,
            max_batch: 100,
            concurrency: 8,
            poll_interval: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            give_up_after: Duration::from_secs(60),
            ws_retry_interval: Duration::from_secs(5),
        }
    }

    /// Polls `url` over HTTP while the WebSocket is down.
    pub fn with_http_fallback(mut self, url: impl Into<String>) -> Self {
        self.http_url = Some(url.into());
        self
    }

    pub fn starting(mut self, start: Start) -> Self {
        self.start = start;
        self
    }

    fn validate(&self) -> Result<(), FeedError> {
        let bad = |m: String| Err(FeedError::Config(m));
        if self.ws_url.is_none() && self.http_url.is_none() {
            return bad("give a WebSocket or an HTTP URL".into());
        }
        if let Some(u) = &self.ws_url
            && !(u.starts_with("ws://") || u.starts_with("wss://"))
        {
            return bad(format!(
                "WebSocket URL `{}` must start with ws:// or wss://",
                redact(u)
            ));
        }
        if let Some(u) = &self.http_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return bad(format!(
                    "HTTP URL `{}` must start with http:// or https://",
                    redact(u)
                ));
            }
            if let Err(e) = u.parse::<alloy::transports::http::reqwest::Url>() {
                return bad(format!("HTTP URL `{}`: {e}", redact(u)));
            }
        }
        if self.reorg_window < 2 {
            return bad("reorg_window must be at least 2".into());
        }
        if self.max_batch == 0 || self.concurrency == 0 {
            return bad("max_batch and concurrency must be at least 1".into());
        }
        let durations = [
            ("poll_interval", self.poll_interval),
            ("idle_timeout", self.idle_timeout),
            ("request_timeout", self.request_timeout),
            ("connect_timeout", self.connect_timeout),
            ("backoff_initial", self.backoff_initial),
            ("give_up_after", self.give_up_after),
        ];
        for (name, d) in durations {
            if d.is_zero() {
                return bad(format!("{name} must not be zero"));
            }
        }
        Ok(())
    }
}

/// A block header as nodes send it, in `newHeads` notifications and block answers alike.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireHeader {
    number: U64,
    hash: B256,
    parent_hash: B256,
    timestamp: U64,
    #[serde(default)]
    base_fee_per_gas: Option<U256>,
    #[serde(default)]
    gas_used: Option<U64>,
    #[serde(default, alias = "milliTimestamp", alias = "timestampMillis")]
    timestamp_ms: Option<U64>,
}

impl WireHeader {
    fn number(&self) -> u64 {
        self.number.to::<u64>()
    }

    fn block_ref(&self) -> BlockRef {
        BlockRef {
            number: self.number(),
            hash: self.hash,
        }
    }

    fn into_block(self, logs: Vec<RawLog>) -> NodeBlock {
        let timestamp = self.timestamp.to::<u64>();
        let timestamp_ms = self
            .timestamp_ms
            .map(|m| m.to::<u64>())
            .filter(|m| m / 1000 == timestamp);
        if self.timestamp_ms.is_some() && timestamp_ms.is_none() {
            tracing::debug!(
                block = self.number(),
                "millisecond timestamp outside the block's second, dropped"
            );
        }
        NodeBlock {
            number: self.number(),
            hash: self.hash,
            parent_hash: self.parent_hash,
            timestamp,
            timestamp_ms,
            base_fee: self.base_fee_per_gas.and_then(|f| u128::try_from(f).ok()),
            gas_used: self.gas_used.map_or(0, |g| g.to::<u64>()),
            logs,
            received_at: SystemTime::now(),
        }
    }
}

/// WebSocket connection details for a transport that does not reconnect by itself: when the
/// socket drops, alloy's pub/sub service ends, the subscription closes and [`NodeFeed`] takes
/// over.
#[derive(Debug, Clone)]
struct WsOnce(WsConnect);

impl PubSubConnect for WsOnce {
    fn is_local(&self) -> bool {
        self.0.is_local()
    }

    fn connect(
        &self,
    ) -> impl std::future::Future<Output = TransportResult<ConnectionHandle>> + Send {
        self.0.connect()
    }

    async fn try_reconnect(&self) -> TransportResult<ConnectionHandle> {
        Err(TransportErrorKind::non_retryable_str(
            "connection lost (the feed reconnects itself)",
        ))
    }
}

enum Conn {
    Ws {
        provider: DynProvider,
        heads: Subscription<WireHeader>,
    },
    Http {
        provider: DynProvider,
    },
}

impl Conn {
    fn provider(&self) -> DynProvider {
        match self {
            Conn::Ws { provider, .. } | Conn::Http { provider } => provider.clone(),
        }
    }
}

/// Why a step failed, and so how to retry it.
#[derive(Debug)]
enum StepError {
    /// The connection is unusable: reconnect, with backoff.
    Transport(String),
    /// The node answered with an error: retry, with backoff.
    Node {
        method: &'static str,
        block: u64,
        message: String,
    },
    /// The chain changed between two requests: retry at once.
    Moving(String),
    /// The node refused a ranged `eth_getLogs` (too many blocks or logs): retry with half.
    RangeRefused(String),
    Fatal(FeedError),
}

fn classify(method: &'static str, block: u64, e: RpcError<TransportErrorKind>) -> StepError {
    match e {
        RpcError::Transport(k) => StepError::Transport(format!("{method}: {k}")),
        other => StepError::Node {
            method,
            block,
            message: other.to_string(),
        },
    }
}

/// A URL as it may be printed: no user info, no path or query (API keys live there).
fn redact(url: &str) -> String {
    dexlab_data::ingest::redact(url)
}

/// The node feed. Pull events with [`NodeFeed::next`] (or [`NodeFeed::into_stream`]).
///
/// `next` is cancel-safe: dropping its future (in a `select!`) loses no event and repeats none,
/// as events are queued only once all the requests of a step are answered.
pub struct NodeFeed {
    cfg: FeedConfig,
    conn: Option<Conn>,
    chain_id: Option<u64>,
    /// Canonical blocks as delivered, oldest first, at most `reorg_window` of them; before the
    /// first delivery, the start block's parent when known.
    window: VecDeque<BlockRef>,
    /// Next block to deliver; `None` until the start is resolved on the first connection.
    next: Option<u64>,
    /// The newest head heard, and its header, used for the next block instead of a fetch.
    head: Option<u64>,
    hint: Option<WireHeader>,
    /// Ask the node for its head at once instead of waiting for a notification.
    poll_now: bool,
    next_poll: Instant,
    last_ws_attempt: Option<Instant>,
    queue: VecDeque<FeedEvent>,
    /// Most blocks per backfill step now: `max_batch`, halved each time the node refuses a range.
    batch: u64,
    failures: u32,
    failing_since: Option<Instant>,
    stats: FeedStats,
    stopped: Option<String>,
}

impl std::fmt::Debug for NodeFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeFeed")
            .field("ws_url", &self.cfg.ws_url.as_deref().map(redact))
            .field("http_url", &self.cfg.http_url.as_deref().map(redact))
            .field("next", &self.next)
            .field("stats", &self.stats)
            .finish()
    }
}

impl NodeFeed {
    /// Checks the configuration; connects on the first [`Self::next`].
    pub fn new(cfg: FeedConfig) -> Result<Self, FeedError> {
        cfg.validate()?;
        Ok(Self {
            batch: cfg.max_batch,
            cfg,
            conn: None,
            chain_id: None,
            window: VecDeque::new(),
            next: None,
            head: None,
            hint: None,
            poll_now: true,
            next_poll: Instant::now(),
            last_ws_attempt: None,
            queue: VecDeque::new(),
            failures: 0,
            failing_since: None,
            stats: FeedStats::default(),
            stopped: None,
        })
    }

    pub fn stats(&self) -> FeedStats {
        self.stats
    }

    /// The chain id the node reported (known once connected).
    pub fn chain_id(&self) -> Option<u64> {
        self.chain_id
    }

    /// The newest block the feed has queued or delivered (the start block's parent before that).
    pub fn tip(&self) -> Option<BlockRef> {
        self.window.back().copied()
    }

    /// The next event. Waits for the chain when the feed is at the head. Errors are final: the
    /// feed has exhausted its retries or met something it cannot continue past.
    pub async fn next(&mut self) -> Result<FeedEvent, FeedError> {
        if let Some(m) = &self.stopped {
            return Err(FeedError::Stopped(m.clone()));
        }
        loop {
            if let Some(ev) = self.queue.pop_front() {
                match &ev {
                    FeedEvent::Block(_) => self.stats.blocks += 1,
                    FeedEvent::Reorg { .. } => self.stats.reorgs += 1,
                }
                return Ok(ev);
            }
            match self.step().await {
                Ok(()) => {
                    self.failures = 0;
                    self.failing_since = None;
                }
                Err(e) => {
                    if let Err(fatal) = self.on_failure(e).await {
                        self.stopped = Some(fatal.to_string());
                        return Err(fatal);
                    }
                }
            }
        }
    }

    /// The feed as a stream that ends after its first error.
    pub fn into_stream(
        self,
    ) -> impl futures::Stream<Item = Result<FeedEvent, FeedError>> + Send + Unpin {
        Box::pin(futures::stream::unfold(Some(self), |feed| async move {
            let mut feed = feed?;
            match feed.next().await {
                Ok(ev) => Some((Ok(ev), Some(feed))),
                Err(e) => Some((Err(e), None)),
            }
        }))
    }

    async fn step(&mut self) -> Result<(), StepError> {
        self.ensure_conn().await?;
        let p = self.conn.as_ref().expect("connected").provider();
        let Some(next) = self.next else {
            return self.resolve_start(&p).await;
        };
        if self.head.is_some_and(|h| h >= next) {
            return self.advance(&p, next).await;
        }
        let h = self.wait_head(&p).await?;
        self.on_head(&p, h).await
    }

    async fn on_failure(&mut self, e: StepError) -> Result<(), FeedError> {
        let now = Instant::now();
        let e = match e {
            StepError::Fatal(f) => return Err(f),
            e => e,
        };
        let (message, quick) = match &e {
            StepError::Fatal(_) => unreachable!("returned above"),
            StepError::Transport(m) => {
                if self.conn.take().is_some() {
                    tracing::warn!(error = %self.scrub(m), "connection to the node lost");
                }
                self.stats.transport = None;
                (m.clone(), false)
            }
            StepError::Node { message, .. } => (message.clone(), false),
            StepError::Moving(m) => (m.clone(), true),
            StepError::RangeRefused(m) => {
                self.batch = (self.batch / 2).max(1);
                tracing::debug!(batch = self.batch, "eth_getLogs range refused, halving");
                (m.clone(), true)
            }
        };
        let message = self.scrub(&message);
        self.failures += 1;
        self.stats.failures += 1;
        let since = *self.failing_since.get_or_insert(now);
        let waited = now - since;
        if waited >= self.cfg.give_up_after {
            let next_block = self.next.unwrap_or(0);
            return Err(match e {
                StepError::Node { method, block, .. } => FeedError::Rpc {
                    method,
                    block,
                    attempts: self.failures,
                    waited,
                    message,
                },
                StepError::RangeRefused(_) => FeedError::Rpc {
                    method: "eth_getLogs",
                    block: next_block,
                    attempts: self.failures,
                    waited,
                    message,
                },
                _ => FeedError::NodeGone {
                    url: self.url_for_errors(),
                    waited,
                    attempts: self.failures,
                    next_block,
                    last_error: message,
                },
            });
        }
        let delay = if quick {
            Duration::from_millis(20)
        } else {
            let shift = self.failures.saturating_sub(1).min(16);
            self.cfg
                .backoff_initial
                .saturating_mul(1 << shift)
                .min(self.cfg.backoff_max.max(self.cfg.backoff_initial))
        };
        tracing::debug!(failures = self.failures, ?delay, error = %message, "retrying");
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn url_for_errors(&self) -> String {
        let urls: Vec<String> = [&self.cfg.ws_url, &self.cfg.http_url]
            .into_iter()
            .flatten()
            .map(|u| redact(u))
            .collect();
        urls.join(" / ")
    }

    /// Error text with the configured URLs (which may hold API keys) redacted.
    fn scrub(&self, m: &str) -> String {
        let mut m = m.to_string();
        for u in [&self.cfg.ws_url, &self.cfg.http_url].into_iter().flatten() {
            m = m.replace(u.as_str(), &redact(u));
        }
        m
    }

    async fn timed<T>(
        &self,
        method: &'static str,
        block: u64,
        fut: impl std::future::Future<Output = Result<T, RpcError<TransportErrorKind>>>,
    ) -> Result<T, StepError> {
        match tokio::time::timeout(self.cfg.request_timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(method, block, e)),
            Err(_) => Err(StepError::Transport(format!(
                "{method} (block {block}): no answer within {:?}",
                self.cfg.request_timeout
            ))),
        }
    }

    fn ws_retry_due(&self) -> bool {
        self.last_ws_attempt
            .is_none_or(|t| t.elapsed() >= self.cfg.ws_retry_interval)
    }

    async fn ensure_conn(&mut self) -> Result<(), StepError> {
        let on_http = matches!(self.conn, Some(Conn::Http { .. }));
        if self.conn.is_some() && !(on_http && self.cfg.ws_url.is_some() && self.ws_retry_due()) {
            return Ok(());
        }
        if let Some(ws) = self.cfg.ws_url.clone() {
            self.last_ws_attempt = Some(Instant::now());
            match self.connect_ws(&ws).await {
                Ok(conn) => return self.adopt(conn, Transport::WebSocket).await,
                Err(e) if on_http => {
                    tracing::debug!(error = ?e, "WebSocket still down, staying on HTTP");
                    return Ok(());
                }
                Err(e) if self.cfg.http_url.is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(error = ?e, "WebSocket unavailable, polling over HTTP");
                }
            }
        }
        let http = self.cfg.http_url.clone().expect("validated: some URL");
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(http.parse().expect("validated URL"))
            .erased();
        self.adopt(Conn::Http { provider }, Transport::Http).await
    }

    async fn connect_ws(&self, url: &str) -> Result<Conn, StepError> {
        let connect = async {
            let provider = ProviderBuilder::new()
                .disable_recommended_fillers()
                .connect_pubsub_with(WsOnce(WsConnect::new(url)))
                .await?
                .erased();
            let heads = provider.subscribe::<_, WireHeader>(("newHeads",)).await?;
            Ok::<_, RpcError<TransportErrorKind>>(Conn::Ws { provider, heads })
        };
        match tokio::time::timeout(self.cfg.connect_timeout, connect).await {
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(StepError::Transport(format!("WebSocket connect: {e}"))),
            Err(_) => Err(StepError::Transport(format!(
                "WebSocket connect: no answer within {:?}",
                self.cfg.connect_timeout
            ))),
        }
    }

    /// Takes a fresh connection into use once the node proves to serve the same chain.
    async fn adopt(&mut self, conn: Conn, transport: Transport) -> Result<(), StepError> {
        let p = conn.provider();
        let block = self.next.unwrap_or(0);
        let id = self.timed("eth_chainId", block, p.get_chain_id()).await?;
        match self.chain_id {
            None => self.chain_id = Some(id),
            Some(expected) if expected != id => {
                return Err(StepError::Fatal(FeedError::ChainChanged {
                    url: self.url_for_errors(),
                    expected,
                    got: id,
                }));
            }
            Some(_) => {}
        }
        self.stats.connects += 1;
        if self.stats.connects > 1 {
            self.stats.reconnects += 1;
        }
        if transport == Transport::Http && self.cfg.ws_url.is_some() {
            self.stats.http_fallbacks += 1;
        }
        self.stats.transport = Some(transport);
        tracing::info!(?transport, url = %self.url_for_errors(), chain_id = id, "connected");
        self.conn = Some(conn);
        // Whatever happened while disconnected, the head tells.
        self.poll_now = true;
        Ok(())
    }

    async fn header(&self, p: &DynProvider, n: u64) -> Result<Option<WireHeader>, StepError> {
        self.timed(
            "eth_getBlockByNumber",
            n,
            p.raw_request::<_, Option<WireHeader>>(
                "eth_getBlockByNumber".into(),
                (U64::from(n), false),
            ),
        )
        .await
    }

    async fn latest(&self, p: &DynProvider) -> Result<WireHeader, StepError> {
        let block = self.next.unwrap_or(0);
        self.timed(
            "eth_getBlockByNumber",
            block,
            p.raw_request::<_, Option<WireHeader>>(
                "eth_getBlockByNumber".into(),
                ("latest", false),
            ),
        )
        .await?
        .ok_or_else(|| StepError::Node {
            method: "eth_getBlockByNumber",
            block,
            message: "the node has no latest block".into(),
        })
    }

    async fn resolve_start(&mut self, p: &DynProvider) -> Result<(), StepError> {
        match self.cfg.start {
            Start::Head => {
                let h = self.latest(p).await?;
                let n = h.number();
                if n > 0 {
                    self.window.push_back(BlockRef {
                        number: n - 1,
                        hash: h.parent_hash,
                    });
                }
                self.next = Some(n);
                self.head = Some(n);
                self.stats.head = Some(n);
                self.hint = Some(h);
            }
            Start::Block(n) => {
                if n > 0
                    && let Some(parent) = self.header(p, n - 1).await?
                {
                    self.window.push_back(parent.block_ref());
                }
                self.next = Some(n);
            }
            Start::After(r) => {
                self.window.push_back(r);
                self.next = Some(r.number + 1);
            }
        }
        Ok(())
    }

    async fn wait_head(&mut self, p: &DynProvider) -> Result<WireHeader, StepError> {
        if std::mem::take(&mut self.poll_now) {
            return self.latest(p).await;
        }
        let idle = self.cfg.idle_timeout;
        match self.conn.as_mut().expect("connected") {
            Conn::Ws { heads, .. } => match tokio::time::timeout(idle, heads.recv_result()).await {
                Ok(Ok(Ok(h))) => Ok(h),
                Ok(Ok(Err(e))) => {
                    tracing::warn!(error = %e, "unreadable newHeads notification");
                    self.latest(p).await
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    tracing::debug!(missed = n, "head notifications lagged");
                    self.latest(p).await
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    Err(StepError::Transport("newHeads subscription closed".into()))
                }
                // A quiet subscription: is the node still there, still at the same head?
                Err(_) => self.latest(p).await,
            },
            Conn::Http { .. } => {
                tokio::time::sleep_until(self.next_poll.into()).await;
                self.next_poll = Instant::now() + self.cfg.poll_interval;
                self.latest(p).await
            }
        }
    }

    async fn on_head(&mut self, p: &DynProvider, h: WireHeader) -> Result<(), StepError> {
        let next = self.next.expect("start resolved");
        let n = h.number();
        self.head = Some(n);
        self.stats.head = Some(n);
        if n >= next {
            self.hint = Some(h);
            return Ok(());
        }
        // A head at or below what was delivered: the same block heard again, or another branch.
        let known = self.window.iter().rev().find(|r| r.number == n);
        if known.is_some_and(|r| r.hash == h.hash) {
            return Ok(());
        }
        self.check_reorg(p).await.map(|_| ())
    }

    /// Walks the window back to the newest block still canonical; when blocks above it were
    /// delivered, queues the reorg and rewinds. Returns whether there was one.
    async fn check_reorg(&mut self, p: &DynProvider) -> Result<bool, StepError> {
        let Some(&newest) = self.window.back() else {
            return Ok(false);
        };
        let oldest = self.window.front().expect("non-empty").number;
        let mut dropped = Vec::new();
        let mut ancestor = None;
        for r in self.window.iter().rev() {
            let canonical = self.header(p, r.number).await?;
            if canonical.is_some_and(|c| c.hash == r.hash) {
                ancestor = Some(*r);
                break;
            }
            dropped.push(*r);
        }
        let Some(ancestor) = ancestor else {
            return Err(StepError::Fatal(FeedError::ReorgTooDeep {
                at: newest.number,
                oldest,
                newest: newest.number,
            }));
        };
        if dropped.is_empty() {
            return Ok(false);
        }
        dropped.reverse();
        tracing::info!(
            common_ancestor = ancestor.number,
            depth = dropped.len(),
            "reorg"
        );
        self.window.retain(|r| r.number <= ancestor.number);
        self.next = Some(ancestor.number + 1);
        self.hint = None;
        self.queue.push_back(FeedEvent::Reorg {
            common_ancestor: ancestor.number,
            dropped,
        });
        Ok(true)
    }

    /// Fetches and queues the blocks from `next` on, up to the head or a batch.
    async fn advance(&mut self, p: &DynProvider, next: u64) -> Result<(), StepError> {
        let head = self.head.expect("checked by the caller");
        let to = head.min(next.saturating_add(self.batch - 1));
        let blocks = match self.hint.take() {
            Some(h) if to == next && h.number() == next => vec![self.complete(p, h).await?],
            _ => self.fetch_range(p, next, to).await?,
        };
        let Some(first) = blocks.first() else {
            // The node no longer has block `next`: its head moved back. Ask again.
            self.head = None;
            self.poll_now = true;
            return Ok(());
        };
        if let Some(last) = self.window.back().copied()
            && first.parent_hash != last.hash
        {
            return match self.check_reorg(p).await? {
                true => Ok(()),
                false => Err(StepError::Moving(format!(
                    "block {} is not the child of block {} ({}), which is still canonical",
                    first.number, last.number, last.hash
                ))),
            };
        }
        for b in blocks {
            if self.window.len() == self.cfg.reorg_window {
                self.window.pop_front();
            }
            self.window.push_back(b.block_ref());
            self.next = Some(b.number + 1);
            self.queue.push_back(FeedEvent::Block(b));
        }
        Ok(())
    }

    fn raw_logs(&self, block: u64, logs: &[Log]) -> Result<Vec<RawLog>, StepError> {
        let chain_id = self.chain_id.expect("connected");
        let mut out = logs
            .iter()
            .map(|l| dexlab_data::ingest::raw_log(l, chain_id))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                StepError::Fatal(FeedError::BadBlock {
                    block,
                    message: e.to_string(),
                })
            })?;
        out.sort_by_key(RawLog::key);
        Ok(out)
    }

    /// One block at the head: its logs by its hash.
    async fn complete(&self, p: &DynProvider, h: WireHeader) -> Result<NodeBlock, StepError> {
        let n = h.number();
        if self.cfg.pools.is_empty() {
            return Ok(h.into_block(Vec::new()));
        }
        let filter = Filter::new()
            .address(self.cfg.pools.clone())
            .at_block_hash(h.hash);
        let logs = self.timed("eth_getLogs", n, p.get_logs(&filter)).await?;
        if let Some(l) = logs.iter().find(|l| l.block_hash != Some(h.hash)) {
            return Err(StepError::Moving(format!(
                "eth_getLogs by hash {} of block {n} answered a log of block {:?}",
                h.hash, l.block_hash
            )));
        }
        let raw = self.raw_logs(n, &logs)?;
        Ok(h.into_block(raw))
    }

    /// Blocks `a..=b` (fewer if the node's chain is shorter), with their logs from one ranged
    /// `eth_getLogs` checked against the headers.
    async fn fetch_range(
        &self,
        p: &DynProvider,
        a: u64,
        b: u64,
    ) -> Result<Vec<NodeBlock>, StepError> {
        let headers: Vec<Option<WireHeader>> = futures::stream::iter(a..=b)
            .map(|n| self.header(p, n))
            .buffered(self.cfg.concurrency)
            .try_collect()
            .await?;
        let mut chain: Vec<WireHeader> = headers.into_iter().map_while(|h| h).collect();
        for w in chain.windows(2) {
            if w[1].parent_hash != w[0].hash {
                return Err(StepError::Moving(format!(
                    "block {} is not the child of block {} fetched just before",
                    w[1].number(),
                    w[0].number()
                )));
            }
        }
        let Some(last) = chain.last().map(WireHeader::block_ref) else {
            return Ok(Vec::new());
        };
        if chain.len() == 1 {
            let h = chain.pop().expect("one");
            return Ok(vec![self.complete(p, h).await?]);
        }
        let mut logs = Vec::new();
        if !self.cfg.pools.is_empty() {
            let filter = Filter::new()
                .address(self.cfg.pools.clone())
                .from_block(a)
                .to_block(last.number);
            logs = match self.timed("eth_getLogs", a, p.get_logs(&filter)).await {
                Ok(logs) => logs,
                Err(StepError::Node { message, .. }) => {
                    return Err(StepError::RangeRefused(format!(
                        "eth_getLogs {a}..={}: {message}",
                        last.number
                    )));
                }
                Err(e) => return Err(e),
            };
            // The logs must come from these very headers, and the chain must not have moved
            // under the range since: the last header, which commits to all before it, again.
            for l in &logs {
                let n = l.block_number.unwrap_or(u64::MAX);
                let want = n
                    .checked_sub(a)
                    .and_then(|i| chain.get(i as usize))
                    .map(|h| h.hash);
                if want.is_none() || l.block_hash != want {
                    return Err(StepError::Moving(format!(
                        "eth_getLogs {a}..={} answered a log of block {n} ({:?}) not on the headers' chain",
                        last.number, l.block_hash
                    )));
                }
            }
            let again = self.header(p, last.number).await?;
            if again.is_none_or(|h| h.hash != last.hash) {
                return Err(StepError::Moving(format!(
                    "block {} changed while its range was fetched",
                    last.number
                )));
            }
        }
        let mut by_block: Vec<Vec<Log>> = vec![Vec::new(); chain.len()];
        for l in logs {
            let i = (l.block_number.expect("checked") - a) as usize;
            by_block[i].push(l);
        }
        chain
            .into_iter()
            .zip(by_block)
            .map(|(h, logs)| {
                let raw = self.raw_logs(h.number(), &logs)?;
                Ok(h.into_block(raw))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(json: serde_json::Value) -> WireHeader {
        serde_json::from_value(json).unwrap()
    }

    fn base() -> serde_json::Value {
        serde_json::json!({
            "number": "0x10",
            "hash": format!("{:#x}", B256::repeat_byte(1)),
            "parentHash": format!("{:#x}", B256::repeat_byte(2)),
            "timestamp": "0x6650f2c0",
            "baseFeePerGas": "0x3b9aca00",
            "gasUsed": "0x5208",
        })
    }

    #[test]
    fn headers_keep_a_millisecond_timestamp_under_any_known_name() {
        let secs = 0x6650f2c0u64;
        for name in ["timestampMs", "milliTimestamp", "timestampMillis"] {
            let mut j = base();
            j[name] = format!("{:#x}", secs * 1000 + 400).into();
            let b = header(j).into_block(Vec::new());
            assert_eq!(b.timestamp, secs);
            assert_eq!(b.timestamp_ms, Some(secs * 1000 + 400), "{name}");
        }
        let b = header(base()).into_block(Vec::new());
        assert_eq!(
            (b.number, b.timestamp_ms, b.base_fee, b.gas_used),
            (16, None, Some(1_000_000_000), 21_000)
        );
    }

    #[test]
    fn a_millisecond_timestamp_outside_the_second_is_dropped() {
        let mut j = base();
        j["timestampMs"] = format!("{:#x}", (0x6650f2c0u64 + 1) * 1000).into();
        assert_eq!(header(j).into_block(Vec::new()).timestamp_ms, None);
    }

    #[test]
    fn configs_are_checked() {
        let ok = FeedConfig::new("ws://127.0.0.1:8545", vec![]);
        assert!(ok.ws_url.is_some() && ok.http_url.is_none());
        assert!(NodeFeed::new(ok.clone()).is_ok());
        let http = FeedConfig::new("http://127.0.0.1:8545", vec![]);
        assert!(http.ws_url.is_none() && http.http_url.is_some());
        let mut bad = ok.clone();
        bad.reorg_window = 1;
        assert!(matches!(NodeFeed::new(bad), Err(FeedError::Config(_))));
        let bad = ok.with_http_fallback("ftp://x");
        assert!(matches!(NodeFeed::new(bad), Err(FeedError::Config(_))));
    }
}

//! Shared fixtures: a living devnet, a TCP proxy that can cut its connections, and checks of a
//! feed's output against the node.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::Filter;
use dexlab_data::RawLog;
use dexlab_data::devnet::{ChainUpConfig, Devnet, LiveReport};
use dexlab_live::{BlockRef, FeedEvent, FeedStats, NodeBlock, NodeFeed};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A devnet with `history` market blocks, not yet live. The manifest goes to a temporary folder
/// that lives as long as the returned guard.
pub async fn devnet(seed: u64, history: u64) -> (Devnet, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChainUpConfig {
        port: free_port(),
        seed,
        blocks: history,
        chain_id: 31337,
        block_time: 2,
        manifest: dir.path().join("manifest.json"),
        live_block_time_ms: Some(200),
    };
    let d = dexlab_data::devnet::start(&cfg, false).await.unwrap();
    (d, dir)
}

/// A devnet mining its market every `block_time_ms` in a background task, as
/// `dexlab chain up --live` does.
pub struct LiveChain {
    pub http: String,
    pub ws: String,
    pub port: u16,
    pub pools: Vec<dexlab_data::types::PoolInfo>,
    pub manifest: dexlab_data::manifest::ChainManifest,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<(Devnet, dexlab_data::Result<LiveReport>)>>,
    _dir: tempfile::TempDir,
}

impl LiveChain {
    pub async fn start(seed: u64, history: u64, block_time_ms: u64) -> LiveChain {
        let (mut d, dir) = devnet(seed, history).await;
        let (tx, rx) = oneshot::channel::<()>();
        let (http, ws, port) = (d.http_url().to_string(), d.ws_url(), d.node.port);
        let pools = d.manifest.pools.clone();
        let manifest = d.manifest.clone();
        let task = tokio::spawn(async move {
            let r = d
                .mine_live(block_time_ms, async {
                    let _ = rx.await;
                })
                .await;
            (d, r)
        });
        LiveChain {
            http,
            ws,
            port,
            pools,
            manifest,
            stop: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    pub fn pool_addresses(&self) -> Vec<Address> {
        self.pools.iter().map(|p| p.address).collect()
    }

    pub fn provider(&self) -> DynProvider {
        http_provider(&self.http)
    }

    /// Stops mining (between two blocks) and returns the devnet, still serving.
    pub async fn stop(&mut self) -> (Devnet, LiveReport) {
        let _ = self.stop.take().expect("running").send(());
        let (d, r) = self.task.take().expect("running").await.unwrap();
        (d, r.unwrap())
    }
}

/// The head block's timestamp.
pub async fn head_timestamp(p: &DynProvider) -> u64 {
    p.get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp
}

/// Mines one block of whatever is pending, a second after the head (the devnet's own clock).
pub async fn mine_one(p: &DynProvider) {
    use alloy::providers::ext::AnvilApi;
    let ts = head_timestamp(p).await;
    p.anvil_set_next_block_timestamp(ts + 1).await.unwrap();
    p.evm_mine(None).await.unwrap();
}

pub fn http_provider(url: &str) -> DynProvider {
    alloy::providers::ProviderBuilder::new()
        .disable_recommended_fillers()
        .connect_http(url.parse().unwrap())
        .erased()
}

/// A feed pulled in its own task (as a live engine would), so that the test can break the
/// connection while the feed is waiting.
pub struct Pump {
    rx: tokio::sync::mpsc::UnboundedReceiver<(Result<FeedEvent, String>, FeedStats)>,
    task: JoinHandle<()>,
    pub stats: FeedStats,
    pub events: Vec<FeedEvent>,
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Pump {
    pub fn start(mut feed: NodeFeed) -> Pump {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let ev = feed.next().await.map_err(|e| e.to_string());
                let end = ev.is_err();
                if tx.send((ev, feed.stats())).is_err() || end {
                    return;
                }
            }
        });
        Pump {
            rx,
            task,
            stats: FeedStats::default(),
            events: Vec::new(),
        }
    }

    /// Receives events until `done` holds for the newest block delivered; panics on a feed error
    /// or after `timeout`.
    pub async fn until(
        &mut self,
        timeout: Duration,
        done: impl Fn(&NodeBlock, &FeedStats) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let (ev, stats) = tokio::time::timeout_at(deadline, self.rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!(
                        "condition not met within {timeout:?}; {} events, stats {:?}",
                        self.events.len(),
                        self.stats
                    )
                })
                .expect("the feed task ended");
            self.stats = stats;
            let ev = ev.unwrap_or_else(|e| panic!("feed error: {e}"));
            let hit = matches!(&ev, FeedEvent::Block(b) if done(b, &stats));
            self.events.push(ev);
            if hit {
                return;
            }
        }
    }

    /// The next outcome, error or not.
    pub async fn next_outcome(&mut self, timeout: Duration) -> Result<FeedEvent, String> {
        let (ev, stats) = tokio::time::timeout(timeout, self.rx.recv())
            .await
            .expect("no outcome in time")
            .expect("the feed task ended");
        self.stats = stats;
        if let Ok(e) = &ev {
            self.events.push(e.clone());
        }
        ev
    }

    pub fn blocks(&self) -> Vec<&NodeBlock> {
        blocks(&self.events)
    }

    pub fn last_block(&self) -> Option<&NodeBlock> {
        self.blocks().last().copied()
    }
}

/// Pulls events until `n` blocks have been delivered (counting blocks re-delivered after a
/// reorg), failing after `timeout`.
pub async fn collect_blocks(feed: &mut NodeFeed, n: usize, timeout: Duration) -> Vec<FeedEvent> {
    let mut out = Vec::new();
    let mut blocks = 0;
    let deadline = tokio::time::Instant::now() + timeout;
    while blocks < n {
        let ev = tokio::time::timeout_at(deadline, feed.next())
            .await
            .unwrap_or_else(|_| panic!("only {blocks} of {n} blocks within {timeout:?}"))
            .unwrap();
        if matches!(ev, FeedEvent::Block(_)) {
            blocks += 1;
        }
        out.push(ev);
    }
    out
}

pub fn blocks(events: &[FeedEvent]) -> Vec<&NodeBlock> {
    events
        .iter()
        .filter_map(|e| match e {
            FeedEvent::Block(b) => Some(b),
            FeedEvent::Reorg { .. } => None,
        })
        .collect()
}

/// Every block follows the one before it: number + 1 and parent hash (no gap, no duplicate).
pub fn assert_chained(bs: &[&NodeBlock]) {
    for w in bs.windows(2) {
        assert_eq!(
            (w[1].number, w[1].parent_hash),
            (w[0].number + 1, w[0].hash),
            "block {} does not follow block {}",
            w[1].number,
            w[0].number
        );
    }
}

/// The delivered blocks are the node's canonical blocks, and their logs are exactly what one
/// `eth_getLogs` over the same range answers now.
pub async fn assert_matches_node(p: &DynProvider, pools: &[Address], bs: &[&NodeBlock]) {
    let (a, b) = (bs[0].number, bs.last().unwrap().number);
    for blk in bs {
        let h = p
            .get_block_by_number(blk.number.into())
            .await
            .unwrap()
            .unwrap()
            .header;
        assert_eq!(blk.hash, h.hash, "block {} is not canonical", blk.number);
        assert_eq!(blk.timestamp, h.timestamp, "block {}", blk.number);
        assert_eq!(blk.base_fee, h.base_fee_per_gas.map(u128::from));
    }
    let logs = p
        .get_logs(
            &Filter::new()
                .address(pools.to_vec())
                .from_block(a)
                .to_block(b),
        )
        .await
        .unwrap();
    let want: Vec<RawLog> = logs
        .iter()
        .map(|l| dexlab_data::ingest::raw_log(l, 31337).unwrap())
        .collect();
    let got: Vec<RawLog> = bs.iter().flat_map(|b| b.logs.iter().cloned()).collect();
    assert_eq!(
        got.len(),
        want.len(),
        "log counts differ over blocks {a}..={b}"
    );
    assert!(got == want, "logs differ over blocks {a}..={b}");
}

/// Swap events among `logs` (V2 and V3 signatures).
pub fn swaps(logs: &[RawLog]) -> usize {
    use alloy::sol_types::SolEvent;
    let v2 = dexlab_data::decode::univ2::Swap::SIGNATURE_HASH;
    let v3 = dexlab_data::decode::univ3::Swap::SIGNATURE_HASH;
    let pancake = dexlab_data::decode::pancakev3::Swap::SIGNATURE_HASH;
    logs.iter()
        .filter(|l| {
            l.topic0()
                .is_some_and(|t| *t == v2 || *t == v3 || *t == pancake)
        })
        .count()
}

pub fn refs(bs: &[&NodeBlock]) -> Vec<BlockRef> {
    bs.iter().map(|b| b.block_ref()).collect()
}

/// A loopback TCP proxy (so it carries WebSocket as well as HTTP) that can cut every
/// connection at once and refuse new ones.
pub struct TcpProxy {
    pub port: u16,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct ProxyState {
    refusing: bool,
    accepted: u64,
    refused: u64,
    conns: Vec<JoinHandle<()>>,
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

impl TcpProxy {
    pub async fn start(upstream: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let mut s = st.lock().unwrap();
                if s.refusing {
                    s.refused += 1;
                    drop(client);
                    continue;
                }
                s.accepted += 1;
                s.conns.retain(|c| !c.is_finished());
                s.conns.push(tokio::spawn(async move {
                    let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
                }));
            }
        });
        TcpProxy { port, state, task }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Closes every open connection, both ways.
    pub fn cut(&self) {
        for c in self.state.lock().unwrap().conns.drain(..) {
            c.abort();
        }
    }

    /// While refusing, new connections are accepted and closed at once.
    pub fn set_refusing(&self, refusing: bool) {
        self.state.lock().unwrap().refusing = refusing;
    }

    pub fn accepted(&self) -> u64 {
        self.state.lock().unwrap().accepted
    }

    pub fn refused(&self) -> u64 {
        self.state.lock().unwrap().refused
    }
}

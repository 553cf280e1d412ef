//! Connection trouble between the feed and the node, through a loopback TCP proxy: a WebSocket
//! cut mid-session, a WebSocket refused (HTTP fallback), a node gone for good.

use std::time::Duration;

use alloy::providers::Provider;
use dexlab_live::{FeedConfig, NodeFeed, Transport};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_websocket_loses_no_block_and_repeats_none() {
    let mut chain = LiveChain::start(33, 0, 200).await;
    let pools = chain.pool_addresses();
    let proxy = TcpProxy::start(chain.port).await;
    let mut cfg = FeedConfig::new(proxy.ws_url(), pools.clone());
    cfg.backoff_max = Duration::from_millis(400);
    let mut pump = Pump::start(NodeFeed::new(cfg).unwrap());
    pump.until(Duration::from_secs(20), |_, s| s.blocks >= 8)
        .await;

    // Cut the socket and keep the node out of reach while it mines on.
    proxy.set_refusing(true);
    proxy.cut();
    let cut_at = pump.last_block().unwrap().number;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let head_in_outage = chain.provider().get_block_number().await.unwrap();
    proxy.set_refusing(false);
    pump.until(Duration::from_secs(20), |b, _| {
        b.number >= head_in_outage + 5
    })
    .await;
    let (_devnet, _) = chain.stop().await;

    assert!(
        head_in_outage >= cut_at + 4,
        "blocks {cut_at}..{head_in_outage} mined in the outage"
    );
    assert!(
        proxy.refused() > 0,
        "the feed tried to reconnect during the outage"
    );
    assert!(pump.stats.reconnects >= 1, "{:?}", pump.stats);
    let bs = pump.blocks();
    assert_chained(&bs);
    assert_matches_node(&chain.provider(), &pools, &bs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_websocket_falls_back_to_http_polling_and_returns() {
    let mut chain = LiveChain::start(36, 0, 200).await;
    let pools = chain.pool_addresses();
    let proxy = TcpProxy::start(chain.port).await;
    proxy.set_refusing(true);
    let mut cfg = FeedConfig::new(proxy.ws_url(), pools.clone()).with_http_fallback(&chain.http);
    cfg.ws_retry_interval = Duration::from_millis(500);
    let mut pump = Pump::start(NodeFeed::new(cfg).unwrap());
    pump.until(Duration::from_secs(20), |_, s| s.blocks >= 6)
        .await;
    assert_eq!(pump.stats.transport, Some(Transport::Http));
    assert!(pump.stats.http_fallbacks >= 1);

    proxy.set_refusing(false);
    pump.until(Duration::from_secs(20), |_, s| {
        s.transport == Some(Transport::WebSocket)
    })
    .await;
    let back_at = pump.last_block().unwrap().number;
    pump.until(Duration::from_secs(20), |b, _| b.number >= back_at + 5)
        .await;
    let (_devnet, _) = chain.stop().await;

    assert_eq!(pump.stats.transport, Some(Transport::WebSocket));
    let bs = pump.blocks();
    assert_chained(&bs);
    assert_matches_node(&chain.provider(), &pools, &bs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_gone_for_good_ends_the_feed_with_a_clear_error() {
    let chain = LiveChain::start(37, 0, 200).await;
    let proxy = TcpProxy::start(chain.port).await;
    let mut cfg = FeedConfig::new(proxy.ws_url(), chain.pool_addresses());
    cfg.give_up_after = Duration::from_millis(1500);
    cfg.backoff_max = Duration::from_millis(300);
    let mut pump = Pump::start(NodeFeed::new(cfg).unwrap());
    pump.until(Duration::from_secs(20), |_, s| s.blocks >= 3)
        .await;

    proxy.set_refusing(true);
    proxy.cut();
    let started = std::time::Instant::now();
    let err = loop {
        match pump.next_outcome(Duration::from_secs(15)).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    let took = started.elapsed();
    assert!(
        err.contains(&format!("node ws://127.0.0.1:{} unreachable", proxy.port)),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "gave up after {took:?}"
    );
    assert!(proxy.refused() >= 2, "retried before giving up");
}

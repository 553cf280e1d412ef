//! The feed against a living devnet: every block, with exactly the tracked pools' logs, over
//! WebSocket from the head and over HTTP polling from a past block.

use std::time::Duration;

use dexlab_live::{FeedConfig, FeedEvent, NodeFeed, Start, Transport};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn websocket_feed_delivers_every_block_with_the_pools_logs() {
    let mut chain = LiveChain::start(31, 5, 200).await;
    let pools = chain.pool_addresses();
    let mut feed = NodeFeed::new(FeedConfig::new(&chain.ws, pools.clone())).unwrap();
    let events = collect_blocks(&mut feed, 25, Duration::from_secs(40)).await;
    let (_devnet, _) = chain.stop().await;

    assert!(
        events.iter().all(|e| matches!(e, FeedEvent::Block(_))),
        "no reorg on a devnet that does not reorg"
    );
    let bs = blocks(&events);
    assert_chained(&bs);
    assert_matches_node(&chain.provider(), &pools, &bs).await;
    let n_swaps: usize = bs.iter().map(|b| swaps(&b.logs)).sum();
    assert!(
        n_swaps >= bs.len(),
        "{n_swaps} swaps in {} blocks",
        bs.len()
    );
    // 200 ms blocks share their second: nothing may need unique timestamps.
    assert!(
        bs.windows(2).any(|w| w[0].timestamp == w[1].timestamp),
        "no two blocks share a timestamp"
    );
    assert!(bs.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
    let stats = feed.stats();
    assert_eq!(stats.transport, Some(Transport::WebSocket));
    assert_eq!((stats.blocks, stats.reconnects, stats.reorgs), (25, 0, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn http_polling_feed_backfills_from_a_past_block_then_follows_the_head() {
    let mut chain = LiveChain::start(32, 30, 200).await;
    let pools = chain.pool_addresses();
    let first = chain.manifest.first_block;
    let live_from = chain.manifest.last_block + 1;
    let mut cfg = FeedConfig::new(&chain.http, pools.clone()).starting(Start::Block(first));
    // Several ranged backfill steps over the history.
    cfg.max_batch = 7;
    let mut pump = Pump::start(NodeFeed::new(cfg).unwrap());
    pump.until(Duration::from_secs(40), |b, _| b.number >= live_from + 10)
        .await;
    let (_devnet, _) = chain.stop().await;

    let bs = pump.blocks();
    assert_eq!(bs[0].number, first);
    assert_chained(&bs);
    assert_matches_node(&chain.provider(), &pools, &bs).await;
    assert!(bs.iter().map(|b| b.logs.len()).sum::<usize>() > 100);
    assert_eq!(pump.stats.transport, Some(Transport::Http));
}

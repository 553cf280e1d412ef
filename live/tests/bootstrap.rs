//! Pool state from the node: a bootstrap at one block plus the feed's logs replays to exactly a
//! fresh bootstrap at the last block.

use std::time::Duration;

use dexlab_data::replay::Replayer;
use dexlab_live::{FeedConfig, NodeFeed, PoolStates, Start, bootstrap, bootstrap_latest};

use crate::support::*;

fn seeded(pools: &[dexlab_data::types::PoolInfo], s: &PoolStates) -> Replayer {
    let mut rp = Replayer::new(pools);
    for snap in &s.pools {
        snap.seed(&mut rp).unwrap();
    }
    rp
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bootstrap_plus_the_feed_replays_to_a_fresh_bootstrap() {
    let mut chain = LiveChain::start(38, 5, 200).await;
    let p = chain.provider();
    let start = bootstrap_latest(&p, &chain.pools).await.unwrap();
    assert!(start.absent.is_empty(), "{:?}", start.absent);
    assert_eq!(start.pools.len(), chain.pools.len());

    let cfg =
        FeedConfig::new(&chain.ws, chain.pool_addresses()).starting(Start::After(start.block));
    let mut pump = Pump::start(NodeFeed::new(cfg).unwrap());
    pump.until(Duration::from_secs(30), |_, s| s.blocks >= 20)
        .await;
    let (_devnet, _) = chain.stop().await;
    let bs = pump.blocks();
    assert_eq!(bs[0].number, start.block.number + 1);
    assert_eq!(bs[0].parent_hash, start.block.hash);
    assert_chained(&bs);

    let mut rp = seeded(&chain.pools, &start);
    let mut checked = 0;
    for b in &bs {
        for l in &b.logs {
            if let Some(c) = rp.apply(l) {
                assert_eq!(c.result, Ok(()), "swap at {}", c.location);
                checked += 1;
            }
        }
    }
    assert!(checked >= 20, "{checked} swaps");
    let end = bootstrap(&p, &chain.pools, bs.last().unwrap().block_ref())
        .await
        .unwrap();
    let fresh = seeded(&chain.pools, &end);
    for pool in &chain.pools {
        assert_eq!(
            rp.state(&pool.address),
            fresh.state(&pool.address),
            "{} {}",
            pool.dex,
            pool.address
        );
    }
}

//! The living devnet itself (`dexlab chain up --live` without the CLI): blocks at the configured
//! interval with swaps in them, timestamps in whole seconds shared by sub-second blocks, the same
//! chain for the same seed whatever the wall clock did, and a clean stop.

use std::time::{Duration, Instant};

use alloy::providers::Provider;
use alloy::rpc::types::Filter;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_living_devnet_mines_at_its_block_time_with_swaps_and_stops_cleanly() {
    let ms = 200;
    let mut chain = LiveChain::start(35, 0, ms).await;
    let started = Instant::now();
    let history_last = chain.manifest.last_block;
    let p = chain.provider();
    let history_ts = p
        .get_block_by_number(history_last.into())
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (devnet, report) = chain.stop().await;
    let elapsed = started.elapsed().as_secs_f64();

    let head = p.get_block_number().await.unwrap();
    assert_eq!(report.last_block, head);
    assert_eq!(report.blocks, head - history_last);
    // About one block per 200 ms: never faster (the first block is mined at once), and not
    // much slower on a busy machine.
    let slots = elapsed * 1000.0 / ms as f64;
    assert!(
        report.blocks as f64 >= 0.6 * slots && report.blocks as f64 <= slots + 2.0,
        "{} blocks in {elapsed:.2}s, {slots:.1} slots of {ms} ms",
        report.blocks
    );
    // Live block k is stamped k * 200 ms after the history, in whole seconds.
    for k in 1..=report.blocks {
        let h = p
            .get_block_by_number((history_last + k).into())
            .await
            .unwrap()
            .unwrap()
            .header;
        assert_eq!(h.timestamp, history_ts + k * ms / 1000, "live block {k}");
    }
    let logs = p
        .get_logs(
            &Filter::new()
                .address(chain.pool_addresses())
                .from_block(history_last + 1)
                .to_block(head),
        )
        .await
        .unwrap();
    let raw: Vec<_> = logs
        .iter()
        .map(|l| dexlab_data::ingest::raw_log(l, 31337).unwrap())
        .collect();
    let with_swaps: std::collections::BTreeSet<u64> = raw
        .iter()
        .filter(|l| swaps(std::slice::from_ref(l)) == 1)
        .map(|l| l.block_number)
        .collect();
    assert!(
        with_swaps.len() as f64 >= 0.8 * report.blocks as f64,
        "{} of {} blocks have swaps",
        with_swaps.len(),
        report.blocks
    );
    assert!(report.trades >= report.blocks, "{report:?}");

    // Stopped means stopped: no block after the stop, and dropping the devnet ends anvil.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(p.get_block_number().await.unwrap(), head);
    let port = devnet.node.port;
    drop(devnet);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "anvil still serves on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_blocks_depend_on_the_seed_not_on_the_wall_clock() {
    // One devnet paced by the wall clock, one mined as fast as it goes: the same chain.
    let (mut live, _a) = devnet(39, 3).await;
    let (mut fast, _b) = devnet(39, 3).await;
    let report = live
        .mine_live(200, tokio::time::sleep(Duration::from_millis(2500)))
        .await
        .unwrap();
    assert!(report.blocks >= 6, "{report:?}");
    for _ in 0..report.blocks {
        fast.mine_block(200).await.unwrap();
    }
    let (pl, pf) = (
        http_provider(live.http_url()),
        http_provider(fast.http_url()),
    );
    assert_eq!(
        pl.get_block_number().await.unwrap(),
        pf.get_block_number().await.unwrap()
    );
    let n = pl.get_block_number().await.unwrap();
    let hash = |p: alloy::providers::DynProvider| async move {
        p.get_block_by_number(n.into())
            .await
            .unwrap()
            .unwrap()
            .header
            .hash
    };
    assert_eq!(hash(pl).await, hash(pf).await, "block {n} differs");
}

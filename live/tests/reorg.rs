//! A reorg made with anvil's `evm_snapshot` / `evm_revert`: the feed reports the common ancestor
//! and the dropped blocks, then delivers the new branch; a reorg deeper than the feed's window
//! is an error, and a bootstrap pinned to a dropped block fails.

use std::time::Duration;

use alloy::primitives::{B256, U256};
use alloy::providers::{DynProvider, Provider, ext::AnvilApi};
use dexlab_data::devnet::market::router_v3_swap_calldata;
use dexlab_live::{FeedConfig, FeedEvent, NodeFeed, bootstrap};

use crate::support::*;

/// One block of the other branch: a V3 swap by a noise trader (anvil fills nonce and fees).
pub(crate) async fn mine_other_block(
    p: &DynProvider,
    d: &dexlab_data::devnet::Devnet,
    i: u64,
    ts: u64,
) {
    let pool = d
        .manifest
        .pools
        .iter()
        .find(|p| p.protocol.is_v3())
        .unwrap();
    let trader = p.get_accounts().await.unwrap()[dexlab_data::devnet::NOISE.start];
    let zero_for_one = i.is_multiple_of(2);
    let token_in = if zero_for_one {
        &pool.token0
    } else {
        &pool.token1
    };
    // A tenth of a token and a bit, different in every block.
    let amount = U256::from(10u64).pow(U256::from(token_in.decimals)) / U256::from(10 + i);
    let tx = serde_json::json!({
        "from": trader,
        "to": d.manifest.router.unwrap(),
        "data": router_v3_swap_calldata(pool.address, zero_for_one, amount),
        "gas": "0x2625a0",
    });
    let hash: B256 = p
        .raw_request("eth_sendTransaction".into(), [tx])
        .await
        .unwrap();
    p.anvil_set_next_block_timestamp(ts).await.unwrap();
    p.evm_mine(None).await.unwrap();
    let receipt = p.get_transaction_receipt(hash).await.unwrap();
    assert!(
        receipt.as_ref().is_some_and(|r| r.status()),
        "swap of the other branch: {receipt:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_revert_reorg_is_reported_at_the_common_ancestor_then_the_new_branch() {
    let (mut d, _dir) = devnet(34, 3).await;
    let p = http_provider(d.http_url());
    let pools: Vec<_> = d.manifest.pools.iter().map(|x| x.address).collect();
    let mut pump = Pump::start(NodeFeed::new(FeedConfig::new(d.ws_url(), pools.clone())).unwrap());
    let mut narrow = FeedConfig::new(d.ws_url(), pools.clone());
    narrow.reorg_window = 3;
    let mut narrow = Pump::start(NodeFeed::new(narrow).unwrap());
    let t = Duration::from_secs(20);
    // Both feeds stand on the head before anything is mined.
    pump.until(t, |_, _| true).await;
    narrow.until(t, |_, _| true).await;

    for _ in 0..2 {
        d.mine_block(200).await.unwrap();
    }
    let ancestor = p.get_block_number().await.unwrap();
    pump.until(t, |b, _| b.number == ancestor).await;
    let ancestor_hash = pump.last_block().unwrap().hash;
    let ancestor_ts = pump.last_block().unwrap().timestamp;
    let snap: U256 = p.raw_request("evm_snapshot".into(), ()).await.unwrap();

    for _ in 0..3 {
        d.mine_block(200).await.unwrap();
    }
    pump.until(t, |b, _| b.number == ancestor + 3).await;
    narrow.until(t, |b, _| b.number == ancestor + 3).await;
    let old_branch = refs(&pump.blocks()[pump.blocks().len() - 3..]);
    let before_reorg = pump.events.len();

    let reverted: bool = p.raw_request("evm_revert".into(), (snap,)).await.unwrap();
    assert!(reverted);
    for i in 0..5 {
        mine_other_block(&p, &d, i, ancestor_ts + 1 + i).await;
    }
    pump.until(t, |b, _| b.number == ancestor + 5).await;

    let after = &pump.events[before_reorg..];
    assert_eq!(
        after[0],
        FeedEvent::Reorg {
            common_ancestor: ancestor,
            dropped: old_branch.clone()
        }
    );
    let new_branch = blocks(&after[1..]);
    assert_eq!(new_branch.len(), 5, "{after:?}");
    assert_eq!(new_branch[0].number, ancestor + 1);
    assert_eq!(new_branch[0].parent_hash, ancestor_hash);
    assert_chained(&new_branch);
    assert_matches_node(&p, &pools, &new_branch).await;
    assert!(new_branch.iter().all(|b| swaps(&b.logs) == 1));
    assert_eq!(pump.stats.reorgs, 1);

    // The narrow feed remembers only the three dropped blocks: it cannot place the reorg.
    let err = loop {
        match narrow.next_outcome(t).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(err.contains("deeper than the feed's window"), "{err}");

    // A bootstrap pinned to a dropped block is refused, not read from the new branch.
    let dropped = *old_branch.last().unwrap();
    let e = bootstrap(&p, &d.manifest.pools, dropped).await.unwrap_err();
    assert!(e.to_string().contains(&format!("{}", dropped.hash)), "{e}");
}

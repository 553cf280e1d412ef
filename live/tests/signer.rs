//! The sender on a real node: nonces kept locally and persisted, a restart that finds its
//! transactions still pending, receipts settled to the wei of the account's balance, a late
//! transaction cancelled by a replacement with bumped fees, and a dropped one reconciled.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ext::AnvilApi};
use alloy::signers::local::PrivateKeySigner;
use dexlab_live::signer::{Fees, Sender};

use crate::support::*;

async fn head(p: &DynProvider) -> (u64, u128) {
    let b = p
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap();
    (
        b.header.number,
        u128::from(b.header.base_fee_per_gas.unwrap_or(0)),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sender_keeps_nonces_across_a_restart_cancels_late_transactions_and_reconciles_drops() {
    let (d, _dir) = devnet(44, 3).await;
    let p = http_provider(d.http_url());
    let key = PrivateKeySigner::random();
    let me = key.address();
    p.anvil_set_balance(me, U256::from(10u64).pow(U256::from(20)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut s, r) = Sender::open(p.clone(), key.clone(), dir.path())
        .await
        .unwrap();
    assert_eq!((r.chain_nonce, r.next_nonce, r.pending), (0, 0, 0));
    let (n, base) = head(&p).await;
    let fees = Fees::for_block(base, 7, u128::MAX).unwrap();
    let to = Address::with_last_byte(0x77);
    for i in 0..3 {
        s.send(to, Bytes::new(), 30_000, fees, Some(i), n + 5)
            .await
            .unwrap();
    }
    assert_eq!(s.next_nonce(), 3);

    // Restarted before anything is mined: the three are found pending, the nonce goes on.
    drop(s);
    let (mut s, r) = Sender::open(p.clone(), key.clone(), dir.path())
        .await
        .unwrap();
    assert_eq!((r.chain_nonce, r.next_nonce, r.pending), (0, 3, 3));
    let before = p.get_balance(me).await.unwrap();
    mine_one(&p).await;
    let (n, base) = head(&p).await;
    let settled = s.poll(n, base).await.unwrap();
    assert_eq!(settled.len(), 3, "{settled:?}");
    assert!(settled.iter().all(|t| t.success && t.block == Some(n)));
    let cost: u128 = settled.iter().map(|t| t.cost_wei()).sum();
    assert_eq!(before - p.get_balance(me).await.unwrap(), U256::from(cost));
    assert!(s.tracked().is_empty());

    // Past its deadline and unmined: cancelled by a zero-value transfer to ourselves with the
    // same nonce, which is what gets mined.
    let late = s
        .send(to, Bytes::new(), 30_000, fees, Some(9), n)
        .await
        .unwrap();
    assert!(s.poll(n + 1, base).await.unwrap().is_empty());
    let t = &s.tracked()[0];
    assert!(t.cancelled && t.hashes.len() == 2);
    assert!(t.fees.max_priority_fee_per_gas * 10 >= fees.max_priority_fee_per_gas * 11);
    mine_one(&p).await;
    let (n, base) = head(&p).await;
    let settled = s.poll(n, base).await.unwrap();
    assert_eq!(settled.len(), 1);
    assert!(settled[0].cancelled && !settled[0].success && settled[0].nonce == 3);
    assert_ne!(settled[0].hash, late);
    assert_eq!(settled[0].gas_used, 21_000);
    assert!(p.get_transaction_receipt(late).await.unwrap().is_none());
    assert_eq!(p.get_transaction_count(me).await.unwrap(), 4);

    // Dropped by the node: reconciled as dropped, its nonce used again.
    let gone = s
        .send(to, Bytes::new(), 30_000, fees, Some(10), n + 5)
        .await
        .unwrap();
    p.anvil_drop_transaction(gone).await.unwrap();
    let r = s.reconcile().await.unwrap();
    assert_eq!(r.settled.len(), 1);
    assert_eq!((r.settled[0].block, r.settled[0].bundle), (None, Some(10)));
    assert_eq!((r.chain_nonce, r.next_nonce, r.pending), (4, 4, 0));
    s.send(to, Bytes::new(), 30_000, fees, Some(11), n + 5)
        .await
        .unwrap();
    mine_one(&p).await;
    let (n, base) = head(&p).await;
    let settled = s.poll(n, base).await.unwrap();
    assert!(settled.len() == 1 && settled[0].success && settled[0].nonce == 4);

    // The state file is for this account only, and holds no secret.
    let text = std::fs::read_to_string(dir.path().join(dexlab_live::signer::STATE_FILE)).unwrap();
    let secret = alloy::primitives::hex::encode(key.to_bytes());
    assert!(!text.contains(&secret));
    let other = PrivateKeySigner::random();
    let e = Sender::open(p.clone(), other, dir.path())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("follows account"), "{e}");
}

/// A settled transaction whose outcome never reached a session's record (the process stopped in
/// between) is asked about again after a restart: `retrack` puts it back, and the next poll
/// settles it again, with the same receipt; a reorg that drops its block does the same through
/// `unsettle_after`.
#[tokio::test(flavor = "multi_thread")]
async fn a_settled_transaction_can_be_settled_again_after_a_restart_or_a_reorg() {
    let (d, _dir) = devnet(46, 3).await;
    let p = http_provider(d.http_url());
    let key = PrivateKeySigner::random();
    p.anvil_set_balance(key.address(), U256::from(10u64).pow(U256::from(20)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = Sender::open(p.clone(), key.clone(), dir.path())
        .await
        .unwrap();
    let (n, base) = head(&p).await;
    let fees = Fees::for_block(base, 7, u128::MAX).unwrap();
    s.send(
        Address::with_last_byte(0x77),
        Bytes::new(),
        30_000,
        fees,
        Some(41),
        n + 5,
    )
    .await
    .unwrap();
    mine_one(&p).await;
    let (n, base) = head(&p).await;
    let first = s.poll(n, base).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(s.tracked().is_empty());
    // The process stops before the outcome is recorded; restarted, the bundle is still in
    // flight for the engine.
    drop(s);
    let (mut s, r) = Sender::open(p.clone(), key.clone(), dir.path())
        .await
        .unwrap();
    assert!(r.settled.is_empty());
    s.retrack(&[7]).unwrap();
    assert!(s.tracked().is_empty(), "only the bundles asked for");
    s.retrack(&[41]).unwrap();
    assert_eq!(s.tracked().len(), 1);
    let again = s.poll(n, base).await.unwrap();
    assert_eq!(again, first);
    // A reorg below its block: tracked again too.
    assert!(s.unsettle_after(n).unwrap().is_empty());
    assert_eq!(s.unsettle_after(n - 1).unwrap(), vec![41]);
    assert_eq!(s.poll(n, base).await.unwrap(), first);
}

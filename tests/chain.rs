//! `dexlab chain up`: real contracts, a real market, reproducible by seed.

use alloy::providers::Provider;

use crate::support::Chain;

#[tokio::test(flavor = "multi_thread")]
async fn same_seed_same_chain_other_seed_other_chain() {
    let a = Chain::up(11, 60);
    let b = Chain::up(11, 60);
    let c = Chain::up(12, 60);
    let last = a.manifest.last_block;
    assert_eq!(last, b.manifest.last_block);
    let hash = |ch: &Chain| {
        let p = ch.provider();
        async move {
            p.get_block_by_number(last.into())
                .await
                .unwrap()
                .unwrap()
                .header
                .hash
        }
    };
    let (ha, hb, hc) = (hash(&a).await, hash(&b).await, hash(&c).await);
    assert_eq!(ha, hb, "same seed must give the same chain");
    assert_ne!(ha, hc, "another seed must give another chain");
    assert_eq!(a.manifest.pools, b.manifest.pools);
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_describes_real_pools_on_every_dex() {
    let ch = Chain::up(5, 30);
    let m = &ch.manifest;
    let dexes: std::collections::BTreeSet<_> = m.pools.iter().map(|p| p.dex.as_str()).collect();
    assert_eq!(
        dexes.into_iter().collect::<Vec<_>>(),
        ["baseswap", "pancakeswap-v3", "uniswap-v2", "uniswap-v3"]
    );
    let decimals: std::collections::BTreeMap<_, _> = m
        .tokens
        .iter()
        .map(|t| (t.symbol.as_str(), t.decimals))
        .collect();
    assert_eq!(decimals["WETH"], 18);
    assert_eq!(decimals["USDC"], 6);
    let p = ch.provider();
    for pool in &m.pools {
        let code = p.get_code_at(pool.address).await.unwrap();
        assert!(code.len() > 1000, "{} has no contract code", pool.address);
    }
    // Several V3 ranges, not one full-range position.
    let logs = p
        .get_logs(
            &alloy::rpc::types::Filter::new()
                .address(m.pools.iter().map(|x| x.address).collect::<Vec<_>>())
                .from_block(m.first_block)
                .to_block(m.last_block),
        )
        .await
        .unwrap();
    let mints = logs
        .iter()
        .filter(|l| {
            l.topics()[0]
                == <dexlab_data::decode::univ3::Mint as alloy::sol_types::SolEvent>::SIGNATURE_HASH
        })
        .count();
    assert!(mints >= 10, "{mints} V3 mints");
}

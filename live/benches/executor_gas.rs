//! The executor's gas per bundle, measured on the devnet's real DEX contracts: every pool alone,
//! every two-leg cycle of two venues on the same pair (both ways), and V3 legs that cross ticks,
//! each sent for real through a deployed `DexlabExecutor` and checked to the wei against the exact
//! math. Prints the two-leg table by pair of leg kinds next to the backtester's figure, the gas of
//! a bundle reverted at the final check, and the table fitted to the receipts. Gas is counted by
//! the EVM, not timed: one run is the figure.
//!
//! `cargo bench --profile dev --workspace --bench executor_gas` (`--workspace`, not `-p`: the
//! same features as the rest of the build, so nothing is rebuilt for it)

use std::collections::BTreeMap;

use alloy::providers::{Provider, ProviderBuilder};
use dexlab_data::devnet::ChainUpConfig;
use dexlab_live::gas::{GasProbe, LegKind, calibrate, calibration_bundles};
use dexlab_strategy::gas::GasConfig;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kind(k: LegKind) -> &'static str {
    match k {
        LegKind::V2 => "V2",
        LegKind::V3 => "V3",
        LegKind::SolidlyVolatile => "Solidly volatile",
        LegKind::SolidlyStable => "Solidly stable",
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ChainUpConfig {
        port: free_port(),
        seed: 1,
        blocks: 40,
        chain_id: 31337,
        block_time: 2,
        manifest: dir.path().join("manifest.json"),
        live_block_time_ms: Some(200),
    };
    let d = dexlab_data::devnet::start(&cfg, false).await.unwrap();
    let p = ProviderBuilder::new()
        .connect(d.http_url())
        .await
        .unwrap()
        .erased();
    let accounts = p.get_accounts().await.unwrap();
    let mut probe = GasProbe::deploy(p.clone(), accounts[14]).await.unwrap();
    let table = GasConfig::default();
    let cal = calibrate(&mut probe, &d.manifest.pools, &table)
        .await
        .unwrap();
    println!(
        "{} bundles through the executor on the devnet ({} pools), every output equal to the exact math\n",
        cal.samples.len(),
        d.manifest.pools.len()
    );
    println!(
        "| two-leg bundle | bundles | measured gas (min–max) | mean | backtester | backtester / mean |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for r in cal.pairs() {
        println!(
            "| {} + {} | {} | {}–{} | {} | {} | {:.2} |",
            kind(r.kinds.0),
            kind(r.kinds.1),
            r.samples,
            r.min,
            r.max,
            r.mean,
            r.model,
            r.model as f64 / r.mean as f64
        );
    }
    // One leg, by venue.
    let mut venues: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for s in cal
        .samples
        .iter()
        .filter(|s| s.kinds.len() == 1 && s.ticks_crossed == 0)
    {
        venues
            .entry(format!("{} ({})", s.venues[0], kind(s.kinds[0])))
            .or_default()
            .push(s.gas_used);
    }
    println!("\n| one leg, no tick crossed | bundles | gas (min–max) |\n|---|---:|---:|");
    for (v, g) in &venues {
        println!(
            "| {v} | {} | {}–{} |",
            g.len(),
            g.iter().min().unwrap(),
            g.iter().max().unwrap()
        );
    }
    let crossing: Vec<_> = cal.samples.iter().filter(|s| s.ticks_crossed > 0).collect();
    // Per tick, by venue: the bundle's gas over the same venue's one-leg gas with no crossing.
    println!(
        "\n| V3 leg crossing ticks | ticks | gas | over no crossing, per tick |\n|---|---:|---:|---:|"
    );
    for s in &crossing {
        let base = venues
            .get(&format!("{} ({})", s.venues[0], kind(s.kinds[0])))
            .map(|g| g.iter().sum::<u64>() / g.len() as u64)
            .unwrap_or(0);
        println!(
            "| {} | {} | {} | {} |",
            s.venues[0],
            s.ticks_crossed,
            s.gas_used,
            (s.gas_used.saturating_sub(base)) / u64::from(s.ticks_crossed)
        );
    }
    println!(
        "\nV3 legs crossing ticks: {} bundles, {}–{} ticks, {}–{} gas",
        crossing.len(),
        crossing.iter().map(|s| s.ticks_crossed).min().unwrap_or(0),
        crossing.iter().map(|s| s.ticks_crossed).max().unwrap_or(0),
        crossing.iter().map(|s| s.gas_used).min().unwrap_or(0),
        crossing.iter().map(|s| s.gas_used).max().unwrap_or(0),
    );
    // Reverted at the final check, after the swaps (the state does not move): a two-leg cycle
    // per pair of kinds, next to that pair's mean filled gas.
    let market = probe.market(&d.manifest.pools).await.unwrap();
    let means: BTreeMap<_, _> = cal.pairs().into_iter().map(|r| (r.kinds, r.mean)).collect();
    let mut seen = std::collections::BTreeSet::new();
    let mut shares = Vec::new();
    println!(
        "\n| reverted at the final check | gas | filled gas (mean) | share |\n|---|---:|---:|---:|"
    );
    for b in calibration_bundles(&market)
        .iter()
        .filter(|b| b.legs.len() == 2)
    {
        let (a, c) = (
            LegKind::of(&market.pools[b.legs[0].pool]),
            LegKind::of(&market.pools[b.legs[1].pool]),
        );
        let k = (a.min(c), a.max(c));
        if !seen.insert(k) {
            continue;
        }
        let reverted = probe.measure_revert(&market, b).await.unwrap();
        let filled = means[&k];
        shares.push(reverted as f64 / filled as f64);
        println!(
            "| {} + {} | {reverted} | {filled} | {:.2} |",
            kind(k.0),
            kind(k.1),
            reverted as f64 / filled as f64
        );
    }
    println!(
        "mean share: {:.3}",
        shares.iter().sum::<f64>() / shares.len().max(1) as f64
    );
    let len: Vec<usize> = cal
        .samples
        .iter()
        .filter(|s| s.kinds.len() == 2)
        .map(|s| s.calldata_len)
        .collect();
    println!(
        "\ncalldata of a two-leg bundle: {} bytes",
        len.first().copied().unwrap_or(0)
    );
    match &cal.fitted {
        Some(f) => println!(
            "\nfitted table (least squares over all {} bundles, rounded up to 100 gas): base = {}, per_v2_leg = {}, per_v3_leg = {}, per_solidly_leg = {}, per_tick_crossed = {}\nnow: base = {}, per_v2_leg = {}, per_v3_leg = {}, per_solidly_leg = {}, per_tick_crossed = {}",
            cal.samples.len(),
            f.base,
            f.per_v2_leg,
            f.per_v3_leg,
            f.per_solidly_leg,
            f.per_tick_crossed,
            table.base,
            table.per_v2_leg,
            table.per_v3_leg,
            table.per_solidly_leg,
            table.per_tick_crossed
        ),
        None => println!("\nno fit: a family or the tick term had no sample"),
    }
}

//! Live trading on a living devnet: `dexlab chain up` makes the operator (keystore, executor,
//! funds) and `dexlab live --mode live` trades through the executor contract with signed
//! transactions. The devnet's informed traders are the rival searchers: they race for the same
//! cross-venue gaps with priority fees scaled to the gap, and can win (our bundle then reverts
//! on chain, or is not sent when the check already sees the gap closed). The books match the
//! chain to the unit at every reconciliation, the operator's gas spent is what the receipts
//! booked, the session replays identically, survives a kill, stops at the kill switch, and a
//! balance change the books cannot explain halts trading and says what differs. (A reorg, a
//! dropped WebSocket, the revert breaker and the loss limit in live mode: `live/tests/paper.rs`,
//! on a devnet the test mines itself.)

use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy::primitives::{Address, U256};
use alloy::providers::{Provider, ProviderBuilder, ext::AnvilApi};
use alloy::sol_types::SolCall;

use crate::support::*;

alloy::sol! {
    function mint(address to, uint256 amount) external;
}

fn live_args(
    chain: &Chain,
    config: &std::path::Path,
    session: &std::path::Path,
    blocks: u64,
) -> Vec<String> {
    vec![
        "live".into(),
        "--rpc".into(),
        format!("ws://127.0.0.1:{}", chain.port),
        "--mode".into(),
        "live".into(),
        "--manifest".into(),
        chain.manifest_path.display().to_string(),
        "--strategy".into(),
        "cross-venue-arb".into(),
        "--params".into(),
        r#"{"min_profit_bps": 0}"#.into(),
        "--config".into(),
        config.display().to_string(),
        "--reconcile-every".into(),
        "5".into(),
        "--session".into(),
        session.display().to_string(),
        "--blocks".into(),
        blocks.to_string(),
        "--json".into(),
    ]
}

fn recorded_blocks(session: &std::path::Path) -> usize {
    std::fs::read_to_string(session.join("blocks.jsonl"))
        .unwrap_or_default()
        .lines()
        .count()
}

/// The books and the chain agree on every token, and the operator's account spent exactly the
/// gas the receipts booked.
fn assert_books_match_chain(s: &serde_json::Value) {
    let l = &s["live"];
    assert_eq!(l["differences"].as_array().unwrap().len(), 0, "{s}");
    let tokens = l["tokens"].as_array().unwrap();
    assert!(!tokens.is_empty(), "{s}");
    for t in tokens {
        assert_eq!(t["agrees"], true, "{t}");
        assert_eq!(t["onchain"], t["ledger"], "{t}");
        assert_eq!(
            t["onchain_balance_change"], t["ledger_balance_change"],
            "{t}"
        );
    }
    assert_eq!(l["operator_spent_wei"], l["gas_booked_wei"], "{s}");
    assert_ne!(l["gas_booked_wei"], "0", "{s}");
}

#[test]
fn a_live_session_trades_through_the_executor_with_books_that_match_the_chain() {
    let chain = Chain::up_live(5, 200, 400);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&chain.manifest_path).unwrap()).unwrap();
    let operator = &manifest["operator"];
    let executor: Address = operator["executor"].as_str().unwrap().parse().unwrap();
    // The key is only in the encrypted keystore: the manifest holds no secret.
    let password = std::fs::read_to_string(operator["password_file"].as_str().unwrap()).unwrap();
    assert!(!manifest.to_string().contains(password.trim()));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("live.toml");
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/evolve-devnet.toml"
    ))
    .unwrap();
    // A bundle may land up to 3 blocks after its first possible one.
    std::fs::write(
        &config,
        base.replacen(
            "latency_blocks = 1",
            "latency_blocks = 1\ndeadline_blocks = 3",
            1,
        ),
    )
    .unwrap();
    let session = dir.path().join("session");
    let db = format!("sqlite:{}", dir.path().join("dexlab.sqlite").display());
    let dexlab = || {
        let mut c = dexlab();
        c.env("DATABASE_URL", &db).env_remove("DEXLAB_PRIVATE_KEY");
        c
    };

    let o = dexlab()
        .args(live_args(&chain, &config, &session, 200))
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&o.stderr).contains(password.trim()));
    let s = json_of(&o);
    assert_eq!(s["blocks"], 200, "{s}");
    let l = &s["live"];
    assert_eq!(
        l["executor"].as_str().unwrap().parse::<Address>().unwrap(),
        executor
    );
    assert!(
        l["sent"].as_u64().unwrap() > 0,
        "no transaction in 200 blocks: {s}"
    );
    assert!(
        s["fills"].as_u64().unwrap() > 0,
        "no fill in 200 blocks: {s}"
    );
    // Every bundle that left was first put to the deployed executor, and agreed with the math.
    assert_eq!(s["node_mismatches"], 0, "{s}");
    assert!(l["reconciliations"].as_u64().unwrap() >= 40, "{s}");
    assert_books_match_chain(&s);
    let r = json_of(
        &dexlab()
            .args(["live", "replay", "--json"])
            .arg(&session)
            .output()
            .unwrap(),
    );
    assert_eq!(r["identical"], true, "{r}");

    // Killed while trading, then resumed: nothing sent twice, books still the chain's.
    let mut child = dexlab()
        .args(live_args(&chain, &config, &session, 100_000))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorded_blocks(&session) < 230 {
        assert!(
            Instant::now() < deadline,
            "the resumed session did not advance"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let s = json_of(
        &dexlab()
            .args(live_args(&chain, &config, &session, 20))
            .output()
            .unwrap(),
    );
    assert_eq!(s["resumed"], true, "{s}");
    assert_books_match_chain(&s);
    let r = json_of(
        &dexlab()
            .args(["live", "replay", "--json"])
            .arg(&session)
            .output()
            .unwrap(),
    );
    assert_eq!(r["identical"], true, "{r}");

    // Tokens the books cannot explain arrive in the executor: the next reconciliation halts
    // trading, naming the token and both figures.
    let usdc = manifest["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["symbol"] == "USDC")
        .unwrap();
    let usdc_addr: Address = usdc["address"].as_str().unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let p = ProviderBuilder::new()
            .connect(&format!("http://127.0.0.1:{}", chain.port))
            .await
            .unwrap();
        // A stranger, not one of the devnet's own accounts (whose nonces it keeps).
        let from = Address::repeat_byte(0x77);
        p.anvil_set_balance(from, U256::from(10u64).pow(U256::from(18)))
            .await
            .unwrap();
        p.anvil_impersonate_account(from).await.unwrap();
        let tx = alloy::rpc::types::TransactionRequest::default()
            .from(from)
            .to(usdc_addr)
            .input(
                mintCall {
                    to: executor,
                    amount: U256::from(1_234_567u64),
                }
                .abi_encode()
                .into(),
            );
        p.send_transaction(tx)
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    });
    // And the operator pulls the kill switch: from the session's next block on, nothing leaves.
    let o = dexlab()
        .args(["live", "kill"])
        .arg(&session)
        .args(["--reason", "test"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = json_of(
        &dexlab()
            .args(live_args(&chain, &config, &session, 15))
            .output()
            .unwrap(),
    );
    assert_eq!(s["live"]["sent"], 0, "{s}");
    assert_eq!(s["risk_refused"], s["bundles"], "{s}");
    let diffs = s["live"]["differences"].as_array().unwrap();
    assert!(
        diffs.iter().any(|d| {
            let d = d.as_str().unwrap();
            d.contains("USDC") && d.contains("1234567")
        }),
        "{s}"
    );
    let halted = s["halted"].as_array().unwrap();
    for kind in ["Reconciliation", "KillSwitch"] {
        assert!(
            halted.iter().any(|h| h.as_str().unwrap().starts_with(kind)),
            "{kind}: {s}"
        );
    }
    assert!(
        s["risk_events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("Reconciliation")),
        "{s}"
    );
}

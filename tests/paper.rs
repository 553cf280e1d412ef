//! Paper trading on a living devnet (`dexlab chain up --live`): a session's replay takes every
//! decision again, and a session killed mid-run continues where it stopped when the same command
//! is run again, with no block missed or repeated.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

fn live_args(chain: &Chain, session: &std::path::Path, blocks: u64) -> Vec<String> {
    vec![
        "live".into(),
        "--rpc".into(),
        format!("ws://127.0.0.1:{}", chain.port),
        "--mode".into(),
        "paper".into(),
        "--manifest".into(),
        chain.manifest_path.display().to_string(),
        "--strategy".into(),
        "cross-venue-arb".into(),
        "--params".into(),
        r#"{"min_profit_bps": 0}"#.into(),
        "--config".into(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/examples/evolve-devnet.toml").into(),
        "--session".into(),
        session.display().to_string(),
        "--blocks".into(),
        blocks.to_string(),
        "--json".into(),
    ]
}

fn json_of(o: &std::process::Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn replay(session: &std::path::Path) -> serde_json::Value {
    let o = dexlab()
        .args(["live", "replay", "--json"])
        .arg(session)
        .output()
        .unwrap();
    json_of(&o)
}

fn recorded_blocks(session: &std::path::Path) -> Vec<u64> {
    let text = std::fs::read_to_string(session.join("blocks.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["block"]["block"]["number"].as_u64())
        .collect()
}

#[test]
fn a_paper_session_replays_identically_and_resumes_after_a_kill() {
    let chain = Chain::up_live(4, 200, 100);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    let db = format!("sqlite:{}", dir.path().join("dexlab.sqlite").display());
    let dexlab = || {
        let mut c = dexlab();
        c.env("DATABASE_URL", &db);
        c
    };

    let s = json_of(
        &dexlab()
            .args(live_args(&chain, &session, 120))
            .output()
            .unwrap(),
    );
    assert_eq!(s["blocks"], 120, "{s}");
    assert!(
        s["bundles"].as_u64().unwrap() > 0,
        "no arbitrage in 120 blocks: {s}"
    );
    assert_eq!(s["resumed"], false);
    // Every bundle was simulated on the node through the executor's code, and agreed to the wei.
    assert_eq!(s["node_checked"], s["bundles"], "{s}");
    assert_eq!(s["node_mismatches"], 0, "{s}");
    assert_eq!(s["node_unavailable"], 0, "{s}");
    let r = replay(&session);
    assert_eq!(r["identical"], true, "{r}");
    assert_eq!(r["blocks"], 120);
    assert_eq!(r["decisions"], s["bundles"]);

    // Killed while running: at most the block being written is lost.
    let mut child = dexlab()
        .args(live_args(&chain, &session, 100_000))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while recorded_blocks(&session).len() < 170 {
        assert!(
            Instant::now() < deadline,
            "the resumed session did not advance"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = recorded_blocks(&session).len();

    // The same command continues the session: every block once, in order, decisions identical.
    let s = json_of(
        &dexlab()
            .args(live_args(&chain, &session, 30))
            .output()
            .unwrap(),
    );
    assert_eq!(s["resumed"], true, "{s}");
    assert_eq!(s["blocks"], 30);
    assert_eq!(s["session_blocks"].as_u64().unwrap() as usize, before + 30);
    let blocks = recorded_blocks(&session);
    assert_eq!(blocks.len(), before + 30);
    assert!(
        blocks.windows(2).all(|w| w[1] == w[0] + 1),
        "a block missed or repeated: {blocks:?}"
    );
    let r = replay(&session);
    assert_eq!(r["identical"], true, "{r}");
    assert_eq!(r["blocks"].as_u64().unwrap() as usize, before + 30);

    // One row for the session in the store, back to stopped after the kill and the resume.
    let rows = json_of(
        &dexlab()
            .args(["live", "sessions", "--json"])
            .output()
            .unwrap(),
    );
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["status"], "stopped");
    assert_eq!(rows[0]["mode"], "paper");
    assert_eq!(rows[0]["blocks"].as_u64().unwrap() as usize, before + 30);
    assert_eq!(rows[0]["last_block"].as_u64(), blocks.last().copied());
}

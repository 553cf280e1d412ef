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

/// Every line of a session's `blocks.jsonl`, as JSON.
fn records(session: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(session.join("blocks.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["block"].clone())
        .collect()
}

/// The block whose record holds a risk event `event` of `kind`.
fn block_with(recs: &[serde_json::Value], event: &str, kind: &str) -> Option<u64> {
    recs.iter()
        .find(|r| {
            r["risk"]
                .as_array()
                .is_some_and(|es| es.iter().any(|e| e["event"] == event && e["kind"] == kind))
        })
        .and_then(|r| r["block"]["number"].as_u64())
}

#[test]
fn the_kill_switch_stops_a_running_session_at_its_next_block_and_outlives_a_restart() {
    let chain = Chain::up_live(5, 200, 100);
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("session");
    let db = format!("sqlite:{}", dir.path().join("dexlab.sqlite").display());
    let dexlab = || {
        let mut c = dexlab();
        c.env("DATABASE_URL", &db);
        c
    };
    let risk = dir.path().join("risk.toml");
    std::fs::write(&risk, "max_bundles_per_block = 1\n").unwrap();
    let args = |blocks: u64| {
        let mut a = live_args(&chain, &session, blocks);
        a.extend(["--risk".into(), risk.display().to_string()]);
        a
    };

    let mut child = dexlab()
        .args(args(100_000))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while records(&session).len() < 60 {
        assert!(Instant::now() < deadline, "the session did not advance");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The kill, while the engine runs: it binds the next block the engine reads.
    let last_before = recorded_blocks(&session).last().copied().unwrap();
    let o = dexlab()
        .args(["live", "kill", "--reason", "test"])
        .arg(&session)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let last_after = recorded_blocks(&session).last().copied().unwrap();
    // Long enough for the strategy to want to trade while killed.
    let refused_halted = |recs: &[serde_json::Value]| {
        recs.iter()
            .flat_map(|r| r["risk"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["rule"] == "halted")
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let recs = records(&session);
        let last = recs
            .last()
            .and_then(|r| r["block"]["number"].as_u64())
            .unwrap();
        if last >= last_after + 40 && refused_halted(&recs) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline && last < last_after + 600,
            "no bundle refused in {} blocks after the kill",
            last - last_after
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let recs = records(&session);
    let killed_at = block_with(&recs, "tripped", "kill_switch").expect("the kill was recorded");
    // The block in progress when the command landed may have read the commands before it: the
    // kill binds the block after that one at the latest.
    assert!(
        killed_at > last_before && killed_at <= last_after + 2,
        "the kill landed at block {killed_at}; the engine had recorded {last_before}..={last_after} \
         while it was issued"
    );
    // From that block on every bundle is refused; before it, never more than one per block.
    let mut sent_after = 0;
    for r in &recs {
        let n = r["block"]["number"].as_u64().unwrap();
        let sent = r["sent"].as_array().map_or(0, Vec::len);
        let refused: Vec<&serde_json::Value> = r["risk"]
            .as_array()
            .map(|es| es.iter().filter(|e| e["event"] == "refused").collect())
            .unwrap_or_default();
        if n >= killed_at {
            sent_after += sent;
            assert_eq!(refused.len(), sent, "block {n}: {r}");
            assert!(
                refused.iter().all(|e| e["rule"] == "halted"),
                "block {n}: {r}"
            );
        } else {
            assert!(sent - refused.len() <= 1, "block {n}: {r}");
        }
    }
    let r = replay(&session);
    assert_eq!(r["identical"], true, "{r}");

    // Restarted, it is still killed.
    let s = json_of(&dexlab().args(args(20)).output().unwrap());
    assert_eq!(s["resumed"], true, "{s}");
    let halted: Vec<&str> = s["halted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(
        halted
            .iter()
            .filter(|h| h.starts_with("KillSwitch"))
            .count(),
        1,
        "{s}"
    );
    // Any other halt in force is one the first run tripped before the kill (three reverts in
    // a row, when the market dealt them): it outlives the restart as well, until cleared.
    for h in halted.iter().filter(|h| !h.starts_with("KillSwitch")) {
        assert!(
            h.starts_with("Reverts") && block_with(&recs, "tripped", "reverts").is_some(),
            "a halt the first run never tripped: {s}"
        );
    }
    assert_eq!(s["bundles"], s["risk_refused"], "{s}");

    // Cleared by an operator (with the reverts halt, when the first run tripped one): the next
    // run trades again.
    let mut clear = vec!["kill_switch"];
    if halted.iter().any(|h| h.starts_with("Reverts")) {
        clear.push("reverts");
    }
    for halt in clear {
        let o = dexlab()
            .args(["live", "clear", "--halt", halt])
            .arg(&session)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let s = json_of(&dexlab().args(args(5)).output().unwrap());
    assert!(s["halted"].as_array().unwrap().is_empty(), "{s}");
    assert!(
        block_with(&records(&session), "cleared", "kill_switch").is_some(),
        "the clear was not recorded"
    );
    let r = replay(&session);
    assert_eq!(r["identical"], true, "{r}");
    assert!(sent_after > 0);
}

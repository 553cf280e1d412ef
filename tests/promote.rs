//! From the lab to a running session: an evolved experiment is promoted to a named deployment
//! (refused when it is not better than not trading out of sample), a paper session runs the
//! deployment, a new version and a rollback take over the running session at block boundaries,
//! every decision names the version that made it, and the session still replays identically.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

fn ok(c: &mut std::process::Command) -> serde_json::Value {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed:\n{}\n{}",
        c,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

fn records(session: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(session.join("blocks.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["block"].clone())
        .collect()
}

const RISK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/risk.toml");

#[test]
fn a_promoted_deployment_runs_and_new_versions_take_over_a_running_session() {
    let chain = Chain::up_live(7, 400, 250);
    let data = chain.dir.path().join("ds");
    ingest(&chain.url(), &chain.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", work.path().join("store.sqlite").display());
    let dexlab = || {
        let mut c = dexlab();
        c.env("DATABASE_URL", &db);
        c
    };
    for (strategy, name) in [("cross-venue-arb", "arb"), ("price-reversion", "rev")] {
        let o = dexlab()
            .args([
                "evolve",
                "--strategy",
                strategy,
                "--seed",
                "3",
                "--folds",
                "2",
            ])
            .args([
                "--population",
                "6",
                "--generations",
                "2",
                "--quiet",
                "--name",
                name,
            ])
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(work.path().join(name))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let oos = |name: &str, kind: &str| -> f64 {
        let e = ok(dexlab().args(["experiments", "show", name, "--json"]));
        e["experiment"]["summary"]["runs"][kind]["out_of_sample_net_pnl_quote"]
            .as_f64()
            .unwrap()
    };
    // The devnet has arbitrage: tuned, it beats not trading out of sample.
    assert!(oos("arb", "ga") > oos("arb", "no_trade"));

    // Promotion follows the out-of-sample evidence, and says so when it refuses.
    let promote = |exp: &str, extra: &[&str]| {
        dexlab()
            .args(["promote", exp, "--risk", RISK, "--json"])
            .args(extra)
            .output()
            .unwrap()
    };
    let rev_better = oos("rev", "ga") > oos("rev", "no_trade");
    let o = promote("rev", &["--name", "rev"]);
    assert_eq!(
        o.status.success(),
        rev_better,
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    if !rev_better {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("not better") && err.contains("--force"),
            "{err}"
        );
        let forced = ok(dexlab().args([
            "promote", "rev", "--risk", RISK, "--json", "--name", "rev", "--force",
        ]));
        assert_eq!(forced["forced"], true, "{forced}");
    }
    let o = promote("arb", &["--name", "arb", "--fold", "7"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("fold 7"));
    let v1 = ok(dexlab().args(["promote", "arb", "--risk", RISK, "--json", "--name", "arb"]));
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["forced"], false);
    assert_eq!(v1["strategy"], "cross-venue-arb");
    assert_eq!(v1["fold"], 1, "the last fold's parameters by default");
    assert!(v1["evidence"]["out_of_sample_net_pnl_quote"]["no_trade"].is_number());
    assert!(v1["dexlab_version"].is_string() && v1["created_by"].is_string());

    // A paper session runs the deployment; while it runs, v2 (fold 0's parameters) and a
    // rollback (v3, restoring v1) take over at block boundaries.
    let session = work.path().join("session");
    let child = dexlab()
        .args(["live", "--rpc", &format!("ws://127.0.0.1:{}", chain.port)])
        .args(["--mode", "paper", "--deployment", "arb"])
        .arg("--manifest")
        .arg(&chain.manifest_path)
        .arg("--session")
        .arg(&session)
        .args(["--blocks", "100000", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let provider = chain.provider();
    let head = || {
        use alloy::providers::Provider;
        rt.block_on(provider.get_block_number()).unwrap()
    };
    let until = |what: &str, done: &dyn Fn(&[serde_json::Value]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(180);
        while !done(&records(&session)) {
            assert!(Instant::now() < deadline, "the session did not {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let switched_to = |v: u64| {
        move |recs: &[serde_json::Value]| {
            recs.iter()
                .any(|r| r["switch"]["deployment"]["version"].as_u64() == Some(v))
        }
    };
    // Caught up with the chain (the bootstrap takes a while), so that each new version is seen
    // on its own.
    until("catch up", &|recs| {
        recs.last()
            .and_then(|r| r["block"]["number"].as_u64())
            .is_some_and(|n| n + 2 >= head())
    });
    let v2 = ok(dexlab().args([
        "promote", "arb", "--risk", RISK, "--json", "--name", "arb", "--fold", "0",
    ]));
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["replaces"], 1);
    until("switch to v2", &switched_to(2));
    let v3 = ok(dexlab().args(["deployments", "rollback", "arb", "--json"]));
    assert_eq!(v3["version"], 3);
    assert_eq!(v3["rollback_of"], 1);
    assert_eq!(v3["params"], v1["params"]);
    until("switch to v3", &switched_to(3));
    let n = records(&session).len();
    until("go on", &|recs| recs.len() >= n + 20);
    // Ctrl-C stops it cleanly, with its summary.
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let switches: Vec<&str> = s["deployment_switches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert_eq!(switches.len(), 2, "{s}");
    assert!(
        switches[0].ends_with("arb@v2") && switches[1].ends_with("arb@v3"),
        "{s}"
    );

    // Every decision names the version in force at its block.
    let recs = records(&session);
    let mut version = 1;
    let mut decisions = 0;
    for r in &recs {
        if let Some(sw) = r.get("switch") {
            assert_eq!(sw["deployment"]["version"], version + 1);
            version += 1;
        }
        for p in r["sent"].as_array().unwrap() {
            assert_eq!(p["deployment"], format!("arb@v{version}"), "{r}");
            decisions += 1;
        }
    }
    assert_eq!(version, 3);
    assert!(decisions > 0, "no decision in {} blocks", recs.len());
    let r = ok(dexlab().args(["live", "replay", "--json"]).arg(&session));
    assert_eq!(r["identical"], true, "{r}");

    let list = ok(dexlab().args(["deployments", "list", "--json"]));
    assert_eq!(
        list.as_array()
            .unwrap()
            .iter()
            .filter(|d| d["name"] == "arb")
            .count(),
        3
    );
    let show = ok(dexlab().args(["deployments", "show", "arb", "--json"]));
    assert_eq!(show["deployment"]["version"], 3);
    assert_eq!(show["history"].as_array().unwrap().len(), 3);
}

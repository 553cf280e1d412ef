//! Research end to end: a simulated chain is ingested, a strategy is evolved walk-forward into the
//! store (SQLite and PostgreSQL, same code), listed, shown and reported; a killed `dexlab evolve`
//! resumes to the same result.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

fn pg_url(db: &str) -> String {
    let base = std::env::var("DEXLAB_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => base,
    }
}

fn evolve(data: &Path, out: &Path, db: &str, extra: &[&str]) -> Command {
    let mut c = dexlab();
    let generations = if extra.contains(&"--population") {
        &[][..]
    } else {
        &["--population", "6"][..]
    };
    c.args([
        "evolve",
        "--strategy",
        "cross-venue-arb",
        "--seed",
        "3",
        "--folds",
        "2",
        "--quiet",
    ])
    .args(generations)
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .args(extra)
    .env("DATABASE_URL", db);
    c
}

fn ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{:?} failed: {}",
        c,
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// The fold results of a finished run, without what legitimately differs between runs.
fn folds(out: &Path) -> serde_json::Value {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    v["folds"].clone()
}

#[test]
fn strategies_list_their_parameter_spaces() {
    let v: serde_json::Value =
        serde_json::from_str(&ok(dexlab().args(["strategies", "list", "--json"]))).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"cross-venue-arb") && names.contains(&"price-reversion"),
        "{names:?}"
    );
    let arb = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "cross-venue-arb")
        .unwrap();
    let params: Vec<&str> = arb["params"]["specs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for p in [
        "min_profit_bps",
        "max_notional_frac",
        "size_fraction",
        "bid_share",
    ] {
        assert!(params.contains(&p), "{p} missing from {params:?}");
    }
    // A wrong parameter is refused with its name and bounds.
    let o = dexlab()
        .args([
            "backtest",
            "--data",
            "/nonexistent",
            "--strategy",
            "cross-venue-arb",
            "--params",
            r#"{"bid_share": 9}"#,
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bid_share") && err.contains("[0, 0.95]"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn evolve_on_a_simulated_chain_into_sqlite_and_postgres_then_report() {
    let ch = Chain::up(31, 500);
    let data = ch.dir.path().join("ds");
    ingest(&ch.url(), &ch.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();

    // Backtest: JSON with metrics and per-transaction accounting.
    let bt: serde_json::Value = serde_json::from_str(&ok(dexlab()
        .args(["backtest", "--strategy", "cross-venue-arb", "--json"])
        .arg("--data")
        .arg(&data)))
    .unwrap();
    assert!(
        bt["metrics"]["trades"].as_u64().unwrap() > 0,
        "the devnet has arbitrage: {}",
        bt["metrics"]
    );
    assert!(bt["trades"][0]["gas_used"].as_u64().unwrap() > 0);
    // An ingested chain records every transaction's priority fee: bundles queue by it, and no
    // queue assumption is needed (or printed).
    let tape = dexlab_evolve::tape::Tape::load(&data).unwrap();
    assert!(tape.has_priority_fees);
    assert!(tape.events.iter().any(|e| e.priority_fee > 0));
    // Swaps carry their input, to be replayed as flows on pools our trades moved: a pair's
    // `Swap` rides on the `Sync` before it, a V3 swap on its own event.
    use dexlab_evolve::tape::Update;
    let flows = |v2: bool| {
        tape.events
            .iter()
            .filter(|e| match &e.update {
                Update::Reserves { swap, .. } => v2 && swap.is_some(),
                Update::V3Swap { swap, .. } => !v2 && swap.is_some(),
                _ => false,
            })
            .count()
    };
    assert!(flows(true) > 0 && flows(false) > 0);
    assert!(
        bt["metrics"]["queue_assumption"].is_null(),
        "{}",
        bt["metrics"]
    );

    // SQLite (a file) and PostgreSQL (a fresh database): same code, same results.
    let sqlite = format!("sqlite://{}", work.path().join("store.sqlite").display());
    let db = format!("dexlab_e2e_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    psql(&format!("CREATE DATABASE {db}"));
    let pg = pg_url(&db);
    let out_s = work.path().join("exp-sqlite");
    let out_p = work.path().join("exp-pg");
    ok(&mut evolve(
        &data,
        &out_s,
        &sqlite,
        &["--threads", "1", "--generations", "2"],
    ));
    ok(&mut evolve(
        &data,
        &out_p,
        &pg,
        &["--threads", "2", "--generations", "2"],
    ));
    assert_eq!(
        folds(&out_s),
        folds(&out_p),
        "same seed, other store and thread count: same result"
    );

    for url in [&sqlite, &pg] {
        let list: serde_json::Value = serde_json::from_str(&ok(dexlab()
            .args(["experiments", "list", "--json"])
            .env("DATABASE_URL", url)))
        .unwrap();
        let e = &list[0];
        assert_eq!(e["strategy"], "cross-venue-arb");
        assert_eq!(e["status"], "done");
        let id = e["id"].to_string();
        let show: serde_json::Value = serde_json::from_str(&ok(dexlab()
            .args(["experiments", "show", &id, "--json"])
            .env("DATABASE_URL", url)))
        .unwrap();
        let runs = show["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 2 * 4, "GA + 3 baselines per fold");
        assert_eq!(show["generations"].as_array().unwrap().len(), 2 * 3);
        let report = work.path().join(format!(
            "report-{}",
            if url == &pg { "pg" } else { "sqlite" }
        ));
        ok(dexlab()
            .args(["report", &id])
            .arg("--out")
            .arg(&report)
            .env("DATABASE_URL", url));
        for f in [
            "index.html",
            "fitness.png",
            "fitness.svg",
            "equity.png",
            "equity.svg",
            "params.png",
            "params.svg",
            "walk_forward.png",
            "walk_forward.svg",
        ] {
            let p = report.join(f);
            assert!(
                p.metadata().map(|m| m.len() > 100).unwrap_or(false),
                "{} missing or empty",
                p.display()
            );
        }
    }
    psql(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_evolve_resumes_to_the_same_result() {
    let ch = Chain::up(32, 400);
    let data = ch.dir.path().join("ds");
    ingest(&ch.url(), &ch.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", work.path().join("s.sqlite").display());
    let fresh = work.path().join("fresh");
    // Names are unique per store: the uninterrupted run and the killed one get their own.
    ok(&mut evolve(
        &data,
        &fresh,
        &db,
        &[
            "--generations",
            "6",
            "--population",
            "10",
            "--name",
            "fresh",
        ],
    ));

    let out = work.path().join("killed");
    let mut kills = 0;
    let mut last_killed = false;
    for _ in 0..3 {
        let mut child = evolve(
            &data,
            &out,
            &db,
            &[
                "--generations",
                "6",
                "--population",
                "10",
                "--name",
                "killed",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        // Wait for a new generation to be checkpointed, then SIGKILL.
        let before = std::fs::read_to_string(out.join("checkpoint.json")).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = std::fs::read_to_string(out.join("checkpoint.json")).unwrap_or_default();
            if (now != before && now.contains("\"generation\"")) || Instant::now() > deadline {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        last_killed = child.try_wait().unwrap().is_none();
        if last_killed {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills > 0, "the run finished before it could be killed");
    if last_killed {
        // SIGKILL leaves the row `running`, but its process is gone: not shown as live, and not
        // reported.
        let list: serde_json::Value = serde_json::from_str(&ok(dexlab()
            .args(["experiments", "list", "--json"])
            .env("DATABASE_URL", &db)))
        .unwrap();
        let killed = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "killed")
            .unwrap();
        assert_eq!(killed["status"], "interrupted", "{killed}");
        assert_eq!(killed["stored_status"], "running", "{killed}");
        let o = dexlab()
            .args(["report", "killed", "--out"])
            .arg(work.path().join("report-killed"))
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains("interrupted"), "{err}");
    }
    let stdout = ok(&mut evolve(
        &data,
        &out,
        &db,
        &[
            "--generations",
            "6",
            "--population",
            "10",
            "--name",
            "killed",
        ],
    ));
    assert!(!stdout.is_empty());
    assert_eq!(folds(&fresh), folds(&out));
}

//! The notebooks (`notebooks/*.ipynb`) run headless, through nbclient in the project's notebook
//! environment, against a real run's outputs: a dataset ingested from the chain, an evolve run
//! in the store, a trained model, a backtest's trades, and a paper session with its events in
//! the store and its replay. Any cell's error, a missing figure or a blank one fails the test.

use std::path::Path;
use std::process::Stdio;

use crate::support::*;

fn ok(c: &mut std::process::Command) -> std::process::Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn every_notebook_runs_against_a_real_runs_outputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".dexlab/notebooks-venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: run `bash scripts/setup.sh`",
        python.display()
    );
    let chain = Chain::up_live(21, 300, 200);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let db = format!("sqlite://{}", w.join("store.sqlite").display());
    let data = w.join("ds");
    ingest(&chain.url(), &chain.manifest_path, &data, &[]);
    let at = |args: &[&str]| {
        let mut c = dexlab();
        c.args(args).env("DATABASE_URL", &db);
        c
    };
    let (d, f, m) = (data.to_str().unwrap(), w.join("feat"), w.join("models/lin"));
    ok(&mut at(&[
        "features",
        "build",
        "--data",
        d,
        "--out",
        f.to_str().unwrap(),
    ]));
    ok(&mut at(&[
        "train",
        "--features",
        f.to_str().unwrap(),
        "--model",
        "linear",
        "--task",
        "regression",
        "--epochs",
        "3",
        "--out",
        m.to_str().unwrap(),
        "--json",
    ]));
    ok(&mut at(&[
        "evolve",
        "--data",
        d,
        "--strategy",
        "cross-venue-arb",
        "--seed",
        "3",
        "--folds",
        "2",
        "--population",
        "6",
        "--generations",
        "2",
        "--quiet",
        "--name",
        "nb-arb",
        "--out",
        w.join("exp").to_str().unwrap(),
    ]));
    let bt = ok(&mut at(&[
        "backtest",
        "--data",
        d,
        "--strategy",
        "cross-venue-arb",
        "--params",
        r#"{"min_profit_bps": 0}"#,
        "--json",
    ]));
    let bt_json = w.join("backtest.json");
    std::fs::write(&bt_json, &bt.stdout).unwrap();
    let session = w.join("session");
    let config = root.join("examples/evolve-devnet.toml");
    let mut paper = at(&[
        "live",
        "--rpc",
        &format!("ws://127.0.0.1:{}", chain.port),
        "--mode",
        "paper",
        "--manifest",
        chain.manifest_path.to_str().unwrap(),
        "--strategy",
        "cross-venue-arb",
        "--params",
        r#"{"min_profit_bps": 0}"#,
        "--config",
        config.to_str().unwrap(),
        "--session",
        session.to_str().unwrap(),
        "--blocks",
        "25",
        "--json",
    ]);
    paper.stdout(Stdio::null()).stderr(Stdio::piped());
    ok(&mut paper);

    let out = w.join("executed");
    let o = std::process::Command::new(&python)
        .arg(root.join("notebooks/run.py"))
        .arg(&out)
        .env("DATABASE_URL", &db)
        .env("DEXLAB_DATASET", &data)
        .env("DEXLAB_BACKTEST_JSON", &bt_json)
        .env("DEXLAB_MODEL_DIR", &m)
        .env("DEXLAB_SESSION_DIR", &session)
        .env("DEXLAB_BIN", env!("CARGO_BIN_EXE_dexlab"))
        .env("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "the notebooks failed:\n{text}");
    eprintln!("{text}");
    for nb in ["01-dataset", "02-experiments", "03-model", "04-session"] {
        assert!(
            text.contains(&format!("{nb}.ipynb: ")),
            "{nb} did not run:\n{text}"
        );
        assert!(out.join(format!("{nb}.ipynb")).is_file());
    }
}

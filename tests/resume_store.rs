//! Resuming checks the store it resumes into. An evolve checkpoint belongs to one experiment of
//! one store: rerun against another `DATABASE_URL` it is refused, saying which store it belongs
//! to and what to do, and nothing is written to the other store (not even to an experiment that
//! happens to have the same id). The same store under another spelling of its URL resumes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::dexlab;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The real sample, imported (no chain needed).
fn dataset(root: &Path) -> PathBuf {
    let sample = repo().join("../shared/data/univ3-usdc-weth-2024-01-05");
    let ds = root.join("ds");
    ok(dexlab()
        .args(["data", "import"])
        .arg(sample.join("logs.jsonl"))
        .arg("--out")
        .arg(&ds)
        .arg("--timestamps")
        .arg(sample.join("block_timestamps.csv"))
        .arg("--manifest")
        .arg(repo().join("examples/univ3-usdc-weth-mainnet.manifest.json")));
    ds
}

fn evolve(data: &Path, out: &Path, name: &str, store: &str) -> Command {
    let mut c = dexlab();
    c.args([
        "evolve",
        "--strategy",
        "price-reversion",
        "--seed",
        "5",
        "--folds",
        "2",
        "--population",
        "6",
        "--generations",
        "1",
        "--threads",
        "1",
        "--quiet",
        "--json",
        "--name",
        name,
    ])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .env("DATABASE_URL", store);
    c
}

fn ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn experiments(store: &str) -> serde_json::Value {
    let o = ok(dexlab()
        .args(["experiments", "list", "--json"])
        .env("DATABASE_URL", store));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn show(store: &str, id: &str) -> serde_json::Value {
    let o = ok(dexlab()
        .args(["experiments", "show", id, "--json"])
        .env("DATABASE_URL", store));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_checkpoint_resumes_only_into_the_store_it_belongs_to() {
    let work = tempfile::tempdir().unwrap();
    let data = dataset(work.path());
    let file_a = work.path().join("a.sqlite");
    let store_a = format!("sqlite://{}", file_a.display());
    let store_b = format!("sqlite://{}", work.path().join("b.sqlite").display());
    let out = work.path().join("exp");

    // A run into store A leaves its checkpoint in --out.
    ok(&mut evolve(&data, &out, "arb-a", &store_a));
    assert!(out.join("checkpoint.json").is_file());
    let in_a = experiments(&store_a);
    assert_eq!(in_a.as_array().unwrap().len(), 1, "{in_a}");
    assert_eq!(in_a[0]["name"], "arb-a");

    // Store B holds an experiment of its own, which got id 1 too.
    ok(&mut evolve(
        &data,
        &work.path().join("other"),
        "other-b",
        &store_b,
    ));
    let before_b = show(&store_b, "1");
    assert_eq!(before_b["experiment"]["name"], "other-b");

    // Rerunning the first command against store B is refused: it names the store the checkpoint
    // belongs to and says what to do; store B's experiment 1 is left exactly as it was.
    let o = evolve(&data, &out, "arb-a", &store_b).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "resumed into another store: {err}");
    assert_ne!(o.status.code(), Some(101), "panicked: {err}");
    assert!(err.contains(&*file_a.to_string_lossy()), "{err}");
    assert!(err.contains("`arb-a`"), "{err}");
    assert!(
        err.contains("DATABASE_URL") && err.contains("--force"),
        "{err}"
    );
    assert!(!err.contains("not found"), "{err}");
    assert_eq!(show(&store_b, "1"), before_b, "store B was written to");
    assert_eq!(experiments(&store_b).as_array().unwrap().len(), 1);

    // An empty store C: refused the same way, and C gains no experiment.
    let store_c = format!("sqlite://{}", work.path().join("c.sqlite").display());
    let o = evolve(&data, &out, "arb-a", &store_c).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "resumed into an empty store: {err}");
    assert!(err.contains(&*file_a.to_string_lossy()), "{err}");
    assert!(!err.contains("not found"), "{err}");
    if work.path().join("c.sqlite").exists() {
        assert_eq!(experiments(&store_c).as_array().unwrap().len(), 0);
    }

    // Store A under another spelling of its URL (a bare path) is the same store: it resumes.
    ok(&mut evolve(&data, &out, "arb-a", &file_a.to_string_lossy()));
    let in_a = experiments(&store_a);
    assert_eq!(in_a.as_array().unwrap().len(), 1, "{in_a}");
    assert_eq!(in_a[0]["status"], "done");

    // --force starts the experiment over in store B, under a name free there.
    ok(evolve(&data, &out, "arb-a", &store_b).arg("--force"));
    let in_b = experiments(&store_b);
    let names: Vec<&str> = in_b
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["arb-a", "other-b"], "{in_b}");
    assert_eq!(show(&store_b, "other-b"), before_b);
}

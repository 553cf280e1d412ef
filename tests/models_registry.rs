//! The model registry end to end on the real USDC/WETH sample: `dexlab train` registers every
//! model directory it writes, `dexlab models list|show|compare` read the registry back with the
//! numbers of each directory's metrics.json, say when models are not comparable, notice a missing
//! or edited directory, and refuse to overwrite a registered name with other content. On SQLite,
//! and on a fresh PostgreSQL database through the same commands.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{dexlab, psql};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn run(c: &mut Command) -> Output {
    c.output().unwrap()
}

fn ok(c: &mut Command) -> String {
    let o = run(c);
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn ok_json(c: &mut Command) -> Value {
    serde_json::from_str(&ok(c)).unwrap()
}

/// Stderr of a command that must fail.
fn fails(c: &mut Command) -> String {
    let o = run(c);
    assert!(
        !o.status.success(),
        "{c:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The sample imported (as `tests/import.rs` does) and featurised with the default config.
fn sample_features(work: &Path) -> PathBuf {
    let sample = root().join("../shared/data/univ3-usdc-weth-2024-01-05");
    let data = work.join("data");
    ok(dexlab()
        .args(["data", "import", "--json"])
        .arg(sample.join("logs.jsonl"))
        .arg("--out")
        .arg(&data)
        .arg("--timestamps")
        .arg(sample.join("block_timestamps.csv"))
        .arg("--manifest")
        .arg(root().join("examples/univ3-usdc-weth-mainnet.manifest.json")));
    let features = work.join("features");
    ok(dexlab()
        .args(["features", "build", "--json", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&features));
    features
}

/// `dexlab` with the store at `db`, run in `work` (so that nothing lands in the checkout).
fn at(db: &str, work: &Path) -> Command {
    let mut c = dexlab();
    c.env("DATABASE_URL", db).current_dir(work);
    c
}

/// `dexlab train --json` of a tiny regression model.
fn train(
    db: &str,
    work: &Path,
    features: &Path,
    model: &str,
    out: &Path,
    extra: &[&str],
) -> Command {
    let mut c = at(db, work);
    c.args([
        "train",
        "--task",
        "regression",
        "--epochs",
        "2",
        "--json",
        "--model",
        model,
    ])
    .arg("--features")
    .arg(features)
    .arg("--out")
    .arg(out)
    .args(extra);
    c
}

/// The test section of a model directory's metrics.json.
fn test_metrics(dir: &Path) -> Value {
    read_json(&dir.join("metrics.json"))["test"].clone()
}

struct Trained {
    lin: PathBuf,
    mlp: PathBuf,
    lin5: PathBuf,
    target: String,
}

/// Three registered models: `lin` and `mlp-small` on the same target, `lin-h5` on another.
fn train_three(db: &str, work: &Path, features: &Path) -> Trained {
    let lin = work.join("models/lin");
    let r = ok_json(&mut train(
        db,
        work,
        features,
        "linear",
        &lin,
        &["--seed", "1"],
    ));
    let target = r["target"].as_str().unwrap().to_owned();
    assert!(target.starts_with("label_fwd_ret_1__"), "{target}");
    let reg = &r["registered"];
    assert_eq!(
        reg["name"], "lin",
        "the name defaults to the directory's: {reg}"
    );
    assert_eq!(reg["new"], true);
    assert_eq!(reg["dir"], lin.to_str().unwrap());

    let mlp = work.join("models/mlp");
    let r = ok_json(&mut train(
        db,
        work,
        features,
        "mlp",
        &mlp,
        &["--seed", "2", "--name", "mlp-small"],
    ));
    assert_eq!(r["registered"]["name"], "mlp-small");
    assert_eq!(r["target"], target.as_str());

    let lin5 = work.join("models/lin-h5");
    let target5 = target.replacen("label_fwd_ret_1__", "label_fwd_ret_5__", 1);
    let r = ok_json(&mut train(
        db,
        work,
        features,
        "linear",
        &lin5,
        &["--seed", "1", "--target", &target5],
    ));
    assert_eq!(r["target"], target5.as_str());
    Trained {
        lin,
        mlp,
        lin5,
        target,
    }
}

/// list, show and compare read back exactly what each directory holds.
fn check_registry(db: &str, work: &Path, features: &Path, t: &Trained) {
    let list = ok_json(at(db, work).args(["models", "list", "--json"]));
    let models = list["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["lin-h5", "mlp-small", "lin"], "newest first");
    for (m, dir) in models.iter().zip([&t.lin5, &t.mlp, &t.lin]) {
        let test = test_metrics(dir);
        assert_eq!(m["metrics"], test, "{}", m["name"]);
        assert_eq!(m["headline"]["metric"], "mse");
        assert_eq!(m["headline"]["model"], test["model"]["mse"]);
        let best = test["baselines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["metrics"]["mse"].as_f64().unwrap())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(m["headline"]["best_baseline"]["value"].as_f64(), Some(best));
        assert_eq!(
            m["kind"],
            if m["name"] == "mlp-small" {
                "mlp"
            } else {
                "linear"
            }
        );
        assert_eq!(m["task"], "regression");
    }

    // show: everything, by name or id, and the directory checked against the row.
    let shown = ok_json(at(db, work).args(["models", "show", "lin", "--json"]));
    let m = &shown["model"];
    let schema = read_json(&t.lin.join("schema.json"));
    let dataset = read_json(&t.lin.join("dataset.json"));
    let config = read_json(&t.lin.join("config.json"));
    let manifest = read_json(&features.join("manifest.json"));
    assert_eq!(m["name"], "lin");
    assert_eq!(m["target"], t.target.as_str());
    assert_eq!(m["features"], schema["features"]);
    assert!(m["features"].as_array().unwrap().len() > 10);
    assert_eq!(m["window"], schema["window"]);
    assert_eq!(m["dataset_hash"], dataset["dataset_hash"]);
    assert_eq!(m["dataset_hash"], manifest["input_hash"]);
    assert_eq!(m["git_commit"], config["git_commit"]);
    assert_eq!(m["seed"], 1);
    assert_eq!(m["backend"], "flex");
    assert_eq!(m["dataset"], dataset);
    assert_eq!(m["metrics"], test_metrics(&t.lin));
    let baselines: Vec<&str> = m["metrics"]["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    for b in ["zero", "train_mean", "persistence"] {
        assert!(baselines.contains(&b), "{b} missing from {baselines:?}");
    }
    let d = &shown["directory"];
    assert_eq!(d["path"], t.lin.to_str().unwrap());
    assert_eq!(
        (&d["exists"], &d["loads"], &d["content_matches"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::Bool(true)),
        "{d}"
    );
    assert_eq!(d["problems"], serde_json::json!([]));
    assert_eq!(d["content_hash"], m["content_hash"]);
    let id = m["id"].to_string();
    let by_id = ok_json(at(db, work).args(["models", "show", &id, "--json"]));
    assert_eq!(by_id["model"], shown["model"]);
    let text = ok(at(db, work).args(["models", "show", "lin"]));
    assert!(
        text.contains("intact") && text.contains("baseline persistence"),
        "{text}"
    );

    // compare: the same target, dataset and test split, metric for metric.
    let c = ok_json(at(db, work).args(["models", "compare", "lin", "mlp-small", "--json"]));
    assert_eq!(c["comparable"], true, "{c}");
    assert_eq!(c["problems"], serde_json::json!([]));
    assert_eq!(
        c["metrics"],
        serde_json::json!(["mse", "mae", "directional_accuracy"])
    );
    for (cm, dir) in c["models"].as_array().unwrap().iter().zip([&t.lin, &t.mlp]) {
        let test = test_metrics(dir);
        for k in ["mse", "mae", "directional_accuracy"] {
            assert_eq!(cm["metrics"][k], test["model"][k], "{} {k}", cm["name"]);
        }
        assert_eq!(cm["test_split"]["rows"], test["rows"]);
        assert_eq!(cm["test_split"]["first_block"], test["first_block"]);
        assert_eq!(
            cm["baselines"].as_array().unwrap().len(),
            test["baselines"].as_array().unwrap().len()
        );
    }
    let text = ok(at(db, work).args(["models", "compare", "lin", "mlp-small"]));
    assert!(text.contains("comparable: same task"), "{text}");

    // Another target: side by side, but said not to be comparable.
    let c = ok_json(at(db, work).args(["models", "compare", "lin", "lin-h5", "--json"]));
    assert_eq!(c["comparable"], false);
    let problems = c["problems"].to_string();
    assert!(
        problems.contains("targets differ") && problems.contains("`lin-h5`"),
        "{problems}"
    );
    let text = ok(at(db, work).args(["models", "compare", "mlp-small", "lin-h5", "lin"]));
    assert!(
        text.contains("NOT COMPARABLE") && text.contains("targets differ"),
        "{text}"
    );

    // Unknown names: a clear error, nothing on stdout.
    let err = fails(at(db, work).args(["models", "show", "nope"]));
    assert!(
        err.contains("no model `nope`") && err.contains("dexlab models list"),
        "{err}"
    );
    let err = fails(at(db, work).args(["models", "compare", "lin", "nope", "--json"]));
    assert!(err.contains("no model `nope`"), "{err}");
    let err = fails(at(db, work).args(["models", "compare", "lin"]));
    assert!(err.contains("NAME|ID"), "compare needs two models: {err}");
}

#[test]
fn train_registers_and_models_list_show_compare_on_sqlite() {
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let db = format!("sqlite://{}", work.join("store.sqlite").display());
    let features = sample_features(work);
    let t = train_three(&db, work, &features);
    check_registry(&db, work, &features, &t);

    // The same training again reproduces the registered model: a no-op, same id.
    let lin_id =
        ok_json(at(&db, work).args(["models", "show", "lin", "--json"]))["model"]["id"].clone();
    let again = ok_json(&mut train(
        &db,
        work,
        &features,
        "linear",
        &t.lin,
        &["--seed", "1"],
    ));
    assert_eq!(again["registered"]["new"], false);
    assert_eq!(again["registered"]["id"], lin_id);
    // Other content under a registered name is refused, and the directory left as it was.
    let before = std::fs::read(t.lin.join("model.bpk")).unwrap();
    let err = fails(&mut train(
        &db,
        work,
        &features,
        "linear",
        &t.lin,
        &["--seed", "9"],
    ));
    assert!(
        err.contains("`lin` is already registered") && err.contains("other content"),
        "{err}"
    );
    assert_eq!(std::fs::read(t.lin.join("model.bpk")).unwrap(), before);
    let leftovers: Vec<_> = std::fs::read_dir(work.join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A registered name for another directory, a registered directory under another name, and
    // a name that reads as an id: refused before training.
    let err = fails(&mut train(
        &db,
        work,
        &features,
        "linear",
        &work.join("elsewhere/lin"),
        &[],
    ));
    assert!(
        err.contains("model name `lin` is already registered"),
        "{err}"
    );
    let err = fails(&mut train(
        &db,
        work,
        &features,
        "linear",
        &t.lin,
        &["--name", "lin-renamed"],
    ));
    assert!(err.contains("holds registered model"), "{err}");
    let err = fails(&mut train(
        &db,
        work,
        &features,
        "linear",
        &work.join("models/x"),
        &["--name", "123"],
    ));
    assert!(err.contains("all digits"), "{err}");
    assert!(!work.join("models/x").exists());

    // show notices a missing directory and an edited one.
    std::fs::remove_dir_all(&t.mlp).unwrap();
    let d = &ok_json(at(&db, work).args(["models", "show", "mlp-small", "--json"]))["directory"];
    assert_eq!(
        (&d["exists"], &d["loads"]),
        (&Value::Bool(false), &Value::Bool(false))
    );
    assert!(d["problems"].to_string().contains("missing"), "{d}");
    let text = ok(at(&db, work).args(["models", "show", "mlp-small"]));
    assert!(text.contains("PROBLEM: the directory is missing"), "{text}");

    let schema_path = t.lin5.join("schema.json");
    let mut schema = read_json(&schema_path);
    schema["features"].as_array_mut().unwrap().swap(0, 1);
    std::fs::write(&schema_path, serde_json::to_string_pretty(&schema).unwrap()).unwrap();
    let d = &ok_json(at(&db, work).args(["models", "show", "lin-h5", "--json"]))["directory"];
    assert_eq!(d["content_matches"], false);
    let problems = d["problems"].to_string();
    assert!(
        problems.contains("content changed") && problems.contains("feature columns differ"),
        "{problems}"
    );

    // The table lists every model with its loss next to the best baseline's.
    let text = ok(at(&db, work).args(["models", "list"]));
    for name in ["lin ", "mlp-small", "lin-h5", "mse ", t.target.as_str()] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
}

/// A fresh PostgreSQL database, dropped on drop.
struct PgDb(String);

impl Drop for PgDb {
    fn drop(&mut self) {
        psql(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.0));
    }
}

#[test]
fn train_registers_and_models_list_show_compare_on_postgres() {
    let name = format!("dexlab_e2e_models_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let _db = PgDb(name.clone());
    // The server trusts local connections, so the password is never checked: it is here to
    // show that no message prints it.
    let db = match std::env::var("DEXLAB_TEST_POSTGRES_URL") {
        Ok(base) if !base.trim().is_empty() => match base.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => base,
        },
        _ => format!("postgres://postgres:hunter2@127.0.0.1:5432/{name}"),
    };
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let features = sample_features(work);
    let t = train_three(&db, work, &features);
    check_registry(&db, work, &features, &t);
    let err = fails(at(&db, work).args(["models", "show", "nope"]));
    assert!(err.contains("postgres"), "{err}");
    assert!(!err.contains("hunter2"), "password printed: {err}");
}

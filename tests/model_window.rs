//! A model is never scored on the blocks it learned from: `dexlab backtest` and `dexlab evolve`
//! with a model evaluate only the blocks after its validation split plus the label's look-ahead,
//! say so, record the model's blocks with the experiment (`experiments show`, the report), and
//! refuse a dataset or a window they cannot prove out of sample.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::model_gated::trained;
use crate::support::dexlab;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Stdout and stderr of a command that must succeed.
fn ok(c: &mut Command) -> (String, String) {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (
        String::from_utf8(o.stdout).unwrap(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn fails(c: &mut Command) -> String {
    let o = c.output().unwrap();
    assert!(!o.status.success(), "{c:?} should fail");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn a_model_is_evaluated_only_after_the_blocks_it_saw() {
    let dir = tempfile::tempdir().unwrap();
    let (data, _features, model) = trained(dir.path());
    let db = format!("sqlite://{}", dir.path().join("store.sqlite").display());
    let ds = read_json(&model.join("dataset.json"));
    let block = |k: &str, i: usize| ds[k][i].as_i64().unwrap();
    let (valid_end, embargo) = (block("valid_blocks", 1), ds["embargo"].as_i64().unwrap());
    // The target is a 5-block forward return: its labels read 5 blocks past the valid split.
    let first_unseen = valid_end + embargo.max(5) + 1;
    let cfg = root().join("examples/evolve-mainnet.toml");

    // 1. A backtest replays only the unseen blocks.
    let (out, err) = ok(dexlab()
        .args(["backtest", "--strategy", "model-gated", "--json"])
        .args(["--params", r#"{"entry_bps": 0, "exit_bps": 0}"#])
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg));
    let bt: Value = serde_json::from_str(&out).unwrap();
    let equity = bt["equity"].as_array().unwrap();
    assert!(!equity.is_empty());
    let first = equity[0]["block"].as_i64().unwrap();
    assert!(
        first >= first_unseen,
        "the backtest starts at block {first}, inside the model's train/valid blocks \
         (they end at {valid_end}, + {embargo} blocks of look-ahead)"
    );
    for t in bt["trades"].as_array().unwrap() {
        assert!(t["decided_block"].as_i64().unwrap() >= first_unseen, "{t}");
    }
    let w = &bt["model_window"];
    assert_eq!(w["mode"], "restricted", "{w}");
    assert_eq!(
        w["seen"]["first_unseen"].as_i64(),
        Some(first_unseen),
        "{w}"
    );
    assert_eq!(w["evaluated_blocks"][0].as_i64(), Some(first), "{w}");
    assert_eq!(
        w["seen"]["train_blocks"], ds["train_blocks"],
        "the JSON names the model's train blocks: {w}"
    );
    assert!(
        err.contains(&format!(
            "saw blocks {}..={valid_end} (+embargo {})",
            block("train_blocks", 0),
            embargo.max(5)
        )) && err.contains(&format!("evaluating blocks {first}..=")),
        "{err}"
    );

    // 2. The walk-forward's folds, training windows included, lie after them too.
    let exp = dir.path().join("exp");
    let (out, _) = ok(dexlab()
        .args(["evolve", "--strategy", "model-gated", "--seed", "3"])
        .args(["--population", "6", "--generations", "1", "--folds", "2"])
        .args(["--quiet", "--json", "--name", "gated-window"])
        .arg("--data")
        .arg(&data)
        .arg("--model")
        .arg(&model)
        .arg("--config")
        .arg(&cfg)
        .arg("--out")
        .arg(&exp)
        .env("DATABASE_URL", &db));
    let result = read_json(&exp.join("result.json"));
    for f in result["folds"].as_array().unwrap() {
        for k in ["train_blocks", "test_blocks"] {
            let from = f[k][0].as_i64().unwrap();
            assert!(
                from >= first_unseen,
                "fold {} {k} start at block {from}, inside the model's train/valid blocks \
                 (they end at {valid_end}, + {embargo} blocks of look-ahead)",
                f["fold"]
            );
        }
    }
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        summary["model_window"]["seen"]["first_unseen"].as_i64(),
        Some(first_unseen),
        "{summary}"
    );

    // 3. The experiment records the model's blocks; `experiments show` and the report say them.
    let (show, _) = ok(dexlab()
        .args(["experiments", "show", "gated-window"])
        .env("DATABASE_URL", &db));
    let train = format!(
        "{}..={}",
        block("train_blocks", 0),
        block("train_blocks", 1)
    );
    let valid = format!("{}..={valid_end}", block("valid_blocks", 0));
    for want in [&train, &valid, "evaluated blocks"] {
        assert!(show.contains(want), "{want:?} not in:\n{show}");
    }
    let report = dir.path().join("report");
    ok(dexlab()
        .args(["report", "gated-window", "--out"])
        .arg(&report)
        .env("DATABASE_URL", &db));
    let html = std::fs::read_to_string(report.join("index.html")).unwrap();
    for want in [&train, &valid] {
        assert!(html.contains(want.as_str()), "{want:?} not in index.html");
    }
    // The sample has no receipts: the report states where bundles were assumed to land.
    assert!(
        html.contains("execution assumption") && html.contains("land after every transaction"),
        "the queue assumption is not in index.html"
    );

    // 4. Too few unseen blocks for the folds asked: refused, saying why.
    let e = fails(
        dexlab()
            .args([
                "evolve",
                "--strategy",
                "model-gated",
                "--folds",
                "400",
                "--quiet",
            ])
            .arg("--data")
            .arg(&data)
            .arg("--model")
            .arg(&model)
            .arg("--config")
            .arg(&cfg)
            .arg("--out")
            .arg(dir.path().join("exp-too-many"))
            .env("DATABASE_URL", &db),
    );
    assert!(
        e.contains("too few") && e.contains(&format!("after block {}", first_unseen - 1)),
        "{e}"
    );

    // 5. A model of another dataset: its blocks cannot be compared with these, so refused.
    let other = dir.path().join("other-model");
    std::fs::create_dir_all(&other).unwrap();
    for f in std::fs::read_dir(&model).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), other.join(f.file_name())).unwrap();
    }
    let mut ds2 = ds.clone();
    ds2["dataset_hash"] = "0".repeat(64).into();
    std::fs::write(other.join("dataset.json"), ds2.to_string()).unwrap();
    let e = fails(
        dexlab()
            .args(["backtest", "--strategy", "model-gated"])
            .arg("--data")
            .arg(&data)
            .arg("--model")
            .arg(&other)
            .arg("--config")
            .arg(&cfg),
    );
    assert!(e.contains("another dataset"), "{e}");
}

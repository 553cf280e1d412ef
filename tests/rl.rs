//! `dexlab rl train|eval` on the real sample: DQN and PPO agents trade inside the backtester and
//! are evaluated on held-out blocks next to a random policy, no trading and the tuned heuristic;
//! the same seed gives the same agent and the same evaluation.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::online_features::sample_tape;
use crate::support::dexlab;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn json(c: &mut Command) -> serde_json::Value {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn train(data: &Path, agent: &str, seed: u64, out: &Path) -> serde_json::Value {
    json(
        dexlab()
            .args(["rl", "train", "--agent", agent, "--episodes", "2", "--json"])
            .arg("--seed")
            .arg(seed.to_string())
            .arg("--data")
            .arg(data)
            .arg("--config")
            .arg(root().join("examples/evolve-mainnet.toml"))
            .arg("--rl-config")
            .arg(root().join("examples/rl.toml"))
            .arg("--out")
            .arg(out)
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", out.with_extension("sqlite").display()),
            ),
    )
}

fn run<'a>(v: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    v["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} in {v}"))
}

#[test]
fn agents_train_in_the_backtester_and_are_evaluated_against_baselines() {
    let dir = tempfile::tempdir().unwrap();
    sample_tape(dir.path());
    let data = dir.path().join("data");
    let a = dir.path().join("dqn-a");
    let v = train(&data, "dqn", 7, &a);
    for kind in [
        "dqn",
        "random_policy",
        "price_reversion_tuned",
        "price_reversion_default",
        "no_trade",
    ] {
        assert!(
            run(&v, kind)["metrics"]["net_pnl_quote"].is_number(),
            "{kind}"
        );
    }
    assert_eq!(run(&v, "no_trade")["metrics"]["net_pnl_quote"], 0.0);
    // The agent decided on every held-out block once warmed up, and its trades went through the
    // backtester (bundles, fills, gas), as did the random policy's.
    let dqn = run(&v, "dqn");
    let decisions = dqn["episode"]["decisions"].as_u64().unwrap();
    let blocks = v["blocks"].as_u64().unwrap();
    assert!(
        decisions > blocks * 3 / 4,
        "{decisions} decisions over {blocks} blocks"
    );
    let random = run(&v, "random_policy");
    assert!(
        random["metrics"]["trades"].as_u64().unwrap() > 10,
        "{random}"
    );
    assert!(random["metrics"]["gas_spent_quote"].as_f64().unwrap() > 0.0);
    let curve = v["curve"].as_array().unwrap();
    assert_eq!(curve.len(), 2);
    assert!(
        curve[1]["agent"]["updates"].as_u64().unwrap() > 0,
        "the agent learned: {}",
        curve[1]
    );
    for f in [
        "config.json",
        "q.bpk",
        "env.json",
        "curve.json",
        "eval.json",
    ] {
        assert!(a.join(f).exists(), "{f} missing");
    }

    // The agent is in the model registry, and its directory checks out.
    let db = format!("sqlite://{}", a.with_extension("sqlite").display());
    let shown = json(
        dexlab()
            .args(["models", "show", "dqn-a", "--json"])
            .env("DATABASE_URL", &db),
    );
    assert_eq!(shown["model"]["kind"], "dqn");
    assert_eq!(shown["model"]["task"], "rl");
    assert_eq!(shown["directory"]["loads"], true, "{shown}");
    assert_eq!(shown["model"]["metrics"]["runs"], v["runs"]);

    // Reloaded, the agent evaluates to exactly the same numbers.
    let e = json(
        dexlab()
            .args(["rl", "eval", "--json"])
            .arg(&a)
            .arg("--data")
            .arg(&data),
    );
    assert_eq!(e["runs"], v["runs"]);

    // Same seed: same weights, same evaluation. Another seed: another agent.
    let b = dir.path().join("dqn-b");
    let w = train(&data, "dqn", 7, &b);
    assert_eq!(w["runs"], v["runs"]);
    assert_eq!(
        std::fs::read(a.join("q.bpk")).unwrap(),
        std::fs::read(b.join("q.bpk")).unwrap()
    );
    let c = dir.path().join("dqn-c");
    train(&data, "dqn", 8, &c);
    assert_ne!(
        std::fs::read(a.join("q.bpk")).unwrap(),
        std::fs::read(c.join("q.bpk")).unwrap()
    );

    // PPO through the same environment.
    let p = train(&data, "ppo", 7, &dir.path().join("ppo"));
    assert!(run(&p, "ppo")["episode"]["decisions"].as_u64().unwrap() > 0);
    assert!(
        p["curve"][1]["agent"]["updates"].as_u64().unwrap() > 0,
        "{}",
        p["curve"][1]
    );

    // A wrong dataset is refused rather than evaluated on the wrong blocks.
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let o = dexlab()
        .args(["rl", "eval"])
        .arg(&a)
        .arg("--data")
        .arg(&other)
        .output()
        .unwrap();
    assert!(!o.status.success());
}

//! `docs/configuration.md` is what `dexlab config reference` prints (regenerate it with
//! `dexlab config reference > docs/configuration.md`), and every key it lists is one the config
//! files accept: each block, uncommented, loads as that kind of file.

use crate::support::*;

#[test]
fn the_configuration_reference_is_current_and_every_key_in_it_loads() {
    let o = dexlab().args(["config", "reference"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    assert!(
        text == doc,
        "docs/configuration.md is out of date: run `dexlab config reference > docs/configuration.md`"
    );
    // Each TOML block is a valid file of its kind, with every key it lists.
    let blocks: Vec<&str> = text
        .split("```toml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    assert!(blocks.len() >= 8, "{} blocks", blocks.len());
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    // Experiments: a backtest on no data fails on the data, not on the config.
    let cfg = write("experiment.toml", blocks[0]);
    let o = dexlab()
        .args([
            "backtest",
            "--strategy",
            "cross-venue-arb",
            "--data",
            "/nonexistent",
        ])
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !err.contains("unknown field") && !err.contains("experiment.toml"),
        "{err}"
    );
}

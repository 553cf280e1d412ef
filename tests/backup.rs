//! `dexlab backup`: an archive of the store and its folders made while an evolve run writes,
//! restored into an empty folder elsewhere, lists the same experiments, models (whose restored
//! folders hash to what the registry says) and deployments; a damaged archive is refused by the
//! name of the damaged file and leaves nothing behind; a non-empty folder is refused; and a
//! PostgreSQL store goes through pg_dump and pg_restore into another database.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const RISK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/risk.toml");

fn run(db: &str, args: &[&str]) -> Value {
    let o = dexlab()
        .args(args)
        .env("DATABASE_URL", db)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

/// `dexlab backup create --out ARCHIVE --json`, and its exit.
fn create(db: &str, archive: &Path) -> (bool, Value, String) {
    let o = dexlab()
        .args(["backup", "create", "--json", "--out"])
        .arg(archive)
        .env("DATABASE_URL", db)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (
        o.status.success(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `dexlab backup restore ARCHIVE --into INTO [--database-url URL] --json`, and its exit.
fn restore(archive: &Path, into: &Path, url: Option<&str>) -> (bool, Value, String) {
    let mut c = dexlab();
    c.args(["backup", "restore", "--json"])
        .arg(archive)
        .arg("--into")
        .arg(into);
    if let Some(u) = url {
        c.args(["--database-url", u]);
    }
    let o = c.output().unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    (
        o.status.success(),
        v,
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn evolve(db: &str, data: &Path, out: &Path, name: &str, generations: &str) -> Command {
    let mut c = dexlab();
    c.args([
        "evolve",
        "--strategy",
        "cross-venue-arb",
        "--seed",
        "3",
        "--folds",
        "2",
    ])
    .args(["--population", "6", "--generations", generations, "--quiet"])
    .args(["--name", name])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .env("DATABASE_URL", db);
    c
}

/// The registry's models without their folders (which a restore moves).
fn models_without_dirs(db: &str) -> Value {
    let mut v = run(db, &["models", "list", "--json"]);
    for m in v["models"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("dir");
    }
    v
}

fn experiment(db: &str, name: &str) -> Value {
    run(db, &["experiments", "show", name, "--json"])
}

#[test]
fn a_backup_taken_while_a_run_writes_restores_elsewhere_and_lists_the_same() {
    let chain = Chain::up(13, 300);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data = w.join("ds");
    ingest(&chain.url(), &chain.manifest_path, &data, &[]);
    let db = format!("sqlite://{}", w.join("store.sqlite").display());
    let o = evolve(&db, &data, &w.join("exp/arb"), "arb", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let features = w.join("feat");
    run(
        &db,
        &[
            "features",
            "build",
            "--data",
            data.to_str().unwrap(),
            "--out",
            features.to_str().unwrap(),
        ],
    );
    run(
        &db,
        &[
            "train",
            "--features",
            features.to_str().unwrap(),
            "--model",
            "linear",
            "--task",
            "regression",
            "--epochs",
            "2",
            "--name",
            "lin",
            "--json",
            "--out",
            w.join("models/lin").to_str().unwrap(),
        ],
    );
    run(
        &db,
        &[
            "promote", "arb", "--risk", RISK, "--name", "prod", "--force", "--json",
        ],
    );

    // A run writing to the store while the backup is taken.
    let mut busy = evolve(&db, &data, &w.join("exp/busy"), "busy", "2000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let generations = |db: &str| {
        let o = dexlab()
            .args(["experiments", "show", "busy", "--json"])
            .env("DATABASE_URL", db)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&o.stdout)
            .ok()
            .and_then(|v| v["generations"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    while generations(&db) < 2 {
        assert!(Instant::now() < deadline, "the busy run did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let archive = w.join("backups/b.tar");
    let (ok, made, e) = create(&db, &archive);
    assert!(ok, "{e}");
    assert_eq!(made["backend"], "sqlite");
    assert_eq!(made["folders"], 1, "{made}");
    busy.kill().unwrap();
    busy.wait().unwrap();
    // A backup never replaces a file.
    let (ok, _, e) = create(&db, &archive);
    assert!(!ok && e.contains("exists"), "{e}");

    // Restored elsewhere: the same experiments, models and deployments.
    let into = w.join("restored");
    let (ok, restored, e) = restore(&archive, &into, None);
    assert!(ok, "{e}");
    let db2 = format!("sqlite://{}", into.join("dexlab.sqlite").display());
    assert_eq!(
        restored["database_url"],
        Value::String(db2.clone()),
        "{restored}"
    );
    assert_eq!(experiment(&db2, "arb"), experiment(&db, "arb"));
    assert!(
        experiment(&db2, "busy")["generations"]
            .as_array()
            .is_some_and(|g| g.len() >= 2)
    );
    assert_eq!(models_without_dirs(&db2), models_without_dirs(&db));
    let shown = run(&db2, &["models", "show", "lin", "--json"]);
    assert!(
        shown["model"]["dir"]
            .as_str()
            .unwrap()
            .starts_with(into.canonicalize().unwrap().to_str().unwrap()),
        "{shown}"
    );
    assert_eq!(shown["directory"]["content_matches"], true, "{shown}");
    assert_eq!(
        run(&db2, &["deployments", "list", "--json"]),
        run(&db, &["deployments", "list", "--json"])
    );

    // Not into a folder that holds something.
    let (ok, _, e) = restore(&archive, &into, None);
    assert!(!ok && e.contains("not empty"), "{e}");

    // A damaged archive: refused by the damaged file's name, nothing left behind.
    let unpacked = w.join("unpacked");
    std::fs::create_dir_all(&unpacked).unwrap();
    let tar = |args: &[&str]| assert!(Command::new("tar").args(args).status().unwrap().success());
    tar(&[
        "-xf",
        archive.to_str().unwrap(),
        "-C",
        unpacked.to_str().unwrap(),
    ]);
    let victim = std::fs::read_dir(unpacked.join("folders/model-1"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_file())
        .expect("a model file");
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, bytes).unwrap();
    let damaged = w.join("damaged.tar");
    tar(&[
        "-cf",
        damaged.to_str().unwrap(),
        "-C",
        unpacked.to_str().unwrap(),
        ".",
    ]);
    let into3 = w.join("restored-damaged");
    let (ok, _, e) = restore(&damaged, &into3, None);
    assert!(!ok);
    let name = victim.file_name().unwrap().to_str().unwrap();
    assert!(e.contains(name) && e.contains("damaged"), "{e}");
    assert!(!into3.exists(), "a failed restore left {}", into3.display());

    // PostgreSQL: pg_dump into the archive, pg_restore into another, empty database.
    let (src, dst) = (
        format!("dexlab_backup_src_{}", std::process::id()),
        format!("dexlab_backup_dst_{}", std::process::id()),
    );
    for d in [&src, &dst] {
        psql(&format!("DROP DATABASE IF EXISTS {d} WITH (FORCE)"));
        psql(&format!("CREATE DATABASE {d}"));
    }
    let pg = format!("postgres://postgres@127.0.0.1:5432/{src}");
    let pg2 = format!("postgres://postgres@127.0.0.1:5432/{dst}");
    let o = evolve(&pg, &data, &w.join("exp/pg"), "pg-arb", "2")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pg_archive = w.join("pg.tar");
    let (ok, made, e) = create(&pg, &pg_archive);
    assert!(ok, "{e}");
    assert_eq!(made["backend"], "postgres");
    let (ok, _, e) = restore(&pg_archive, &w.join("r-pg-sqlite"), None);
    assert!(!ok && e.contains("PostgreSQL backup"), "{e}");
    let (ok, _, e) = restore(&pg_archive, &w.join("r-pg"), Some(&pg2));
    assert!(ok, "{e}");
    assert_eq!(experiment(&pg2, "pg-arb"), experiment(&pg, "pg-arb"));
    // The target must be empty.
    let (ok, _, e) = restore(&pg_archive, &w.join("r-pg2"), Some(&pg2));
    assert!(!ok && e.contains("not empty"), "{e}");
    for d in [&src, &dst] {
        psql(&format!("DROP DATABASE {d} WITH (FORCE)"));
    }
}

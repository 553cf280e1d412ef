//! Bad input, table-driven: commands a new user or a careless script would run, each with the exit
//! code it must end in and fragments of what it must say. Whatever the row, dexlab never panics
//! (exit 101) and is never killed, and what was on disk before a refused command is still there,
//! byte for byte.
//!
//! `DEXLAB_TEST_BIN=/path/to/old/dexlab` runs the table against another build (how each row was
//! seen failing before its fix).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use dexlab_data::dataset;

use crate::support::dexlab;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sample() -> PathBuf {
    repo().join("../shared/data/univ3-usdc-weth-2024-01-05")
}

fn manifest() -> PathBuf {
    repo().join("examples/univ3-usdc-weth-mainnet.manifest.json")
}

/// What every row starts from, built once: the first 800 logs of the real sample as a dataset,
/// its features, and the log files the rows import.
struct Base {
    _dir: tempfile::TempDir,
    root: PathBuf,
    dataset: PathBuf,
    features: PathBuf,
    logs_100: PathBuf,
    logs_800: PathBuf,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let lines: Vec<String> = std::fs::read_to_string(sample().join("logs.jsonl"))
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        let logs_800 = root.join("logs-800.jsonl");
        std::fs::write(&logs_800, lines[..800].join("\n")).unwrap();
        let logs_100 = root.join("logs-100.jsonl");
        std::fs::write(&logs_100, lines[2000..2100].join("\n")).unwrap();
        let dataset = root.join("ds");
        run_ok(&mut import_cmd(&logs_800, &dataset));
        let features = root.join("features");
        run_ok(
            dexlab()
                .args(["features", "build", "--data"])
                .arg(&dataset)
                .arg("--out")
                .arg(&features),
        );
        Base {
            _dir: dir,
            root,
            dataset,
            features,
            logs_100,
            logs_800,
        }
    })
}

fn bin() -> Command {
    match std::env::var_os("DEXLAB_TEST_BIN") {
        Some(b) => Command::new(b),
        None => dexlab(),
    }
}

fn import_cmd(logs: &Path, out: &Path) -> Command {
    let mut c = bin();
    c.args(["data", "import"])
        .arg(logs)
        .arg("--out")
        .arg(out)
        .arg("--timestamps")
        .arg(sample().join("block_timestamps.csv"))
        .arg("--manifest")
        .arg(manifest());
    c
}

fn run_ok(c: &mut Command) -> Output {
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// Every file under `dir` with its bytes, to prove a refused command left it as it was.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().into(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The first log of `lines` whose first topic is `topic0`, as JSON.
fn first_log(path: &Path, topic0: &str) -> serde_json::Value {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["topics"][0].as_str() == Some(topic0))
        .expect("a log with that topic")
}

/// Uniswap V3 `Swap`.
const V3_SWAP: &str = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67";

/// A one-log file: the sample's first V3 swap with `edit` applied.
fn one_swap(dir: &Path, edit: fn(&mut serde_json::Value)) -> PathBuf {
    let mut log = first_log(&sample().join("logs.jsonl"), V3_SWAP);
    edit(&mut log);
    let p = dir.join("one.jsonl");
    std::fs::write(&p, log.to_string()).unwrap();
    p
}

/// Replaces 32-byte word `i` of a log's data.
fn set_word(log: &mut serde_json::Value, i: usize, word: &str) {
    let mut data = log["data"].as_str().unwrap().to_owned();
    let at = 2 + 64 * i;
    data.replace_range(at..at + 64, &format!("{word:0>64}"));
    log["data"] = data.into();
}

fn evolve_with_config(dir: &Path, toml: &str) -> Command {
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, toml).unwrap();
    let mut c = bin();
    c.args([
        "evolve",
        "--strategy",
        "price-reversion",
        "--quiet",
        "--config",
    ])
    .arg(&cfg)
    .arg("--data")
    .arg(&base().dataset)
    .arg("--out")
    .arg(dir.join("e"))
    .env("DATABASE_URL", store_in(dir));
    c
}

/// One row of the table.
struct Case {
    name: &'static str,
    /// Builds the row's inputs in its own folder; returns the command and the folder that must be
    /// left untouched (if any).
    setup: fn(&Path) -> (Command, Option<PathBuf>),
    code: i32,
    says: &'static [&'static str],
    /// A check of what the command left on disk, after it ran.
    then: Option<fn(&Path)>,
}

fn logs_of(root: &Path) -> usize {
    dataset::read_all_logs(root).unwrap().len()
}

fn cases() -> Vec<Case> {
    vec![
        // Issue 13, case 1: an import into an existing dataset used to replace some of its
        // chunks and keep the others, with exit 0.
        Case {
            name: "import over an existing dataset",
            setup: |dir| {
                let out = dir.join("ds");
                copy_dir(&base().dataset, &out);
                (import_cmd(&base().logs_100, &out), Some(out))
            },
            code: 1,
            says: &["already holds a dataset", "--force"],
            then: None,
        },
        Case {
            name: "import --force replaces the whole dataset",
            setup: |dir| {
                let out = dir.join("ds");
                copy_dir(&base().dataset, &out);
                let mut c = import_cmd(&base().logs_100, &out);
                c.arg("--force");
                (c, None)
            },
            code: 0,
            says: &["imported 100 logs"],
            then: Some(|dir| {
                assert_eq!(logs_of(&dir.join("ds")), 100, "only the new import's logs");
                // Nothing but the dataset is left beside it.
                let names: Vec<_> = std::fs::read_dir(dir)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                assert_eq!(names, vec![OsString::from("ds")], "leftovers beside --out");
            }),
        },
        Case {
            name: "an empty import, even with --force",
            setup: |dir| {
                let out = dir.join("ds");
                copy_dir(&base().dataset, &out);
                let empty = dir.join("empty.jsonl");
                std::fs::write(&empty, "").unwrap();
                let mut c = import_cmd(&empty, &out);
                c.arg("--force");
                (c, Some(out))
            },
            code: 1,
            says: &["empty.jsonl", "no logs to import", "left as it was"],
            then: None,
        },
        Case {
            name: "import while another process writes the same --out",
            setup: |dir| {
                let out = dir.join("ds");
                copy_dir(&base().dataset, &out);
                let lock = dexlab_data::outdir::OutputLock::acquire(&out).unwrap();
                // Held by this test process until the command has run.
                held().lock().unwrap().push(lock);
                let mut c = import_cmd(&base().logs_800, &out);
                c.arg("--force");
                (c, Some(out))
            },
            code: 1,
            says: &["is being written by pid"],
            then: None,
        },
        // Two `features build` runs into one --out used to leave one's manifest beside the
        // other's features.
        Case {
            name: "features build over an existing feature folder",
            setup: |dir| {
                let out = dir.join("features");
                copy_dir(&base().features, &out);
                let mut c = bin();
                c.args(["features", "build", "--data"])
                    .arg(&base().dataset)
                    .arg("--out")
                    .arg(&out);
                (c, Some(out))
            },
            code: 1,
            says: &["already holds a feature folder", "--force"],
            then: None,
        },
        Case {
            name: "features build while another process writes the same --out",
            setup: |dir| {
                let out = dir.join("features");
                held()
                    .lock()
                    .unwrap()
                    .push(dexlab_data::outdir::OutputLock::acquire(&out).unwrap());
                let mut c = bin();
                c.args(["features", "build", "--force", "--data"])
                    .arg(&base().dataset)
                    .arg("--out")
                    .arg(&out);
                (c, None)
            },
            code: 1,
            says: &["is being written by pid"],
            then: Some(|dir| assert!(!dir.join("features").exists())),
        },
        // Two evolve runs into one --out used to resume each other silently.
        Case {
            name: "evolve into an --out that holds something else",
            setup: |dir| {
                let out = dir.join("experiment");
                std::fs::create_dir_all(&out).unwrap();
                std::fs::write(out.join("notes.txt"), "mine").unwrap();
                let mut c = bin();
                c.args([
                    "evolve",
                    "--strategy",
                    "price-reversion",
                    "--population",
                    "6",
                    "--generations",
                    "1",
                    "--quiet",
                    "--data",
                ])
                .arg(&base().dataset)
                .arg("--out")
                .arg(&out)
                .env("DATABASE_URL", store_in(dir));
                (c, Some(out))
            },
            code: 1,
            says: &[
                "already holds files that are not an evolve checkpoint",
                "--force",
            ],
            then: None,
        },
        // Case 2: values outside their on-chain type used to be stored wrong with "0 malformed".
        Case {
            name: "a logIndex beyond u32",
            setup: |dir| {
                let logs = one_swap(dir, |l| l["logIndex"] = "0x10000000000".into());
                (import_cmd(&logs, &dir.join("ds")), None)
            },
            code: 1,
            says: &["one.jsonl", "logIndex", "does not fit"],
            then: None,
        },
        Case {
            name: "a tick word that is not an int24",
            setup: |dir| {
                let logs = one_swap(dir, |l| set_word(l, 4, "800000"));
                (import_cmd(&logs, &dir.join("ds")), None)
            },
            // Reported and skipped (exit 3), the rest imported.
            code: 3,
            says: &["tick", "int24"],
            then: None,
        },
        Case {
            name: "a zero sqrtPriceX96",
            setup: |dir| {
                let logs = one_swap(dir, |l| set_word(l, 2, "0"));
                (import_cmd(&logs, &dir.join("ds")), None)
            },
            // Reported and skipped (exit 3), the rest imported.
            code: 3,
            says: &["sqrtPriceX96", "outside"],
            then: None,
        },
        // Case 4: a log of a pool not in the manifest became a swap with a null price.
        Case {
            name: "a log of a pool not in the manifest",
            setup: |dir| {
                let logs = one_swap(dir, |l| {
                    l["address"] = "0x1111111111111111111111111111111111111111".into()
                });
                let mut c = import_cmd(&logs, &dir.join("ds"));
                c.arg("--json");
                (c, None)
            },
            code: 0,
            says: &[],
            then: Some(|dir| {
                let ds = dir.join("ds");
                assert_eq!(logs_of(&ds), 1, "kept as a raw log");
                let swaps: usize = dataset::list_chunks(&ds, dataset::SWAPS)
                    .unwrap()
                    .iter()
                    .flat_map(|(_, _, p)| dataset::read_parquet(p).unwrap())
                    .map(|b| b.num_rows())
                    .sum();
                assert_eq!(swaps, 0, "never a swap row");
            }),
        },
        // Case 7: a saved RPC error answer was reported as "missing field `result`".
        Case {
            name: "an RPC error object instead of logs",
            setup: |dir| {
                let p = dir.join("answer.json");
                std::fs::write(
                    &p,
                    r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"query returned more than 10000 results"}}"#,
                )
                .unwrap();
                (import_cmd(&p, &dir.join("ds")), None)
            },
            code: 1,
            says: &["-32005", "more than 10000 results"],
            then: None,
        },
        // Case 6: genevo asserted on more crossover points than half the genes.
        Case {
            name: "multi-point crossover with too many points",
            setup: |dir| {
                let c = evolve_with_config(
                    dir,
                    "[ga]\npopulation = 6\ncrossover = { kind = \"multi_point\", points = 4 }\n",
                );
                (c, None)
            },
            code: 1,
            says: &["ga.crossover.points = 4", "genes"],
            then: None,
        },
        // Case 7: an impossible capital was "not a positive amount".
        Case {
            name: "a capital no uint256 can hold",
            setup: |dir| {
                let c = evolve_with_config(dir, "[backtest]\ncapital = 1e300\n");
                (c, None)
            },
            code: 1,
            says: &["capital", "too large"],
            then: None,
        },
        // Case 7: labels whose horizon exceeds the data were all null, exit 0.
        Case {
            name: "a label horizon beyond the data",
            setup: |dir| {
                let cfg = dir.join("f.toml");
                std::fs::write(&cfg, "label_horizons = [50000]\n").unwrap();
                let mut c = bin();
                c.args(["features", "build", "--config"])
                    .arg(&cfg)
                    .arg("--data")
                    .arg(&base().dataset)
                    .arg("--out")
                    .arg(dir.join("f"));
                (c, None)
            },
            code: 1,
            says: &["label_horizons = 50000", "blocks"],
            then: Some(|dir| assert!(!dir.join("f").exists(), "nothing written")),
        },
        // Case 4 and deliverable 3: a dataset without a table, or with a damaged file, used to
        // inspect, verify and backtest with exit 0 and different results.
        Case {
            name: "inspect a dataset without its blocks",
            setup: |dir| {
                let ds = dir.join("ds");
                copy_dir(&base().dataset, &ds);
                std::fs::remove_dir_all(ds.join("blocks")).unwrap();
                let mut c = bin();
                c.args(["data", "inspect"]).arg(&ds);
                (c, Some(ds))
            },
            code: 1,
            says: &["blocks: missing", "damaged or incomplete"],
            then: None,
        },
        Case {
            name: "backtest a dataset with a damaged swaps file",
            setup: |dir| {
                let ds = dir.join("ds");
                copy_dir(&base().dataset, &ds);
                let (_, _, file) = dataset::list_chunks(&ds, dataset::SWAPS).unwrap().remove(0);
                let bytes = std::fs::read(&file).unwrap();
                std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
                let mut c = bin();
                c.args(["backtest", "--strategy", "price-reversion", "--data"])
                    .arg(&ds);
                (c, Some(ds))
            },
            code: 1,
            says: &["cannot be used", "swaps"],
            then: None,
        },
        // Case 3: a duplicate block in the timestamps CSV used to win silently.
        Case {
            name: "a timestamps CSV that gives a block twice",
            setup: |dir| {
                let csv = dir.join("ts.csv");
                let text = std::fs::read_to_string(sample().join("block_timestamps.csv")).unwrap();
                let second = text
                    .lines()
                    .nth(1)
                    .unwrap()
                    .split(',')
                    .next()
                    .unwrap()
                    .to_owned();
                std::fs::write(&csv, format!("{text}{second},2030-01-01 00:00:00\n")).unwrap();
                let mut c = bin();
                c.args(["data", "import"])
                    .arg(&base().logs_100)
                    .arg("--out")
                    .arg(dir.join("ds"))
                    .arg("--timestamps")
                    .arg(&csv)
                    .arg("--manifest")
                    .arg(manifest());
                (c, None)
            },
            code: 1,
            says: &["ts.csv", "appears again"],
            then: Some(|dir| assert!(!dir.join("ds").exists(), "no dataset written")),
        },
        // Case 6: tick_spacing = 0 divided by zero in the V3 math.
        Case {
            name: "a manifest with tick_spacing 0",
            setup: |dir| {
                let m = dir.join("m.json");
                let text = std::fs::read_to_string(manifest()).unwrap();
                std::fs::write(
                    &m,
                    text.replacen("\"tick_spacing\": 10", "\"tick_spacing\": 0", 1),
                )
                .unwrap();
                let mut c = bin();
                c.args(["data", "import"])
                    .arg(&base().logs_100)
                    .arg("--out")
                    .arg(dir.join("ds"))
                    .arg("--manifest")
                    .arg(&m);
                (c, None)
            },
            code: 1,
            says: &["m.json", "tick_spacing 0"],
            then: None,
        },
        // Case 7: a chain-1 manifest stored under another chain id without a word.
        Case {
            name: "a --chain-id that contradicts the manifest",
            setup: |dir| {
                let mut c = import_cmd(&base().logs_100, &dir.join("ds"));
                c.args(["--chain-id", "8453"]);
                (c, None)
            },
            code: 1,
            says: &["8453", "chain 1"],
            then: None,
        },
        // Case 5: --params that is not an object used to run the defaults.
        Case {
            name: "--params that is not a JSON object",
            setup: |_| {
                let mut c = bin();
                c.args([
                    "backtest",
                    "--strategy",
                    "price-reversion",
                    "--params",
                    "[1,2,3]",
                    "--data",
                ])
                .arg(&base().dataset);
                (c, None)
            },
            code: 1,
            says: &["--params", "JSON object"],
            then: None,
        },
        // Case 6: genevo panicked below its minimum population.
        Case {
            name: "evolve --population 4",
            setup: |dir| {
                let mut c = bin();
                c.args([
                    "evolve",
                    "--strategy",
                    "price-reversion",
                    "--population",
                    "4",
                    "--quiet",
                    "--data",
                ])
                .arg(&base().dataset)
                .arg("--out")
                .arg(dir.join("e"))
                .env("DATABASE_URL", store_in(dir));
                (c, None)
            },
            code: 1,
            says: &["population", "at least 6"],
            then: None,
        },
        // Case 6: the epoch count overflowed.
        Case {
            name: "train --epochs u64::MAX",
            setup: |dir| {
                let mut c = bin();
                c.args([
                    "train",
                    "--model",
                    "linear",
                    "--task",
                    "regression",
                    "--epochs",
                    "18446744073709551615",
                    "--target",
                    "label_fwd_ret_5__uniswap_v3_usdc_weth_500",
                    "--features",
                ])
                .arg(&base().features)
                .arg("--out")
                .arg(dir.join("m"))
                .env("DATABASE_URL", store_in(dir));
                (c, None)
            },
            code: 1,
            says: &["epochs", "at most"],
            then: None,
        },
        // Case 8: a read-only command created the folder and an empty store.
        Case {
            name: "experiments list with a store in a missing folder",
            setup: |dir| {
                let mut c = bin();
                c.args(["experiments", "list"]).env(
                    "DATABASE_URL",
                    format!("sqlite://{}", dir.join("nowhere/store.sqlite").display()),
                );
                (c, None)
            },
            code: 1,
            says: &["does not exist"],
            then: Some(|dir| assert!(!dir.join("nowhere").exists(), "folder created")),
        },
        // Issue 13, case 6 and deliverable 5: a listing piped into `head` used to panic (exit
        // 101, "failed printing to stdout: Broken pipe").
        Case {
            name: "a listing whose reader has gone",
            setup: |_| {
                let mut c = bin();
                c.args(["strategies", "list"]).stdout(closed_pipe());
                (c, None)
            },
            code: 0,
            says: &[],
            then: None,
        },
        Case {
            name: "inspect whose reader has gone",
            setup: |_| {
                let mut c = bin();
                c.args(["data", "inspect"])
                    .arg(&base().dataset)
                    .stdout(closed_pipe());
                (c, None)
            },
            code: 0,
            says: &[],
            then: None,
        },
    ]
}

/// Locks the rows hold in this process while their command runs.
fn held() -> &'static std::sync::Mutex<Vec<dexlab_data::outdir::OutputLock>> {
    static HELD: OnceLock<std::sync::Mutex<Vec<dexlab_data::outdir::OutputLock>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// The write end of a pipe whose read end is already closed: the first print gets EPIPE.
fn closed_pipe() -> Stdio {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    writer.into()
}

#[test]
fn bad_input_ends_in_a_clear_error_and_loses_nothing() {
    let mut failures = Vec::new();
    for case in cases() {
        let dir = tempfile::tempdir_in(&base().root).unwrap();
        let (mut cmd, kept) = (case.setup)(dir.path());
        let before = kept.as_deref().map(snapshot);
        let o = cmd.stdin(Stdio::null()).output().unwrap();
        held().lock().unwrap().clear();
        let stderr = String::from_utf8_lossy(&o.stderr);
        let mut wrong = Vec::new();
        match o.status.code() {
            Some(c) if c == case.code => {}
            Some(c) => wrong.push(format!("exit {c}, expected {}", case.code)),
            None => wrong.push(format!("killed: {:?}", o.status)),
        }
        if stderr.contains("panicked") {
            wrong.push("panicked".into());
        }
        // Reports (inspect, verify) list problems on stdout, errors go to stderr.
        let said = format!("{stderr}{}", String::from_utf8_lossy(&o.stdout));
        for s in case.says {
            if !said.contains(s) {
                wrong.push(format!("does not say `{s}`"));
            }
        }
        if let (Some(kept), Some(before)) = (&kept, before)
            && snapshot(kept) != before
        {
            wrong.push(format!("changed {}", kept.display()));
        }
        if wrong.is_empty()
            && let Some(then) = case.then
            && let Err(e) = std::panic::catch_unwind(|| then(dir.path()))
        {
            wrong.push(format!(
                "left the wrong output: {}",
                e.downcast_ref::<String>().map_or("", String::as_str)
            ));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{}: {}\n    stderr: {}",
                case.name,
                wrong.join("; "),
                stderr.trim().replace('\n', "\n            ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        cases().len(),
        failures.join("\n")
    );
}

/// A SQLite store of the row's own, in its folder.
fn store_in(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("store.sqlite").display())
}

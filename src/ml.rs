//! ML commands: train a predictive model on a features folder into a model directory and register
//! it in the store; list, show and compare the registered models (`dexlab_lab::train`,
//! `dexlab_lab::registry`). Argument parsing and printing only.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use dexlab_lab::registry::{
    self, Comparison, higher_is_better, metric_names, metric_values, test_report,
};
use dexlab_lab::train::{TrainRequest, train};
use dexlab_lab::{Access, Event, open_store};
use dexlab_models::{Backend, Metrics, ModelKind, Task};
use dexlab_store::{ModelRow, RegisteredTask};
use serde_json::json;

#[derive(Args)]
pub struct TrainArgs {
    /// A `dexlab features build` output folder.
    #[arg(long)]
    features: PathBuf,
    /// linear | mlp | gru | transformer
    #[arg(long)]
    model: String,
    /// regression | classification
    #[arg(long)]
    task: String,
    /// Label column (default: the first `label_…` column of the task's kind).
    #[arg(long)]
    target: Option<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Maximum epochs (early stopping may end sooner).
    #[arg(long, default_value_t = 50)]
    epochs: usize,
    /// TOML of hyperparameters (hidden sizes, learning rate, batch, window, patience, splits).
    #[arg(long)]
    config: Option<PathBuf>,
    /// flex (default: burn's CPU backend, bit-reproducible) | ndarray | wgpu | cuda (the last
    /// three need the `dexlab-models` cargo feature of that name).
    #[arg(long, default_value = "flex")]
    backend: String,
    /// Model directory (default: models/MODEL-TASK-seedN).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Name in the model registry (DATABASE_URL, default ./dexlab.sqlite); default: the model
    /// directory's name. Names are unique: training again under a registered name must
    /// reproduce that model exactly, or it is refused and the directory left as it was.
    #[arg(long)]
    name: Option<String>,
    /// Print the training report as JSON, with a `registered` object (id, name, dir,
    /// content_hash, store, new).
    #[arg(long)]
    json: bool,
}

/// `--json` of `models list`.
const LIST_JSON: &str = "\
With --json: {\"models\": [...]}, newest first. Each model has every registry field (id, name, \
kind, task, target, dir, content_hash, features, window, seed, backend, dataset_hash, git_commit, \
config, dataset, training, metrics, train_seconds, created_at) and `headline`: {metric, \
model, best_baseline: {name, value}} with the task's test loss (mse or log_loss), or null for \
models without predictive test metrics.";

/// `--json` of `models show`.
const SHOW_JSON: &str = "\
With --json: {\"model\": {...}, \"directory\": {...}}. `model` has every registry field, as in \
`models list --json` (metrics holds the test split and the test metrics of the model and of each \
baseline). `directory` is {path, exists, loads, content_hash, content_matches, problems}: \
content_hash is the directory's hash now (null when it cannot be read), problems lists in words \
everything that differs from the registry or fails (empty when the directory is intact).";

/// `--json` of `models compare`.
const COMPARE_JSON: &str = "\
With --json: {\"comparable\": bool, \"problems\": [...], \"metrics\": [...], \"models\": [...]}. \
`problems` says in words why the models are not comparable (different tasks, targets, datasets \
or test splits); `metrics` names the metrics compared, in order (regression: mse, mae, \
directional_accuracy; classification: auc, accuracy, log_loss); each of `models` is {id, name, \
kind, task, target, dataset_hash, window, test_split: {rows, first_block, last_block}, metrics: \
{NAME: value}, baselines: [{name, metrics: {NAME: value}}], best_baseline: {name, metric, value}} \
(null values where a metric is undefined).";

#[derive(Subcommand)]
pub enum ModelsCmd {
    /// Registered models, newest first, with the model's test loss next to its best baseline's.
    #[command(after_help = LIST_JSON)]
    List {
        /// Print JSON instead (top-level keys below).
        #[arg(long)]
        json: bool,
    },
    /// One model: provenance, features, test metrics of the model and of each baseline, and
    /// whether its directory still exists, loads and holds what was registered.
    #[command(after_help = SHOW_JSON)]
    Show {
        /// Model name or id.
        #[arg(value_name = "NAME|ID")]
        model: String,
        /// Print JSON instead (top-level keys below).
        #[arg(long)]
        json: bool,
    },
    /// Test metrics of two or more models side by side; says so when they were evaluated on
    /// different tasks, targets, datasets or test splits and are not comparable.
    #[command(after_help = COMPARE_JSON)]
    Compare {
        /// Model names or ids.
        #[arg(required = true, num_args = 2.., value_name = "NAME|ID")]
        models: Vec<String>,
        /// Print JSON instead (top-level keys below).
        #[arg(long)]
        json: bool,
    },
    /// Mark a model that may no longer be promoted (its row and directory stay; deployments that
    /// already use it are not changed).
    Retire {
        #[arg(value_name = "NAME|ID")]
        model: String,
        /// Why, recorded with the model.
        #[arg(long)]
        reason: String,
    },
}

pub fn train_cmd(a: TrainArgs, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let model: ModelKind = a.model.parse()?;
    let task: Task = a.task.parse()?;
    let backend: Backend = a.backend.parse()?;
    let req = TrainRequest {
        features: a.features.clone(),
        model,
        task,
        target: a.target.clone(),
        seed: a.seed,
        epochs: a.epochs,
        config: a.config.clone(),
        backend,
        out: a.out.clone(),
        name: a.name.clone(),
    };
    // Refused before the store is opened (or created).
    req.check()?;
    let store = rt.block_on(open_store(Access::Write))?;
    let o = train(&req, &store, rt.handle(), &mut |e: Event<'_>| {
        if let Event::Warning(w) = e {
            tracing::warn!("{w}");
        }
    })?;
    let r = &o.report;
    let (id, name, fresh) = (o.registered.id, &o.registered.name, o.registered.new);
    if a.json {
        let mut v = serde_json::to_value(r)?;
        let g = &o.registered;
        v["registered"] = json!({
            "id": g.id,
            "name": g.name,
            "dir": g.dir,
            "content_hash": g.content_hash,
            "store": g.store,
            "new": g.new,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} {} on `{}`: {} features, window {}, rows train/valid/test {}/{}/{} ({} dropped); {} epochs (best {}{}), {:.0} samples/s",
        model.as_str(),
        task.as_str(),
        r.target,
        r.features,
        r.window,
        r.rows.train,
        r.rows.valid,
        r.rows.test,
        r.rows.dropped(),
        r.epochs_run,
        r.best_epoch,
        if r.stopped_early {
            ", stopped early"
        } else {
            ""
        },
        r.train_samples_per_sec
    );
    println!(
        "test split, blocks {}..{} ({} rows), next to the baselines:",
        r.test.first_block, r.test.last_block, r.test.rows
    );
    println!(
        "  {:<22} {}",
        "model",
        serde_json::to_string(&r.test.model)?
    );
    for b in &r.test.baselines {
        println!("  {:<22} {}", b.name, serde_json::to_string(&b.metrics)?);
    }
    println!("model directory: {}", r.model_dir.display());
    if fresh {
        println!(
            "registered as model {id} `{name}` in the {} store",
            store.backend()
        );
    } else {
        println!(
            "already registered as model {id} `{name}` in the {} store, with the same content",
            store.backend()
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn models_cmd(c: ModelsCmd, rt: &tokio::runtime::Runtime) -> anyhow::Result<ExitCode> {
    let read = || rt.block_on(open_store(Access::Read));
    match c {
        ModelsCmd::List { json } => list(&read()?, rt, json),
        ModelsCmd::Show { model, json } => {
            let row = rt.block_on(registry::find(&read()?, &model))?;
            show(&row, json)
        }
        ModelsCmd::Compare { models, json } => {
            let store = read()?;
            let rows = models
                .iter()
                .map(|m| rt.block_on(registry::find(&store, m)))
                .collect::<Result<Vec<_>, _>>()?;
            compare(&rows, json)
        }
        ModelsCmd::Retire { model, reason } => {
            let store = rt.block_on(open_store(Access::Write))?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let row =
                rt.block_on(store.retire_model(&model, &crate::deploy::who(), &reason, now))?;
            println!(
                "model {} `{}` retired: it may no longer be promoted",
                row.id, row.model.name
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn list(
    store: &dexlab_store::Store,
    rt: &tokio::runtime::Runtime,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let rows = rt.block_on(registry::list(store))?;
    if json {
        let models = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r.row)?;
                v["headline"] = serde_json::to_value(&r.headline)?;
                Ok(v)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "models": models }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!(
            "no models in the {} store at {}; `dexlab train` registers them",
            store.backend(),
            store.url()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = vec![
        [
            "id",
            "name",
            "kind",
            "task",
            "target",
            "test loss",
            "best baseline",
            "created",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for l in &rows {
        let (r, m) = (&l.row, &l.row.model);
        let (loss, base) = match (&l.headline, &l.agent_headline) {
            (Some(h), _) => (
                format!("{} {}", h.metric, num(h.model)),
                h.best_baseline
                    .as_ref()
                    .map_or("-".into(), |b| format!("{} {}", b.name, num(b.value))),
            ),
            (None, Some((mine, best, value))) => (
                format!("net PnL {}", num(*mine)),
                format!("{best} {}", num(*value)),
            ),
            (None, None) => ("-".into(), "-".into()),
        };
        table.push(vec![
            r.id.to_string(),
            m.name.clone(),
            m.kind.to_string(),
            m.task.to_string(),
            m.target.clone(),
            loss,
            base,
            utc(m.created_at),
        ]);
    }
    print_table(&table, &[0]);
    Ok(ExitCode::SUCCESS)
}

fn show(row: &ModelRow, json: bool) -> anyhow::Result<ExitCode> {
    let status = dexlab_lab::model_dir::check_dir(row);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({ "model": row, "directory": status }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    let m = &row.model;
    println!(
        "model {} `{}`: {} {} on `{}`",
        row.id, m.name, m.kind, m.task, m.target
    );
    println!("  registered   {}", utc(m.created_at));
    if status.problems.is_empty() {
        println!(
            "  directory    {} (intact: loads, same content as registered)",
            m.dir
        );
    } else {
        println!("  directory    {}", m.dir);
        for p in &status.problems {
            println!("    PROBLEM: {p}");
        }
    }
    println!("  content      sha256 {}", m.content_hash);
    println!("  features     {} (window {}):", m.features.len(), m.window);
    for line in wrap(&m.features, 90) {
        println!("               {line}");
    }
    println!(
        "  dataset      hash {}",
        m.dataset_hash.as_deref().unwrap_or("unknown")
    );
    if let Some(dir) = m.dataset.get("features_dir").and_then(|d| d.as_str()) {
        println!("               features folder {dir}");
    }
    if let Some(rows) = m.dataset.get("rows") {
        println!(
            "               rows train/valid/test {}/{}/{}, embargo {}",
            rows["train"], rows["valid"], rows["test"], m.dataset["embargo"]
        );
    }
    if let Some(t) = m.dataset.get("train_blocks") {
        let range = |v: &serde_json::Value| format!("{}..={}", v[0], v[1]);
        println!(
            "               blocks train {}, valid {}, test {}; label look-ahead {}",
            range(t),
            range(&m.dataset["valid_blocks"]),
            range(&m.dataset["test_blocks"]),
            m.dataset
                .get("lookahead_blocks")
                .map_or("not recorded".into(), |l| format!("{l} blocks"))
        );
    }
    let t = &m.training;
    if m.task == RegisteredTask::Rl {
        println!(
            "  training     seed {}, backend {}, {} episodes (reward {} → {}), {}, git {}",
            m.seed,
            m.backend,
            t["episodes"],
            t["first_episode_reward"].as_f64().map_or("-".into(), num),
            t["last_episode_reward"].as_f64().map_or("-".into(), num),
            m.train_seconds
                .map_or("time unknown".into(), |s| format!("{s:.2} s")),
            m.git_commit
        );
    } else {
        println!(
            "  training     seed {}, backend {}, {} epochs (best {}{}), {}, git {}",
            m.seed,
            m.backend,
            t["epochs_run"],
            t["best_epoch"],
            if t["stopped_early"] == true {
                ", stopped early"
            } else {
                ""
            },
            m.train_seconds
                .map_or("time unknown".into(), |s| format!("{s:.2} s")),
            m.git_commit
        );
    }
    match test_report(row) {
        Some(r) => {
            println!(
                "  test split   blocks {}..{}, {} rows",
                r.first_block, r.last_block, r.rows
            );
            let names = metric_names(&r.model);
            let mut table: Vec<Vec<String>> = vec![
                std::iter::once(String::new())
                    .chain(names.iter().map(|n| n.to_string()))
                    .collect(),
            ];
            let mut line = |who: &str, metrics: &Metrics| {
                let values = metric_values(metrics);
                table.push(
                    std::iter::once(who.to_owned())
                        .chain(
                            names
                                .iter()
                                .map(|n| values.get(n).copied().flatten().map_or("-".into(), num)),
                        )
                        .collect(),
                );
            };
            line("model", &r.model);
            for b in &r.baselines {
                line(&format!("baseline {}", b.name), &b.metrics);
            }
            print_table_indented(&table, &(1..=names.len()).collect::<Vec<_>>(), "    ");
        }
        None => match m.metrics.get("runs").and_then(|r| r.as_array()) {
            // An RL agent: its evaluation on held-out blocks, next to the baselines.
            Some(runs) => {
                println!(
                    "  held out     blocks {} ({} blocks)",
                    m.metrics["test_blocks"], m.metrics["blocks"]
                );
                let mut table = vec![
                    ["", "net PnL", "bundles", "gas", "max drawdown"]
                        .map(String::from)
                        .to_vec(),
                ];
                for run in runs {
                    let v = |k: &str| run["metrics"][k].as_f64().map_or("-".into(), num);
                    table.push(vec![
                        run["kind"].as_str().unwrap_or("?").to_owned(),
                        v("net_pnl_quote"),
                        run["metrics"]["trades"].to_string(),
                        v("gas_spent_quote"),
                        v("max_drawdown"),
                    ]);
                }
                print_table_indented(&table, &[1, 2, 3, 4], "    ");
            }
            None => println!("  metrics      {}", m.metrics),
        },
    }
    Ok(ExitCode::SUCCESS)
}

fn compare(rows: &[ModelRow], json: bool) -> anyhow::Result<ExitCode> {
    let Comparison {
        comparable,
        problems,
        metrics: names,
        models: compared,
    } = registry::compare(rows);
    if json {
        let v = json!({
            "comparable": comparable,
            "problems": problems,
            "metrics": names,
            "models": compared,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }

    let cell = |v: Option<f64>| v.map_or("-".to_owned(), num);
    let mut table: Vec<Vec<String>> = vec![
        std::iter::once(String::new())
            .chain(compared.iter().map(|c| c.name.clone()))
            .collect(),
    ];
    let mut row = |label: &str, cells: Vec<String>| {
        table.push(std::iter::once(label.to_owned()).chain(cells).collect())
    };
    row("id", compared.iter().map(|c| c.id.to_string()).collect());
    row(
        "kind",
        compared.iter().map(|c| c.kind.to_string()).collect(),
    );
    row(
        "task",
        compared.iter().map(|c| c.task.to_string()).collect(),
    );
    row(
        "target",
        compared.iter().map(|c| c.target.clone()).collect(),
    );
    row(
        "window",
        compared.iter().map(|c| c.window.to_string()).collect(),
    );
    row(
        "dataset",
        compared
            .iter()
            .map(|c| {
                c.dataset_hash
                    .as_deref()
                    .map_or("unknown".into(), |h| short(h).to_owned())
            })
            .collect(),
    );
    row(
        "test blocks",
        compared
            .iter()
            .map(|c| {
                c.test_split.as_ref().map_or("-".into(), |s| {
                    format!("{}..{} ({} rows)", s.first_block, s.last_block, s.rows)
                })
            })
            .collect(),
    );
    for name in &names {
        // The best value of a metric is starred, only when the models are comparable.
        let values: Vec<Option<f64>> = compared
            .iter()
            .map(|c| c.metrics.get(name).copied().flatten())
            .collect();
        let best = values.iter().flatten().copied().reduce(|a, b| {
            if higher_is_better(name) == (b > a) {
                b
            } else {
                a
            }
        });
        row(
            name,
            values
                .iter()
                .map(|v| {
                    let star = comparable && compared.len() > 1 && v.is_some() && *v == best;
                    format!("{}{}", cell(*v), if star { " *" } else { "" })
                })
                .collect(),
        );
    }
    row(
        "best baseline",
        compared
            .iter()
            .map(|c| {
                c.best_baseline.as_ref().map_or("-".into(), |b| {
                    format!("{} {} {}", b.name, b.metric, num(b.value))
                })
            })
            .collect(),
    );
    let numeric: Vec<usize> = (1..=compared.len()).collect();
    print_table(&table, &numeric);
    if comparable {
        println!("comparable: same task, target, dataset and test split (* = best)");
    } else {
        println!("NOT COMPARABLE, the metrics above are side by side only:");
        for p in &problems {
            println!("  - {p}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_table(rows: &[Vec<String>], right_aligned: &[usize]) {
    print_table_indented(rows, right_aligned, "");
}

/// Columns padded to their widest cell; `right_aligned` columns (numbers) pad on the left.
fn print_table_indented(rows: &[Vec<String>], right_aligned: &[usize], indent: &str) {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if right_aligned.contains(&c) {
                    format!("{s:>w$}", w = widths[c])
                } else {
                    format!("{s:<w$}", w = widths[c])
                }
            })
            .collect();
        println!("{indent}{}", cells.join("  ").trim_end());
    }
}

/// `items` joined by ", " into lines of about `width` characters.
fn wrap(items: &[String], width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for (i, item) in items.iter().enumerate() {
        let last = lines.last_mut().expect("one line");
        if !last.is_empty() && last.len() + item.len() + 1 > width {
            lines.push(String::new());
        }
        let last = lines.last_mut().expect("one line");
        last.push_str(item);
        if i + 1 < items.len() {
            last.push(',');
            last.push(' ');
        }
    }
    lines.iter().map(|l| l.trim_end().to_owned()).collect()
}

/// Four decimals, or four significant digits in scientific notation for small and large values.
fn num(v: f64) -> String {
    if v == 0.0 || (0.01..100_000.0).contains(&v.abs()) {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// The first 12 hex digits, enough to tell hashes apart.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(12)]
}

/// `YYYY-MM-DD HH:MM UTC` of unix seconds.
fn utc(ts: i64) -> String {
    dexlab_data::inspect::utc_datetime(ts, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_704_412_800 + 3_600 + 120), "2024-01-05 01:02 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn wrap_keeps_items_whole() {
        let items: Vec<String> = ["aaaa", "bbbb", "cc", "dddddddddd"]
            .map(String::from)
            .to_vec();
        assert_eq!(wrap(&items, 12), ["aaaa, bbbb,", "cc,", "dddddddddd"]);
        assert_eq!(wrap(&items, 100), ["aaaa, bbbb, cc, dddddddddd"]);
        assert_eq!(wrap(&[], 10), [""]);
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(num(0.5), "0.5000");
        assert_eq!(num(1.234_56e-7), "1.235e-7");
        assert_eq!(num(0.0), "0.0000");
    }
}

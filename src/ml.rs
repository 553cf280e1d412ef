//! ML commands: train a predictive model on a features folder into a model directory.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use dexlab_models::{Backend, ModelKind, Task, TrainOptions};

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
    #[arg(long)]
    json: bool,
}

pub fn train_cmd(a: TrainArgs) -> anyhow::Result<ExitCode> {
    let model: ModelKind = a.model.parse()?;
    let task: Task = a.task.parse()?;
    let backend: Backend = a.backend.parse()?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("models").join(format!("{}-{}-seed{}", model.as_str(), task.as_str(), a.seed))
    });
    let mut opts = TrainOptions::new(&a.features, &out, model, task);
    opts.target = a.target.clone();
    opts.seed = a.seed;
    opts.epochs = a.epochs;
    opts.config = a.config.clone();
    opts.backend = backend;
    let r = dexlab_models::train(&opts)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
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
        if r.stopped_early { ", stopped early" } else { "" },
        r.train_samples_per_sec
    );
    println!(
        "test split, blocks {}..{} ({} rows), next to the baselines:",
        r.test.first_block, r.test.last_block, r.test.rows
    );
    println!("  {:<22} {}", "model", serde_json::to_string(&r.test.model)?);
    for b in &r.test.baselines {
        println!("  {:<22} {}", b.name, serde_json::to_string(&b.metrics)?);
    }
    println!("model directory: {}", r.model_dir.display());
    Ok(ExitCode::SUCCESS)
}

//! models-bench: training throughput and single-decision latency of dexlab's models at fixed
//! shapes, the Rust half of `bench/train_vs_torch.sh` (`bench/torch_models.py` is the other).
//!
//! Prints one JSON line per measurement:
//! - `train`: samples/s of the bare training step (gather a shuffled batch, forward, MSE,
//!   backward, Adam) on the models of [`dexlab_models::model`], the same loop the PyTorch script
//!   runs;
//! - `fit`: samples/s of dexlab's own [`dexlab_models::training::fit`] on the same data (adds the
//!   per-item batcher, a validation pass per epoch and the best-weights snapshot);
//! - `latency`: one decision through [`dexlab_models::Predictor`] (schema-ordered raw row in,
//!   normalised, forward, prediction out), on a model trained into a temporary directory with
//!   [`dexlab_models::train`] and loaded back with [`dexlab_models::Predictor::load`];
//! - `train-burn-gru` (not in the default set): the `train` bench on burn's own
//!   `nn::gru::Gru` and `Dropout` with the same head, for comparison with dexlab's GRU;
//! - `train-gru-ops` (not in the default set): the `train` bench on dexlab's GRU with the cell
//!   written step by step in burn's operations ([`GruModel::forward_ops`]), what the fused
//!   layer ([`dexlab_models::gru_layer`]) replaced on the CPU;
//! - `op` (`--what ops`, not in the default set): single tensor operations at the GRU step's
//!   shapes, for a per-op comparison.
//!
//! The data are a counter-based hash of the seed (splitmix64), so the PyTorch script draws
//! bit-identical inputs and targets; both print a checksum. burn's flex backend runs its
//! parallel kernels on rayon's global pool, which reads `RAYON_NUM_THREADS`; the script sets it.
//!
//! Build optimised without the rest of the workspace (no polars, no alloy):
//! `cargo build --release -p dexlab-models --features bench --bin models-bench`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use burn::nn::gru::{Gru, GruConfig};
use burn::nn::loss::{MseLoss, Reduction};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::prelude::*;
use dexlab_models::activation;
use dexlab_models::data::{
    ColumnType, FeatureTable, PrepareOptions, Split, SplitFractions, prepare,
};
use dexlab_models::model::{GruModel, GruModelConfig, MlpConfig, Model, ModelConfig};
use dexlab_models::training::{Schedule, TrainingConfig, fit};
use dexlab_models::{Backend, ModelKind, Predictor, Task, TrainOptions};
use parquet::arrow::ArrowWriter;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

/// The `dexlab` binary's allocator, so the benchmark measures what `dexlab train` runs: with
/// glibc's, every tensor of 128 KiB or more is a fresh mapping whose pages fault in again
/// (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const USAGE: &str = "usage: models-bench [--what train,fit,latency,ops] [--model mlp,gru] \
[--features 32] [--hidden 64] [--window 16] [--batch 256] [--mlp-rows 65536] [--gru-rows 16384] \
[--mlp-epochs 5] [--gru-epochs 2] [--warmup-epochs 1] [--calls 10000] [--seed 7]";

/// The fixed shapes, shared with bench/torch_models.py (same flags, same defaults).
#[derive(Debug, Clone)]
struct Args {
    what: Vec<String>,
    models: Vec<ModelKind>,
    features: usize,
    hidden: usize,
    window: usize,
    batch: usize,
    mlp_rows: usize,
    gru_rows: usize,
    mlp_epochs: usize,
    gru_epochs: usize,
    warmup_epochs: usize,
    calls: usize,
    seed: u64,
}

impl Args {
    fn parse() -> BoxResult<Self> {
        let mut a = Args {
            what: vec!["train".into(), "fit".into(), "latency".into()],
            models: vec![ModelKind::Mlp, ModelKind::Gru],
            features: 32,
            hidden: 64,
            window: 16,
            batch: 256,
            mlp_rows: 65_536,
            gru_rows: 16_384,
            mlp_epochs: 5,
            gru_epochs: 2,
            warmup_epochs: 1,
            calls: 10_000,
            seed: 7,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            let value = it
                .next()
                .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
            let num = || -> BoxResult<usize> {
                value
                    .parse()
                    .map_err(|e| format!("{flag} {value}: {e}").into())
            };
            match flag.as_str() {
                "--what" => a.what = value.split(',').map(str::to_string).collect(),
                "--model" => {
                    a.models = value.split(',').map(str::parse).collect::<Result<_, _>>()?;
                    if let Some(k) = a
                        .models
                        .iter()
                        .find(|k| !matches!(k, ModelKind::Mlp | ModelKind::Gru))
                    {
                        return Err(format!("--model {k}: only mlp and gru are benchmarked").into());
                    }
                }
                "--features" => a.features = num()?,
                "--hidden" => a.hidden = num()?,
                "--window" => a.window = num()?,
                "--batch" => a.batch = num()?,
                "--mlp-rows" => a.mlp_rows = num()?,
                "--gru-rows" => a.gru_rows = num()?,
                "--mlp-epochs" => a.mlp_epochs = num()?,
                "--gru-epochs" => a.gru_epochs = num()?,
                "--warmup-epochs" => a.warmup_epochs = num()?,
                "--calls" => a.calls = num()?,
                "--seed" => a.seed = num()? as u64,
                _ => return Err(format!("unknown flag {flag}\n{USAGE}").into()),
            }
        }
        if a.features < 2 || a.hidden == 0 || a.window == 0 || a.batch == 0 || a.calls == 0 {
            return Err("--features must be ≥ 2; --hidden, --window, --batch, --calls ≥ 1".into());
        }
        Ok(a)
    }

    fn window(&self, kind: ModelKind) -> usize {
        if kind == ModelKind::Gru {
            self.window
        } else {
            1
        }
    }

    fn rows(&self, kind: ModelKind) -> usize {
        if kind == ModelKind::Gru {
            self.gru_rows
        } else {
            self.mlp_rows
        }
    }

    fn epochs(&self, kind: ModelKind) -> usize {
        if kind == ModelKind::Gru {
            self.gru_epochs
        } else {
            self.mlp_epochs
        }
    }

    /// MLP: `window * features → hidden → hidden → 1`, ReLU and dropout 0.1 after each hidden
    /// layer. GRU: `features → hidden` (reset gate after the hidden product, as PyTorch's),
    /// dropout 0.1 on the last hidden state, `hidden → 1`.
    fn model_config(&self, kind: ModelKind) -> ModelConfig {
        match kind {
            ModelKind::Gru => {
                ModelConfig::Gru(GruModelConfig::new(self.features, self.hidden).with_dropout(0.1))
            }
            _ => ModelConfig::Mlp(
                MlpConfig::new(self.features, vec![self.hidden, self.hidden]).with_dropout(0.1),
            ),
        }
    }
}

/// splitmix64 of `seed` and a counter: the same stream in bench/torch_models.py (NumPy uint64).
fn splitmix(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [-1, 1) with 24 random bits: exact in f32, so both languages get the same floats.
fn uniform(seed: u64, i: u64) -> f32 {
    (splitmix(seed, i) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
}

/// `[rows, window, features]` inputs, row-major, and one target per row:
/// `0.5 x[w-1, 0] − 0.25 x[w-1, 1] + 0.1 u`.
fn synthetic(seed: u64, rows: usize, window: usize, features: usize) -> (Vec<f32>, Vec<f32>) {
    let per = window * features;
    let x: Vec<f32> = (0..rows * per).map(|i| uniform(seed, i as u64)).collect();
    let y = (0..rows)
        .map(|r| {
            let last = r * per + (window - 1) * features;
            0.5 * x[last] - 0.25 * x[last + 1] + 0.1 * uniform(seed ^ 0x5EED, r as u64)
        })
        .collect();
    (x, y)
}

/// CPU seconds (user + system) this process has used, from `/proc/self/stat` (clock ticks of
/// 1/100 s, the Linux default); `None` elsewhere. On a machine shared with other work the CPU
/// time of a one-thread run is the steadier figure: waiting for a core does not count.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn checksum(v: &[f32]) -> f64 {
    v.iter().map(|&a| a as f64 * a as f64).sum()
}

fn threads() -> serde_json::Value {
    match std::env::var("RAYON_NUM_THREADS") {
        Ok(t) => json!(t.parse::<usize>().ok()),
        Err(_) => json!(format!(
            "unset (rayon default: {})",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        )),
    }
}

/// The bare training step, `epochs` timed epochs after `warmup_epochs` untimed ones.
/// burn's own GRU (`reset_after`, PyTorch's layout) with dexlab's dropout and head: what
/// dexlab's `GruModel` replaced.
#[derive(Module, Debug)]
struct BurnGru {
    gru: Gru,
    dropout: Dropout,
    head: Linear,
}

impl BurnGru {
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, w, _] = x.dims();
        let h = self.gru.forward(x, None); // [batch, window, hidden]
        let [_, _, d] = h.dims();
        let last = h.narrow(1, w - 1, 1).reshape([b, d]); // [batch, hidden]
        self.head.forward(self.dropout.forward(last))
    }
}

#[derive(Module, Debug)]
enum Trained {
    Dexlab(Model),
    BurnGru(BurnGru),
    GruOps(GruModel),
}

impl Trained {
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        match self {
            Trained::Dexlab(m) => m.forward(x),
            Trained::BurnGru(m) => m.forward(x),
            Trained::GruOps(m) => m.forward_ops(x),
        }
    }
}

/// Which implementation of the model the `train` bench runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// dexlab's model as `dexlab train` runs it.
    Dexlab,
    /// burn's `nn::gru::Gru` (`--what train-burn-gru`).
    BurnGru,
    /// dexlab's GRU cell in burn's operations (`--what train-gru-ops`).
    GruOps,
}

fn bench_train(args: &Args, kind: ModelKind, variant: Variant) -> BoxResult<serde_json::Value> {
    let (rows, window, f) = (args.rows(kind), args.window(kind), args.features);
    let (x, y) = synthetic(args.seed, rows, window, f);
    let device = Backend::Flex.device()?;
    device.seed(args.seed);
    let ad = device.autodiff();
    let mut model = match variant {
        Variant::BurnGru => Trained::BurnGru(BurnGru {
            gru: GruConfig::new(f, args.hidden, true).init(&ad),
            dropout: DropoutConfig::new(0.1).init(),
            head: LinearConfig::new(args.hidden, 1).init(&ad),
        }),
        Variant::GruOps => Trained::GruOps(
            GruModelConfig::new(f, args.hidden)
                .with_dropout(0.1)
                .init(&ad),
        ),
        Variant::Dexlab => Trained::Dexlab(args.model_config(kind).init(&ad)),
    };
    let label = match variant {
        Variant::BurnGru => "gru-burn",
        Variant::GruOps => "gru-ops",
        Variant::Dexlab => kind.as_str(),
    };
    let params = model.num_params();
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let mut order: Vec<usize> = (0..rows).collect();
    let per = window * f;
    let mut started = Instant::now();
    let mut cpu_started = cpu_seconds();
    let mut last_loss = f64::NAN;
    let mut first_loss = None;
    let epochs = args.epochs(kind);
    for epoch in 0..args.warmup_epochs + epochs {
        if epoch == args.warmup_epochs {
            started = Instant::now();
            cpu_started = cpu_seconds();
        }
        order.shuffle(&mut rng);
        let mut sum = 0.0;
        for chunk in order.chunks(args.batch) {
            let b = chunk.len();
            let mut xb = Vec::with_capacity(b * per);
            let mut yb = Vec::with_capacity(b);
            for &i in chunk {
                xb.extend_from_slice(&x[i * per..(i + 1) * per]);
                yb.push(y[i]);
            }
            let inputs = Tensor::<3>::from_data(TensorData::new(xb, [b, window, f]), &ad);
            let targets = Tensor::<1>::from_data(TensorData::new(yb, [b]), &ad);
            let out = model.forward(inputs).reshape([b]); // [batch, 1] → [batch]
            let loss = MseLoss::new().forward(out, targets, Reduction::Mean);
            sum += loss.clone().into_scalar::<f32>() as f64 * b as f64;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(1e-3, model, grads);
        }
        last_loss = sum / rows as f64;
        first_loss.get_or_insert(last_loss);
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds()
        .zip(cpu_started)
        .map(|(end, start)| end - start);
    Ok(json!({
        "bench": "train", "impl": "burn", "backend": "flex", "model": label,
        "threads": threads(), "params": params, "rows": rows, "window": window,
        "features": f, "hidden": args.hidden, "batch": args.batch, "epochs": epochs,
        "warmup_epochs": args.warmup_epochs, "seconds": seconds,
        "samples_per_sec": (rows * epochs) as f64 / seconds, "cpu_seconds": cpu,
        "samples_per_cpu_sec": cpu.map(|c| (rows * epochs) as f64 / c),
        "first_epoch_loss": first_loss, "last_epoch_loss": last_loss,
        "data_checksum": [checksum(&x), checksum(&y)],
    }))
}

/// Single tensor operations at the GRU's step shapes, forward only, for a per-op comparison
/// with PyTorch: where the GRU's training time goes (see BENCHMARKS.md).
fn bench_ops(args: &Args) -> BoxResult<Vec<serde_json::Value>> {
    let device = Backend::Flex.device()?;
    let (b, f, h) = (args.batch, args.features, args.hidden);
    let tensor = |rows: usize, cols: usize, seed: u64| {
        let v: Vec<f32> = (0..rows * cols).map(|i| uniform(seed, i as u64)).collect();
        Tensor::<2>::from_data(TensorData::new(v, [rows, cols]), &device)
    };
    let (x, hid, gate) = (tensor(b, f, 1), tensor(b, h, 2), tensor(b, h, 3));
    let gates = tensor(b, 2 * h, 6);
    let (w_in, w_hid) = (tensor(f, h, 4), tensor(h, h, 5));
    type Op<'a> = Box<dyn Fn() -> Tensor<2> + 'a>;
    let ops: Vec<(String, Op)> = vec![
        (format!("tanh [{b}x{h}]"), Box::new(|| gate.clone().tanh())),
        (
            format!("sigmoid [{b}x{h}]"),
            Box::new(|| burn::tensor::activation::sigmoid(gate.clone())),
        ),
        // What dexlab's GRU runs per step: value and slope in one host pass.
        (
            format!("GRU step tanh [{b}x{h}] (dexlab kernel)"),
            Box::new(|| activation::tanh(gate.clone())),
        ),
        (
            format!("GRU step sigmoid [{b}x{}] (dexlab kernel)", 2 * h),
            Box::new(|| activation::sigmoid(gates.clone())),
        ),
        (
            format!("mul [{b}x{h}]"),
            Box::new(|| gate.clone() * hid.clone()),
        ),
        (
            format!("matmul [{b}x{f}]x[{f}x{h}]"),
            Box::new(|| x.clone().matmul(w_in.clone())),
        ),
        (
            format!("matmul [{b}x{h}]x[{h}x{h}]"),
            Box::new(|| hid.clone().matmul(w_hid.clone())),
        ),
    ];
    let reps = 2000;
    let mut lines = Vec::new();
    for (name, op) in &ops {
        let mut sink = 0usize;
        for _ in 0..reps / 10 {
            sink += op().dims()[0];
        }
        let started = Instant::now();
        for _ in 0..reps {
            // Reading one value back makes sure the op ran (flex is eager, but be explicit).
            sink += op().dims()[0];
        }
        let us = started.elapsed().as_secs_f64() * 1e6 / reps as f64;
        lines.push(json!({
            "bench": "op", "impl": "burn", "backend": "flex", "op": name,
            "threads": threads(), "us_per_op": us, "sink": sink > 0,
        }));
    }
    Ok(lines)
}

/// dexlab's own training loop on the same data: a feature table whose rows are the data's
/// time steps, a window of `window` rows per sample, 85 % train and 15 % validation.
fn bench_fit(args: &Args, kind: ModelKind) -> BoxResult<serde_json::Value> {
    let (samples, window, f) = (args.rows(kind), args.window(kind), args.features);
    // `samples` train+valid samples need `samples + window − 1` table rows; the test split is
    // tiny because fit does not read it.
    let table_rows = samples * 100 / 85 + window;
    let (x, y) = synthetic(args.seed, table_rows, 1, f);
    let mut cols: Vec<(String, ColumnType, Vec<f64>)> = vec![(
        "block_number".into(),
        ColumnType::Int,
        (0..table_rows).map(|i| i as f64).collect(),
    )];
    let names: Vec<String> = (0..f).map(|c| format!("f{c}")).collect();
    for (c, name) in names.iter().enumerate() {
        let col = (0..table_rows).map(|r| x[r * f + c] as f64).collect();
        cols.push((name.clone(), ColumnType::Float, col));
    }
    let target = "label_fwd_ret_1__bench".to_string();
    cols.push((
        target.clone(),
        ColumnType::Float,
        y.iter().map(|&v| v as f64).collect(),
    ));
    let table = FeatureTable::from_columns("bench", cols);
    let data = prepare(
        &table,
        &PrepareOptions {
            features: names,
            target,
            task: Task::Regression,
            window,
            split: SplitFractions {
                train: 0.85 * 0.85,
                valid: 0.85 * 0.15,
                test: 0.15,
            },
            embargo: 0,
        },
    )?;
    let device = Backend::Flex.device()?;
    let config = args.model_config(kind);
    let epochs = args.epochs(kind);
    let run = |epochs: usize| {
        let cfg = TrainingConfig::new(args.seed, epochs)
            .with_batch_size(args.batch)
            .with_schedule(Schedule::Constant)
            .with_patience(epochs + 1)
            .with_grad_clip(0.0);
        fit(&config, &data, &cfg, &device, None)
    };
    if args.warmup_epochs > 0 {
        run(args.warmup_epochs)?;
    }
    let started = Instant::now();
    let fitted = run(epochs)?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(json!({
        "bench": "fit", "impl": "burn", "backend": "flex", "model": kind.as_str(),
        "threads": threads(), "train_samples": data.rows(Split::Train).len(),
        "valid_samples": data.rows(Split::Valid).len(), "window": window, "features": f,
        "hidden": args.hidden, "batch": args.batch, "epochs": epochs, "seconds": seconds,
        "samples_per_sec": fitted.samples as f64 / seconds,
        "last_valid_loss": fitted.curve.last().map(|e| e.valid_loss),
    }))
}

/// A features folder (`features.parquet` + `manifest.json`) of `rows` blocks of the synthetic
/// data, one table row per time step.
fn write_features(dir: &Path, args: &Args, rows: usize) -> BoxResult<Vec<Vec<f64>>> {
    let f = args.features;
    let (x, y) = synthetic(args.seed, rows, 1, f);
    let mut fields = vec![Field::new("block_number", DataType::Int64, false)];
    let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(
        (0..rows as i64).map(|b| 20_000_000 + b),
    ))];
    for c in 0..f {
        fields.push(Field::new(format!("f{c}"), DataType::Float64, true));
        cols.push(Arc::new(Float64Array::from_iter_values(
            (0..rows).map(|r| x[r * f + c] as f64),
        )));
    }
    fields.push(Field::new(
        "label_fwd_ret_1__bench",
        DataType::Float64,
        true,
    ));
    cols.push(Arc::new(Float64Array::from_iter_values(
        y.iter().map(|&v| v as f64),
    )));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols)?;
    std::fs::create_dir_all(dir)?;
    let mut w = ArrowWriter::try_new(
        std::fs::File::create(dir.join("features.parquet"))?,
        schema,
        None,
    )?;
    w.write(&batch)?;
    w.close()?;
    std::fs::write(
        dir.join("manifest.json"),
        r#"{"input_hash": "models-bench"}"#,
    )?;
    Ok((0..rows)
        .map(|r| x[r * f..(r + 1) * f].iter().map(|&v| v as f64).collect())
        .collect())
}

/// A scratch directory removed on drop (the bin has no tempfile: dev-dependencies do not link).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// p50/p99/max of single decisions through the predictor of a freshly trained model directory.
fn bench_latency(args: &Args, kind: ModelKind, scratch: &Path) -> BoxResult<serde_json::Value> {
    let rows = 4096;
    let feat = scratch.join(format!("features-{kind}"));
    let table = write_features(&feat, args, rows)?;
    let window = args.window(kind);
    let toml = scratch.join(format!("{kind}.toml"));
    std::fs::write(
        &toml,
        format!(
            "hidden = [{h}, {h}]\nd_hidden = {h}\nwindow = {window}\nbatch_size = {b}\n\
             dropout = 0.1\npatience = 10\n",
            h = args.hidden,
            b = args.batch
        ),
    )?;
    let out = scratch.join(format!("model-{kind}"));
    let mut opts = TrainOptions::new(&feat, &out, kind, Task::Regression);
    opts.config = Some(toml);
    opts.epochs = 2;
    opts.seed = args.seed;
    let report = dexlab_models::train(&opts)?;
    let columns: Vec<String> = (0..args.features).map(|c| format!("f{c}")).collect();
    let predictor = Predictor::load(&report.model_dir, &columns)?;
    let params = {
        let a = predictor.artifact();
        a.config.model.init(&Backend::Flex.device()?).num_params()
    };
    // Distinct inputs, cycled, so that nothing is answered from a warm cache of one input.
    let inputs: Vec<Vec<&[f64]>> = (0..256)
        .map(|i| {
            let end = window + i * 13 % (rows - window);
            (end - window..end).map(|r| table[r].as_slice()).collect()
        })
        .collect();
    let call = |i: usize| -> BoxResult<f64> {
        let rows = &inputs[i % inputs.len()];
        Ok(if window == 1 {
            predictor.predict(rows[0])?
        } else {
            predictor.predict_window(rows)?
        })
    };
    let mut sink = 0.0;
    for i in 0..args.calls / 10 + 100 {
        sink += call(i)?;
    }
    let mut ns = Vec::with_capacity(args.calls);
    for i in 0..args.calls {
        let t = Instant::now();
        sink += call(i)?;
        ns.push(t.elapsed().as_nanos() as f64);
    }
    ns.sort_by(f64::total_cmp);
    let pct = |q: f64| ns[((q * (ns.len() - 1) as f64).round() as usize).min(ns.len() - 1)] / 1e3;
    Ok(json!({
        "bench": "latency", "impl": "burn", "backend": "flex", "model": kind.as_str(),
        "path": if window == 1 { "Predictor::predict" } else { "Predictor::predict_window" },
        "threads": threads(), "params": params, "window": window, "features": args.features,
        "calls": ns.len(), "p50_us": pct(0.5), "p99_us": pct(0.99), "max_us": ns[ns.len() - 1] / 1e3,
        "mean_us": ns.iter().sum::<f64>() / ns.len() as f64 / 1e3, "sink": sink.is_finite(),
    }))
}

fn run() -> BoxResult<ExitCode> {
    let args = Args::parse()?;
    let scratch =
        Scratch(std::env::temp_dir().join(format!("models-bench-{}", std::process::id())));
    if args.what.iter().any(|w| w == "ops") {
        for line in bench_ops(&args)? {
            println!("{line}");
        }
    }
    for kind in args.models.clone() {
        for what in args.what.iter().filter(|w| *w != "ops") {
            let line = match what.as_str() {
                "train" => bench_train(&args, kind, Variant::Dexlab)?,
                "train-burn-gru" if kind == ModelKind::Gru => {
                    bench_train(&args, kind, Variant::BurnGru)?
                }
                "train-gru-ops" if kind == ModelKind::Gru => {
                    bench_train(&args, kind, Variant::GruOps)?
                }
                "train-burn-gru" | "train-gru-ops" => continue,
                "fit" => bench_fit(&args, kind)?,
                "latency" => bench_latency(&args, kind, &scratch.0)?,
                other => {
                    return Err(format!(
                        "--what {other}: expected train, train-burn-gru, train-gru-ops, fit, latency or ops"
                    )
                    .into());
                }
            };
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("models-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

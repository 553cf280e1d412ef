//! Fixtures: a synthetic features folder with a known, learnable signal, and the real
//! USDC/WETH sample imported and featurised once per test binary.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use dexlab_models::{ModelKind, Task, TrainOptions};
use parquet::arrow::ArrowWriter;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const REG_TARGET: &str = "label_fwd_ret_1__syn";
pub const CLF_TARGET: &str = "label_up__syn";
pub const FEATURES: [&str; 4] = ["f0", "f1", "f2", "f3"];

/// Small models, to keep the suite fast in the dev profile; the window models read 8 rows.
pub const FAST_TOML: &str = "hidden = [32, 16]\nd_hidden = 16\nd_model = 16\nn_heads = 2\n\
                             n_layers = 1\nd_ff = 32\nlr = 0.005\npatience = 4\ndropout = 0.05\n";

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-12);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// The manifest of the synthetic folder: its labels' look-ahead, as `dexlab features build`
/// records it (the regression label reads the next block, the classification label none).
pub const SYNTHETIC_MANIFEST: &str = r#"{"input_hash": "synthetic-0001", "rows": 0, "columns": [
  {"name": "label_fwd_ret_1__syn", "kind": "label", "lookahead_blocks": 1},
  {"name": "label_up__syn", "kind": "label", "lookahead_blocks": 0}]}"#;

/// `n` blocks of four AR(1) features. The regression target is
/// `0.8 f0 − 0.5 f1 + 0.4 f2[t−3] + noise(0.3)`, so the window models can use the lag; the
/// classification target is the sign of `0.9 f0 − 0.6 f1 + noise(0.4)`. The last row's labels
/// are null and the first row's `f3` is NaN, as a features build leaves them.
pub fn write_synthetic(dir: &Path, n: usize, seed: u64) {
    write_synthetic_as(dir, n, seed, CLF_TARGET, SYNTHETIC_MANIFEST);
}

/// [`write_synthetic`] with the classification label named `clf_target` and `manifest` as
/// `manifest.json`.
pub fn write_synthetic_as(dir: &Path, n: usize, seed: u64, clf_target: &str, manifest: &str) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut f = vec![vec![0.0f64; n]; 4];
    for t in 0..n {
        for (k, col) in f.iter_mut().enumerate() {
            let prev = if t > 0 { col[t - 1] } else { 0.0 };
            col[t] = (0.5 + 0.1 * k as f64) * prev + normal(&mut rng);
        }
    }
    f[3][0] = f64::NAN;
    let mut reg = Vec::with_capacity(n);
    let mut clf = Vec::with_capacity(n);
    for t in 0..n {
        let lag = if t >= 3 { f[2][t - 3] } else { 0.0 };
        let y = 0.8 * f[0][t] - 0.5 * f[1][t] + 0.4 * lag + 0.3 * normal(&mut rng);
        let c = 0.9 * f[0][t] - 0.6 * f[1][t] + 0.4 * normal(&mut rng) > 0.0;
        let last = t + 1 == n;
        reg.push((!last).then_some(y));
        clf.push((!last).then_some(c));
    }
    let mut fields = vec![
        Field::new("block_number", DataType::Int64, false),
        Field::new("timestamp", DataType::Int64, false),
    ];
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            (0..n as i64).map(|b| 1000 + b),
        )),
        Arc::new(Int64Array::from_iter_values(
            (0..n as i64).map(|b| 1_700_000_000 + 12 * b),
        )),
    ];
    for (name, col) in FEATURES.iter().zip(&f) {
        fields.push(Field::new(*name, DataType::Float64, true));
        cols.push(Arc::new(Float64Array::from(col.clone())));
    }
    fields.push(Field::new(REG_TARGET, DataType::Float64, true));
    cols.push(Arc::new(Float64Array::from(reg)));
    fields.push(Field::new(clf_target, DataType::Boolean, true));
    cols.push(Arc::new(BooleanArray::from(clf)));
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), cols).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let file = File::create(dir.join("features.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    std::fs::write(dir.join("manifest.json"), manifest).unwrap();
    std::fs::write(dir.join("fast.toml"), FAST_TOML).unwrap();
    std::fs::write(
        dir.join("fast-seq.toml"),
        format!("{FAST_TOML}window = 8\n"),
    )
    .unwrap();
}

/// One synthetic features folder per test binary (1200 blocks).
pub fn synthetic_dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let feat = dir.path().join("features");
        write_synthetic(&feat, 1200, 42);
        (dir, feat)
    })
    .1
}

pub fn fast_options(features: &Path, out: &Path, model: ModelKind, task: Task) -> TrainOptions {
    let mut o = TrainOptions::new(features, out, model, task);
    let toml = if model.is_sequence() {
        "fast-seq.toml"
    } else {
        "fast.toml"
    };
    o.config = Some(features.join(toml));
    o.epochs = 12;
    o.seed = 7;
    o
}

/// The real sample imported and featurised once (examples/features.toml is the default config).
pub fn sample_features() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let sample = root.join("../shared/data/univ3-usdc-weth-2024-01-05");
        let manifest = dexlab_data::manifest::ChainManifest::load(
            &root.join("examples/univ3-usdc-weth-mainnet.manifest.json"),
        )
        .expect("chain manifest");
        let data = dir.path().join("ds");
        dexlab_data::import::import(&dexlab_data::import::ImportOptions {
            input: sample.join("logs.jsonl"),
            out: data.clone(),
            timestamps: Some(sample.join("block_timestamps.csv")),
            pools: manifest.pools,
            chain_id: 1,
            chunk_blocks: 10_000,
        })
        .expect("import the sample");
        let feat = dir.path().join("feat");
        dexlab_features::build(&data, &dexlab_features::FeatureConfig::default(), &feat)
            .expect("build features");
        (dir, feat)
    })
    .1
}

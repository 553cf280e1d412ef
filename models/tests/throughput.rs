//! Training throughput per backend (ignored: a measurement, not a check). Run with
//! `cargo test -p dexlab-models [--features ndarray] -- --ignored throughput --nocapture`.

use dexlab_models::{Backend, ModelKind, Task, train};

use crate::support::write_synthetic;

#[test]
#[ignore]
fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let feat = dir.path().join("features");
    write_synthetic(&feat, 12_000, 3);
    let mut backends = vec![Backend::Flex];
    if Backend::NdArray.device().is_ok() {
        backends.push(Backend::NdArray);
    }
    for kind in ModelKind::ALL {
        for &backend in &backends {
            let mut o = dexlab_models::TrainOptions::new(
                &feat,
                dir.path().join("m"),
                kind,
                Task::Regression,
            );
            o.backend = backend;
            o.epochs = if kind.is_sequence() { 2 } else { 5 };
            // Default hyperparameters, but patience high enough that every epoch runs.
            o.config = Some(dir.path().join("h.toml"));
            std::fs::write(dir.path().join("h.toml"), "patience = 100\n").unwrap();
            let r = train(&o).unwrap();
            println!(
                "{kind:<12} {backend:<8} {:>9.0} samples/s  ({} epochs, {:.2} s, test MSE {:.4} vs zero {:.4})",
                r.train_samples_per_sec,
                r.epochs_run,
                r.train_seconds,
                r.test.model.loss(),
                r.test.baseline("zero").unwrap().loss(),
            );
        }
    }
}

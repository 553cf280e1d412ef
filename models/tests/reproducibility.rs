//! Same seed and data on CPU: byte-identical weights and metrics; another seed: different. The GRU
//! too, whose fused layer splits each batch over rayon's threads.

use std::fs;
use std::path::Path;

use dexlab_models::{ModelKind, Task, train};

use crate::support::{fast_options, synthetic_dir};

fn train_into(dir: &Path, kind: ModelKind, seed: u64) -> (Vec<u8>, String, String, String) {
    let mut opts = fast_options(synthetic_dir(), dir, kind, Task::Regression);
    opts.seed = seed;
    opts.epochs = 4;
    let r = train(&opts).unwrap();
    (
        fs::read(r.model_dir.join("model.bpk")).unwrap(),
        fs::read_to_string(r.model_dir.join("metrics.json")).unwrap(),
        fs::read_to_string(r.model_dir.join("normalizer.json")).unwrap(),
        fs::read_to_string(r.model_dir.join("predictions.csv")).unwrap(),
    )
}

#[test]
fn same_seed_same_bytes_other_seed_differs() {
    for kind in [ModelKind::Mlp, ModelKind::Gru] {
        let out = tempfile::tempdir().unwrap();
        let a = train_into(&out.path().join("a"), kind, 11);
        let b = train_into(&out.path().join("b"), kind, 11);
        let c = train_into(&out.path().join("c"), kind, 12);
        assert!(
            a.0 == b.0,
            "{kind:?}: weights differ between two runs with the same seed"
        );
        assert_eq!(
            a.1, b.1,
            "{kind:?}: metrics differ between two runs with the same seed"
        );
        assert_eq!(a.2, b.2);
        assert!(
            a.3 == b.3,
            "{kind:?}: predictions differ between two runs with the same seed"
        );
        assert!(
            a.3 != c.3,
            "{kind:?}: another seed gave the same predictions"
        );
        assert!(a.0 != c.0, "{kind:?}: another seed gave the same weights");
        assert_ne!(a.1, c.1);
        // The normaliser depends on the data only.
        assert_eq!(a.2, c.2);
    }
}

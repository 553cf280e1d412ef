//! The model of a model-driven strategy, and the blocks a run with it may be evaluated on: only
//! those after everything its training saw, so that its predictions there are out of sample.

use std::ops::Range;
use std::path::Path;

use dexlab_evolve::tape::Tape;
use dexlab_models::artifact::SeenBlocks;
use dexlab_models::scorer::ModelScorer;
use dexlab_strategy::{ModelHandle, registry};
use serde::Serialize;

use crate::error::{Context, Result, refuse};

/// A model-driven strategy's model and the blocks its training saw.
pub struct LoadedModel {
    pub handle: ModelHandle,
    pub seen: SeenBlocks,
}

/// The model of a model-driven strategy; refuses a model the strategy would not read, and one
/// whose training blocks cannot be bounded.
pub fn load_model(dir: Option<&Path>, strategy: &str) -> Result<Option<LoadedModel>> {
    match dir {
        None => Ok(None),
        Some(_) if !registry::needs_model(strategy) => {
            refuse!("strategy `{strategy}` does not use a model; drop --model")
        }
        Some(d) => {
            let scorer =
                ModelScorer::load(d).with_context(|| format!("loading model {}", d.display()))?;
            let seen = scorer.predictor().artifact().seen_blocks(d)?;
            Ok(Some(LoadedModel {
                handle: scorer.into_handle(),
                seen,
            }))
        }
    }
}

/// Where a run with a model is evaluated: only on the blocks after those the model's training
/// saw (train and valid splits, plus the blocks their labels read), so that its predictions there
/// are out of sample. Recorded in `--json` output and in the experiment's config.
#[derive(Debug, Clone, Serialize)]
pub struct ModelWindow {
    pub model: String,
    /// `restricted`: the run is confined to `evaluated_blocks` (a window that cannot be
    /// confined is refused instead).
    pub mode: &'static str,
    pub seen: SeenBlocks,
    /// Block numbers evaluated, inclusive.
    pub evaluated_blocks: (u64, u64),
    /// Blocks of the dataset left out before them.
    pub skipped_blocks: usize,
    /// Tape block indices evaluated.
    #[serde(skip)]
    pub range: Range<usize>,
    /// What the window is, in words, for the user (`model … saw blocks …; evaluating …`).
    #[serde(skip)]
    pub note: String,
}

/// Confines a run to the blocks after `model`'s training data, or refuses: when the dataset is
/// not the model's (block ranges of another dataset cannot be compared) or fewer than
/// `min_blocks` blocks remain (`need` says what for).
pub fn model_window(
    tape: &Tape,
    model: &LoadedModel,
    min_blocks: usize,
    need: &str,
) -> Result<ModelWindow> {
    let id = model.handle.id();
    let s = &model.seen;
    let short = |h: &str| h[..h.len().min(12)].to_owned();
    match &s.dataset_hash {
        None => refuse!(
            "model {id} records no dataset hash (its features folder had no manifest.json): \
             which blocks of this dataset it was trained on cannot be told, so no window can be \
             proven out of sample; retrain it on a `dexlab features build` folder"
        ),
        Some(h) if *h != tape.dataset_hash => refuse!(
            "model {id} was trained on features of another dataset (sha256 {}…), not this one \
             ({}…): its train/valid blocks cannot be compared with this dataset's safely; \
             evaluate it on the dataset it was trained on, or retrain it on this one",
            short(h),
            short(&tape.dataset_hash)
        ),
        Some(_) => {}
    }
    let start = tape
        .blocks
        .partition_point(|b| (b.number as i64) < s.first_unseen);
    let n = tape.blocks.len() - start;
    let seen = format!(
        "model {id} saw blocks {}..={} (+embargo {})",
        s.train_blocks.0, s.valid_blocks.1, s.embargo
    );
    if n < min_blocks.max(1) {
        refuse!(
            "{seen}: only {n} blocks of this dataset lie after block {}, too few {need} (at \
             least {}); train the model on an earlier part of the data (a smaller `split` train \
             and valid share), or ask for less",
            s.first_unseen - 1,
            min_blocks.max(1)
        );
    }
    let evaluated = (
        tape.blocks[start].number,
        tape.blocks[tape.blocks.len() - 1].number,
    );
    let note = format!(
        "{seen}; evaluating blocks {}..={} only ({n} of the dataset's {} blocks)",
        evaluated.0,
        evaluated.1,
        tape.blocks.len()
    );
    Ok(ModelWindow {
        model: id.to_owned(),
        mode: "restricted",
        seen: s.clone(),
        evaluated_blocks: evaluated,
        skipped_blocks: start,
        range: start..tape.blocks.len(),
        note,
    })
}

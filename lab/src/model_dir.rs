//! A registered model's directory, opened: whether it still holds what was registered and
//! loads (burn, through `dexlab-models`; feature `models`).

use std::path::Path;

use dexlab_models::artifact::Artifact;
use dexlab_models::{Backend, Predictor, SchemaDiff};
use dexlab_store::{ModelRow, RegisteredKind};
use serde::Serialize;

/// Whether a model directory still holds what the registry says.
#[derive(Debug, Clone, Serialize)]
pub struct DirStatus {
    pub path: String,
    pub exists: bool,
    /// The weights load (burn, CPU backend) and the model files parse.
    pub loads: bool,
    /// The directory's content hash now; `None` when it cannot be read.
    pub content_hash: Option<String>,
    pub content_matches: bool,
    /// Everything that differs from the registry or fails, in words; empty when intact.
    pub problems: Vec<String>,
}

/// Checks a registered model's directory: there, same content as registered, and it loads
/// (the weights with burn's CPU backend, or the agent's networks).
pub fn check_dir(row: &ModelRow) -> DirStatus {
    let m = &row.model;
    let dir = Path::new(&m.dir);
    let mut s = DirStatus {
        path: m.dir.clone(),
        exists: dir.is_dir(),
        loads: false,
        content_hash: None,
        content_matches: false,
        problems: Vec::new(),
    };
    if !s.exists {
        s.problems.push(if dir.exists() {
            "not a directory".to_owned()
        } else {
            "the directory is missing".to_owned()
        });
        return s;
    }
    match dexlab_store::content_hash(dir) {
        Ok(h) => {
            s.content_matches = h == m.content_hash;
            if !s.content_matches {
                s.problems.push(format!(
                    "its content changed since registration (registered {}, now {})",
                    crate::short(&m.content_hash),
                    crate::short(&h)
                ));
            }
            s.content_hash = Some(h);
        }
        Err(e) => s.problems.push(crate::error_chain(&e)),
    }
    if m.kind.is_agent() {
        // An RL agent: its networks and environment, not a predictive model's artifact.
        match dexlab_models::rl::load_agent(dir) {
            Ok(agent) if RegisteredKind::Agent(agent.kind()) == m.kind => s.loads = true,
            Ok(agent) => s.problems.push(format!(
                "kind differs: registry {}, directory {}",
                m.kind,
                agent.kind()
            )),
            Err(e) => s.problems.push(format!("the agent does not load: {e}")),
        }
        return s;
    }
    let art = match Artifact::read(dir) {
        Ok(a) => a,
        Err(e) => {
            s.problems.push(format!("the model files do not read: {e}"));
            return s;
        }
    };
    if let Some(diff) = SchemaDiff::between(&m.features, &art.schema.features) {
        s.problems.push(format!(
            "schema.json's feature columns differ from the registered ones: {diff}"
        ));
    }
    let mut differs = |what: &str, registered: String, now: String| {
        if registered != now {
            s.problems.push(format!(
                "{what} differs: registry {registered}, directory {now}"
            ));
        }
    };
    differs("target", m.target.clone(), art.schema.target.clone());
    differs(
        "task",
        m.task.to_string(),
        art.schema.task.as_str().to_owned(),
    );
    differs(
        "window",
        m.window.to_string(),
        art.schema.window.to_string(),
    );
    differs(
        "kind",
        m.kind.to_string(),
        art.config.model_kind.as_str().to_owned(),
    );
    let hash = |h: &Option<String>| h.clone().unwrap_or_else(|| "unknown".into());
    differs(
        "dataset hash",
        hash(&m.dataset_hash),
        hash(&art.dataset.dataset_hash),
    );
    match Predictor::load_unchecked(dir, Backend::default()) {
        Ok(_) => s.loads = true,
        Err(e) => s.problems.push(format!("the weights do not load: {e}")),
    }
    s
}

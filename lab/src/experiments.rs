//! Experiments as the store holds them, and as a reader should see them: a `running` experiment
//! whose process is gone is shown interrupted; only finished experiments are reported.

use std::fmt;
use std::path::Path;

use dexlab_store::{ExperimentDetail, ExperimentRow, ExperimentStatus, Store};

use crate::error::{LabError, Result, refuse};

/// The state a reader is shown for an experiment: its stored status, except that a `running`
/// one whose process is known to be gone (this host, no such pid: killed, or the machine
/// restarted) is [`ExperimentStatus::Interrupted`], with why in `detail`. A process on another
/// host cannot be checked from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownState {
    pub status: ExperimentStatus,
    /// Why the shown status differs from the stored one (`process 4242 on lab-1 is gone`).
    pub detail: Option<String>,
}

impl ShownState {
    /// Of `e` as seen from `host`, with `alive` telling whether a pid of this host runs.
    pub fn of(e: &ExperimentRow, host: &str, alive: &dyn Fn(i64) -> bool) -> ShownState {
        match (e.status, e.pid, e.host.as_deref()) {
            (ExperimentStatus::Running, Some(pid), Some(h)) if h == host && !alive(pid) => {
                ShownState {
                    status: ExperimentStatus::Interrupted,
                    detail: Some(format!("process {pid} on {h} is gone")),
                }
            }
            _ => ShownState {
                status: e.status,
                detail: None,
            },
        }
    }

    /// Of `e` as seen from this machine.
    pub fn here(e: &ExperimentRow) -> ShownState {
        ShownState::of(e, &host_name(), &process_alive)
    }
}

/// `interrupted (process 4242 on lab-1 is gone)`, or the status alone.
impl fmt::Display for ShownState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.detail {
            Some(d) => write!(f, "{} ({d})", self.status),
            None => write!(f, "{}", self.status),
        }
    }
}

/// An experiment as listings show it: every stored field, `status` as [`ShownState`] gives
/// it, `stored_status` as the store holds it, and `state` (the status with its reason) when the
/// two differ.
pub fn state_json(e: &ExperimentRow, shown: &ShownState) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(e).map_err(|s| LabError::json("experiment", s))?;
    v["stored_status"] = e.status.as_str().into();
    v["status"] = shown.status.as_str().into();
    if shown.status != e.status {
        v["state"] = shown.to_string().into();
    }
    Ok(v)
}

/// An experiment with the state it is shown in.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub row: ExperimentRow,
    pub shown: ShownState,
}

/// Every experiment, newest first, with its shown state.
pub async fn list(store: &Store) -> Result<Vec<Listed>> {
    Ok(store
        .list_experiments()
        .await?
        .into_iter()
        .map(|row| Listed {
            shown: ShownState::here(&row),
            row,
        })
        .collect())
}

/// One experiment and everything stored about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    pub shown: ShownState,
    pub detail: ExperimentDetail,
}

/// The experiment of this id or name, with everything stored about it.
pub async fn show(store: &Store, id_or_name: &str) -> Result<Shown> {
    let e = store
        .find_experiment(id_or_name)
        .await?
        .ok_or_else(|| LabError::NoExperiment(id_or_name.to_owned()))?;
    let detail = store.experiment_detail(e.id).await?;
    Ok(Shown {
        shown: ShownState::here(&e),
        detail,
    })
}

/// Refuses to report an experiment with nothing finished to show: a failed one (with its
/// reason), an interrupted one, one still running, or one without folds.
pub fn check_reportable(e: &ExperimentRow, shown: &ShownState, folds: usize) -> Result<()> {
    let who = format!("experiment {} `{}`", e.id, e.name);
    let reason = e.error.as_deref().unwrap_or("no reason was recorded");
    match (e.status, shown.status) {
        (ExperimentStatus::Failed, _) => {
            refuse!("{who} failed: {reason}; there is nothing to report")
        }
        (ExperimentStatus::Interrupted, _) | (_, ExperimentStatus::Interrupted) => refuse!(
            "{who} was {shown}{} with {folds} fold(s) stored: rerun its `dexlab evolve` command \
             (same --out) to resume it, then report it",
            e.error
                .as_deref()
                .map_or(String::new(), |r| format!(" ({r})"))
        ),
        (ExperimentStatus::Running, _) if folds == 0 => {
            refuse!("{who} is still running and no fold has finished yet: nothing to report")
        }
        (ExperimentStatus::Running, _) => refuse!(
            "{who} is still running ({folds} fold(s) stored so far): report it when it is done"
        ),
        (ExperimentStatus::Done, _) if folds == 0 => {
            refuse!("{who} is done but stored no folds: nothing to report")
        }
        (ExperimentStatus::Done, _) => Ok(()),
    }
}

/// This machine's name, as recorded with the experiments it runs.
pub fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        })
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// Whether process `pid` of this machine is alive; `true` where that cannot be told (no
/// `/proc`), so that a live run is never shown as gone.
pub fn process_alive(pid: i64) -> bool {
    let proc = Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}

/// Unix seconds now.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: ExperimentStatus, error: Option<&str>) -> ExperimentRow {
        ExperimentRow {
            id: 7,
            name: "arb".into(),
            strategy: "cross-venue-arb".into(),
            dataset: "ds".into(),
            dataset_hash: "h".into(),
            config: serde_json::json!({}),
            seed: 1,
            status,
            summary: None,
            created_at: 0,
            error: error.map(Into::into),
            pid: Some(4242),
            host: Some("lab-1".into()),
            heartbeat_at: Some(100),
        }
    }

    /// A `running` experiment whose process is gone (same host, no such pid) is not shown as
    /// live.
    #[test]
    fn a_running_experiment_of_a_dead_process_is_shown_interrupted() {
        let e = row(ExperimentStatus::Running, None);
        assert_eq!(
            ShownState::of(&e, "lab-1", &|_| true).to_string(),
            "running"
        );
        let s = ShownState::of(&e, "lab-1", &|_| false);
        assert_eq!(s.status, ExperimentStatus::Interrupted);
        assert_eq!(s.to_string(), "interrupted (process 4242 on lab-1 is gone)");
        // Another host's process cannot be checked from here: shown as running.
        assert_eq!(
            ShownState::of(&e, "lab-2", &|_| false).status,
            ExperimentStatus::Running
        );
        let done = row(ExperimentStatus::Done, None);
        assert_eq!(
            ShownState::of(&done, "lab-1", &|_| false).to_string(),
            "done"
        );
        let v = state_json(&e, &s).unwrap();
        assert_eq!(
            (&v["status"], &v["stored_status"]),
            (&"interrupted".into(), &"running".into())
        );
        assert_eq!(v["state"], "interrupted (process 4242 on lab-1 is gone)");
        assert!(
            state_json(&done, &ShownState::of(&done, "x", &|_| true)).unwrap()["state"].is_null()
        );
    }

    /// `report` on a failed, interrupted or still empty experiment says so and fails instead of
    /// drawing empty plots.
    #[test]
    fn only_finished_experiments_are_reported() {
        let shown = |e: &ExperimentRow, alive: bool| ShownState::of(e, "lab-1", &move |_| alive);
        let failed = row(ExperimentStatus::Failed, Some("2 blocks with events"));
        let e = check_reportable(&failed, &shown(&failed, true), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("experiment 7 `arb` failed"), "{e}");
        assert!(e.contains("2 blocks with events"), "{e}");
        let running = row(ExperimentStatus::Running, None);
        let e = check_reportable(&running, &shown(&running, true), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("still running") && e.contains("no fold"), "{e}");
        let e = check_reportable(&running, &shown(&running, false), 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("interrupted (process 4242"), "{e}");
        let done = row(ExperimentStatus::Done, None);
        check_reportable(&done, &shown(&done, true), 2).unwrap();
        assert!(check_reportable(&done, &shown(&done, true), 0).is_err());
    }
}

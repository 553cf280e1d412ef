//! Jobs: queued in order, each claimed by one runner even when runners race, progress and
//! cancel requests through the heartbeat, a stale runner's job requeued (then failed after too
//! many claims), a queued job cancelled at once, a finished one left alone.

use dexlab_store::{JobEnd, JobKind, JobState, NewJob, Store, StoreError};
use serde_json::json;

use crate::support::TestDb;

fn job(kind: JobKind, n: u64) -> NewJob {
    NewJob {
        kind,
        spec: json!({ "dataset": "base-sample", "seed": n }),
        created_by: "rita".into(),
        created_by_id: Some(3),
        created_at: 100 + n as i64,
    }
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    assert_eq!(store.claim_job("r1", 200).await?, None);
    let a = store.add_job(&job(JobKind::Evolve, 1)).await?;
    let b = store.add_job(&job(JobKind::Backtest, 2)).await?;
    let c = store.add_job(&job(JobKind::Train, 3)).await?;
    assert_eq!(a.state, JobState::Queued);
    assert_eq!(a.spec, json!({ "dataset": "base-sample", "seed": 1 }));
    assert_eq!((a.attempts, a.runner.clone()), (0, None));

    // Oldest first.
    let got = store.claim_job("r1", 200).await?.expect("a queued job");
    assert_eq!(
        (got.id, got.state, got.attempts),
        (a.id, JobState::Running, 1)
    );
    assert_eq!(
        (got.runner.as_deref(), got.started_at),
        (Some("r1"), Some(200))
    );

    // Progress and cancel requests travel through the heartbeat.
    assert!(
        !store
            .job_heartbeat(a.id, "r1", 201, (3, 10, Some("fold 1")))
            .await?
    );
    let now = store.job(a.id).await?.expect("job a");
    assert_eq!((now.progress_done, now.progress_total), (3, 10));
    assert_eq!(now.progress_note.as_deref(), Some("fold 1"));
    let flagged = store.cancel_job(a.id, 202).await?;
    assert_eq!(
        (flagged.state, flagged.cancel_requested),
        (JobState::Running, true)
    );
    assert!(store.job_heartbeat(a.id, "r1", 203, (4, 10, None)).await?);
    // Another runner cannot beat or finish it.
    assert!(matches!(
        store.job_heartbeat(a.id, "r2", 203, (0, 0, None)).await,
        Err(StoreError::NotFound { .. })
    ));
    let end = JobEnd {
        state: JobState::Cancelled,
        exit_code: None,
        error: None,
        result: None,
        progress: (4, 10, None),
        at: 204,
    };
    assert!(matches!(
        store.finish_job(a.id, "r2", &end).await,
        Err(StoreError::NotFound { .. })
    ));
    let ended = store.finish_job(a.id, "r1", &end).await?;
    assert_eq!(
        (ended.state, ended.finished_at),
        (JobState::Cancelled, Some(204))
    );
    // Cancelling a finished job changes nothing.
    assert_eq!(store.cancel_job(a.id, 205).await?, ended);

    // A queued job is cancelled at once and never claimed.
    let cancelled = store.cancel_job(b.id, 206).await?;
    assert_eq!(
        (cancelled.state, cancelled.finished_at),
        (JobState::Cancelled, Some(206))
    );

    // A runner dies while it runs c: c goes back to the queue once its heartbeat is stale.
    let got = store.claim_job("r1", 300).await?.expect("c");
    assert_eq!(got.id, c.id);
    assert_eq!(
        store.requeue_stale_jobs(300, 3, 310).await?,
        (vec![], vec![])
    );
    assert_eq!(
        store.requeue_stale_jobs(301, 3, 340).await?,
        (vec![c.id], vec![])
    );
    // The dead runner's late heartbeat is refused: it must stop.
    assert!(matches!(
        store.job_heartbeat(c.id, "r1", 341, (0, 0, None)).await,
        Err(StoreError::NotFound { .. })
    ));
    for attempt in 2..=3 {
        let got = store.claim_job("r2", 400).await?.expect("c again");
        assert_eq!((got.id, got.attempts), (c.id, attempt));
        if attempt < 3 {
            assert_eq!(
                store.requeue_stale_jobs(401, 3, 450).await?,
                (vec![c.id], vec![])
            );
        }
    }
    assert_eq!(
        store.requeue_stale_jobs(401, 3, 450).await?,
        (vec![], vec![c.id])
    );
    let failed = store.job(c.id).await?.expect("c");
    assert_eq!(failed.state, JobState::Failed);
    assert!(
        failed
            .error
            .as_deref()
            .is_some_and(|e| e.contains("3 times")),
        "{failed:?}"
    );

    // Listing: newest first, by state, paged.
    let all = store.list_jobs(None, 10, None).await?;
    assert_eq!(
        all.iter().map(|j| j.id).collect::<Vec<_>>(),
        [c.id, b.id, a.id]
    );
    let cancelled = store.list_jobs(Some(JobState::Cancelled), 10, None).await?;
    assert_eq!(
        cancelled.iter().map(|j| j.id).collect::<Vec<_>>(),
        [b.id, a.id]
    );
    let page = store.list_jobs(None, 1, Some(b.id)).await?;
    assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), [a.id]);

    // A job that finished with a result keeps it.
    let d = store.add_job(&job(JobKind::Backtest, 4)).await?;
    store.claim_job("r3", 500).await?.expect("d");
    let done = store
        .finish_job(
            d.id,
            "r3",
            &JobEnd {
                state: JobState::Succeeded,
                exit_code: Some(0),
                error: None,
                result: Some(json!({ "experiment_id": 7 })),
                progress: (12, 12, Some("fold 2 best 0.5".into())),
                at: 510,
            },
        )
        .await?;
    assert_eq!(done.result, Some(json!({ "experiment_id": 7 })));
    assert_eq!(done.exit_code, Some(0));
    assert_eq!((done.progress_done, done.progress_total), (12, 12));
    assert_eq!(done.progress_note.as_deref(), Some("fold 2 best 0.5"));
    Ok(())
}

on_both_backends!(scenario);

/// Runners racing for one queue: every job is claimed exactly once.
async fn racing(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(store.add_job(&job(JobKind::Backtest, n)).await?.id);
    }
    let claim = |store: Store, runner: &'static str| async move {
        let mut got = Vec::new();
        while let Some(j) = store.claim_job(runner, 1000).await? {
            got.push(j.id);
        }
        anyhow::Ok(got)
    };
    let (x, y, z) = tokio::join!(
        tokio::spawn(claim(store.clone(), "x")),
        tokio::spawn(claim(store.clone(), "y")),
        tokio::spawn(claim(store.clone(), "z")),
    );
    let mut all: Vec<i64> = [x??, y??, z??].concat();
    all.sort_unstable();
    assert_eq!(all, ids);
    Ok(())
}

mod race {
    use super::racing;
    on_both_backends!(racing);
}

//! Every experiment ends in a state: a run that fails is stored as failed with its reason, a
//! resumed one is running again under its new process, and names are unique per store (and never
//! all digits, which `find_experiment` would read as an id).

use dexlab_store::ExperimentStatus;
use dexlab_store::{Runner, StoreError};

use crate::support::{TestDb, experiment};

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let id = store.create_experiment(&experiment("sweep", 100)).await?;

    // A second experiment under a taken name is refused, naming the holder.
    let err = store
        .create_experiment(&experiment("sweep", 200))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, StoreError::ExperimentNameTaken { id: held, .. } if held == id),
        "{text}"
    );
    assert!(
        text.contains(&format!("already taken by experiment {id}")),
        "{text}"
    );
    assert!(text.contains("running"), "{text}");
    assert_eq!(store.list_experiments().await?.len(), 1);

    for bad in ["2024", "", " padded"] {
        let err = store
            .create_experiment(&experiment(bad, 1))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(
        store
            .create_experiment(&experiment("2024", 1))
            .await
            .unwrap_err()
            .to_string()
            .contains("all digits"),
    );
    assert_eq!(store.list_experiments().await?.len(), 1);

    // Who runs it, and when it was last heard from.
    let runner = Runner {
        pid: 4242,
        host: "lab-1".into(),
        at: 1_000,
    };
    store.mark_running(id, &runner).await?;
    store.heartbeat(id, 1_060).await?;
    let e = store.find_experiment("sweep").await?.expect("stored");
    assert_eq!(e.status, ExperimentStatus::Running);
    assert_eq!((e.pid, e.host.as_deref()), (Some(4242), Some("lab-1")));
    assert_eq!(e.heartbeat_at, Some(1_060));
    assert_eq!(e.error, None);

    // A failure is stored with its reason, and shown in the list and the detail.
    store
        .fail_experiment(
            id,
            ExperimentStatus::Failed,
            "the dataset has 2 blocks with events",
        )
        .await?;
    let listed = store.list_experiments().await?;
    assert_eq!(listed[0].status, ExperimentStatus::Failed);
    assert_eq!(
        listed[0].error.as_deref(),
        Some("the dataset has 2 blocks with events")
    );
    let d = store.experiment_detail(id).await?;
    assert_eq!(d.experiment.status, ExperimentStatus::Failed);
    assert!(d.experiment.error.is_some());

    // Resumed: running again, the old reason cleared; done clears it too.
    store
        .mark_running(
            id,
            &Runner {
                at: 2_000,
                ..runner
            },
        )
        .await?;
    let e = store
        .find_experiment(&id.to_string())
        .await?
        .expect("stored");
    assert_eq!(
        (e.status, e.error.as_deref()),
        (ExperimentStatus::Running, None)
    );
    store
        .fail_experiment(id, ExperimentStatus::Interrupted, "SIGINT")
        .await?;
    store
        .set_experiment_status(
            id,
            ExperimentStatus::Done,
            Some(&serde_json::json!({"ok": 1})),
        )
        .await?;
    let e = store.find_experiment("sweep").await?.expect("stored");
    assert_eq!(
        (e.status, e.error.as_deref()),
        (ExperimentStatus::Done, None)
    );

    // Unknown ids are reported, not ignored.
    assert!(matches!(
        store
            .fail_experiment(999_999, ExperimentStatus::Failed, "x")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.heartbeat(999_999, 1).await,
        Err(StoreError::NotFound { .. })
    ));
    Ok(())
}

on_both_backends!(scenario);

//! Statuses, run kinds and model kinds are enums in Rust and the same words in the database as
//! before they were (so existing stores need no migration); a word the enum does not know is
//! reported as a corrupt row, naming it, not silently taken for another.

use dexlab_store::{ExperimentStatus, NewRun, RunKind, StoreError};
use sqlx::Connection;

use crate::support::{TestDb, experiment};

async fn text_of(url: &str, sql: &str) -> anyhow::Result<String> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let text: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(text)
}

async fn execute(url: &str, sql: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let id = store.create_experiment(&experiment("words", 1)).await?;
    let status = || text_of(&db.url, "SELECT status FROM experiments");
    assert_eq!(status().await?, "running");
    for s in ExperimentStatus::ALL {
        store.set_experiment_status(id, s, None).await?;
        assert_eq!(status().await?, s.as_str());
        let e = store.find_experiment("words").await?.expect("stored");
        assert_eq!(e.status, s);
    }
    store
        .fail_experiment(id, ExperimentStatus::Interrupted, "SIGTERM")
        .await?;
    assert_eq!(status().await?, "interrupted");

    let run = store
        .add_run(&NewRun {
            experiment_id: id,
            fold: 0,
            kind: RunKind::RandomSearch,
            params: serde_json::json!({}),
            train_objective: None,
            test_objective: None,
        })
        .await?;
    assert_eq!(
        text_of(&db.url, "SELECT kind FROM runs").await?,
        "random_search"
    );
    assert_eq!(
        store
            .find_run(id, 0, RunKind::RandomSearch)
            .await?
            .map(|r| r.id),
        Some(run)
    );

    // A status this dexlab does not know (a newer one's, or a hand edit) is not read as any of
    // its own: the row is reported, with the word.
    execute(&db.url, "UPDATE experiments SET status = 'paused'").await?;
    let err = store.find_experiment("words").await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("paused"), "{err}");
    assert!(store.list_experiments().await.is_err());
    Ok(())
}

on_both_backends!(scenario);

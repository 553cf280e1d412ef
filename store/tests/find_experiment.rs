//! `find_experiment` takes a numeric id, else the experiment with that name (names are unique,
//! and never all digits, so the two cannot be confused).

use crate::support::{TestDb, experiment};

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    assert_eq!(store.find_experiment("anything").await?, None);
    assert!(store.list_experiments().await?.is_empty());

    let old = store.create_experiment(&experiment("sweep", 100)).await?;
    let alone = store.create_experiment(&experiment("alone", 150)).await?;
    // Created later but stamped earlier: "newest" follows created_at.
    let backdated = store.create_experiment(&experiment("sweep-2", 50)).await?;
    let dated = store
        .create_experiment(&experiment("2024-run", 300))
        .await?;

    let by_id = store
        .find_experiment(&old.to_string())
        .await?
        .expect("by id");
    assert_eq!(
        (by_id.id, by_id.name.as_str(), by_id.created_at),
        (old, "sweep", 100)
    );
    assert_eq!(
        store
            .find_experiment(&alone.to_string())
            .await?
            .map(|e| e.name),
        Some("alone".to_owned())
    );
    assert_eq!(
        store.find_experiment("sweep").await?.map(|e| e.id),
        Some(old)
    );
    assert_eq!(
        store.find_experiment("2024-run").await?.map(|e| e.id),
        Some(dated)
    );
    assert_eq!(store.find_experiment("nope").await?, None);
    assert_eq!(store.find_experiment("999999").await?, None);

    let listed: Vec<i64> = store
        .list_experiments()
        .await?
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec![dated, alone, old, backdated]);
    Ok(())
}

on_both_backends!(scenario);

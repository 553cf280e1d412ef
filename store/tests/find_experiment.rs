//! `find_experiment` takes a numeric id, else the newest experiment with that name.

use crate::support::{TestDb, experiment};

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    assert_eq!(store.find_experiment("anything").await?, None);
    assert!(store.list_experiments().await?.is_empty());

    let old = store.create_experiment(&experiment("sweep", 100)).await?;
    let new = store.create_experiment(&experiment("sweep", 200)).await?;
    let alone = store.create_experiment(&experiment("alone", 150)).await?;
    // Created later but stamped earlier: "newest" follows created_at.
    let backdated = store.create_experiment(&experiment("sweep", 50)).await?;
    let numeric_name = store.create_experiment(&experiment("2024", 300)).await?;

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
        Some(new)
    );
    assert_eq!(
        store.find_experiment("alone").await?.map(|e| e.id),
        Some(alone)
    );
    // A numeric name with no experiment of that id is still found by name.
    assert_eq!(
        store.find_experiment("2024").await?.map(|e| e.id),
        Some(numeric_name)
    );
    assert_eq!(store.find_experiment("nope").await?, None);
    assert_eq!(store.find_experiment("999999").await?, None);

    let listed: Vec<i64> = store
        .list_experiments()
        .await?
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(listed, vec![numeric_name, new, alone, old, backdated]);
    Ok(())
}

on_both_backends!(scenario);

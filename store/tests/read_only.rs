//! A read-only command opens the store with `Store::open_existing`: a SQLite file that does not
//! exist, or whose folder does not, is an error naming the path, and nothing is created.

use dexlab_store::{Store, StoreError};

use crate::support::everything_printed;

#[tokio::test]
async fn a_missing_sqlite_store_is_not_created() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for (path, why) in [
        (
            dir.path().join("no/such/folder/dexlab.sqlite"),
            "does not exist",
        ),
        (dir.path().join("absent.sqlite"), "does not exist"),
    ] {
        for url in [
            path.display().to_string(),
            format!("sqlite:{}", path.display()),
            format!("sqlite://{}", path.display()),
        ] {
            let err = Store::open_existing(&url).await.unwrap_err();
            let printed = everything_printed(&err);
            assert!(matches!(err, StoreError::NoStore { .. }), "{printed}");
            assert!(printed.contains(&path.display().to_string()), "{printed}");
            assert!(printed.contains(why), "{printed}");
        }
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())?.collect();
    assert!(left.is_empty(), "created {left:?}");

    // An existing store opens, and sees what a writer stored.
    let url = format!("sqlite:{}", dir.path().join("s.sqlite").display());
    let writer = Store::connect(&url).await?;
    writer
        .create_experiment(&crate::support::experiment("kept", 1))
        .await?;
    let reader = Store::open_existing(&url).await?;
    assert_eq!(reader.list_experiments().await?.len(), 1);
    reader.close().await;
    writer.close().await;
    Ok(())
}

#[tokio::test]
async fn an_in_memory_store_opens() -> anyhow::Result<()> {
    let s = Store::open_existing("sqlite::memory:").await?;
    assert!(s.list_experiments().await?.is_empty());
    Ok(())
}

//! Bad URLs fail at `connect` with an error that says what and where, without the password.

use dexlab_store::{Store, StoreError};
use sqlx::Connection;

use crate::support::{everything_printed, postgres_admin, postgres_admin_url, with_database};

#[tokio::test]
async fn sqlite() -> anyhow::Result<()> {
    let err = Store::connect("mysql://root:hunter2@127.0.0.1/dexlab")
        .await
        .unwrap_err();
    let printed = everything_printed(&err);
    assert!(
        matches!(err, StoreError::UnsupportedUrl { .. }),
        "{printed}"
    );
    assert!(
        printed.contains("mysql://root:***@127.0.0.1/dexlab"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"), "{printed}");

    // The database's directory cannot be created: its parent is a file.
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a directory")?;
    let url = format!("sqlite:{}/sub/dexlab.sqlite", file.display());
    let err = Store::connect(&url).await.unwrap_err();
    let printed = everything_printed(&err);
    assert!(matches!(err, StoreError::CreateDir { .. }), "{printed}");
    assert!(printed.contains("a-file/sub"), "{printed}");

    // Not a database at all.
    let junk = dir.path().join("junk.sqlite");
    std::fs::write(&junk, vec![0x5a_u8; 8192])?;
    let err = Store::connect(&junk.display().to_string())
        .await
        .unwrap_err();
    let printed = everything_printed(&err);
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: "sqlite",
                ..
            } | StoreError::Migrate { .. }
        ),
        "{printed}"
    );
    assert!(printed.contains("junk.sqlite"), "{printed}");
    Ok(())
}

#[tokio::test]
async fn postgres() -> anyhow::Result<()> {
    // Nothing listens on port 1: refused at once, reported as such rather than as a pool timeout.
    let started = std::time::Instant::now();
    let err = Store::connect("postgres://dexlab:hunter2@127.0.0.1:1/dexlab")
        .await
        .unwrap_err();
    let printed = everything_printed(&err);
    assert!(
        matches!(
            err,
            StoreError::Connect {
                backend: "postgres",
                ..
            }
        ),
        "{printed}"
    );
    assert!(
        printed.contains("postgres://dexlab:***@127.0.0.1:1/dexlab"),
        "{printed}"
    );
    assert!(printed.to_lowercase().contains("refused"), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert!(
        started.elapsed().as_secs() < 10,
        "took {:?}",
        started.elapsed()
    );

    // A real server, a database that does not exist, a password in the URL.
    postgres_admin().await?.close().await?;
    let admin = postgres_admin_url();
    let missing = with_database(&admin, "dexlab_store_no_such_database");
    let missing = if missing.contains(":hunter2@") || !missing.contains("postgres@") {
        missing
    } else {
        missing.replacen("postgres@", "postgres:hunter2@", 1)
    };
    let err = Store::connect(&missing).await.unwrap_err();
    let printed = everything_printed(&err);
    assert!(matches!(err, StoreError::Connect { .. }), "{printed}");
    assert!(
        printed.contains("dexlab_store_no_such_database"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"), "{printed}");
    Ok(())
}

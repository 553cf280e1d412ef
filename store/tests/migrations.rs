//! Connecting again (migrations already applied) is a no-op that keeps the data.

use sqlx::Connection;

use dexlab_store::Store;

use crate::support::{TestDb, experiment};

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let id = db.store.create_experiment(&experiment("kept", 1)).await?;

    for _ in 0..2 {
        let again = Store::connect(&db.url).await?;
        assert_eq!(again.backend(), db.store.backend());
        let found = again.find_experiment("kept").await?.expect("still there");
        assert_eq!(found.id, id);
        assert_eq!(
            applied_migrations(&db.url).await?,
            migration_files(again.backend())
        );
        again.close().await;
    }
    // The first handle still works alongside.
    assert_eq!(db.store.list_experiments().await?.len(), 1);
    Ok(())
}

/// Rows in sqlx's bookkeeping table: each migration applied once, however often we connect.
async fn applied_migrations(url: &str) -> anyhow::Result<usize> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await?;
    conn.close().await?;
    Ok(usize::try_from(n)?)
}

fn migration_files(backend: &str) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    std::fs::read_dir(dir)
        .expect("migrations dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "sql"))
        })
        .count()
}

on_both_backends!(scenario);

/// Processes opening a new SQLite file at the same moment (an `evolve` and a dashboard, say) each
/// run the migrations: none may fail, and each migration is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_connects_at_once_on_sqlite() -> anyhow::Result<()> {
    // The race is rare (it failed once in a cold CI run of 5 rounds): more rounds, more chances.
    for _ in 0..20 {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite:{}", dir.path().join("fresh.sqlite").display());
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Store::connect(&url).await })
            })
            .collect();
        for task in tasks {
            task.await??.close().await;
        }
        assert_eq!(applied_migrations(&url).await?, migration_files("sqlite"));
    }
    Ok(())
}

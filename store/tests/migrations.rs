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

/// A store made before names were unique may hold several experiments of one name: the migration
/// that makes names unique keeps the newest under its name and renames the older ones
/// `NAME#ID`, so nothing is lost and every name still finds one experiment.
async fn duplicate_names_of_an_older_store(url: String) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let backend = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    // The schema as it was: only the first two migrations.
    let old = tempfile::tempdir()?;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    for f in ["0001_experiments.sql", "0002_models.sql"] {
        std::fs::copy(dir.join(f), old.path().join(f))?;
    }
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    sqlx::migrate::Migrator::new(old.path())
        .await?
        .run(&pool)
        .await?;
    let mut ids = Vec::new();
    for (name, created_at) in [
        ("sweep", 100_i64),
        ("sweep", 300),
        ("sweep", 200),
        ("alone", 1),
    ] {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO experiments (name, strategy, dataset, dataset_hash, config, seed, created_at)
             VALUES ($1, 's', 'd', 'h', '{}', '1', $2) RETURNING id",
        )
        .bind(name)
        .bind(created_at)
        .fetch_one(&pool)
        .await?;
        ids.push(id);
    }
    pool.close().await;

    let store = Store::connect(&url).await?;
    let mut names: Vec<(i64, String)> = store
        .list_experiments()
        .await?
        .into_iter()
        .map(|e| (e.id, e.name))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            (ids[0], format!("sweep#{}", ids[0])),
            (ids[1], "sweep".to_owned()),
            (ids[2], format!("sweep#{}", ids[2])),
            (ids[3], "alone".to_owned()),
        ]
    );
    assert_eq!(
        store.find_experiment("sweep").await?.map(|e| e.id),
        Some(ids[1])
    );
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn duplicate_names_of_an_older_sqlite_store_are_renamed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("old.sqlite");
    std::fs::File::create(&path)?;
    duplicate_names_of_an_older_store(format!("sqlite:{}", path.display())).await
}

#[tokio::test]
async fn duplicate_names_of_an_older_postgres_store_are_renamed() -> anyhow::Result<()> {
    let name = format!("dexlab_store_test_dup_{}", std::process::id());
    let mut admin = crate::support::postgres_admin().await?;
    let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop.clone()))
        .execute(&mut admin)
        .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let url = crate::support::with_database(&crate::support::postgres_admin_url(), &name);
    let outcome = tokio::spawn(duplicate_names_of_an_older_store(url)).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(drop))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    match outcome {
        Ok(r) => r,
        Err(join) => std::panic::resume_unwind(join.into_panic()),
    }
}

//! The session registry: a row comes back as started and as updated, starting a session in a
//! registered folder resumes its row (and is refused, naming the differences, when the row records
//! another session), a session ends stopped or failed with its reason, and the list is newest
//! first.

use dexlab_store::{
    NewSessionRow, SessionMode, SessionProgress, SessionRow, SessionStatus, StoreError,
};
use serde_json::json;
use sqlx::Connection;

use crate::support::{TestDb, everything_printed};

fn session(dir: &str, started_at: i64) -> NewSessionRow {
    NewSessionRow {
        dir: dir.to_owned(),
        mode: SessionMode::Paper,
        // Past i64: stored as decimal text.
        chain_id: u64::MAX,
        strategy: "mean_reversion".to_owned(),
        params: json!({"window": 20, "z": 0.1 + 0.2, "flat": -0.0, "pools": ["a", "b"]}),
        model_hash: Some("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into()),
        // Past i32: a 32-bit column would not hold it.
        bootstrap_block: 5_000_000_123,
        pid: 4242,
        host: "lab-1".to_owned(),
        started_at,
    }
}

/// The row a session is right after it was first started.
fn fresh(id: i64, s: &NewSessionRow) -> SessionRow {
    SessionRow {
        id,
        dir: s.dir.clone(),
        mode: s.mode,
        chain_id: s.chain_id,
        strategy: s.strategy.clone(),
        params: s.params.clone(),
        model_hash: s.model_hash.clone(),
        bootstrap_block: s.bootstrap_block,
        status: SessionStatus::Running,
        progress: SessionProgress {
            blocks: 0,
            last_block: None,
            bundles: 0,
            fills: 0,
            node_mismatches: 0,
            updated_at: s.started_at,
        },
        error: None,
        pid: s.pid,
        host: s.host.clone(),
        created_at: s.started_at,
    }
}

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
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    assert!(store.list_sessions().await?.is_empty());
    assert_eq!(store.find_session("1").await?, None);
    assert_eq!(store.session_by_dir("/sessions/a").await?, None);

    // A new session: every field comes back as started, NULLs included.
    let a = session("/sessions/a", 1_000);
    let a_id = store.start_session(&a).await?;
    let got = store.session_by_dir("/sessions/a").await?.expect("stored");
    assert_eq!(got, fresh(a_id, &a));
    let z = got.params["z"].as_f64().unwrap();
    assert_eq!(z.to_bits(), (0.1f64 + 0.2).to_bits());
    let flat = got.params["flat"].as_f64().unwrap();
    assert!(
        flat == 0.0 && flat.is_sign_negative(),
        "-0.0 survives: {flat}"
    );
    assert_eq!(
        text_of(&db.url, "SELECT chain_id FROM sessions").await?,
        u64::MAX.to_string()
    );
    assert_eq!(
        text_of(&db.url, "SELECT status FROM sessions").await?,
        "running"
    );
    assert_eq!(
        text_of(&db.url, "SELECT mode FROM sessions").await?,
        "paper"
    );

    // Progress, before the first block and after; the statement is the same for both (on
    // PostgreSQL a cached statement keeps the parameter types of its first call).
    let before = SessionProgress {
        blocks: 0,
        last_block: None,
        bundles: 0,
        fills: 0,
        node_mismatches: 0,
        updated_at: 1_001,
    };
    store.update_session(a_id, &before).await?;
    let progress = SessionProgress {
        blocks: 3_000_000_001,
        last_block: Some(5_003_000_123),
        bundles: 4_000_000_002,
        fills: 4_000_000_001,
        node_mismatches: 7,
        updated_at: 1_060,
    };
    store.update_session(a_id, &progress).await?;
    let got = store.find_session(&a_id.to_string()).await?.expect("by id");
    assert_eq!(
        got,
        SessionRow {
            progress,
            ..fresh(a_id, &a)
        },
        "progress written, status and the rest untouched"
    );

    // Two starts of one new session at once: both get one row.
    let b = NewSessionRow {
        mode: SessionMode::Live,
        chain_id: 1,
        strategy: "momentum".into(),
        params: json!({}),
        model_hash: None,
        bootstrap_block: 0,
        pid: 7,
        host: "lab-2".into(),
        ..session("/sessions/b", 2_000)
    };
    let (x, y) = tokio::join!(store.start_session(&b), store.start_session(&b));
    let b_id = x?;
    assert_eq!(y?, b_id);
    assert_ne!(b_id, a_id);
    assert_eq!(
        store.find_session(&format!(" {b_id} ")).await?,
        Some(fresh(b_id, &b))
    );

    // A failure is stored with its reason and last progress.
    let last = SessionProgress {
        blocks: 3_000_000_002,
        last_block: Some(5_003_000_124),
        node_mismatches: 8,
        updated_at: 1_100,
        ..progress
    };
    store
        .finish_session(
            a_id,
            SessionStatus::Failed,
            Some("node ws://n:8546: connection reset"),
            &last,
        )
        .await?;
    let failed = store.find_session("/sessions/a").await?.expect("by dir");
    assert_eq!(
        failed,
        SessionRow {
            status: SessionStatus::Failed,
            error: Some("node ws://n:8546: connection reset".into()),
            progress: last,
            ..fresh(a_id, &a)
        }
    );
    assert_eq!(
        text_of(
            &db.url,
            &format!("SELECT status FROM sessions WHERE id = {a_id}")
        )
        .await?,
        "failed"
    );

    // Started again in the same folder by another process: the same row, running again under
    // it, the old reason cleared, its progress and creation time kept.
    let resumed = NewSessionRow {
        pid: 5151,
        host: "lab-3".into(),
        started_at: 1_500,
        ..a.clone()
    };
    assert_eq!(store.start_session(&resumed).await?, a_id);
    let running = store.session_by_dir("/sessions/a").await?.expect("stored");
    assert_eq!(
        running,
        SessionRow {
            progress: SessionProgress {
                updated_at: 1_500,
                ..last
            },
            pid: 5151,
            host: "lab-3".into(),
            ..fresh(a_id, &a)
        }
    );

    // Another strategy in that folder: refused, naming the session, the folder and both
    // strategies, and the row is untouched.
    let other = NewSessionRow {
        strategy: "momentum".into(),
        pid: 6,
        started_at: 1_600,
        ..a.clone()
    };
    let err = store.start_session(&other).await.unwrap_err();
    let printed = everything_printed(&err);
    assert!(
        matches!(&err, StoreError::SessionMismatch { id, differences, .. }
            if *id == a_id && differences == "strategy `mean_reversion` (not `momentum`)"),
        "{printed}"
    );
    assert!(
        printed.contains("/sessions/a")
            && printed.contains(&format!("session {a_id}"))
            && printed.contains("another session folder"),
        "{printed}"
    );
    // Every other difference is named too, each one alone.
    let changes: [(NewSessionRow, &str); 5] = [
        (
            NewSessionRow {
                mode: SessionMode::Live,
                ..a.clone()
            },
            "mode paper (not live)",
        ),
        (
            NewSessionRow {
                chain_id: u64::MAX - 1,
                ..a.clone()
            },
            "chain id 18446744073709551615 (not 18446744073709551614)",
        ),
        (
            NewSessionRow {
                params: json!({"window": 21, "z": 0.1 + 0.2, "flat": -0.0, "pools": ["a", "b"]}),
                ..a.clone()
            },
            "params",
        ),
        (
            NewSessionRow {
                model_hash: None,
                ..a.clone()
            },
            "(not no model)",
        ),
        (
            NewSessionRow {
                bootstrap_block: 5_000_000_124,
                ..a.clone()
            },
            "bootstrap block 5000000123 (not 5000000124)",
        ),
    ];
    for (changed, named) in &changes {
        let err = store.start_session(changed).await.unwrap_err();
        let StoreError::SessionMismatch { differences, .. } = &err else {
            panic!("{named}: {err}");
        };
        assert!(differences.contains(named), "{named}: {differences}");
        assert!(!differences.contains(", "), "one difference: {differences}");
    }
    assert_eq!(
        store.session_by_dir("/sessions/a").await?,
        Some(running.clone()),
        "refused starts change nothing"
    );

    // A relative folder is refused before anything is written.
    let err = store
        .start_session(&session("sessions/rel", 1))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::SessionDirNotAbsolute { .. }),
        "{err}"
    );
    // So is a count past BIGINT, and nothing changes.
    let huge = SessionProgress {
        fills: u64::MAX,
        ..last
    };
    let err = store.update_session(a_id, &huge).await.unwrap_err();
    assert!(matches!(err, StoreError::OutOfRange { .. }), "{err}");
    assert_eq!(
        store.session_by_dir("/sessions/a").await?,
        Some(running.clone())
    );

    // Stopped without a reason clears the old one.
    store
        .finish_session(a_id, SessionStatus::Failed, Some("x"), &last)
        .await?;
    store
        .finish_session(a_id, SessionStatus::Stopped, None, &last)
        .await?;
    let stopped = store
        .find_session(&a_id.to_string())
        .await?
        .expect("stored");
    assert_eq!(
        (stopped.status, stopped.error.as_deref()),
        (SessionStatus::Stopped, None)
    );

    // Unknown sessions are reported, not ignored.
    assert!(matches!(
        store.update_session(999_999, &last).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .finish_session(999_999, SessionStatus::Failed, None, &last)
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.find_session("999999").await?, None);
    assert_eq!(store.find_session("99999999999999999999999").await?, None);
    assert_eq!(store.find_session("/sessions/none").await?, None);

    // Newest first: by creation time (not by last update), then by id.
    let old_id = store.start_session(&session("/sessions/old", 500)).await?;
    let tie_id = store
        .start_session(&session("/sessions/tie", 2_000))
        .await?;
    store
        .update_session(
            old_id,
            &SessionProgress {
                updated_at: 9_999,
                ..before
            },
        )
        .await?;
    let listed: Vec<(i64, String)> = store
        .list_sessions()
        .await?
        .into_iter()
        .map(|s| (s.id, s.dir))
        .collect();
    assert_eq!(
        listed,
        vec![
            (tie_id, "/sessions/tie".to_owned()),
            (b_id, "/sessions/b".to_owned()),
            (a_id, "/sessions/a".to_owned()),
            (old_id, "/sessions/old".to_owned()),
        ]
    );
    assert_eq!(store.list_sessions().await?[2], stopped);

    // A word this dexlab does not know is a corrupt row, named, not another mode.
    execute(
        &db.url,
        &format!("UPDATE sessions SET mode = 'replay' WHERE id = {old_id}"),
    )
    .await?;
    let err = store.find_session(&old_id.to_string()).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("replay"), "{err}");
    assert!(store.list_sessions().await.is_err());
    Ok(())
}

on_both_backends!(scenario);

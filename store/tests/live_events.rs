//! Live events: tailed by id, per session newest last, pruned to the newest rows, too large a
//! block refused; on PostgreSQL a listener on another connection is woken by each insert.

use std::time::Duration;

use dexlab_store::{NewSessionRow, SessionMode, Store, StoreError};
use serde_json::json;

use crate::support::TestDb;

async fn session(store: &Store, dir: &str) -> anyhow::Result<i64> {
    Ok(store
        .start_session(&NewSessionRow {
            dir: dir.into(),
            mode: SessionMode::Paper,
            chain_id: 8453,
            strategy: "cross-venue-arb".into(),
            params: json!({}),
            model_hash: None,
            bootstrap_block: 100,
            pid: 1,
            host: "lab".into(),
            started_at: 10,
        })
        .await?)
}

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let (a, b) = (session(store, "/s/a").await?, session(store, "/s/b").await?);
    assert_eq!(store.last_live_event_id().await?, 0);
    let mut listener = store.listen_live().await?;
    assert_eq!(listener.is_some(), store.backend() == "postgres");

    let mut ids = Vec::new();
    for block in 101..=110u64 {
        let session = if block % 2 == 0 { a } else { b };
        let payload = json!({ "block": block, "pnl_quote": block as f64 / 4.0, "halted": [] });
        ids.push(
            store
                .add_live_event(session, block, 1_000 * block as i64, &payload)
                .await?,
        );
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(store.last_live_event_id().await?, *ids.last().unwrap());
    if let Some(l) = listener.as_mut() {
        // Notifications of committed inserts are waiting.
        tokio::time::timeout(Duration::from_secs(5), l.wait()).await??;
    }

    let tail = store.live_events_after(ids[6], 100).await?;
    assert_eq!(
        tail.iter().map(|e| e.block).collect::<Vec<_>>(),
        [108, 109, 110]
    );
    assert_eq!(tail[0].payload["pnl_quote"], 27.0);
    assert_eq!(tail[0].at_ms, 108_000);
    let page = store.live_events_after(0, 2).await?;
    assert_eq!(page.len(), 2);
    let recent = store.recent_live_events(a, 3).await?;
    assert_eq!(
        recent.iter().map(|e| e.block).collect::<Vec<_>>(),
        [106, 108, 110]
    );

    assert_eq!(store.prune_live_events(a, 2).await?, 3);
    assert_eq!(store.prune_live_events(a, 2).await?, 0);
    let left = store.recent_live_events(a, 100).await?;
    assert_eq!(left.iter().map(|e| e.block).collect::<Vec<_>>(), [108, 110]);
    assert_eq!(
        store.recent_live_events(b, 100).await?.len(),
        5,
        "b untouched"
    );

    let e = store
        .add_live_event(a, u64::MAX, 0, &json!({}))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::OutOfRange { .. }), "{e}");

    // Another process's insert wakes the listener (PostgreSQL).
    if let Some(mut l) = listener {
        let other = Store::connect(&db.url).await?;
        let waiter = tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), async {
                loop {
                    l.wait().await?;
                    // Earlier notifications may still be queued; the new row is what counts.
                    if let Some(last) = other_last(&other).await?
                        && last.block == 999
                    {
                        return anyhow::Ok(());
                    }
                }
            })
            .await?
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        store.add_live_event(b, 999, 0, &json!({})).await?;
        waiter.await??;
    }
    Ok(())
}

async fn other_last(store: &Store) -> anyhow::Result<Option<dexlab_store::LiveEventRow>> {
    let id = store.last_live_event_id().await?;
    Ok(store.live_events_after(id - 1, 1).await?.pop())
}

on_both_backends!(scenario);

//! Operators' risk commands: a kill and a clear come back pending in order, each is marked
//! applied once (a second mark is refused), applied ones leave the pending list but stay in the
//! history, a clear must name a known halt, and a command needs an existing session.

use dexlab_store::{NewSessionRow, RiskCommand, SessionMode, StoreError};
use serde_json::json;

use crate::support::TestDb;

async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let store = &db.store;
    let id = store
        .start_session(&NewSessionRow {
            dir: "/sessions/risk".into(),
            mode: SessionMode::Paper,
            chain_id: 8453,
            strategy: "cross-venue-arb".into(),
            params: json!({}),
            model_hash: None,
            bootstrap_block: 5_000_000_000,
            pid: 1,
            host: "lab".into(),
            started_at: 10,
        })
        .await?;
    assert!(store.pending_risk_commands(id).await?.is_empty());

    let kill = store
        .add_risk_command(
            id,
            &RiskCommand::Kill,
            "spreads look wrong",
            "alice@lab",
            20,
        )
        .await?;
    let clear = RiskCommand::Clear {
        trip: "kill_switch".into(),
    };
    let cleared = store
        .add_risk_command(id, &clear, "checked", "bob@lab", 30)
        .await?;
    let pending = store.pending_risk_commands(id).await?;
    assert_eq!(
        pending.iter().map(|c| c.id).collect::<Vec<_>>(),
        vec![kill, cleared]
    );
    assert_eq!(pending[0].command, RiskCommand::Kill);
    assert_eq!(
        (
            pending[0].reason.as_str(),
            pending[0].issued_by.as_str(),
            pending[0].issued_at
        ),
        ("spreads look wrong", "alice@lab", 20)
    );
    assert_eq!(pending[1].command, clear);
    assert_eq!(pending[1].applied_block, None);

    // Past i32: block numbers are BIGINT.
    store
        .mark_risk_command_applied(kill, 5_000_000_123, 21)
        .await?;
    let again = store
        .mark_risk_command_applied(kill, 5_000_000_124, 22)
        .await;
    assert!(
        matches!(again, Err(StoreError::NotFound { .. })),
        "{again:?}"
    );
    let pending = store.pending_risk_commands(id).await?;
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, cleared);
    let all = store.risk_commands(id).await?;
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].applied_block, all[0].applied_at),
        (Some(5_000_000_123), Some(21))
    );

    // A clear of an unknown halt, and a command to no session, are refused.
    let bad = store
        .add_risk_command(
            id,
            &RiskCommand::Clear {
                trip: "everything".into(),
            },
            "",
            "eve",
            40,
        )
        .await;
    assert!(
        matches!(&bad, Err(StoreError::InvalidName { name, .. }) if name == "everything"),
        "{bad:?}"
    );
    let none = store
        .add_risk_command(id + 1000, &RiskCommand::Kill, "", "eve", 40)
        .await;
    assert!(matches!(none, Err(StoreError::NotFound { .. })), "{none:?}");
    assert_eq!(store.risk_commands(id).await?.len(), 2);
    Ok(())
}

on_both_backends!(scenario);

//! Accounts, refresh-token families and the audit log.

use dexlab_store::{
    NewAudit, NewRefreshToken, NewUser, RefreshUse, Role, Store, StoreError, UserRow,
};
use serde_json::json;

use crate::support::TestDb;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$secretsecretsecret";

fn user(username: &str, role: Role, email: Option<&str>) -> NewUser {
    NewUser {
        username: username.to_owned(),
        password_hash: Some(HASH.to_owned()),
        role,
        email: email.map(str::to_owned),
        created_at: 100,
    }
}

fn token(user_id: i64, family: &str, hash: &str, issued_at: i64) -> NewRefreshToken {
    NewRefreshToken {
        user_id,
        family: family.to_owned(),
        token_hash: hash.to_owned(),
        issued_at,
        expires_at: issued_at + 1000,
    }
}

/// Add, read back by name, id and e-mail, list; duplicates and bad names refused; role,
/// disabled flag and password hash changed; the hash never printed nor serialised.
mod users {
    use super::*;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let store = &db.store;
        let alice = store
            .add_user(&user("alice", Role::Admin, Some("alice@lab.example")))
            .await?;
        assert_eq!(
            (
                alice.username.as_str(),
                alice.password_hash.as_deref(),
                alice.role,
                alice.email.as_deref(),
                alice.disabled,
                alice.created_at,
                alice.updated_at
            ),
            (
                "alice",
                Some(HASH),
                Role::Admin,
                Some("alice@lab.example"),
                false,
                100,
                100
            )
        );
        let bob = store
            .add_user(&NewUser {
                password_hash: None,
                ..user("bob", Role::Viewer, None)
            })
            .await?;
        assert_eq!(bob.password_hash, None);
        assert!(bob.id > alice.id);

        assert_eq!(store.user_by_name("alice").await?, Some(alice.clone()));
        assert_eq!(store.user_by_name("Alice").await?, None);
        assert_eq!(store.user_by_id(bob.id).await?, Some(bob.clone()));
        assert_eq!(store.user_by_id(bob.id + 100).await?, None);
        assert_eq!(
            store.user_by_email("alice@lab.example").await?,
            Some(alice.clone())
        );
        assert_eq!(store.user_by_email("bob@lab.example").await?, None);
        // Addresses are compared trimmed and lower-cased (as an OIDC provider may write them).
        assert_eq!(
            store.user_by_email(" Alice@Lab.Example ").await?,
            Some(alice.clone())
        );
        let taken = store
            .add_user(&user("alicia", Role::Viewer, Some("ALICE@lab.example")))
            .await;
        assert!(
            matches!(&taken, Err(StoreError::AccountTaken { id, .. }) if *id == alice.id),
            "{taken:?}"
        );
        assert_eq!(store.list_users().await?, vec![alice.clone(), bob.clone()]);

        // Duplicates: named, never raw SQL.
        let again = store
            .add_user(&user("alice", Role::Viewer, Some("other@lab.example")))
            .await;
        match &again {
            Err(
                e @ StoreError::AccountTaken {
                    what, value, id, ..
                },
            ) => {
                assert_eq!(
                    (*what, value.as_str(), *id),
                    ("username", "alice", alice.id)
                );
                let text = e.to_string();
                assert!(text.contains("username \"alice\""), "{text}");
                assert!(!text.contains("database"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let same_mail = store
            .add_user(&user("carol", Role::Viewer, Some("alice@lab.example")))
            .await;
        match &same_mail {
            Err(StoreError::AccountTaken {
                what, value, id, ..
            }) => assert_eq!(
                (*what, value.as_str(), *id),
                ("e-mail address", "alice@lab.example", alice.id)
            ),
            other => panic!("{other:?}"),
        }
        // Several accounts without e-mail are fine.
        store.add_user(&user("dave", Role::Viewer, None)).await?;

        let long = "x".repeat(65);
        for bad in ["", " eve", "eve ", "1234", long.as_str()] {
            let refused = store.add_user(&user(bad, Role::Viewer, None)).await;
            assert!(
                matches!(&refused, Err(StoreError::InvalidName { name, what: "user", .. }) if name == bad),
                "{bad:?}: {refused:?}"
            );
        }
        store
            .add_user(&user(&"x".repeat(64), Role::Viewer, None))
            .await?;
        for bad in ["", "no-at-sign", " eve@lab"] {
            let refused = store.add_user(&user("eve", Role::Viewer, Some(bad))).await;
            assert!(
                matches!(&refused, Err(StoreError::InvalidEmail { email, .. }) if email == bad),
                "{bad:?}: {refused:?}"
            );
        }
        assert_eq!(store.list_users().await?.len(), 4);

        // Changes bump updated_at and come back.
        let changed = store.set_role(bob.id, Role::Operator, 200).await?;
        assert_eq!((changed.role, changed.updated_at), (Role::Operator, 200));
        assert!(changed.role >= Role::Operator);
        let changed = store.set_disabled(bob.id, true, 300).await?;
        assert_eq!((changed.disabled, changed.updated_at), (true, 300));
        let changed = store.set_password_hash(bob.id, Some(HASH), 400).await?;
        assert_eq!(changed.password_hash.as_deref(), Some(HASH));
        assert_eq!(
            (
                changed.role,
                changed.disabled,
                changed.updated_at,
                changed.created_at
            ),
            (Role::Operator, true, 400, 100)
        );
        assert_eq!(store.user_by_id(bob.id).await?, Some(changed));
        let changed = store.set_disabled(bob.id, false, 500).await?;
        assert!(!changed.disabled);
        let changed = store.set_password_hash(alice.id, None, 600).await?;
        assert_eq!(changed.password_hash, None);
        assert_eq!(
            store.user_by_name("alice").await?.unwrap().password_hash,
            None
        );
        let missing = store.set_role(bob.id + 100, Role::Admin, 1).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound { .. })),
            "{missing:?}"
        );
        Ok(())
    }

    on_both_backends!(scenario);
}

#[test]
fn the_password_hash_is_never_printed_nor_serialised() {
    let row = UserRow {
        id: 1,
        username: "alice".into(),
        password_hash: Some(HASH.into()),
        role: Role::Admin,
        email: Some("alice@lab.example".into()),
        disabled: false,
        created_at: 1,
        updated_at: 2,
    };
    for shown in [
        format!("{row:?}"),
        format!("{row:#?}"),
        format!("{:?}", user("alice", Role::Admin, None)),
        serde_json::to_string(&row).unwrap(),
    ] {
        assert!(!shown.contains("argon2"), "{shown}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("alice"), "{shown}");
    }
    assert!(format!("{row:?}").contains("password_hash: Some(\"<redacted>\")"));
    let json = serde_json::to_value(&row).unwrap();
    assert!(json.get("password_hash").is_none(), "{json}");
    assert_eq!(json["role"], "admin");
    assert_eq!(json["disabled"], false);
}

/// A token is valid once; its second use revokes the whole family (a later, unused token
/// included) and the tokens of other families stay; expired and unknown tokens; revocation by
/// family and by account count what they revoke.
mod refresh_tokens {
    use super::*;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let store = &db.store;
        let alice = store.add_user(&user("alice", Role::Operator, None)).await?;
        let bob = store.add_user(&user("bob", Role::Viewer, None)).await?;

        let first = store
            .add_refresh_token(&token(alice.id, "fam-a", "h1", 1000))
            .await?;
        assert_eq!(
            (first.used_at, first.revoked_at, first.expires_at),
            (None, None, 2000)
        );
        let other_family = store
            .add_refresh_token(&token(alice.id, "fam-b", "h-other", 1000))
            .await?;
        let used = match store.use_refresh_token("h1", 1010).await? {
            RefreshUse::Valid(row) => row,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (used.id, used.used_at, used.revoked_at),
            (first.id, Some(1010), None)
        );
        // The rotation: the next token of the family, not used yet.
        let second = store
            .add_refresh_token(&token(alice.id, "fam-a", "h2", 1010))
            .await?;

        // The first token presented again: stolen. The whole family goes.
        match store.use_refresh_token("h1", 1020).await? {
            RefreshUse::Reused(row) => {
                assert_eq!(row.id, first.id);
                assert_eq!(row.used_at, Some(1010));
                assert_eq!(
                    (row.revoked_at, row.revoked_reason.as_deref()),
                    (Some(1020), Some("reuse"))
                );
            }
            other => panic!("{other:?}"),
        }
        match store.use_refresh_token("h2", 1030).await? {
            RefreshUse::Revoked(row) => {
                assert_eq!(row.id, second.id);
                assert_eq!(row.used_at, None);
                assert_eq!(
                    (row.revoked_at, row.revoked_reason.as_deref()),
                    (Some(1020), Some("reuse"))
                );
            }
            other => panic!("{other:?}"),
        }
        // And stays revoked (a revoked token is not "reused" again).
        assert!(matches!(
            store.use_refresh_token("h1", 1040).await?,
            RefreshUse::Revoked(_)
        ));
        // Another family of the same account is untouched.
        match store.use_refresh_token("h-other", 1050).await? {
            RefreshUse::Valid(row) => assert_eq!(row.id, other_family.id),
            other => panic!("{other:?}"),
        }

        // Unknown and expired (expires_at itself is past).
        assert_eq!(
            store.use_refresh_token("nope", 1000).await?,
            RefreshUse::Unknown
        );
        let old = store
            .add_refresh_token(&token(bob.id, "fam-c", "h-old", 1000))
            .await?;
        match store.use_refresh_token("h-old", 2000).await? {
            RefreshUse::Expired(row) => assert_eq!((row.id, row.used_at), (old.id, None)),
            other => panic!("{other:?}"),
        }
        match store.use_refresh_token("h-old", 1999).await? {
            RefreshUse::Valid(row) => assert_eq!(row.used_at, Some(1999)),
            other => panic!("{other:?}"),
        }

        // Revocation counts only the rows it revokes.
        for (i, hash) in ["h3", "h4", "h5"].into_iter().enumerate() {
            let family = if i < 2 { "fam-d" } else { "fam-e" };
            store
                .add_refresh_token(&token(bob.id, family, hash, 1100))
                .await?;
        }
        assert!(!store.token_family_revoked("fam-d").await?);
        assert_eq!(store.revoke_family("fam-d", "logout", 1200).await?, 2);
        assert!(store.token_family_revoked("fam-d").await?);
        assert!(!store.token_family_revoked("fam-e").await?);
        assert!(!store.token_family_revoked("no-such").await?);
        assert_eq!(store.revoke_family("fam-d", "logout", 1201).await?, 0);
        assert_eq!(store.revoke_family("no-such", "logout", 1201).await?, 0);
        match store.use_refresh_token("h3", 1300).await? {
            RefreshUse::Revoked(row) => assert_eq!(
                (row.revoked_at, row.revoked_reason.as_deref()),
                (Some(1200), Some("logout"))
            ),
            other => panic!("{other:?}"),
        }
        // Bob's unrevoked tokens: h-old (used, not revoked) and h5.
        assert_eq!(store.revoke_user_tokens(bob.id, "disabled", 1400).await?, 2);
        assert_eq!(store.revoke_user_tokens(bob.id, "disabled", 1401).await?, 0);
        assert!(matches!(
            store.use_refresh_token("h5", 1500).await?,
            RefreshUse::Revoked(_)
        ));
        // Alice's: only h-other is left unrevoked.
        assert_eq!(store.revoke_user_tokens(alice.id, "admin", 1600).await?, 1);

        // A token for no account, or with a hash already stored, is refused.
        let orphan = store
            .add_refresh_token(&token(bob.id + alice.id + 100, "fam-f", "h9", 1))
            .await;
        assert!(
            matches!(orphan, Err(StoreError::NotFound { .. })),
            "{orphan:?}"
        );
        let twice = store
            .add_refresh_token(&token(bob.id, "fam-f", "h5", 1))
            .await;
        assert!(twice.is_err(), "{twice:?}");
        Ok(())
    }

    on_both_backends!(scenario);
}

/// Eight uses of one token at once, from a multi-threaded runtime: exactly one is valid, the
/// others see a reuse or the family it revoked, and the family ends revoked.
mod concurrent_refresh {
    use super::*;

    const USERS: usize = 8;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let alice = db
            .store
            .add_user(&user("alice", Role::Viewer, None))
            .await?;
        for round in 0..5 {
            let family = format!("fam-{round}");
            let hash = format!("h-{round}");
            db.store
                .add_refresh_token(&token(alice.id, &family, &hash, 1000))
                .await?;
            let sibling = format!("h-{round}-sibling");
            db.store
                .add_refresh_token(&token(alice.id, &family, &sibling, 1000))
                .await?;
            let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(USERS));
            let tasks: Vec<_> = (0..USERS)
                .map(|i| {
                    let store: Store = db.store.clone();
                    let barrier = barrier.clone();
                    let hash = hash.clone();
                    tokio::spawn(async move {
                        barrier.wait().await;
                        store.use_refresh_token(&hash, 1100 + i as i64).await
                    })
                })
                .collect();
            let (mut valid, mut reused, mut revoked) = (0, 0, 0);
            for task in tasks {
                match task.await?? {
                    RefreshUse::Valid(_) => valid += 1,
                    RefreshUse::Reused(_) => reused += 1,
                    RefreshUse::Revoked(_) => revoked += 1,
                    other => panic!("{other:?}"),
                }
            }
            assert_eq!(valid, 1, "round {round}");
            assert_eq!(reused, 1, "round {round}");
            assert_eq!(valid + reused + revoked, USERS);
            assert!(matches!(
                db.store.use_refresh_token(&sibling, 1200).await?,
                RefreshUse::Revoked(_)
            ));
            assert_eq!(db.store.revoke_family(&family, "x", 1300).await?, 0);
        }
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite() -> anyhow::Result<()> {
        crate::support::on_sqlite(scenario).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn postgres() -> anyhow::Result<()> {
        crate::support::on_postgres(scenario).await
    }
}

/// Records come back newest first, a page at a time, with their JSON detail as written.
mod audit {
    use super::*;

    async fn scenario(db: TestDb) -> anyhow::Result<()> {
        let store = &db.store;
        assert!(store.audit_log(10, None).await?.is_empty());
        let mut written = Vec::new();
        for i in 0..7_i64 {
            let a = NewAudit {
                at: 1000 + i,
                actor_id: (i % 2 == 0).then_some(i),
                actor: if i % 2 == 0 {
                    format!("user{i}")
                } else {
                    "cli:root@host".to_owned()
                },
                action: ["login", "promote", "kill_switch"][i as usize % 3].to_owned(),
                target: (i > 2).then(|| format!("deployment arb v{i}")),
                detail: json!({"i": i, "z": 0.1 + 0.2, "nested": {"ok": true, "none": null}, "list": [1, "two"]}),
                ip: (i % 3 == 0).then(|| "203.0.113.7".to_owned()),
            };
            let id = store.add_audit(&a).await?;
            written.push((id, a));
        }
        let ids: Vec<i64> = written.iter().map(|(id, _)| *id).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

        let all = store.audit_log(100, None).await?;
        assert_eq!(all.len(), 7);
        for (row, (id, a)) in all.iter().zip(written.iter().rev()) {
            assert_eq!(row.id, *id);
            assert_eq!(
                (row.at, row.actor_id, &row.actor, &row.action),
                (a.at, a.actor_id, &a.actor, &a.action)
            );
            assert_eq!(
                (&row.target, &row.detail, &row.ip),
                (&a.target, &a.detail, &a.ip)
            );
        }

        // Pages of 3: 7 6 5 | 4 3 2 | 1.
        let mut pages = Vec::new();
        let mut before = None;
        loop {
            let page = store.audit_log(3, before).await?;
            if page.is_empty() {
                break;
            }
            before = page.last().map(|r| r.id);
            pages.push(page.iter().map(|r| r.id).collect::<Vec<_>>());
        }
        let newest_first: Vec<i64> = ids.iter().rev().copied().collect();
        assert_eq!(
            pages,
            newest_first
                .chunks(3)
                .map(<[i64]>::to_vec)
                .collect::<Vec<_>>()
        );
        assert!(store.audit_log(0, None).await?.is_empty());
        assert_eq!(
            store.audit_log(10, Some(ids[0])).await?,
            Vec::new(),
            "nothing before the first"
        );
        Ok(())
    }

    on_both_backends!(scenario);
}

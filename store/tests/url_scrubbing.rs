//! Passwords never reach printed URLs, errors or `Debug`.

use dexlab_store::{Store, scrub_url};

use crate::support::{TestDb, everything_printed};

#[test]
fn scrub_url_hides_the_password() {
    let url = "postgres://dexlab:hunter2@db.internal:5432/research";
    let shown = scrub_url(url);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(shown, "postgres://dexlab:***@db.internal:5432/research");
    let shown = scrub_url("postgresql://u:hunter2@h/db?sslmode=require&password=hunter2");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(
        scrub_url("postgres://postgres@127.0.0.1:5432/postgres"),
        "postgres://postgres@127.0.0.1:5432/postgres"
    );
}

/// The store's `Debug` shows where it is connected, never the password.
async fn scenario(db: TestDb) -> anyhow::Result<()> {
    let shown = format!("{:?}", db.store);
    assert!(shown.contains(db.store.backend()), "{shown}");
    assert!(shown.contains(&scrub_url(&db.url)), "{shown}");
    if db.store.backend() == "postgres" && !db.url.contains(":hunter2@") {
        // Give the same database a password in the URL: trust authentication ignores it.
        let with_password = db.url.replacen("postgres@", "postgres:hunter2@", 1);
        if with_password != db.url {
            let store = Store::connect(&with_password).await?;
            let shown = format!("{store:?} {}", store.url());
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("postgres:***@"), "{shown}");
            store.close().await;
        }
    }
    // And errors from a working store carry no URL at all beyond the scrubbed one.
    let err = db.store.experiment_detail(-1).await.unwrap_err();
    assert!(!everything_printed(&err).contains("hunter2"));
    Ok(())
}

on_both_backends!(scenario);

//! `dexlab users`: no default account; `add` stores only an argon2id hash and prints a one-time
//! password once (or takes one on standard input), records the addition in the audit log, and
//! refuses a taken name, an unknown role and a short password, without echoing a password.

use std::io::Write;
use std::process::Stdio;

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn users_add_stores_a_hash_and_prints_a_one_time_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.sqlite").display());
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut c = dexlab();
        c.args(args)
            .env("DATABASE_URL", &db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        drop(child.stdin.take());
        let o = child.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };

    let (ok, out, err) = run(&["users", "add", "alice", "--role", "admin"], None);
    assert!(ok, "{err}");
    let pw = out
        .lines()
        .find_map(|l| l.strip_prefix("one-time password: "))
        .expect("a one-time password")
        .to_owned();
    assert_eq!(pw.len(), dexlab_lab::accounts::ONE_TIME_LEN);
    let chosen = "correct horse battery staple";
    let (ok, out, err) = run(
        &[
            "users",
            "add",
            "bob",
            "--role",
            "operator",
            "--password-stdin",
        ],
        Some(&format!("{chosen}\n")),
    );
    assert!(ok, "{err}");
    assert!(!out.contains("one-time password") && !out.contains(chosen));

    let store = dexlab_store::Store::connect(&db).await.unwrap();
    let alice = store.user_by_name("alice").await.unwrap().unwrap();
    let bob = store.user_by_name("bob").await.unwrap().unwrap();
    assert_eq!(alice.role, dexlab_store::Role::Admin);
    assert_eq!(bob.role, dexlab_store::Role::Operator);
    let (ha, hb) = (
        alice.password_hash.clone().unwrap(),
        bob.password_hash.clone().unwrap(),
    );
    assert!(ha.starts_with("$argon2id$") && !ha.contains(&pw));
    assert!(dexlab_lab::accounts::verify_password(&ha, &pw));
    assert!(dexlab_lab::accounts::verify_password(&hb, chosen));
    assert!(!dexlab_lab::accounts::verify_password(&hb, &pw));
    let audit = store.audit_log(10, None).await.unwrap();
    assert_eq!(audit.len(), 2);
    assert!(audit.iter().all(|a| a.action == "user_added"));
    assert!(!audit.iter().any(|a| a.detail.to_string().contains(&pw)));

    // The two added and no other (no default account); no hash shown.
    let (ok, out, _) = run(&["users", "list", "--json"], None);
    assert!(ok, "{out}");
    let names: Vec<String> = serde_json::from_str::<Vec<serde_json::Value>>(&out)
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert!(!out.contains("argon2"), "{out}");

    // Refusals, with no password echoed.
    let (ok, _, err) = run(&["users", "add", "alice", "--role", "viewer"], None);
    assert!(!ok && err.contains("alice"), "{err}");
    let (ok, _, err) = run(&["users", "add", "carol", "--role", "root"], None);
    assert!(!ok && err.contains("viewer"), "{err}");
    let (ok, _, err) = run(
        &[
            "users",
            "add",
            "dave",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        Some("short1\n"),
    );
    assert!(
        !ok && err.contains("12 characters") && !err.contains("short1"),
        "{err}"
    );
    assert!(store.user_by_name("dave").await.unwrap().is_none());
}

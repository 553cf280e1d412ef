//! Logins, refresh rotation and reuse, logout, account changes taking effect at once, login
//! back-off and API rate limits, and the audit log: on SQLite and PostgreSQL.

use axum::http::{Method, StatusCode};
use dexlab_server::ServerConfig;
use dexlab_server::limits::LimitConfig;
use dexlab_store::{Role, Store};
use serde_json::json;

use crate::support::*;

async fn flows(store: Store) -> anyhow::Result<()> {
    let s = Server::new(
        store,
        ServerConfig {
            limits: roomy(),
            ..ServerConfig::default()
        },
    )
    .await?;

    // A login answers both tokens and the account, never its hash.
    let a = s.login("operator", PASSWORD).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["token_type"], "Bearer");
    assert_eq!(a.body["expires_in"], 900);
    assert_eq!(a.body["user"]["role"], "operator");
    assert!(!a.text.contains("argon2"), "{}", a.text);
    let access = a.body["access_token"].as_str().unwrap().to_owned();
    let refresh = a.body["refresh_token"].as_str().unwrap().to_owned();
    let me = s
        .call(Method::GET, "/api/v1/auth/me", Some(&access), None)
        .await;
    assert_eq!(me.body["username"], "operator", "{}", me.text);

    // Wrong password, unknown user, disabled account: one answer.
    for (user, pw) in [("operator", "wrong password!"), ("nobody", PASSWORD)] {
        let a = s.login(user, pw).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::UNAUTHORIZED, "invalid_credentials"),
            "{}",
            a.text
        );
    }
    // Malformed logins are 4xx in the one error shape.
    for body in [
        json!({}),
        json!({"username": "a"}),
        json!({"username": "a", "password": "b", "x": 1}),
    ] {
        let a = s
            .call(Method::POST, "/api/v1/auth/login", None, Some(body.clone()))
            .await;
        assert!(a.status.is_client_error(), "{body}: {}", a.text);
        assert!(
            a.body["error"].is_string() && a.body["message"].is_string(),
            "{}",
            a.text
        );
    }

    // Refresh rotates: the new pair works, the old refresh token is spent.
    let r = s
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": refresh })),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let access2 = r.body["access_token"].as_str().unwrap().to_owned();
    let refresh2 = r.body["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh2, refresh);
    let me = s
        .call(Method::GET, "/api/v1/auth/me", Some(&access2), None)
        .await;
    assert_eq!(me.status, StatusCode::OK);

    // The spent token again: the family is revoked, the newest pair included.
    let again = s
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": refresh })),
        )
        .await;
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::UNAUTHORIZED, "token_reused")
    );
    for token in [&access, &access2] {
        let me = s
            .call(Method::GET, "/api/v1/auth/me", Some(token), None)
            .await;
        assert_eq!(me.code(), "token_revoked", "{}", me.text);
    }
    let r = s
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": refresh2 })),
        )
        .await;
    assert_eq!(r.code(), "token_revoked", "{}", r.text);

    // Logout ends only its own login.
    let one = s.login("viewer", PASSWORD).await;
    let two = s.login("viewer", PASSWORD).await;
    let t1 = one.body["access_token"].as_str().unwrap().to_owned();
    let t2 = two.body["access_token"].as_str().unwrap().to_owned();
    let out = s
        .call(Method::POST, "/api/v1/auth/logout", Some(&t1), None)
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    assert_eq!(
        s.call(Method::GET, "/api/v1/auth/me", Some(&t1), None)
            .await
            .code(),
        "token_revoked"
    );
    assert_eq!(
        s.call(Method::GET, "/api/v1/auth/me", Some(&t2), None)
            .await
            .status,
        StatusCode::OK
    );
    let r = s
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": one.body["refresh_token"] })),
        )
        .await;
    assert_eq!(r.code(), "token_revoked");

    // An admin's changes take effect on tokens already out.
    let (admin, _) = s.mint(Role::Admin).await?;
    let researcher = s.user(Role::Researcher).id;
    let rlogin = s.login("researcher", PASSWORD).await;
    let rt = rlogin.body["access_token"].as_str().unwrap().to_owned();
    let rrefresh = rlogin.body["refresh_token"].as_str().unwrap().to_owned();
    let users = s.call(Method::GET, "/api/v1/users", Some(&rt), None).await;
    assert_eq!(users.status, StatusCode::FORBIDDEN);
    let p = s
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{researcher}"),
            Some(&admin),
            Some(json!({ "role": "admin" })),
        )
        .await;
    assert_eq!(
        (p.status, &p.body["role"]),
        (StatusCode::OK, &json!("admin")),
        "{}",
        p.text
    );
    let users = s.call(Method::GET, "/api/v1/users", Some(&rt), None).await;
    assert_eq!(
        users.status,
        StatusCode::OK,
        "the promotion applies to the same token"
    );
    assert!(!users.text.contains("argon2") && !users.text.contains("password_hash"));
    let p = s
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{researcher}"),
            Some(&admin),
            Some(json!({ "disabled": true })),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(
        s.call(Method::GET, "/api/v1/auth/me", Some(&rt), None)
            .await
            .code(),
        "account_disabled"
    );
    let r = s
        .call(
            Method::POST,
            "/api/v1/auth/refresh",
            None,
            Some(json!({ "refresh_token": rrefresh })),
        )
        .await;
    assert_eq!(
        r.code(),
        "token_revoked",
        "disabling revoked the account's tokens"
    );
    assert_eq!(
        s.login("researcher", PASSWORD).await.code(),
        "invalid_credentials"
    );
    // An admin cannot lock itself out.
    let me = s.user(Role::Admin).id;
    let p = s
        .call(
            Method::PATCH,
            &format!("/api/v1/users/{me}"),
            Some(&admin),
            Some(json!({ "role": "viewer" })),
        )
        .await;
    assert_eq!(p.status, StatusCode::CONFLICT, "{}", p.text);

    // Users added through the API: a one-time password once, then a login with it.
    let add = s
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({ "username": "dora", "role": "viewer", "email": " Dora@Example.TEST " })),
        )
        .await;
    assert_eq!(add.status, StatusCode::CREATED, "{}", add.text);
    assert_eq!(add.body["user"]["email"], "dora@example.test");
    let otp = add.body["one_time_password"].as_str().unwrap().to_owned();
    assert_eq!(s.login("dora", &otp).await.status, StatusCode::OK);
    let dup = s
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({ "username": "dora", "role": "viewer" })),
        )
        .await;
    assert_eq!(
        (dup.status, dup.code()),
        (StatusCode::CONFLICT, "conflict"),
        "{}",
        dup.text
    );

    // The audit log, for admins: who, what, from where; no password, token or hash in it.
    let log = s
        .call(Method::GET, "/api/v1/audit?limit=500", Some(&admin), None)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.text);
    let actions: Vec<&str> = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for action in [
        "login",
        "login_failed",
        "refresh_reused",
        "logout",
        "role_changed",
        "user_disabled",
        "user_added",
        "user_added_api",
    ] {
        assert!(
            actions.contains(&action),
            "{action} missing from {actions:?}"
        );
    }
    let failed: Vec<_> = log
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "login_failed")
        .collect();
    assert!(failed.iter().all(|r| r["ip"] == "192.0.2.7"), "{failed:?}");
    // The unknown username is not recorded (it may be a password typed in the wrong field).
    assert!(!log.text.contains("nobody"), "{}", log.text);
    for secret in [
        PASSWORD,
        "wrong password!",
        &otp,
        &access,
        &refresh,
        "argon2",
    ] {
        assert!(!log.text.contains(secret), "the audit log holds a secret");
    }
    let page = s
        .call(Method::GET, "/api/v1/audit?limit=2", Some(&admin), None)
        .await;
    let last = page.body[1]["id"].as_i64().unwrap();
    let next = s
        .call(
            Method::GET,
            &format!("/api/v1/audit?limit=2&before={last}"),
            Some(&admin),
            None,
        )
        .await;
    assert!(next.body[0]["id"].as_i64().unwrap() < last);

    // Security counters.
    let m = s.call(Method::GET, "/metrics", Some(&admin), None).await;
    assert_eq!(m.status, StatusCode::OK);
    for line in [
        "dexlab_login_failures_total",
        "dexlab_refresh_reuses_total 1",
        "dexlab_role_changes_total 1",
    ] {
        assert!(m.text.contains(line), "{line} not in\n{}", m.text);
    }
    Ok(())
}

#[tokio::test]
async fn account_flows_sqlite() -> anyhow::Result<()> {
    on_sqlite(flows).await
}

#[tokio::test]
async fn account_flows_postgres() -> anyhow::Result<()> {
    on_postgres(flows).await
}

#[tokio::test]
async fn failed_logins_back_off_and_the_api_is_rate_limited() -> anyhow::Result<()> {
    on_sqlite(|store| async move {
        let s = Server::new(
            store,
            ServerConfig {
                limits: LimitConfig {
                    api_per_sec: 1.0,
                    api_burst: 5.0,
                    login_per_min: 1000.0,
                    login_free_failures: 3,
                    login_max_backoff: std::time::Duration::from_secs(60),
                },
                ..ServerConfig::default()
            },
        )
        .await?;
        for _ in 0..3 {
            assert_eq!(
                s.login("viewer", "not the password").await.code(),
                "invalid_credentials"
            );
        }
        // Past the free failures the account (and the address) must wait, even with the right
        // password.
        let a = s.login("viewer", PASSWORD).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            "{}",
            a.text
        );
        assert_eq!(a.headers["retry-after"], "1");
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let a = s.login("viewer", PASSWORD).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text);
        let token = a.body["access_token"].as_str().unwrap().to_owned();

        // Five requests at once, then one a second.
        let mut codes = Vec::new();
        for _ in 0..7 {
            codes.push(
                s.call(Method::GET, "/api/v1/experiments", Some(&token), None)
                    .await
                    .status
                    .as_u16(),
            );
        }
        assert_eq!(codes, [200, 200, 200, 200, 200, 429, 429]);
        let m = s.state.metrics.render(&s.store).await?;
        assert!(m.contains("dexlab_rate_limited_total 3"), "{m}");
        Ok(())
    })
    .await
}

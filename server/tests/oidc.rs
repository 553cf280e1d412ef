//! Logging in with OpenID Connect against a real provider started here (npm
//! `oauth2-mock-server`, `tools/oidc-mock.mjs`): the server discovers it, sends the browser to
//! it with state, nonce and an S256 PKCE challenge, exchanges the code with the verifier (the
//! provider checks it), and verifies the ID token with the provider's published key. A verified
//! address maps to the account that has it, whatever its case; an unverified or unknown
//! address, a disabled account, a state from another browser, a replayed answer, a token for
//! another client or another login (nonce) are all refused, and the audit log records how.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use dexlab_server::oidc::OidcConfig;
use dexlab_server::{Secret, ServerConfig};
use dexlab_store::Role;
use serde_json::{Value, json};

use crate::support::{Answer, Server, on_sqlite, roomy};

const REDIRECT: &str = "http://dash.test/auth/oidc/callback";

/// The provider, stopped on drop.
struct Provider {
    child: Child,
    issuer: String,
    claims: PathBuf,
    _dir: tempfile::TempDir,
}

impl Provider {
    fn start() -> Provider {
        Self::start_as(false)
    }

    /// The same provider answering as GitHub does (OAuth2, addresses from `GET /user/emails`).
    fn start_github() -> Provider {
        Self::start_as(true)
    }

    fn start_as(github: bool) -> Provider {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let script = root.join("tools/oidc-mock.mjs");
        assert!(
            root.join("tools/node_modules/oauth2-mock-server").is_dir(),
            "oauth2-mock-server is missing: run `bash scripts/setup.sh`"
        );
        let dir = tempfile::tempdir().unwrap();
        let claims = dir.path().join("claims.json");
        std::fs::write(&claims, "{}").unwrap();
        let mut child = Command::new("node")
            .arg(&script)
            .current_dir(root.join("tools"))
            .env("OIDC_CLAIMS_FILE", &claims)
            .env("OIDC_MOCK_GITHUB", if github { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("the provider printed {line:?}: {e}"));
        Provider {
            child,
            issuer: v["issuer"].as_str().unwrap().to_owned(),
            claims,
            _dir: dir,
        }
    }

    fn claims(&self, c: Value) {
        std::fs::write(&self.claims, c.to_string()).unwrap();
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(p: &Provider, client_id: &str) -> ServerConfig {
    ServerConfig {
        limits: roomy(),
        oidc: Some(OidcConfig {
            issuer: p.issuer.clone(),
            client_id: client_id.into(),
            client_secret: Some(Secret("client secret 123".into())),
            redirect_url: REDIRECT.into(),
            name: "TestID".into(),
            github_api: None,
        }),
        ..ServerConfig::default()
    }
}

fn set_cookies(a: &Answer) -> Vec<String> {
    a.headers
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(a: &Answer, name: &str) -> Option<String> {
    set_cookies(a).iter().find_map(|c| {
        c.split(';')
            .next()
            .and_then(|kv| kv.split_once('='))
            .filter(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| v.to_owned())
    })
}

async fn get(s: &Server, path: &str, cookie: Option<&str>) -> Answer {
    let mut req = Request::builder().method(Method::GET).uri(path);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    s.send(req.body(Body::empty()).unwrap()).await
}

/// The browser's part: start, follow the provider's answer back. Returns the start answer,
/// the callback's path and query, and the state cookie.
async fn to_provider_and_back(s: &Server) -> (Answer, String, String) {
    let start = get(s, "/auth/oidc/start?next=/jobs", None).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.text);
    let to = start.headers[header::LOCATION].to_str().unwrap().to_owned();
    let state_cookie = cookie_value(&start, "dexlab_oidc").expect("the state cookie");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let back = client.get(&to).send().await.unwrap();
    assert!(back.status().is_redirection(), "{}", back.status());
    let back = back.headers()[reqwest::header::LOCATION]
        .to_str()
        .unwrap()
        .to_owned();
    let path = back
        .strip_prefix("http://dash.test")
        .unwrap_or_else(|| panic!("the provider sent the browser to {back}"))
        .to_owned();
    (start, path, format!("dexlab_oidc={state_cookie}"))
}

async fn login_as(s: &Server, p: &Provider, claims: Value) -> Answer {
    p.claims(claims);
    let (_, path, cookie) = to_provider_and_back(s).await;
    get(s, &path, Some(&cookie)).await
}

async fn audit_reasons(s: &Server) -> Vec<(String, Value)> {
    s.store
        .audit_log(100, None)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.detail["method"] == "oidc")
        .map(|a| (a.action, a.detail["reason"].clone()))
        .collect()
}

#[tokio::test]
async fn oidc_logins_map_verified_addresses_to_accounts_and_refuse_the_rest() -> anyhow::Result<()>
{
    let p = Provider::start();
    on_sqlite(|store| async move {
        let s = Server::new(store, config(&p, "dexlab-test")).await?;

        // The login page offers it.
        let page = get(&s, "/login", None).await;
        assert!(page.text.contains("Log in with TestID"), "{}", page.text);

        // The redirect carries state, nonce and an S256 challenge.
        p.claims(json!({}));
        let (start, _, _) = to_provider_and_back(&s).await;
        let to = start.headers[header::LOCATION].to_str()?;
        for part in [
            "response_type=code",
            "client_id=dexlab-test",
            "code_challenge_method=S256",
            "code_challenge=",
            "state=",
            "nonce=",
            "scope=openid+email",
        ] {
            assert!(to.contains(part), "{part} missing from {to}");
        }
        assert!(
            set_cookies(&start)
                .iter()
                .any(|c| c.starts_with("dexlab_oidc=") && c.contains("HttpOnly")
                    && c.contains("SameSite=Lax")),
            "{:?}",
            set_cookies(&start)
        );

        // A verified address, written differently from the account's: the researcher.
        let ok = login_as(
            &s,
            &p,
            json!({ "email": " Researcher@EXAMPLE.test", "email_verified": true }),
        )
        .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
        assert_eq!(ok.headers[header::LOCATION], "/jobs");
        let access = cookie_value(&ok, "dexlab_access").expect("an access cookie");
        assert!(cookie_value(&ok, "dexlab_refresh").is_some());
        let jobs = get(&s, "/jobs", Some(&format!("dexlab_access={access}"))).await;
        assert_eq!(jobs.status, StatusCode::OK, "{}", jobs.text);
        assert!(jobs.text.contains("researcher"), "{}", jobs.text);
        let logins: Vec<_> = s
            .store
            .audit_log(100, None)
            .await?
            .into_iter()
            .filter(|a| a.action == "login" && a.detail["method"] == "oidc")
            .collect();
        assert_eq!(logins.len(), 1);
        assert_eq!(logins[0].target.as_deref(), Some("researcher"));
        assert_eq!(logins[0].detail["issuer"], json!(p.issuer));

        // Refused: each says why, sets no token, and is audited.
        let (forbidden, bad) = (StatusCode::FORBIDDEN, StatusCode::BAD_REQUEST);
        let cases = [
            (json!({ "email": "viewer@example.test", "email_verified": false }), forbidden, "not verified", "email_unverified"),
            (json!({ "email": "viewer@example.test" }), forbidden, "not verified", "email_unverified"),
            (json!({ "email": "nobody@example.test", "email_verified": true }), forbidden, "No enabled account", "no_account"),
            (json!({ "email_verified": true }), forbidden, "did not say", "no_email"),
            (json!({ "email": "viewer@example.test", "email_verified": true, "aud": "another-client" }), bad, "could not be verified", "id_token"),
            (json!({ "email": "viewer@example.test", "email_verified": true, "iss": "http://evil.test" }), bad, "could not be verified", "id_token"),
            (json!({ "email": "viewer@example.test", "email_verified": true, "nonce": "another login" }), bad, "not for this login", "nonce_mismatch"),
            (json!({ "email": "viewer@example.test", "email_verified": true, "exp": 1000 }), bad, "could not be verified", "id_token"),
        ];
        for (claims, status, says, reason) in &cases {
            let a = login_as(&s, &p, claims.clone()).await;
            assert_eq!(a.status, *status, "{claims}: {}", a.text);
            assert!(a.text.contains(says), "{claims}: {}", a.text);
            assert_eq!(cookie_value(&a, "dexlab_access"), None, "{claims}");
            assert_eq!(
                audit_reasons(&s).await.first(),
                Some(&("login_failed".to_owned(), json!(reason))),
                "{claims}"
            );
        }

        // A disabled account.
        let viewer = s.user(Role::Viewer).id;
        s.store.set_disabled(viewer, true, 2).await?;
        let a = login_as(&s, &p, json!({ "email": "viewer@example.test", "email_verified": true })).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
        s.store.set_disabled(viewer, false, 3).await?;

        // The answer to a login started in another browser, with no cookie or another's.
        p.claims(json!({ "email": "viewer@example.test", "email_verified": true }));
        let (_, path, _) = to_provider_and_back(&s).await;
        let (_, _, other_cookie) = to_provider_and_back(&s).await;
        for cookie in [None, Some(other_cookie.as_str())] {
            let a = get(&s, &path, cookie).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
            assert!(a.text.contains("not started in this browser"), "{}", a.text);
        }
        // An answer used twice.
        let (_, path, cookie) = to_provider_and_back(&s).await;
        assert_eq!(get(&s, &path, Some(&cookie)).await.status, StatusCode::SEE_OTHER);
        let again = get(&s, &path, Some(&cookie)).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.text);
        assert!(again.text.contains("already used"), "{}", again.text);
        // The provider's own refusal.
        let a = get(&s, "/auth/oidc/callback?error=access_denied&state=x", None).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.text);
        assert!(a.text.contains("access_denied"), "{}", a.text);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn without_a_provider_there_is_no_oidc_button_and_start_says_so() -> anyhow::Result<()> {
    on_sqlite(|store| async move {
        let s = Server::new(
            store,
            ServerConfig {
                limits: roomy(),
                ..ServerConfig::default()
            },
        )
        .await?;
        let page = get(&s, "/login", None).await;
        assert!(!page.text.contains("Log in with"), "{}", page.text);
        let a = get(&s, "/auth/oidc/start", None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.text);
        assert!(a.text.contains("no OpenID Connect login"), "{}", a.text);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn github_logins_take_a_verified_address_from_its_api() -> anyhow::Result<()> {
    let p = Provider::start_github();
    on_sqlite(|store| async move {
        let mut config = config(&p, "dexlab-gh");
        if let Some(o) = config.oidc.as_mut() {
            o.github_api = Some(p.issuer.clone());
            o.name = "GitHub".into();
        }
        let s = Server::new(store, config).await?;
        let page = get(&s, "/login", None).await;
        assert!(page.text.contains("Log in with GitHub"), "{}", page.text);
        let emails = |list: Value| json!({ "github_emails": list });

        // GitHub's authorization page, with state and an S256 challenge (the provider checks
        // the verifier at the exchange).
        p.claims(emails(json!([])));
        let (start, _, _) = to_provider_and_back(&s).await;
        let to = start.headers[header::LOCATION].to_str()?;
        assert!(
            to.starts_with(&format!("{}/login/oauth/authorize?", p.issuer)),
            "{to}"
        );
        assert!(
            to.contains("code_challenge_method=S256") && to.contains("scope=user%3Aemail"),
            "{to}"
        );

        // The second verified address is the operator's, written in another case.
        let ok = login_as(
            &s,
            &p,
            emails(json!([
                { "email": "someone@elsewhere.test", "verified": true, "primary": true },
                { "email": "Operator@Example.Test", "verified": true, "primary": false },
            ])),
        )
        .await;
        assert_eq!(ok.status, StatusCode::SEE_OTHER, "{}", ok.text);
        assert!(cookie_value(&ok, "dexlab_access").is_some());
        let login = s
            .store
            .audit_log(10, None)
            .await?
            .into_iter()
            .find(|a| a.action == "login");
        let login = login.expect("a login record");
        assert_eq!(login.target.as_deref(), Some("operator"));
        assert_eq!(login.detail["method"], "github");

        // An unverified address never logs in, even when it is an account's.
        for (list, status, says) in [
            (
                json!([{ "email": "operator@example.test", "verified": false, "primary": true }]),
                StatusCode::FORBIDDEN,
                "not verified",
            ),
            (
                json!([{ "email": "operator@example.test", "verified": false, "primary": true },
                    { "email": "someone@elsewhere.test", "verified": true, "primary": false }]),
                StatusCode::FORBIDDEN,
                "No enabled account",
            ),
            (json!([]), StatusCode::FORBIDDEN, "did not say"),
        ] {
            let a = login_as(&s, &p, emails(list.clone())).await;
            assert_eq!(a.status, status, "{list}: {}", a.text);
            assert!(a.text.contains(says), "{list}: {}", a.text);
            assert_eq!(cookie_value(&a, "dexlab_access"), None, "{list}");
        }
        Ok(())
    })
    .await
}

//! The authorization matrix, generated from the route table: every route under no token, every
//! role, and every kind of bad token. A route added to the table is in the matrix without anyone
//! writing a line here; one added to the router outside the table fails
//! `every_route_is_in_the_table_and_the_description`.

use std::collections::BTreeSet;

use axum::http::{Method, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dexlab_server::ServerConfig;
use dexlab_server::routes::{Access, ApiDoc, Kind, table};
use dexlab_store::{Role, Store};
use serde_json::json;
use utoipa::OpenApi;

use crate::support::*;

/// A request path for a route template: every `{param}` is `1`.
fn concrete(path: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                out.push('1');
            }
            '}' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

fn body_for(method: &Method) -> Option<serde_json::Value> {
    (method == Method::POST || method == Method::PATCH).then(|| json!({}))
}

/// A request to a route: the API with a bearer token and a JSON body, a page with the login
/// cookie and an (empty) form.
async fn ask(s: &Server, kind: Kind, method: &Method, path: &str, token: Option<&str>) -> Answer {
    match kind {
        Kind::Api => s.call(method.clone(), path, token, body_for(method)).await,
        Kind::Page => {
            let mut req = axum::http::Request::builder()
                .method(method.clone())
                .uri(path);
            if let Some(t) = token {
                req = req.header("cookie", format!("dexlab_access={t}"));
            }
            if method != Method::GET {
                req = req.header("content-type", "application/x-www-form-urlencoded");
            }
            s.send(req.body(axum::body::Body::empty()).unwrap()).await
        }
    }
}

/// Whether the answer turns the caller away as unauthenticated: 401 from the API, a redirect to
/// the login page from a page.
fn turned_away(kind: Kind, a: &Answer) -> bool {
    match kind {
        Kind::Api => a.status == StatusCode::UNAUTHORIZED,
        Kind::Page => {
            a.status == StatusCode::SEE_OTHER
                && a.headers["location"]
                    .to_str()
                    .unwrap()
                    .starts_with("/login?next=")
        }
    }
}

fn least(access: Access) -> Option<Role> {
    match access {
        Access::Public => None,
        Access::Role(r) => Some(r),
        Access::Metrics => Some(Role::Viewer),
    }
}

async fn matrix(store: Store) -> anyhow::Result<()> {
    let s = Server::new(
        store,
        ServerConfig {
            limits: roomy(),
            ..ServerConfig::default()
        },
    )
    .await?;
    let routes = table();
    assert!(routes.len() >= 20, "{} routes", routes.len());
    let mut rows = 0;
    for route in &routes {
        let path = concrete(route.path);
        let what = format!("{} {}", route.method, route.path);
        let need = least(route.access);

        // No token.
        let kind = route.kind;
        let a = ask(&s, kind, &route.method, &path, None).await;
        match need {
            None => assert!(
                !turned_away(kind, &a) && a.status != StatusCode::FORBIDDEN,
                "{what} is public but answered {} {}",
                a.status,
                a.text
            ),
            Some(_) => {
                assert!(turned_away(kind, &a), "{what}: {} {}", a.status, a.text);
                if kind == Kind::Api {
                    assert_eq!(a.code(), "unauthenticated", "{what}");
                    assert!(a.headers.contains_key("www-authenticate"), "{what}");
                }
            }
        }
        rows += 1;

        // Each role, with a fresh login so that a logout route ends only its own.
        for role in Role::ALL {
            let (token, _) = s.mint(role).await?;
            let a = ask(&s, kind, &route.method, &path, Some(&token)).await;
            let allowed = need.is_none_or(|min| role >= min);
            if allowed {
                assert!(
                    !turned_away(kind, &a) && a.status != StatusCode::FORBIDDEN,
                    "{what} as {role} should pass the gate, got {} {}",
                    a.status,
                    a.text
                );
                assert!(
                    a.status.as_u16() < 500,
                    "{what} as {role}: {} {}",
                    a.status,
                    a.text
                );
            } else {
                assert_eq!(
                    a.status,
                    StatusCode::FORBIDDEN,
                    "{what} as {role}: {}",
                    a.text
                );
                if kind == Kind::Api {
                    assert_eq!(a.code(), "forbidden", "{what} as {role}");
                }
            }
            rows += 1;
        }
        let Some(_) = need else { continue };

        // Bad tokens, each on an account that would otherwise be let in (the admin).
        let admin = s.user(Role::Admin).clone();
        let expired = s
            .state
            .tokens
            .access(&admin, "fam-x", dexlab_server::now() - 3600)
            .0;
        let (good, refresh) = s.mint(Role::Admin).await?;
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(&parts[1])?)?;
        parts[1] = URL_SAFE_NO_PAD.encode(payload.replace("\"admin\"", "\"admim\""));
        let tampered = parts.join(".");
        let other_key = dexlab_server::auth::Tokens::new(dexlab_server::auth::AuthConfig::random())
            .access(&admin, "fam-y", dexlab_server::now())
            .0;
        // Revoked: the login was ended.
        let (revoked, _) = s.mint(Role::Admin).await?;
        let r = s
            .call(Method::POST, "/api/v1/auth/logout", Some(&revoked), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        // Refresh reuse: the refresh token used twice ends the login its access token is of.
        let use_refresh = || {
            s.call(
                Method::POST,
                "/api/v1/auth/refresh",
                None,
                Some(json!({ "refresh_token": refresh })),
            )
        };
        assert_eq!(use_refresh().await.status, StatusCode::OK);
        let again = use_refresh().await;
        assert_eq!(
            (again.status, again.code()),
            (StatusCode::UNAUTHORIZED, "token_reused")
        );
        for (why, token, code) in [
            ("expired", expired.as_str(), "token_expired"),
            ("tampered", tampered.as_str(), "token_invalid"),
            ("signed by another key", other_key.as_str(), "token_invalid"),
            ("garbage", "not-a-jwt", "token_invalid"),
            ("revoked by logout", revoked.as_str(), "token_revoked"),
            (
                "of a reused refresh token's login",
                good.as_str(),
                "token_revoked",
            ),
        ] {
            let a = ask(&s, kind, &route.method, &path, Some(token)).await;
            assert!(
                turned_away(kind, &a),
                "{what} with a token {why}: {}",
                a.text
            );
            if kind == Kind::Api {
                assert_eq!(a.code(), code, "{what} with a token {why}: {}", a.text);
            }
            rows += 1;
        }
    }
    // Every route, 5 callers each, 6 bad tokens for each gated route.
    let gated = routes.iter().filter(|r| least(r.access).is_some()).count();
    assert_eq!(rows, routes.len() * 5 + gated * 6);
    Ok(())
}

#[tokio::test]
async fn authorization_matrix_sqlite() -> anyhow::Result<()> {
    on_sqlite(matrix).await
}

#[tokio::test]
async fn authorization_matrix_postgres() -> anyhow::Result<()> {
    on_postgres(matrix).await
}

#[test]
fn every_route_is_in_the_table_and_the_description() {
    let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op
                .get("security")
                .is_some_and(|s| !s.as_array().unwrap().is_empty());
            described.insert((method.to_uppercase(), path.clone(), secured));
        }
    }
    let tabled: BTreeSet<_> = table()
        .iter()
        .filter(|r| r.kind == Kind::Api)
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_owned(),
                least(r.access).is_some(),
            )
        })
        .collect();
    assert_eq!(
        described, tabled,
        "the OpenAPI description and the route table differ (method, path, needs a token)"
    );
    // The description names the bearer scheme the secured operations refer to.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

//! The API's reads (filters, sorting, pages, details), its protections (security headers, CORS,
//! body limit, one error shape for every 4xx) and its description.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use dexlab_server::{Secret, ServerConfig};
use dexlab_store::{NewExperiment, Role, Store};
use dexlab_types::ExperimentStatus;
use serde_json::json;

use crate::support::*;

fn experiment(name: &str, strategy: &str, created_at: i64) -> NewExperiment {
    NewExperiment {
        name: name.to_owned(),
        strategy: strategy.to_owned(),
        dataset: format!("ds-{name}"),
        dataset_hash: "00".into(),
        config: json!({ "population": 8 }),
        seed: 7,
        created_at,
    }
}

/// Filtering, sorting and paging happen in the database (its JSON functions read the summary's
/// figures): both backends.
#[tokio::test]
async fn experiments_filter_sort_and_paginate_on_sqlite() -> anyhow::Result<()> {
    on_sqlite(experiments).await
}

#[tokio::test]
async fn experiments_filter_sort_and_paginate_on_postgres() -> anyhow::Result<()> {
    on_postgres(experiments).await
}

async fn experiments(store: Store) -> anyhow::Result<()> {
    {
        let s = Server::new(
            store.clone(),
            ServerConfig {
                limits: roomy(),
                ..ServerConfig::default()
            },
        )
        .await?;
        // Five experiments; three done with out-of-sample results, one failed.
        for (i, (name, strategy, pnl)) in [
            ("alpha", "arbitrage", Some(12.5)),
            ("beta", "mean_reversion", Some(-3.0)),
            ("gamma", "arbitrage", None),
            ("delta", "arbitrage", Some(40.0)),
            ("Epsilon", "mean_reversion", None),
        ]
        .into_iter()
        .enumerate()
        {
            let id = store
                .create_experiment(&experiment(name, strategy, 100 + i as i64))
                .await?;
            if let Some(p) = pnl {
                let summary = json!({ "runs": {
                    "ga": { "out_of_sample_net_pnl_quote": p },
                    "no_trade": { "out_of_sample_net_pnl_quote": 0.0 },
                }});
                store
                    .set_experiment_status(id, ExperimentStatus::Done, Some(&summary))
                    .await?;
            } else if name == "gamma" {
                store
                    .fail_experiment(id, ExperimentStatus::Failed, "boom")
                    .await?;
            }
        }
        let (t, _) = s.mint(Role::Viewer).await?;
        let names = |a: &Answer| -> Vec<String> {
            a.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let get = |q: &str| {
            let path = format!("/api/v1/experiments{q}");
            let (s, t) = (&s, &t);
            async move { s.call(Method::GET, &path, Some(t), None).await }
        };

        let all = get("").await;
        assert_eq!(all.status, StatusCode::OK, "{}", all.text);
        assert_eq!(
            names(&all),
            ["Epsilon", "delta", "gamma", "beta", "alpha"],
            "newest first"
        );
        assert_eq!(all.body["total"], 5);
        let a = get("?status=done&sort=oos_pnl").await;
        assert_eq!(names(&a), ["delta", "alpha", "beta"]);
        assert_eq!(a.body["items"][0]["oos_net_pnl_quote"], 40.0);
        assert_eq!(a.body["items"][0]["oos_net_pnl_quote_no_trade"], 0.0);
        // Without a figure: below every figure, ties by id.
        let a = get("?sort=oos_pnl").await;
        assert_eq!(names(&a), ["delta", "alpha", "beta", "Epsilon", "gamma"]);
        let a = get("?sort=oos_pnl&order=asc&limit=3").await;
        assert_eq!(names(&a), ["gamma", "Epsilon", "beta"]);
        assert_eq!(a.body["items"][0]["oos_net_pnl_quote"], json!(null));
        // A wildcard in the text is a character, not a wildcard.
        let a = get("?q=%25").await;
        assert_eq!(names(&a), Vec::<String>::new());
        assert_eq!(a.body["total"], 0);
        let a = get("?strategy=arbitrage&sort=name&order=asc").await;
        assert_eq!(names(&a), ["alpha", "delta", "gamma"]);
        let a = get("?q=EPS").await;
        assert_eq!(names(&a), ["Epsilon"]);
        let a = get("?sort=id&order=asc&limit=2&offset=2").await;
        assert_eq!(
            (names(&a), &a.body["total"]),
            (vec!["gamma".to_owned(), "delta".to_owned()], &json!(5))
        );
        let a = get("?status=failed").await;
        assert_eq!(a.body["items"][0]["error"], "boom");

        // Bad queries: 400 in the one shape, naming what was wrong.
        for (q, says) in [
            ("?status=finished", "finished"),
            ("?limit=0", "limit"),
            ("?limit=501", "limit"),
            ("?sort=colour", "sort"),
            ("?offset=-1", "offset"),
            ("?limit=ten", "limit"),
            ("?color=red", "color"),
        ] {
            let a = get(q).await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "invalid_request"),
                "{q}: {}",
                a.text
            );
            assert!(
                a.body["message"].as_str().unwrap().contains(says),
                "{q}: {}",
                a.text
            );
        }

        // Detail by id and by name; unknown ones are 404.
        let d = s
            .call(Method::GET, "/api/v1/experiments/delta", Some(&t), None)
            .await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.text);
        assert_eq!(d.body["experiment"]["name"], "delta");
        let id = d.body["experiment"]["id"].as_i64().unwrap();
        let d2 = s
            .call(
                Method::GET,
                &format!("/api/v1/experiments/{id}"),
                Some(&t),
                None,
            )
            .await;
        assert_eq!(d2.body, d.body);
        let n = s
            .call(Method::GET, "/api/v1/experiments/nope", Some(&t), None)
            .await;
        assert_eq!((n.status, n.code()), (StatusCode::NOT_FOUND, "not_found"));
        Ok(())
    }
}

#[tokio::test]
async fn protections_and_error_shape() -> anyhow::Result<()> {
    on_sqlite(|store| async move {
        let token_file = Secret("scrape-me-0123456789".into());
        let s = Server::new(
            store,
            ServerConfig {
                limits: roomy(),
                cors_origins: vec!["https://dash.example.test".into()],
                metrics_token: Some(token_file),
                body_limit: 1024,
                ..ServerConfig::default()
            },
        )
        .await?;
        let (admin, _) = s.mint(Role::Admin).await?;

        // Security headers on API answers, pages and errors alike.
        for path in ["/api/v1/experiments", "/healthz", "/nowhere", "/docs/"] {
            let a = s.call(Method::GET, path, Some(&admin), None).await;
            let h = &a.headers;
            assert_eq!(h["x-frame-options"], "DENY", "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert!(
                h["content-security-policy"]
                    .to_str()?
                    .contains("frame-ancestors 'none'")
            );
            assert!(
                !h.contains_key("strict-transport-security"),
                "no HSTS without TLS"
            );
        }
        assert_eq!(
            s.call(Method::GET, "/api/v1/experiments", Some(&admin), None)
                .await
                .headers["cache-control"],
            "no-store"
        );

        // Unknown routes and methods: JSON errors.
        let a = s.call(Method::GET, "/api/v1/nothing", None, None).await;
        assert_eq!((a.status, a.code()), (StatusCode::NOT_FOUND, "not_found"));
        let a = s
            .call(Method::DELETE, "/api/v1/experiments", Some(&admin), None)
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            "{}",
            a.text
        );

        // Bodies: malformed JSON, wrong content type, too large.
        let raw = |body: &str, ctype: &str| {
            Request::builder()
                .method(Method::POST)
                .uri("/api/v1/auth/login")
                .header("content-type", ctype)
                .body(Body::from(body.to_owned()))
                .unwrap()
        };
        let a = s.send(raw("{\"username\":", "application/json")).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{}",
            a.text
        );
        let a = s
            .send(raw("username=a", "application/x-www-form-urlencoded"))
            .await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        );
        let big = format!(
            "{{\"username\":\"a\",\"password\":\"{}\"}}",
            "x".repeat(4096)
        );
        let a = s.send(raw(&big, "application/json")).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            "{}",
            a.text
        );

        // CORS: the allowed origin gets its preflight; another gets no allowance.
        let preflight = |origin: &str| {
            Request::builder()
                .method(Method::OPTIONS)
                .uri("/api/v1/experiments")
                .header("origin", origin)
                .header("access-control-request-method", "GET")
                .header("access-control-request-headers", "authorization")
                .body(Body::empty())
                .unwrap()
        };
        let ok = s.send(preflight("https://dash.example.test")).await;
        assert_eq!(
            ok.headers["access-control-allow-origin"],
            "https://dash.example.test"
        );
        let no = s.send(preflight("https://evil.example.test")).await;
        assert!(!no.headers.contains_key("access-control-allow-origin"));

        // /metrics: the metrics token or an account's token; nothing else.
        let m = s
            .call(Method::GET, "/metrics", Some("scrape-me-0123456789"), None)
            .await;
        assert_eq!(m.status, StatusCode::OK, "{}", m.text);
        assert!(
            m.text
                .contains("dexlab_http_request_duration_seconds_bucket"),
            "{}",
            m.text
        );
        assert!(
            m.text.contains("route=\"/api/v1/experiments\""),
            "{}",
            m.text
        );
        assert!(
            !m.text.contains("/api/v1/nothing"),
            "raw paths are not labels"
        );
        let m = s
            .call(Method::GET, "/metrics", Some("scrape-me-012345678"), None)
            .await;
        assert_eq!(m.status, StatusCode::UNAUTHORIZED);

        // The description and Swagger UI are served, and the description is OpenAPI 3.1.
        let doc = s
            .call(Method::GET, "/api/v1/openapi.json", None, None)
            .await;
        assert_eq!(doc.status, StatusCode::OK);
        assert!(doc.body["openapi"].as_str().unwrap().starts_with("3.1"));
        assert!(doc.body["paths"]["/api/v1/auth/login"]["post"].is_object());
        let ui = s.call(Method::GET, "/docs/", None, None).await;
        assert_eq!(ui.status, StatusCode::OK);
        assert!(
            ui.text.contains("swagger"),
            "{}",
            &ui.text[..ui.text.len().min(300)]
        );
        Ok(())
    })
    .await
}

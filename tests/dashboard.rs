//! Real time across processes: a paper session (its own process) trades on a living devnet, a
//! `dexlab serve` (another process) streams its blocks to a WebSocket client as they happen,
//! an operator presses the kill switch through the API, and the client sees the halt arrive.
//! Once on SQLite (the server polls the store) and once on PostgreSQL (LISTEN/NOTIFY), against
//! the same chain.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use crate::serve::{add_user, request, serve_with, stop};
use crate::support::*;

const PASSWORD: &str = "operator password 123";

fn paper(chain: &Chain, db: &str, session: &std::path::Path) -> Child {
    dexlab()
        .args(["live", "--rpc", &format!("ws://127.0.0.1:{}", chain.port)])
        .args(["--mode", "paper", "--strategy", "cross-venue-arb"])
        .args(["--params", r#"{"min_profit_bps": 0}"#])
        .arg("--manifest")
        .arg(&chain.manifest_path)
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/evolve-devnet.toml"),
        ])
        .arg("--session")
        .arg(session)
        .args(["--blocks", "100000"])
        .env("DATABASE_URL", db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn login(addr: &str) -> String {
    let (code, body) = request(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "username": "olga", "password": PASSWORD })),
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The session's id once the engine has registered it.
fn session_id(addr: &str, token: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, body) = request(addr, "GET", "/api/v1/sessions", Some(token), None);
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        if let Some(id) = v[0]["id"].as_i64() {
            return id;
        }
        assert!(Instant::now() < deadline, "the session never registered");
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn watch(addr: String, token: String, id: i64) {
    let mut req = format!("ws://{addr}/ws/live?session={id}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "cookie",
        HeaderValue::from_str(&format!("dexlab_access={token}")).unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let mut blocks: Vec<u64> = Vec::new();
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(180);
    while !(killed && blocks.len() >= 40) {
        let msg = tokio::time::timeout_at(deadline.into(), ws.next())
            .await
            .unwrap_or_else(|_| panic!("events stopped after {} blocks", blocks.len()))
            .expect("the socket closed")
            .unwrap();
        let Ok(text) = msg.into_text() else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["type"], "event", "{v}");
        let e = &v["event"];
        assert_eq!(e["session_id"], id);
        let block = e["block"].as_u64().unwrap();
        // In order, none twice, none skipped.
        if let Some(last) = blocks.last() {
            assert_eq!(block, last + 1, "after block {last}: {v}");
        }
        blocks.push(block);
        let p = &e["payload"];
        assert!(
            p["equity_quote"].is_number() && p["pnl_quote"].is_number(),
            "{p}"
        );
        assert_eq!(p["mode"], "paper");
        // The venues' spreads: the devnet quotes several pairs on several pools.
        let spreads = p["spreads"].as_array().expect("spreads");
        assert!(
            !spreads.is_empty()
                && spreads
                    .iter()
                    .all(|s| s["bps"].as_f64().is_some_and(|b| b >= 0.0)
                        && s["pools"].as_u64() >= Some(2)),
            "{p}"
        );
        if blocks.len() == 20 {
            // The operator presses the kill switch through the API, from another connection.
            let (a, t) = (addr.clone(), token.clone());
            let (code, body) = tokio::task::spawn_blocking(move || {
                request(
                    &a,
                    "POST",
                    &format!("/api/v1/sessions/{id}/kill"),
                    Some(&t),
                    Some(&json!({ "reason": "dashboard test" })),
                )
            })
            .await
            .unwrap();
            assert_eq!(code, 202, "{body}");
        }
        if p["halted"]
            .as_array()
            .is_some_and(|h| h.iter().any(|k| k == "kill_switch"))
        {
            assert!(blocks.len() > 20, "halted before the kill: {p}");
            killed = true;
        }
    }
}

fn scenario(chain: &Chain, db: &str, dir: &std::path::Path) {
    add_user(db, "olga", "operator", PASSWORD);
    let mut engine = paper(chain, db, &dir.join("session"));
    let (server, addr) = serve_with(db, None, &[]);
    let token = login(&addr);
    let id = session_id(&addr, &token);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(watch(addr.clone(), token.clone(), id));
    // The engine's figures are in /metrics, from the session's latest event: the kill switch
    // is a halt in force.
    let (code, text) = request(&addr, "GET", "/metrics", Some(&token), None);
    assert_eq!(code, 200, "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(&format!("{name}{{")) && l.contains(&format!("session=\"{id}\""))
            })
            .unwrap_or_else(|| panic!("no {name} of session {id} in:\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .parse::<f64>()
            .unwrap()
    };
    assert!(line("dexlab_session_halts") >= 1.0);
    assert!(line("dexlab_session_equity_quote").is_finite());
    assert!(line("dexlab_session_pnl_quote").is_finite());
    assert!(line("dexlab_session_step_seconds") >= 0.0);
    assert_eq!(line("dexlab_session_running"), 1.0);
    // The audit log has the kill, by the operator, from the loopback address.
    let admin = "ada";
    add_user(db, admin, "admin", PASSWORD);
    let (code, body) = request(
        &addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "username": admin, "password": PASSWORD })),
    );
    assert_eq!(code, 200, "{body}");
    let t: Value = serde_json::from_str(&body).unwrap();
    let (code, body) = request(
        &addr,
        "GET",
        "/api/v1/audit",
        Some(t["access_token"].as_str().unwrap()),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let log: Value = serde_json::from_str(&body).unwrap();
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|r| r["action"] == "kill_switch"
                && r["actor"] == "olga"
                && r["ip"] == "127.0.0.1"),
        "{log}"
    );
    engine.kill().unwrap();
    engine.wait().unwrap();
    stop(server);
}

#[test]
fn a_paper_sessions_blocks_and_kill_switch_reach_a_websocket_client() {
    let chain = Chain::up_live(9, 200, 100);
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite:{}", dir.path().join("s.sqlite").display());
    let a = dir.path().join("a");
    std::fs::create_dir_all(&a).unwrap();
    scenario(&chain, &sqlite, &a);

    let name = format!("dexlab_dashboard_{}", std::process::id());
    let psql = |sql: &str| {
        let ok = std::process::Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-qc",
                sql,
            ])
            .status()
            .unwrap()
            .success();
        assert!(ok, "{sql}");
    };
    psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    psql(&format!("CREATE DATABASE {name}"));
    let pg = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let b = dir.path().join("b");
    std::fs::create_dir_all(&b).unwrap();
    scenario(&chain, &pg, &b);
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}

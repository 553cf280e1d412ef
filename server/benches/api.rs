//! The API under load on loopback, in one run:
//! 1. list and detail endpoints at a fixed 1,000 requests/s for 20 s each (oha), as a viewer,
//!    over a SQLite store of 300 experiments: latency percentiles;
//! 2. login latency at the stated argon2id cost (oha, 10 logins/s);
//! 3. the delay from a live event committed by another connection to its arrival at each of
//!    1,000 WebSocket clients (p50, p99), on SQLite (the server polls) and on PostgreSQL
//!    (LISTEN/NOTIFY) when it answers at 127.0.0.1:5432.
//!
//! Run by `bench/api.sh`, which installs oha when missing; `OHA` names the binary.

use std::net::SocketAddr;
use std::time::Duration;

use dexlab_lab::accounts::{AddUser, add_user};
use dexlab_server::ServerConfig;
use dexlab_server::limits::LimitConfig;
use dexlab_store::{NewExperiment, NewSessionRow, Role, SessionMode, Store};
use dexlab_types::ExperimentStatus;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const PASSWORD: &str = "bench password 12345";

fn oha() -> String {
    std::env::var("OHA").unwrap_or_else(|_| "oha".into())
}

async fn seed(store: &Store) -> anyhow::Result<()> {
    add_user(
        store,
        &AddUser {
            username: "viewer".into(),
            role: Role::Viewer,
            email: None,
            password: Some(PASSWORD.into()),
            by: "bench".into(),
            at: 0,
        },
    )
    .await?;
    for i in 0..300 {
        let id = store
            .create_experiment(&NewExperiment {
                name: format!("exp-{i:03}"),
                strategy: if i % 2 == 0 {
                    "cross-venue-arb"
                } else {
                    "mean_reversion"
                }
                .into(),
                dataset: "devnet".into(),
                dataset_hash: "00".into(),
                config: json!({ "population": 40, "generations": 30 }),
                seed: i,
                created_at: 1_700_000_000 + i as i64,
            })
            .await?;
        let summary = json!({ "runs": {
            "ga": { "out_of_sample_net_pnl_quote": i as f64 * 0.5 - 40.0 },
            "no_trade": { "out_of_sample_net_pnl_quote": 0.0 },
        }});
        store
            .set_experiment_status(id, ExperimentStatus::Done, Some(&summary))
            .await?;
    }
    Ok(())
}

async fn start(store: Store) -> anyhow::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let config = ServerConfig {
        limits: LimitConfig {
            api_per_sec: 1e6,
            api_burst: 1e6,
            login_per_min: 1e6,
            ..LimitConfig::default()
        },
        ..ServerConfig::default()
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(dexlab_server::serve(
        store,
        config,
        "127.0.0.1:0".parse()?,
        move |a| {
            let _ = tx.send(a);
        },
        async move {
            let _ = stop_rx.await;
        },
    ));
    Ok((rx.await?, stop_tx))
}

async fn login(addr: SocketAddr) -> anyhow::Result<String> {
    let body = json!({ "username": "viewer", "password": PASSWORD }).to_string();
    let v: Value = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?
        .json()
        .await?;
    Ok(v["access_token"].as_str().unwrap().to_owned())
}

/// oha's latency percentiles (ms) and achieved rate for one URL.
fn load(url: &str, args: &[&str]) -> anyhow::Result<(f64, f64, f64, f64, u64)> {
    let out = std::process::Command::new(oha())
        .args(["--no-tui", "--output-format", "json"])
        .args(args)
        .arg(url)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "oha: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let p = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1e3;
    let ok = v["statusCodeDistribution"]["200"].as_u64().unwrap_or(0);
    let rps = v["summary"]["requestsPerSec"].as_f64().unwrap_or(f64::NAN);
    Ok((p("p50"), p("p99"), p("p99.9"), rps, ok))
}

async fn fanout(store: Store, url: &str, label: &str, clients: usize) -> anyhow::Result<()> {
    let (addr, stop) = start(store.clone()).await?;
    let token = login(addr).await?;
    let session = store
        .start_session(&NewSessionRow {
            dir: format!("/bench/{label}"),
            mode: SessionMode::Paper,
            chain_id: 8453,
            strategy: "cross-venue-arb".into(),
            params: json!({}),
            model_hash: None,
            bootstrap_block: 1,
            pid: 1,
            host: "bench".into(),
            started_at: 0,
        })
        .await?;
    let events = 100u64;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<f64>>();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    for _ in 0..clients {
        let mut req = format!("ws://{addr}/ws/live?session={session}").into_client_request()?;
        req.headers_mut().insert(
            "cookie",
            HeaderValue::from_str(&format!("dexlab_access={token}"))?,
        );
        let (done, ready) = (done_tx.clone(), ready_tx.clone());
        tokio::spawn(async move {
            let (mut ws, _) = tokio_tungstenite::connect_async(req)
                .await
                .expect("connect");
            let _ = ready.send(());
            let mut delays = Vec::with_capacity(events as usize);
            while delays.len() < events as usize {
                let Some(Ok(msg)) = ws.next().await else {
                    break;
                };
                let Ok(text) = msg.into_text() else { continue };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_micros() as f64
                    / 1e3;
                let v: Value = serde_json::from_str(&text).unwrap();
                if let Some(at) = v["event"]["payload"]["sent_at_ms"].as_f64() {
                    delays.push(now - at);
                }
            }
            let _ = done.send(delays);
        });
    }
    for _ in 0..clients {
        ready_rx.recv().await;
    }
    // The writer: another connection, as the live engine's process would be.
    let writer = Store::connect(url).await?;
    for b in 0..events {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_micros() as f64
            / 1e3;
        writer
            .add_live_event(
                session,
                b,
                now as i64,
                &json!({ "sent_at_ms": now, "pnl_quote": 0.0 }),
            )
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut all = Vec::new();
    for _ in 0..clients {
        if let Some(d) = done_rx.recv().await {
            all.extend(d);
        }
    }
    all.sort_by(f64::total_cmp);
    let q = |p: f64| all[((all.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "ws_fanout/{label}: {clients} clients x {events} events ({} delivered): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        all.len(),
        q(0.5),
        q(0.99),
        all[all.len() - 1]
    );
    let _ = stop.send(());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite:{}", dir.path().join("bench.sqlite").display());
        let store = Store::connect(&url).await?;
        seed(&store).await?;
        let (addr, stop) = start(store.clone()).await?;
        let token = login(addr).await?;
        let auth = format!("Authorization: Bearer {token}");
        let list = format!("http://{addr}/api/v1/experiments?limit=50&sort=oos_pnl");
        let detail = format!("http://{addr}/api/v1/experiments/exp-150");
        let me = format!("http://{addr}/api/v1/auth/me");
        for (name, url) in [("list", &list), ("detail", &detail), ("me", &me)] {
            let (p50, p99, p999, rps, ok) = tokio::task::block_in_place(|| {
                load(url, &["-z", "20s", "-q", "1000", "-c", "50", "-H", &auth])
            })?;
            println!(
                "api/{name}: {rps:.0} req/s ({ok} ok): p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms"
            );
        }
        let body = json!({ "username": "viewer", "password": PASSWORD }).to_string();
        let login_url = format!("http://{addr}/api/v1/auth/login");
        let (p50, p99, _, rps, ok) = tokio::task::block_in_place(|| {
            load(
                &login_url,
                &["-n", "200", "-q", "10", "-c", "4", "-m", "POST", "-T", "application/json", "-d", &body],
            )
        })?;
        println!("api/login: {rps:.1} req/s ({ok} ok): p50 {p50:.1} ms, p99 {p99:.1} ms");
        let _ = stop.send(());

        fanout(store, &url, "sqlite", 1000).await?;
        let pg_admin = "postgres://postgres@127.0.0.1:5432/postgres";
        match sqlx::PgPool::connect(pg_admin).await {
            Ok(admin) => {
                let name = format!("dexlab_bench_{}", std::process::id());
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name}")))
                    .execute(&admin)
                    .await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&admin)
                    .await?;
                let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
                let pg = Store::connect(&url).await?;
                seed(&pg).await?;
                fanout(pg.clone(), &url, "postgres", 1000).await?;
                pg.close().await;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE {name} WITH (FORCE)"
                )))
                .execute(&admin)
                .await?;
            }
            Err(e) => println!("ws_fanout/postgres: skipped, no PostgreSQL at 127.0.0.1:5432 ({e})"),
        }
        anyhow::Ok(())
    })
}

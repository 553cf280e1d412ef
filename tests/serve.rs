//! `dexlab serve`: health and readiness on SQLite and PostgreSQL. Readiness follows the store
//! (503 in the API's one error shape when it stops answering, without SQL or the store's URL),
//! and SIGTERM stops the server cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::*;

/// A raw HTTP/1.1 GET: the status code and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Starts `dexlab serve` on a free port; returns the child and the address it listens on.
fn serve(db: &str) -> (Child, String) {
    let mut child = dexlab()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned();
    (child, addr)
}

fn stop(mut child: Child) {
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[test]
fn serve_reports_health_and_follows_the_stores_readiness() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("s.sqlite").display());
    let (child, addr) = serve(&sqlite);
    let (code, body) = get(&addr, "/healthz");
    assert_eq!((code, body.as_str()), (200, r#"{"status":"ok"}"#));
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("sqlite"), "{body}");
    let (code, _) = get(&addr, "/nowhere");
    assert_eq!(code, 404);
    stop(child);

    // PostgreSQL: ready, then the database goes away and readiness says so.
    let db = format!("dexlab_serve_{}", std::process::id());
    psql(&format!("DROP DATABASE IF EXISTS {db}"));
    psql(&format!("CREATE DATABASE {db}"));
    let pg = format!("postgres://postgres@127.0.0.1:5432/{db}");
    let (child, addr) = serve(&pg);
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("postgres"), "{body}");
    psql(&format!("DROP DATABASE {db} WITH (FORCE)"));
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "store_unavailable", "{body}");
    assert!(
        !body.contains("127.0.0.1") && !body.to_lowercase().contains("select"),
        "{body}"
    );
    // Health is the process's, not the store's.
    assert_eq!(get(&addr, "/healthz").0, 200);
    stop(child);
}

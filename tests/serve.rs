//! `dexlab serve`: health and readiness on SQLite and PostgreSQL. Readiness follows the store
//! (503 in the API's one error shape when it stops answering, without SQL or the store's URL),
//! and SIGTERM stops the server cleanly.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::support::*;

/// A raw HTTP/1.1 GET: the status code and the body.
pub(crate) fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, None, None)
}

/// A raw HTTP/1.1 request with an optional bearer token and JSON body.
pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&serde_json::Value>,
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.map_or(String::new(), |b| b.to_string());
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
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
pub(crate) fn serve(db: &str) -> (Child, String) {
    serve_logging(db, None)
}

/// [`serve`] writing its log, at `DEXLAB_LOG`'s most detailed for dexlab, into `log`.
pub(crate) fn serve_logging(db: &str, log: Option<&std::path::Path>) -> (Child, String) {
    serve_with(db, log, &[])
}

/// [`serve_logging`] with more arguments.
pub(crate) fn serve_with(
    db: &str,
    log: Option<&std::path::Path>,
    args: &[&str],
) -> (Child, String) {
    // Its working folder (the default data root and jobs folder) is out of the clone.
    let cwd = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let mut cmd = dexlab();
    cmd.args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .current_dir(&cwd)
        .env("DATABASE_URL", db)
        .stdout(Stdio::piped());
    match log {
        Some(path) => cmd
            .env(
                "DEXLAB_LOG",
                "debug,dexlab=trace,dexlab_server=trace,dexlab_store=trace,dexlab_lab=trace",
            )
            .stderr(std::fs::File::create(path).unwrap()),
        None => cmd.stderr(Stdio::null()),
    };
    let mut child = cmd.spawn().unwrap();
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

pub(crate) fn stop(mut child: Child) {
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

/// Logins, refreshes, a reused refresh token, an admin's read and a logout through `dexlab
/// serve`, with its most detailed log: no password, token or password hash in any line.
#[test]
fn serve_logs_no_secret() {
    use serde_json::{Value, json};
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.sqlite").display());
    let password = "tr0ub4dor & 3 horses";
    add_user(&db, "ann", "admin", password);
    let log = dir.path().join("serve.log");
    let (child, addr) = serve_logging(&db, Some(&log));
    let login = |pw: &str| {
        request(
            &addr,
            "POST",
            "/api/v1/auth/login",
            None,
            Some(&json!({ "username": "ann", "password": pw })),
        )
    };
    let (code, _) = login("not the password at all");
    assert_eq!(code, 401);
    let (code, body) = login(password);
    assert_eq!(code, 200, "{body}");
    let tokens: Value = serde_json::from_str(&body).unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let (code, users) = request(&addr, "GET", "/api/v1/users", Some(&access), None);
    assert_eq!(code, 200, "{users}");
    let (code, body) = request(
        &addr,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(&json!({ "refresh_token": refresh })),
    );
    assert_eq!(code, 200, "{body}");
    let next: Value = serde_json::from_str(&body).unwrap();
    let (code, _) = request(
        &addr,
        "POST",
        "/api/v1/auth/refresh",
        None,
        Some(&json!({ "refresh_token": refresh })),
    );
    assert_eq!(code, 401);
    let (code, _) = request(
        &addr,
        "POST",
        "/api/v1/auth/logout",
        Some(next["access_token"].as_str().unwrap()),
        None,
    );
    assert_eq!(code, 401, "the reuse ended the login");
    stop(child);

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 3,
        "the log is too short to mean anything:\n{text}"
    );
    let hash = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let store = dexlab_store::Store::connect(&db).await.unwrap();
            store
                .user_by_name("ann")
                .await
                .unwrap()
                .unwrap()
                .password_hash
                .unwrap()
        })
    };
    for (what, secret) in [
        ("the password", password),
        ("a wrong password", "not the password at all"),
        ("the access token", access.as_str()),
        ("the refresh token", refresh.as_str()),
        (
            "the next refresh token",
            next["refresh_token"].as_str().unwrap(),
        ),
        ("the password hash", hash.as_str()),
        ("an argon2 hash", "$argon2id$"),
    ] {
        assert!(!text.contains(secret), "{what} is in the server's log");
    }
}

/// Adds account `name` with `role` and `password` through `dexlab users add`.
pub(crate) fn add_user(db: &str, name: &str, role: &str, password: &str) {
    let mut add = dexlab()
        .args(["users", "add", name, "--role", role, "--password-stdin"])
        .env("DATABASE_URL", db)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    assert!(add.wait().unwrap().success());
}

/// The whole API, generated from its own OpenAPI description by schemathesis (examples,
/// boundary values and random inputs, as an admin so that every route is reached): no answer is
/// a 5xx, and every documented answer matches its schema.
#[test]
fn the_api_holds_up_to_schemathesis() {
    let tool =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".dexlab/venv/bin/schemathesis");
    assert!(
        tool.is_file(),
        "{} is missing: run `bash scripts/setup.sh`",
        tool.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.sqlite").display());
    let password = "schemathesis admin password";
    add_user(&db, "ann", "admin", password);
    let (child, addr) = serve_with(
        &db,
        None,
        &[
            "--api-rate",
            "100000",
            "--api-burst",
            "100000",
            "--login-rate",
            "100000",
        ],
    );
    let (code, body) = request(
        &addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&serde_json::json!({ "username": "ann", "password": password })),
    );
    assert_eq!(code, 200, "{body}");
    let tokens: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = tokens["access_token"].as_str().unwrap();
    let out = std::process::Command::new(&tool)
        .arg("run")
        .arg(format!("http://{addr}/api/v1/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", "20", "--seed", "17", "--workers", "2"])
        // Logging out would end the token the run uses.
        .args(["--exclude-path", "/api/v1/auth/logout"])
        .args([
            "--no-color",
            "--output-sanitize",
            "true",
            "--request-timeout",
            "20",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    stop(child);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains(token), "schemathesis printed the token");
}

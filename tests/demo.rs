//! `dexlab demo`: the whole loop on a small chain, to the dashboard, whose URL and first admin's
//! one-time password it prints; Ctrl-C stops every process it started (the chain's port is
//! free again); a second run reuses what the first made and does not make a second admin.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::serve::request;
use crate::support::*;

/// Starts the demo; returns it, the dashboard's address, the password line, and its stderr.
fn start(out: &std::path::Path, port: u16) -> (Child, String, String, mpsc::Receiver<String>) {
    let mut child = dexlab()
        .args([
            "demo",
            "--blocks",
            "600",
            "--population",
            "6",
            "--generations",
            "2",
        ])
        .args([
            "--folds",
            "2",
            "--trade-blocks",
            "10",
            "--bind",
            "127.0.0.1:0",
        ])
        .args(["--port", &port.to_string()])
        .arg("--out")
        .arg(out)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let mut err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        let _ = tx.send(text);
    });
    let (ltx, lrx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = ltx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let (mut addr, mut pw) = (None, None);
    while addr.is_none() || pw.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lrx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!(
                "the demo did not reach the dashboard: {}",
                rx.recv().unwrap_or_default()
            )
        });
        if let Some(u) = line.strip_prefix("dashboard: http://") {
            addr = Some(u.trim_end_matches('/').to_owned());
        } else if line.starts_with("one-time password:") || line.contains("account `admin` exists")
        {
            pw = Some(line);
        }
    }
    (child, addr.unwrap(), pw.unwrap(), rx)
}

/// Ctrl-C: the demo and everything it started stop.
fn interrupt(mut child: Child, port: u16) {
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the demo did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the demo's chain still answers after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_demo_runs_the_loop_to_the_dashboard_stops_on_ctrl_c_and_reuses_its_work() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("demo");
    let port = free_port();
    let (child, addr, pw, err) = start(&out, port);
    let password = pw
        .strip_prefix("one-time password: ")
        .unwrap_or_else(|| panic!("{pw}"))
        .trim()
        .to_owned();
    assert_eq!(request(&addr, "GET", "/healthz", None, None).0, 200);
    let (code, body) = request(
        &addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "username": "admin", "password": password })),
    );
    assert_eq!(code, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let (code, body) = request(&addr, "GET", "/api/v1/experiments", Some(&token), None);
    assert_eq!(code, 200, "{body}");
    for name in ["demo-arb", "demo-gated"] {
        assert!(body.contains(name), "{name} missing: {body}");
    }
    // The notebooks read the demo's outputs where they are by default.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".dexlab/notebooks-venv/bin/python");
    let o = std::process::Command::new(&python)
        .arg(root.join("notebooks/run.py"))
        .arg(work.path().join("executed"))
        .env_remove("DATABASE_URL")
        .env("DEXLAB_OUT", &out)
        .env("DEXLAB_BIN", env!("CARGO_BIN_EXE_dexlab"))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "the notebooks on the demo's outputs:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    interrupt(child, port);
    let text = err.recv().unwrap();
    for stage in 1..=9 {
        assert!(
            text.contains(&format!("== demo {stage}/9")),
            "stage {stage} missing:\n{text}"
        );
    }
    assert!(text.contains("stopping what it started"), "{text}");
    // Either promoted and traded, or said plainly that nothing was.
    assert!(
        text.contains("paper-trade the deployment") || text.contains("nothing is promoted"),
        "{text}"
    );

    // Again: reused, and no second admin.
    let (child, _, pw, err) = start(&out, port);
    assert!(pw.contains("account `admin` exists"), "{pw}");
    interrupt(child, port);
    let text = err.recv().unwrap();
    assert!(
        text.contains("reusing") && text.contains("demo-gate"),
        "{text}"
    );
}

//! Jobs launched through the API of `dexlab serve`: a researcher launches an evolve run, a
//! backtest and a training run and watches them finish (with progress, results linked to the
//! experiment and the model); a viewer cannot launch; bad requests are refused with what was
//! wrong; a running job is cancelled (its experiment left interrupted); and a server killed
//! while one job runs and another waits loses neither: the queued job waits in the store, the
//! running one is requeued once its heartbeat is stale, and the killed server's child ends with
//! it.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{add_user, request, serve_with, stop};
use crate::support::*;

pub(crate) const PASSWORD: &str = "researcher password 8812";

pub(crate) fn login(addr: &str, user: &str) -> String {
    let (code, body) = request(
        addr,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(&json!({ "username": user, "password": PASSWORD })),
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub(crate) fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (code, text) = request(addr, method, path, Some(token), body.as_ref());
    let v = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
    (code, v)
}

pub(crate) fn launch(addr: &str, token: &str, req: Value) -> i64 {
    let (code, v) = call(addr, "POST", "/api/v1/jobs", token, Some(req.clone()));
    assert_eq!(code, 202, "{req}: {v}");
    assert_eq!(v["state"], "queued", "{v}");
    v["id"].as_i64().unwrap()
}

pub(crate) fn job(addr: &str, token: &str, id: i64) -> Value {
    let (code, v) = call(addr, "GET", &format!("/api/v1/jobs/{id}"), token, None);
    assert_eq!(code, 200, "{v}");
    v
}

/// Waits until job `id` satisfies `done`; returns it.
pub(crate) fn wait_job(
    addr: &str,
    token: &str,
    id: i64,
    what: &str,
    secs: u64,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let j = job(addr, token, id);
        if done(&j) {
            return j;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not get {what} in {secs} s: {j:#}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub(crate) fn finished(addr: &str, token: &str, id: i64) -> Value {
    let j = wait_job(addr, token, id, "finished", 600, |j| {
        ["succeeded", "failed", "cancelled"].contains(&j["state"].as_str().unwrap_or(""))
    });
    assert_eq!(j["state"], "succeeded", "{j:#}");
    j
}

fn start(db: &str, root: &Path, jobs: &Path, log: &Path) -> (Child, String) {
    serve_with(
        db,
        Some(log),
        &[
            "--data-root",
            root.to_str().unwrap(),
            "--jobs-dir",
            jobs.to_str().unwrap(),
            "--job-stale-secs",
            "3",
        ],
    )
}

fn long_evolve(name: &str) -> Value {
    json!({ "kind": "evolve", "dataset": "chain/base", "strategy": "cross-venue-arb",
            "population": 40, "generations": 2000, "folds": 2, "name": name })
}

#[test]
fn researchers_launch_watch_and_cancel_jobs_and_a_killed_server_loses_none() {
    let chain = Chain::up(11, 300);
    let work = tempfile::tempdir().unwrap();
    let root = work.path().join("data");
    ingest(
        &chain.url(),
        &chain.manifest_path,
        &root.join("chain/base"),
        &[],
    );
    let o = dexlab()
        .args(["features", "build", "--data"])
        .arg(root.join("chain/base"))
        .arg("--out")
        .arg(root.join("feat"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let jobs_dir = work.path().join("jobs");
    let log = work.path().join("serve.log");
    let db = format!("sqlite://{}", work.path().join("store.sqlite").display());
    add_user(&db, "rita", "researcher", PASSWORD);
    add_user(&db, "vic", "viewer", PASSWORD);
    let (server, addr) = start(&db, &root, &jobs_dir, &log);
    let rita = login(&addr, "rita");
    let vic = login(&addr, "vic");

    // What a job can use, by name under the data root.
    let (code, inputs) = call(&addr, "GET", "/api/v1/datasets", &rita, None);
    assert_eq!(code, 200, "{inputs}");
    assert_eq!(inputs["datasets"], json!(["chain/base"]));
    assert_eq!(inputs["features"], json!(["feat"]));

    // A viewer cannot launch; bad requests say what is wrong.
    let backtest =
        json!({ "kind": "backtest", "dataset": "chain/base", "strategy": "cross-venue-arb" });
    let (code, v) = call(&addr, "POST", "/api/v1/jobs", &vic, Some(backtest.clone()));
    assert_eq!(code, 403, "{v}");
    for (req, says) in [
        (
            json!({ "kind": "backtest", "dataset": "chain/nope", "strategy": "cross-venue-arb" }),
            "no such folder",
        ),
        (
            json!({ "kind": "backtest", "dataset": "../data/chain/base", "strategy": "cross-venue-arb" }),
            "a path under the data root",
        ),
        (
            json!({ "kind": "backtest", "dataset": "feat", "strategy": "cross-venue-arb" }),
            "no dataset.json",
        ),
        (
            json!({ "kind": "backtest", "dataset": "chain/base", "strategy": "moonshot" }),
            "strategy must be one of",
        ),
        (
            json!({ "kind": "backtest", "dataset": "chain/base", "strategy": "cross-venue-arb", "params": { "no_such": 1 } }),
            "params",
        ),
        (
            json!({ "kind": "evolve", "dataset": "chain/base", "strategy": "cross-venue-arb", "config": "[ga\n" }),
            "config is not TOML",
        ),
        (
            json!({ "kind": "evolve", "dataset": "chain/base", "strategy": "cross-venue-arb", "name": "--force" }),
            "name must be",
        ),
        (
            json!({ "kind": "train", "features": "feat", "model": "forest", "task": "regression" }),
            "model must be one of",
        ),
        (json!({ "kind": "shell", "command": "rm -rf /" }), "kind"),
    ] {
        let (code, v) = call(&addr, "POST", "/api/v1/jobs", &rita, Some(req.clone()));
        assert!(code == 400 || code == 422, "{req}: {code} {v}");
        assert!(
            v["message"].as_str().unwrap_or("").contains(says),
            "{req}: {v}"
        );
    }

    // An evolve run: progress to the end, the experiment it made.
    let evolve = launch(
        &addr,
        &rita,
        json!({
            "kind": "evolve", "dataset": "chain/base", "strategy": "cross-venue-arb",
            "population": 6, "generations": 2, "folds": 2, "seed": 3, "name": "from-the-dashboard",
        }),
    );
    let j = finished(&addr, &rita, evolve);
    let total = j["progress"]["total"].as_u64().unwrap();
    assert!(total > 0 && j["progress"]["done"] == total, "{j:#}");
    let experiment = j["result"]["experiment_id"]
        .as_i64()
        .expect("an experiment id");
    let (code, e) = call(
        &addr,
        "GET",
        &format!("/api/v1/experiments/{experiment}"),
        &rita,
        None,
    );
    assert_eq!(code, 200, "{e}");
    assert_eq!(e["experiment"]["name"], "from-the-dashboard", "{e}");
    assert_eq!(e["experiment"]["status"], "done", "{e}");

    // A backtest and a training run.
    let bt = launch(&addr, &rita, backtest);
    let j = finished(&addr, &rita, bt);
    assert!(j["result"]["metrics"]["net_pnl_quote"].is_number(), "{j:#}");
    let train = launch(
        &addr,
        &rita,
        json!({
            "kind": "train", "features": "feat", "model": "linear", "task": "regression", "epochs": 2,
            "name": "dash-linear",
        }),
    );
    let j = finished(&addr, &rita, train);
    assert_eq!(j["result"]["model_name"], "dash-linear", "{j:#}");
    let (code, m) = call(&addr, "GET", "/api/v1/models/dash-linear", &rita, None);
    assert_eq!(code, 200, "{m}");

    // Cancel a running job: its process is stopped and its experiment left interrupted.
    let long = launch(&addr, &rita, long_evolve("cancelled-run"));
    wait_job(&addr, &rita, long, "progress", 120, |j| {
        j["state"] == "running" && j["progress"]["done"].as_u64() > Some(0)
    });
    let (code, v) = call(
        &addr,
        "POST",
        &format!("/api/v1/jobs/{long}/cancel"),
        &rita,
        None,
    );
    assert_eq!(code, 202, "{v}");
    let j = wait_job(&addr, &rita, long, "cancelled", 60, |j| {
        j["state"] == "cancelled"
    });
    assert_eq!(j["result"], Value::Null, "{j:#}");
    let (_, e) = call(
        &addr,
        "GET",
        "/api/v1/experiments/cancelled-run",
        &rita,
        None,
    );
    assert_eq!(e["experiment"]["status"], "interrupted", "{e}");
    let (code, v) = call(
        &addr,
        "POST",
        &format!("/api/v1/jobs/{long}/cancel"),
        &rita,
        None,
    );
    assert_eq!(code, 409, "{v}");

    // The server killed while a job runs and another waits.
    let running = launch(&addr, &rita, long_evolve("survivor"));
    let queued = launch(
        &addr,
        &rita,
        json!({
            "kind": "backtest", "dataset": "chain/base", "strategy": "cross-venue-arb", "seed": 2,
        }),
    );
    wait_job(&addr, &rita, running, "progress", 120, |j| {
        j["state"] == "running" && j["progress"]["done"].as_u64() > Some(0)
    });
    let mut server = server;
    server.kill().unwrap();
    server.wait().unwrap();
    // Its child goes with it: the experiment is marked interrupted, not left running.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = dexlab()
            .args(["experiments", "show", "survivor", "--json"])
            .env("DATABASE_URL", &db)
            .output()
            .unwrap();
        let v = json_of(&o);
        if v["experiment"]["status"] == "interrupted" || v["status"] == "interrupted" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the orphaned job still runs: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (server, addr) = start(&db, &root, &jobs_dir, &log);
    let rita = login(&addr, "rita");
    // The queued job runs; the running one is taken again once its heartbeat is stale.
    finished(&addr, &rita, queued);
    let j = wait_job(&addr, &rita, running, "a second attempt", 120, |j| {
        j["state"] == "running" && j["attempts"] == 2 && j["progress"]["done"].as_u64() > Some(0)
    });
    // Its log holds both attempts.
    assert!(
        j["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("attempt 2")),
        "{j:#}"
    );
    let (code, v) = call(
        &addr,
        "POST",
        &format!("/api/v1/jobs/{running}/cancel"),
        &rita,
        None,
    );
    assert_eq!(code, 202, "{v}");
    wait_job(&addr, &rita, running, "cancelled", 60, |j| {
        j["state"] == "cancelled"
    });

    // The audit log has every launch and cancel.
    let admin_pw = PASSWORD;
    add_user(&db, "ada", "admin", admin_pw);
    let ada = login(&addr, "ada");
    let (_, audit) = call(&addr, "GET", "/api/v1/audit?limit=500", &ada, None);
    let count = |action: &str| {
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["action"] == action)
            .count()
    };
    assert_eq!(count("job_launched"), 6, "{audit:#}");
    assert_eq!(count("job_cancelled"), 2, "{audit:#}");
    stop(server);
}

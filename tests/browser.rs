//! The dashboard in a real browser: Debian's headless Chromium, driven through chromedriver's
//! WebDriver protocol. An operator logs in, opens an experiment, promotes it from the
//! deployments page, watches the paper session of that deployment trade on the live page (over
//! the WebSocket, without reloading), and presses the kill switch. Screenshots of each step go
//! to `$CARGO_TARGET_TMPDIR/dexlab-screenshots/`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{add_user, serve_with, stop};
use crate::support::*;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const PASSWORD: &str = "operator password 4567";

/// A WebDriver session of a headless Chromium.
struct Browser {
    driver: Child,
    base: String,
    http: reqwest::blocking::Client,
    shots: std::path::PathBuf,
}

impl Browser {
    fn start() -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (scripts/setup.sh installs Debian's chromium-driver)");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http.get(format!("{url}/status")).send().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1000"],
            },
        }}});
        let v: Value = http
            .post(format!("{url}/session"))
            .json(&caps)
            .send()
            .unwrap()
            .json()
            .unwrap();
        let id = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {v}"));
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dexlab-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Browser {
            driver,
            base: format!("{url}/session/{id}"),
            http,
            shots,
        }
    }

    fn cmd(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        let v: Value = req.send().unwrap().json().unwrap();
        assert!(
            v["value"].get("error").is_none(),
            "WebDriver {path}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", json!({ "url": url }));
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            reqwest::Method::POST,
            "/element",
            json!({ "using": "css selector", "value": css }),
        );
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}; the page says:\n{}", self.text()))
            .to_owned()
    }

    fn type_in(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            json!({ "text": text }),
        );
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            json!({}),
        );
    }

    fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            json!({ "script": script, "args": [] }),
        )
    }

    fn text(&self) -> String {
        self.js("return document.body.innerText;")
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    fn url(&self) -> String {
        self.cmd(reqwest::Method::GET, "/url", Value::Null)
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn screenshot(&self, name: &str) {
        use base64::Engine as _;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", Value::Null);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap())
            .unwrap();
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// Waits until `script` returns true.
    fn wait_for(&self, what: &str, script: &str, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.js(script) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{what} did not happen within {secs} s; the page says:\n{}\nimages: {}",
                self.text(),
                self.js("return [...document.images].map(i => `${i.src} ${i.complete} ${i.naturalWidth}`).join('; ');")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.delete(&self.base).send();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn an_operator_promotes_watches_a_paper_trade_and_presses_the_kill_switch_in_chromium() {
    let chain = Chain::up_live(7, 400, 250);
    let data = chain.dir.path().join("ds");
    ingest(&chain.url(), &chain.manifest_path, &data, &[]);
    let work = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", work.path().join("store.sqlite").display());
    let o = dexlab()
        .args([
            "evolve",
            "--strategy",
            "cross-venue-arb",
            "--seed",
            "3",
            "--folds",
            "2",
        ])
        .args([
            "--population",
            "6",
            "--generations",
            "2",
            "--quiet",
            "--name",
            "arb",
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(work.path().join("arb"))
        .env("DATABASE_URL", &db)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    add_user(&db, "olga", "operator", PASSWORD);
    let root = chain.dir.path().to_str().unwrap().to_owned();
    let (server, addr) = serve_with(&db, None, &["--data-root", &root]);
    let site = format!("http://{addr}");
    let b = Browser::start();

    // Log in; the login page sends us on to the experiments.
    b.go(&format!("{site}/experiments"));
    assert!(b.url().contains("/login?next="), "{}", b.url());
    b.type_in("input[name=username]", "olga");
    b.type_in("input[name=password]", PASSWORD);
    b.screenshot("01-login");
    b.click("button[type=submit]");
    b.wait_for(
        "the experiments page",
        "return location.pathname === '/experiments';",
        20,
    );
    assert!(b.text().contains("arb"), "{}", b.text());
    b.screenshot("02-experiments");

    // The experiment: its out-of-sample results next to the baselines, and its charts.
    b.click("table.data tbody a");
    b.wait_for(
        "the experiment page",
        "return location.pathname.startsWith('/experiments/');",
        20,
    );
    let text = b.text();
    assert!(
        text.contains("Out of sample, next to every baseline"),
        "{text}"
    );
    b.wait_for(
        "the charts",
        "return [...document.images].length >= 4 && [...document.images].every(i => i.complete && i.naturalWidth > 0);",
        60,
    );
    b.screenshot("03-experiment");

    // Promote it from the deployments page.
    b.go(&format!("{site}/deployments"));
    b.type_in("input[name=experiment]", "arb");
    b.type_in("input[name=name]", "prod");
    b.screenshot("04-promote");
    b.click("form.card button[type=submit]");
    b.wait_for(
        "the deployment page",
        "return location.pathname === '/deployments/prod';",
        30,
    );
    assert!(b.text().contains("v1"), "{}", b.text());
    b.screenshot("05-deployed");

    // Its paper session, in its own process.
    let mut engine = dexlab()
        .args(["live", "--rpc", &format!("ws://127.0.0.1:{}", chain.port)])
        .args(["--mode", "paper", "--deployment", "prod"])
        .arg("--manifest")
        .arg(&chain.manifest_path)
        .arg("--session")
        .arg(work.path().join("session"))
        .args(["--blocks", "100000"])
        .env("DATABASE_URL", &db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // The live page: a paper trade arrives over the WebSocket, without reloading.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        b.go(&format!("{site}/live"));
        if b.js("return document.querySelector('table.data tbody a') !== null;") == json!(true) {
            break;
        }
        assert!(Instant::now() < deadline, "the session did not show up");
        std::thread::sleep(Duration::from_millis(500));
    }
    b.click("table.data tbody a");
    b.wait_for(
        "the live page",
        "return !!document.getElementById('live');",
        20,
    );
    b.js("window.__loaded = performance.timeOrigin; return true;");
    b.wait_for(
        "a paper fill",
        "const l = document.getElementById('live'); return l.dataset.connected === 'true' && Number(l.dataset.fills || 0) > 0 && Number(l.dataset.received || 0) > 3 && Number(l.dataset.spreads || 0) > 0;",
        180,
    );
    assert_eq!(
        b.js("return window.__loaded === performance.timeOrigin;"),
        json!(true),
        "the page reloaded"
    );
    b.screenshot("06-live-trading");

    // The kill switch.
    b.type_in("form.card input[name=reason]", "browser test");
    b.click("#kill");
    b.wait_for(
        "the halt on the live page",
        "const h = document.querySelector('[data-key=halted]'); return !!h && h.textContent.includes('kill_switch');",
        90,
    );
    b.screenshot("07-killed");

    // A backtest launched from the Jobs page (an operator is a researcher too); the job's page
    // reloads itself until the job is over.
    b.go(&format!("{site}/jobs"));
    b.type_in("form.card input[name=dataset]", "ds");
    b.type_in("form.card input[name=strategy]", "cross-venue-arb");
    b.screenshot("08-launch");
    b.click("form.card button[type=submit]");
    b.wait_for(
        "the job's page",
        "return location.pathname.startsWith('/jobs/');",
        20,
    );
    b.wait_for(
        "the backtest to succeed",
        "const s = document.getElementById('job-state'); return !!s && s.textContent.trim() === 'succeeded';",
        180,
    );
    assert!(b.text().contains("net_pnl_quote"), "{}", b.text());
    b.screenshot("09-job-done");

    engine.kill().unwrap();
    engine.wait().unwrap();
    drop(b);
    stop(server);
}

//! Shared fixtures: a `dexlab chain up` child process, dataset comparison, a faulty TCP proxy.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use dexlab_data::dataset;
use dexlab_data::manifest::ChainManifest;

pub fn dexlab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dexlab"))
}

/// Runs `sql` on the test PostgreSQL server with its own client: the store creates tables, the
/// e2e tests create and drop their databases here.
pub fn psql(sql: &str) {
    let o = Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .output()
        .expect("psql (run scripts/ensure-postgres.sh)");
    assert!(
        o.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A chain served by `dexlab chain up`; stopped on drop.
pub struct Chain {
    child: Child,
    pub port: u16,
    pub manifest_path: PathBuf,
    pub manifest: ChainManifest,
    pub dir: tempfile::TempDir,
}

impl Chain {
    /// A chain that keeps trading, a block every `block_time_ms`, after `blocks` blocks of
    /// history.
    pub fn up_live(seed: u64, blocks: u64, block_time_ms: u64) -> Chain {
        Self::start(
            seed,
            blocks,
            &["--live", "--block-time-ms", &block_time_ms.to_string()],
        )
    }

    pub fn up(seed: u64, blocks: u64) -> Chain {
        Self::start(seed, blocks, &[])
    }

    fn start(seed: u64, blocks: u64, extra: &[&str]) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let manifest_path = dir.path().join("manifest.json");
        let port = free_port();
        let child = dexlab()
            .args([
                "chain",
                "up",
                "--port",
                &port.to_string(),
                "--seed",
                &seed.to_string(),
                "--blocks",
                &blocks.to_string(),
            ])
            .arg("--manifest")
            .arg(&manifest_path)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn dexlab chain up");
        let deadline = Instant::now() + Duration::from_secs(180);
        while !manifest_path.exists() {
            assert!(
                Instant::now() < deadline,
                "chain up did not write its manifest in time"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let manifest = ChainManifest::load(&manifest_path).unwrap();
        Chain {
            child,
            port,
            manifest_path,
            manifest,
            dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(self.url().parse().unwrap())
            .erased()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // SIGTERM lets `chain up` stop its anvil; SIGKILL only if it does not exit.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `dexlab data ingest` to completion and returns its JSON report.
pub fn ingest(rpc: &str, manifest: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let o = dexlab()
        .args(["data", "ingest", "--rpc", rpc, "--json", "--quiet"])
        .arg("--manifest")
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ingest failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Every table of a dataset, concatenated per table, for equality checks.
#[derive(Debug, PartialEq)]
pub struct Tables {
    pub logs: Vec<dexlab_data::RawLog>,
    pub blocks: Vec<dexlab_data::BlockRow>,
    pub swaps: Vec<arrow::array::RecordBatch>,
    pub liquidity: Vec<arrow::array::RecordBatch>,
    pub transactions: Option<Vec<dexlab_data::TxRow>>,
}

fn concat(root: &Path, table: &str) -> Vec<arrow::array::RecordBatch> {
    let batches = dataset::read_table(root, table).unwrap();
    if batches.is_empty() {
        return vec![];
    }
    vec![arrow::compute::concat_batches(&batches[0].schema(), &batches).unwrap()]
}

pub fn tables(root: &Path) -> Tables {
    Tables {
        logs: dataset::read_all_logs(root).unwrap(),
        blocks: dataset::read_all_blocks(root).unwrap(),
        swaps: concat(root, dataset::SWAPS),
        liquidity: concat(root, dataset::LIQUIDITY_EVENTS),
        transactions: dataset::read_all_transactions(root).unwrap(),
    }
}

pub async fn mine(p: &DynProvider, n: u64) {
    for _ in 0..n {
        let _: String = p.raw_request("evm_mine".into(), ()).await.unwrap();
    }
}

/// The JSON a successful command printed on stdout (its output in the failure message).
pub fn json_of(o: &std::process::Output) -> serde_json::Value {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

/// A NATS server with JetStream of the test's own, stopped on drop.
pub use dexlab_queue::test_utils::NatsServer as Nats;

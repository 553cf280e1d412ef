//! The anvil child process.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use tokio::process::{Child, Command};

use crate::error::{DataError, Result};
use crate::tools::find_anvil;

/// A running anvil; killed when dropped.
pub struct AnvilProcess {
    child: Child,
    pub port: u16,
    pub chain_id: u64,
    pub url: String,
}

impl std::fmt::Debug for AnvilProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnvilProcess")
            .field("url", &self.url)
            .finish()
    }
}

impl AnvilProcess {
    /// Starts anvil on 127.0.0.1:`port` with manual mining (blocks are mined by `evm_mine`),
    /// transactions ordered by fee as Base's sequencer orders them (see [`super::deploy`]'s fee
    /// rule; equal fees keep their arrival order) and a fixed genesis timestamp, and waits until it
    /// answers.
    pub async fn spawn(port: u16, chain_id: u64, genesis_timestamp: u64) -> Result<Self> {
        let bin = find_anvil()?;
        // A port that answers already would pass the readiness check below with someone else's node.
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return Err(DataError::Devnet(format!(
                "port {port} is not free ({e}): stop what listens there or choose another --port"
            )));
        }
        // anvil must not outlive us, even when we are killed without a chance to stop it: where
        // util-linux's setpriv exists, it gets SIGTERM when its parent dies.
        let setpriv = Path::new("/usr/bin/setpriv");
        let mut cmd = if setpriv.is_file() {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "TERM", "--"]).arg(&bin);
            c
        } else {
            Command::new(&bin)
        };
        let mut child = cmd
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--chain-id",
                &chain_id.to_string(),
            ])
            .args([
                "--accounts",
                "20",
                "--balance",
                "1000000",
                "--timestamp",
                &genesis_timestamp.to_string(),
            ])
            .args([
                "--no-mining",
                "--order",
                "fees",
                "--gas-limit",
                "60000000",
                "--silent",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| DataError::Devnet(format!("cannot start {}: {e}", bin.display())))?;
        let url = format!("http://127.0.0.1:{port}");
        let provider = ProviderBuilder::new().connect_http(url.parse().expect("valid url"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child
                .try_wait()
                .map_err(|e| DataError::Devnet(e.to_string()))?
            {
                let mut err = String::new();
                if let Some(mut s) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ = s.read_to_string(&mut err).await;
                }
                return Err(DataError::Devnet(format!(
                    "anvil exited with {status} before serving on port {port} (is the port taken?): {}",
                    err.trim()
                )));
            }
            if let Ok(id) = provider.get_chain_id().await {
                if id != chain_id {
                    return Err(DataError::Devnet(format!(
                        "port {port} answers with chain id {id}, not {chain_id}: another node is already serving there"
                    )));
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(DataError::Devnet(format!(
                    "anvil did not answer on port {port} within 20 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            child,
            port,
            chain_id,
            url,
        })
    }

    pub fn provider(&self) -> DynProvider {
        ProviderBuilder::new()
            .disable_recommended_fillers()
            .connect_http(self.url.parse().expect("valid url"))
            .erased()
    }

    /// Waits until the process exits (e.g. killed by a signal).
    pub async fn wait(&mut self) -> Result<()> {
        self.child
            .wait()
            .await
            .map_err(|e| DataError::Devnet(e.to_string()))?;
        Ok(())
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

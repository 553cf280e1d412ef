//! A loopback HTTP proxy that drops connections, stalls, and answers 429 and 503 on a seeded
//! share of requests, forwarding the rest to the node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Default, Clone, Copy)]
pub struct FaultStats {
    pub forwarded: u64,
    pub dropped: u64,
    pub stalled: u64,
    pub too_many: u64,
    pub server_errors: u64,
}

pub struct FaultyProxy {
    port: u16,
    stats: Arc<Mutex<FaultStats>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 message (headers + Content-Length body). None at EOF.
async fn read_message(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

fn status(code: u16, reason: &str) -> Vec<u8> {
    format!("HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{reason}", reason.len()).into_bytes()
}

/// A JSON-RPC "method not found" answer to every call of `req` (one call or a batch) when any of
/// them calls `method`.
fn method_not_found(req: &[u8], method: &str) -> Option<Vec<u8>> {
    let body_at = req.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let body: serde_json::Value = serde_json::from_slice(&req[body_at..]).ok()?;
    let calls = match &body {
        serde_json::Value::Array(a) => a.clone(),
        one => vec![one.clone()],
    };
    if !calls.iter().any(|c| c["method"] == method) {
        return None;
    }
    let errors: Vec<serde_json::Value> = calls
        .iter()
        .map(|c| {
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": c["id"],
                "error": {"code": -32601, "message": format!("the method {method} does not exist/is not available")},
            })
        })
        .collect();
    let answer = if body.is_array() {
        serde_json::Value::Array(errors)
    } else {
        errors.into_iter().next()?
    }
    .to_string();
    Some(
        format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        )
        .into_bytes(),
    )
}

impl FaultyProxy {
    /// `fault_rate`: share of requests that get a fault, split evenly among the four kinds.
    pub async fn start(upstream: u16, seed: u64, fault_rate: f64) -> FaultyProxy {
        Self::start_with(upstream, seed, fault_rate, None).await
    }

    /// A proxy without faults whose node does not serve `method`, as some providers do not.
    pub async fn hiding(upstream: u16, method: &'static str) -> FaultyProxy {
        Self::start_with(upstream, 0, 0.0, Some(method)).await
    }

    async fn start_with(
        upstream: u16,
        seed: u64,
        fault_rate: f64,
        hide: Option<&'static str>,
    ) -> FaultyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let stats = Arc::new(Mutex::new(FaultStats::default()));
        let rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        // The first four requests get one fault of each kind, so every kind is exercised.
        let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let st = stats.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let (st, rng, served) = (st.clone(), rng.clone(), served.clone());
                tokio::spawn(async move {
                    while let Some(req) = read_message(&mut client).await {
                        let roll: f64 = rng.lock().unwrap().random();
                        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if let Some(answer) = hide.and_then(|m| method_not_found(&req, m)) {
                            if client.write_all(&answer).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        let kind = if fault_rate > 0.0 && n < 4 {
                            n as u8
                        } else if roll < fault_rate {
                            (roll / fault_rate * 4.0) as u8
                        } else {
                            9
                        };
                        match kind {
                            0 => {
                                st.lock().unwrap().dropped += 1;
                                return; // close without an answer
                            }
                            1 => {
                                st.lock().unwrap().stalled += 1;
                                tokio::time::sleep(Duration::from_secs(3)).await;
                                return;
                            }
                            2 => {
                                st.lock().unwrap().too_many += 1;
                                if client
                                    .write_all(&status(429, "Too Many Requests"))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            3 => {
                                st.lock().unwrap().server_errors += 1;
                                if client
                                    .write_all(&status(503, "Service Unavailable"))
                                    .await
                                    .is_err()
                                {
                                    return;
                                }
                            }
                            _ => {
                                let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await
                                else {
                                    return;
                                };
                                if up.write_all(&req).await.is_err() {
                                    return;
                                }
                                let Some(resp) = read_message(&mut up).await else {
                                    return;
                                };
                                st.lock().unwrap().forwarded += 1;
                                if client.write_all(&resp).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        FaultyProxy { port, stats, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn stats(&self) -> FaultStats {
        *self.stats.lock().unwrap()
    }
}

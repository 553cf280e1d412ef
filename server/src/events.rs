//! Real-time events from trading sessions that run in their own processes: one reader of the
//! store's `live_events` table fans each new row out to every WebSocket client.
//!
//! The reader tails the table by id. On PostgreSQL it is woken by `NOTIFY dexlab_live`, sent by
//! the engine's insert in the same statement, so an event reaches the server within a few
//! milliseconds of its commit, from any process on any machine; it also reads once a second in
//! case a notification was lost with a dropped connection. On SQLite (the embedded default) it
//! polls every [`POLL`]. Either way the table is the source of truth: a reader that falls behind
//! or restarts loses nothing that is still in it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dexlab_store::Store;
use serde::Deserialize;
use tokio::sync::broadcast;

use crate::AppState;
use crate::error::{ApiError, ApiQuery};

/// How often the SQLite reader looks for new events.
pub const POLL: Duration = Duration::from_millis(50);
/// Events a slow client may be behind before it is told it missed some.
const BUFFER: usize = 4096;
/// Events sent to a client that names a session, before the new ones.
const BACKFILL: u32 = 600;

/// One event, serialised once for every client.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: i64,
    pub session_id: i64,
    pub json: Arc<str>,
}

/// The fan-out of one reader to many clients.
pub struct Hub {
    tx: broadcast::Sender<Event>,
}

impl Hub {
    /// Starts the reader of `store`.
    pub async fn start(store: Store) -> Result<Arc<Hub>, dexlab_store::StoreError> {
        // The cursor is read here, before any client subscribes, not in the reader task: an
        // event added between a first client's backfill and the task's first query would
        // otherwise be in neither (seen once, as a skipped block on the live page).
        let last = store.last_live_event_id().await?;
        let (tx, _) = broadcast::channel(BUFFER);
        let hub = Arc::new(Hub { tx: tx.clone() });
        tokio::spawn(read(store, tx, last));
        Ok(hub)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}

fn message(row: &dexlab_store::LiveEventRow) -> Event {
    let json = serde_json::json!({ "type": "event", "event": row }).to_string();
    Event {
        id: row.id,
        session_id: row.session_id,
        json: json.into(),
    }
}

async fn read(store: Store, tx: broadcast::Sender<Event>, mut last: i64) {
    let mut listener = None;
    let mut listening = store.backend() == "postgres";
    loop {
        if listening && listener.is_none() {
            match store.listen_live().await {
                Ok(l) => listener = l,
                Err(e) => {
                    tracing::warn!("live events: LISTEN: {e}; polling until it works again");
                    listening = false;
                }
            }
        }
        match listener.as_mut() {
            Some(l) => {
                if let Ok(Err(e)) = tokio::time::timeout(Duration::from_secs(1), l.wait()).await {
                    tracing::warn!("live events: {e}; listening again");
                    listener = None;
                }
            }
            None => {
                tokio::time::sleep(POLL).await;
                // Try LISTEN again now and then.
                listening = store.backend() == "postgres";
            }
        }
        loop {
            match store.live_events_after(last, 1000).await {
                Ok(rows) => {
                    let full = rows.len() == 1000;
                    for r in &rows {
                        last = r.id;
                        // No client is no error.
                        let _ = tx.send(message(r));
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!("live events: {e}");
                    break;
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveQuery {
    /// Only this session's events, after its recent ones.
    pub session: Option<i64>,
}

/// Whether the upgrade comes from a page of this server (cross-site WebSocket hijacking).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(o) => {
            let bare = o
                .strip_prefix("https://")
                .or_else(|| o.strip_prefix("http://"));
            bare.is_some() && bare == host
        }
    }
}

/// `GET /ws/live[?session=ID]`: the sessions' events as they happen, one JSON text message
/// each: `{"type": "event", "event": {id, session_id, block, at_ms, payload}}`, and
/// `{"type": "lagged", "missed": N}` when the client fell behind.
pub async fn live_socket(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<ApiQuery<LiveQuery>, ApiError>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let q = match q {
        Ok(ApiQuery(q)) => q,
        Err(e) => return e.into_response(),
    };
    if !same_origin(&headers) {
        return ApiError::forbidden("the WebSocket was opened from another site").into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::new(
                StatusCode::UPGRADE_REQUIRED,
                "upgrade_required",
                format!("this route speaks WebSocket: {e}"),
            )
            .into_response();
        }
    };
    // Subscribed before the backfill is read, so that nothing falls between them.
    let rx = match s.hub().await {
        Ok(hub) => hub.subscribe(),
        Err(e) => return ApiError::from(e).into_response(),
    };
    let backfill = match q.session {
        Some(id) => match s.store.recent_live_events(id, BACKFILL).await {
            Ok(rows) => rows,
            Err(e) => return ApiError::from(e).into_response(),
        },
        None => Vec::new(),
    };
    ws.on_upgrade(move |socket| pump(socket, rx, backfill, q.session))
}

async fn pump(
    mut socket: WebSocket,
    mut rx: broadcast::Receiver<Event>,
    backfill: Vec<dexlab_store::LiveEventRow>,
    session: Option<i64>,
) {
    let mut sent_up_to = 0;
    for row in &backfill {
        sent_up_to = row.id;
        if socket
            .send(Message::Text(message(row).json.as_ref().into()))
            .await
            .is_err()
        {
            return;
        }
    }
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok(e) => {
                    if session.is_some_and(|id| id != e.session_id) {
                        continue;
                    }
                    if e.id <= sent_up_to {
                        continue;
                    }
                    if socket.send(Message::Text(e.json.as_ref().into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let note = serde_json::json!({ "type": "lagged", "missed": n }).to_string();
                    if socket.send(Message::Text(note.into())).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            incoming = socket.recv() => match incoming {
                // Pings are answered by axum; anything else from the client is ignored.
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

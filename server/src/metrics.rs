//! Prometheus metrics (OpenMetrics text at `/metrics`):
//! - `dexlab_http_request_duration_seconds{method,route,status}`: a latency histogram per route
//!   template (never per raw path, which would let clients grow the series without bound);
//! - security counters: `dexlab_logins_total`, `dexlab_login_failures_total`,
//!   `dexlab_refreshes_total`, `dexlab_refresh_reuses_total`, `dexlab_role_changes_total`,
//!   `dexlab_rate_limited_total`;
//! - trading sessions, read from the store at each scrape: `dexlab_session_blocks`,
//!   `dexlab_session_bundles`, `dexlab_session_fills`, `dexlab_session_node_mismatches`,
//!   `dexlab_session_last_block`, `dexlab_session_running`, labelled by session id and mode;
//!   and, from each running session's latest live event: `dexlab_session_pnl_quote`,
//!   `dexlab_session_equity_quote`, `dexlab_session_exposure_quote`, `dexlab_session_reverts`
//!   (this run), `dexlab_session_step_seconds` (the engine's time on its last block) and
//!   `dexlab_session_halts` (halts in force: kill switch, loss limit, revert breaker,
//!   reconciliation).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use dexlab_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SessionLabels {
    session: String,
    mode: String,
    strategy: String,
}

fn http_histogram() -> Histogram {
    // 0.25 ms to 4 s.
    Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
}

type Sessions = Family<SessionLabels, Gauge>;
type SessionFigures = Family<SessionLabels, Gauge<f64, std::sync::atomic::AtomicU64>>;

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<HttpLabels, Histogram, fn() -> Histogram>,
    pub logins: Counter,
    pub login_failures: Counter,
    pub refreshes: Counter,
    pub refresh_reuses: Counter,
    pub role_changes: Counter,
    pub rate_limited: Counter,
    session_blocks: Sessions,
    session_bundles: Sessions,
    session_fills: Sessions,
    session_mismatches: Sessions,
    session_last_block: Sessions,
    session_running: Sessions,
    session_pnl: SessionFigures,
    session_equity: SessionFigures,
    session_exposure: SessionFigures,
    session_reverts: SessionFigures,
    session_step: SessionFigures,
    session_halts: SessionFigures,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            http_histogram as fn() -> Histogram,
        );
        registry.register(
            "dexlab_http_request_duration_seconds",
            "Time to answer a request, by route template, method and status",
            requests.clone(),
        );
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let logins = counter(&mut registry, "dexlab_logins", "Successful logins");
        let login_failures = counter(&mut registry, "dexlab_login_failures", "Failed logins");
        let refreshes = counter(
            &mut registry,
            "dexlab_refreshes",
            "Refresh tokens exchanged",
        );
        let refresh_reuses = counter(
            &mut registry,
            "dexlab_refresh_reuses",
            "Refresh tokens presented a second time (their logins were revoked)",
        );
        let role_changes = counter(
            &mut registry,
            "dexlab_role_changes",
            "Accounts' role changes",
        );
        let rate_limited = counter(
            &mut registry,
            "dexlab_rate_limited",
            "Requests refused by a rate limit or a login back-off",
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Sessions::default();
            registry.register(name, help, g.clone());
            g
        };
        let figure = |registry: &mut Registry, name: &str, help: &str| {
            let g = SessionFigures::default();
            registry.register(name, help, g.clone());
            g
        };
        Metrics {
            session_pnl: figure(
                &mut registry,
                "dexlab_session_pnl_quote",
                "A running session's PnL since it started, in its quote token (latest block)",
            ),
            session_equity: figure(
                &mut registry,
                "dexlab_session_equity_quote",
                "A running session's equity in its quote token (latest block)",
            ),
            session_exposure: figure(
                &mut registry,
                "dexlab_session_exposure_quote",
                "A running session's open exposure in its quote token (latest block)",
            ),
            session_reverts: figure(
                &mut registry,
                "dexlab_session_reverts",
                "Bundles of a running session that reverted on chain, this run",
            ),
            session_step: figure(
                &mut registry,
                "dexlab_session_step_seconds",
                "The engine's time on a running session's latest block",
            ),
            session_halts: figure(
                &mut registry,
                "dexlab_session_halts",
                "Halts in force on a running session (0: trading)",
            ),
            session_blocks: gauge(
                &mut registry,
                "dexlab_session_blocks",
                "Blocks a session has stepped",
            ),
            session_bundles: gauge(
                &mut registry,
                "dexlab_session_bundles",
                "Bundles a session sent",
            ),
            session_fills: gauge(
                &mut registry,
                "dexlab_session_fills",
                "Bundles of a session that filled",
            ),
            session_mismatches: gauge(
                &mut registry,
                "dexlab_session_node_mismatches",
                "Paper bundles whose node simulation disagreed with the engine",
            ),
            session_last_block: gauge(
                &mut registry,
                "dexlab_session_last_block",
                "A session's last block",
            ),
            session_running: gauge(
                &mut registry,
                "dexlab_session_running",
                "1 while a session runs",
            ),
            registry,
            requests,
            logins,
            login_failures,
            refreshes,
            refresh_reuses,
            role_changes,
            rate_limited,
        }
    }

    /// The OpenMetrics text of every metric, sessions read from `store` now.
    pub async fn render(&self, store: &Store) -> Result<String, dexlab_store::StoreError> {
        let sessions = store.list_sessions().await?;
        for family in [
            &self.session_blocks,
            &self.session_bundles,
            &self.session_fills,
            &self.session_mismatches,
            &self.session_last_block,
            &self.session_running,
        ] {
            family.clear();
        }
        for family in [
            &self.session_pnl,
            &self.session_equity,
            &self.session_exposure,
            &self.session_reverts,
            &self.session_step,
            &self.session_halts,
        ] {
            family.clear();
        }
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for s in &sessions {
            let l = SessionLabels {
                session: s.id.to_string(),
                mode: s.mode.as_str().to_owned(),
                strategy: s.strategy.clone(),
            };
            self.session_blocks
                .get_or_create(&l)
                .set(clamp(s.progress.blocks));
            self.session_bundles
                .get_or_create(&l)
                .set(clamp(s.progress.bundles));
            self.session_fills
                .get_or_create(&l)
                .set(clamp(s.progress.fills));
            self.session_mismatches
                .get_or_create(&l)
                .set(clamp(s.progress.node_mismatches));
            if let Some(b) = s.progress.last_block {
                self.session_last_block.get_or_create(&l).set(clamp(b));
            }
            self.session_running
                .get_or_create(&l)
                .set(i64::from(!s.status.is_ended()));
            if s.status.is_ended() {
                continue;
            }
            let Some(e) = store.recent_live_events(s.id, 1).await?.pop() else {
                continue;
            };
            let p = &e.payload;
            for (family, value) in [
                (&self.session_pnl, p["pnl_quote"].as_f64()),
                (&self.session_equity, p["equity_quote"].as_f64()),
                (&self.session_exposure, p["exposure_quote"].as_f64()),
                (&self.session_reverts, p["reverts_this_run"].as_f64()),
                (&self.session_step, p["step_us"].as_f64().map(|us| us / 1e6)),
                (
                    &self.session_halts,
                    p["halted"].as_array().map(|h| h.len() as f64),
                ),
            ] {
                if let Some(v) = value {
                    family.get_or_create(&l).set(v);
                }
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        Ok(out)
    }
}

/// Records each request's latency under its route template.
pub async fn track(State(m): State<std::sync::Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = req.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(req).await;
    m.requests
        .get_or_create(&HttpLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .observe(start.elapsed().as_secs_f64());
    response
}

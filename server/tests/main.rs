//! dexlab-server scenarios, in process over real stores (SQLite, and PostgreSQL where the
//! backend matters): one test binary, one module per scenario.

mod support;

mod api;
mod auth;
mod matrix;
mod oidc;
mod tls;

//! `dexlab serve`: the dashboard and API server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use dexlab_server::auth::AuthConfig;
use dexlab_server::limits::LimitConfig;
use dexlab_server::{Secret, ServerConfig};

const DEFAULT_OIDC_NAME: &str = "OpenID Connect";

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; port 0 picks a free one, printed on stdout).
    #[arg(long, default_value = dexlab_server::DEFAULT_BIND)]
    pub bind: SocketAddr,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A file holding the access tokens' signing secret (at least 32 bytes). Without one a
    /// random secret is made at start: access tokens then end with the process (refresh tokens
    /// do not), and several servers behind one balancer need the same file.
    #[arg(long, env = "DEXLAB_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,
    /// Minutes an access token is valid.
    #[arg(long, default_value_t = 15)]
    pub access_minutes: u32,
    /// Days a refresh token is valid.
    #[arg(long, default_value_t = 14)]
    pub refresh_days: u32,
    /// An origin allowed to call the API from a browser (`https://app.example:8443`); repeat
    /// for more. None: same origin only.
    #[arg(long = "cors-origin")]
    pub cors_origins: Vec<String>,
    /// A file holding a bearer token that may read /metrics (for Prometheus).
    #[arg(long, env = "DEXLAB_METRICS_TOKEN_FILE")]
    pub metrics_token_file: Option<PathBuf>,
    /// Sustained API requests per second per client address and per account.
    #[arg(long, default_value_t = 50.0)]
    pub api_rate: f64,
    /// Requests above the sustained rate a client may make at once.
    #[arg(long, default_value_t = 100.0)]
    pub api_burst: f64,
    /// Login attempts per minute per client address.
    #[arg(long, default_value_t = 20.0)]
    pub login_rate: f64,
    /// Largest request body, in KiB.
    #[arg(long, default_value_t = 64)]
    pub body_limit_kib: usize,
    /// Jobs launched from the dashboard read datasets and feature folders named by their path
    /// under this folder.
    #[arg(long, default_value = ".")]
    pub data_root: PathBuf,
    /// Each job's folder (its config, output, logs) is made under this one.
    #[arg(long, default_value = "jobs")]
    pub jobs_dir: PathBuf,
    /// Jobs run at once (each runs `dexlab backtest|evolve|train`).
    #[arg(long, default_value_t = 1)]
    pub job_slots: usize,
    /// Run no jobs (another server on the same store runs them).
    #[arg(long)]
    pub no_jobs: bool,
    /// Run no job here: publish launched jobs to this NATS JetStream server, whose workers
    /// (`dexlab worker --jobs` on the same store) run them.
    #[arg(long, value_name = "URL", conflicts_with = "no_jobs")]
    pub nats: Option<String>,
    /// Seconds without a heartbeat after which a running job's runner is taken for dead and
    /// the job requeued.
    #[arg(long, default_value_t = dexlab_server::jobs::STALE_SECS, value_parser = clap::value_parser!(i64).range(3..=86_400))]
    pub job_stale_secs: i64,
    /// Log in with `oidc` (an OpenID Connect issuer: --oidc-issuer) or `github`.
    #[arg(long, env = "DEXLAB_OIDC_PROVIDER", value_parser = ["oidc", "github"])]
    pub oidc_provider: Option<String>,
    /// The OpenID Connect issuer (`https://accounts.google.com`, or any OIDC issuer); with
    /// `--oidc-provider github`, GitHub's web address (default `https://github.com`, another
    /// for GitHub Enterprise).
    #[arg(long, env = "DEXLAB_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,
    /// GitHub's API, with `--oidc-provider github`.
    #[arg(
        long,
        env = "DEXLAB_GITHUB_API_URL",
        default_value = "https://api.github.com"
    )]
    pub github_api_url: String,
    /// The client id registered with the issuer.
    #[arg(long, env = "DEXLAB_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// A file holding the client secret (confidential clients).
    #[arg(long, env = "DEXLAB_OIDC_CLIENT_SECRET_FILE")]
    pub oidc_client_secret_file: Option<PathBuf>,
    /// This server's public URL of /auth/oidc/callback, as registered with the issuer.
    #[arg(long, env = "DEXLAB_OIDC_REDIRECT_URL")]
    pub oidc_redirect_url: Option<String>,
    /// The login button's label ("Log in with NAME").
    #[arg(long, env = "DEXLAB_OIDC_NAME", default_value = DEFAULT_OIDC_NAME)]
    pub oidc_name: String,
}

/// A secret file's content without surrounding whitespace; the error names the file only.
fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} file {}", path.display()))?;
    let t = text.trim();
    if t.is_empty() {
        bail!("the {what} file {} is empty", path.display());
    }
    Ok(t.to_owned())
}

impl ServeArgs {
    /// The validated config.
    fn config(&self) -> anyhow::Result<ServerConfig> {
        let mut auth = match &self.jwt_secret_file {
            Some(p) => AuthConfig::with_secret(read_secret(p, "JWT secret")?.as_bytes())
                .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?,
            None => AuthConfig::random(),
        };
        if !(1..=24 * 60).contains(&self.access_minutes) {
            bail!(
                "--access-minutes must be 1 to 1440, got {}",
                self.access_minutes
            );
        }
        if !(1..=365).contains(&self.refresh_days) {
            bail!("--refresh-days must be 1 to 365, got {}", self.refresh_days);
        }
        auth.access_ttl_secs = i64::from(self.access_minutes) * 60;
        auth.refresh_ttl_secs = i64::from(self.refresh_days) * 86_400;
        for (flag, v) in [
            ("--api-rate", self.api_rate),
            ("--api-burst", self.api_burst),
            ("--login-rate", self.login_rate),
        ] {
            if !(v.is_finite() && v > 0.0) {
                bail!("{flag} must be a positive number, got {v}");
            }
        }
        if !(1..=64 * 1024).contains(&self.body_limit_kib) {
            bail!(
                "--body-limit-kib must be 1 to 65536, got {}",
                self.body_limit_kib
            );
        }
        let metrics_token = match &self.metrics_token_file {
            Some(p) => Some(Secret(read_secret(p, "metrics token")?)),
            None => None,
        };
        let jobs = if self.no_jobs {
            None
        } else {
            let program = std::env::current_exe().context("finding the dexlab binary")?;
            let mut c = dexlab_server::jobs::JobsConfig::new(
                program,
                &self.data_root,
                &self.jobs_dir,
                self.job_slots,
            )?;
            c.stale_secs = self.job_stale_secs;
            Some(c)
        };
        let github = self.oidc_provider.as_deref() == Some("github");
        let issuer = match (&self.oidc_issuer, github) {
            (Some(i), _) => Some(i.clone()),
            (None, true) => Some("https://github.com".to_owned()),
            (None, false) => None,
        };
        let oidc = match issuer {
            None if self.oidc_provider.is_some() => {
                bail!("--oidc-provider oidc needs --oidc-issuer (DEXLAB_OIDC_ISSUER)")
            }
            None => None,
            Some(issuer) => {
                let (Some(client_id), Some(redirect_url)) =
                    (&self.oidc_client_id, &self.oidc_redirect_url)
                else {
                    bail!(
                        "an OIDC or GitHub login needs --oidc-client-id (DEXLAB_OIDC_CLIENT_ID) \
                         and --oidc-redirect-url (DEXLAB_OIDC_REDIRECT_URL)"
                    );
                };
                let c = dexlab_server::oidc::OidcConfig {
                    issuer,
                    client_id: client_id.clone(),
                    client_secret: match &self.oidc_client_secret_file {
                        Some(p) => Some(Secret(read_secret(p, "OIDC client secret")?)),
                        None => None,
                    },
                    redirect_url: redirect_url.clone(),
                    name: if github && self.oidc_name == DEFAULT_OIDC_NAME {
                        "GitHub".to_owned()
                    } else {
                        self.oidc_name.clone()
                    },
                    github_api: github.then(|| self.github_api_url.clone()),
                };
                c.validate()?;
                Some(c)
            }
        };
        Ok(ServerConfig {
            auth,
            limits: LimitConfig {
                api_per_sec: self.api_rate,
                api_burst: self.api_burst,
                login_per_min: self.login_rate,
                ..LimitConfig::default()
            },
            cors_origins: self.cors_origins.clone(),
            tls: self.tls_cert.clone().zip(self.tls_key.clone()),
            metrics_token,
            body_limit: self.body_limit_kib * 1024,
            git_commit: dexlab_models::artifact::git_commit(),
            jobs,
            oidc,
        })
    }
}

pub async fn serve_cmd(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut config = a.config()?;
    if let (Some(url), Some(jobs)) = (&a.nats, config.jobs.as_mut()) {
        jobs.dispatch = Some(dexlab_queue::Queue::connect(url).await?);
    }
    let store = dexlab_lab::open_store(dexlab_lab::Access::Write).await?;
    let url = store.url().to_owned();
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    };
    dexlab_server::serve(
        store,
        config,
        a.bind,
        |at| {
            println!("listening on {scheme}://{at}");
            eprintln!("store {url}; API description at /api/v1/openapi.json, Swagger UI at /docs");
            if let Some(n) = &a.nats {
                eprintln!(
                    "jobs go to the workers of {} (dexlab worker --jobs)",
                    dexlab_queue::scrub_url(n)
                );
            }
            eprintln!("stop with Ctrl-C or SIGTERM");
        },
        stop,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

//! Logging in with an OpenID Connect provider (Google, or any OIDC issuer), or with GitHub
//! (OAuth2 without OIDC): the authorization code flow with PKCE (S256), `state` and, for OIDC,
//! `nonce`.
//!
//! `GET /auth/oidc/start` makes a random state, nonce and PKCE verifier, keeps them in memory
//! (ten minutes, one use) under the state, sets the state in a cookie bound to this browser
//! (`SameSite=Lax`: the provider's redirect back is a cross-site navigation) and redirects to
//! the provider. `GET /auth/oidc/callback` checks that the state it gets is the cookie's and a
//! pending one, exchanges the code (with the verifier) at the token endpoint, and verifies the
//! ID token: its signature against the issuer's published keys (JWKS, fetched again once when
//! a key id is unknown), issuer, audience, expiry, and the nonce. The account is the one whose
//! e-mail address is the token's, when the provider says the address is verified; addresses
//! are compared trimmed and lower-cased. Accounts are never made here: an admin adds them with
//! their e-mail address (`dexlab users add NAME --role ROLE --email ADDR`). The login then gets
//! the same tokens (cookies) as a password login, and the audit log says how it logged in.
//!
//! GitHub has no ID token: after the same code exchange (with the PKCE verifier), the addresses
//! come from its API (`GET /user/emails`), and only those GitHub marks verified count, the
//! primary one first.
//!
//! Configured by environment (`dexlab serve`): `DEXLAB_OIDC_ISSUER`, `DEXLAB_OIDC_CLIENT_ID`,
//! `DEXLAB_OIDC_CLIENT_SECRET_FILE` (optional, for confidential clients),
//! `DEXLAB_OIDC_REDIRECT_URL` (this server's public URL of `/auth/oidc/callback`, as registered
//! with the provider) and `DEXLAB_OIDC_NAME` (the login button's label).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::RwLock;

use crate::Secret;

/// How long a login may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Logins pending at once (older ones go first when full).
const MAX_PENDING: usize = 10_000;
/// Requests to the provider.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// One OpenID Connect provider.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// The issuer URL, exactly as the provider's ID tokens state it
    /// (`https://accounts.google.com`); its discovery document is at
    /// `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// This server's `/auth/oidc/callback` as the provider knows it.
    pub redirect_url: String,
    /// What the login page's button says ("Log in with {name}").
    pub name: String,
    /// GitHub's API (`https://api.github.com`): the provider is GitHub (or a GitHub Enterprise
    /// server), whose web address is `issuer` (`https://github.com`), not an OIDC issuer.
    pub github_api: Option<String>,
}

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
#[error("OIDC: {0}")]
pub struct OidcConfigError(pub String);

impl OidcConfig {
    /// Checks the URLs and the client id.
    pub fn validate(&self) -> Result<(), OidcConfigError> {
        let url_ok = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if !url_ok(&self.issuer) {
            return Err(OidcConfigError(format!(
                "DEXLAB_OIDC_ISSUER must be an http(s) URL, got {:?}",
                self.issuer
            )));
        }
        if !url_ok(&self.redirect_url) || !self.redirect_url.ends_with("/auth/oidc/callback") {
            return Err(OidcConfigError(format!(
                "DEXLAB_OIDC_REDIRECT_URL must be this server's http(s) URL ending in \
                 /auth/oidc/callback, got {:?}",
                self.redirect_url
            )));
        }
        if let Some(api) = &self.github_api
            && !url_ok(api)
        {
            return Err(OidcConfigError(format!(
                "the GitHub API URL must be an http(s) URL, got {api:?}"
            )));
        }
        if self.github_api.is_some() && self.client_secret.is_none() {
            return Err(OidcConfigError(
                "GitHub logins need the client secret (DEXLAB_OIDC_CLIENT_SECRET_FILE)".into(),
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(OidcConfigError("DEXLAB_OIDC_CLIENT_ID is empty".into()));
        }
        Ok(())
    }
}

/// The provider's endpoints (its discovery document).
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    userinfo_endpoint: Option<String>,
    #[serde(default)]
    token_endpoint_auth_methods_supported: Vec<String>,
}

/// A login waiting for the provider's redirect back.
struct Pending {
    verifier: String,
    nonce: String,
    next: String,
    at: Instant,
}

/// Why an OIDC login failed; `message` is for the person logging in.
#[derive(Debug)]
pub struct OidcFailure {
    /// For the audit log (`state_mismatch`, `token_exchange`, `id_token`, `email_unverified`,
    /// `no_account`, …).
    pub reason: &'static str,
    pub message: String,
}

impl OidcFailure {
    /// 404 when there is no provider, 403 when the provider vouched for someone who may not
    /// log in (no verified address, no enabled account of that address), 503 when the provider
    /// does not answer, else 400 (the answer is not one to trust: state, nonce, token).
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self.reason {
            "not_configured" => StatusCode::NOT_FOUND,
            "no_email" | "email_unverified" | "no_account" => StatusCode::FORBIDDEN,
            "provider_unreachable" | "provider_misconfigured" | "store" => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

fn fail(reason: &'static str, message: impl Into<String>) -> OidcFailure {
    OidcFailure {
        reason,
        message: message.into(),
    }
}

/// A verified login.
#[derive(Debug)]
pub struct Verified {
    /// The verified addresses, trimmed and lower-cased, the preferred first (OIDC: the one).
    pub emails: Vec<String>,
    /// The ID token's subject (OIDC).
    pub subject: Option<String>,
    /// Where to go once logged in.
    pub next: String,
}

/// The OIDC provider of a server, when there is one.
pub struct Oidc {
    config: Option<OidcConfig>,
    http: reqwest::Client,
    discovery: RwLock<Option<Discovery>>,
    keys: RwLock<Option<JwkSet>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// `s` trimmed and lower-cased: how e-mail addresses are compared.
pub fn normalise_email(s: &str) -> String {
    s.trim().to_lowercase()
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn state_key(state: &str) -> String {
    hex::encode(Sha256::digest(state.as_bytes()))
}

impl Oidc {
    pub fn new(config: Option<OidcConfig>) -> Self {
        Oidc {
            config,
            http: reqwest::Client::builder()
                .timeout(HTTP_TIMEOUT)
                // The provider's answers are read, never followed elsewhere.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            discovery: RwLock::new(None),
            keys: RwLock::new(None),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// The login button's label, when a provider is configured.
    pub fn name(&self) -> Option<&str> {
        self.config.as_ref().map(|c| c.name.as_str())
    }

    /// How the audit log names these logins: `oidc` or `github`.
    pub fn method(&self) -> &'static str {
        match &self.config {
            Some(c) if c.github_api.is_some() => "github",
            _ => "oidc",
        }
    }

    pub fn issuer(&self) -> Option<&str> {
        self.config.as_ref().map(|c| c.issuer.as_str())
    }

    fn config(&self) -> Result<&OidcConfig, OidcFailure> {
        self.config
            .as_ref()
            .ok_or_else(|| fail("not_configured", "This server has no OpenID Connect login."))
    }

    async fn discovery(&self) -> Result<Discovery, OidcFailure> {
        if let Some(d) = self.discovery.read().await.clone() {
            return Ok(d);
        }
        let cfg = self.config()?;
        if let Some(api) = &cfg.github_api {
            // GitHub publishes no discovery document: its endpoints are fixed.
            let web = cfg.issuer.trim_end_matches('/');
            return Ok(Discovery {
                issuer: cfg.issuer.clone(),
                authorization_endpoint: format!("{web}/login/oauth/authorize"),
                token_endpoint: format!("{web}/login/oauth/access_token"),
                jwks_uri: String::new(),
                userinfo_endpoint: Some(format!("{}/user/emails", api.trim_end_matches('/'))),
                token_endpoint_auth_methods_supported: vec!["client_secret_post".into()],
            });
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            cfg.issuer.trim_end_matches('/')
        );
        let unreachable = |e: &dyn std::fmt::Display| {
            tracing::warn!("OIDC discovery at {url}: {e}");
            fail(
                "provider_unreachable",
                "The login provider does not answer; try again later.",
            )
        };
        let d: Discovery = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unreachable(&e))?
            .json()
            .await
            .map_err(|e| unreachable(&e))?;
        if d.issuer != cfg.issuer {
            tracing::warn!(
                "OIDC discovery at {url} names issuer {:?}, configured {:?}",
                d.issuer,
                cfg.issuer
            );
            return Err(fail(
                "provider_misconfigured",
                "The login provider is not the one configured.",
            ));
        }
        *self.discovery.write().await = Some(d.clone());
        Ok(d)
    }

    /// Starts a login: the provider's URL to redirect to, and the state for the cookie.
    pub async fn start(&self, next: &str) -> Result<(String, String), OidcFailure> {
        let cfg = self.config()?;
        let d = self.discovery().await?;
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            p.retain(|_, v| now.duration_since(v.at) < PENDING_TTL);
            if p.len() >= MAX_PENDING
                && let Some(oldest) = p.iter().min_by_key(|(_, v)| v.at).map(|(k, _)| k.clone())
            {
                p.remove(&oldest);
            }
            p.insert(
                state_key(&state),
                Pending {
                    verifier,
                    nonce: nonce.clone(),
                    next: next.to_owned(),
                    at: now,
                },
            );
        }
        let mut url = reqwest::Url::parse(&d.authorization_endpoint).map_err(|_| {
            fail(
                "provider_misconfigured",
                "The login provider's authorization endpoint is not a URL.",
            )
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &cfg.client_id)
            .append_pair("redirect_uri", &cfg.redirect_url)
            .append_pair(
                "scope",
                if cfg.github_api.is_some() {
                    "user:email"
                } else {
                    "openid email"
                },
            )
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok((url.to_string(), state))
    }

    /// Finishes a login: `state` from the query must be `cookie_state` and pending.
    pub async fn finish(
        &self,
        code: &str,
        state: &str,
        cookie_state: Option<&str>,
    ) -> Result<Verified, OidcFailure> {
        let cfg = self.config()?;
        // Compared as digests: the comparison's time says nothing about the cookie.
        if cookie_state.map(state_key) != Some(state_key(state)) {
            return Err(fail(
                "state_mismatch",
                "This login was not started in this browser (or it expired); start again.",
            ));
        }
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&state_key(state))
            .filter(|p| p.at.elapsed() < PENDING_TTL)
            .ok_or_else(|| {
                fail(
                    "state_unknown",
                    "This login expired or was already used; start again.",
                )
            })?;
        let d = self.discovery().await?;
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", cfg.redirect_url.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        let mut req = self.http.post(&d.token_endpoint);
        let methods = &d.token_endpoint_auth_methods_supported;
        match &cfg.client_secret {
            Some(secret)
                if methods.is_empty() || methods.iter().any(|m| m == "client_secret_basic") =>
            {
                req = req.basic_auth(&cfg.client_id, Some(&secret.0));
            }
            Some(secret) if methods.iter().any(|m| m == "client_secret_post") => {
                form.push(("client_id", cfg.client_id.as_str()));
                form.push(("client_secret", secret.0.as_str()));
            }
            _ => form.push(("client_id", cfg.client_id.as_str())),
        }
        let exchange = |e: &dyn std::fmt::Display| {
            // The provider's answer may hold the code or tokens: only the status is logged.
            tracing::warn!("OIDC token exchange failed: {e}");
            fail(
                "token_exchange",
                "The login provider refused the login; start again.",
            )
        };
        let answer = req
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| exchange(&format_args!("{}", e.without_url())))?;
        if !answer.status().is_success() {
            return Err(exchange(&format_args!("status {}", answer.status())));
        }
        #[derive(Deserialize)]
        struct TokenAnswer {
            id_token: Option<String>,
            access_token: Option<String>,
        }
        let t: TokenAnswer = answer
            .json()
            .await
            .map_err(|_| exchange(&"the answer is not a token response"))?;
        if cfg.github_api.is_some() {
            let access = t
                .access_token
                .ok_or_else(|| exchange(&"the answer has no access_token"))?;
            let emails = self.github_emails(&d, &access).await?;
            return Ok(Verified {
                emails,
                subject: None,
                next: pending.next,
            });
        }
        let id_token = t
            .id_token
            .ok_or_else(|| exchange(&"the answer has no id_token"))?;
        let claims = self.verify(&d, cfg, &id_token).await?;
        if claims.nonce.as_deref().map(state_key) != Some(state_key(&pending.nonce)) {
            return Err(fail(
                "nonce_mismatch",
                "The login provider's answer is not for this login; start again.",
            ));
        }
        let (mut email, mut verified) = (claims.email.clone(), claims.email_verified());
        if email.is_none()
            && let (Some(userinfo), Some(access)) = (&d.userinfo_endpoint, &t.access_token)
        {
            let info: Option<Claims> =
                match self.http.get(userinfo).bearer_auth(access).send().await {
                    Ok(r) if r.status().is_success() => r.json().await.ok(),
                    _ => None,
                };
            if let Some(info) = info.filter(|i| i.sub == claims.sub) {
                verified = info.email_verified();
                email = info.email;
            }
        }
        let email = email.ok_or_else(|| {
            fail(
                "no_email",
                "The login provider did not say the account's e-mail address.",
            )
        })?;
        if !verified {
            return Err(fail(
                "email_unverified",
                format!("The login provider has not verified {email}."),
            ));
        }
        Ok(Verified {
            emails: vec![normalise_email(&email)],
            subject: Some(claims.sub),
            next: pending.next,
        })
    }

    /// GitHub's verified addresses of the login, the primary first.
    async fn github_emails(&self, d: &Discovery, access: &str) -> Result<Vec<String>, OidcFailure> {
        #[derive(Deserialize)]
        struct Email {
            email: String,
            #[serde(default)]
            primary: bool,
            #[serde(default)]
            verified: bool,
        }
        let url = d.userinfo_endpoint.as_deref().unwrap_or_default();
        let unreachable = |e: &dyn std::fmt::Display| {
            tracing::warn!("GitHub e-mail addresses: {e}");
            fail(
                "provider_unreachable",
                "GitHub did not give the account's e-mail addresses; try again later.",
            )
        };
        let mut list: Vec<Email> = self
            .http
            .get(url)
            .bearer_auth(access)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header(reqwest::header::USER_AGENT, "dexlab")
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| unreachable(&e.without_url()))?
            .json()
            .await
            .map_err(|e| unreachable(&e))?;
        if list.is_empty() {
            return Err(fail(
                "no_email",
                "The login provider did not say the account's e-mail address.",
            ));
        }
        list.sort_by_key(|e| !e.primary);
        let verified: Vec<String> = list
            .iter()
            .filter(|e| e.verified)
            .map(|e| normalise_email(&e.email))
            .collect();
        if verified.is_empty() {
            return Err(fail(
                "email_unverified",
                format!(
                    "The login provider has not verified {}.",
                    list.iter()
                        .map(|e| e.email.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        Ok(verified)
    }

    async fn jwks(&self, d: &Discovery, refresh: bool) -> Result<JwkSet, OidcFailure> {
        if !refresh && let Some(k) = self.keys.read().await.clone() {
            return Ok(k);
        }
        let bad = |e: &dyn std::fmt::Display| {
            tracing::warn!("OIDC keys at {}: {e}", d.jwks_uri);
            fail(
                "provider_unreachable",
                "The login provider's keys could not be read; try again later.",
            )
        };
        let keys: JwkSet = self
            .http
            .get(&d.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| bad(&e))?
            .json()
            .await
            .map_err(|e| bad(&e))?;
        *self.keys.write().await = Some(keys.clone());
        Ok(keys)
    }

    async fn verify(
        &self,
        d: &Discovery,
        cfg: &OidcConfig,
        token: &str,
    ) -> Result<Claims, OidcFailure> {
        let invalid = |why: &dyn std::fmt::Display| {
            tracing::warn!("OIDC ID token refused: {why}");
            fail(
                "id_token",
                "The login provider's answer could not be verified; start again.",
            )
        };
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e))?;
        const ALLOWED: [Algorithm; 6] = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
        ];
        if !ALLOWED.contains(&header.alg) {
            return Err(invalid(&format_args!("algorithm {:?}", header.alg)));
        }
        let mut keys = self.jwks(d, false).await?;
        let pick = |keys: &JwkSet| match &header.kid {
            Some(kid) => keys.find(kid).cloned(),
            None if keys.keys.len() == 1 => keys.keys.first().cloned(),
            None => None,
        };
        let jwk = match pick(&keys) {
            Some(k) => k,
            None => {
                // The provider may have rotated its keys since they were read.
                keys = self.jwks(d, true).await?;
                pick(&keys).ok_or_else(|| invalid(&"no published key matches the token"))?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| invalid(&e))?;
        let mut v = Validation::new(header.alg);
        v.leeway = 30;
        v.set_issuer(&[cfg.issuer.as_str()]);
        v.set_audience(&[cfg.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        jsonwebtoken::decode::<Claims>(token, &key, &v)
            .map(|d| d.claims)
            .map_err(|e| invalid(&e))
    }
}

/// What is read from an ID token (or the userinfo answer).
#[derive(Debug, Clone, Deserialize)]
struct Claims {
    sub: String,
    nonce: Option<String>,
    email: Option<String>,
    /// A boolean, or (some providers) the string "true".
    email_verified: Option<serde_json::Value>,
}

impl Claims {
    fn email_verified(&self) -> bool {
        match &self.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        }
    }
}

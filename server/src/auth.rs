//! Logins, access tokens and refresh tokens.
//!
//! - **Access tokens** are JWTs (HS256) with the account's id, role and login family, valid for
//!   [`AuthConfig::access_ttl_secs`] (15 minutes by default). Each request checks the signature
//!   and expiry, then the account in the store: a disabled account, a role changed since, or a
//!   login family that was revoked (logout, refresh reuse, account disabled) takes effect at once,
//!   not when the token expires.
//! - **Refresh tokens** are 256-bit random strings; the store keeps only their SHA-256. Each is
//!   used once and exchanged for the next of its family; one presented a second time revokes the
//!   family (see `dexlab_store::accounts`).
//! - **Passwords** are checked with argon2id off the async threads, at most
//!   [`MAX_CONCURRENT_HASHES`] at a time (each takes 19 MiB), against a dummy hash when the
//!   account does not exist so that timing does not tell which usernames exist.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dexlab_store::{NewRefreshToken, Role, UserRow};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Password checks running at once, at most.
pub const MAX_CONCURRENT_HASHES: usize = 4;
/// The JWT issuer and audience of dexlab's access tokens.
pub const ISSUER: &str = "dexlab";
pub const AUDIENCE: &str = "dexlab-api";
/// The shortest signing secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 32;

/// The token settings, validated once when the server starts.
#[derive(Clone)]
pub struct AuthConfig {
    /// The HS256 key. Random per process unless given: access tokens then do not survive a
    /// restart (refresh tokens do: they are in the store).
    pub secret: Arc<[u8]>,
    pub access_ttl_secs: i64,
    pub refresh_ttl_secs: i64,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("secret", &"<redacted>")
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .finish()
    }
}

impl AuthConfig {
    /// 15-minute access tokens, 14-day refresh tokens, a random key.
    pub fn random() -> Self {
        let mut key = vec![0u8; 32];
        rand::rng().fill_bytes(&mut key);
        AuthConfig {
            secret: key.into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_secs: 14 * 24 * 3600,
        }
    }

    /// A given key: at least [`MIN_SECRET_BYTES`] bytes.
    pub fn with_secret(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the JWT secret has {} bytes; at least {MIN_SECRET_BYTES} are needed",
                secret.len()
            ));
        }
        Ok(AuthConfig {
            secret: secret.into(),
            ..Self::random()
        })
    }
}

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The account's id.
    pub sub: String,
    pub name: String,
    pub role: Role,
    /// The login family the token belongs to.
    pub fam: String,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct Tokens {
    config: AuthConfig,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Tokens {
    pub fn new(config: AuthConfig) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Clocks of one machine: no grace.
        validation.leeway = 0;
        Tokens {
            encoding: EncodingKey::from_secret(&config.secret),
            decoding: DecodingKey::from_secret(&config.secret),
            config,
            validation,
        }
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// An access token for `user` in login family `family`, issued at `now` (Unix seconds).
    pub fn access(&self, user: &UserRow, family: &str, now: i64) -> (String, i64) {
        let exp = now + self.config.access_ttl_secs;
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.username.clone(),
            role: user.role,
            fam: family.to_owned(),
            iat: now,
            exp,
            iss: ISSUER.to_owned(),
            aud: AUDIENCE.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail");
        (token, exp)
    }

    /// The claims of a valid token; expired and otherwise invalid tokens are told apart.
    pub fn check(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => {
                    ApiError::unauthenticated("token_expired", "the access token has expired")
                }
                _ => ApiError::unauthenticated(
                    "token_invalid",
                    "the access token is not valid (malformed, altered or signed by another key)",
                ),
            })
    }

    /// A new refresh token of `family` for `user_id` issued at `now`: the token to hand out and
    /// the row to store (which holds only its hash).
    pub fn refresh(&self, user_id: i64, family: &str, now: i64) -> (String, NewRefreshToken) {
        let token = random_token(32);
        let row = NewRefreshToken {
            user_id,
            family: family.to_owned(),
            token_hash: token_hash(&token),
            issued_at: now,
            expires_at: now + self.config.refresh_ttl_secs,
        };
        (token, row)
    }
}

/// `bytes` random bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// A new login family id.
pub fn new_family() -> String {
    random_token(16)
}

/// What the store keeps of a refresh token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The account behind a request that passed its route's gate.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: i64,
    pub username: String,
    /// As the store has it now (not as the token said).
    pub role: Role,
    pub family: String,
}

/// A bearer token from an `Authorization` header value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// A PHC string that no password matches, verified in place of a missing account's hash.
pub fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        dexlab_lab::accounts::hash_password(&random_token(24))
            .expect("hashing a random password cannot fail")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(role: Role) -> UserRow {
        UserRow {
            id: 7,
            username: "ann".into(),
            password_hash: None,
            role,
            email: None,
            disabled: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn tokens_check_their_signature_expiry_issuer_and_audience() {
        let t = Tokens::new(AuthConfig::random());
        let (tok, exp) = t.access(&user(Role::Operator), "fam", now());
        let c = t.check(&tok).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.role, c.fam.as_str(), c.exp),
            ("7", Role::Operator, "fam", exp)
        );

        // Expired: issued two lifetimes ago.
        let (old, _) = t.access(&user(Role::Viewer), "fam", now() - 2 * 15 * 60);
        assert_eq!(t.check(&old).unwrap_err().error, "token_expired");

        // Another key, and one changed character of the payload.
        let other = Tokens::new(AuthConfig::random());
        assert_eq!(other.check(&tok).unwrap_err().error, "token_invalid");
        let mut parts: Vec<String> = tok.split('.').map(str::to_owned).collect();
        let mut payload = URL_SAFE_NO_PAD.decode(&parts[1]).unwrap();
        let text = String::from_utf8(payload.clone()).unwrap();
        payload = text.replace("operator", "admin").into_bytes();
        parts[1] = URL_SAFE_NO_PAD.encode(payload);
        assert_eq!(
            t.check(&parts.join(".")).unwrap_err().error,
            "token_invalid"
        );
        // `alg: none` is refused.
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(t.check(&none).unwrap_err().error, "token_invalid");
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_as_hashes() {
        let t = Tokens::new(AuthConfig::random());
        let (a, row) = t.refresh(7, "fam", 100);
        let (b, _) = t.refresh(7, "fam", 100);
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(row.token_hash, token_hash(&a));
        assert_ne!(row.token_hash, a);
        assert_eq!(row.expires_at, 100 + 14 * 24 * 3600);
    }

    #[test]
    fn short_secrets_are_refused_and_never_printed() {
        assert!(AuthConfig::with_secret(b"short").is_err());
        let c = AuthConfig::with_secret(&[b'k'; 40]).unwrap();
        assert!(!format!("{c:?}").contains("kkkk"));
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}

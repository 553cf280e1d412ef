//! Accounts: argon2id password hashes, one-time passwords, and users added with an audit row.
//!
//! There is no default account and no default password: `dexlab users add NAME --role ROLE`
//! makes one, with a one-time password it prints once unless one comes on standard input. The
//! password never reaches a log, an error or the store: only its argon2id hash (a PHC string that
//! carries its own salt and parameters) is stored.
//!
//! **Parameters**: argon2id (RFC 9106), [`M_COST_KIB`] KiB of memory, [`T_COST`] passes,
//! [`P_COST`] lane, 16-byte random salt, 32-byte hash: OWASP's first recommended configuration
//! for argon2id. A hash made with other parameters still verifies (they are in the string).

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use dexlab_store::{NewAudit, NewUser, Role, Store, UserRow};

use crate::{LabError, Result};

/// Memory per hash, KiB (19 MiB).
pub const M_COST_KIB: u32 = 19_456;
/// Passes over the memory.
pub const T_COST: u32 = 2;
/// Lanes.
pub const P_COST: u32 = 1;
/// Characters of a generated one-time password (alphanumeric: ~143 bits).
pub const ONE_TIME_LEN: usize = 24;

fn hasher() -> Argon2<'static> {
    let params =
        Params::new(M_COST_KIB, T_COST, P_COST, Some(32)).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `password`, with a fresh random salt.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // The error names the failure, never the password.
        .map_err(|e| LabError::Refused(format!("hashing the password: {e}")))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
}

/// A random alphanumeric password of [`ONE_TIME_LEN`] characters from the OS's generator.
pub fn one_time_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(ONE_TIME_LEN);
    while out.len() < ONE_TIME_LEN {
        let mut b = [0u8; 1];
        OsRng.fill_bytes(&mut b);
        // Rejection sampling keeps every character equally likely (248 = 4 × 62).
        if b[0] < 248 {
            out.push(ALPHABET[usize::from(b[0]) % ALPHABET.len()] as char);
        }
    }
    out
}

/// A user to add.
#[derive(Clone)]
pub struct AddUser {
    pub username: String,
    pub role: Role,
    pub email: Option<String>,
    /// The password; `None`: a one-time password is generated and returned.
    pub password: Option<String>,
    /// Who adds it (recorded in the audit log), and when (Unix seconds).
    pub by: String,
    pub at: i64,
}

impl std::fmt::Debug for AddUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddUser")
            .field("username", &self.username)
            .field("role", &self.role)
            .field("email", &self.email)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("by", &self.by)
            .finish()
    }
}

/// Adds the user with the hash of its password, records `user_added` in the audit log, and
/// returns the row and the generated one-time password (when none was given).
pub async fn add_user(store: &Store, a: &AddUser) -> Result<(UserRow, Option<String>)> {
    let generated = a.password.is_none().then(one_time_password);
    let password = a.password.as_deref().or(generated.as_deref()).unwrap_or("");
    if password.chars().count() < 12 {
        return Err(LabError::Refused(
            "the password is shorter than 12 characters".into(),
        ));
    }
    let hash = hash_password(password)?;
    let row = store
        .add_user(&NewUser {
            username: a.username.clone(),
            password_hash: Some(hash),
            role: a.role,
            email: a.email.clone(),
            created_at: a.at,
        })
        .await?;
    store
        .add_audit(&NewAudit {
            at: a.at,
            actor_id: None,
            actor: a.by.clone(),
            action: "user_added".into(),
            target: Some(row.username.clone()),
            detail: serde_json::json!({
                "user_id": row.id,
                "role": row.role.as_str(),
                "one_time_password": generated.is_some(),
            }),
            ip: None,
        })
        .await?;
    Ok((row, generated))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_never_holds_it() {
        let pw = one_time_password();
        assert_eq!(pw.len(), ONE_TIME_LEN);
        assert!(pw.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(pw, one_time_password());
        let h = hash_password(&pw).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(!h.contains(&pw));
        assert!(verify_password(&h, &pw));
        assert!(!verify_password(&h, &format!("{pw}x")));
        assert!(!verify_password("not a hash", &pw));
        // Two hashes of one password differ (the salt).
        assert_ne!(h, hash_password(&pw).unwrap());
    }
}

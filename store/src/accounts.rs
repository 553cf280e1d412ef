//! Accounts of the dashboard and API server, their refresh tokens, and the audit log.
//!
//! A user ([`Store::add_user`]) has a unique username, a [`Role`], an optional password hash (a
//! PHC string the caller computed; none for accounts that log in only through OIDC) and an
//! optional verified e-mail address that maps OIDC logins to it. Accounts are disabled, never
//! deleted. The password hash never leaves through `Debug` or `Serialize` of a row.
//!
//! Refresh tokens rotate within families: a login starts a family, each refresh uses its token
//! once ([`Store::use_refresh_token`]) and the caller issues the next token of the same family.
//! The store keeps only a hash of each token. A token presented a second time was stolen (or the
//! thief already used it), so the whole family is revoked. The use is one transaction: on SQLite
//! it holds the write lock from its start (`BEGIN IMMEDIATE`); on PostgreSQL it locks the token's
//! row (`FOR UPDATE`), so of two uses at once the second sees the first's mark and is a reuse.
//!
//! The audit log ([`Store::add_audit`]) records who did what, when and from where; rows are never
//! changed or deleted, and are read newest first, a page at a time ([`Store::audit_log`]).

use std::fmt;
use std::str::FromStr;

use dexlab_types::ParseError;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use sqlx::AnyConnection;
use sqlx::any::AnyRow;

use crate::models::check_name_of;
use crate::url::Backend;
use crate::{Result, Store, StoreError, db, get, json_column, name_column, to_json};

/// The longest username, in characters.
pub const MAX_USERNAME_CHARS: usize = 64;

/// Every `users` column, in the order of `user_from_row`, as a literal for `concat!`.
macro_rules! user_columns {
    () => {
        "id, username, password_hash, role, email, disabled, created_at, updated_at"
    };
}

macro_rules! token_columns {
    () => {
        "id, user_id, family, token_hash, issued_at, expires_at, used_at, revoked_at,
         revoked_reason"
    };
}

/// What an account may do; each role may do everything the ones before it may, so that
/// `role >= Role::Operator` means "operator or admin".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Reads experiments, models, sessions and deployments.
    Viewer,
    /// Also launches experiments and training jobs.
    Researcher,
    /// Also promotes, rolls back and uses the kill switch.
    Operator,
    /// Also manages accounts.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Researcher, Role::Operator, Role::Admin];
    /// The spellings of [`Self::ALL`].
    pub const NAMES: &'static [&'static str] = &["viewer", "researcher", "operator", "admin"];

    /// The one spelling: stored, serialised and printed.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Researcher => "researcher",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The role spelled exactly `name` (as [`Self::as_str`] gives it).
    pub fn from_name(name: &str) -> Option<Self> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Any case (for command-line flags); anything else names the allowed values.
impl FromStr for Role {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        Role::from_name(&s.to_ascii_lowercase()).ok_or_else(|| ParseError {
            what: "role",
            value: s.to_owned(),
            expected: Role::NAMES,
        })
    }
}

impl Serialize for Role {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Role {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Role::from_name(&text).ok_or_else(|| D::Error::unknown_variant(&text, Role::NAMES))
    }
}

/// An account about to be added.
#[derive(Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Not empty, no surrounding whitespace, not all digits, at most [`MAX_USERNAME_CHARS`].
    pub username: String,
    /// A PHC string (argon2); `None` for an account that logs in only through OIDC.
    pub password_hash: Option<String>,
    pub role: Role,
    /// A verified e-mail address (OIDC logins are mapped to the account by it). Stored and
    /// looked up exactly as given: callers normalise it (e.g. lowercase) the same way each time.
    pub email: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// A stored account. Neither `Debug` nor `Serialize` shows the password hash.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    /// A PHC string; `None` for an account that logs in only through OIDC.
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
    pub role: Role,
    pub email: Option<String>,
    /// A disabled account may not log in or refresh.
    pub disabled: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last change of role, password or disabled flag.
    pub updated_at: i64,
}

/// What `Debug` shows of a password hash: whether there is one.
fn redacted(hash: Option<&str>) -> Option<&'static str> {
    hash.map(|_| "<redacted>")
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("username", &self.username)
            .field("password_hash", &redacted(self.password_hash.as_deref()))
            .field("role", &self.role)
            .field("email", &self.email)
            .field("created_at", &self.created_at)
            .finish()
    }
}

impl fmt::Debug for UserRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &redacted(self.password_hash.as_deref()))
            .field("role", &self.role)
            .field("email", &self.email)
            .field("disabled", &self.disabled)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A refresh token about to be stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRefreshToken {
    pub user_id: i64,
    /// The login it descends from: every token issued by refreshing shares it.
    pub family: String,
    /// A hash of the opaque token (never the token itself).
    pub token_hash: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
}

/// A stored refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshTokenRow {
    pub id: i64,
    pub user_id: i64,
    pub family: String,
    pub token_hash: String,
    /// Unix seconds.
    pub issued_at: i64,
    pub expires_at: i64,
    /// When it was exchanged for the next token of its family; a token is used once.
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `reuse` when a token of its family was used twice; else the caller's reason (`logout`, …).
    pub revoked_reason: Option<String>,
}

/// What [`Store::use_refresh_token`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshUse {
    /// Unused, unrevoked and unexpired: now marked used. Issue the next token of its family.
    Valid(RefreshTokenRow),
    /// No token has that hash.
    Unknown,
    /// Past `expires_at` (and not used before): refused, nothing changed.
    Expired(RefreshTokenRow),
    /// Revoked before this use: refused, nothing changed.
    Revoked(RefreshTokenRow),
    /// Used before: the token was stolen, and its whole family is now revoked (the row as it
    /// is after the revocation).
    Reused(RefreshTokenRow),
}

/// An audit record about to be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAudit {
    /// Unix seconds.
    pub at: i64,
    /// The acting account, if it is one.
    pub actor_id: Option<i64>,
    /// A username, or e.g. `cli:root@host` or `anonymous`.
    pub actor: String,
    /// e.g. `login`, `login_failed`, `refresh`, `logout`, `user_added`, `role_changed`,
    /// `promote`, `rollback`, `kill_switch`, `job_launched`.
    pub action: String,
    /// What it acted on (a username, a deployment, a session), if anything.
    pub target: Option<String>,
    pub detail: Value,
    /// The client's address, for requests over the network.
    pub ip: Option<String>,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Increasing in insertion order.
    pub id: i64,
    pub at: i64,
    pub actor_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub target: Option<String>,
    pub detail: Value,
    pub ip: Option<String>,
}

impl Store {
    /// Adds an account and returns it (enabled, `updated_at` = `created_at`).
    ///
    /// A username that is empty, has surrounding whitespace, is all digits or is longer than
    /// [`MAX_USERNAME_CHARS`], is [`StoreError::InvalidName`]; an e-mail address that is empty,
    /// has surrounding whitespace or no `@` is [`StoreError::InvalidEmail`]; a username or e-mail
    /// address that another account has is [`StoreError::AccountTaken`].
    pub async fn add_user(&self, u: &NewUser) -> Result<UserRow> {
        const OP: &str = "add_user";
        check_username(OP, &u.username)?;
        if let Some(email) = &u.email {
            check_email(OP, email)?;
        }
        // Addresses are kept lower-cased, so that logins by e-mail (OIDC) find them however
        // the provider or the admin wrote them.
        let email = u.email.as_deref().map(str::to_lowercase);
        let target = || format!("user `{}`", u.username);
        let inserted = sqlx::query(concat!(
            "INSERT INTO users (username, password_hash, role, email, disabled, created_at,
                                updated_at)
             VALUES ($1, $2, $3, $4, 0, $5, $5)
             RETURNING ",
            user_columns!()
        ))
        .bind(&u.username)
        .bind(u.password_hash.as_deref())
        .bind(u.role.as_str())
        .bind(email.as_deref())
        .bind(u.created_at)
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => user_from_row(OP, &row),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                if let Some(held) = self.user_by_name(&u.username).await? {
                    return Err(taken(OP, "username", &u.username, held.id));
                }
                if let Some(email) = &u.email
                    && let Some(held) = self.user_by_email(email).await?
                {
                    return Err(taken(OP, "e-mail address", email, held.id));
                }
                // The holder went away meanwhile (accounts are not deleted, so: never).
                Err(db(OP, target)(sqlx::Error::Database(e)))
            }
            Err(other) => Err(db(OP, target)(other)),
        }
    }

    /// The account named `username` (exactly).
    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        self.user_where("user_by_name", "username", username.to_owned())
            .await
    }

    /// The account with e-mail address `email`, compared trimmed and lower-cased (addresses
    /// are stored lower-cased).
    pub async fn user_by_email(&self, email: &str) -> Result<Option<UserRow>> {
        self.user_where("user_by_email", "email", email.trim().to_lowercase())
            .await
    }

    /// Account `id`.
    pub async fn user_by_id(&self, id: i64) -> Result<Option<UserRow>> {
        const OP: &str = "user_by_id";
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, || format!("user {id}")))?;
        row.map(|row| user_from_row(OP, &row)).transpose()
    }

    /// Every account, by id.
    pub async fn list_users(&self) -> Result<Vec<UserRow>> {
        const OP: &str = "list_users";
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || "all users".to_owned()))?;
        rows.iter().map(|row| user_from_row(OP, row)).collect()
    }

    /// Gives account `id` role `role` at `at` (unix seconds); returns the account.
    pub async fn set_role(&self, id: i64, role: Role, at: i64) -> Result<UserRow> {
        self.update_user("set_role", id, "role = $1", role.as_str().to_owned(), at)
            .await
    }

    /// Disables or enables account `id` at `at`; returns the account. Its refresh tokens stay as
    /// they are: revoke them with [`Store::revoke_user_tokens`].
    pub async fn set_disabled(&self, id: i64, disabled: bool, at: i64) -> Result<UserRow> {
        self.update_user("set_disabled", id, "disabled = $1", i64::from(disabled), at)
            .await
    }

    /// Sets (or, with `None`, removes) account `id`'s password hash at `at`; returns the account.
    pub async fn set_password_hash(
        &self,
        id: i64,
        password_hash: Option<&str>,
        at: i64,
    ) -> Result<UserRow> {
        self.update_user(
            "set_password_hash",
            id,
            "password_hash = $1",
            password_hash.map(str::to_owned),
            at,
        )
        .await
    }

    async fn user_where(
        &self,
        op: &'static str,
        column: &'static str,
        value: String,
    ) -> Result<Option<UserRow>> {
        let sql = format!(
            concat!("SELECT ", user_columns!(), " FROM users WHERE {} = $1"),
            column
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&value)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(op, || format!("user with {column} {value:?}")))?;
        row.map(|row| user_from_row(op, &row)).transpose()
    }

    /// `UPDATE users SET {set}, updated_at = $2 WHERE id = $3`; an unknown id is
    /// [`StoreError::NotFound`].
    async fn update_user<T>(
        &self,
        op: &'static str,
        id: i64,
        set: &'static str,
        value: T,
        at: i64,
    ) -> Result<UserRow>
    where
        T: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + 'static,
    {
        let target = || format!("user {id}");
        let sql = format!(
            concat!(
                "UPDATE users SET {}, updated_at = $2 WHERE id = $3 RETURNING ",
                user_columns!()
            ),
            set
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(value)
            .bind(at)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db(op, target))?
            .ok_or_else(|| StoreError::NotFound {
                op,
                target: target(),
            })?;
        user_from_row(op, &row)
    }

    /// Stores a refresh token of account `t.user_id` and returns it; an unknown account is
    /// [`StoreError::NotFound`].
    pub async fn add_refresh_token(&self, t: &NewRefreshToken) -> Result<RefreshTokenRow> {
        const OP: &str = "add_refresh_token";
        let target = || format!("user {} token family {}", t.user_id, t.family);
        // Checked first so that the error names the account rather than a foreign key.
        if self.user_by_id(t.user_id).await?.is_none() {
            return Err(StoreError::NotFound {
                op: OP,
                target: format!("user {}", t.user_id),
            });
        }
        let row = sqlx::query(concat!(
            "INSERT INTO refresh_tokens (user_id, family, token_hash, issued_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             RETURNING ",
            token_columns!()
        ))
        .bind(t.user_id)
        .bind(&t.family)
        .bind(&t.token_hash)
        .bind(t.issued_at)
        .bind(t.expires_at)
        .fetch_one(&self.pool)
        .await
        .map_err(db(OP, target))?;
        token_from_row(OP, &row)
    }

    /// Uses the refresh token whose hash is `token_hash` at `now` (unix seconds), in one
    /// transaction: unknown, revoked, used before (then its whole family is revoked with reason
    /// `reuse`), expired (`expires_at <= now`), or valid and now marked used — checked in that
    /// order. Of several uses of one token at once, exactly one is [`RefreshUse::Valid`].
    ///
    /// The account's state (disabled, role) is not looked at: that is the caller's.
    pub async fn use_refresh_token(&self, token_hash: &str, now: i64) -> Result<RefreshUse> {
        const OP: &str = "use_refresh_token";
        let target = || "refresh token".to_owned();
        let mut tx = self.begin_write(OP, target).await?;
        let sql = match self.backend {
            Backend::Sqlite => concat!(
                "SELECT ",
                token_columns!(),
                " FROM refresh_tokens WHERE token_hash = $1"
            ),
            // Waits for another use of this token to end, then reads what it left.
            Backend::Postgres => concat!(
                "SELECT ",
                token_columns!(),
                " FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"
            ),
        };
        let row = sqlx::query(sql)
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP, target))?;
        let Some(row) = row else {
            return Ok(RefreshUse::Unknown);
        };
        let token = token_from_row(OP, &row)?;
        let outcome = if token.revoked_at.is_some() {
            RefreshUse::Revoked(token)
        } else if token.used_at.is_some() {
            let family = format!("token family {}", token.family);
            revoke_where(
                OP,
                &mut tx,
                "family = $3",
                token.family.clone(),
                family,
                "reuse",
                now,
            )
            .await?;
            RefreshUse::Reused(token_by_id(OP, &mut tx, token.id).await?)
        } else if token.expires_at <= now {
            RefreshUse::Expired(token)
        } else {
            let target = || format!("refresh token {}", token.id);
            let row = sqlx::query(concat!(
                "UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL
                 RETURNING ",
                token_columns!()
            ))
            .bind(now)
            .bind(token.id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db(OP, target))?
            // The row is locked (or the database is), so no one else can have used it.
            .ok_or_else(|| StoreError::Corrupt {
                op: OP,
                target: target(),
                field: "used_at",
                detail: "used by another transaction while locked".to_owned(),
            })?;
            RefreshUse::Valid(token_from_row(OP, &row)?)
        };
        tx.commit().await.map_err(db(OP, target))?;
        Ok(outcome)
    }

    /// Revokes every unrevoked token of family `family` at `now` with reason `reason`; returns
    /// how many were revoked.
    pub async fn revoke_family(&self, family: &str, reason: &str, now: i64) -> Result<u64> {
        const OP: &str = "revoke_family";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db(OP, || format!("token family {family}")))?;
        let target = format!("token family {family}");
        revoke_where(
            OP,
            &mut conn,
            "family = $3",
            family.to_owned(),
            target,
            reason,
            now,
        )
        .await
    }

    /// Whether any token of family `family` is revoked: a logout, a reuse or a revocation of
    /// the account ends the whole login, and access tokens naming the family with it.
    pub async fn token_family_revoked(&self, family: &str) -> Result<bool> {
        const OP: &str = "token_family_revoked";
        let found: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM refresh_tokens WHERE family = $1 AND revoked_at IS NOT NULL LIMIT 1",
        )
        .bind(family)
        .fetch_optional(&self.pool)
        .await
        .map_err(db(OP, || format!("token family {family}")))?;
        Ok(found.is_some())
    }

    /// Revokes every unrevoked token of account `user_id` at `now` with reason `reason`; returns
    /// how many were revoked.
    pub async fn revoke_user_tokens(&self, user_id: i64, reason: &str, now: i64) -> Result<u64> {
        const OP: &str = "revoke_user_tokens";
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(db(OP, || format!("user {user_id}")))?;
        let target = format!("tokens of user {user_id}");
        revoke_where(OP, &mut conn, "user_id = $3", user_id, target, reason, now).await
    }

    /// Adds an audit record; returns its id.
    pub async fn add_audit(&self, a: &NewAudit) -> Result<i64> {
        const OP: &str = "add_audit";
        let target = || format!("audit {} by {}", a.action, a.actor);
        let detail = to_json(OP, &target, "detail", &a.detail)?;
        sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor_id, actor, action, target, detail, ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             RETURNING id",
        )
        .bind(a.at)
        .bind(a.actor_id)
        .bind(&a.actor)
        .bind(&a.action)
        .bind(a.target.as_deref())
        .bind(detail)
        .bind(a.ip.as_deref())
        .fetch_one(&self.pool)
        .await
        .map_err(db(OP, target))
    }

    /// Up to `limit` audit records, newest first; with `before_id`, only those older than that
    /// record (pass the last id of one page to get the next).
    pub async fn audit_log(&self, limit: u32, before_id: Option<i64>) -> Result<Vec<AuditRow>> {
        const OP: &str = "audit_log";
        let rows = sqlx::query(
            "SELECT id, at, actor_id, actor, action, target, detail, ip
             FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before_id.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db(OP, || "audit log".to_owned()))?;
        rows.iter().map(|row| audit_from_row(OP, row)).collect()
    }
}

fn check_username(op: &'static str, name: &str) -> Result<()> {
    check_name_of(op, "user", name)?;
    if name.chars().count() > MAX_USERNAME_CHARS {
        return Err(StoreError::InvalidName {
            op,
            what: "user",
            name: name.to_owned(),
            reason: "it is longer than 64 characters",
        });
    }
    Ok(())
}

fn check_email(op: &'static str, email: &str) -> Result<()> {
    let reason = if email.trim().is_empty() {
        "it is empty"
    } else if email.trim() != email {
        "it starts or ends with whitespace"
    } else if !email.contains('@') {
        "it has no @"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidEmail {
        op,
        email: email.to_owned(),
        reason,
    })
}

fn taken(op: &'static str, what: &'static str, value: &str, id: i64) -> StoreError {
    StoreError::AccountTaken {
        op,
        what,
        value: value.to_owned(),
        id,
    }
}

/// `UPDATE refresh_tokens SET revoked_at = $1, revoked_reason = $2 WHERE {filter}` (on `$3`) for
/// the rows not revoked yet; returns how many. `target` names them in errors.
async fn revoke_where<T>(
    op: &'static str,
    conn: &mut AnyConnection,
    filter: &'static str,
    value: T,
    target: String,
    reason: &str,
    now: i64,
) -> Result<u64>
where
    T: for<'q> sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any> + Send + 'static,
{
    let sql = format!(
        "UPDATE refresh_tokens SET revoked_at = $1, revoked_reason = $2
         WHERE {filter} AND revoked_at IS NULL"
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(now)
        .bind(reason)
        .bind(value)
        .execute(&mut *conn)
        .await
        .map_err(db(op, || target.clone()))?;
    Ok(done.rows_affected())
}

async fn token_by_id(
    op: &'static str,
    conn: &mut AnyConnection,
    id: i64,
) -> Result<RefreshTokenRow> {
    let target = || format!("refresh token {id}");
    let row = sqlx::query(concat!(
        "SELECT ",
        token_columns!(),
        " FROM refresh_tokens WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db(op, target))?
    .ok_or_else(|| StoreError::NotFound {
        op,
        target: target(),
    })?;
    token_from_row(op, &row)
}

fn user_from_row(op: &'static str, row: &AnyRow) -> Result<UserRow> {
    let id: i64 = get(op, row, "id")?;
    let target = || format!("user {id}");
    let disabled: i64 = get(op, row, "disabled")?;
    Ok(UserRow {
        id,
        username: get(op, row, "username")?,
        password_hash: get(op, row, "password_hash")?,
        role: name_column(op, row, "role", target, Role::from_name)?,
        email: get(op, row, "email")?,
        disabled: match disabled {
            0 => false,
            1 => true,
            other => {
                return Err(StoreError::Corrupt {
                    op,
                    target: target(),
                    field: "disabled",
                    detail: format!("disabled {other}, not 0 or 1"),
                });
            }
        },
        created_at: get(op, row, "created_at")?,
        updated_at: get(op, row, "updated_at")?,
    })
}

fn token_from_row(op: &'static str, row: &AnyRow) -> Result<RefreshTokenRow> {
    Ok(RefreshTokenRow {
        id: get(op, row, "id")?,
        user_id: get(op, row, "user_id")?,
        family: get(op, row, "family")?,
        token_hash: get(op, row, "token_hash")?,
        issued_at: get(op, row, "issued_at")?,
        expires_at: get(op, row, "expires_at")?,
        used_at: get(op, row, "used_at")?,
        revoked_at: get(op, row, "revoked_at")?,
        revoked_reason: get(op, row, "revoked_reason")?,
    })
}

fn audit_from_row(op: &'static str, row: &AnyRow) -> Result<AuditRow> {
    let id: i64 = get(op, row, "id")?;
    Ok(AuditRow {
        id,
        at: get(op, row, "at")?,
        actor_id: get(op, row, "actor_id")?,
        actor: get(op, row, "actor")?,
        action: get(op, row, "action")?,
        target: get(op, row, "target")?,
        detail: json_column(op, row, "detail", || format!("audit {id}"))?,
        ip: get(op, row, "ip")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_spell_and_parse() {
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Researcher);
        assert!(Role::Researcher > Role::Viewer);
        for role in Role::ALL {
            assert_eq!(Role::from_name(role.as_str()), Some(role));
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
            assert_eq!(serde_json::from_str::<Role>(&json).unwrap(), role);
        }
        assert_eq!("Operator".parse::<Role>(), Ok(Role::Operator));
        let err = "root".parse::<Role>().unwrap_err().to_string();
        assert!(err.contains("viewer|researcher|operator|admin"), "{err}");
        assert!(serde_json::from_str::<Role>("\"Admin\"").is_err());
    }

    #[test]
    fn usernames_are_checked() {
        check_username("t", "alice").unwrap();
        check_username("t", &"a".repeat(MAX_USERNAME_CHARS)).unwrap();
        for bad in [
            "",
            " ",
            " alice",
            "alice\n",
            "12",
            &"a".repeat(MAX_USERNAME_CHARS + 1),
        ] {
            let err = check_username("t", bad).unwrap_err();
            assert!(matches!(err, StoreError::InvalidName { .. }), "{err}");
        }
    }
}

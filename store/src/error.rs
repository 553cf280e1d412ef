//! The store's one error type.

/// What went wrong in the store, and where.
///
/// Every URL carried here has been through [`crate::scrub_url`], so printing an error (or its
/// `Debug`) never shows a password. The underlying sqlx, I/O or JSON error is kept as the
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The URL is neither PostgreSQL nor SQLite.
    #[error(
        "unsupported database URL {url}: expected postgres://, postgresql://, sqlite: or a file path"
    )]
    UnsupportedUrl { url: String },

    /// The SQLite file's parent directory could not be created.
    #[error("creating directory {} for the SQLite database {url}", path.display())]
    CreateDir {
        path: std::path::PathBuf,
        url: String,
        #[source]
        source: std::io::Error,
    },

    /// The lock that serialises migrations of one SQLite file across processes could not be
    /// taken.
    #[error("locking {} to migrate the SQLite database {url}", path.display())]
    MigrationLock {
        path: std::path::PathBuf,
        url: String,
        #[source]
        source: std::io::Error,
    },

    /// The first connection (made at [`crate::Store::connect`]) failed.
    #[error("connecting to the {backend} database at {url}")]
    Connect {
        backend: &'static str,
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// The first connection did not come up in time.
    #[error("connecting to the {backend} database at {url}: no answer within {seconds} s")]
    ConnectTimeout {
        backend: &'static str,
        url: String,
        seconds: u64,
    },

    /// Applying the numbered migrations failed.
    #[error("migrating the {backend} database at {url}")]
    Migrate {
        backend: &'static str,
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A statement failed. `target` names the rows involved, e.g. `run 12 generation 3`.
    #[error("{op} ({target}): database error")]
    Database {
        op: &'static str,
        target: String,
        #[source]
        source: sqlx::Error,
    },

    /// The experiment, run, model, session, deployment or user named does not exist.
    #[error("{op}: {target} not found")]
    NotFound { op: &'static str, target: String },

    /// A NaN or infinity was about to be stored.
    #[error("{op} ({target}): {field} must be finite, got {value}")]
    NonFinite {
        op: &'static str,
        target: String,
        field: String,
        value: f64,
    },

    /// A u64 (block number) does not fit the BIGINT column.
    #[error(
        "{op} ({target}): {field} = {value} does not fit a BIGINT (max {})",
        i64::MAX
    )]
    OutOfRange {
        op: &'static str,
        target: String,
        field: &'static str,
        value: u64,
    },

    /// A JSON payload could not be written.
    #[error("{op} ({target}): encoding {field} as JSON")]
    Encode {
        op: &'static str,
        target: String,
        field: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A model name that other content or another directory is registered under.
    #[error(
        "{op}: model name `{name}` is already taken by model {id} (directory {dir}) and {reason}; \
         names are unique: register this model under another name"
    )]
    ModelNameTaken {
        op: &'static str,
        name: String,
        id: i64,
        dir: String,
        /// Why this is not the same model again, e.g. its content hash differs.
        reason: String,
    },

    /// A model directory that another registered model points at.
    #[error(
        "{op}: directory {dir} already holds model {id} `{name}`; \
         write this model to another directory"
    )]
    ModelDirTaken {
        op: &'static str,
        dir: String,
        id: i64,
        name: String,
    },

    /// An experiment name that another experiment holds (names are unique per store).
    #[error(
        "{op}: experiment name `{name}` is already taken by experiment {id} ({status}); names \
         are unique per store: choose another name"
    )]
    ExperimentNameTaken {
        op: &'static str,
        name: String,
        id: i64,
        status: dexlab_types::ExperimentStatus,
    },

    /// A session folder whose row records another session than the one being started in it:
    /// the folder was reused, or the command that resumes it changed.
    #[error(
        "{op}: session folder {dir} holds session {id}, started with {differences}; resume it \
         with what it was started with, or choose another session folder"
    )]
    SessionMismatch {
        op: &'static str,
        dir: String,
        id: i64,
        /// What differs, e.g. ``strategy `momentum` (not `mean_reversion`)``, comma-separated.
        differences: String,
    },

    /// A session folder that is not an absolute path: rows are keyed by the absolute path, so a
    /// relative one would register a resumed session again under another key.
    #[error("{op}: session folder {dir:?} is not an absolute path")]
    SessionDirNotAbsolute { op: &'static str, dir: String },

    /// A retired model where one in service is needed: deploying it (or rolling back to a
    /// version that runs it), or retiring it again.
    #[error(
        "{op}: model {id} `{name}` was retired at {at} (unix seconds) by {by}: {reason}; \
         {consequence}"
    )]
    ModelRetired {
        op: &'static str,
        id: i64,
        name: String,
        at: i64,
        by: String,
        reason: String,
        /// Why that stops the operation, e.g. `a retired model may not be deployed`.
        consequence: &'static str,
    },

    /// A rollback of a deployment whose current version replaced no earlier one.
    #[error(
        "{op}: deployment `{name}` is at version {version}, which replaced no earlier version: \
         nothing to roll back to"
    )]
    NothingToRollBack {
        op: &'static str,
        name: String,
        version: u32,
    },

    /// Other writers kept taking the next version of a deployment (PostgreSQL, where two
    /// promotions of one name at once are resolved by retrying).
    #[error(
        "{op} (deployment `{name}`): other writers took the next version {attempts} times in a \
         row; nothing was written, try again"
    )]
    VersionContention {
        op: &'static str,
        name: String,
        attempts: u32,
    },

    /// A username or e-mail address that another account already has.
    #[error(
        "{op}: {what} {value:?} already belongs to user {id}; each account needs its own {what}"
    )]
    AccountTaken {
        op: &'static str,
        /// `"username"` or `"e-mail address"`.
        what: &'static str,
        value: String,
        /// The account that has it.
        id: i64,
    },

    /// An account's e-mail address the store does not accept.
    #[error("{op}: e-mail address {email:?} is not valid: {reason}")]
    InvalidEmail {
        op: &'static str,
        email: String,
        reason: &'static str,
    },

    /// A read-only open ([`crate::Store::open_existing`]) of a SQLite store that is not there.
    #[error(
        "no dexlab store at {url}: {reason}; commands that only read the store do not create \
         one (run `dexlab evolve`, `dexlab train` or `dexlab rl train` first, or point \
         DATABASE_URL at an existing store)"
    )]
    NoStore {
        path: std::path::PathBuf,
        url: String,
        reason: String,
    },

    /// A model, experiment, deployment or user name the store does not accept.
    #[error("{op}: {what} name {name:?} is not valid: {reason}")]
    InvalidName {
        op: &'static str,
        /// `"model"`, `"experiment"`, `"deployment"`, `"halt"` or `"user"`.
        what: &'static str,
        name: String,
        reason: &'static str,
    },

    /// A model directory or one of its files (see [`crate::content_hash`]) could not be read.
    #[error("hashing {}", path.display())]
    Hash {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The operation is for the other backend (a SQLite copy of a PostgreSQL store, say).
    #[error("{op}: {detail}")]
    WrongBackend { op: &'static str, detail: String },

    /// A stored value could not be read back (hand-edited or foreign rows).
    #[error("{op} ({target}): stored {field} is not valid: {detail}")]
    Corrupt {
        op: &'static str,
        target: String,
        field: &'static str,
        detail: String,
    },
}

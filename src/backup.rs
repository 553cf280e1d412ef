//! `dexlab backup`: one archive of the store and the folders it points at, and its restore.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use dexlab_lab::backup::{self, Target};
use dexlab_lab::{Access, open_store};

#[derive(Subcommand)]
pub enum BackupCmd {
    /// Write a tar archive of the store of DATABASE_URL (a consistent copy while others write:
    /// SQLite's VACUUM INTO or pg_dump), every model, agent and session folder it points at,
    /// and a manifest of SHA-256 checksums. FILE must not exist.
    Create {
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Unpack an archive into an empty folder, check every file against the manifest, and put
    /// the store in place: a SQLite file in the folder (dexlab.sqlite), or, for a PostgreSQL
    /// backup, an empty PostgreSQL database (--database-url). Models and sessions then point at
    /// their restored folders.
    Restore {
        archive: PathBuf,
        #[arg(long)]
        into: PathBuf,
        /// An empty PostgreSQL database for a PostgreSQL backup.
        #[arg(long)]
        database_url: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn backup_cmd(c: BackupCmd) -> anyhow::Result<ExitCode> {
    match c {
        BackupCmd::Create { out, json } => {
            let store = open_store(Access::Read).await?;
            let s = backup::create(&store, &out).await?;
            store.close().await;
            for m in &s.missing {
                eprintln!("warning: a folder the store names is missing, left out: {m}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!(
                    "{}: the {} store, {} folders, {} files, {} bytes",
                    s.archive.display(),
                    s.backend,
                    s.folders,
                    s.files,
                    s.bytes
                );
            }
        }
        BackupCmd::Restore {
            archive,
            into,
            database_url,
            json,
        } => {
            let target = match database_url {
                Some(u) => Target::Postgres(u),
                None => Target::Sqlite,
            };
            let (s, url) = backup::restore(&archive, &into, target).await?;
            let shown = dexlab_store::scrub_url(&url);
            if json {
                let mut v = serde_json::to_value(&s)?;
                v["database_url"] = serde_json::Value::String(shown);
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "restored {} files ({} folders) into {}; the store is {shown}: use it with \
                     DATABASE_URL={shown}",
                    s.files,
                    s.folders,
                    into.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

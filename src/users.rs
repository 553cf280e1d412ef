//! `dexlab users`: accounts of the dashboard and API server. There is no default account: the
//! first admin is made here, with a one-time password printed once.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use dexlab_lab::{Access, open_store};

#[derive(Subcommand)]
pub enum UsersCmd {
    /// Add an account. Prints a one-time password, unless one comes on standard input.
    Add {
        name: String,
        /// viewer (reads), researcher (launches runs), operator (promotes, rolls back, kill
        /// switch), admin (accounts).
        #[arg(long)]
        role: String,
        /// A verified e-mail, which OAuth2/OIDC logins map to this account.
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input (its first line) instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// The accounts, by id.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn users_cmd(c: UsersCmd) -> anyhow::Result<ExitCode> {
    match c {
        UsersCmd::Add {
            name,
            role,
            email,
            password_stdin,
        } => {
            let role: dexlab_store::Role = role.parse().context("--role")?;
            let password = if password_stdin {
                let mut text = String::new();
                std::io::stdin()
                    .read_to_string(&mut text)
                    .context("reading the password from standard input")?;
                let line = text.lines().next().unwrap_or("").to_owned();
                if line.is_empty() {
                    bail!("--password-stdin: standard input holds no password");
                }
                Some(line)
            } else {
                None
            };
            let store = open_store(Access::Write).await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let (row, generated) = dexlab_lab::accounts::add_user(
                &store,
                &dexlab_lab::accounts::AddUser {
                    username: name,
                    role,
                    email,
                    password,
                    by: format!("cli:{}", crate::deploy::who()),
                    at: now,
                },
            )
            .await?;
            println!("user {} `{}` added as {}", row.id, row.username, row.role);
            if let Some(pw) = generated {
                // Shown once, here only: the store keeps its argon2id hash.
                println!("one-time password: {pw}");
            }
        }
        UsersCmd::List { json } => {
            let store = open_store(Access::Read).await?;
            let rows = store.list_users().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!(
                    "no accounts in {} (`dexlab users add` makes one)",
                    store.url()
                );
            } else {
                for r in &rows {
                    println!(
                        "{:>4} {:<24} {:<10} {}{}",
                        r.id,
                        r.username,
                        r.role,
                        r.email.as_deref().unwrap_or("-"),
                        if r.disabled { "  DISABLED" } else { "" }
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

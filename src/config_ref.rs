//! `dexlab config reference`: every key of every config file with its default, made from the
//! config types' own defaults (so it cannot drift from them), and every environment variable.
//! `docs/configuration.md` is its output; a test fails when the two differ.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print the configuration reference (Markdown): every TOML key with its default, every
    /// environment variable.
    Reference,
}

/// A TOML value for a JSON scalar or array of scalars.
fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if n.is_f64() => format!("{f:?}"),
            _ => format!("\"{n}\""),
        },
        Value::Bool(b) => b.to_string(),
        Value::Array(a) => format!("[{}]", a.iter().map(scalar).collect::<Vec<_>>().join(", ")),
        Value::Null => "\"\"".into(),
        Value::Object(_) => {
            // Inline table (an array of tables' element).
            let Value::Object(m) = v else { unreachable!() };
            format!(
                "{{ {} }}",
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, v)| format!("{k} = {}", scalar(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    }
}

/// A JSON object as TOML text under the table `path`: scalars first, unset keys as comments,
/// then sub-tables.
fn emit(out: &mut String, path: &str, v: &serde_json::Map<String, Value>) {
    if !path.is_empty() {
        out.push_str(&format!("\n[{path}]\n"));
    }
    for (k, x) in v {
        match x {
            Value::Object(_) => {}
            Value::Null => out.push_str(&format!("# {k} =   # unset by default\n")),
            _ => out.push_str(&format!("{k} = {}\n", scalar(x))),
        }
    }
    for (k, x) in v {
        if let Value::Object(m) = x {
            let sub = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            emit(out, &sub, m);
        }
    }
}

fn toml_of<T: serde::Serialize>(value: &T) -> anyhow::Result<String> {
    toml_of_value(serde_json::to_value(value)?)
}

fn toml_of_value(v: Value) -> anyhow::Result<String> {
    let Value::Object(m) = v else {
        anyhow::bail!("a config is a table")
    };
    let mut out = String::new();
    emit(&mut out, "", &m);
    Ok(out.trim_start().to_owned())
}

const ENV: &[(&str, &str, &str)] = &[
    (
        "DATABASE_URL",
        "every command",
        "the store: a `postgres://` URL, else a SQLite file (default `./dexlab.sqlite`)",
    ),
    (
        "DEXLAB_LOG",
        "every command",
        "the log filter (`--log`; default `info`)",
    ),
    (
        "DEXLAB_RPC_URL",
        "`data ingest`, `worker`",
        "the node (`--rpc`); a worker's node for `data ingest --nats` ranges",
    ),
    (
        "DEXLAB_NATS",
        "`evolve`, `data ingest`, `features build`, `worker`",
        "a NATS JetStream server (`--nats`): fitness, ingestion ranges, the leakage canary on its workers",
    ),
    (
        "DEXLAB_WORKER_VERSION",
        "`worker`, tests",
        "the dexlab version a worker takes tasks of, standing in for another build",
    ),
    (
        "DEXLAB_BUILD_COMMIT",
        "building dexlab",
        "a commit recorded in the version workers compare (`0.1.0+COMMIT`)",
    ),
    (
        "DEXLAB_HOME",
        "`chain up`, tests",
        "the `.dexlab/` folder of the tooling (default: the nearest above the working folder)",
    ),
    (
        "DEXLAB_ANVIL",
        "`chain up`",
        "the anvil binary (default `.dexlab/bin/anvil`, then `anvil` on `PATH`)",
    ),
    (
        "DEXLAB_PRIVATE_KEY",
        "`live --mode live`, `executor deploy`",
        "the operator's key (or a keystore with `--keystore`)",
    ),
    (
        "DEXLAB_KEYSTORE_PASSWORD",
        "`live --mode live`, `executor deploy`",
        "the keystore's password (or `--password-file`)",
    ),
    (
        "DEXLAB_JWT_SECRET_FILE",
        "`serve`",
        "the access tokens' signing secret (`--jwt-secret-file`)",
    ),
    (
        "DEXLAB_METRICS_TOKEN_FILE",
        "`serve`",
        "a bearer token that may read `/metrics`",
    ),
    ("DEXLAB_OIDC_PROVIDER", "`serve`", "`oidc` or `github`"),
    (
        "DEXLAB_OIDC_ISSUER",
        "`serve`",
        "the OpenID Connect issuer (GitHub: its web address, default `https://github.com`)",
    ),
    (
        "DEXLAB_OIDC_CLIENT_ID",
        "`serve`",
        "the client registered with the provider",
    ),
    (
        "DEXLAB_OIDC_CLIENT_SECRET_FILE",
        "`serve`",
        "a file holding the client's secret",
    ),
    (
        "DEXLAB_OIDC_REDIRECT_URL",
        "`serve`",
        "this server's `…/auth/oidc/callback`, as registered",
    ),
    ("DEXLAB_OIDC_NAME", "`serve`", "the login button's label"),
    (
        "DEXLAB_GITHUB_API_URL",
        "`serve`",
        "GitHub's API (GitHub Enterprise)",
    ),
    (
        "DEXLAB_JOB",
        "commands the job runner starts",
        "set by the runner: progress lines on stderr, end when stdin closes",
    ),
    (
        "DEXLAB_TEST_POSTGRES_URL",
        "the tests",
        "a PostgreSQL server other than 127.0.0.1:5432",
    ),
];

pub fn reference() -> anyhow::Result<String> {
    let mut s = String::from(
        "# Configuration reference\n\n\
         Generated by `dexlab config reference` from the config types' own defaults (a test fails \
         when this file differs from its output). Every key is optional: a file holds only what it \
         changes. What the keys mean: the annotated examples in `examples/` and the README.\n",
    );
    let block = |title: &str, used: &str, body: String| {
        format!("\n## {title}\n\n{used}\n\n```toml\n{body}```\n")
    };
    s.push_str(&block(
        "Experiments: backtests, evolve runs, RL training",
        "`dexlab backtest|evolve --config FILE`, `dexlab rl train|eval --config FILE`, and the \
         `[backtest]` table for `dexlab live --config FILE` (`examples/evolve-devnet.toml`).",
        {
            // Keys the config leaves out when they hold their default.
            let mut v = serde_json::to_value(dexlab_evolve::config::ExperimentConfig::default())?;
            if let Some(b) = v["backtest"].as_object_mut() {
                b.entry("deadline_blocks").or_insert(Value::from(0));
                // A table of the risk limits' keys (below); unset: no limit in backtests.
                b.entry("risk").or_insert(Value::Null);
            }
            toml_of_value(v)?
        },
    ));
    s.push_str(&block(
        "Risk limits",
        "`dexlab live --risk FILE`, `dexlab promote --risk FILE`, and `[backtest.risk]` in an \
         experiment config (`examples/risk.toml`).",
        toml_of(&dexlab_engine::risk::RiskLimits::default())?,
    ));
    s.push_str(&block(
        "Features",
        "`dexlab features build --config FILE` (`examples/features.toml`).",
        toml_of(&dexlab_features::config::FeatureConfig::default())?,
    ));
    for kind in dexlab_types::ModelKind::ALL {
        s.push_str(&block(
            &format!("Training hyperparameters: `{}`", kind.as_str()),
            &format!(
                "`dexlab train --model {} --config FILE` (keys of another kind are accepted, so \
                 one file serves all four).",
                kind.as_str()
            ),
            dexlab_models::training::Hyper::defaults(kind).to_toml(),
        ));
    }
    s.push_str(&block(
        "RL agents",
        "`dexlab rl train --rl-config FILE` (`examples/rl.toml`).",
        toml_of(&dexlab_models::rl::env::RlConfig::default())?,
    ));
    s.push_str("\n## Environment variables\n\n| variable | read by | what |\n|---|---|---|\n");
    for (name, by, what) in ENV {
        s.push_str(&format!("| `{name}` | {by} | {what} |\n"));
    }
    Ok(s)
}

pub fn config_cmd(c: ConfigCmd) -> anyhow::Result<ExitCode> {
    match c {
        ConfigCmd::Reference => print!("{}", reference()?),
    }
    Ok(ExitCode::SUCCESS)
}

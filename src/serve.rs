//! `dexlab serve`: the dashboard and API server (so far: health and readiness).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback by default; port 0 picks a free one, printed on stdout).
    #[arg(long, default_value = dexlab_server::DEFAULT_BIND)]
    pub bind: SocketAddr,
}

pub async fn serve_cmd(a: ServeArgs) -> anyhow::Result<ExitCode> {
    let store = dexlab_lab::open_store(dexlab_lab::Access::Write).await?;
    let url = store.url().to_owned();
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
        a.bind,
        |at| {
            println!("listening on http://{at}");
            eprintln!("store {url}; stop with Ctrl-C or SIGTERM");
        },
        stop,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

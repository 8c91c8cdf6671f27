//! The `nsq-gateway` binary: parse flags and `gateway.yaml`, set up logging,
//! load plugins, bind the listeners, install signal handlers, and hand
//! everything to `app::run`. Startup problems are one line on stderr and
//! a non-zero exit.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tracing::info;

use nsq_gateway::app::{self, Listeners};
use nsq_gateway::cli::Cli;
use nsq_gateway::config::Config;
use nsq_gateway::server::{self, Context};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let explicit = std::env::args_os()
        .skip(1)
        .any(|a| a.to_string_lossy().starts_with("--config"));
    let config = match cli.resolve(explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nsq-gateway: {e:#}");
            return ExitCode::from(2);
        }
    };
    nsq_gateway::logging::init(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("nsq-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsq-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = server::build_registry(&config)?;
    let tcp = TcpListener::bind(&config.tcp_address)
        .await
        .with_context(|| format!("listen ({}) failed", config.tcp_address))?;
    let http = TcpListener::bind(&config.http_address)
        .await
        .with_context(|| format!("listen ({}) failed", config.http_address))?;
    for (magic, protocol) in registry.entries() {
        info!(magic = %magic, %protocol, "protocol registered");
    }
    let ctx = Context::open(config, registry)?;
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("signal received: shutting down");
        shutdown.cancel();
    });
    let listeners = Listeners {
        tcp,
        http: Some(http),
    };
    app::run(listeners, ctx).await
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, Ctrl-C still ends the process by default.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

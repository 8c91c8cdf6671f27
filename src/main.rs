//! The `nsq-gateway` binary: parse flags and `gateway.yaml`, set up logging,
//! load plugins, bind the listeners, install signal handlers, and hand
//! everything to `app::run`. Startup problems are one line on stderr and
//! a non-zero exit.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::TcpListener;
use tracing::{info, warn};

use nsq_gateway::app::{self, Listeners};
use nsq_gateway::cli::Cli;
use nsq_gateway::config::Config;
use nsq_gateway::server::{self, Context};

fn main() -> ExitCode {
    let args = nsq_gateway::cli::normalize_args(std::env::args_os());
    let cli = Cli::parse_from(&args);
    if cli.version {
        println!("{}", nsq_gateway::cli::VERSION_LINE);
        return ExitCode::SUCCESS;
    }
    let explicit = args
        .iter()
        .skip(1)
        .any(|a| a.to_string_lossy().starts_with("--config"));
    let config = match cli.resolve(explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nsq-gateway: {e:#}");
            return ExitCode::from(2);
        }
    };
    nsq_gateway::logging::init(config.log_level, config.log_format, &config.log_prefix);
    for ignored in config.ignored_settings() {
        warn!(
            setting = ignored.key,
            reason = ignored.reason,
            "setting accepted for nsqd compatibility; it has no effect here"
        );
    }
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
    // The file a plugin reload (SIGHUP, POST /plugins/reload) re-reads.
    let config_path = cli
        .config
        .is_file()
        .then(|| std::fs::canonicalize(&cli.config).unwrap_or_else(|_| cli.config.clone()));
    match runtime.block_on(serve(config, config_path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsq-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, config_path: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    // Installed before anything is bound, so a SIGTERM as soon as a port
    // answers is already a graceful shutdown (and a SIGHUP a reload, never
    // the default action, which would end the process).
    let signals = Signals::install();
    let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
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
    if let Some(path) = config_path {
        let _ = ctx.config_path.set(path);
    }
    if let Some(mut hangups) = hangups {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                info!("SIGHUP received: reloading plugins");
                // Logged (and shown in /stats) whether it worked or not.
                let _ = server::reload_plugins(&ctx).await;
            }
        });
    }
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(async move {
        signals.recv().await;
        info!("signal received: shutting down");
        shutdown.cancel();
    });
    let listeners = Listeners {
        tcp,
        http: Some(http),
    };
    app::run(listeners, ctx).await
}

/// SIGTERM and SIGINT handlers; `None` when they cannot be installed
/// (then Ctrl-C still ends the process by default).
struct Signals(Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Signals(Some((term, int))),
            _ => Signals(None),
        }
    }

    /// Resolves on SIGINT or SIGTERM.
    async fn recv(self) {
        let Some((mut term, mut int)) = self.0 else {
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

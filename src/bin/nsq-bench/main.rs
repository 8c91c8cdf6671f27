//! `nsq-bench`: a load generator for any nsqd-compatible server, speaking only
//! standard TCP protocol V2, modelled on NSQ's own `bench_writer` and
//! `bench_reader` so that nsq-gateway and nsqd can be measured side by side on
//! the same workload. `writer` keeps one MPUB batch in flight per connection,
//! `reader` subscribes with a fixed RDY and FINs every message (FINs batched per
//! socket read), and `both` runs the two at once and reports each.
//!
//! The hot loops allocate nothing per message: every connection owns one read
//! buffer and one write buffer, and the writer sends the same pre-encoded MPUB
//! frame on every round trip.

mod cli;
mod conn;
mod reader;
mod run;
mod wire;
mod writer;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command, cpus};
use crate::run::{run_both, run_reader_only, run_writer_only};

fn main() -> std::process::ExitCode {
    match real_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nsq-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Writer(a) => a.common.threads,
        Command::Reader(a) => a.common.threads,
        Command::Both(a) => a.common.threads,
    }
    .unwrap_or_else(cpus)
    .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("building the tokio runtime")?;
    rt.block_on(async move {
        match cli.command {
            Command::Writer(a) => run_writer_only(a).await,
            Command::Reader(a) => run_reader_only(a).await,
            Command::Both(a) => run_both(a).await,
        }
    })
}

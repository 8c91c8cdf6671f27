//! Command-line flags of `nsq-bench`, named like bench_writer / bench_reader's
//! so the same invocation drives either tool; durations use the gateway's
//! Go-style parser, plus a bare number as seconds.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "nsq-bench",
    about = "NSQ V2 load generator (bench_writer / bench_reader equivalent)"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Publish MPUB batches as fast as the server acknowledges them.
    Writer(WriterArgs),
    /// Consume and FIN messages from a channel.
    Reader(ReaderArgs),
    /// Run writers and readers at the same time and report each.
    Both(BothArgs),
}

#[derive(Args, Debug, Clone)]
pub(crate) struct CommonArgs {
    /// <addr>:<port> of the nsqd (or nsq-gateway) TCP listener.
    #[arg(long, default_value = "127.0.0.1:4150")]
    pub(crate) nsqd_tcp_address: String,
    /// Topic to publish to / consume from.
    #[arg(long, default_value = "sub_bench")]
    pub(crate) topic: String,
    /// Size of each message body in bytes.
    #[arg(long, default_value_t = 200)]
    pub(crate) size: usize,
    /// How long to run, e.g. `10s`, `4s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) runfor: Duration,
    /// Number of tokio worker threads (default: number of CPUs).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Do not send IDENTIFY after the magic.
    #[arg(long)]
    pub(crate) skip_identify: bool,
    /// Upgrade each connection to TLS with IDENTIFY `tls_v1`, as nsqd's
    /// clients do (the server certificate is not checked without --tls-ca).
    #[arg(long)]
    pub(crate) tls: bool,
    /// PEM CA file to verify the server's certificate against (with --tls).
    #[arg(long, value_name = "FILE")]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct WriterArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Messages per MPUB; 1 sends single PUBs.
    #[arg(long, default_value_t = 200)]
    pub(crate) batch_size: usize,
    /// Publishing connections (default: number of CPUs, like bench_writer's GOMAXPROCS).
    #[arg(long, visible_alias = "concurrency")]
    pub(crate) workers: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct ReaderArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Channel to consume from.
    #[arg(long, default_value = "ch")]
    pub(crate) channel: String,
    /// RDY count sent by each consuming connection.
    #[arg(long, default_value_t = 2500)]
    pub(crate) rdy: u64,
    /// Consuming connections (default: number of CPUs, like bench_reader's GOMAXPROCS).
    #[arg(long, visible_alias = "concurrency")]
    pub(crate) workers: Option<usize>,
}

#[derive(Args, Debug, Clone)]
pub(crate) struct BothArgs {
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Channel to consume from.
    #[arg(long, default_value = "ch")]
    pub(crate) channel: String,
    /// Messages per MPUB.
    #[arg(long, default_value_t = 200)]
    pub(crate) batch_size: usize,
    /// RDY count sent by each consuming connection.
    #[arg(long, default_value_t = 2500)]
    pub(crate) rdy: u64,
    /// Publishing connections (default: number of CPUs).
    #[arg(long, visible_alias = "writer-concurrency")]
    pub(crate) writers: Option<usize>,
    /// Consuming connections (default: number of CPUs).
    #[arg(long, visible_alias = "reader-concurrency")]
    pub(crate) readers: Option<usize>,
}

/// Parses a Go-style duration (`10s`, `1.5s`, `500ms`, `2m`, `100us`, `1m30s`)
/// with the gateway's parser, or a bare number of seconds as bench_writer's
/// `--runfor 4` does.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let secs: f64 = t
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: expected e.g. 10s, 500ms, 1m"))?;
        return Duration::try_from_secs_f64(secs).map_err(|_| format!("invalid duration {s:?}"));
    }
    nsq_gateway::config::parse_duration(t)
}

/// Number of CPUs, the default for threads and connections.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("4"), Ok(Duration::from_secs(4)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn cli_accepts_bench_flags() {
        let cli = Cli::try_parse_from([
            "nsq-bench",
            "reader",
            "--nsqd-tcp-address",
            "127.0.0.1:4150",
            "--topic",
            "t",
            "--channel",
            "c",
            "--rdy",
            "100",
            "--runfor",
            "4s",
            "--concurrency",
            "3",
        ])
        .expect("parses");
        match cli.command {
            Command::Reader(a) => {
                assert_eq!(a.rdy, 100);
                assert_eq!(a.workers, Some(3));
                assert_eq!(a.common.runfor, Duration::from_secs(4));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}

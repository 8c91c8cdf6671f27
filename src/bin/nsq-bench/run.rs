//! Runs a workload: connects the writers and/or readers, lets them go until
//! `--runfor` ends, gathers what each connection did and prints it in
//! bench_writer / bench_reader's report format.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::time::Instant;

use crate::cli::{BothArgs, ReaderArgs, WriterArgs, cpus};
use crate::reader::connect_readers;
use crate::writer::connect_writers;

/// Totals of one side of a run, printed like bench_writer / bench_reader do.
struct Report {
    label: &'static str,
    duration: Duration,
    messages: u64,
    size: usize,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.duration.as_secs_f64().max(f64::MIN_POSITIVE);
        let mb = self.messages as f64 * self.size as f64 / secs / 1024.0 / 1024.0;
        let ops = self.messages as f64 / secs;
        let us_per_op = if self.messages == 0 {
            0.0
        } else {
            self.duration.as_micros() as f64 / self.messages as f64
        };
        write!(
            f,
            "[{}] duration: {:?} - {:.3}mb/s - {:.3}ops/s - {:.3}us/op ({} messages)",
            self.label, self.duration, mb, ops, us_per_op, self.messages
        )
    }
}

async fn resolve(addr: &str) -> Result<SocketAddr> {
    tokio::net::lookup_host(addr)
        .await
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolved to no address"))
}

pub(crate) async fn run_writer_only(a: WriterArgs) -> Result<()> {
    let addr = resolve(&a.common.nsqd_tcp_address).await?;
    let workers = a.workers.unwrap_or_else(cpus).max(1);
    let writers = connect_writers(addr, &a.common, a.batch_size, workers).await?;
    let start = Instant::now();
    let end = start + a.common.runfor;
    let handles: Vec<_> = writers
        .into_iter()
        .map(|w| tokio::spawn(w.run(end)))
        .collect();
    let totals = join_counts("writer", handles).await?;
    println!(
        "{}",
        Report {
            label: "writer",
            duration: start.elapsed(),
            messages: totals.count,
            size: a.common.size,
        }
    );
    check_failures(&[("writer", &totals)])
}

pub(crate) async fn run_reader_only(a: ReaderArgs) -> Result<()> {
    let addr = resolve(&a.common.nsqd_tcp_address).await?;
    let workers = a.workers.unwrap_or_else(cpus).max(1);
    let readers = connect_readers(addr, &a.common, &a.channel, workers).await?;
    let start = Instant::now();
    let end = start + a.common.runfor;
    let handles: Vec<_> = readers
        .into_iter()
        .map(|r| tokio::spawn(r.run(a.rdy, end)))
        .collect();
    let totals = join_counts("reader", handles).await?;
    println!(
        "{}",
        Report {
            label: "reader",
            duration: start.elapsed(),
            messages: totals.count,
            size: a.common.size,
        }
    );
    check_failures(&[("reader", &totals)])
}

pub(crate) async fn run_both(a: BothArgs) -> Result<()> {
    let addr = resolve(&a.common.nsqd_tcp_address).await?;
    let n_writers = a.writers.unwrap_or_else(cpus).max(1);
    let n_readers = a.readers.unwrap_or_else(cpus).max(1);
    let writers = connect_writers(addr, &a.common, a.batch_size, n_writers).await?;
    let readers = connect_readers(addr, &a.common, &a.channel, n_readers).await?;
    let start = Instant::now();
    let end = start + a.common.runfor;
    let w: Vec<_> = writers
        .into_iter()
        .map(|w| tokio::spawn(w.run(end)))
        .collect();
    let r: Vec<_> = readers
        .into_iter()
        .map(|r| tokio::spawn(r.run(a.rdy, end)))
        .collect();
    let written = join_counts("writer", w).await?;
    let w_done = start.elapsed();
    let read = join_counts("reader", r).await?;
    let r_done = start.elapsed();
    println!(
        "{}",
        Report {
            label: "writer",
            duration: w_done,
            messages: written.count,
            size: a.common.size,
        }
    );
    println!(
        "{}",
        Report {
            label: "reader",
            duration: r_done,
            messages: read.count,
            size: a.common.size,
        }
    );
    check_failures(&[("writer", &written), ("reader", &read)])
}

/// What one worker achieved: its count, and the error that stopped it early.
pub(crate) struct Outcome {
    pub(crate) count: u64,
    pub(crate) error: Option<anyhow::Error>,
}

/// Totals of a group of workers; `failed` counts workers stopped by an error
/// (each is reported on stderr with what it had done by then).
struct Totals {
    count: u64,
    failed: usize,
}

async fn join_counts(role: &str, handles: Vec<tokio::task::JoinHandle<Outcome>>) -> Result<Totals> {
    let mut totals = Totals {
        count: 0,
        failed: 0,
    };
    for h in handles {
        let outcome = h.await.context("worker task panicked")?;
        totals.count += outcome.count;
        if let Some(e) = outcome.error {
            totals.failed += 1;
            eprintln!(
                "{role} stopped early after {} messages: {e:#}",
                outcome.count
            );
        }
    }
    Ok(totals)
}

fn check_failures(groups: &[(&str, &Totals)]) -> Result<()> {
    for (role, t) in groups {
        if t.failed > 0 {
            bail!(
                "{} {role} connection(s) stopped early (see above)",
                t.failed
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_matches_bench_format() {
        let r = Report {
            label: "writer",
            duration: Duration::from_secs(2),
            messages: 1_000_000,
            size: 200,
        };
        assert_eq!(
            r.to_string(),
            "[writer] duration: 2s - 95.367mb/s - 500000.000ops/s - 2.000us/op (1000000 messages)"
        );
    }
}

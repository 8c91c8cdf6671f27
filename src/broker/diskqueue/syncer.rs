//! Background fsync for `Batch` mode disk queues. The periodic data fsync
//! and metadata write of a queue run on a small pool of threads instead of
//! under the queue's lock, so publishers keep appending while the disk
//! catches up. A queue has at most one job in flight, which keeps its syncs
//! in order (data before the metadata that points at it) and bounds the
//! pool's work queue by the number of disk queues.

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use super::meta::{self, Meta};

/// Threads in the pool. fsyncs of different files overlap on the device;
/// more threads than this only queue up behind the same disk.
const WORKERS: usize = 2;

/// One queue's sync: fsync the segment being written, then replace the
/// metadata, which may only describe data that is already durable.
pub(super) struct Job {
    pub file: Option<Arc<File>>,
    pub meta: Option<MetaWrite>,
    pub tracker: Arc<Tracker>,
}

/// A metadata file to write atomically (temp file, fsync, rename).
pub(super) struct MetaWrite {
    pub path: PathBuf,
    pub tmp: PathBuf,
    pub meta: Meta,
}

/// A queue's view of its background syncs: whether one is in flight, how
/// many fsyncs they made, and the first error not yet reported.
#[derive(Default)]
pub(super) struct Tracker {
    /// A job is queued or running. An atomic, because a queue whose sync is
    /// due asks on every put and pop until the job is done; it changes only
    /// under `state`'s lock, so `wait_idle` cannot miss the wake-up.
    in_flight: AtomicBool,
    state: Mutex<TrackerState>,
    idle: Condvar,
}

#[derive(Default)]
struct TrackerState {
    fsyncs: u64,
    error: Option<io::Error>,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, TrackerState> {
        crate::sync::lock(&self.state)
    }

    /// A job of this queue is queued or running.
    pub fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Blocks until no job of this queue is queued or running.
    pub fn wait_idle(&self) {
        let mut st = self.lock();
        while self.busy() {
            st = crate::sync::wait(&self.idle, st);
        }
    }

    /// The error of a finished job, once.
    pub fn take_error(&self) -> Option<io::Error> {
        self.lock().error.take()
    }

    /// fsyncs made by finished jobs.
    #[cfg(any(test, feature = "bench-hooks"))]
    pub fn fsyncs(&self) -> u64 {
        self.lock().fsyncs
    }

    /// Test hook: a job that never runs stands in flight until `release`,
    /// like an fsync on a stalled disk.
    #[cfg(test)]
    pub fn hold(&self) {
        self.start();
    }

    /// Test hook: ends the job of `hold`, failed with `error` if given.
    #[cfg(test)]
    pub fn release(&self, error: Option<io::Error>) {
        self.finish(0, error.map_or(Ok(()), Err));
    }

    fn finish(&self, fsyncs: u64, result: io::Result<()>) {
        let mut st = self.lock();
        st.fsyncs += fsyncs;
        if let Err(e) = result {
            st.error.get_or_insert(e);
        }
        self.in_flight.store(false, Ordering::Release);
        drop(st);
        self.idle.notify_all();
    }

    fn start(&self) {
        let _st = self.lock();
        self.in_flight.store(true, Ordering::Release);
    }
}

/// Marks the job's queue busy and hands the job to the pool; if the pool
/// cannot be started, runs it on the calling thread instead.
pub(super) fn submit(job: Job) {
    job.tracker.start();
    let job = match pool() {
        Some(tx) => match tx.send(job) {
            Ok(()) => return,
            Err(mpsc::SendError(job)) => job,
        },
        None => job,
    };
    run(job);
}

/// Does the job's I/O and reports to its tracker.
fn run(job: Job) {
    let mut fsyncs = 0;
    let mut result = Ok(());
    if let Some(file) = &job.file {
        result = file.sync_data();
        fsyncs += 1;
    }
    if result.is_ok()
        && let Some(m) = &job.meta
    {
        result = meta::write(&m.path, &m.tmp, &m.meta);
        fsyncs += 1;
    }
    job.tracker.finish(fsyncs, result);
}

/// The pool's queue, started on first use; `None` if no thread could start.
fn pool() -> Option<&'static Sender<Job>> {
    static POOL: OnceLock<Option<Sender<Job>>> = OnceLock::new();
    POOL.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..WORKERS {
            let rx = rx.clone();
            match std::thread::Builder::new()
                .name(format!("diskqueue-sync-{i}"))
                .spawn(move || worker(&rx))
            {
                Ok(_) => started += 1,
                Err(e) => tracing::warn!(error = %e, "cannot start a disk sync thread"),
            }
        }
        (started > 0).then_some(tx)
    })
    .as_ref()
}

fn worker(rx: &Mutex<Receiver<Job>>) {
    loop {
        let next = crate::sync::lock(rx).recv();
        match next {
            Ok(job) => run(job),
            Err(mpsc::RecvError) => return,
        }
    }
}

//! Figures about this process read from `/proc` (Linux): resident and
//! virtual memory, CPU seconds, open and maximum file descriptors, threads
//! and the start time. Anything unreadable is simply absent.

/// One reading of the process figures.
#[derive(Debug, Clone, Default)]
pub struct ProcessStats {
    pub resident_memory_bytes: Option<u64>,
    pub virtual_memory_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    /// Seconds since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads the current figures.
    pub fn read() -> ProcessStats {
        let mut s = ProcessStats::default();
        let ticks = clock_ticks();
        if let Some(stat) = read_stat() {
            // Fields after the `(comm)`: index 0 is field 3 (state) of proc(5).
            let f = |n: usize| stat.get(n - 3).and_then(|v| v.parse::<u64>().ok());
            if let (Some(ut), Some(st), Some(t)) = (f(14), f(15), ticks) {
                s.cpu_seconds = Some((ut + st) as f64 / t as f64);
            }
            s.threads = f(20);
            s.virtual_memory_bytes = f(23);
            if let (Some(rss), Some(page)) = (f(24), page_size()) {
                s.resident_memory_bytes = Some(rss.saturating_mul(page));
            }
            if let (Some(start), Some(t), Some(boot)) = (f(22), ticks, boot_time()) {
                s.start_time_seconds = Some(boot as f64 + start as f64 / t as f64);
            }
        }
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as u64);
        s.max_fds = max_fds();
        s
    }
}

/// The fields of `/proc/self/stat` after the command name.
fn read_stat() -> Option<Vec<String>> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces and parentheses: split after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn max_fds() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn page_size() -> Option<u64> {
    u64::try_from(rustix::param::page_size())
        .ok()
        .filter(|&v| v > 0)
}

fn clock_ticks() -> Option<u64> {
    Some(rustix::param::clock_ticks_per_second()).filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let s = ProcessStats::read();
        assert!(s.resident_memory_bytes.unwrap_or(0) > 0);
        assert!(s.open_fds.unwrap_or(0) > 0);
        assert!(s.threads.unwrap_or(0) >= 1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let start = s.start_time_seconds.unwrap_or(0.0);
        assert!(start > 1.0e9 && start <= now + 2.0, "{start} vs {now}");
    }
}

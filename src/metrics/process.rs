//! Process metrics read from `/proc`, under the names and from the sources the Prometheus client
//! libraries use (client_golang's process collector): CPU time, resident and virtual memory,
//! open and allowed file descriptors, start time. Plain file reads and parsing, no C; the clock
//! tick and page size come from the auxiliary vector through rustix.
//!
//! Where `/proc` is missing (shopstream alone in a chroot) there is nothing to read, and the
//! process families are left out of `/metrics` rather than exported as zeros.

use std::path::Path;
use std::sync::OnceLock;

/// What one look at `/proc/self` found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: f64,
    pub resident_memory_bytes: u64,
    pub virtual_memory_bytes: u64,
    /// Seconds since the Unix epoch (from boot time and the process's start in clock ticks).
    pub start_time_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    /// The soft limit of open files (`None` when unlimited or unreadable).
    pub max_fds: Option<u64>,
}

/// The fields of `/proc/<pid>/stat` the metrics need, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// User and system time, in clock ticks.
    pub utime: u64,
    pub stime: u64,
    /// When the process started, in clock ticks after boot.
    pub starttime: u64,
    /// Virtual memory, in bytes.
    pub vsize: u64,
    /// Resident set, in pages.
    pub rss_pages: u64,
}

/// Reads this process's figures; `None` without a readable `/proc/self/stat`.
pub fn read() -> Option<ProcessStats> {
    read_at(Path::new("/proc"))
}

fn read_at(proc: &Path) -> Option<ProcessStats> {
    let stat = parse_stat(&std::fs::read_to_string(proc.join("self/stat")).ok()?)?;
    let ticks = rustix::param::clock_ticks_per_second().max(1) as f64;
    let page = rustix::param::page_size() as u64;
    Some(ProcessStats {
        cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
        resident_memory_bytes: stat.rss_pages.saturating_mul(page),
        virtual_memory_bytes: stat.vsize,
        start_time_seconds: start_time(proc, stat.starttime, ticks),
        open_fds: count_entries(&proc.join("self/fd")),
        max_fds: std::fs::read_to_string(proc.join("self/limits"))
            .ok()
            .and_then(|limits| parse_max_open_files(&limits)),
    })
}

/// The start time never changes: boot time is read once.
fn start_time(proc: &Path, starttime: u64, ticks: f64) -> Option<f64> {
    static BOOT: OnceLock<Option<u64>> = OnceLock::new();
    let boot = (*BOOT.get_or_init(|| {
        std::fs::read_to_string(proc.join("stat"))
            .ok()
            .and_then(|stat| parse_boot_time(&stat))
    }))?;
    Some(boot as f64 + starttime as f64 / ticks)
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself hold
/// spaces and parentheses, so the fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; field n is at n - 3.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        starttime: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit of `Max open files` from `/proc/<pid>/limits`; `None` when unlimited.
pub fn parse_max_open_files(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Entries of a directory (open descriptors in `/proc/self/fd`); the listing's own descriptor
/// is counted too, as client_golang counts it.
fn count_entries(dir: &Path) -> Option<u64> {
    Some(std::fs::read_dir(dir).ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_command_name() {
        // A command name with spaces and parentheses, as a process may name itself.
        let line = "4242 (shop (stream) x) S 1 4242 4242 0 -1 4194560 2345 0 12 0 \
                    731 269 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 4096 17664 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 731,
                stime: 269,
                starttime: 123456,
                vsize: 987654321,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (cut short) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
    }

    #[test]
    fn boot_time_and_the_open_files_limit_are_found_in_their_files() {
        let stat = "cpu  1 2 3 4\ncpu0 1 2 3 4\nintr 5\nctxt 6\nbtime 1700000123\nprocesses 7\n";
        assert_eq!(parse_boot_time(stat), Some(1_700_000_123));
        assert_eq!(parse_boot_time("cpu 1 2 3\n"), None);

        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            4096                 524288               files     \n\
                      Max locked memory         8388608              8388608              bytes     \n";
        assert_eq!(parse_max_open_files(limits), Some(4096));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), None);
    }

    #[test]
    fn this_process_is_read_from_proc_or_not_at_all() {
        let Some(stats) = read() else {
            assert!(!Path::new("/proc/self/stat").exists());
            return;
        };
        assert!(stats.resident_memory_bytes > 0, "{stats:?}");
        assert!(stats.virtual_memory_bytes >= stats.resident_memory_bytes);
        assert!(stats.cpu_seconds >= 0.0);
        assert!(
            stats.open_fds.unwrap() >= 3,
            "stdin, stdout, stderr at least"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let started = stats.start_time_seconds.unwrap();
        assert!(
            started <= now + 1.0 && started > now - 86_400.0 * 30.0,
            "{started} vs {now}"
        );
        if let Some(max) = stats.max_fds {
            assert!(max >= stats.open_fds.unwrap());
        }
    }

    #[test]
    fn a_missing_proc_reads_as_nothing() {
        assert_eq!(read_at(Path::new("/nonexistent-proc")), None);
    }
}

//! The collector process's own figures, read from Linux's `/proc` at each scrape: the ones
//! Prometheus's client libraries export under these names (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
//! `process_max_fds`), and the CPU time of each of flowvm's threads by name
//! (`flowvm_thread_cpu_seconds_total{thread}`), so that CPU a record on live traffic is one
//! division away (`rate(process_cpu_seconds_total[5m]) / rate(flowvm_records_decoded_total[5m])`)
//! and the stage that runs out of core first (a receive and decode worker, or the archive
//! thread encoding its Parquet) shows by name.
//!
//! A figure `/proc` does not give (another kernel, a sandbox without it) is left out of the
//! page, never written as zero.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Linux's `USER_HZ`: the clock ticks a second of the times in `/proc`, 100 on every
/// architecture the kernel exposes them to user space on.
const TICKS_PER_SECOND: f64 = 100.0;

/// Threads whose names begin so are flowvm's own (`flowvm-worker-N`, `flowvm-sink-N`); the
/// others (the runtime's, the metrics endpoint's) are summed under `other`.
const OWN_THREADS: &str = "flowvm-";

/// What a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` line says that is kept here.
#[derive(Debug, PartialEq, Eq)]
struct Stat<'a> {
    /// The command or thread name (`comm`), at most 15 octets, as the kernel holds it.
    name: &'a str,
    /// User and system time, in clock ticks.
    ticks: u64,
    /// When the process started, in clock ticks after boot.
    start: u64,
}

/// Parses a `stat` line (proc(5)): `pid (comm) state ppid …`, where `comm` may hold spaces
/// and parentheses, so the fields are counted from the last `)`. `None` when it is not one.
fn parse_stat(line: &str) -> Option<Stat<'_>> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?;
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    // `rest[0]` is field 3 (state); proc(5) numbers the fields from 1.
    let field = |number: usize| -> Option<u64> { rest.get(number - 3)?.parse().ok() };
    Some(Stat {
        name,
        ticks: field(14)?.checked_add(field(15)?)?,
        start: field(22)?,
    })
}

/// The value of `key` (`btime`, say) in `/proc/stat`'s text.
fn proc_stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(' ')?;
        (name == key).then(|| value.trim().parse().ok()).flatten()
    })
}

/// The soft limit on open files in `/proc/<pid>/limits`' text.
fn max_open_files(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.get("Max open files".len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `VmRSS` of `/proc/<pid>/status`' text, in octets.
fn resident_bytes(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .get("VmRSS:".len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// A label value with `\`, `"` and line feeds escaped, as the exposition format asks.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The most `other` has shown: it is the difference of two readings a moment apart, which a
/// tick landing between them can make one short of the last scrape's, and a counter must
/// never go down (Prometheus would take it for a restart).
static OTHER_SHOWN: AtomicU64 = AtomicU64::new(0);

/// CPU ticks of each of `threads` (name, ticks) summed by name; flowvm's own by theirs, the
/// rest, and whatever `process_ticks` holds beyond all of them (threads that have ended),
/// under `other`, never less than `other_shown` held, which it raises.
fn by_thread<'a>(
    threads: impl IntoIterator<Item = (&'a str, u64)>,
    process_ticks: u64,
    other_shown: &AtomicU64,
) -> BTreeMap<&'a str, u64> {
    let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
    let mut own = 0_u64;
    for (name, ticks) in threads {
        if name.starts_with(OWN_THREADS) {
            *sums.entry(name).or_default() += ticks;
            own += ticks;
        }
    }
    let other = process_ticks.saturating_sub(own);
    let shown = other_shown.fetch_max(other, Ordering::Relaxed).max(other);
    sums.insert("other", shown);
    sums
}

/// Appends the process's figures and its threads' CPU time to `out` (Prometheus text).
pub fn render(out: &mut String) {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let seconds = |ticks: u64| ticks as f64 / TICKS_PER_SECOND;
    let process_line = read("/proc/self/stat");
    let process = process_line.as_deref().and_then(parse_stat);
    if let Some(process) = &process {
        let _ = writeln!(
            out,
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
            seconds(process.ticks)
        );
        if let Some(boot) = read("/proc/stat").and_then(|t| proc_stat_value(&t, "btime")) {
            let _ = writeln!(
                out,
                "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds {}",
                boot as f64 + seconds(process.start)
            );
        }
    }
    if let Some(bytes) = read("/proc/self/status").and_then(|t| resident_bytes(&t)) {
        let _ = writeln!(
            out,
            "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes {bytes}"
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        let _ = writeln!(
            out,
            "# TYPE process_open_fds gauge\nprocess_open_fds {}",
            fds.count()
        );
    }
    if let Some(limit) = read("/proc/self/limits").and_then(|t| max_open_files(&t)) {
        let _ = writeln!(out, "# TYPE process_max_fds gauge\nprocess_max_fds {limit}");
    }
    let (Some(process), Ok(tasks)) = (&process, std::fs::read_dir("/proc/self/task")) else {
        return;
    };
    let lines: Vec<String> = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("stat")).ok())
        .collect();
    let threads = lines
        .iter()
        .filter_map(|line| parse_stat(line))
        .map(|stat| (stat.name, stat.ticks));
    let _ = writeln!(out, "# TYPE flowvm_thread_cpu_seconds_total counter");
    for (name, ticks) in by_thread(threads, process.ticks, &OTHER_SHOWN) {
        let _ = writeln!(
            out,
            "flowvm_thread_cpu_seconds_total{{thread=\"{}\"}} {}",
            label(name),
            seconds(ticks)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_from_its_last_parenthesis() {
        // A thread name with a space and a parenthesis of its own (proc(5): comm is as set).
        let line = "4242 (odd) name) S 1 4242 4242 0 -1 4194560 10282 0 0 0 96 14 0 0 20 0 \
                    7 0 123456 1000000 2500 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 \
                    0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                name: "odd) name",
                ticks: 110,
                start: 123_456,
            })
        );
        // Cut short, or not a stat line at all.
        assert_eq!(parse_stat("4242 (flowvm) S 1 4242"), None);
        assert_eq!(parse_stat("no parentheses"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn threads_are_summed_by_name_and_the_rest_is_other() {
        let threads = [
            ("flowvm-worker-0", 30),
            ("flowvm-worker-1", 5),
            ("flowvm-sink-0", 90),
            ("flowvm-sink-0", 10),
            ("tokio-runtime-w", 4),
            ("flowvm", 1),
        ];
        // 150 for the process: 5 more than its threads now have (threads that ended).
        let shown = AtomicU64::new(0);
        let sums = by_thread(threads, 150, &shown);
        assert_eq!(
            sums.into_iter().collect::<Vec<_>>(),
            [
                ("flowvm-sink-0", 100),
                ("flowvm-worker-0", 30),
                ("flowvm-worker-1", 5),
                ("other", 15),
            ]
        );
        // The process read a tick before its threads were: `other` stays at what it showed.
        let sums = by_thread(threads, 149, &shown);
        assert_eq!(sums.get("other"), Some(&15));
        let sums = by_thread(threads, 160, &shown);
        assert_eq!(sums.get("other"), Some(&25));
    }

    #[test]
    fn status_limits_and_stat_values_are_found_by_name() {
        let status = "Name:\tflowvm\nVmPeak:\t  900 kB\nVmRSS:\t   51234 kB\nThreads:\t7\n";
        assert_eq!(resident_bytes(status), Some(51_234 * 1024));
        assert_eq!(resident_bytes("Name:\tflowvm\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             95755                95755                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024));
        let stat = "cpu  1 2 3\nintr 5\nbtime 1796300000\nprocesses 77\n";
        assert_eq!(proc_stat_value(stat, "btime"), Some(1_796_300_000));
        assert_eq!(proc_stat_value(stat, "ctxt"), None);
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn this_process_renders_its_own_figures() {
        let mut out = String::new();
        render(&mut out);
        for name in [
            "process_cpu_seconds_total ",
            "process_start_time_seconds ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_max_fds ",
            "flowvm_thread_cpu_seconds_total{thread=\"other\"} ",
        ] {
            assert!(out.contains(name), "{name} missing from {out}");
        }
        let value = |name: &str| -> f64 {
            out.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse().ok())
                .unwrap()
        };
        assert!(value("process_resident_memory_bytes ") > 0.0);
        assert!(value("process_open_fds ") >= 1.0);
        assert!(value("process_start_time_seconds ") > 1.5e9);
    }
}

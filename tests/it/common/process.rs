//! The collector binary as a process: started with options and environment, its banner read,
//! its metrics page polled.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::{KillOnDrop, data_message, template, template_message};

/// A collector process and where it listens.
pub(crate) struct Collector {
    pub(crate) child: KillOnDrop,
    pub(crate) tcp: Option<SocketAddr>,
    pub(crate) udp: Option<SocketAddr>,
    pub(crate) metrics: SocketAddr,
}

/// Starts `flowvm collect` on `out` (TCP only, and metrics, on ports the OS picks, files
/// rotated every `rotate` seconds).
pub(crate) fn start(out: &Path, rotate: &str) -> Child {
    start_with(out, rotate, &["--no-udp"])
}

/// [`start`] with `extra` options.
pub(crate) fn start_with(out: &Path, rotate: &str, extra: &[&str]) -> Child {
    command(out, rotate, extra).spawn().unwrap()
}

/// The command [`start_with`] runs, for more settings (the environment) before it starts.
pub(crate) fn command(out: &Path, rotate: &str, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowvm"));
    command
        .args([
            "collect",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--rotate",
            rotate,
            "--log-level",
            "error",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    command
}

/// Waits for the banner of a started collector: its TCP and metrics addresses.
pub(crate) fn banner(mut child: Child) -> Collector {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut tcp, mut udp, mut metrics) = (None, None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(addr) = line.strip_prefix("listening tcp ") {
            tcp = Some(addr.parse().unwrap());
        }
        if let Some(addr) = line.strip_prefix("listening udp ") {
            udp = Some(addr.parse().unwrap());
        }
        if let Some(addr) = line.strip_prefix("metrics http://") {
            metrics = Some(addr.trim_end_matches("/metrics").parse().unwrap());
            break;
        }
    }
    // Keep draining stdout so the process never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    Collector {
        child: KillOnDrop(child),
        tcp,
        udp,
        metrics: metrics.unwrap(),
    }
}

/// The value of a metric line that starts with `name` on the metrics page.
pub(crate) fn metric(metrics: SocketAddr, name: &str) -> Option<u64> {
    let mut s = TcpStream::connect_timeout(&metrics, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|n| n.trim().parse().ok())
}

/// Polls `metric` (bounded: 30 s) until `done` holds for it.
pub(crate) fn wait_for(metrics: SocketAddr, name: &str, done: impl Fn(u64) -> bool) {
    let mut last = None;
    for _ in 0..600 {
        last = metric(metrics, name);
        if last.is_some_and(&done) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{name} never reached what was waited for (last seen: {last:?})");
}

/// Sends records with ids from `next` over one TCP connection, 40 a Message, until `stop` or
/// the connection breaks; the ids sent go up by one, never repeated, whatever happens.
pub(crate) fn send(tcp: SocketAddr, next: &AtomicU64, stop: &AtomicBool) -> u64 {
    let Ok(mut s) = TcpStream::connect(tcp) else {
        return next.load(Ordering::SeqCst);
    };
    let first = next.load(Ordering::SeqCst);
    if s.write_all(&template_message(&[template(256, &[(1, 8)])], 1))
        .is_err()
    {
        return first;
    }
    let mut sequence = 0_u32;
    while !stop.load(Ordering::SeqCst) {
        let id = next.fetch_add(40, Ordering::SeqCst);
        let records: Vec<Vec<u8>> = (id..id + 40).map(|i| i.to_be_bytes().to_vec()).collect();
        if s.write_all(&data_message(256, &records, sequence, 1))
            .is_err()
        {
            break;
        }
        sequence += 40;
        std::thread::sleep(Duration::from_millis(4));
    }
    first
}

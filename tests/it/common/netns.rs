//! Network namespaces for tests that need a network of their own (root, as CI runs).
#![expect(
    clippy::unwrap_used,
    reason = "test helpers: failing loudly is the point"
)]

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// A network namespace with its loopback up, deleted when dropped.
pub(crate) struct NetNs(String);

impl NetNs {
    pub(crate) fn new(name: &str) -> Self {
        let ns = format!("flowvm-{}-{name}", std::process::id());
        ip(&["netns", "add", &ns]);
        ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        Self(ns)
    }

    /// `program` to run inside the namespace (`ip netns exec` execs it, so the child's PID is
    /// the program's own).
    pub(crate) fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// `flowvm ARGS` inside the namespace, in `dir`.
    pub(crate) fn flowvm(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = self.exec(env!("CARGO_BIN_EXE_flowvm"));
        c.args(args).current_dir(dir);
        c
    }
}

impl NetNs {
    /// A veth pair between this namespace and the host's, both ends up with `mtu`: returns
    /// the host end's address and the namespace end's (a /30 of 198.18.0.0/15, RFC 2544's
    /// benchmarking range, chosen by the test process's PID).
    pub(crate) fn veth(&self, mtu: u16) -> (Ipv4Addr, Ipv4Addr) {
        let id = std::process::id();
        let (host, inner) = (
            format!("fvh{}", id % 100_000),
            format!("fvn{}", id % 100_000),
        );
        let [a, b] = u16::try_from(id % 16_384).unwrap().to_be_bytes();
        let (h, n) = (
            Ipv4Addr::new(198, 18 + (a >> 5), b, 4 * (a & 31) + 1),
            Ipv4Addr::new(198, 18 + (a >> 5), b, 4 * (a & 31) + 2),
        );
        let mtu = mtu.to_string();
        ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner]);
        ip(&["link", "set", &inner, "netns", &self.0]);
        ip(&["addr", "add", &format!("{h}/30"), "dev", &host]);
        ip(&["link", "set", &host, "mtu", &mtu, "up"]);
        let ns = |args: &[&str]| ip(&[&["netns", "exec", &self.0, "ip"], args].concat());
        ns(&["addr", "add", &format!("{n}/30"), "dev", &inner]);
        ns(&["link", "set", &inner, "mtu", &mtu, "up"]);
        (h, n)
    }
}

/// `ip ARGS`, which must succeed.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?} (run as root: CI does): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

//! The allow-list: the source networks whose datagrams and connections the collector takes.
//! Anything else is dropped before any parsing, counted (`not_allowed`) and logged at most once
//! per address and interval.
//!
//! It keeps out stray and hostile senders on a network where source addresses can be trusted;
//! it does not authenticate: a UDP source address is trivially spoofed, and anyone on an
//! allowed network can still send. TLS with client certificates does authenticate.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use tracing::warn;

use crate::clock;
use crate::telemetry::{Counters, DropReason, LogLimiter};

/// Interval between two warnings about one refused address.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The networks allowed to send; empty allows everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    networks: Vec<IpNet>,
}

impl AllowList {
    /// Allows `networks`; none allows every source.
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self { networks }
    }

    /// Whether a datagram or connection from `ip` is taken (an IPv4 address seen through a
    /// dual-stack socket is matched as IPv4).
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.networks.is_empty() || self.networks.iter().any(|n| n.contains(&ip))
    }

    /// Whether everyone is allowed.
    pub fn is_open(&self) -> bool {
        self.networks.is_empty()
    }
}

/// One listener's record of refusals: counts each, logs at most once per address and interval.
#[derive(Debug)]
pub struct Refusals {
    limiter: LogLimiter,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            limiter: LogLimiter::new(WARN_INTERVAL),
        }
    }
}

impl Refusals {
    /// Counts (and maybe logs) a datagram or connection from `ip` the allow-list refused.
    pub fn refuse(&mut self, ip: IpAddr, what: &str, counters: &Counters) {
        counters.record_drop(DropReason::NotAllowed, 1);
        let reason = DropReason::NotAllowed.label();
        if let Some(suppressed) = self.limiter.allow(ip, reason, clock::now()) {
            warn!(exporter = %ip, suppressed, "Dropped a {what} from an address outside the allow-list.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_the_listed_networks_only_and_everyone_without_a_list() {
        let list = AllowList::new(vec![
            "192.0.2.0/24".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        assert!(list.permits("192.0.2.77".parse().unwrap()));
        assert!(list.permits("::ffff:192.0.2.1".parse().unwrap()));
        assert!(list.permits("2001:db8::1".parse().unwrap()));
        assert!(!list.permits("198.51.100.1".parse().unwrap()));
        assert!(!list.permits("2001:db9::1".parse().unwrap()));
        assert!(AllowList::default().permits("198.51.100.1".parse().unwrap()));
    }
}

//! Why a Flow Record was exported: flowEndReason (IE 136).

/// The flowEndReason values of RFC 5102 / the IANA registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowEndReason {
    /// The flow saw no packet for the passive timeout.
    IdleTimeout = 1,
    /// The active timeout elapsed while the flow was still running (and, with an active timer
    /// of 0, every packet of the stateless mode).
    ActiveTimeout = 2,
    /// The meter stopped: end of the capture, SIGINT or SIGTERM.
    ForcedEnd = 4,
    /// The flow table was full: the packet was exported on its own.
    LackOfResources = 5,
}

impl FlowEndReason {
    /// The value on the wire.
    pub fn code(self) -> u8 {
        self as u8
    }
}

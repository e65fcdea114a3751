//! Live capture on a Linux interface through an `AF_PACKET` socket.
//!
//! On the loopback device the kernel shows each frame twice, once leaving and once arriving;
//! like libpcap, the outgoing copy is skipped there. On other devices both directions are
//! metered, as a tap sees them.

use std::io;
use std::time::Duration;

use socket2::Socket;

use crate::capture::sys::{self, ARPHRD_LOOPBACK, PACKET_OUTGOING};
use crate::capture::{CapturedPacket, LinkType};
use crate::clock;

/// Frames are read into a buffer of this size; longer ones are metered by their wire length.
const SNAP_LEN: usize = 65_535;

/// How frames of a device of ARP hardware type `hatype` start.
fn link_type(hatype: u16) -> LinkType {
    match hatype {
        // ARPHRD_ETHER; the loopback device also carries an Ethernet header.
        1 | ARPHRD_LOOPBACK => LinkType::Ethernet,
        // ARPHRD_NONE (tun), ARPHRD_RAWIP.
        0xfffe | 519 => LinkType::RawIp,
        other => LinkType::Other(u32::from(other)),
    }
}

/// A live capture on one interface.
#[derive(Debug)]
pub struct LiveCapture {
    socket: Socket,
    ifindex: u32,
    buf: Vec<u8>,
}

impl LiveCapture {
    /// Opens a capture on interface `name`; reads return after at most `poll` so the caller can
    /// run its timers.
    ///
    /// # Errors
    /// No such interface, or no permission (capture needs root or `CAP_NET_RAW`).
    pub fn open(name: &str, poll: Duration) -> io::Result<Self> {
        let ifindex = sys::interface_index(name)?;
        let socket = sys::packet_socket(ifindex).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot capture on {name}: {e} (capture needs root or CAP_NET_RAW)"),
            )
        })?;
        socket.set_read_timeout(Some(poll))?;
        // Bursts while the meter exports: a deep receive buffer, as much as the kernel allows.
        socket.set_recv_buffer_size(8 << 20)?;
        Ok(Self {
            socket,
            ifindex,
            buf: vec![0; SNAP_LEN],
        })
    }

    /// Joins the fanout group `group` of the interface: with one capture per worker in the same
    /// group, the kernel gives each flow's frames to one of them (by flow hash), so each worker
    /// meters whole flows in a table of its own, as VPP's per-thread flowprobe does.
    ///
    /// # Errors
    /// The kernel refused (a group of that number in another mode).
    pub fn join_fanout(&self, group: u16) -> io::Result<()> {
        sys::join_fanout(&self.socket, group)
    }

    /// The interface index (the ingressInterface of its flows).
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Waits up to the poll interval for the next frame; `Ok(None)` when none came.
    ///
    /// # Errors
    /// The socket failed.
    pub fn next_packet(&mut self) -> io::Result<Option<CapturedPacket<'_>>> {
        loop {
            let received = match sys::receive(&self.socket, &mut self.buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(None),
                Err(e) => return Err(e),
            };
            if received.hardware_type == ARPHRD_LOOPBACK && received.packet_type == PACKET_OUTGOING
            {
                continue;
            }
            let timestamp_ns = clock::unix_nanos();
            return Ok(Some(CapturedPacket {
                timestamp_ns,
                link: link_type(received.hardware_type),
                data: self.buf.get(..received.captured).unwrap_or_default(),
                orig_len: u32::try_from(received.wire_len).unwrap_or(u32::MAX),
                interface: self.ifindex,
            }));
        }
    }
}

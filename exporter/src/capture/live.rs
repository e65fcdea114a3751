//! Live capture on a Linux interface through an `AF_PACKET` socket.
//!
//! On the loopback device the kernel shows each frame twice, once leaving and once arriving;
//! like libpcap, the outgoing copy is skipped there. On other devices both directions are
//! metered, as a tap sees them.

use std::io;
use std::time::Duration;

use socket2::Socket;

use crate::capture::sys::{self, ARPHRD_LOOPBACK, PACKET_OUTGOING, Ring};
use crate::capture::{CapturedPacket, LinkType};

/// The receive ring: blocks of 1 MiB (frames up to that, a loopback GSO frame of 64 KiB
/// included, are captured whole)...
const BLOCK_SIZE: usize = 1 << 20;
/// ... eight of them: 8 MiB of frames waiting for the meter, as deep as a socket buffer was.
const BLOCKS: usize = 8;
/// A block that is not full is handed over this long after its first frame.
const RETIRE_MS: u32 = 20;

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
    /// Before the socket: unmapped before it closes.
    ring: Ring,
    socket: Socket,
    ifindex: u32,
    poll: Duration,
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
        let ring = Ring::new(&socket, BLOCK_SIZE, BLOCKS, RETIRE_MS).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot map a receive ring on {name}: {e}"),
            )
        })?;
        Ok(Self {
            ring,
            socket,
            ifindex,
            poll,
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

    /// Frames the kernel dropped since the last call because the ring was full (the meter fell
    /// behind).
    ///
    /// # Errors
    /// The kernel refused to say.
    pub fn take_kernel_drops(&self) -> io::Result<u64> {
        sys::take_drops(&self.socket)
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
        let interface = self.ifindex;
        let frame =
            self.ring
                .next_frame(&self.socket, self.poll, |packet_type, hardware_type| {
                    !(hardware_type == ARPHRD_LOOPBACK && packet_type == PACKET_OUTGOING)
                })?;
        Ok(frame.map(|f| CapturedPacket {
            timestamp_ns: f.timestamp_ns,
            link: link_type(f.hardware_type),
            data: f.data,
            orig_len: f.wire_len,
            interface,
        }))
    }
}

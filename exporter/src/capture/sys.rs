//! Raw socket FFI: the only module of the workspace with `unsafe` code. `live.rs` holds the
//! logic and calls only the safe functions here.
#![expect(
    unsafe_code,
    reason = "raw socket FFI (AF_PACKET, SO_NO_CHECK) lives here and only here"
)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use socket2::Socket;

/// Turns the UDP checksum of an IPv4 socket off (`SO_NO_CHECK`) or on.
///
/// # Errors
/// The kernel refused the option.
pub(crate) fn set_udp_no_check(socket: &Socket, off: bool) -> io::Result<()> {
    let value: libc::c_int = off.into();
    // SAFETY: the fd is open for the lifetime of `socket`; `value` outlives the call and its
    // size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&raw const value).cast(),
            socklen_of::<libc::c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// The index of the interface called `name`.
///
/// # Errors
/// No such interface.
pub(crate) fn interface_index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface named {name:?}"),
        ))
    } else {
        Ok(index)
    }
}

/// `ETH_P_ALL`: every protocol.
const ETH_P_ALL: u16 = 0x0003;

/// A packet socket (`AF_PACKET`, `SOCK_RAW`) bound to one interface, receiving every
/// protocol.
///
/// # Errors
/// No permission (it needs `CAP_NET_RAW`), or no such interface.
pub(crate) fn packet_socket(ifindex: u32) -> io::Result<Socket> {
    let protocol = ETH_P_ALL.to_be();
    // SAFETY: plain syscall with constant arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::c_int::from(protocol),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::sa_family_t::try_from(libc::AF_PACKET).unwrap_or_default();
    addr.sll_protocol = protocol;
    addr.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
    // SAFETY: `addr` is a valid sockaddr_ll for the duration of the call and its size is
    // passed.
    let rc = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            (&raw const addr).cast(),
            socklen_of::<libc::sockaddr_ll>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Socket::from(owned))
}

/// Joins `socket` to the fanout group `group` of its interface: the kernel then hands each
/// frame to one socket of the group, chosen by the hash of its flow (`PACKET_FANOUT_HASH`),
/// with IP fragments reassembled first so a flow's fragments go to the same socket
/// (`PACKET_FANOUT_FLAG_DEFRAG`).
///
/// # Errors
/// The group exists with another mode, or the kernel refuses.
pub(crate) fn join_fanout(socket: &Socket, group: u16) -> io::Result<()> {
    let mode = libc::PACKET_FANOUT_HASH | libc::PACKET_FANOUT_FLAG_DEFRAG;
    let arg: libc::c_uint = libc::c_uint::from(group) | (mode << 16);
    // SAFETY: `arg` is a valid c_uint for the duration of the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_FANOUT,
            (&raw const arg).cast(),
            socklen_of::<libc::c_uint>(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PACKET_OUTGOING`: a frame this host sent.
pub(crate) const PACKET_OUTGOING: u8 = 4;
/// `ARPHRD_LOOPBACK`: the loopback device.
pub(crate) const ARPHRD_LOOPBACK: u16 = 772;

/// One frame received on a packet socket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Received {
    /// Octets copied into the buffer.
    pub(crate) captured: usize,
    /// Length of the frame on the wire (larger than `captured` when the buffer was short).
    pub(crate) wire_len: usize,
    /// `sll_pkttype`: to the host, broadcast, outgoing, ...
    pub(crate) packet_type: u8,
    /// `sll_hatype`: the device's ARP hardware type.
    pub(crate) hardware_type: u16,
}

/// Receives one frame into `buf`.
///
/// # Errors
/// A timeout (`WouldBlock`), an interruption, or a socket error.
pub(crate) fn receive(socket: &Socket, buf: &mut [u8]) -> io::Result<Received> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut addr_len = socklen_of::<libc::sockaddr_ll>();
    // SAFETY: `buf` is valid for writes of `buf.len()` octets, `addr` for `addr_len` octets;
    // both outlive the call. MSG_TRUNC makes the kernel return the frame's full length.
    let n = unsafe {
        libc::recvfrom(
            socket.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC,
            (&raw mut addr).cast(),
            &raw mut addr_len,
        )
    };
    let wire_len = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    Ok(Received {
        captured: wire_len.min(buf.len()),
        wire_len,
        packet_type: addr.sll_pkttype,
        hardware_type: addr.sll_hatype,
    })
}

//! Raw socket and mmap FFI: the only module of the workspace with `unsafe` code. `live.rs` and
//! `file.rs` hold the logic and call only the safe functions here.
#![expect(
    unsafe_code,
    reason = "raw socket FFI (AF_PACKET, SO_NO_CHECK) and file mappings live here and only here"
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
    set_option(
        socket,
        libc::SOL_SOCKET,
        libc::SO_NO_CHECK,
        &libc::c_int::from(off),
    )
}

/// Sends `octets` through the connected UDP `socket` as datagrams of `segment` octets each (the
/// last may be shorter) in one call: UDP segmentation offload (`UDP_SEGMENT`, Linux 4.18), the
/// stack walked once for all of them, the NIC or the kernel cutting them up at the end. Needs
/// the UDP checksum (the kernel refuses with `EINVAL` under `SO_NO_CHECK`, `EIO` where the
/// device cannot checksum), at most 64 segments, and each segment within the route's MTU.
///
/// # Errors
/// The kernel refused the send (those reasons, or any a plain send can have).
pub(crate) fn send_segmented(
    socket: &std::net::UdpSocket,
    octets: &[u8],
    segment: u16,
) -> io::Result<()> {
    /// The option's value: the segment size as a C `uint16_t`.
    const SEGMENT_LEN: libc::c_uint = 2;
    // CMSG_SPACE(2) is 24 on 64-bit Linux; the buffer is aligned as a cmsghdr must be.
    let mut control = [0_u64; 4];
    let mut iov = libc::iovec {
        iov_base: octets.as_ptr().cast_mut().cast(),
        iov_len: octets.len(),
    };
    // SAFETY: a zeroed msghdr is a valid empty one; every pointer set in it (the iovec, the
    // control buffer) outlives the sendmsg call; CMSG_SPACE(2) fits `control` (checked below);
    // CMSG_FIRSTHDR of a control buffer that large is non-null and aligned, and CMSG_DATA
    // points at 2 writable octets inside it (written unaligned). The kernel only reads.
    let rc = unsafe {
        let space = libc::CMSG_SPACE(SEGMENT_LEN) as usize;
        if space > size_of_val(&control) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let cmsg = libc::CMSG_FIRSTHDR(&raw const msg);
        if cmsg.is_null() {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = libc::UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(SEGMENT_LEN) as _;
        libc::CMSG_DATA(cmsg).cast::<u16>().write_unaligned(segment);
        libc::sendmsg(socket.as_raw_fd(), &raw const msg, 0)
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `setsockopt(socket, level, name, value)`, `value` being the C type the option takes (an
/// integer or a struct without padding).
///
/// # Errors
/// The kernel refused the option.
fn set_option<T: Copy>(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: the fd is open for the lifetime of `socket`; `value` is valid for reads of its
    // size, which is passed as the option length, and outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            std::ptr::from_ref(value).cast(),
            socklen_of::<T>(),
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
    set_option(socket, libc::SOL_PACKET, libc::PACKET_FANOUT, &arg)
}

/// Frames the kernel dropped on `socket` since the last call (`PACKET_STATISTICS` reads and
/// resets): the ring was full.
///
/// # Errors
/// The kernel refused the option.
pub(crate) fn take_drops(socket: &Socket) -> io::Result<u64> {
    // SAFETY: tpacket_stats_v3 is plain old data; all-zero is a valid value.
    let mut stats: libc::tpacket_stats_v3 = unsafe { std::mem::zeroed() };
    let mut len = socklen_of::<libc::tpacket_stats_v3>();
    // SAFETY: `stats` is valid for writes of `len` octets and outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_STATISTICS,
            (&raw mut stats).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(u64::from(stats.tp_drops))
}

/// `PACKET_OUTGOING`: a frame this host sent.
pub(crate) const PACKET_OUTGOING: u8 = 4;
/// `ARPHRD_LOOPBACK`: the loopback device.
pub(crate) const ARPHRD_LOOPBACK: u16 = 772;

/// One frame of the receive ring, valid until the next call on the ring.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Frame<'a> {
    /// The captured octets.
    pub(crate) data: &'a [u8],
    /// Length of the frame on the wire (larger than `data` when the snap length cut it).
    pub(crate) wire_len: u32,
    /// When the kernel received it, ns since the UNIX epoch.
    pub(crate) timestamp_ns: u64,
    /// `sll_hatype`: the device's ARP hardware type.
    pub(crate) hardware_type: u16,
}

/// `TPACKET_V3` in `PACKET_VERSION`.
const TPACKET_V3: libc::c_int = 2;
/// Where a block's status word is, from the block's start.
const BLOCK_STATUS: usize = std::mem::offset_of!(libc::tpacket_block_desc, hdr)
    + std::mem::offset_of!(libc::tpacket_hdr_v1, block_status);
/// Where a block's frame count is.
const BLOCK_FRAMES: usize = std::mem::offset_of!(libc::tpacket_block_desc, hdr)
    + std::mem::offset_of!(libc::tpacket_hdr_v1, num_pkts);
/// Where a block's offset to its first frame is.
const BLOCK_FIRST: usize = std::mem::offset_of!(libc::tpacket_block_desc, hdr)
    + std::mem::offset_of!(libc::tpacket_hdr_v1, offset_to_first_pkt);
/// Where the `sockaddr_ll` of a frame is, from its `tpacket3_hdr`.
const FRAME_ADDRESS: usize = libc::TPACKET3_HDRLEN - size_of::<libc::sockaddr_ll>();

/// A `TPACKET_V3` receive ring mapped from a packet socket: the kernel fills blocks of frames
/// and hands each over whole (when full, or after the retire timeout), so one wake-up and no
/// copy serve a whole block, where `recvfrom` costs a system call and a copy per frame.
///
/// Memory: the mapping is shared with the kernel; a block belongs to this process from the
/// moment its status word reads `TP_STATUS_USER` (an acquire load) until it writes
/// `TP_STATUS_KERNEL` back (a release store), and the process reads a block only in between.
/// Frames borrow the ring, so a block is handed back only when no frame of it is held.
#[derive(Debug)]
pub(crate) struct Ring {
    base: std::ptr::NonNull<u8>,
    len: usize,
    block_size: usize,
    blocks: usize,
    /// The block read now, or next.
    current: usize,
    /// Whether `current` is this process's (read, not yet handed back).
    holding: bool,
    /// Frames of `current` not yet read, and where the next one is.
    left: u32,
    next: usize,
}

// SAFETY: the ring is a private mapping of this process's memory, used through `&mut self`
// only; nothing about it is tied to the thread that made it.
unsafe impl Send for Ring {}

impl Ring {
    /// Sets `socket` to `TPACKET_V3` and maps a receive ring of `blocks` blocks of
    /// `block_size` octets (a multiple of the page size), each handed over at the latest
    /// `retire_ms` after its first frame.
    ///
    /// # Errors
    /// The kernel refused the version, the ring or the mapping.
    pub(crate) fn new(
        socket: &Socket,
        block_size: usize,
        blocks: usize,
        retire_ms: u32,
    ) -> io::Result<Self> {
        set_option(socket, libc::SOL_PACKET, libc::PACKET_VERSION, &TPACKET_V3)?;
        let frame_size = 2048_usize;
        let too_big = || io::Error::from(io::ErrorKind::InvalidInput);
        let request = libc::tpacket_req3 {
            tp_block_size: u32::try_from(block_size).map_err(|_| too_big())?,
            tp_block_nr: u32::try_from(blocks).map_err(|_| too_big())?,
            tp_frame_size: u32::try_from(frame_size).map_err(|_| too_big())?,
            tp_frame_nr: u32::try_from(block_size / frame_size * blocks).map_err(|_| too_big())?,
            tp_retire_blk_tov: retire_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        set_option(socket, libc::SOL_PACKET, libc::PACKET_RX_RING, &request)?;
        let len = block_size.checked_mul(blocks).ok_or_else(too_big)?;
        // Locked in memory if the limits allow (RLIMIT_MEMLOCK), unlocked otherwise.
        let map = |flags| {
            // SAFETY: a new shared mapping of the socket's ring, of the length the ring was
            // asked for; the result is checked.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    flags,
                    socket.as_raw_fd(),
                    0,
                )
            };
            (base != libc::MAP_FAILED).then_some(base)
        };
        let base = map(libc::MAP_SHARED | libc::MAP_LOCKED)
            .or_else(|| map(libc::MAP_SHARED))
            .and_then(|base| std::ptr::NonNull::new(base.cast::<u8>()))
            .ok_or_else(io::Error::last_os_error)?;
        Ok(Self {
            base,
            len,
            block_size,
            blocks,
            current: 0,
            holding: false,
            left: 0,
            next: 0,
        })
    }

    /// The status word of block `index`, shared with the kernel.
    fn status(&self, index: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: `index < blocks`, so the word lies inside the mapping, which lives as long
        // as `self`; it is 4-aligned (blocks are page-aligned, the offset is 8); the kernel
        // and this process only ever access it as a whole 32-bit word.
        unsafe {
            std::sync::atomic::AtomicU32::from_ptr(
                self.base
                    .as_ptr()
                    .add(index * self.block_size + BLOCK_STATUS)
                    .cast::<u32>(),
            )
        }
    }

    /// The octets of block `current`, which this process holds.
    fn block(&self) -> &[u8] {
        debug_assert!(self.holding);
        // SAFETY: the block lies inside the mapping; while this process holds it (its status
        // read `TP_STATUS_USER`), the kernel does not write it; the slice borrows `self`, so
        // it is gone before `next_frame` hands the block back.
        unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(self.current * self.block_size),
                self.block_size,
            )
        }
    }

    /// The next frame that `keep(packet type, hardware type)` accepts, waiting up to
    /// `timeout` for the kernel to hand over a block; `None` when none came in time.
    ///
    /// # Errors
    /// `poll` failed.
    pub(crate) fn next_frame(
        &mut self,
        socket: &Socket,
        timeout: std::time::Duration,
        keep: impl Fn(u8, u16) -> bool,
    ) -> io::Result<Option<Frame<'_>>> {
        let mut waited = false;
        loop {
            if self.holding && self.left > 0 {
                let at = self.next;
                match parse_frame(self.block(), at) {
                    Some(frame) => {
                        self.left -= 1;
                        self.next = at + frame.next;
                        if frame.next == 0 {
                            self.left = 0;
                        }
                        if !keep(frame.packet_type, frame.hardware_type) {
                            continue;
                        }
                        return Ok(Some(Frame {
                            data: self.block().get(frame.data).unwrap_or_default(),
                            wire_len: frame.wire_len,
                            timestamp_ns: frame.timestamp_ns,
                            hardware_type: frame.hardware_type,
                        }));
                    }
                    // A frame header out of the block: the rest of it cannot be trusted.
                    None => self.left = 0,
                }
            }
            if self.holding {
                self.status(self.current)
                    .store(libc::TP_STATUS_KERNEL, std::sync::atomic::Ordering::Release);
                self.holding = false;
                self.current = (self.current + 1) % self.blocks;
            }
            let status = self
                .status(self.current)
                .load(std::sync::atomic::Ordering::Acquire);
            if status & libc::TP_STATUS_USER != 0 {
                // Its status read as this process's, with acquire ordering: it is held.
                self.holding = true;
                let block = self.block();
                let (left, first) = (
                    read_u32(block, BLOCK_FRAMES).unwrap_or(0),
                    read_u32(block, BLOCK_FIRST).and_then(|o| usize::try_from(o).ok()),
                );
                self.left = if first.is_some() { left } else { 0 };
                self.next = first.unwrap_or(0);
                continue;
            }
            if waited {
                return Ok(None);
            }
            self.wait(socket.as_raw_fd(), timeout)?;
            waited = true;
        }
    }

    /// Waits for the socket to be readable (a block handed over), at most `timeout`.
    fn wait(&self, fd: libc::c_int, timeout: std::time::Duration) -> io::Result<()> {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd that outlives the call.
        let rc = unsafe { libc::poll(&raw mut poll, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }
}

/// A native-endian u16 at `at` in `block`.
fn read_u16(block: &[u8], at: usize) -> Option<u16> {
    block
        .get(at..at + 2)
        .and_then(|b| b.try_into().ok())
        .map(u16::from_ne_bytes)
}

/// A native-endian u32 at `at` in `block`.
fn read_u32(block: &[u8], at: usize) -> Option<u32> {
    block
        .get(at..at + 4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes)
}

/// A frame of a block, as its `tpacket3_hdr` and `sockaddr_ll` describe it.
struct FrameAt {
    /// Where its octets are in the block.
    data: std::ops::Range<usize>,
    wire_len: u32,
    timestamp_ns: u64,
    packet_type: u8,
    hardware_type: u16,
    /// The offset from this frame's header to the next one's (0: the last).
    next: usize,
}

/// The frame whose `tpacket3_hdr` is at `at` in `block`; `None` when any part of it lies
/// outside the block.
fn parse_frame(block: &[u8], at: usize) -> Option<FrameAt> {
    let field = |offset: usize| read_u32(block, at + offset);
    let next = field(std::mem::offset_of!(libc::tpacket3_hdr, tp_next_offset))?;
    let sec = field(std::mem::offset_of!(libc::tpacket3_hdr, tp_sec))?;
    let nsec = field(std::mem::offset_of!(libc::tpacket3_hdr, tp_nsec))?;
    let snaplen = field(std::mem::offset_of!(libc::tpacket3_hdr, tp_snaplen))?;
    let wire_len = field(std::mem::offset_of!(libc::tpacket3_hdr, tp_len))?;
    let mac = read_u16(block, at + std::mem::offset_of!(libc::tpacket3_hdr, tp_mac))?;
    let address = at + FRAME_ADDRESS;
    let hardware_type = read_u16(
        block,
        address + std::mem::offset_of!(libc::sockaddr_ll, sll_hatype),
    )?;
    let packet_type = *block.get(address + std::mem::offset_of!(libc::sockaddr_ll, sll_pkttype))?;
    let start = at + usize::from(mac);
    let end = start.checked_add(usize::try_from(snaplen).ok()?)?;
    block.get(start..end)?;
    Some(FrameAt {
        data: start..end,
        wire_len,
        timestamp_ns: u64::from(sec) * 1_000_000_000 + u64::from(nsec),
        packet_type,
        hardware_type,
        next: usize::try_from(next).ok()?,
    })
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, of that length; no slice of it outlives `self`.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// Asks the processor to bring the cache line holding `items[at]` in, without waiting for it
/// (a prefetch instruction: it never faults, retires at once, and an index past the slice is
/// not asked for).
#[inline]
pub(crate) fn prefetch<T>(items: &[T], at: usize) {
    prefetch_with::<HINT_T0, T>(items, at);
}

/// [`prefetch`] into the second-level cache and those after it, not the first: for lines
/// another core will read.
#[inline]
pub(crate) fn prefetch_for_another_core<T>(items: &[T], at: usize) {
    prefetch_with::<HINT_T1, T>(items, at);
}

/// `_MM_HINT_T0`: into every level of cache.
const HINT_T0: i32 = 3;
/// `_MM_HINT_T1`: into the second level and beyond.
const HINT_T1: i32 = 2;
#[cfg(target_arch = "x86_64")]
const _: () =
    assert!(HINT_T0 == std::arch::x86_64::_MM_HINT_T0 && HINT_T1 == std::arch::x86_64::_MM_HINT_T1);

/// The prefetch instruction with locality hint `HINT` (nothing where there is none).
#[inline]
fn prefetch_with<const HINT: i32, T>(items: &[T], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(item) = items.get(at) {
        // SAFETY: a prefetch reads nothing into the program and cannot fault; the address is
        // of a live item. SSE, which it needs, is part of the x86_64 baseline.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<HINT>(std::ptr::from_ref(item).cast());
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (items, at);
}

/// A page of memory (x86_64 and aarch64 Linux's base page).
pub(crate) const PAGE: usize = 4096;

/// Asks the kernel to back the memory under `items` with transparent huge pages
/// (`MADV_HUGEPAGE`; this machine's kernels do so only when asked), for a table read at random
/// by every packet: with 4 KiB pages each of its cache misses is a TLB miss as well, a page
/// walk of its own. Call it before the memory is first written: pages already there stay
/// small. Slices under 2 MiB, which no huge page would cover, are left alone; so is a failure
/// (advice changes no meaning).
pub(crate) fn advise_huge_pages<T>(items: &[T]) {
    const HUGE_PAGE: usize = 2 << 20;
    let len = size_of_val(items);
    if len < HUGE_PAGE {
        return;
    }
    // The start rounded down to its page, which holds part of the slice.
    let into_page = items.as_ptr().addr() % PAGE;
    let first = items.as_ptr().cast::<u8>().wrapping_sub(into_page);
    // SAFETY: advice over whole pages each of which holds part of `items`' memory, which is
    // mapped; MADV_HUGEPAGE changes how the kernel backs them, never their contents.
    unsafe {
        libc::madvise(
            first.cast_mut().cast(),
            len + into_page,
            libc::MADV_HUGEPAGE,
        );
    }
}

/// A file mapped read-only into memory, read in place: its pages come from the page cache
/// with no copy. The kernel reads ahead of a sequential reader (`MADV_SEQUENTIAL`).
///
/// A file cut short by another process while it is mapped raises `SIGBUS` on the first read
/// past its new end: a capture must not be truncated while it is replayed.
#[derive(Debug)]
pub(crate) struct Mapping {
    base: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value; sharing or sending it shares
// immutable bytes, as a `&[u8]` or `Box<[u8]>` would.
unsafe impl Send for Mapping {}
// SAFETY: as above: nothing writes through the mapping.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the whole of `file`.
    ///
    /// # Errors
    /// The file cannot be mapped (not a regular file, or the kernel refused).
    pub(crate) fn of_file(file: &std::fs::File) -> io::Result<Self> {
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::other("file larger than the address space"))?;
        if len == 0 {
            return Ok(Self {
                base: std::ptr::NonNull::dangling(),
                len,
            });
        }
        // SAFETY: a new private read-only mapping of an open file, of its length; the result
        // is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping just made, of that length. Advice only: a failure changes no
        // meaning, so it is ignored.
        unsafe {
            libc::madvise(base, len, libc::MADV_SEQUENTIAL);
        }
        let base =
            std::ptr::NonNull::new(base.cast::<u8>()).ok_or_else(io::Error::last_os_error)?;
        Ok(Self { base, len })
    }

    /// Drops the page-table entries of the whole pages within `range` of the file's octets,
    /// for a reader done with them: unmapping them as it goes, a little at a time, instead of
    /// all at once when the mapping ends. Their octets stay readable: a later read maps the
    /// same pages of the file in again.
    pub(crate) fn unmap_pages(&self, range: std::ops::Range<usize>) {
        let start = range.start.next_multiple_of(PAGE);
        let end = range.end.min(self.len) / PAGE * PAGE;
        if start >= end {
            return;
        }
        // SAFETY: whole pages inside the mapping. MADV_DONTNEED on a private file mapping
        // that is never written (it is read-only: no page of it was ever copied on write)
        // only drops page-table entries; the next read faults the file's pages in again, so
        // every `&[u8]` into the mapping still reads what it read before. Advice: a failure
        // changes nothing and is ignored.
        unsafe {
            libc::madvise(
                self.base.as_ptr().wrapping_add(start).cast(),
                end - start,
                libc::MADV_DONTNEED,
            );
        }
    }

    /// The file's octets.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `base` is a readable mapping of `len` octets (or dangling with `len` 0),
        // alive as long as `self`, and never written.
        unsafe { std::slice::from_raw_parts(self.base.as_ptr(), self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: the mapping made in `of_file`, of that length; no slice of it outlives
            // `self` (`bytes` borrows it).
            unsafe {
                libc::munmap(self.base.as_ptr().cast(), self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block holding one frame header at `at` for `data`, as the kernel lays it out.
    fn block_with(at: usize, data: &[u8], wire_len: u32) -> Vec<u8> {
        let mut block = vec![0_u8; 4096];
        let put32 = |b: &mut Vec<u8>, off: usize, v: u32| {
            b[at + off..at + off + 4].copy_from_slice(&v.to_ne_bytes());
        };
        let mac = u16::try_from(libc::TPACKET3_HDRLEN).unwrap();
        put32(
            &mut block,
            std::mem::offset_of!(libc::tpacket3_hdr, tp_sec),
            1_700_000_000,
        );
        put32(
            &mut block,
            std::mem::offset_of!(libc::tpacket3_hdr, tp_nsec),
            5,
        );
        put32(
            &mut block,
            std::mem::offset_of!(libc::tpacket3_hdr, tp_snaplen),
            u32::try_from(data.len()).unwrap(),
        );
        put32(
            &mut block,
            std::mem::offset_of!(libc::tpacket3_hdr, tp_len),
            wire_len,
        );
        let mac_at = at + std::mem::offset_of!(libc::tpacket3_hdr, tp_mac);
        block[mac_at..mac_at + 2].copy_from_slice(&mac.to_ne_bytes());
        let address = at + FRAME_ADDRESS;
        let hatype = address + std::mem::offset_of!(libc::sockaddr_ll, sll_hatype);
        block[hatype..hatype + 2].copy_from_slice(&ARPHRD_LOOPBACK.to_ne_bytes());
        block[address + std::mem::offset_of!(libc::sockaddr_ll, sll_pkttype)] = PACKET_OUTGOING;
        let start = at + usize::from(mac);
        block[start..start + data.len()].copy_from_slice(data);
        block
    }

    #[test]
    fn a_frame_is_read_as_the_kernel_lays_it_out() {
        let block = block_with(64, b"frame octets", 1500);
        let frame = parse_frame(&block, 64).unwrap();
        assert_eq!(&block[frame.data], b"frame octets");
        assert_eq!(frame.wire_len, 1500);
        assert_eq!(frame.timestamp_ns, 1_700_000_000_000_000_005);
        assert_eq!(
            (frame.packet_type, frame.hardware_type),
            (PACKET_OUTGOING, ARPHRD_LOOPBACK)
        );
        assert_eq!(frame.next, 0);
    }

    proptest::proptest! {
        /// Whatever a block holds, reading a frame from it never leaves it: a damaged header is
        /// `None`, never a panic or a range past the block.
        #[test]
        fn frames_never_reach_past_their_block(
            block in proptest::collection::vec(proptest::num::u8::ANY, 0..512),
            at in 0_usize..600,
        ) {
            if let Some(frame) = parse_frame(&block, at) {
                proptest::prop_assert!(frame.data.end <= block.len());
                proptest::prop_assert!(frame.data.start <= frame.data.end);
            }
        }
    }
}
